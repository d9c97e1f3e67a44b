"""Multi-echo combination: unwrapped phase -> total field (Hz) and its noise (Hz).

Every method has the signature ``(phase, magnitude, echo_times, *, mask) ->
(field_hz, noise_hz)`` for (X, Y, Z, E) arrays; the phase is unwrapped (2π-consistent
across echoes) and may still hold an echo-independent offset φ0. A dual-echo field
map given as a phase difference goes through :func:`phasediff_fieldmap`.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from .._shared import checks as _checks
from .._shared import parallel
from .._shared.echoes import weighted_line
from .._shared.registry import Method
from .._shared.spread import field_spread
from .._shared.units import wrap
from .noise import MODEL_FAILURE_RATIO, background_sigma, redraw_noise, thermal_noise
from .phasediff import phasediff_fieldmap

log = logging.getLogger(__name__)

__all__ = ["METHODS", "background_sigma", "complex_fit", "phasediff_fieldmap", "redraw_noise", "thermal_noise",
           "weighted_linear_fit"]

# The field model's error (within a voxel the phase does not grow linearly with echo time:
# the k-space window's sinc PSF over sub-voxel structure, dephasing), as complex noise
# relative to the brain's median first-echo magnitude, per mm of voxel edge. On the benchmark
# matrix (SNR 100, 5 echoes) the pooled residual noise of the fit is 1.7x the image noise at
# 1 mm, 2.6x at 2 mm and 3.2x at 2x2x3 mm, i.e. this error is 1.4 %, 2.4 % and 3.0 % of the
# signal. With one or two echoes there is no residual to measure it, and it is added.
MODEL_ERROR_PER_MM = 0.013
# ...and where it concentrates: with five echoes (4-28 ms) the fit's residual exceeds the pooled
# noise mostly where the field changes much across a voxel. Against ψ = 2π·(the field's change
# across the voxel, the norm of :func:`_shared.spread.field_spread`)·(the last echo time), the voxel's variance
# over the pooled one had a median of 1.0 below ψ = 1.1 rad and 1.4-1.8 / 2.5-3.2 / 4.0-4.4 /
# 6.7-7.7 / 12-14 / 22-27 / 38-51 / 54-73 at ψ ≈ 1.4 / 1.6 / 1.9 / 2.2 / 2.7 / 3.4 / 4.4 / 5.4-6.8
# rad on the matrix's 1 mm and oblique 35° 1x1x1.4 mm heads (16-18 % of their brains inflated);
# 1 + (ψ/1.5)^4, capped at 50, follows it. One echo has no residual to show this and takes it
# from its own field: on those two heads cut to their 22 ms echo χ NRMSE went from 47.9 / 78.0 %
# to 46.1 / 71.9 % (TFI), on the 7 T head's 19 ms echo from 49.2 to 41.5 %. Two echoes keep the
# uniform level: their worst row (2x2x3 mm, 2.3 / 4.6 ms) went from 68.6 % (deep-grey slope
# 0.70) to 68.8 % (0.67) with it, 68.7 % (0.67) with it in the noise map alone.
MODEL_ERROR_PSI_RAD, MODEL_ERROR_POWER, MODEL_ERROR_CAP = 1.5, 4.0, 50.0
# After the phase offset is removed the field is fitted through the origin, unless the free
# line's intercept lies more than this many standard errors from zero (offset removal failed).
_INTERCEPT_Z = 3.0


def _inputs(phase, magnitude, echo_times, mask):
    phase = _checks.as_volume("phase", phase, ndim=4, finite=True)
    magnitude = _checks.as_volume("magnitude", magnitude, ndim=4, finite=True)
    _checks.same_shape("phase", phase, "magnitude", magnitude)
    te = _checks.echo_times(echo_times, phase.shape[3])
    shape = phase.shape[:3]
    mask = np.ones(shape, bool) if mask is None else _checks.as_mask("mask", mask, shape)
    return phase, magnitude, te, mask


def _origin_line(p: np.ndarray, w: np.ndarray, te: np.ndarray):
    """Weighted line through the origin ``p ≈ b·t`` per row: (b, Σw t²)."""
    stt = np.maximum(w @ (te * te), 1e-30)
    return np.sum(w * p * te, axis=1) / stt, stt


def _pooled_noise(resid: np.ndarray, w: np.ndarray, dof: int) -> tuple[float, np.ndarray]:
    """Pooled complex-noise variance σ² and each voxel's inflation factor, from weighted residuals.

    σ² is the median over voxels of ``Σ w r² / dof`` (``w = |S|²``, so this is the
    complex noise variance), divided by the median of a χ²
    variable over its degrees of freedom, ``(1 - 2/(9 dof))³`` (Wilson-Hilferty; 0.79 for
    dof 3), so that the median is an unbiased robust estimate. A voxel's factor exceeds 1
    where its own residual is more than ``MODEL_FAILURE_RATIO`` times the pooled one (the
    model does not hold there).
    """
    chi2 = np.sum(w * resid * resid, axis=1) / dof
    sigma2 = float(np.median(chi2)) / (1 - 2 / (9 * dof)) ** 3
    inflate = np.maximum(1.0, chi2 / (MODEL_FAILURE_RATIO * sigma2)) if sigma2 > 0 else np.ones(len(chi2))
    return sigma2, inflate


def _choose_model(a, b_free, sxx, b_zero, stt, w, te, sigma2, inflate, intercept, mask):
    """Field (rad/s) and its SD (Hz) per voxel from the free line or the line through the origin.

    ``intercept``: "fit" (free line everywhere), "zero" (through the origin everywhere) or
    "auto": through the origin unless the free line's intercept differs from zero by more
    than ``_INTERCEPT_Z`` standard errors on average over the voxel's 3x3x3 neighbourhood
    in ``mask`` (mean of z²). A failed offset removal leaves a region's intercepts off
    zero; noise moves single voxels across any per-voxel threshold, and each such flip
    switches the voxel between two estimates that differ by the offset's bias (on the
    2 mm benchmark head, per-voxel decisions gave 4 % of the brain 2-10x the field noise
    the fit predicts, between noise realisations).
    """
    sxx = np.maximum(sxx, 1e-30)  # zero where a voxel has no signal (NaN input set to 0)
    var_free = sigma2 * inflate / sxx
    var_zero = sigma2 * inflate / np.maximum(stt, 1e-30)
    if intercept == "fit":
        use_zero = np.zeros(len(b_free), bool)
    elif intercept == "zero":
        use_zero = np.ones(len(b_free), bool)
    else:
        sw = np.maximum(w.sum(axis=1), 1e-30)
        tbar = (w @ te) / sw
        var_a = sigma2 * inflate * (1 / sw + tbar**2 / sxx)
        # each voxel's z² capped, so that one outlier (a 2π error) cannot switch its neighbours
        z2 = _to_volume(np.minimum(wrap(a) ** 2 / np.maximum(var_a, 1e-30), 4 * _INTERCEPT_Z**2), mask)
        weight = ndimage.uniform_filter(mask.astype(np.float32), 3, mode="constant")
        mean_z2 = ndimage.uniform_filter(z2, 3, mode="constant")[mask] / np.maximum(weight[mask], 1e-6)
        use_zero = mean_z2 <= _INTERCEPT_Z**2
    b = np.where(use_zero, b_zero, b_free)
    sd = np.sqrt(np.where(use_zero, var_zero, var_free)) / (2 * np.pi)
    return b, sd, use_zero


def _check_intercept(intercept):
    if intercept not in ("auto", "fit", "zero"):
        raise ValueError(f"intercept must be 'auto', 'fit' or 'zero', got {intercept!r}")


def _few_echoes(phase, magnitude, te, mask, intercept, voxel_size, sigma):
    """One or two echoes: no residual degrees of freedom; σ the image noise (``sigma``, else read
    from the background around ``mask``), raised by the typical field-model error when the
    voxel size is known, with one echo most where its field changes fast (see
    :func:`weighted_linear_fit`)."""
    if sigma is None:
        sigma = background_sigma(magnitude[..., 0], mask, voxel_size)
    elif not (float(sigma) > 0 or np.isnan(sigma)):  # NaN: the caller found no air, the noise is unknown
        raise ValueError(f"noise_sigma must be positive (or NaN when unknown), got {sigma!r}")
    p, m = phase[mask].astype(np.float64), magnitude[mask].astype(np.float64)
    modelled = voxel_size is not None and np.isfinite(sigma)
    if modelled:
        edge = float(np.prod(_checks.voxel_size(voxel_size))) ** (1 / 3)
        model = MODEL_ERROR_PER_MM * edge * float(np.median(m[:, 0]))
        log.info("field fit over %d echo(es): no residual to measure the field model's error; the noise map adds "
                 "the typical one (%.3g of the brain's magnitude at %.2g mm voxels) to the image noise %.3g",
                 te.size, MODEL_ERROR_PER_MM * edge, edge, sigma)
        sigma = float(np.hypot(sigma, model))
    if te.size == 1:  # through the origin: the offset is taken as 0
        f = p[:, 0] / (2 * np.pi * te[0])
        sd = sigma / np.maximum(m[:, 0], 1e-30) / (2 * np.pi * te[0])
        return f, sd * np.sqrt(_model_inflation(f, mask, te)) if modelled else sd
    w = m * m
    a, b, sxx = weighted_line(p, w, te)
    b0, stt = _origin_line(p, w, te)
    b, sd, use_zero = _choose_model(a, b, sxx, b0, stt, w, te, sigma**2, np.ones(len(b)), intercept, mask)
    _log_model(use_zero, intercept)
    return b / (2 * np.pi), sd


def _model_inflation(field_hz: np.ndarray, mask: np.ndarray, te: np.ndarray) -> np.ndarray:
    """The field model's error where the field changes fast, as a variance factor per voxel of
    ``mask`` (see ``MODEL_ERROR_PSI_RAD``), from the field itself."""
    psi = 2 * np.pi * float(te.max()) * np.linalg.norm(field_spread(_to_volume(field_hz, mask), mask)[mask], axis=1)
    inflate = np.minimum(1 + (psi / MODEL_ERROR_PSI_RAD) ** MODEL_ERROR_POWER, MODEL_ERROR_CAP)
    log.info("field model's error raised where the field changes fast across a voxel: %.1f %% of the voxels, "
             "median factor %.2g there (SD)", 100 * np.mean(inflate > 1.1),
             float(np.median(np.sqrt(inflate[inflate > 1.1]))) if (inflate > 1.1).any() else 1.0)
    return inflate


def _log_model(use_zero, intercept):
    if intercept == "auto" and use_zero.size:
        log.info("field fit through the origin (phase offset removed) in %.1f%% of voxels, free intercept in the "
                 "rest", 100 * use_zero.mean())


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
    intercept: str = "auto",
    voxel_size=None,
    noise_sigma: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares fit of ``φ_n = φ0 + 2π·f·TE_n`` over echoes.

    The weights are ``|S_n|²``: the phase of an echo with magnitude ``|S|`` and
    complex noise σ has variance ``σ²/|S|²``, so this is the maximum-likelihood
    line at high SNR. After the phase offset φ0 has been removed (MCPC-3D-S), the
    line through the origin estimates f with the variance ratio
    ``Σw(TE-T̄)² / Σw TE²`` of the free line's (0.10 for echoes at 2.3/4.6 ms, 0.24 for
    5 echoes 4-28 ms); where the free line's intercept is significantly non-zero the
    offset removal failed and the free line is kept (``intercept="auto"``). With one
    echo φ0 is taken as 0.

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
    intercept : {"auto", "fit", "zero"}
        "fit": the free line everywhere (φ0 not removed); "zero": through the origin
        everywhere; "auto": through the origin unless the free intercept differs from
        zero by more than 3 standard errors on average over the voxel's neighbourhood.
    voxel_size : sequence of 3 float, optional
        Voxel size (mm). With one or two echoes the noise map then includes the field
        model's typical error (``MODEL_ERROR_PER_MM`` x the voxel's edge x the brain's median
        magnitude, as complex noise), which three or more echoes measure from their
        residuals; one echo's variance is also raised where its field changes fast across a
        voxel (``MODEL_ERROR_PSI_RAD``). Without it, the image noise alone.
    noise_sigma : float, optional
        The image's complex noise σ (magnitude units; NaN: unknown), used with one or two
        echoes; by default read from the air around ``mask`` (:func:`background_sigma`). A caller that
        fits a crop of the volume passes the σ of the whole image, whose far air the crop
        may not hold.

    Returns
    -------
    field_hz : ndarray (float32)
        Off-resonance frequency (Hz).
    noise_hz : ndarray (float32)
        Standard deviation of ``field_hz`` (Hz): ``σ / (2π·sqrt(Σ|S_n|²(TE_n-T̄)²))`` for
        the free line, ``σ / (2π·sqrt(Σ|S_n|² TE_n²))`` through the origin; σ pooled from
        the free line's weighted residuals (three or more echoes; raised in voxels whose
        own residual is far larger), which holds the field model's error too, or from the
        magnitude noise floor outside the mask (one or two echoes; see ``voxel_size``).

    References
    ----------
    Wu B, Li W, Avram AV, Gho SM, Liu C. Fast and tissue-optimized mapping of
    magnetic susceptibility and T2* with multi-echo and multi-shot spirals.
    NeuroImage 2012;59:297-305. doi:10.1016/j.neuroimage.2011.07.019

    Eckstein K, Dymerska B, Bachrata B, et al. Computationally efficient combination of
    multi-channel phase data from multi-echo acquisitions (ASPIRE). Magn Reson Med
    2018;79:2996-3006. doi:10.1002/mrm.26963
    """
    _check_intercept(intercept)
    phase, magnitude, te, mask = _inputs(phase, magnitude, echo_times, mask)
    if te.size < 3:
        f, sd = _few_echoes(phase, magnitude, te, mask, intercept, voxel_size, noise_sigma)
        return _to_volume(f, mask), _to_volume(sd, mask)
    p, m = phase[mask].astype(np.float64), magnitude[mask].astype(np.float64)
    w = m * m
    a, b, sxx = weighted_line(p, w, te)
    sigma2, inflate = _pooled_noise(p - a[:, None] - b[:, None] * te, w, te.size - 2)
    b0, stt = _origin_line(p, w, te)
    b, sd, use_zero = _choose_model(a, b, sxx, b0, stt, w, te, sigma2, inflate, intercept, mask)
    _log_model(use_zero, intercept)
    log.info("weighted linear field fit over %d echoes: complex noise sigma %.4g", te.size, np.sqrt(sigma2))
    return _to_volume(b / (2 * np.pi), mask), _to_volume(sd, mask)


