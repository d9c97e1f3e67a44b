"""Removal of the echo-independent phase offset φ0 of coil-combined multi-echo data.

Every method has the signature ``(phase, magnitude, echo_times, voxel_size, *, mask)
-> (phase_without_offset, offset)`` with (X, Y, Z, E) phase in radians.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from ._shared import checks as _checks
from ._shared.units import wrap
from .unwrap import romeo as _romeo
from ._shared.registry import Method

log = logging.getLogger(__name__)

__all__ = ["METHODS", "mcpc3ds", "no_offset_removal"]

# Gaussian smoothing (mm) of the estimated offset: φ0 (receive and transmit phase)
# varies over centimetres. On a 6 rad 3rd-order offset, 3 mm leaves 0.02 rad SD of
# bias (5 mm: 0.05) and still averages ~100 voxels of noise at 1 mm.
OFFSET_SMOOTHING_MM = 3.0


def mcpc3ds(
    phase: np.ndarray,
    magnitude: np.ndarray,
    echo_times,
    voxel_size,
    *,
    mask: np.ndarray,
    sigma_mm: float = OFFSET_SMOOTHING_MM,
) -> tuple[np.ndarray, np.ndarray]:
    """Phase offset from the first two echoes (MCPC-3D-S), smoothed as a complex field.

    The Hermitian product ``S2·conj(S1)`` carries only the phase evolved between the
    echoes; unwrapped spatially (quality-guided, with ``sqrt(|S1 S2|)`` as magnitude)
    and scaled by ``TE1/(TE2-TE1)`` it predicts the evolution up to TE1, and
    ``φ0 = arg(S1) - that``. ``exp(iφ0)`` weighted by ``|S1|`` is smoothed (Gaussian,
    ``sigma_mm``) and its angle removed from every echo.

    Parameters
    ----------
    phase, magnitude : ndarray (X, Y, Z, E)
        Wrapped phase (rad) and magnitude, E ≥ 2.
    echo_times : sequence of float
        Echo times (s); the first two are used.
    voxel_size : sequence of 3 float
        Voxel size (mm).
    mask : ndarray of bool
        Voxels that carry signal (the offset is estimated from them and
        extrapolated smoothly outside).
    sigma_mm : float
        Smoothing of the offset (mm).

    Returns
    -------
    phase : ndarray (float32)
        ``wrap(φ_n - φ0)`` for every echo.
    offset : ndarray (float32)
        φ0 (rad, wrapped).

    References
    ----------
    Eckstein K, Dymerska B, Bachrata B, Bogner W, Poljanc K, Trattnig S, Robinson SD.
    Computationally efficient combination of multi-channel phase data from
    multi-echo acquisitions (ASPIRE). Magn Reson Med 2018;79:2996-3006.
    doi:10.1002/mrm.26963
    """
    phase = _checks.as_volume("phase", phase, ndim=4, finite=True)
    magnitude = _checks.as_volume("magnitude", magnitude, ndim=4, finite=True)
    _checks.same_shape("phase", phase, "magnitude", magnitude)
    te = _checks.echo_times(echo_times, phase.shape[3])
    if te.size < 2:
        raise ValueError("MCPC-3D-S needs at least two echoes; use no phase-offset removal for single-echo data")
    vs = _checks.voxel_size(voxel_size)
    mask = _checks.as_mask("mask", mask, phase.shape[:3])
    sigma = _checks.positive("sigma_mm", sigma_mm)

    hip = wrap(phase[..., 1] - phase[..., 0]).astype(np.float32)
    weight = np.sqrt(magnitude[..., 0] * magnitude[..., 1])
    hip_u = _romeo.unwrap_along_tree(hip, mask, magnitude=weight, seed_quality=weight)
    k = np.round(np.median(hip_u[mask]) / (2 * np.pi))
    evolution = (hip_u - 2 * np.pi * k) * (te[0] / (te[1] - te[0]))
    offset_raw = np.where(mask, phase[..., 0] - evolution, 0.0)
    z = np.where(mask, magnitude[..., 0], 0.0) * np.exp(1j * offset_raw)
    offset = _smooth_phase(z, sigma / vs)
    corrected = wrap(phase - offset[..., None]).astype(np.float32)
    log.info("MCPC-3D-S phase offset from echoes 1-2 (TE %.4g/%.4g s), smoothed %.1f mm", te[0], te[1], sigma)
    return corrected, offset


def _smooth_phase(z: np.ndarray, sigma_voxels) -> np.ndarray:
    """Angle of the Gaussian-smoothed complex field ``z``, without the edge bias of a ramp.

    Smoothing a phase ramp next to the mask's edge averages asymmetrically and shifts
    the phase there by (gradient x σ). The field's mean phase ramp (from neighbour
    products, per axis) is taken out first and put back after smoothing.
    """
    ramp = np.zeros(z.shape)
    for axis, n in enumerate(z.shape):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        g = np.angle(np.sum(z[tuple(hi)] * np.conj(z[tuple(lo)])))
        shape = [1, 1, 1]
        shape[axis] = n
        ramp = ramp + g * (np.arange(n) - n / 2).reshape(shape)
    flat = z * np.exp(-1j * ramp)
    smooth = ndimage.gaussian_filter(flat.real, sigma_voxels) + 1j * ndimage.gaussian_filter(flat.imag, sigma_voxels)
    return wrap(np.angle(smooth) + ramp).astype(np.float32)


def no_offset_removal(phase, magnitude, echo_times, voxel_size, *, mask):
    """Keep the phase as it is (offset taken as 0): for single-echo or offset-free data."""
    phase = np.asarray(phase, np.float32)
    return phase.copy(), np.zeros(phase.shape[:3], np.float32)


METHODS = {
    "mcpc3ds": Method("mcpc3ds", mcpc3ds,
                      "phase offset from the first two echoes (MCPC-3D-S), smoothed as a complex field"),
    "none": Method("none", no_offset_removal, "no phase-offset removal"),
}
