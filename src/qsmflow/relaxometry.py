"""R2*/T2* mapping from the multi-echo magnitude.

Every fit has the signature ``(magnitude, echo_times, *, mask=None, noise_sigma=None,
dephasing=None) -> (r2star, s0)``:

- ``noise_sigma`` (the complex noise σ of the magnitude, same units): each voxel uses its
  echoes only while they stay above ``R2STAR_NOISE_FLOOR_K``·σ, so late echoes sunk in
  the Rician noise floor do not flatten the decay (at least the first two or three
  echoes are always used), and the floor's share of the second moment is removed,
  ``S ← sqrt(S² - 2σ²)`` (Gudbjartsson & Patz 1995);
- ``dephasing`` (X, Y, Z, E): the signal factor of macroscopic field gradients
  (:func:`gradient_dephasing`); the magnitude is divided by it, and echoes where it has
  fallen below ``GRADIENT_CORRECTION_MIN_FACTOR`` are not used.
"""

from __future__ import annotations

import logging

import numpy as np

from ._shared import checks as _checks
from ._shared import parallel
from ._shared.echoes import echo_time_spread, weighted_line
from ._shared.lm import levenberg_marquardt
from . import kernels
from ._shared.constants import (
    GRADIENT_CORRECTION_MIN_FACTOR,
    R2STAR_CAP_PER_S,
    R2STAR_NOISE_FLOOR_K,
    R2STAR_RINGING_TAPER,
    T2STAR_CAP_S,
)
from ._shared.registry import Method
from ._shared.spread import field_spread

log = logging.getLogger(__name__)

# log-linear: reweighting passes with weights from the fitted decay
_IRLS_PASSES = 2

__all__ = ["METHODS", "arlo_r2star", "fit_residual", "gradient_dephasing", "loglinear_r2star", "nlls_r2star",
           "r2star_noise", "ringing_noise_factor", "suppress_ringing", "t2star_from_r2star"]


def r2star_noise_map(magnitude, echo_times, noise_sigma: float, mask: np.ndarray) -> np.ndarray:
    """Standard deviation of R2* (1/s) from noise per voxel of ``mask`` (NaN elsewhere, and
    everywhere when σ is unknown): ``σ / sqrt(Σ_n |S_n|² (TE_n - T̄)²)``, the weighted
    log-linear slope's error (the log of an echo of magnitude ``|S|`` has SD ``σ/|S|``)."""
    mag = np.asarray(magnitude)
    if mag.ndim != 4:
        raise ValueError(f"magnitude must be 4D (x, y, z, echo), got shape {mag.shape}")
    te = _checks.echo_times(echo_times, mag.shape[3])
    mask = _checks.as_mask("mask", mask, mag.shape[:3])
    out = np.full(mask.shape, np.nan)
    if not np.isfinite(noise_sigma) or te.size < 2:
        return out
    s = np.asarray(mag, np.float64)[mask]
    _, _, sxx = echo_time_spread(s * s, te)
    out[mask] = noise_sigma / np.sqrt(np.maximum(sxx, 1e-30))
    return out


def r2star_noise(magnitude, echo_times, noise_sigma: float, mask: np.ndarray) -> float:
    """Typical standard deviation of R2* (1/s) from noise: the median over ``mask`` of
    :func:`r2star_noise_map`. NaN when σ is unknown."""
    sd = r2star_noise_map(magnitude, echo_times, noise_sigma, mask)[mask]
    return float(np.median(sd)) if sd.size else float("nan")


