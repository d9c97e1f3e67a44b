"""Multi-echo combination: unwrapped phase -> total field (Hz) and its noise (Hz).

Every method has the signature ``(phase, magnitude, echo_times, *, mask) ->
(field_hz, noise_hz)`` for (X, Y, Z, E) arrays; the phase is unwrapped (2π-consistent
across echoes) and may still hold an echo-independent offset φ0. A dual-echo field
map given as a phase difference goes through :func:`phasediff_fieldmap`.
"""

from __future__ import annotations

import logging

import numpy as np

from . import _checks, _romeo
from .registry import Method

log = logging.getLogger(__name__)

__all__ = ["METHODS", "background_sigma", "complex_fit", "phasediff_fieldmap", "weighted_linear_fit"]

# A voxel whose weighted residual exceeds this many times the pooled noise level is
# taken to break the linear model (intravoxel dephasing next to air, flow, an
# unwrapping error), and its noise estimate grows with the residual.
_MODEL_FAILURE_RATIO = 3.0


def _inputs(phase, magnitude, echo_times, mask):
    phase = _checks.as_volume("phase", phase, ndim=4)
    magnitude = _checks.as_volume("magnitude", magnitude, ndim=4)
    _checks.same_shape("phase", phase, "magnitude", magnitude)
    te = _checks.echo_times(echo_times, phase.shape[3])
    shape = phase.shape[:3]
    mask = np.ones(shape, bool) if mask is None else _checks.as_mask("mask", mask, shape)
    return phase, magnitude, te, mask


def _wls_line(p: np.ndarray, w: np.ndarray, te: np.ndarray):
    """Weighted line ``p ≈ a + b·t`` per row of (V, E) arrays: (a, b, Σw(t - t̄)²)."""
    sw = np.maximum(w.sum(axis=1), 1e-30)
    tbar = (w @ te) / sw
    pbar = np.sum(w * p, axis=1) / sw
    dt = te[None, :] - tbar[:, None]
    sxx = np.sum(w * dt * dt, axis=1)
    b = np.sum(w * dt * (p - pbar[:, None]), axis=1) / np.maximum(sxx, 1e-30)
    return pbar - b * tbar, b, sxx


def _noise_hz(resid: np.ndarray, w: np.ndarray, sxx: np.ndarray) -> tuple[np.ndarray, float]:
    """Field SD (Hz) per voxel and the pooled complex-noise σ, from weighted residuals.

    σ² is the median over voxels of ``Σ w r² / (E - 2)`` (``w = |S|²``, so this is the
    complex noise variance); a voxel's own residual raises its value where it exceeds
    ``_MODEL_FAILURE_RATIO`` times the pooled one.
    """
    dof = resid.shape[1] - 2
    chi2 = np.sum(w * resid * resid, axis=1) / dof
    sigma2 = float(np.median(chi2))
    inflate = np.maximum(1.0, chi2 / (_MODEL_FAILURE_RATIO * sigma2)) if sigma2 > 0 else 1.0
    return np.sqrt(sigma2 * inflate / np.maximum(sxx, 1e-30)) / (2 * np.pi), float(np.sqrt(sigma2))


def background_sigma(magnitude: np.ndarray, mask: np.ndarray) -> float:
    """Complex noise σ from the Rayleigh-distributed magnitude outside ``mask``.

    Only the lower half of the background is trusted to be air; the 25th percentile
    of a Rayleigh(σ) variable is σ·sqrt(-2 ln 0.75). Without enough background the
    noise level is unknown and NaN is returned: the noise map is then NaN (unknown),
    data weights fall back to uniform and regularisation weights to fixed values.
    """
    bg = magnitude[~mask]
    bg = bg[bg > 0]
    if bg.size < 100:
        log.warning("too little background (air) to estimate the image noise level; it is unknown (NaN)")
        return float("nan")
    return float(np.percentile(bg, 25) / np.sqrt(-2 * np.log(0.75)))


def _few_echoes(phase, magnitude, te, mask):
    """One or two echoes: no residual degrees of freedom; σ from the background."""
    sigma = background_sigma(magnitude[..., 0], mask)
    p, m = phase[mask].astype(np.float64), magnitude[mask].astype(np.float64)
    if te.size == 1:
        f = p[:, 0] / (2 * np.pi * te[0])
        sd = sigma / np.maximum(m[:, 0], 1e-30) / (2 * np.pi * te[0])
    else:
        _, b, sxx = _wls_line(p, m * m, te)
        f = b / (2 * np.pi)
        sd = sigma / np.sqrt(np.maximum(sxx, 1e-30)) / (2 * np.pi)
    return f, sd


