"""A model's faithfulness measured at load, on the held-out examples its model.json ships (`evaluation`): the AOPC of
its default composite against the input x gradient and random relevance, by the scheme of service.faithfulness, each
example explained for its predicted class."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from service import faithfulness
from service.errors import InvalidInputError, ModelFileError
from service.inputs import decode_instances, decode_texts
from service.lrp import Method, PreparedModel
from service.store.spec import ModelSpec
from service.text import TextModel

Relevance = Callable[[torch.Tensor, list[int]], list[np.ndarray]]  # rows, targets -> relevance per row


def measure(name: str, spec: ModelSpec, prepared: PreparedModel, text: TextModel | None,
            method: Method) -> dict[str, dict[str, float]] | None:
    """Mean AOPC (MoRF, LeRF, random orders) per method over the examples; None without examples. ModelFileError
    for examples the model cannot take."""
    asked = spec.evaluation
    if asked is None:
        return None
    try:
        rows = (decode_texts(text, asked.examples, 10**9).rows if text is not None
                else decode_instances(spec.input, asked.examples, 10**9).rows)
    except InvalidInputError as problem:
        raise ModelFileError(f"model '{name}': model.json: evaluation.examples: {problem}") from None
    batch, extra, own = _batch(rows, text)
    targets = prepared.predict(batch, extra).argmax(1).tolist()
    rng = np.random.default_rng(0)

    def explained(x: torch.Tensor, chosen: list[int]) -> list[np.ndarray]:
        relevance = prepared.explain_resolved(x, chosen, method, extra=extra).relevance.cpu().numpy()
        return [r if place is None else r[place] for r, place in zip(relevance, own, strict=True)]

    methods: dict[str, Relevance] = {method.composite.name: explained,
                                     "random relevance": lambda x, _: [rng.normal(size=tuple(r.shape)) for r in rows]}
    if text is None:
        methods["input x gradient"] = lambda x, chosen: list((x * prepared.input_gradient(x, chosen)).cpu().numpy())
    return {label: _aopcs(spec, prepared, text, rows, targets, relevance(batch, targets), asked.steps,
                          asked.random_orders) for label, relevance in methods.items()}


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
