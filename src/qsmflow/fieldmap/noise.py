"""The image noise level from the air around the head, the thermal part of a field-noise map,
and a redraw of a field-noise map as another scan would give it."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from .._shared import checks as _checks
from ..masking._components import filled_holes

log = logging.getLogger(__name__)

__all__ = ["MODEL_FAILURE_RATIO", "background_sigma", "redraw_noise", "thermal_noise"]

# A voxel whose weighted residual exceeds this many times the pooled noise level is
# taken to break the linear model (intravoxel dephasing next to air, flow, an
# unwrapping error), and its noise estimate grows with the residual (the field fits).
MODEL_FAILURE_RATIO = 3.0

# Air next to the head is not dark: the k-space window rings the scalp's bright signal into
# it (Gibbs ringing, decaying over centimetres; at SNR 100 as strong as the noise within
# ~10 mm), and ghosts add to it. The noise level is read in the air farthest from the head:
# the share of air voxels below, and only where at least this many air voxels exist.
_FAR_AIR_SHARE = 0.2
_MIN_AIR_VOXELS = 1000


def background_sigma(magnitude: np.ndarray, mask: np.ndarray, voxel_size=None) -> float:
    """Complex noise σ from the Rayleigh-distributed magnitude of the air around the head.

    The head is the mask with every voxel brighter than 10 % of the mask's median magnitude
    (opened, so that specks of noise do not count), closed and hole-filled (so dark bone and sinuses count as head); the air is the rest.
    Only the farthest ``_FAR_AIR_SHARE`` of the air from the head is used, where the
    scalp's ringing has died down: far in mm when ``voxel_size`` (mm) is given, else in
    voxels (the two differ on anisotropic voxels). The distances are measured on a grid of
    every second voxel along axes finer than 1.5 mm (±1 such voxel: the choice of the
    farthest fifth of the air hardly changes; an exact distance map took 0.5-1.2 s at 1 mm),
    and of that air the lower half is trusted to be noise: the
    25th percentile of a Rayleigh(σ) variable is σ·sqrt(-2 ln 0.75). On the benchmark
    matrix's 17 heads this is 1.00-1.15x the true σ, where the whole background gave 1.3-2.9x it.
    With less air than that (a field of view inside the head) the whole background outside
    ``mask`` is used, which overestimates σ; without any the noise level is unknown and NaN
    is returned: the noise map is then NaN (unknown), data weights fall back to uniform and
    regularisation weights to fixed values.
    """
    magnitude = np.asarray(magnitude)
    mask = np.asarray(mask, bool)
    if mask.ndim != 3 or magnitude.shape[:3] != mask.shape:
        raise ValueError(f"mask has shape {mask.shape} but the magnitude has shape {magnitude.shape}; give a 3D mask "
                         "on the magnitude's grid")
    inside = magnitude[mask]
    ref = float(np.median(inside)) if inside.size else 0.0
    bright = ndimage.binary_opening(magnitude > 0.1 * ref) if ref > 0 else mask  # no specks of noise
    head = filled_holes(ndimage.binary_closing(bright | mask, iterations=2) | mask)
    air = ~head & (magnitude > 0)
    _warn_if_zeroed(magnitude, head)
    if air.sum() >= _MIN_AIR_VOXELS / _FAR_AIR_SHARE:
        dist = _distance_from(head, voxel_size)[air]
        bg = magnitude[air][dist >= np.quantile(dist, 1 - _FAR_AIR_SHARE)]
    else:
        bg = magnitude[~mask]
        bg = bg[bg > 0]
        if bg.size >= 100:
            log.info("little air around the head: the image noise level is taken from all the background, "
                     "which may overestimate it")
    if bg.size < 100:
        log.warning("too little background (air) to estimate the image noise level; it is unknown (NaN)")
        return float("nan")
    return float(np.percentile(bg, 25) / np.sqrt(-2 * np.log(0.75)))


# Share of exact zeros in the air beyond which it is not Rayleigh noise (P(0) is 0 for it) but a
# background the scanner or the converter masked or quantised to whole counts.
_ZEROED_AIR_SHARE = 0.5


def _warn_if_zeroed(magnitude: np.ndarray, head: np.ndarray) -> None:
    """Warn when most of the air is exactly 0: the σ read from what is left is a lower bound."""
    outside = magnitude[~head]
    share = float(np.mean(outside == 0)) if outside.size else 0.0
    if share > _ZEROED_AIR_SHARE:
        log.warning("%.0f%% of the air around the head is exactly 0 (masked or quantised by the scanner or the "
                    "converter), so the image noise read there is a lower bound; the R2* noise, the CSF weights' "
                    "noise gate and the χ uncertainty map may be too small (keep the background unmasked, or export "
                    "the magnitude as floats)", 100 * share)


def _distance_from(region: np.ndarray, voxel_size) -> np.ndarray:
    """Euclidean distance (mm, or voxels without ``voxel_size``) of every voxel to ``region``,
    measured on every second voxel along axes finer than 1.5 mm and spread back to their
    neighbours."""
    vs = np.ones(3) if voxel_size is None else _checks.voxel_size(voxel_size)
    step = np.where(vs < 1.5, 2, 1)
    coarse = ~region[tuple(slice(None, None, int(k)) for k in step)]
    dist = ndimage.distance_transform_edt(coarse, sampling=vs * step)
    for axis, k in enumerate(step):
        if k > 1:
            dist = np.repeat(dist, k, axis=axis)
    return dist[tuple(slice(0, n) for n in region.shape)]


def thermal_noise(noise_hz: np.ndarray, magnitude: np.ndarray, echo_times, mask: np.ndarray,
                  sigma: float) -> tuple[np.ndarray, float]:
    """The part of a field-noise map that the thermal noise of the images causes.

    With three or more echoes the field fits pool their noise level σ_fit from the
    residuals of the line, which also hold model error: the phase of a voxel with sharp
    sub-voxel structure does not grow linearly with echo time (k-space's sinc PSF,
    dephasing next to air). That is right for weighting the data, but a map of what the
    *noise* does to χ must use the thermal σ, from the air (:func:`background_sigma`).
    σ_fit is recovered from the map as the median over ``mask`` of
    ``noise_hz·2π·sqrt(Σ|S_n|²TE_n²)`` (exact wherever the line through the origin was
    kept), and the map is scaled by ``σ/σ_fit`` where that is below 1; an unknown σ
    (NaN) leaves it unchanged.

    Parameters
    ----------
    noise_hz : ndarray (X, Y, Z)
        Field-noise map of a field fit (Hz).
    magnitude : ndarray (X, Y, Z, E)
        Magnitude of each echo, as given to the fit.
    echo_times : sequence of float
        Echo times (s).
    mask : ndarray of bool
        Voxels the fit ran on.
    sigma : float
        Complex noise σ of the magnitude (same units), e.g. from :func:`background_sigma`.

    Returns
    -------
    thermal_hz : ndarray (float32)
        The thermal part of ``noise_hz`` (Hz).
    ratio : float
        ``σ/σ_fit`` as applied (1 when σ is unknown or not below σ_fit).
    """
    magnitude = _checks.as_volume("magnitude", magnitude, ndim=4)
    te = _checks.echo_times(echo_times, magnitude.shape[3])
    mask = _checks.as_mask("mask", mask, magnitude.shape[:3])
    noise_hz = np.asarray(noise_hz, np.float32)
    _checks.same_shape("noise_hz", noise_hz, "mask", mask)
    m = magnitude[mask].astype(np.float64)
    unit = 2 * np.pi * np.sqrt((m * m) @ (te * te))  # 1 / (field SD per unit σ), origin line
    ok = np.isfinite(noise_hz[mask]) & (noise_hz[mask] > 0) & (unit > 0)
    if not (np.isfinite(sigma) and sigma > 0) or not ok.any():
        return noise_hz, 1.0
    sigma_fit = float(np.median(noise_hz[mask][ok] * unit[ok]))
    ratio = min(1.0, sigma / sigma_fit) if sigma_fit > 0 else 1.0
    return (noise_hz * np.float32(ratio)).astype(np.float32), ratio


def redraw_noise(noise_hz: np.ndarray, magnitude: np.ndarray, echo_times, mask: np.ndarray, sigma: float,
                 rng: np.random.Generator) -> np.ndarray:
    """The field-noise map another scan of the same head would give: one random draw.

    A field fit's map is ``σ_fit·sqrt(k) / (2π·sqrt(Σ|S_n|²TE_n²))`` per voxel (the line
    through the origin): σ_fit the pooled noise level, ``k`` the model-failure factor
    (``χ²/(MODEL_FAILURE_RATIO·σ_fit²)`` where above 1, ``χ²`` the voxel's weighted residual
    per degree of freedom). Both vary from scan to scan with the thermal noise σ:

    - ``χ²``: ``dof·χ²/σ²`` follows a non-central χ² law with ``dof = E - 2`` degrees of
      freedom and non-centrality ``λ = dof·χ²/σ² - dof`` (the model's error, unbiased), drawn
      anew where ``k > 1`` (elsewhere ``k`` stays 1: its ``χ²`` is not known, and a redraw
      that would inflate it is missed: a voxel whose residual is all noise crosses the
      threshold in 3 % of scans with 5 echoes);
    - ``Σ|S_n|²TE_n²``, to first order, relative SD ``σ·sqrt(Σ|S_n|²TE_n⁴) / Σ|S_n|²TE_n²``.

    ``k`` is read back from the map with σ_fit its median of ``noise·2π·sqrt(Σ|S_n|²TE_n²)``
    (as :func:`thermal_noise`); a free line's voxels are treated alike. With ``sigma``
    unknown (NaN) σ_fit stands in, which overstates the spread (it also holds model error).

    Parameters
    ----------
    noise_hz : ndarray (X, Y, Z)
        The fit's field-noise map (Hz, or any unit).
    magnitude : ndarray (X, Y, Z, E)
        Magnitude of each echo, as given to the fit.
    echo_times : sequence of float
        Echo times (s).
    mask : ndarray of bool
        Voxels the fit ran on (the map is returned unchanged elsewhere).
    sigma : float
        The images' thermal complex-noise σ (magnitude units; NaN: unknown).
    rng : numpy.random.Generator
        Source of the draw.

    Returns
    -------
    ndarray (float32)
        The redrawn map.
    """
    magnitude = _checks.as_volume("magnitude", magnitude, ndim=4)
    te = _checks.echo_times(echo_times, magnitude.shape[3])
    mask = _checks.as_mask("mask", mask, magnitude.shape[:3])
    noise_hz = np.asarray(noise_hz, np.float32)
    _checks.same_shape("noise_hz", noise_hz, "mask", mask)
    s2 = np.square(magnitude[mask], dtype=np.float64)
    stt = s2 @ (te * te)
    noise = noise_hz[mask].astype(np.float64)
    ok = np.isfinite(noise) & (noise > 0) & (stt > 0)
    out = noise_hz.copy()
    if not ok.any():
        return out
    unit = 2 * np.pi * np.sqrt(stt)
    sigma_fit = float(np.median(noise[ok] * unit[ok]))
    sig = sigma if np.isfinite(sigma) and sigma > 0 else sigma_fit
    new = noise.copy()
    dof = te.size - 2
    if dof >= 1 and sigma_fit > 0:
        k = np.where(ok, (noise * unit / sigma_fit) ** 2, 1.0)
        failed = k > 1.01  # float32 maps: 1 within rounding is no inflation
        x = dof * MODEL_FAILURE_RATIO * k[failed] * (sigma_fit / sig) ** 2  # dof·χ²/σ²
        drawn = rng.noncentral_chisquare(dof, np.maximum(x - dof, 1e-9))
        k_new = np.maximum(1.0, drawn * (sig / sigma_fit) ** 2 / (dof * MODEL_FAILURE_RATIO))
        new[failed] *= np.sqrt(k_new / k[failed])
    rel = np.where(stt > 0, sig * np.sqrt(s2 @ te ** 4) / np.maximum(stt, 1e-300), 0.0)
    new *= np.maximum(1 + rel * rng.standard_normal(rel.size), 0.1)
    out[mask] = np.where(ok, new, noise).astype(np.float32)
    return out
