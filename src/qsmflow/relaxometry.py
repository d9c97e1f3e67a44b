"""R2*/T2* mapping from the multi-echo magnitude."""

from __future__ import annotations

import logging

import numpy as np

from . import _checks
from .constants import R2STAR_CAP_PER_S, T2STAR_CAP_S
from .registry import Method

log = logging.getLogger(__name__)

__all__ = ["METHODS", "loglinear_r2star", "t2star_from_r2star"]


def loglinear_r2star(
    magnitude: np.ndarray,
    echo_times,
    *,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted log-linear fit of ``ln S_n = ln S0 - R2*·TE_n``.

    The weights are ``S_n²``: with complex noise σ, ``ln S`` has variance ``σ²/S²``,
    so late, dark echoes count less. Exact for noise-free mono-exponential decay.

    Parameters
    ----------
    magnitude : ndarray (X, Y, Z, E)
        Magnitude, E ≥ 2 echoes.
    echo_times : sequence of float
        Echo times (s).
    mask : ndarray of bool, optional
        Voxels to fit (default: every voxel with signal in all echoes).

    Returns
    -------
    r2star : ndarray (float32)
        R2* (1/s), clipped to [0, R2STAR_CAP_PER_S]; 0 outside the mask.
    s0 : ndarray (float32)
        Signal extrapolated to TE = 0.

    References
    ----------
    Gudbjartsson H, Patz S. The Rician distribution of noisy MRI data. Magn Reson
    Med 1995;34:910-914. doi:10.1002/mrm.1910340618 (variance of log-magnitude).
    """
    mag = _checks.as_volume("magnitude", magnitude, ndim=4)
    te = _checks.echo_times(echo_times, mag.shape[3])
    if te.size < 2:
        raise ValueError("R2* needs at least 2 echoes; single-echo data give no R2*/T2* map")
    shape = mag.shape[:3]
    positive = np.all(mag > 0, axis=3)
    mask = positive if mask is None else (_checks.as_mask("mask", mask, shape) & positive)
    s = mag[mask].astype(np.float64)  # (V, E)
    y = np.log(s)
    w = s * s
    sw = w.sum(axis=1)
    tbar = (w @ te) / sw
    ybar = np.sum(w * y, axis=1) / sw
    dt = te[None, :] - tbar[:, None]
    slope = np.sum(w * dt * (y - ybar[:, None]), axis=1) / np.sum(w * dt * dt, axis=1)
    r2 = np.zeros(shape, np.float32)
    s0 = np.zeros(shape, np.float32)
    r2[mask] = np.clip(-slope, 0.0, R2STAR_CAP_PER_S)
    s0[mask] = np.exp(ybar - slope * tbar)
    log.info("log-linear R2* over %d echoes in %d voxels", te.size, int(mask.sum()))
    return r2, s0


def t2star_from_r2star(r2star: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """T2* = 1/R2* (s), capped at ``T2STAR_CAP_S``; R2* ≤ 0 gives the cap; 0 outside ``mask``."""
    r2 = np.asarray(r2star, dtype=np.float64)
    with np.errstate(divide="ignore"):
        t2 = np.where(r2 > 1.0 / T2STAR_CAP_S, 1.0 / np.where(r2 > 0, r2, 1.0), T2STAR_CAP_S)
    if mask is not None:
        t2 = np.where(mask, t2, 0.0)
    return t2.astype(np.float32)


METHODS = {
    "loglinear": Method(
        "loglinear",
        loglinear_r2star,
        "S²-weighted log-linear fit",
        ("Gudbjartsson H, Patz S. The Rician distribution of noisy MRI data. Magn Reson Med 1995;34:910-914. "
         "doi:10.1002/mrm.1910340618",),
    ),
}
