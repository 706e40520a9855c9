"""A model's faithfulness measured at load, on the held-out examples its model.json ships (`evaluation`): the AOPC of
its default composite against the input x gradient and random relevance, by the scheme of service.faithfulness, each
example explained for its predicted class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from service import faithfulness
from service.errors import InvalidInputError, ModelFileError
from service.inputs import decode_instances, decode_texts
from service.lrp import Method, PreparedModel
from service.store.spec import ModelSpec
from service.text import TextModel


def measure(name: str, spec: ModelSpec, prepared: PreparedModel, text: TextModel | None,
            method: Method) -> dict[str, dict[str, float]] | None:
    """Mean AOPC (MoRF, LeRF, random orders) per method over the examples; None without examples. ModelFileError
    for examples the model cannot take."""
    if spec.evaluation is None:
        return None
    rows = examples(name, spec, text)
    rng = np.random.default_rng(0)
    found = {method.composite.name: composite_aopcs(spec, prepared, text, rows, method)}
    found["random relevance"] = given_aopcs(spec, prepared, text, rows,
                                            [rng.normal(size=tuple(r.shape)) for r in rows])
    if text is None:
        batch = torch.stack(list(rows))
        gradient = prepared.input_gradient(batch, _targets(prepared, text, rows))
        found["input x gradient"] = given_aopcs(spec, prepared, text, rows, list((batch * gradient).cpu().numpy()))
    return found


def examples(name: str, spec: ModelSpec, text: TextModel | None) -> list[torch.Tensor]:
    """model.json's evaluation examples in model space (a text: its token ids)."""
    assert spec.evaluation is not None
    try:
        return (decode_texts(text, spec.evaluation.examples, 10**9).rows if text is not None
                else decode_instances(spec.input, spec.evaluation.examples, 10**9).rows)
    except InvalidInputError as problem:
        raise ModelFileError(f"model '{name}': model.json: evaluation.examples: {problem}") from None


def composite_aopcs(spec: ModelSpec, prepared: PreparedModel, text: TextModel | None, rows: Sequence[torch.Tensor],
                    method: Method) -> dict[str, float]:
    """The mean AOPCs of `method`'s explanations of the rows for their predicted classes."""
    batch, extra, own = _batch(rows, text)
    relevance = prepared.explain_resolved(batch, _targets(prepared, text, rows), method, extra=extra).relevance
    values = relevance.cpu().numpy()
    return given_aopcs(spec, prepared, text, rows,
                       [r if place is None else r[place] for r, place in zip(values, own, strict=True)])


def given_aopcs(spec: ModelSpec, prepared: PreparedModel, text: TextModel | None, rows: Sequence[torch.Tensor],
                relevance: list[np.ndarray]) -> dict[str, float]:
    """The mean AOPCs of the given relevance of the rows for their predicted classes."""
    assert spec.evaluation is not None
    return _aopcs(spec, prepared, text, rows, _targets(prepared, text, rows), relevance, spec.evaluation.steps,
                  spec.evaluation.random_orders)


def _targets(prepared: PreparedModel, text: TextModel | None, rows: Sequence[torch.Tensor]) -> list[int]:
    batch, extra, _ = _batch(rows, text)
    chosen: list[int] = prepared.predict(batch, extra).argmax(1).tolist()
    return chosen


def _batch(rows: Sequence[torch.Tensor], text: TextModel | None
           ) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[slice | None]]:
    if text is None:
        return torch.stack(list(rows)), {}, [None] * len(rows)
    ids, extra, own = text.pad(list(rows))
    return ids, extra, list(own)


def _aopcs(spec: ModelSpec, prepared: PreparedModel, text: TextModel | None, rows: Sequence[torch.Tensor],
           targets: list[int], relevance: list[np.ndarray], steps: int, seeds: int) -> dict[str, float]:
    plans = []
    for x, r in zip(rows, relevance, strict=True):
        index = faithfulness.features(spec.input, text, x)
        plans.append(faithfulness.plan(x, index, faithfulness.feature_relevance(index, r),
                                       faithfulness.baseline(spec.input, text, x), steps, None, seeds))
    if text is None:
        logits = prepared.predict(torch.cat(plans))
    else:
        ids, extra, _ = text.pad([row for copies in plans for row in copies])
        logits = prepared.predict(ids, extra)
    found, at = [], 0
    for copies, target in zip(plans, targets, strict=True):
        curves = faithfulness.read(logits[at:at + len(copies), target].tolist(), steps, seeds)
        at += len(copies)
        found.append((curves.aopc_morf, curves.aopc_lerf, curves.aopc_random))
    morf, lerf, random = (round(float(np.mean(column)), 4) for column in zip(*found, strict=True))
    return {"aopc_morf": morf, "aopc_lerf": lerf, "aopc_random": random}