def complex_fit(
    phase: np.ndarray,
    magnitude: np.ndarray,
    echo_times,
    *,
    mask: np.ndarray | None = None,
    intercept: str = "auto",
    max_iter: int = 20,
    tol_hz: float = 1e-4,
    voxel_size=None,
    noise_sigma: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nonlinear fit of the complex signal ``S_n ≈ |S_n|·exp(i(φ0 + 2π·f·TE_n))``.

    Minimises ``Σ_n |S_n|²·(1 - cos(φ_n - φ0 - 2π f TE_n))``, i.e. the distance between
    the measured and modelled complex signals, by Gauss-Newton steps on the wrapped
    residual, vectorised over voxels. The cost does not see whole turns of 2π, so an
    echo left off by 2π after unwrapping does not pull the field; the unwrapped phase
    only provides two starting points (the weighted line through all echoes and the
    line through the first two), and each voxel keeps the lower optimum. The same is
    done with φ0 held at zero (after the offset removal), and each voxel takes that fit
    unless its free φ0 is significantly non-zero (``intercept``, as
    :func:`weighted_linear_fit`).

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
    intercept : {"auto", "fit", "zero"}
        As for :func:`weighted_linear_fit`.
    voxel_size, noise_sigma : optional
        As for :func:`weighted_linear_fit` (used with fewer than three echoes).
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
    _check_intercept(intercept)
    phase, magnitude, te, mask = _inputs(phase, magnitude, echo_times, mask)
    if te.size < 3:
        return weighted_linear_fit(phase, magnitude, te, mask=mask, intercept=intercept, voxel_size=voxel_size,
                                   noise_sigma=noise_sigma)
    p, m = phase[mask].astype(np.float64), magnitude[mask].astype(np.float64)
    w = m * m
    a_lin, b_lin, sxx = weighted_line(p, w, te)
    # two starting points: the line through all echoes, and the line through the first
    # two (least likely to hold a 2π error); each voxel keeps the better optimum
    b_two = (p[:, 1] - p[:, 0]) / (te[1] - te[0])
    a, b, its = _best_of(p, w, te, [(a_lin, b_lin), (p[:, 0] - b_two * te[0], b_two)], free=True,
                         max_iter=max_iter, tol_hz=tol_hz)
    sigma2, inflate = _pooled_noise(wrap(p - a[:, None] - b[:, None] * te), w, te.size - 2)
    b0 = b
    if intercept != "fit":  # from the free optimum, which already chose the right turn of every echo
        _, b0, _ = _gauss_newton(p, w, te, np.zeros_like(b), b, max_iter, tol_hz, free=False)
    stt = np.maximum(w @ (te * te), 1e-30)
    b, sd, use_zero = _choose_model(a, b, sxx, b0, stt, w, te, sigma2, inflate, intercept, mask)
    _log_model(use_zero, intercept)
    log.info("complex field fit over %d echoes: %d Gauss-Newton iterations, complex noise sigma %.4g", te.size, its,
             np.sqrt(sigma2))
    return _to_volume(b / (2 * np.pi), mask), _to_volume(sd, mask)


def _best_of(p, w, te, starts, *, free, max_iter, tol_hz):
    """Gauss-Newton from each start; per voxel the optimum of lowest cost: (a, b, iterations)."""
    best = None
    iters = 0
    for a0, b0 in starts:
        a, b, it = _gauss_newton(p, w, te, a0, b0, max_iter, tol_hz, free)
        iters = max(iters, it)
        cost = np.sum(w * (1 - np.cos(wrap(p - a[:, None] - b[:, None] * te))), axis=1)
        if best is None:
            best = (a, b, cost)
        else:
            pick = cost < best[2]
            best = (np.where(pick, a, best[0]), np.where(pick, b, best[1]), np.where(pick, cost, best[2]))
    return best[0], best[1], iters


def _gauss_newton(p, w, te, a, b, max_iter, tol_hz, free=True):
    """Gauss-Newton on the wrapped residual of ``p ≈ a + b·t`` per voxel (``a`` held when not
    ``free``); a voxel stops once its field moves by less than ``tol_hz``. (a, b, iterations).
    Voxels are independent: slabs of them run side by side on the cores."""
    parts = parallel.slabs(len(b), p.size)
    if len(parts) > 1:
        out = parallel.each(lambda s: _gauss_newton(p[s], w[s], te, a[s], b[s], max_iter, tol_hz, free), parts)
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out]), max(o[2] for o in out)
    a, b = a.copy(), b.copy()
    active = np.arange(len(b))
    it = 0
    for it in range(1, max_iter + 1):
        pa, wa = p[active], w[active]
        r = wrap(pa - a[active, None] - b[active, None] * te)
        if free:
            da, db, _ = weighted_line(r, wa, te)
            a[active] += da
        else:
            db, _ = _origin_line(r, wa, te)
        b[active] += db
        active = active[np.abs(db) / (2 * np.pi) >= tol_hz]
        if active.size == 0:
            break
    return a, b, it


METHODS = {
    "complex": Method("complex", complex_fit,
                      "nonlinear fit of the complex multi-echo signal (robust to 2π errors), noise from the fit"),
    "wls": Method("wls", weighted_linear_fit, "magnitude²-weighted linear fit of unwrapped phase over echo time"),
}
