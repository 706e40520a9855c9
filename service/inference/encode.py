"""The last stage of the pipeline: a job and its results become the answer, a response model of the contract
(service.schemas) or a PNG heatmap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service import inputs, render, text, text_render
from service.inference.job import Job
from service.schemas import (
    ExplainResponse,
    FeatureRelevance,
    InstanceExplanation,
    Prediction,
    PredictResponse,
    TextExplanation,
    TokenRelevance,
    WordRelevance,
)


@dataclass(frozen=True)
class Media:
    """A drawn answer: its bytes and media type (a PNG, an HTML page)."""

    body: bytes
    media_type: str


def predict_answer(job: Job, results: Sequence[Prediction]) -> PredictResponse:
    """Predictions, one per instance, in order."""
    return PredictResponse(model=job.entry.name, predictions=list(results))


def explain_answer(job: Job, results: Sequence[InstanceExplanation]) -> ExplainResponse | Media:
    """The explanations as a response model (tabular models: with ranked features; text: tokens and top words), or
    the PNG or (text) HTML page the job asks for."""
    if job.decoded.texts is not None and job.output != "json":
        return _drawn_text(job, results)
    if job.output == "png":
        return Media(_png(job, results), "image/png")
    explanations = list(results)
    names, values = job.entry.spec.input.features, job.decoded.features
    if names is not None and values is not None:
        explanations = [result.model_copy(update={"features": ranked_features(names, result.relevance, row)})
                        for result, row in zip(results, values, strict=True)]
    if job.decoded.texts is not None:
        explanations = [result.model_copy(update={"text": text_explanation(tokens, result.relevance)})
                        for result, tokens in zip(results, job.decoded.texts, strict=True)]
    assert job.composite is not None and job.params is not None, "explain jobs name their composite and params"
    return ExplainResponse(model=job.entry.name, composite=job.composite, params=job.params,
                           explanations=explanations)


def ranked_features(names: Sequence[str], relevance: np.ndarray, values: Sequence[float]) -> list[FeatureRelevance]:
    """Tabular features with their raw value and relevance, most relevant (largest |R|) first."""
    order = np.argsort(-np.abs(relevance), kind="stable")
    return [FeatureRelevance(name=names[i], value=float(values[i]), relevance=float(relevance[i])) for i in order]


def text_explanation(tokens: text.TokenizedText, relevance: np.ndarray) -> TextExplanation:
    """A text's tokens with their relevance and its top words for and against the target."""
    values = [float(v) for v in relevance]
    positive, negative = text.top_words(text.words(tokens, values))
    return TextExplanation(
        tokens=[TokenRelevance(token=token, start=start, end=end, special=special, relevance=value)
                for token, (start, end), special, value in zip(tokens.tokens, tokens.offsets, tokens.special, values,
                                                               strict=True)],
        top_positive=[WordRelevance(word=w.text, start=w.start, end=w.end, relevance=w.relevance) for w in positive],
        top_negative=[WordRelevance(word=w.text, start=w.start, end=w.end, relevance=w.relevance) for w in negative],
        truncated=tokens.truncated)


def _drawn_text(job: Job, results: Sequence[InstanceExplanation]) -> Media:
    """Text explanations as the HTML page or the PNG of service.text_render."""
    assert job.decoded.texts is not None
    shown = []
    for i, (result, tokens) in enumerate(zip(results, job.decoded.texts, strict=True)):
        positive, negative = text.top_words(text.words(tokens, [float(v) for v in result.relevance]))
        shown.append(text_render.Shown(_title(i, result, len(results)), tokens, [float(v) for v in result.relevance],
                                       positive, negative))
    if job.output == "html":
        heading = f"LRP explanation: model {job.entry.name}, composite {job.key.method.composite.name}" \
            if job.key.method is not None else f"model {job.entry.name}"
        return Media(text_render.text_html(heading, shown).encode("utf-8"), "text/html; charset=utf-8")
    return Media(text_render.text_png(shown, _curves(results)), "image/png")


def _curves(results: Sequence[InstanceExplanation]) -> list[render.Curves | None]:
    """Each explanation's faithfulness curves and AOPCs, for the PNG (None where not evaluated)."""
    return [None if (f := r.faithfulness) is None else
            (f.curve_morf, f.curve_lerf, f.curve_random, (f.aopc_morf, f.aopc_lerf, f.aopc_random)) for r in results]


def _png(job: Job, results: Sequence[InstanceExplanation]) -> bytes:
    """Heatmaps at the uploaded image's size, or over the input (image models, `overlay`), or on their own."""
    spec = job.entry.spec.input
    bases: list[np.ndarray | None] = [None] * len(results)
    if job.decoded.images is not None:
        bases = list(job.decoded.images)
    elif job.overlay and spec.kind == "image":
        bases = [inputs.display_pixels(spec, sample.x) for sample in job.samples]
    return render.explanation_png(
        [r.relevance for r in results], [_title(i, r, len(results)) for i, r in enumerate(results)], bases,
        job.overlay, spec.features if spec.kind == "tabular" else None,
        [f"[{i}]" for i in range(spec.shape[-1])] if spec.kind == "tensor" else None, _curves(results))


def _title(index: int, result: InstanceExplanation, count: int) -> str:
    """What a panel explains: the class, its logit and probability (and the instance's position in a grid)."""
    text = f"class {result.label}: logit {result.logit:.3g}, probability {result.probability:.3g}"
    return f"#{index} {text}" if count > 1 else text
