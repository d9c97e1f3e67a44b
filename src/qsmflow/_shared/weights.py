"""Data weights from a noise map, shared by background removal and inversion."""

from __future__ import annotations

import numpy as np

from . import checks as _checks


def noise_weights(noise, mask: np.ndarray) -> np.ndarray:
    """Data weights ``1/noise`` inside the mask, scaled to mean 1 and capped at 10x the median.

    Without a noise map (or with one that is unknown everywhere: NaN) every masked voxel
    weighs 1; a voxel of unknown noise (NaN) weighs 0. The cap keeps a handful of near-zero
    noise estimates from dominating a fit; a noise of exactly 0 gets the cap.
    """
    if noise is None:
        return mask.astype(np.float32)
    noise = np.asarray(noise, np.float64)
    _checks.same_shape("noise", noise, "mask", mask)
    if np.any(noise[mask] < 0):
        raise ValueError("the noise map holds negative values inside the mask; it must be a standard deviation (>= 0)")
    good = mask & np.isfinite(noise) & (noise > 0)
    if not good.any():
        return mask.astype(np.float32)
    w = np.zeros(mask.shape)
    w[good] = 1.0 / noise[good]
    cap = 10 * np.median(w[good])
    w[good] = np.minimum(w[good], cap)
    w[mask & (noise == 0)] = cap  # no noise at all: the most reliable voxel, not an unweighted one
    used = good | (mask & (noise == 0))
    return (w / w[used].mean()).astype(np.float32)
