"""Spherical-mean-value (SMV) background removal: SHARP, V-SHARP, RESHARP, iSMV.

A field produced by sources outside a sphere equals its mean over the sphere
(harmonic functions obey the mean value property), so ``(δ - S) * f`` keeps only the
local sources' field wherever the sphere ``S`` fits inside the mask.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from .._shared.cg import conjugate_gradient

# A voxel is inside the mask eroded by a sphere when the sphere's mean of the mask
# is 1 up to float32 round-off of the FFT convolution (measured below 1e-5).
_FULL_SPHERE = 1.0 - 1e-4


class Box(kernels.PaddedBox):
    """The mask's bounding box and its field, zero-padded for FFT convolutions with kernels
    of ``margin`` voxels."""

    def __init__(self, field: np.ndarray, mask: np.ndarray, margin):
        super().__init__(mask, pad=margin)
        self.mask = self.cut(mask)
        self.field = np.where(self.mask, self.cut(field), 0).astype(np.float32)

    def conv(self, x_k: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        """Inverse FFT of ``x_k * kernel`` cropped to the box."""
        return self.crop(kernels.irfft(x_k * kernel, self.shape))

    def inside(self, kernel: np.ndarray) -> np.ndarray:
        """Voxels whose whole (normalised, non-negative) ``kernel`` lies in the mask."""
        return (self.conv(kernels.rfft(self.put(self.mask)), kernel) >= _FULL_SPHERE) & self.mask


def vsharp(field, mask, vs, radii, threshold):
    """Variable-radius SMV filtering, deconvolved by the largest kernel (TSVD)."""
    box = Box(field, mask, np.ceil(radii[0] / vs).astype(int) + 1)
    f_k = kernels.rfft(box.put(box.field))
    highpass = np.zeros(box.mask.shape, np.float32)
    assigned = np.zeros(box.mask.shape, bool)
    big = None
    for r in radii:
        s = kernels.smv_kernel(box.shape, vs, r)
        big = s if big is None else big
        fresh = box.inside(s) & ~assigned
        if fresh.any():
            filt = box.field - box.conv(f_k, s)
            highpass[fresh] = filt[fresh]
            assigned |= fresh
    if not assigned.any():
        raise ValueError(f"the mask is thinner than the smallest sphere ({radii[-1]:g} mm); nothing is left")
    h = 1.0 - big
    inv = np.where(np.abs(h) > threshold, 1.0 / np.where(h == 0, 1.0, h), 0.0).astype(np.float32)
    local = box.conv(kernels.rfft(box.put(highpass)), inv)
    return box.full(np.where(assigned, local, 0), np.float32), box.full(assigned, bool)


def _sphere_box(field, mask, vs, radius):
    """The mask's padded box for a sphere of ``radius`` mm: (box, SMV kernel, mask eroded by
    the sphere, that eroded mask on the padded grid)."""
    box = Box(field, mask, np.ceil(radius / vs).astype(int) + 1)
    s = kernels.smv_kernel(box.shape, vs, radius)
    eroded = box.inside(s)
    if not eroded.any():
        raise ValueError(f"the mask is thinner than the sphere ({radius:g} mm); nothing is left")
    return box, s, eroded, box.put(eroded)


def resharp(field, mask, vs, radius, lam, tol, maxiter):
    """Tikhonov-regularised SHARP deconvolution: min ||M_e C (f - x)||² + λ||x||², C = δ - S."""
    box, s, eroded, pe = _sphere_box(field, mask, vs, radius)
    c = (1.0 - s).astype(np.float32)

    def apply_c(x):
        return kernels.irfft(kernels.rfft(x) * c, box.shape)

    def normal(x):
        y = apply_c(pe * apply_c(x))
        y += np.float32(lam) * x
        return y

    x, iters = conjugate_gradient(normal, apply_c(pe * apply_c(box.put(box.field))), tol, maxiter)
    local = box.crop(x)
    return (box.full(np.where(eroded, local, 0), np.float32), box.full(eroded, bool)), iters


def ismv(field, mask, vs, radius, tol, maxiter):
    """Background = the harmonic extension of the boundary field through the SMV property.

    On the mask eroded by the sphere, ``b = S * b``; on the rest of the mask
    ``b = f``. Solved for ``b`` on the eroded mask by conjugate gradients on
    ``(I - P S P) b = P S (f·(1 - P))``; the local field is ``f - b`` there.
    """
    box, s, eroded, pe = _sphere_box(field, mask, vs, radius)

    def smv(x):
        return kernels.irfft(kernels.rfft(x) * s, box.shape)

    def op(x):
        return x - pe * smv(x)

    f = box.put(box.field)
    b, iters = conjugate_gradient(op, pe * smv((1 - pe) * f), tol, maxiter, x0=pe * f)
    local = box.field - box.crop(b)
    return (box.full(np.where(eroded, local, 0), np.float32), box.full(eroded, bool)), iters
