"""Explanations drawn for the REST answers: PNG heatmaps (over the uploaded image or the input with `overlay`),
feature bars for tabular rows, a strip for tensors, the coloured text of a text model as a PNG or an HTML page; with
"evaluate", each panel's faithfulness curves under it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.inference import Explained, Job
from service.modality import instances as inputs
from service.modality import text
from service.render import heatmaps, text_page


@dataclass(frozen=True)
class Media:
    """A drawn answer: its bytes and media type (a PNG, an HTML page)."""

    body: bytes
    media_type: str


def drawn_text(job: Job, results: Sequence[Explained], html: bool) -> Media:
    """Text explanations as the HTML page or the PNG of service.render.text_page."""
    assert job.decoded.texts is not None
    panels = [(title(job, i, result, len(results)), tokens, result.relevance)
              for i, (result, tokens) in enumerate(zip(results, job.decoded.texts, strict=True))]
    return drawn_panels(job, panels, html, curves(results))


TextPanel = tuple[str, text.TokenizedText, np.ndarray]  # a title, a text's tokens, their relevance


def drawn_panels(job: Job, panels: Sequence[TextPanel], html: bool,
                 measured: Sequence[heatmaps.Curves | None] | None = None) -> Media:
    """Coloured texts, one panel each, as the HTML page or the PNG of service.render.text_page."""
    shown = []
    for heading, tokens, relevance in panels:
        values, joined = [float(v) for v in relevance], tokens.joined()  # a pair's two texts drawn as one
        positive, negative = text.top_words(text.words(joined, values))
        shown.append(text_page.Shown(heading, joined, values, positive, negative))
    if html:
        heading = f"LRP explanation: model {job.entry.name}, composite {job.key.method.composite.name}" \
            if job.key.method is not None else f"model {job.entry.name}"
        return Media(text_page.text_html(heading, shown).encode("utf-8"), "text/html; charset=utf-8")
    return Media(text_page.text_png(shown, measured), "image/png")


def curves(results: Sequence[Explained]) -> list[heatmaps.Curves | None]:
    """Each explanation's faithfulness curves and AOPCs, for the PNG (None where not evaluated)."""
    return [None if r.faithfulness is None else (
        (c := r.faithfulness.curves).morf, c.lerf, c.random, (c.aopc_morf, c.aopc_lerf, c.aopc_random))
        for r in results]


def heatmap_png(job: Job, results: Sequence[Explained], overlay: bool) -> Media:
    """Heatmaps at the uploaded image's size, or over the input (image models, `overlay`), or on their own."""
    spec = job.entry.spec.input
    bases: list[np.ndarray | None] = [None] * len(results)
    if job.decoded.images is not None:
        bases = list(job.decoded.images)
    elif overlay and spec.kind == "image":
        bases = [inputs.display_pixels(spec, sample.x) for sample in job.samples]
    return Media(heatmaps.explanation_png(
        [r.relevance for r in results], [title(job, i, r, len(results)) for i, r in enumerate(results)], bases,
        overlay, spec.features if spec.kind == "tabular" else None,
        [f"[{i}]" for i in range(spec.shape[-1])] if spec.kind == "tensor" else None, curves(results)), "image/png")


def title(job: Job, index: int, result: Explained, count: int) -> str:
    """What a panel explains: the class (or the classes explained together, or a regression's output), its logit
    (their sum; a value) and its probability (and the instance's position in a grid)."""
    names = " + ".join(job.entry.classes[t] for t in result.targets)
    if job.entry.spec.task == "regression":
        said = f"{names}: value {result.logit:.3g}"
    elif result.probability is None:
        said = f"classes {names}: logits summed {result.logit:.3g}"
    else:
        said = f"class {names}: logit {result.logit:.3g}, probability {result.probability:.3g}"
    return f"#{index} {said}" if count > 1 else said
