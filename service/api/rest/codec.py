"""The REST protocol's codec: a /predict or /explain request (JSON instances or one uploaded image) becomes a Job,
and its results the contract's JSON answer (service.api.schemas), a PNG or, for a text model, an HTML page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from service.api.rest.drawn import Media, drawn_text, heatmap_png
from service.api.rest.texts import answer_prediction, text_explanation, token_answer, token_prediction
from service.api.schemas import (
    ExplainResponse,
    Faithfulness,
    FeatureRelevance,
    InstanceExplanation,
    Prediction,
    PredictResponse,
)
from service.errors import InvalidInputError, PayloadTooLargeError
from service.faithfulness import Evaluation, Measurement
from service.inference import (
    Answered,
    Codec,
    Explained,
    Job,
    PipelineState,
    Predicted,
    TokensExplained,
    decode_instances,
    decode_upload,
    explain_job,
    of_kind,
    predict_job,
)
from service.inference.job import TargetRequest
from service.loader import ModelEntry

Output = Literal["json", "png", "html"]
RestAnswer = PredictResponse | ExplainResponse | Media


@dataclass(frozen=True)
class ExplainOptions:
    """What an /explain request asks besides its inputs: the targets, the composite and its parameters, the answer's
    format, whether a PNG is drawn over the input image, and the faithfulness to measure."""

    target: TargetRequest = None
    composite: str | dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    output: Output = "json"
    overlay: bool = False
    evaluate: Evaluation | None = None


@dataclass(frozen=True)
class RestRequest:
    """A /predict or /explain request as its route parsed it: JSON instances or one uploaded image (`upload`), and
    for /explain its options (None: a prediction)."""

    instances: Sequence[Any] = ()
    upload: bytes | None = None
    explain: ExplainOptions | None = None


class RestCodec(Codec[RestRequest, RestAnswer]):
    """/predict and /explain, JSON or image upload."""

    async def decode_request(self, state: PipelineState, entry: ModelEntry, request: RestRequest) -> Job:
        decoded = (await decode_upload(state, entry, request.upload) if request.upload is not None
                   else await decode_instances(state, entry, request.instances))
        asked = request.explain
        if asked is None:
            return predict_job(entry, decoded)
        if asked.evaluate is not None:
            refusal = asked.evaluate.refusal(len(decoded.rows), "instances", state.settings.max_evaluation_copies)
            if refusal is not None:
                raise PayloadTooLargeError(f"evaluate {refusal}: ask for fewer steps, random orders or instances")
            if asked.output == "html":
                raise InvalidInputError("evaluate is answered in JSON, or drawn under the heatmaps of a PNG: ask for "
                                        "format json or png")
        if asked.output == "html" and entry.text is None:
            raise InvalidInputError(f"format html draws text explanations, and model '{entry.name}' takes "
                                    f"{entry.spec.input.kind} input; ask for json or png")
        return explain_job(entry, decoded, asked.target, asked.composite, asked.params, asked.evaluate)

    def encode_response(self, request: RestRequest, job: Job, results: Sequence[Answered]) -> RestAnswer:
        asked = request.explain
        if asked is None:
            return PredictResponse(model=job.entry.name, predictions=[
                prediction(job, i, result) for i, result in enumerate(of_kind(results, Predicted))])
        if job.entry.per_token:
            return token_answer(job, asked.output, of_kind(results, TokensExplained))
        explained = of_kind(results, Explained)
        if job.decoded.texts is not None and asked.output != "json":
            return drawn_text(job, explained, html=asked.output == "html")
        if asked.output == "png":
            return heatmap_png(job, explained, asked.overlay)
        assert job.composite is not None and job.params is not None, "explain jobs name their composite and params"
        return ExplainResponse(model=job.entry.name, composite=job.composite, params=job.params,
                               explanations=[explanation(job, i, result) for i, result in enumerate(explained)])

    def draws(self, request: RestRequest) -> bool:
        return request.explain is not None and request.explain.output != "json"


MULTI_LABEL_THRESHOLD = 0.5  # a multi-label model predicts the labels of at least this probability


def prediction(job: Job, index: int, result: Predicted) -> Prediction:
    """One instance's prediction as the contract shows it, by the model's task: the most probable class with every
    probability (multi-label: and the labels of probability >= 0.5), a regression's values, or a token classifier's
    labels and entities."""
    entry = job.entry
    if entry.spec.task == "question_answering":
        assert job.decoded.texts is not None, "question answerers read texts"
        return answer_prediction(entry, job.decoded.texts[index], result.logits)
    if entry.per_token:
        assert job.decoded.texts is not None and result.probabilities is not None, "token classifiers read texts"
        return token_prediction(entry, job.decoded.texts[index], result.probabilities)
    logits = result.logits.tolist()
    if result.probabilities is None:
        return Prediction(logits=logits, values=dict(zip(entry.classes, logits, strict=True)))
    index = result.predicted_class
    labels = ([label for label, p in zip(entry.classes, result.probabilities.tolist(), strict=True)
               if p >= MULTI_LABEL_THRESHOLD] if entry.spec.task == "multi_label" else None)
    return Prediction.model_validate({"class": index, "label": entry.classes[index], "labels": labels,
                                      "probabilities": result.probabilities.tolist(), "logits": logits})


def target_fields(entry: ModelEntry, targets: Sequence[int]) -> dict[str, Any]:
    """An explanation's `target` and `label`: an index and a label, or lists of them for several classes."""
    if len(targets) == 1:
        return {"target": targets[0], "label": entry.classes[targets[0]]}
    return {"target": list(targets), "label": [entry.classes[t] for t in targets]}


def explanation(job: Job, index: int, result: Explained) -> InstanceExplanation:
    """One instance's explanation as the contract shows it: tabular rows with their ranked features, texts with their
    tokens and top words, and the faithfulness when it was measured."""
    names, rows, texts = job.entry.spec.input.features, job.decoded.features, job.decoded.texts
    return InstanceExplanation(
        **target_fields(job.entry, result.targets), logit=result.logit,
        probability=result.probability, relevance=result.relevance, relevance_sum=result.relevance_sum,
        conservation_delta=result.conservation_delta,
        features=None if names is None or rows is None else ranked_features(names, result.relevance, rows[index]),
        text=None if texts is None else text_explanation(job.entry, texts[index], result.relevance),
        faithfulness=None if result.faithfulness is None else faithfulness(result.faithfulness))


def ranked_features(names: Sequence[str], relevance: np.ndarray, values: Sequence[float]) -> list[FeatureRelevance]:
    """Tabular features with their raw value and relevance, most relevant (largest |R|) first."""
    order = np.argsort(-np.abs(relevance), kind="stable")
    return [FeatureRelevance(name=names[i], value=float(values[i]), relevance=float(relevance[i])) for i in order]


def faithfulness(measured: Measurement) -> Faithfulness:
    """A measurement's curves and AOPCs as the contract shows them."""
    curves = measured.curves
    return Faithfulness(aopc_morf=curves.aopc_morf, aopc_lerf=curves.aopc_lerf, aopc_random=curves.aopc_random,
                        curve_morf=curves.morf, curve_lerf=curves.lerf, curve_random=curves.random,
                        steps=measured.steps, features_per_step=measured.features_per_step)


REST = RestCodec()
