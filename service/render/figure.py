"""A tile (heatmap or feature bars) made readable on its own: a title above (the class explained, its logit and
probability), cell labels under a 1 x N strip, and the colour scale below with the relevance it stands for."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.render.colormap import colorize

PAD = 6
TITLE_HEIGHT = 20
LABEL_HEIGHT = 16
SCALE_HEIGHT = 10
SCALE_TEXT_HEIGHT = 32  # the numbers under the colour bar, and the line that says what the colours mean
MIN_WIDTH = 240  # a panel is at least this wide, so that the title and the scale's numbers fit


def panel(tile: Image.Image, title: str, peak: float, cell_labels: Sequence[str] | None = None) -> Image.Image:
    """`tile` under `title`, with `cell_labels` centred under its columns (a 1 x N strip) and a colour bar from
    -peak (blue) through 0 (white) to +peak (red) under it; `peak` is the largest |relevance| of the tile."""
    width = max(tile.width, MIN_WIDTH) + 2 * PAD
    labels_height = LABEL_HEIGHT if cell_labels else 0
    height = TITLE_HEIGHT + tile.height + labels_height + PAD + SCALE_HEIGHT + SCALE_TEXT_HEIGHT + PAD
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12)
    draw.text((PAD, 4), title, fill="black", font=font)
    left = (width - tile.width) // 2
    image.paste(tile, (left, TITLE_HEIGHT))
    top = TITLE_HEIGHT + tile.height
    if cell_labels:
        cell = tile.width / len(cell_labels)
        for i, label in enumerate(cell_labels):
            draw.text((left + (i + 0.5) * cell, top + 2), label, fill="black", font=font, anchor="ma")
    top += labels_height + PAD
    bar_width = width - 2 * PAD
    bar = colorize(np.linspace(-1.0, 1.0, bar_width))[None].repeat(SCALE_HEIGHT, axis=0)
    image.paste(Image.fromarray(bar, "RGB"), (PAD, top))
    text_top = top + SCALE_HEIGHT + 2
    draw.text((PAD, text_top), f"{-peak:.3g}", fill="black", font=font, anchor="la")
    draw.text((width // 2, text_top), "0", fill="black", font=font, anchor="ma")
    draw.text((width - PAD, text_top), f"+{peak:.3g}", fill="black", font=font, anchor="ra")
    draw.text((width // 2, text_top + 15), "relevance: red for the class, blue against", fill="black", font=font,
              anchor="ma")
    return image


CURVE_HEIGHT = 170
MORF_COLOR, LERF_COLOR, RANDOM_COLOR = (200, 0, 0), (0, 0, 200), (120, 120, 120)
Curve = Sequence[float]


def with_curves(tile: Image.Image, morf: Curve, lerf: Curve, random: Curve, aopcs: tuple[float, float, float]
                ) -> Image.Image:
    """`tile` above the faithfulness curves: the target logit after each removal step, most relevant first (red),
    least relevant first (blue) and random (grey), with the AOPC of each in the legend."""
    width = max(tile.width, MIN_WIDTH)
    chart = Image.new("RGB", (width, CURVE_HEIGHT), "white")
    draw = ImageDraw.Draw(chart)
    font = ImageFont.load_default(size=11)
    left, right, top, bottom = 40, width - PAD, 8, CURVE_HEIGHT - 60
    values = [*morf, *lerf, *random]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    draw.rectangle((left, top, right, bottom), outline=(180, 180, 180))
    draw.text((left - 4, top), f"{high:.3g}", fill="black", font=font, anchor="ra")
    draw.text((left - 4, bottom), f"{low:.3g}", fill="black", font=font, anchor="rd")
    for curve, color in ((random, RANDOM_COLOR), (lerf, LERF_COLOR), (morf, MORF_COLOR)):
        steps = max(len(curve) - 1, 1)
        points = [(left + (right - left) * j / steps, bottom - (bottom - top) * (v - low) / span)
                  for j, v in enumerate(curve)]
        draw.line(points, fill=color, width=2)
    morf_aopc, lerf_aopc, random_aopc = aopcs
    lines = [("target logit as features are removed, step by step", (0, 0, 0)),
             (f"red: most relevant first, AOPC {morf_aopc:.3g}", MORF_COLOR),
             (f"blue: least relevant first, AOPC {lerf_aopc:.3g}", LERF_COLOR),
             (f"grey: random order, AOPC {random_aopc:.3g}", RANDOM_COLOR)]
    for row, (line, color) in enumerate(lines):
        draw.text((PAD, bottom + 6 + 13 * row), line, fill=color, font=font)
    stacked = Image.new("RGB", (max(tile.width, width), tile.height + CURVE_HEIGHT), "white")
    stacked.paste(tile, (0, 0))
    stacked.paste(chart, ((stacked.width - width) // 2, tile.height))
    return stacked
