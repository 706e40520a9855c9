"""PNG heatmaps of relevance: the colour map of service.render.colormap, summed over channels, optionally blended over
the input image, each framed as a panel (service.render.figure); several instances give a grid of panels."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.render.colormap import colorize
from service.render.figure import Curve, panel, with_curves

Curves = tuple[Curve, Curve, Curve, tuple[float, float, float]]  # MoRF, LeRF, random, their AOPCs

MIN_SIDE = 256  # heatmaps without an uploaded image are upscaled (nearest) until the longer side reaches this
MIN_STRIP_HEIGHT = 32  # 1 x N strips are stretched to at least this height
OVERLAY_OPACITY = 0.85  # opacity of the heatmap at the largest |relevance|; zero relevance shows the image
BAR_ROW_HEIGHT = 18
BAR_LABEL_WIDTH = 260
BAR_WIDTH = 300


def relevance_map(relevance: np.ndarray) -> np.ndarray:
    """A 2-D map: images [C, H, W] summed over channels; vectors [N] and signals [C, N] (summed) as a 1 x N strip."""
    flat: np.ndarray = relevance.reshape(1, -1)
    if relevance.ndim >= 3:
        flat = relevance.reshape(-1, *relevance.shape[-2:]).sum(axis=0)
    elif relevance.ndim == 2:
        flat = relevance.sum(axis=0, keepdims=True)
    return flat


def scaled(relevance: np.ndarray) -> np.ndarray:
    """Relevance divided by its largest magnitude: values in [-1, 1], 0 stays 0 (all-zero maps stay 0)."""
    peak = float(np.abs(relevance).max()) if relevance.size else 0.0
    result: np.ndarray = relevance / peak if peak > 0 else np.zeros_like(relevance, dtype=np.float64)
    return result


def heatmap(relevance: np.ndarray, base: np.ndarray | None = None, overlay: bool = False) -> Image.Image:
    """The heatmap of one instance, at the base image's size when given (blended over it with overlay)."""
    values = scaled(relevance_map(relevance).astype(np.float64))
    colors = Image.fromarray(colorize(values), "RGB")
    if base is None:
        height, width = values.shape
        factor = math.ceil(MIN_SIDE / max(height, width))
        return colors.resize((width * factor, max(height * factor, MIN_STRIP_HEIGHT)), Image.Resampling.NEAREST)
    if max(base.shape[:2]) < MIN_SIDE:  # a tiny input image: enlarge it so the overlay can be seen
        factor = math.ceil(MIN_SIDE / max(base.shape[:2]))
        base = np.asarray(Image.fromarray(base, "RGB").resize((base.shape[1] * factor, base.shape[0] * factor),
                                                              Image.Resampling.NEAREST))
    size = (base.shape[1], base.shape[0])
    colors = colors.resize(size, Image.Resampling.NEAREST)
    if not overlay:
        return colors
    strength = Image.fromarray(np.abs(values).astype(np.float32), "F").resize(size, Image.Resampling.NEAREST)
    alpha = np.asarray(strength, dtype=np.float32)[..., None] * np.float32(OVERLAY_OPACITY)  # float32: half the memory
    blended = base.astype(np.float32) * (1 - alpha) + np.asarray(colors, dtype=np.float32) * alpha
    return Image.fromarray(np.round(blended).astype(np.uint8), "RGB")


def feature_bars(names: Sequence[str], relevance: np.ndarray) -> Image.Image:
    """Tabular relevance as horizontal bars, most relevant feature first, coloured like the heatmap."""
    order = np.argsort(-np.abs(relevance), kind="stable")
    values = scaled(relevance.astype(np.float64))
    font = ImageFont.load_default(size=12)
    image = Image.new("RGB", (BAR_LABEL_WIDTH + 2 * BAR_WIDTH + 90, BAR_ROW_HEIGHT * len(names) + 8), "white")
    draw = ImageDraw.Draw(image)
    centre = BAR_LABEL_WIDTH + BAR_WIDTH
    for row, index in enumerate(order):
        top = 4 + row * BAR_ROW_HEIGHT
        value = float(values[index])
        length = round(abs(value) * BAR_WIDTH)
        left, right = (centre, centre + length) if value >= 0 else (centre - length, centre)
        color = tuple(int(c) for c in colorize(np.array([1.0 if value >= 0 else -1.0]))[0])
        draw.text((4, top + 2), names[index], fill="black", font=font)
        if length:
            draw.rectangle((left, top + 2, right, top + BAR_ROW_HEIGHT - 3), fill=color)
        draw.text((centre + BAR_WIDTH + 6, top + 2), f"{float(relevance[index]):+.3g}", fill="black", font=font)
    draw.line((centre, 0, centre, image.height), fill="black")
    return image


def grid(tiles: Sequence[Image.Image]) -> Image.Image:
    """Tiles in a near-square grid on white."""
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    cell_w = max(t.width for t in tiles) + 8
    cell_h = max(t.height for t in tiles) + 8
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * cell_w + 4, (i // columns) * cell_h + 4))
    return sheet


def explanation_png(relevances: Sequence[np.ndarray], titles: Sequence[str], bases: Sequence[np.ndarray | None],
                    overlay: bool, feature_names: Sequence[str] | None = None,
                    cell_labels: Sequence[str] | None = None, curves: Sequence[Curves | None] | None = None) -> bytes:
    """One panel per instance (its heatmap, or feature bars for tabular models, under its title and over its colour
    scale; `cell_labels` name the cells of 1 x N strips; its faithfulness curves under it when given); several
    instances give a grid of panels. PNG bytes."""
    panels = []
    for relevance, title, base in zip(relevances, titles, bases, strict=True):
        if feature_names is not None:
            panels.append(panel(feature_bars(feature_names, relevance), title, float(np.abs(relevance).max())))
            continue
        shown = relevance_map(relevance)  # what the heatmap's colours are scaled to
        labels = cell_labels if shown.shape[0] == 1 else None
        panels.append(panel(heatmap(relevance, base, overlay), title, float(np.abs(shown).max()), labels))
    return png_bytes(grid_of(panels, curves))


def grid_of(panels: Sequence[Image.Image], curves: Sequence[Curves | None] | None) -> Image.Image:
    """The panels, each over its curves where it has them, alone or in a grid."""
    drawn = [tile if found is None else with_curves(tile, *found) for tile, found in
             zip(panels, curves or [None] * len(panels), strict=True)]
    return drawn[0] if len(drawn) == 1 else grid(drawn)


def png_bytes(image: Image.Image) -> bytes:
    """The image encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
