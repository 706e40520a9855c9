"""The last stage of the pipeline: a job and its results become the answer, a response model of the contract
(service.schemas) or a PNG heatmap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service import inputs, render
from service.inference.job import Job
from service.schemas import ExplainResponse, FeatureRelevance, InstanceExplanation, Prediction, PredictResponse


def predict_answer(job: Job, results: Sequence[Prediction]) -> PredictResponse:
    """Predictions, one per instance, in order."""
    return PredictResponse(model=job.entry.name, predictions=list(results))


def explain_answer(job: Job, results: Sequence[InstanceExplanation]) -> ExplainResponse | bytes:
    """The explanations as a response model (tabular models: with ranked features), or the PNG the job asks for."""
    if job.output == "png":
        return _png(job, results)
    explanations = list(results)
    names, values = job.entry.spec.input.features, job.decoded.features
    if names is not None and values is not None:
        explanations = [result.model_copy(update={"features": ranked_features(names, result.relevance, row)})
                        for result, row in zip(results, values, strict=True)]
    assert job.composite is not None and job.params is not None, "explain jobs name their composite and params"
    return ExplainResponse(model=job.entry.name, composite=job.composite, params=job.params,
                           explanations=explanations)


def ranked_features(names: Sequence[str], relevance: np.ndarray, values: Sequence[float]) -> list[FeatureRelevance]:
    """Tabular features with their raw value and relevance, most relevant (largest |R|) first."""
    order = np.argsort(-np.abs(relevance), kind="stable")
    return [FeatureRelevance(name=names[i], value=float(values[i]), relevance=float(relevance[i])) for i in order]


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
        [f"[{i}]" for i in range(spec.shape[-1])] if spec.kind == "tensor" else None)


def _title(index: int, result: InstanceExplanation, count: int) -> str:
    """What a panel explains: the class, its logit and probability (and the instance's position in a grid)."""
    text = f"class {result.label}: logit {result.logit:.3g}, probability {result.probability:.3g}"
    return f"#{index} {text}" if count > 1 else text
