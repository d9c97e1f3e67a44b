"""Background removal by boundary-value and dipole-fitting problems: LBV and PDF."""

from __future__ import annotations

import numpy as np

from .. import kernels
from .._shared.cg import conjugate_gradient
from . import multigrid


def lbv(field, mask, vs, tol, maxiter, background0=None):
    """Solve ∇²b = 0 inside the mask with b = f on its one-voxel boundary; local = f - b.
    Conjugate gradients preconditioned by a multigrid V-cycle (:mod:`.multigrid`) start from
    ``background0`` (full grid) where given and finite, else from f."""
    box = kernels.PaddedBox(mask, margin=1)
    m = box.cut(mask)
    f = np.where(m, box.cut(field), 0).astype(np.float32)
    interior = multigrid.interior_of(m)
    if not interior.any():
        raise ValueError("the mask has no interior voxels; LBV needs a mask at least three voxels thick")
    laplacian = multigrid.Laplacian(interior, vs)
    rhs = laplacian.boundary_rhs(f, m & ~interior)
    x0 = f[interior]
    if background0 is not None:
        start = box.cut(background0)[interior]
        x0 = np.where(np.isfinite(start), start, x0).astype(np.float32)
    b, iters = conjugate_gradient(laplacian.apply, rhs, tol, maxiter, x0=x0,
                                  precond=multigrid.VCycle(laplacian))
    local = np.zeros(m.shape, np.float32)
    local[interior] = f[interior] - b
    return (box.full(local), box.full(interior)), iters


def pdf(field, mask, vs, b0, weights, margin_vox, tol, maxiter):
    """Fit the field inside the mask with dipoles outside it (in the mask's box + margin)."""
    box = kernels.PaddedBox(mask, margin=margin_vox, pad=margin_vox)
    m = box.cut(mask)
    shape = box.shape
    d = kernels.dipole_kernel(shape, vs, b0)
    f = np.where(m, box.cut(field), 0).astype(np.float32)
    w2 = box.put(np.where(m, box.cut(weights), 0).astype(np.float32) ** 2)
    # candidate sources: the box outside the mask (not the FFT padding, which wraps around)
    sources = box.put(~m)

    def dconv(x):
        return kernels.irfft(kernels.rfft(x) * d, shape)

    def normal(x):
        return sources * dconv(w2 * dconv(x))

    chi, iters = conjugate_gradient(normal, sources * dconv(w2 * box.put(f)), tol, maxiter)
    bg = box.crop(dconv(chi))
    return (box.full(np.where(m, f - bg, 0), np.float32), mask.copy()), iters
