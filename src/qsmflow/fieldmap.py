"""Multi-echo combination: unwrapped phase -> total field (Hz) and its noise (Hz)."""

from __future__ import annotations

import logging

import numpy as np

from . import _checks
from .registry import Method

log = logging.getLogger(__name__)

__all__ = ["METHODS", "weighted_linear_fit"]


def weighted_linear_fit(
    phase: np.ndarray,
    magnitude: np.ndarray,
    echo_times,
    *,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares fit of ``φ_n = φ0 + 2π·f·TE_n`` over echoes.

    The weights are ``|S_n|²``: the phase of an echo with magnitude ``|S|`` and
    complex noise σ has variance ``σ²/|S|²``, so this is the maximum-likelihood
    line at high SNR. With one echo ``φ0`` is taken as 0.

    Parameters
    ----------
    phase : ndarray (X, Y, Z, E)
        Unwrapped phase (rad), consistent across echoes up to ``φ0``.
    magnitude : ndarray (X, Y, Z, E)
        Magnitude of each echo.
    echo_times : sequence of float
        Echo times (s), any spacing.
    mask : ndarray of bool, optional
        Voxels used to estimate the noise level (default: all with signal).

    Returns
    -------
    field_hz : ndarray (float32)
        Off-resonance frequency (Hz).
    noise_hz : ndarray (float32)
        Standard deviation of ``field_hz`` from the fit (Hz): ``σ / (2π·sqrt(Σ|S_n|²(TE_n-T̄)²))``
        with σ pooled from the weighted residuals inside ``mask`` (three or more
        echoes), else from the magnitude noise floor outside ``mask``.

    References
    ----------
    Wu B, Li W, Avram AV, Gho SM, Liu C. Fast and tissue-optimized mapping of
    magnetic susceptibility and T2* with multi-echo and multi-shot spirals.
    NeuroImage 2012;59:297-305. doi:10.1016/j.neuroimage.2011.07.019
    """
    phase = _checks.as_volume("phase", phase, ndim=4)
    magnitude = _checks.as_volume("magnitude", magnitude, ndim=4)
    _checks.same_shape("phase", phase, "magnitude", magnitude)
    te = _checks.echo_times(echo_times, phase.shape[3])
    shape = phase.shape[:3]
    mask = np.ones(shape, bool) if mask is None else _checks.as_mask("mask", mask, shape)

    w = magnitude.astype(np.float64) ** 2
    if te.size == 1:
        field = phase[..., 0] / (2 * np.pi * te[0])
        sigma = _noise_from_background(magnitude[..., 0], mask)
        with np.errstate(divide="ignore"):
            noise = sigma / (2 * np.pi * te[0] * magnitude[..., 0])
        return field.astype(np.float32), np.minimum(noise, np.finfo(np.float32).max).astype(np.float32)

    sw = w.sum(axis=3)
    safe = sw > 0
    sw_safe = np.where(safe, sw, 1.0)
    tbar = (w @ te) / sw_safe
    dt = te[None, None, None, :] - tbar[..., None]
    pbar = np.sum(w * phase, axis=3) / sw_safe
    sxx = np.sum(w * dt * dt, axis=3)
    sxy = np.sum(w * dt * (phase - pbar[..., None]), axis=3)
    sxx_safe = np.where(sxx > 0, sxx, 1.0)
    slope = np.where(sxx > 0, sxy / sxx_safe, 0.0)  # rad/s
    field = slope / (2 * np.pi)

    if te.size >= 3:
        resid = phase - (pbar[..., None] + slope[..., None] * dt)
        chi2 = np.sum(w * resid * resid, axis=3) / (te.size - 2)
        sel = mask & safe
        sigma = float(np.sqrt(np.median(chi2[sel]))) if sel.any() else 0.0
    else:
        sigma = _noise_from_background(magnitude[..., 0], mask)
    with np.errstate(divide="ignore"):
        noise = np.where(sxx > 0, sigma / (2 * np.pi * np.sqrt(sxx_safe)), np.inf)
    noise = np.minimum(noise, np.finfo(np.float32).max)
    log.info("weighted field fit over %d echoes: complex noise sigma %.4g", te.size, sigma)
    return field.astype(np.float32), noise.astype(np.float32)


def _noise_from_background(magnitude: np.ndarray, mask: np.ndarray) -> float:
    """Complex noise σ from the Rayleigh-distributed magnitude outside ``mask``.

    Only the lower half of the background is trusted to be air; the 25th percentile
    of a Rayleigh(σ) variable is σ·sqrt(-2 ln 0.75). Without enough background the
    noise level is unknown and 1 is returned (the map is then relative).
    """
    bg = magnitude[~mask]
    bg = bg[bg > 0]
    if bg.size < 100:
        log.warning("too little background to estimate the noise level; the noise map is relative")
        return 1.0
    return float(np.percentile(bg, 25) / np.sqrt(-2 * np.log(0.75)))


METHODS = {
    "wls": Method(
        "wls",
        weighted_linear_fit,
        "magnitude²-weighted linear fit of unwrapped phase over echo time",
        ("Wu B, Li W, Avram AV, Gho SM, Liu C. Fast and tissue-optimized mapping of magnetic susceptibility "
         "and T2* with multi-echo and multi-shot spirals. NeuroImage 2012;59:297-305. "
         "doi:10.1016/j.neuroimage.2011.07.019",),
    ),
}
