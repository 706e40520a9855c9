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
from service.text import TextModel, batch


def measure(name: str, spec: ModelSpec, prepared: PreparedModel, text: TextModel | None,
            method: Method) -> dict[str, dict[str, float]] | None:
    """Mean AOPC (MoRF, LeRF, random orders) per method over the examples; None without examples. ModelFileError
    for examples the model cannot take."""
    if spec.evaluation is None:
        return None
    rows = examples(name, spec, text)
    targets = predicted(prepared, text, rows)
    rng = np.random.default_rng(0)
    found = {method.composite.name: composite_aopcs(spec, prepared, text, rows, targets, method)}
    found["random relevance"] = given_aopcs(spec, prepared, text, rows, targets,
                                            [rng.normal(size=tuple(r.shape)) for r in rows])
    if text is None:
        found["input x gradient"] = given_aopcs(spec, prepared, text, rows, targets,
                                                input_x_gradient(prepared, rows, targets))
    return found


def examples(name: str, spec: ModelSpec, text: TextModel | None) -> list[torch.Tensor]:
    """model.json's evaluation examples in model space (a text: its token ids)."""
    assert spec.evaluation is not None
    try:
        return (decode_texts(text, spec.evaluation.examples, 10**9).rows if text is not None
                else decode_instances(spec.input, spec.evaluation.examples, 10**9).rows)
    except InvalidInputError as problem:
        raise ModelFileError(f"model '{name}': model.json: evaluation.examples: {problem}") from None


def predicted(prepared: PreparedModel, text: TextModel | None, rows: Sequence[torch.Tensor]) -> list[int]:
    """Each row's predicted class."""
    x, extra, _ = batch(text, rows)
    chosen: list[int] = prepared.predict(x, extra).argmax(1).tolist()
    return chosen


def input_x_gradient(prepared: PreparedModel, rows: Sequence[torch.Tensor], targets: list[int]) -> list[np.ndarray]:
    """x * d logit_target / dx of each (floating-point) row."""
    x = torch.stack(list(rows))
    return list((x * prepared.input_gradient(x, targets)).cpu().numpy())


def composite_aopcs(spec: ModelSpec, prepared: PreparedModel, text: TextModel | None, rows: Sequence[torch.Tensor],
                    targets: list[int], method: Method) -> dict[str, float]:
    """The mean AOPCs of `method`'s explanations of the rows for their targets."""
    x, extra, own = batch(text, rows)
    values = prepared.explain_resolved(x, targets, method, extra=extra).relevance.cpu().numpy()
    relevance = list(values) if own is None else [r[place] for r, place in zip(values, own, strict=True)]
    return given_aopcs(spec, prepared, text, rows, targets, relevance)


def given_aopcs(spec: ModelSpec, prepared: PreparedModel, text: TextModel | None, rows: Sequence[torch.Tensor],
                targets: list[int], relevance: list[np.ndarray]) -> dict[str, float]:
    """The mean AOPCs of the given relevance of the rows for their targets, by the model.json's steps and orders."""
    assert spec.evaluation is not None
    found = faithfulness.measured(prepared, spec.input, text, rows, relevance, targets, spec.evaluation.steps,
                                  None, spec.evaluation.random_orders)
    morf, lerf, random = (round(float(np.mean(column)), 4) for column in zip(
        *((c.aopc_morf, c.aopc_lerf, c.aopc_random) for c, _ in found), strict=True))
    return {"aopc_morf": morf, "aopc_lerf": lerf, "aopc_random": random}