def _prepare(magnitude, echo_times, mask, noise_sigma, dephasing, min_echoes: int, name: str):
    """Voxel signals (V, E), echo times, mask, and which echoes each voxel may use (V, E)."""
    mag = _checks.as_volume("magnitude", magnitude, ndim=4, finite=True)
    te = _checks.echo_times(echo_times, mag.shape[3])
    if te.size < min_echoes:
        raise ValueError(f"{name} needs at least {min_echoes} echoes, got {te.size}")
    shape = mag.shape[:3]
    # the echoes a fit needs must hold signal; a later echo at 0 (a fast decay stored as integers
    # rounds to 0) is left out of that voxel's fit, not the voxel (which read R2* = 0, like CSF)
    positive = np.all(mag[..., :min_echoes] > 0, axis=3)
    mask = positive if mask is None else (_checks.as_mask("mask", mask, shape) & positive)
    s = mag[mask].astype(np.float64)
    usable = s > 0
    s[~usable] = np.finfo(np.float64).tiny  # never used (weight 0), but its logarithm must stay finite
    if noise_sigma is not None and np.isfinite(noise_sigma):
        sigma = _checks.positive("noise_sigma", noise_sigma)
        usable &= s > R2STAR_NOISE_FLOOR_K * sigma
        # the Rician magnitude's second moment is A² + 2σ²: subtract the floor's share
        s = np.sqrt(np.maximum(s * s - 2 * sigma * sigma, 0.25 * sigma * sigma))
    if dephasing is not None:
        dep = _checks.as_volume("dephasing", dephasing, ndim=4)
        _checks.same_shape("dephasing", dep, "magnitude", mag)
        f = dep[mask].astype(np.float64)
        usable &= f >= GRADIENT_CORRECTION_MIN_FACTOR
        s = s / np.maximum(f, GRADIENT_CORRECTION_MIN_FACTOR)
    usable = np.cumprod(usable, axis=1).astype(bool)  # a contiguous run of echoes from the first
    usable[:, :min_echoes] = True
    dropped = float(np.mean(~usable))
    if dropped > 0:
        log.info("%s: %.1f%% of voxel x echo values below the noise floor or dephased, not used", name,
                 100 * dropped)
    return s, te, mask, usable


def _maps(shape, mask, r2, s0):
    r2_map = np.zeros(shape, np.float32)
    s0_map = np.zeros(shape, np.float32)
    r2_map[mask] = np.clip(np.nan_to_num(r2, nan=0.0), 0.0, R2STAR_CAP_PER_S)
    s0_map[mask] = np.nan_to_num(s0, nan=0.0)
    return r2_map, s0_map


def _loglinear(s, te, w):
    """Weighted line through (TE, ln S) per voxel: (R2*, S0)."""
    intercept, slope, _ = weighted_line(np.log(s), w, te)
    return -slope, np.exp(intercept)


