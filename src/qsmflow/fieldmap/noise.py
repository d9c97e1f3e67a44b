"""The image noise level from the air around the head, and the thermal part of a field-noise map."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from .._shared import checks as _checks

log = logging.getLogger(__name__)

__all__ = ["background_sigma", "thermal_noise"]

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
    head = ndimage.binary_fill_holes(ndimage.binary_closing(bright | mask, iterations=2) | mask)
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