def _to_volume(values, mask):
    out = np.zeros(mask.shape, np.float32)
    out[mask] = np.minimum(values, np.finfo(np.float32).max)
    return out


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
        Voxels to fit (0 outside); default all.

    Returns
    -------
    field_hz : ndarray (float32)
        Off-resonance frequency (Hz).
    noise_hz : ndarray (float32)
        Standard deviation of ``field_hz`` (Hz): ``σ / (2π·sqrt(Σ|S_n|²(TE_n-T̄)²))``,
        σ pooled from the weighted residuals (three or more echoes; raised in voxels
        whose own residual is far larger) or from the magnitude noise floor outside
        the mask (one or two echoes).

    References
    ----------
    Wu B, Li W, Avram AV, Gho SM, Liu C. Fast and tissue-optimized mapping of
    magnetic susceptibility and T2* with multi-echo and multi-shot spirals.
    NeuroImage 2012;59:297-305. doi:10.1016/j.neuroimage.2011.07.019
    """
    phase, magnitude, te, mask = _inputs(phase, magnitude, echo_times, mask)
    if te.size < 3:
        f, sd = _few_echoes(phase, magnitude, te, mask)
        return _to_volume(f, mask), _to_volume(sd, mask)
    p, m = phase[mask].astype(np.float64), magnitude[mask].astype(np.float64)
    w = m * m
    a, b, sxx = _wls_line(p, w, te)
    sd, sigma = _noise_hz(p - a[:, None] - b[:, None] * te, w, sxx)
    log.info("weighted linear field fit over %d echoes: complex noise sigma %.4g", te.size, sigma)
    return _to_volume(b / (2 * np.pi), mask), _to_volume(sd, mask)


def complex_fit(
    phase: np.ndarray,
    magnitude: np.ndarray,
    echo_times,
    *,
    mask: np.ndarray | None = None,
    max_iter: int = 20,
    tol_hz: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """Nonlinear fit of the complex signal ``S_n ≈ |S_n|·exp(i(φ0 + 2π·f·TE_n))``.

    Minimises ``Σ_n |S_n|²·(1 - cos(φ_n - φ0 - 2π f TE_n))``, i.e. the distance between
    the measured and modelled complex signals, by Gauss-Newton steps on the wrapped
    residual, vectorised over voxels. The cost does not see whole turns of 2π, so an
    echo left off by 2π after unwrapping does not pull the field; the unwrapped phase
    only provides two starting points (the weighted line through all echoes and the
    line through the first two), and each voxel keeps the lower optimum.

    Parameters
    ----------
    phase : ndarray (X, Y, Z, E)
        Unwrapped (or at least temporally consistent) phase (rad).
    magnitude : ndarray (X, Y, Z, E)
        Magnitude of each echo.
    echo_times : sequence of float
        Echo times (s), any spacing; three or more echoes (fewer: the linear fit).
    mask : ndarray of bool, optional
        Voxels to fit (0 outside); default all.
    max_iter : int
        Gauss-Newton iterations at most.
    tol_hz : float
        Stop when no voxel's field moves by more than this (Hz).

    Returns
    -------
    field_hz, noise_hz : ndarray (float32)
        As for :func:`weighted_linear_fit`, from the converged fit.

    References
    ----------
    Liu T, Wisnieff C, Lou M, Chen W, Spincemaille P, Wang Y. Nonlinear formulation
    of the magnetic field to source relationship for robust quantitative
    susceptibility mapping. Magn Reson Med 2013;69:467-476. doi:10.1002/mrm.24272
    """
    phase, magnitude, te, mask = _inputs(phase, magnitude, echo_times, mask)
    if te.size < 3:
        return weighted_linear_fit(phase, magnitude, te, mask=mask)
    p, m = phase[mask].astype(np.float64), magnitude[mask].astype(np.float64)
    w = m * m
    a_lin, b_lin, sxx = _wls_line(p, w, te)
    # two starting points: the line through all echoes, and the line through the first
    # two (least likely to hold a 2π error); each voxel keeps the better optimum
    b_two = (p[:, 1] - p[:, 0]) / (te[1] - te[0])
    fits = [_gauss_newton(p, w, te, a, b, max_iter, tol_hz) for a, b in
            ((a_lin, b_lin), (p[:, 0] - b_two * te[0], b_two))]
    costs = [np.sum(w * (1 - np.cos(_romeo.wrap(p - a[:, None] - b[:, None] * te))), axis=1) for a, b, _ in fits]
    pick = costs[1] < costs[0]
    a = np.where(pick, fits[1][0], fits[0][0])
    b = np.where(pick, fits[1][1], fits[0][1])
    r = _romeo.wrap(p - a[:, None] - b[:, None] * te)
    sd, sigma = _noise_hz(r, w, sxx)
    log.info("complex field fit over %d echoes: %d/%d Gauss-Newton iterations, %d voxels better from echoes 1-2, "
             "complex noise sigma %.4g", te.size, fits[0][2], fits[1][2], int(pick.sum()), sigma)
    return _to_volume(b / (2 * np.pi), mask), _to_volume(sd, mask)


def _gauss_newton(p, w, te, a, b, max_iter, tol_hz):
    """Gauss-Newton on the wrapped residual of ``p ≈ a + b·t`` per voxel; (a, b, iterations)."""
    a, b = a.copy(), b.copy()
    for it in range(1, max_iter + 1):
        r = _romeo.wrap(p - a[:, None] - b[:, None] * te)
        da, db, _ = _wls_line(r, w, te)
        a += da
        b += db
        if np.max(np.abs(db)) / (2 * np.pi) < tol_hz:
            break
    return a, b, it


def phasediff_fieldmap(
    phasediff: np.ndarray,
    magnitude: np.ndarray,
    delta_te: float,
    voxel_size,
    *,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """B0 field map (Hz) from a dual-echo phase-difference image.

    The phase difference ``φ(TE2) - φ(TE1)`` (rad, wrapped) is unwrapped with the
    quality-guided spanning tree (magnitude-weighted), its whole turn chosen so the
    median inside the mask lies in (-π, π], and divided by ``2π·(TE2 - TE1)``.

    Parameters
    ----------
    phasediff : ndarray (X, Y, Z)
        Wrapped phase difference (rad).
    magnitude : ndarray (X, Y, Z)
        A magnitude image of the same acquisition.
    delta_te : float
        ``TE2 - TE1`` (s).
    voxel_size : sequence of 3 float
        Voxel size (mm).
    mask : ndarray of bool, optional
        Where to unwrap (0 outside); default all.

    Returns
    -------
    ndarray (float32)
        Field (Hz).

    References
    ----------
    Jezzard P, Balaban RS. Correction for geometric distortion in echo planar images
    from B0 field variations. Magn Reson Med 1995;34:65-73. doi:10.1002/mrm.1910340111

    Dymerska B, et al. Magn Reson Med 2021;85:2294-2308. doi:10.1002/mrm.28563
    """
    from .unwrap import romeo_unwrap

    phasediff = _checks.as_volume("phasediff", phasediff)
    magnitude = _checks.as_volume("magnitude", magnitude)
    _checks.same_shape("phasediff", phasediff, "magnitude", magnitude)
    dte = _checks.positive("delta_te", delta_te)
    if dte > 0.1:
        raise ValueError(f"delta_te must be in seconds, got {dte}: this looks like milliseconds")
    unwrapped = romeo_unwrap(phasediff, voxel_size, mask=mask, magnitude=magnitude)
    return (unwrapped / (2 * np.pi * dte)).astype(np.float32)


METHODS = {
    "complex": Method(
        "complex",
        complex_fit,
        "nonlinear fit of the complex multi-echo signal (robust to 2π errors), noise from the fit",
        ("Liu T, Wisnieff C, Lou M, Chen W, Spincemaille P, Wang Y. Nonlinear formulation of the magnetic field "
         "to source relationship for robust quantitative susceptibility mapping. Magn Reson Med "
         "2013;69:467-476. doi:10.1002/mrm.24272",),
    ),
    "wls": Method(
        "wls",
        weighted_linear_fit,
        "magnitude²-weighted linear fit of unwrapped phase over echo time",
        ("Wu B, Li W, Avram AV, Gho SM, Liu C. Fast and tissue-optimized mapping of magnetic susceptibility "
         "and T2* with multi-echo and multi-shot spirals. NeuroImage 2012;59:297-305. "
         "doi:10.1016/j.neuroimage.2011.07.019",),
    ),
}
