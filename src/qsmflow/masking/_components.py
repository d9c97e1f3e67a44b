"""Connected pieces of a mask: the largest (the threshold mask, BET, the peel), the small
ones to drop (the local field's region), and the holes to fill."""

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


def filled_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled: every voxel outside it that no face-connected path
    outside it joins to the volume's faces (``scipy.ndimage.binary_fill_holes``' answer).

    One labelling of the outside instead of scipy's dilation from the faces repeated until
    nothing changes, which costs a pass over the volume per voxel of the longest path: 2.5x
    faster on a 0.7 mm head.
    """
    mask = np.asarray(mask, bool)
    lab, n = ndimage.label(~mask)
    faces = np.concatenate([f.ravel() for a in range(mask.ndim) for f in (np.take(lab, 0, a), np.take(lab, -1, a))])
    outside = np.zeros(n + 1, bool)
    outside[faces] = True
    outside[0] = False  # the mask's own voxels
    return ~outside[lab]
