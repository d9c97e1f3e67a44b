"""How much a field map changes across each voxel, from its neighbours inside a mask."""

from __future__ import annotations

import numpy as np


def field_spread(field_hz: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The field's change across each voxel along each axis (Hz per voxel), shape (X, Y, Z, 3), float64.

    The central difference between the voxel's neighbours along the axis where both are in
    ``mask``, the one-sided difference where one is, 0 where none is (or outside ``mask``'s
    neighbours): a field map is not valid outside its mask. Used for the signal lost to
    macroscopic dephasing (:func:`qsmflow.relaxometry.gradient_dephasing`) and the field
    model's error of a one-echo fit (:mod:`qsmflow.fieldmap`).
    """
    f = np.asarray(field_hz, np.float64)
    mask = np.asarray(mask, bool)
    spread = np.zeros(f.shape + (3,))
    m = mask.astype(float)
    for a in range(3):
        fwd = np.diff(f, axis=a, append=np.take(f, [-1], axis=a))
        bwd = np.diff(f, axis=a, prepend=np.take(f, [0], axis=a))
        inside_f = mask & (np.diff(m, axis=a, append=0) == 0)  # neighbour ahead also in the mask
        inside_b = mask & (np.diff(m, axis=a, prepend=0) == 0)
        spread[..., a] = np.where(inside_f & inside_b, (fwd + bwd) / 2,
                                  np.where(inside_f, fwd, np.where(inside_b, bwd, 0.0)))  # Hz per voxel
    return spread
