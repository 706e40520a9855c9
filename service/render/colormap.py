"""The one colour map of every picture the service draws: blue for negative relevance, white at zero, red for
positive, linear in between."""

from __future__ import annotations

import numpy as np

WHITE = np.array([255.0, 255.0, 255.0])
RED = np.array([255.0, 0.0, 0.0])
BLUE = np.array([0.0, 0.0, 255.0])


def colorize(values: np.ndarray) -> np.ndarray:
    """uint8 RGB of values in [-1, 1]: -1 blue, 0 white, +1 red, linear in between."""
    t = np.clip(values, -1.0, 1.0)[..., None]
    rgb = np.where(t >= 0, WHITE + t * (RED - WHITE), WHITE - t * (BLUE - WHITE))
    result: np.ndarray = np.round(rgb).astype(np.uint8)
    return result
