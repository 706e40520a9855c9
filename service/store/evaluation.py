"""A model's faithfulness on the held-out examples its model.json ships (`evaluation`), by the scheme of
service.faithfulness, each example explained for its predicted class: at load, the AOPC of its default composite
against the input x gradient and random relevance; when a default is chosen (models/train.py), every composite's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from service import faithfulness
from service.errors import InvalidInputError, ModelFileError
from service.inputs import decode_instances, decode_texts, model_space_bounds
from service.lrp import COMPOSITE_NAMES, LRPError, Method, PreparedModel
from service.serving.config import ServingConfig
from service.store.spec import ComparedComposite, ModelSpec
from service.text import TextModel, batch


def measure(name: str, spec: ModelSpec, prepared: PreparedModel, text: TextModel | None, method: Method,
            serving: ServingConfig, max_copies: int) -> dict[str, dict[str, float]] | None:
    """Mean AOPC (MoRF, LeRF, random orders) per method over the examples, in passes of `serving`'s size; None
    without examples. ModelFileError for examples the model cannot take, or that ask it to run more than
    `max_copies` inputs per method."""
    if spec.evaluation is None:
        return None
    asked = spec.evaluation
    copies = faithfulness.copies(len(asked.examples), asked.steps, asked.random_orders)
    if copies > max_copies:
        raise ModelFileError(
            f"model '{name}': model.json: evaluation asks the model to run {copies} inputs per method "
            f"({len(asked.examples)} examples x (1 + {asked.steps} steps x (2 + {asked.random_orders} random orders)))"
            f"; the limit is {max_copies} (LRP_MAX_EVALUATION_COPIES)")
    rows = examples(name, spec, text)
    targets = predicted(prepared, text, rows)
    size = per_pass(serving, text, rows)
    rng = np.random.default_rng(0)
    found = {method.composite.name: composite_aopcs(spec, prepared, text, rows, targets, method, size)}
    found["random relevance"] = given_aopcs(spec, prepared, text, rows, targets,
                                            [rng.normal(size=tuple(r.shape)) for r in rows], size)
    if text is None:
        found["input x gradient"] = given_aopcs(spec, prepared, text, rows, targets,
                                                input_x_gradient(prepared, rows, targets), size)
    return found


def per_pass(serving: ServingConfig, text: TextModel | None, rows: Sequence[torch.Tensor]) -> int:
    """Perturbed copies per pass: what one batched pass of the model takes (texts: at the longest row's length)."""
    return serving.inputs_per_pass(None if text is None else max(int(row.shape[-1]) for row in rows))


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
                    targets: list[int], method: Method, size: int) -> dict[str, float]:
    """The mean AOPCs of `method`'s explanations of the rows for their targets (`size` copies per pass)."""
    return given_aopcs(spec, prepared, text, rows, targets, explained(prepared, text, rows, targets, method), size)


def explained(prepared: PreparedModel, text: TextModel | None, rows: Sequence[torch.Tensor], targets: list[int],
              method: Method) -> list[np.ndarray]:
    """`method`'s relevance of each row for its target, explained in one batch (a text: at its own positions)."""
    x, extra, own = batch(text, rows)
    values = prepared.explain_resolved(x, targets, method, extra=extra).relevance.cpu().numpy()
    return list(values) if own is None else [r[place] for r, place in zip(values, own, strict=True)]


def given_aopcs(spec: ModelSpec, prepared: PreparedModel, text: TextModel | None, rows: Sequence[torch.Tensor],
                targets: list[int], relevance: list[np.ndarray], size: int) -> dict[str, float]:
    """The mean AOPCs of the given relevance of the rows for their targets, by the model.json's steps and orders."""
    morf, lerf, random = (round(float(np.mean(column)), 4) for column in zip(
        *example_aopcs(spec, prepared, text, rows, targets, relevance, size), strict=True))
    return {"aopc_morf": morf, "aopc_lerf": lerf, "aopc_random": random}


def example_aopcs(spec: ModelSpec, prepared: PreparedModel, text: TextModel | None, rows: Sequence[torch.Tensor],
                  targets: list[int], relevance: list[np.ndarray], size: int) -> list[tuple[float, float, float]]:
    """Each row's AOPC (MoRF, LeRF, random orders) for the given relevance, by the model.json's steps and orders,
    `size` perturbed copies per pass."""
    assert spec.evaluation is not None
    found = faithfulness.measured(prepared, spec.input, text, rows, relevance, targets, spec.evaluation.steps,
                                  None, spec.evaluation.random_orders, size)
    return [(c.aopc_morf, c.aopc_lerf, c.aopc_random) for c, _ in found]


Candidate = tuple[str | dict[str, Any], dict[str, Any]]  # a composite and its parameters
LRP_0: Candidate = ("epsilon", {"epsilon": 0.0})
ATTENTION_COMPOSITES = ("attnlrp", "cp_lrp")


def candidates(spec: ModelSpec, prepared: PreparedModel) -> list[Candidate]:
    """What a default may be, in the order that breaks ties: the model's default composite with its parameters,
    LRP-0 (the epsilon rule at epsilon 0: input x gradient on ReLU networks), then every other composite at its own
    defaults (the attention composites only for a graph with attention)."""
    attention = any(node.op == "sdpa" for node in prepared.graph.nodes)
    named: list[Candidate] = [(name, {}) for name in COMPOSITE_NAMES if attention or name not in ATTENTION_COMPOSITES]
    found: list[Candidate] = []
    for candidate in [(spec.default_composite, dict(spec.default_params)), LRP_0, *named]:
        if candidate not in found:
            found.append(candidate)
    return found


def compare(name: str, spec: ModelSpec, prepared: PreparedModel, text: TextModel | None,
            serving: ServingConfig) -> list[ComparedComposite]:
    """Every candidate that this model can take (zbox needs an input range) measured on the examples, best mean AOPC
    MoRF first; equal ones (to the 4 decimals kept) in the order of `candidates`."""
    rows = examples(name, spec, text)
    targets = predicted(prepared, text, rows)
    size = per_pass(serving, text, rows)
    bounds = model_space_bounds(spec.input)
    zbox = {} if bounds is None else {"low": bounds[0], "high": bounds[1]}
    measured = []
    for composite, params in candidates(spec, prepared):
        try:
            method = prepared.resolve(composite, **{**zbox, **params})
        except LRPError:
            continue
        aopcs = composite_aopcs(spec, prepared, text, rows, targets, method, size)
        measured.append(ComparedComposite(composite=composite, params=params, **aopcs))
    return sorted(measured, key=lambda compared: -compared.aopc_morf)  # sorted is stable: ties keep their order


def choose(name: str, spec: ModelSpec, prepared: PreparedModel, text: TextModel | None,
           serving: ServingConfig) -> ModelSpec:
    """`spec` with the default composite and parameters chosen by measurement (the first of `compare`) and the
    comparison recorded under evaluation; ModelFileError when model.json has no evaluation examples."""
    if spec.evaluation is None:
        raise ModelFileError(f"model '{name}': model.json has no evaluation examples to measure on: add "
                             "\"evaluation\": {\"examples\": [...]} (held-out instances as /predict takes them)")
    comparison = compare(name, spec, prepared, text, serving)
    best = comparison[0]
    return spec.model_copy(update={"default_composite": best.composite, "default_params": best.params,
                                   "evaluation": spec.evaluation.model_copy(update={"comparison": comparison})})