def loglinear_r2star(magnitude: np.ndarray, echo_times, *, mask: np.ndarray | None = None,
                     noise_sigma: float | None = None, dephasing: np.ndarray | None = None):
    """Weighted log-linear fit of ``ln S_n = ln S0 - R2*·TE_n``.

    The weights are ``S_n²``: with complex noise σ, ``ln S`` has variance ``σ²/S²``,
    so late, dark echoes count less. Weights taken from the noisy samples favour
    echoes that noise pushed up and bias R2* low (1-4 % at SNR 40); two reweighting
    passes take them from the fitted decay instead. Exact for noise-free
    mono-exponential decay.

    Parameters
    ----------
    magnitude : ndarray (X, Y, Z, E)
        Magnitude, E ≥ 2 echoes.
    echo_times : sequence of float
        Echo times (s), increasing.
    mask : ndarray of bool, optional
        Voxels to fit (default: every voxel with signal in all echoes).
    noise_sigma : float, optional
        Complex noise σ of the magnitude: echoes below the noise floor are not used.
    dephasing : ndarray (X, Y, Z, E), optional
        Macroscopic-gradient signal factor to divide out (:func:`gradient_dephasing`).

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
    s, te, mask, use = _prepare(magnitude, echo_times, mask, noise_sigma, dephasing, 2, "log-linear R2*")

    def fit(rows):  # voxels are independent: slabs of them run side by side on the cores
        sv, uv = s[rows], use[rows]
        r2, s0 = _loglinear(sv, te, np.where(uv, sv * sv, 0.0))
        for _ in range(_IRLS_PASSES):  # weights from the fitted decay, not the noisy samples
            model = s0[:, None] * np.exp(-np.outer(r2, te))
            r2, s0 = _loglinear(sv, te, np.where(uv, model * model, 0.0))
        return r2, s0

    parts = parallel.each(fit, parallel.slabs(len(s), s.size))
    r2, s0 = (np.concatenate([part[k] for part in parts]) for k in (0, 1))
    log.info("log-linear R2* over %d echoes in %d voxels", te.size, int(mask.sum()))
    return _maps(mask.shape, mask, r2, s0)


def _arlo_weights(te: np.ndarray):
    """Per echo triple: the quadratic-interpolation integral weights (a, b, c) and β."""
    t0, t1, t2 = te[:-2], te[1:-1], te[2:]
    alpha = (t2 - t0) ** 2 / (2 * (t1 - t0))
    tmp = (2 * t2 * t2 - t0 * t2 - t0 * t0 + 3 * t0 * t1 - 3 * t1 * t2) / 6
    beta = tmp / (t2 - t1)
    gamma = tmp / (t1 - t0)
    return (t2 - t0 - alpha + gamma), (alpha - beta - gamma), beta


def _arlo(s, weights, v):
    a, b, c = weights
    integral = s[:, :-2] * a + s[:, 1:-1] * b + s[:, 2:] * c
    d = s[:, :-2] - s[:, 2:]
    num = np.sum(v * (integral * d + c * d * d), axis=1)
    den = np.sum(v * (c * integral * d + integral * integral), axis=1)
    return num / np.where(den > 0, den, np.inf)


def arlo_r2star(magnitude: np.ndarray, echo_times, *, mask: np.ndarray | None = None,
                noise_sigma: float | None = None, dephasing: np.ndarray | None = None):
    """ARLO: auto-regression on linear operations, closed form, no iterations.

    For each triple of consecutive echoes the integral of the signal (quadratic
    interpolation, Simpson's rule for equal spacing) ``I_i`` and the difference
    ``d_i = S_i - S_{i+2}`` obey ``I_i ≈ T2*·d_i`` for an exponential; minimising the
    one-step prediction error over the triples gives
    ``R2* = (Σ I d + Σ β d²) / (Σ β I d + Σ I²)``, with ``β`` the last echo's
    integration weight (``ΔTE/3`` for equal spacing). Unequal spacing uses the exact
    interpolation weights of each triple. The interpolation's own bias (R2* off by
    up to 6e-4 relative at 60/s with 9 ms spacing) is removed by one model-based step:
    ARLO applied to the exact decay at the estimate shows the bias, which is subtracted.
    S0 then comes from a weighted least-squares fit of the amplitude with R2* fixed.
    Needs ≥ 3 echoes.

    Parameters and returns as :func:`loglinear_r2star`.

    Returns
    -------
    (r2star, s0)
        As :func:`loglinear_r2star`: R2* (1/s) and the signal at TE = 0, float32.

    References
    ----------
    Pei M, Nguyen TD, Thimmappa ND, Salustri C, Dong F, Cooper MA, Li J, Prince MR,
    Wang Y. Algorithm for fast monoexponential fitting based on Auto-Regression on
    Linear Operations (ARLO) of data. Magn Reson Med 2015;73:843-850.
    doi:10.1002/mrm.25137
    """
    s, te, mask, use = _prepare(magnitude, echo_times, mask, noise_sigma, dephasing, 3, "ARLO")
    weights = _arlo_weights(te)
    v = use[:, 2:].astype(np.float64)  # a triple counts when its last echo is usable
    raw = _arlo(s, weights, v)
    # the interpolated integral of an exponential is slightly off (O((R2*·ΔTE)^4)); ARLO
    # of the exact decay at the estimate measures that bias, which is then removed
    r2 = 2 * raw - _arlo(np.exp(-np.outer(raw, te)), weights, v)
    e = np.exp(-np.outer(r2, te))
    w = np.where(use, s * s, 0.0)
    s0 = np.sum(w * s * e, axis=1) / np.maximum(np.sum(w * e * e, axis=1), 1e-300)
    log.info("ARLO R2* over %d echoes (%s spacing) in %d voxels", te.size,
             "equal" if np.allclose(np.diff(te), te[1] - te[0], rtol=1e-3) else "unequal", int(mask.sum()))
    return _maps(mask.shape, mask, r2, s0)


def nlls_r2star(magnitude: np.ndarray, echo_times, *, mask: np.ndarray | None = None,
                noise_sigma: float | None = None, dephasing: np.ndarray | None = None, max_iter: int = 30,
                tol: float = 1e-10):
    """Nonlinear least squares of ``S_n = S0·exp(-R2*·TE_n)`` by Levenberg-Marquardt, all voxels at once.

    Starts from the log-linear fit; each voxel keeps its own damping (halved after a
    step that lowers its residual, multiplied by 10 otherwise) and stops when its
    relative R2* update falls below ``tol``. The residual is unweighted: the
    magnitude's noise is (near) Gaussian above the noise floor.

    Parameters and returns as :func:`loglinear_r2star`; ``max_iter`` caps the LM steps.

    Returns
    -------
    (r2star, s0)
        As :func:`loglinear_r2star`: R2* (1/s) and the signal at TE = 0, float32.

    References
    ----------
    Marquardt DW. An algorithm for least-squares estimation of nonlinear parameters.
    J Soc Ind Appl Math 1963;11:431-441. doi:10.1137/0111030
    """
    s, te, mask, use = _prepare(magnitude, echo_times, mask, noise_sigma, dephasing, 2, "NLLS R2*")
    r2, s0 = _loglinear(s, te, np.where(use, s * s, 0.0))

    def model(p, rows):  # S0·exp(-R2*·TE) and its derivatives by S0 and R2*
        e = np.exp(-np.outer(p[:, 1], te))
        return p[:, 0:1] * e, np.stack([e, -te[None, :] * p[:, 0:1] * e], axis=2)

    p, _, it, moving = levenberg_marquardt(model, s, np.stack([s0, r2], axis=1), weights=use.astype(np.float64),
                                           lam=1e-3, down=0.5, up=10.0, max_iter=max_iter, tol=tol, watch=[1])
    s0, r2 = p[:, 0], p[:, 1]
    log.info("NLLS R2* over %d echoes in %d voxels: %d LM steps, %d voxels still moving", te.size,
             int(mask.sum()), it, moving)
    return _maps(mask.shape, mask, r2, s0)


def fit_residual(magnitude: np.ndarray, echo_times, r2star: np.ndarray, s0: np.ndarray,
                 mask: np.ndarray) -> np.ndarray:
    """Goodness of fit: RMS of ``S_n - S0·exp(-R2*·TE_n)`` over all echoes, relative to the RMS signal.

    Near 1/SNR where the mono-exponential model holds; large where it does not (several
    compartments, macroscopic dephasing, motion). 0 outside ``mask``.
    """
    mag = _checks.as_volume("magnitude", magnitude, ndim=4, finite=True)
    te = _checks.echo_times(echo_times, mag.shape[3])
    mask = _checks.as_mask("mask", mask, mag.shape[:3])
    r2star, s0 = np.asarray(r2star), np.asarray(s0)
    _checks.same_shape("r2star", r2star, "mask", mask)
    _checks.same_shape("s0", s0, "mask", mask)
    s = mag[mask].astype(np.float64)
    model = s0[mask][:, None] * np.exp(-np.outer(r2star[mask], te))
    rel = np.sqrt(np.mean((s - model) ** 2, axis=1)) / np.maximum(np.sqrt(np.mean(s * s, axis=1)), 1e-30)
    out = np.zeros(mask.shape, np.float32)
    out[mask] = rel
    return out


def gradient_dephasing(field_hz: np.ndarray, echo_times, mask: np.ndarray, *,
                       slice_axis: int | None = None) -> np.ndarray:
    """Signal factor of macroscopic field gradients across each voxel, ``F(TE)`` (X, Y, Z, E).

    A field varying linearly by ``Δf_a`` Hz across one voxel along axis ``a`` (the field
    map's central difference between neighbouring voxels inside ``mask``, one-sided at
    its edge) winds the phase by ``2π·Δf_a·TE`` across the voxel. What that costs depends
    on the voxel's profile along ``a``, the factor being the product over the axes:

    - the slice axis of a 2D multi-slice acquisition (``slice_axis``) has a box profile:
      the spins dephase uniformly and the signal falls as ``|sinc(Δf_a·TE)|`` (normalised
      sinc; Fernández-Seara & Wehrli 2000, the slice term of Yablonskiy et al. 2013);
    - a Fourier-encoded axis has a sinc point-spread function, whose spectrum is the
      sampled k-space: the gradient only shifts the echo in k-space, costing no signal
      until the shift reaches the edge of the sampled k-space, ``|Δf_a·TE| = 1/2``, and
      losing it beyond (the voxel spread function of an ideal, unfiltered Cartesian
      encoding). The factor is 1 below that limit and 0 above it, so those echoes are
      left out of the fits.

    Divide the magnitude by ``F`` before an R2* fit (the fits do so with ``dephasing=F``,
    and drop echoes where ``F < GRADIENT_CORRECTION_MIN_FACTOR``).

    Parameters
    ----------
    field_hz : ndarray (X, Y, Z)
        Total field (Hz), e.g. the multi-echo field fit.
    echo_times : sequence of float
        Echo times (s).
    mask : ndarray of bool
        Where the field map is valid.
    slice_axis : {0, 1, 2} or None
        The voxel axis along which a 2D acquisition stacks its slices; None for a 3D
        acquisition (every axis Fourier-encoded).

    References
    ----------
    Fernández-Seara MA, Wehrli FW. Postprocessing technique to correct for background
    gradients in image-based R2* measurements. Magn Reson Med 2000;44:358-366.
    doi:10.1002/1522-2594(200009)44:3<358::AID-MRM3>3.0.CO;2-I

    Yablonskiy DA, Sukstanskii AL, Luo J, Wang X. Voxel spread function method for
    correction of magnetic field inhomogeneity effects in quantitative gradient-echo-based
    MRI. Magn Reson Med 2013;70:1283-1292. doi:10.1002/mrm.24585
    """
    f = _checks.as_volume("field_hz", field_hz, dtype=np.float64)
    mask = _checks.as_mask("mask", mask, f.shape)
    te = _checks.echo_times(echo_times)
    if slice_axis is not None and (isinstance(slice_axis, bool) or slice_axis not in (0, 1, 2)):
        raise ValueError(f"slice_axis must be 0, 1, 2 (the slice direction of a 2D acquisition) or None for 3D, "
                         f"got {slice_axis!r}")
    out = np.ones(f.shape + (te.size,), np.float32)
    spread = field_spread(f, mask)  # Hz per voxel along each axis
    for n, t in enumerate(te):
        cycles = np.abs(spread * t)  # phase wound across the voxel, in cycles
        factor = np.prod(np.where(np.arange(3) == slice_axis, np.abs(np.sinc(cycles)), cycles < 0.5), axis=-1)
        out[..., n] = np.where(mask, factor, 1.0)
    log.info("macroscopic dephasing (%s): median field spread %.2f Hz/voxel in the mask; F(TE_last) < %.1f in "
             "%.1f%% of it", "3D" if slice_axis is None else f"2D, slices along axis {slice_axis}",
             float(np.median(np.linalg.norm(spread[mask], axis=1))) if mask.any() else 0.0,
             GRADIENT_CORRECTION_MIN_FACTOR, 100 * float(np.mean(out[..., -1][mask] < GRADIENT_CORRECTION_MIN_FACTOR))
             if mask.any() else 0.0)
    return out


def _tukey_taper(n: int, share: float) -> np.ndarray:
    """A Tukey window over the ``n`` frequencies of an FFT axis (numpy's order): 1 up to
    ``1 - share`` of the Nyquist frequency, then half a cosine down to 0 at it (``share`` 0:
    no taper, 1: a Hann window)."""
    f = np.abs(np.fft.fftfreq(n)) / 0.5  # 0 at DC, 1 at Nyquist
    if share <= 0:
        return np.ones(n)
    edge = 1.0 - share
    return np.where(f <= edge, 1.0, 0.5 * (1.0 + np.cos(np.pi * np.clip(f - edge, 0, None) / share)))


def _taper_window(shape, share: float, slice_axis: int | None) -> np.ndarray:
    """The separable Tukey window on an rfft spectrum of ``shape`` (not along ``slice_axis``)."""
    share = float(share)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the taper's share must lie in [0, 1], got {share:g}")
    if slice_axis is not None and slice_axis not in (0, 1, 2):
        raise ValueError(f"slice_axis must be 0, 1, 2 or None, got {slice_axis!r}")
    window = np.ones((shape[0], shape[1], shape[2] // 2 + 1), np.float32)
    for axis, n in enumerate(shape):
        if axis == slice_axis:
            continue
        w = _tukey_taper(n, share).astype(np.float32)
        if axis == 2:
            w = w[: n // 2 + 1]
        window *= w.reshape([-1 if a == axis else 1 for a in range(3)])
    return window


def ringing_noise_factor(shape, *, share: float = R2STAR_RINGING_TAPER, slice_axis: int | None = None) -> float:
    """How much :func:`suppress_ringing` lowers white noise's SD on a grid of ``shape``: the RMS
    of its window over the whole spectrum (0.49 for a share of 0.6 on three axes, 0.63 on two)."""
    factor = 1.0
    for axis, n in enumerate(shape[:3]):
        if axis != slice_axis:
            factor *= float(np.sqrt(np.mean(_tukey_taper(n, share) ** 2)))
    return factor


def suppress_ringing(magnitude: np.ndarray, *, share: float = R2STAR_RINGING_TAPER,
                     slice_axis: int | None = None) -> np.ndarray:
    """Each echo's magnitude with its spectrum tapered by a Tukey window along the Fourier-
    encoded axes (not ``slice_axis``, a 2D acquisition's slices): the near-Nyquist ringing of
    the k-space cut-off, which differs from echo to echo, is damped at the price of some
    resolution. A linear filter keeps each region's mean, so the Rician noise floor a fit
    compares echoes with is the input's; the noise's SD falls by :func:`ringing_noise_factor`
    (an R2* noise map of the tapered fit takes σ times it; the floor's correction
    ``S² - 2σ²`` with the input's σ then removes 0.4/SNR² too much, nothing at SNR ≥ 10).

    Parameters
    ----------
    magnitude : ndarray (X, Y, Z, E)
        Finite.
    share : float
        The Tukey window's tapered share of each axis' frequencies, in [0, 1].
    slice_axis : {0, 1, 2}, optional
        An axis left alone.

    Returns
    -------
    ndarray (float32), the magnitude's shape; negative values from the filter's side lobes
    set to 0.

    References
    ----------
    Harris FJ. On the use of windows for harmonic analysis with the discrete Fourier
    transform. Proc IEEE 1978;66:51-83. doi:10.1109/PROC.1978.10837

    Bernstein MA, King KF, Zhou XJ. Handbook of MRI Pulse Sequences. Elsevier 2004, ch. 13.1
    (k-space apodisation and Gibbs ringing).
    """
    mag = _checks.as_volume("magnitude", magnitude, ndim=4, finite=True)
    shape = mag.shape[:3]
    window = _taper_window(shape, share, slice_axis)
    out = np.empty(mag.shape, np.float32)
    for e in range(mag.shape[3]):
        spectrum = kernels.rfft(np.ascontiguousarray(mag[..., e], np.float32))
        spectrum *= window
        out[..., e] = np.maximum(kernels.irfft(spectrum, shape), 0)
    return out


def t2star_from_r2star(r2star: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """T2* = 1/R2* (s), capped at ``T2STAR_CAP_S``; R2* ≤ 0 gives the cap; 0 outside ``mask``."""
    r2 = np.asarray(r2star, dtype=np.float64)
    if r2.ndim != 3:
        raise ValueError(f"r2star must be 3D, got shape {r2.shape}")
    if mask is not None:
        mask = _checks.as_mask("mask", mask, r2.shape)
    with np.errstate(divide="ignore"):
        t2 = np.where(r2 > 1.0 / T2STAR_CAP_S, 1.0 / np.where(r2 > 0, r2, 1.0), T2STAR_CAP_S)
    if mask is not None:
        t2 = np.where(mask, t2, 0.0)
    return t2.astype(np.float32)


METHODS = {
    "loglinear": Method("loglinear", loglinear_r2star, "S²-weighted log-linear fit"),
    "arlo": Method("arlo", arlo_r2star, "auto-regression on linear operations (closed form)"),
    "nlls": Method("nlls", nlls_r2star, "nonlinear least squares (Levenberg-Marquardt, vectorised)"),
}
