"""A request decoded once into a frozen Job: the model, the batch key (verb, composite, parameters) and one sample
per instance with its resolved target. Every decision about what a request runs is taken here, whatever protocol it
came in: the default composite, the merged parameters, the targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch

from service.errors import InvalidInputError
from service.faithfulness import Evaluation
from service.inference.answers import AnswerTarget, Logits
from service.inference.spans import TokenTarget
from service.loader import ModelEntry
from service.lrp import ExplanationInputError, Method
from service.modality.instances import Decoded
from service.modality.text import TokenizedText

Verb = Literal["predict", "explain"]
ClassRef = int | str | None  # a class index, a class label, or None: the predicted class


class SeveralClasses(Protocol):
    """Several classes explained together (their logits' sum): `{"classes": [...]}` in a request."""

    @property
    def classes(self) -> Sequence[int | str]: ...


@runtime_checkable
class AnswerSpan(Protocol):
    """A question answerer's span: `{"start": i, "end": j, "logits": "both" | "start" | "end"}` in a request (each
    optional: the predicted answer's first or last token; both logits)."""

    @property
    def start(self) -> int | None: ...

    @property
    def end(self) -> int | None: ...

    @property
    def logits(self) -> Logits: ...


@runtime_checkable
class OneToken(Protocol):
    """One token's class (a token classifier): `{"token": i, "class": c}` in a request (`class_` None: the class the
    model predicts for the token)."""

    @property
    def token(self) -> int: ...

    @property
    def class_(self) -> int | str | None: ...


Selector = ClassRef | SeveralClasses | OneToken | AnswerSpan
TargetRequest = Selector | Sequence[Selector]  # one for all instances, or one per instance
Selection = tuple[int, ...]  # the class indices an instance explains, together
Target = Selection | TokenTarget | AnswerTarget  # what a sample explains (None: its predicted class, each predicted
# entity, or the predicted answer)


@dataclass(frozen=True)
class BatchKey:
    """Inputs share a batched pass only under the same key: the verb and, to explain, the resolved method."""

    verb: Verb
    method: Method | None = None


PREDICT = BatchKey("predict")


@dataclass(frozen=True)
class Sample:
    """One instance in a batched pass: its model-space tensor, its position in its request (named in its error if
    it fails alone) and, to explain, its target classes (None: the predicted class)."""

    x: torch.Tensor
    position: int
    target: Target | None = None
    evaluate: Evaluation | None = None
    tokens: TokenizedText | None = None  # a text's tokens (a token classifier's entities, an answer's span follow them)

    @property
    def size(self) -> int:
        """Its size in a padded batch: a text's token ids (a batch of texts is padded to the longest)."""
        return int(self.x.shape[-1])


@dataclass(frozen=True)
class Job:
    """One decoded request. `composite` and `params` are what the answer reports (the composite as named, the
    parameters after merging the model's defaults); `key.method` is the same, resolved for the engine."""

    entry: ModelEntry
    key: BatchKey
    samples: tuple[Sample, ...]
    decoded: Decoded
    composite: str | dict[str, Any] | None = None
    params: dict[str, Any] | None = None


def predict_job(entry: ModelEntry, decoded: Decoded) -> Job:
    """The job of a /predict request."""
    return Job(entry, PREDICT, tuple(Sample(row, i) for i, row in enumerate(decoded.rows)), decoded)


def explain_job(entry: ModelEntry, decoded: Decoded, target: TargetRequest, composite: str | dict[str, Any] | None,
                params: dict[str, Any], evaluate: Evaluation | None = None) -> Job:
    """The job of an explain request: the model's default composite when none is named; its parameters are the
    model's defaults (see ModelEntry.default_params) with the request's own values on top."""
    chosen = entry.spec.default_composite if composite is None else composite
    merged = {**entry.default_params(chosen), **{k: v for k, v in params.items() if v is not None}}
    targets = resolve_targets(entry, target, len(decoded.x))
    try:
        method = entry.prepared.resolve(chosen, **merged)
    except ExplanationInputError as problem:
        raise InvalidInputError(str(problem)) from None
    texts = decoded.texts or ()
    for i, (wanted, tokens) in enumerate(zip(targets, texts, strict=False)):
        named = {"token": wanted.token} if isinstance(wanted, TokenTarget) else \
            {"start": wanted.first, "end": wanted.last} if isinstance(wanted, AnswerTarget) else {}
        for field, token in named.items():
            if token is not None and token >= len(tokens.ids):
                count = len(tokens.ids)
                raise InvalidInputError(f"target of inputs[{i}]: {field} {token} is out of range; the text has {count} "
                                        f"tokens (0..{count - 1}, as /explain lists them)")
    if entry.per_token and evaluate is not None:
        raise InvalidInputError("evaluate measures one output per input; a token classifier's or question answerer's "
                                "explanations are of spans: leave evaluate out")
    if entry.text is not None and entry.text.spec.pair is not None and evaluate is not None:
        raise InvalidInputError(f"evaluate perturbs the tokens of one text; model '{entry.name}' reads a pair of "
                                "texts: leave evaluate out")
    samples = tuple(Sample(row, i, t, evaluate, texts[i] if texts else None)
                    for i, (row, t) in enumerate(zip(decoded.rows, targets, strict=True)))
    return Job(entry, BatchKey("explain", method), samples, decoded, chosen, merged)


def resolve_targets(entry: ModelEntry, target: TargetRequest, count: int) -> list[Target | None]:
    """Per instance the classes it explains (None: the argmax), from an index, a class label, `{"classes": [...]}`
    or a list of them, one per instance. A regression model's default is its one output; with several, the request
    must name one."""
    if isinstance(target, str) or not isinstance(target, Sequence):  # one for all: None, an index, a label, an object
        return [_selection(entry, target, "target")] * count
    values = list(target)
    if len(values) != count:
        raise InvalidInputError(f"target has {len(values)} entries but there are {count} inputs; give one target "
                                "per input, a single target for all, or null for each input's predicted class")
    return [_selection(entry, value, f"target[{i}]") for i, value in enumerate(values)]


def _selection(entry: ModelEntry, value: Selector, where: str) -> Target | None:
    if entry.spec.task == "question_answering" or isinstance(value, AnswerSpan):
        return _answer_span(entry, value, where)
    tokens = entry.per_token
    if value is not None and tokens != isinstance(value, OneToken):
        raise InvalidInputError(
            f"{where}: model '{entry.name}' classifies every token: give {{\"token\": i, \"class\": c}} (class "
            "optional: the token's predicted class) or null for each predicted entity" if tokens else
            f"{where}: {{\"token\": ...}} is a token classifier's target; model '{entry.name}' takes a class index "
            "or label, or {\"classes\": [...]}")
    if isinstance(value, OneToken):
        if value.token < 0:
            raise InvalidInputError(f"{where}.token must be 0 or more, got {value.token}")
        chosen = value.class_
        return TokenTarget(value.token, None if chosen is None else _class_index(entry, chosen, f"{where}.class"))
    if value is None:
        if entry.spec.task != "regression":
            return None
        if len(entry.classes) > 1:
            raise InvalidInputError(f"{where}: model '{entry.name}' is a regression with {len(entry.classes)} outputs "
                                    f"{entry.classes}; name the one to explain")
        return (0,)
    if isinstance(value, int | str):
        return (_class_index(entry, value, where),)
    indices = [_class_index(entry, one, f"{where}.classes[{i}]") for i, one in enumerate(value.classes)]
    if not indices or len(set(indices)) != len(indices):
        raise InvalidInputError(f"{where}.classes: give distinct classes to explain together, got "
                                f"{list(value.classes)}")
    return tuple(indices)


def _answer_span(entry: ModelEntry, value: Selector, where: str) -> AnswerTarget | None:
    """A question answerer's target: None (the predicted answer, both logits) or a span object."""
    if entry.spec.task != "question_answering" or not (value is None or isinstance(value, AnswerSpan)):
        raise InvalidInputError(
            f"{where}: model '{entry.name}' answers questions: give {{\"start\": i, \"end\": j, \"logits\": \"both\" | "
            "\"start\" | \"end\"} (each optional: the predicted answer's) or null for the predicted answer"
            if entry.spec.task == "question_answering" else
            f"{where}: {{\"start\": ..., \"end\": ...}} is a question answerer's target; model '{entry.name}' is not "
            "one")
    if value is None:
        return None
    for field, token in (("start", value.start), ("end", value.end)):
        if token is not None and token < 0:
            raise InvalidInputError(f"{where}.{field} must be 0 or more, got {token}")
    if value.start is not None and value.end is not None and value.end < value.start:
        raise InvalidInputError(f"{where}: end {value.end} comes before start {value.start}; a span runs from its "
                                "start token to its end token")
    return AnswerTarget(value.start, value.end, value.logits)


def _class_index(entry: ModelEntry, value: int | str, where: str) -> int:
    classes = entry.classes
    if isinstance(value, bool):
        raise InvalidInputError(f"{where} must be a class index or label, not a boolean")
    if isinstance(value, str):
        if value not in classes:
            raise InvalidInputError(f"{where}: unknown class label '{value}'; labels are {classes}")
        return classes.index(value)
    if not 0 <= value < len(classes):
        raise InvalidInputError(f"{where}: class index {value} is out of range; the model has {len(classes)} "
                                f"classes (0..{len(classes) - 1})")
    return value
