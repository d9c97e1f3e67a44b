"""Connected pieces of a mask: the largest (the threshold mask, BET, the peel) and the small
ones to drop (the local field's region)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected piece of ``mask`` (``mask`` itself when it has at most one)."""
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == np.argmax(sizes)


def small_pieces_removed(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """``mask`` without its face-connected pieces of fewer than ``min_voxels`` voxels (the
    largest piece always kept)."""
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = sizes >= min(int(min_voxels), int(sizes.max()))
    keep[0] = False
    return keep[lab]
