"""A model's faithfulness on the held-out examples its model.json ships (`evaluation`), each example explained for
its predicted class: at load, the AOPC of its default composite against the input x gradient and random relevance;
when a default is chosen (models/train.py, `python -m service choose-default`), every composite's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from service.errors import InvalidInputError, ModelFileError
from service.faithfulness.subject import Evaluation, Subject
from service.lrp import COMPOSITE_NAMES, LRPError, Method, PreparedModel
from service.manifest.model_json import ComparedComposite, ModelSpec
from service.modality.instances import decode_instances, decode_texts, model_space_bounds

AOPCs = dict[str, float]  # aopc_morf, aopc_lerf, aopc_random


def asked_by(spec: ModelSpec) -> Evaluation:
    """The steps and random orders model.json's evaluation asks for (features per step: the scheme's default)."""
    assert spec.evaluation is not None, "only a model.json with evaluation examples asks for an evaluation"
    return Evaluation(spec.evaluation.steps, None, spec.evaluation.random_orders)


@dataclass(frozen=True)
class HeldOut:
    """A model's held-out examples ready to measure on: the subject, the examples in model space, each one's
    predicted class, and the steps and random orders model.json asks for."""

    subject: Subject
    rows: list[torch.Tensor]
    targets: list[int]
    asked: Evaluation

    @classmethod
    def of(cls, name: str, spec: ModelSpec, subject: Subject) -> HeldOut:
        """model.json's examples of model `name`; ModelFileError for examples the model cannot take."""
        assert spec.evaluation is not None, "only a model.json with evaluation examples has held-out examples"
        examples = spec.evaluation.examples
        try:
            rows = (decode_texts(subject.text, examples, 10**9).rows if subject.text is not None
                    else decode_instances(spec.input, examples, 10**9).rows)
        except InvalidInputError as problem:
            raise ModelFileError(f"model '{name}': model.json: evaluation.examples: {problem}") from None
        return cls(subject, rows, subject.predicted(rows), asked_by(spec))

    def per_example(self, relevance: Sequence[np.ndarray]) -> list[tuple[float, float, float]]:
        """Each example's AOPC (MoRF, LeRF, random orders) for the given relevance."""
        found = self.subject.measure(self.rows, relevance, self.targets, self.asked)
        return [(m.curves.aopc_morf, m.curves.aopc_lerf, m.curves.aopc_random) for m in found]

    def aopcs(self, relevance: Sequence[np.ndarray]) -> AOPCs:
        """The mean AOPCs of the given relevance over the examples, rounded to 4 decimals."""
        morf, lerf, random = (round(float(np.mean(column)), 4)
                              for column in zip(*self.per_example(relevance), strict=True))
        return {"aopc_morf": morf, "aopc_lerf": lerf, "aopc_random": random}

    def method_aopcs(self, method: Method) -> AOPCs:
        """The mean AOPCs of `method`'s explanations of the examples."""
        return self.aopcs(self.subject.explained(self.rows, self.targets, method))

    def random_relevance(self) -> list[np.ndarray]:
        """Relevance drawn from a standard normal (numpy's default_rng(0)), one array per example."""
        rng = np.random.default_rng(0)
        return [rng.normal(size=tuple(row.shape)) for row in self.rows]


def measure(name: str, spec: ModelSpec, subject: Subject, method: Method, max_copies: int) -> dict[str, AOPCs] | None:
    """Mean AOPCs of `method`, of random relevance and (models that do not take token ids) of the input x gradient;
    None without examples. ModelFileError for examples the model cannot take, or that ask it to run more than
    `max_copies` inputs per method."""
    if spec.evaluation is None:
        return None
    refusal = asked_by(spec).refusal(len(spec.evaluation.examples), "examples", max_copies, " per method")
    if refusal is not None:
        raise ModelFileError(f"model '{name}': model.json: evaluation {refusal}")
    held_out = HeldOut.of(name, spec, subject)
    found = {method.composite.name: held_out.method_aopcs(method), "random relevance": held_out.aopcs(
        held_out.random_relevance())}
    if subject.text is None:
        found["input x gradient"] = held_out.aopcs(subject.input_x_gradient(held_out.rows, held_out.targets))
    return found


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


def compare(name: str, spec: ModelSpec, subject: Subject) -> list[ComparedComposite]:
    """Every candidate that this model can take (zbox needs an input range) measured on the examples, best mean AOPC
    MoRF first; equal ones (to the 4 decimals kept) in the order of `candidates`."""
    held_out = HeldOut.of(name, spec, subject)
    bounds = model_space_bounds(spec.input)
    zbox = {} if bounds is None else {"low": bounds[0], "high": bounds[1]}
    measured = []
    for composite, params in candidates(spec, subject.prepared):
        try:
            method = subject.prepared.resolve(composite, **{**zbox, **params})
        except LRPError:
            continue
        measured.append(ComparedComposite(composite=composite, params=params, **held_out.method_aopcs(method)))
    return sorted(measured, key=lambda compared: -compared.aopc_morf)  # sorted is stable: ties keep their order


def choose(name: str, spec: ModelSpec, subject: Subject) -> ModelSpec:
    """`spec` with the default composite and parameters chosen by measurement (the first of `compare`) and the
    comparison recorded under evaluation; ModelFileError when model.json has no evaluation examples."""
    if spec.evaluation is None:
        raise ModelFileError(f"model '{name}': model.json has no evaluation examples to measure on: add "
                             "\"evaluation\": {\"examples\": [...]} (held-out instances as /predict takes them)")
    comparison = compare(name, spec, subject)
    best = comparison[0]
    return spec.model_copy(update={"default_composite": best.composite, "default_params": best.params,
                                   "evaluation": spec.evaluation.model_copy(update={"comparison": comparison})})
