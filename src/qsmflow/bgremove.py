"""Background field removal: total field -> local field inside an (eroded) brain mask.

Every method has the signature ``(field, mask, voxel_size, *, ...) -> (local, eroded_mask)``;
the local field has the units of the input field.
"""

from __future__ import annotations

import logging

import numpy as np

from . import _checks, kernels
from .constants import VSHARP_RADII_MM, VSHARP_THRESHOLD
from .registry import Method

log = logging.getLogger(__name__)

__all__ = ["METHODS", "vsharp"]

# A voxel is inside the mask eroded by a sphere when the sphere's mean of the mask
# is 1 up to float32 round-off of the FFT convolution (measured below 1e-5).
_FULL_SPHERE = 1.0 - 1e-4


def vsharp(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size,
    *,
    radii_mm=VSHARP_RADII_MM,
    threshold: float = VSHARP_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """V-SHARP: spherical mean value filtering with kernels that shrink towards the edge.

    At each voxel the field is high-pass filtered, ``(δ - S_r) * f``, with the
    largest sphere ``S_r`` that fits inside the mask; harmonic (background) fields
    vanish under this filter. The filtered field is then deconvolved with the
    largest kernel, ``1 - S_rmax``, truncated where it is below ``threshold``.

    Parameters
    ----------
    field : ndarray (X, Y, Z)
        Total field (any unit; ppm in the pipeline).
    mask : ndarray of bool (X, Y, Z)
        Brain mask.
    voxel_size : sequence of 3 float
        Voxel size (mm); spheres are round in mm for anisotropic voxels.
    radii_mm : sequence of float
        Sphere radii (mm), any order; the largest drives the deconvolution.
    threshold : float
        Truncation level of the deconvolution kernel (0 < threshold < 1).

    Returns
    -------
    local : ndarray (float32)
        Local field, zero outside ``eroded_mask``.
    eroded_mask : ndarray of bool
        The mask eroded by the smallest sphere.

    References
    ----------
    Wu B, Li W, Guidon A, Liu C. Whole brain susceptibility mapping using compressed
    sensing. Magn Reson Med 2012;67:137-147. doi:10.1002/mrm.23000

    Schweser F, Deistung A, Lehr BW, Reichenbach JR. Quantitative imaging of
    intrinsic magnetic tissue properties using MRI signal phase: an approach to in
    vivo brain iron metabolism? NeuroImage 2011;54:2789-2807.
    doi:10.1016/j.neuroimage.2010.10.070
    """
    field = _checks.as_volume("field", field)
    mask = _checks.as_mask("mask", mask, field.shape)
    vs = _checks.voxel_size(voxel_size)
    radii = sorted((_checks.positive("radii_mm", r) for r in np.atleast_1d(radii_mm)), reverse=True)
    threshold = _checks.positive("threshold", threshold)
    if threshold >= 1:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    radii = [r for r in radii if r >= vs.min()]
    if not radii:
        raise ValueError(f"radii_mm must include a radius of at least one voxel ({vs.min():g} mm)")

    bb = kernels.bounding_box(mask)
    m = mask[bb]
    f = np.where(m, field[bb], 0).astype(np.float32)
    margin = np.ceil(radii[0] / vs).astype(int) + 1
    shape = kernels.fft_shape(m.shape, margin)
    f_k = kernels.rfft(kernels.pad(f, shape))
    m_k = kernels.rfft(kernels.pad(m.astype(np.float32), shape))

    highpass = np.zeros(m.shape, np.float32)
    assigned = np.zeros(m.shape, bool)
    big = None
    for r in radii:
        s = kernels.smv_kernel(shape, vs, r)
        if big is None:
            big = s
        inside = kernels.crop(kernels.irfft(m_k * s, shape), m.shape) >= _FULL_SPHERE
        inside &= m
        fresh = inside & ~assigned
        if fresh.any():
            filt = f - kernels.crop(kernels.irfft(f_k * s, shape), m.shape)
            highpass[fresh] = filt[fresh]
            assigned |= fresh
    if not assigned.any():
        raise ValueError(f"the mask is thinner than the smallest V-SHARP sphere ({radii[-1]:g} mm); nothing is left")
    h = 1.0 - big
    inv = np.where(np.abs(h) > threshold, 1.0 / np.where(h == 0, 1.0, h), 0.0).astype(np.float32)
    local_c = kernels.crop(kernels.irfft(kernels.rfft(kernels.pad(highpass, shape)) * inv, shape), m.shape)
    local = np.zeros(field.shape, np.float32)
    eroded = np.zeros(field.shape, bool)
    local[bb] = np.where(assigned, local_c, 0)
    eroded[bb] = assigned
    log.info("V-SHARP: radii %.1f-%.1f mm, threshold %.3g, eroded mask keeps %.1f%% of the mask",
             radii[0], radii[-1], threshold, 100 * eroded.sum() / mask.sum())
    return local, eroded


METHODS = {
    "vsharp": Method(
        "vsharp",
        vsharp,
        "variable-radius SMV high-pass filter with truncated deconvolution",
        ("Wu B, Li W, Guidon A, Liu C. Whole brain susceptibility mapping using compressed sensing. "
         "Magn Reson Med 2012;67:137-147. doi:10.1002/mrm.23000",
         "Schweser F, Deistung A, Lehr BW, Reichenbach JR. Quantitative imaging of intrinsic magnetic tissue "
         "properties using MRI signal phase: an approach to in vivo brain iron metabolism? NeuroImage "
         "2011;54:2789-2807. doi:10.1016/j.neuroimage.2010.10.070"),
    ),
}
