"""Text explanations drawn: the input text with each token's background coloured by its relevance
(service.render.colormap: red for the class, blue against, white at zero), scaled to the largest |relevance| of the
text's own tokens (special tokens such as [CLS] are listed beside the text, not coloured into it), with the colour scale
and the top words. As a self-contained HTML page (no scripts, no external files) or as a PNG of the same."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.modality.text import TokenizedText, Word
from service.render.colormap import colorize
from service.render.figure import panel
from service.render.heatmaps import Curves, grid_of, png_bytes, scaled

TEXT_WIDTH = 640  # the PNG's text block wraps at this many pixels
LINE_HEIGHT = 22
FONT_SIZE = 15


@dataclass(frozen=True)
class Shown:
    """One explained text as drawn: its title (class, logit, probability), tokens, their relevance, top words."""

    title: str
    text: TokenizedText
    relevance: Sequence[float]
    top_positive: Sequence[Word]
    top_negative: Sequence[Word]


@dataclass(frozen=True)
class Segment:
    """A stretch of the input text: a token (with its relevance and colour) or the text between tokens."""

    text: str
    relevance: float | None = None
    color: tuple[int, int, int] = (255, 255, 255)
    token: str = ""


def segments(shown: Shown) -> tuple[list[Segment], float]:
    """The text cut at its tokens' offsets (tokens whose span overlaps an earlier one are skipped), and the largest
    |relevance| of its tokens, which the colours are scaled to."""
    spans = sorted((start, end, token, float(value))
                   for token, (start, end), special, value in zip(shown.text.tokens, shown.text.offsets,
                                                                  shown.text.special, shown.relevance, strict=True)
                   if not special and end > start)
    values = np.array([value for *_, value in spans], dtype=np.float64)
    peak = float(np.abs(values).max()) if values.size else 0.0
    colors = colorize(scaled(values)) if values.size else np.zeros((0, 3), dtype=np.uint8)
    found: list[Segment] = []
    at = 0
    for (start, end, token, value), color in zip(spans, colors, strict=True):
        if start < at:
            continue
        if start > at:
            found.append(Segment(shown.text.text[at:start]))
        found.append(Segment(shown.text.text[start:end], value, (int(color[0]), int(color[1]), int(color[2])), token))
        at = end
    if at < len(shown.text.text):
        found.append(Segment(shown.text.text[at:]))
    return found, peak


def _specials(shown: Shown) -> str:
    return ", ".join(f"{token} {value:+.3g}" for token, special, value in
                     zip(shown.text.tokens, shown.text.special, shown.relevance, strict=True) if special)


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#111}
.text{font-size:1.25em;line-height:2;white-space:pre-wrap}
.token{padding:.1em 0}
.scale{display:flex;align-items:center;gap:.5em;margin:.5em 0}
.bar{width:20em;height:.8em;background:linear-gradient(to right,rgb(0,0,255),rgb(255,255,255),rgb(255,0,0));
border:1px solid #999}
section{border-top:1px solid #ccc;padding-top:.5em;margin-top:1em}
"""


def text_html(heading: str, explained: Sequence[Shown]) -> str:
    """A self-contained HTML page of the explanations: each token a <span class="token"> whose background is its
    colour and whose data-relevance is its relevance."""
    parts = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(heading)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(heading)}</h1>"]
    for shown in explained:
        found, peak = segments(shown)
        spans = "".join(
            html.escape(s.text) if s.relevance is None else
            f"<span class=\"token\" style=\"background:rgb{s.color}\" data-relevance=\"{s.relevance:.6g}\" "
            f"title=\"{html.escape(s.token)}: {s.relevance:+.4g}\">{html.escape(s.text)}</span>" for s in found)
        parts.append(
            f"<section class=\"explanation\"><h2>{html.escape(shown.title)}</h2><p class=\"text\">{spans}</p>"
            f"<p class=\"special\">special tokens: {html.escape(_specials(shown) or 'none')}</p>"
            f"<div class=\"scale\"><span>{-peak:.3g}</span><div class=\"bar\"></div><span>+{peak:.3g}</span></div>"
            "<p>relevance: red for the class, blue against</p>"
            f"<p class=\"for\">for: {html.escape(_listed(shown.top_positive))}</p>"
            f"<p class=\"against\">against: {html.escape(_listed(shown.top_negative))}</p></section>")
    parts.append("</body></html>")
    return "".join(parts)


def _listed(found: Sequence[Word], limit: int | None = None) -> str:
    return ", ".join(f"{word.text} ({word.relevance:+.3g})" for word in found[:limit]) or "none"


LINE_BREAK = "\n"  # a run of its own: the next run starts a new line (a pair's two texts)


def _runs(found: Sequence[Segment]) -> list[list[tuple[Segment, str]]]:
    """The text's pieces grouped into runs that a line may not break inside (a word and its word pieces and
    punctuation); each run but the last ends with the space after it; each line break is a run of its own."""
    runs: list[list[tuple[Segment, str]]] = [[]]
    for segment in found:
        if segment.relevance is not None:
            runs[-1].append((segment, segment.text))
            continue
        for number, line in enumerate(segment.text.split(LINE_BREAK)):
            if number:
                runs.extend([[(segment, LINE_BREAK)], []])
            words_ = line.split(" ")
            for i, piece in enumerate(words_):
                if piece:
                    runs[-1].append((segment, piece))
                if i < len(words_) - 1:
                    runs[-1].append((segment, " "))
                    runs.append([])
    return [run for run in runs if run]


def _text_block(shown: Shown) -> tuple[Image.Image, float]:
    """The text wrapped at TEXT_WIDTH (between words) with coloured token backgrounds, then the special tokens and
    the top five words for and against."""
    found, peak = segments(shown)
    font = ImageFont.load_default(size=FONT_SIZE)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    placed: list[tuple[int, int, Segment, str]] = []
    x = y = 0
    for run in _runs(found):
        if run[0][1] == LINE_BREAK:
            x, y = 0, y + LINE_HEIGHT
            continue
        widths = [round(measure.textlength(text, font=font)) for _, text in run]
        if x + sum(widths) > TEXT_WIDTH and x > 0:
            x, y = 0, y + LINE_HEIGHT
        for (segment, text), width in zip(run, widths, strict=True):
            placed.append((x, y, segment, text))
            x += width
    notes = [f"special tokens: {_specials(shown) or 'none'}", f"for: {_listed(shown.top_positive, 5)}",
             f"against: {_listed(shown.top_negative, 5)}"]
    image = Image.new("RGB", (TEXT_WIDTH + 8, y + LINE_HEIGHT * (2 + len(notes))), "white")
    draw = ImageDraw.Draw(image)
    for x, y_at, segment, text in placed:
        if segment.relevance is not None:
            draw.rectangle((x + 4, y_at + 2, x + 4 + round(draw.textlength(text, font=font)), y_at + LINE_HEIGHT - 2),
                           fill=segment.color)
        draw.text((x + 4, y_at + 4), text, fill="black", font=font)
    small = ImageFont.load_default(size=12)
    for row, note in enumerate(notes):
        draw.text((4, y + LINE_HEIGHT * (row + 1) + 8), note, fill="black", font=small)
    return image, peak


def text_png(explained: Sequence[Shown], curves: Sequence[Curves | None] | None = None) -> bytes:
    """The explanations as a PNG: one panel per text (title, coloured text, colour scale, its faithfulness curves
    when given), a grid for several."""
    panels = [panel(block, shown.title, peak) for shown in explained for block, peak in [_text_block(shown)]]
    return png_bytes(grid_of(panels, curves))
