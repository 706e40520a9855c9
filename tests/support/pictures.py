"""Looking inside the PNGs the service draws: where a tile sits in a panel, and what a panel says."""

from __future__ import annotations

import numpy as np


def find(picture: np.ndarray, tile: np.ndarray) -> tuple[int, int] | None:
    """The (row, column) at which `tile` appears pixel for pixel inside `picture`, or None."""
    rows, columns = picture.shape[0] - tile.shape[0] + 1, picture.shape[1] - tile.shape[1] + 1
    for top in range(max(rows, 0)):
        candidates = np.flatnonzero((picture[top, :columns] == tile[0, 0]).all(axis=-1))
        for left in candidates:
            if np.array_equal(picture[top:top + tile.shape[0], left:left + tile.shape[1]], tile):
                return top, int(left)
    return None
