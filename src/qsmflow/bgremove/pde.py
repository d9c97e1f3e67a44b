"""Background removal by boundary-value and dipole-fitting problems: LBV and PDF."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .. import kernels
from .._shared import parallel
from .._shared.cg import conjugate_gradient


def _shift_pairs(a: np.ndarray, axis: int):
    lo = [slice(None)] * a.ndim
    hi = [slice(None)] * a.ndim
    lo[axis], hi[axis] = slice(0, -1), slice(1, None)
    return a[tuple(lo)], a[tuple(hi)]


def lbv(field, mask, vs, tol, maxiter, background0=None):
    """Solve ∇²b = 0 inside the mask with b = f on its one-voxel boundary; local = f - b.
    CG starts from ``background0`` (full grid) where given and finite, else from f."""
    box = kernels.PaddedBox(mask, margin=1)
    m = box.cut(mask)
    f = np.where(m, box.cut(field), 0).astype(np.float64)
    interior = m.copy()
    for axis in range(3):
        a_lo, a_hi = _shift_pairs(m, axis)
        i_lo, i_hi = _shift_pairs(interior, axis)
        i_lo &= a_hi
        i_hi &= a_lo
    edge = [slice(None)] * 3
    for axis in range(3):  # the box's faces have missing neighbours
        for s in (0, -1):
            edge[axis] = s
            interior[tuple(edge)] = False
        edge[axis] = slice(None)
    boundary = m & ~interior
    n = int(interior.sum())
    if n == 0:
        raise ValueError("the mask has no interior voxels; LBV needs a mask at least three voxels thick")
    index = np.full(m.shape, -1, np.int64)
    index[interior] = np.arange(n)
    diag = np.zeros(n)
    rows, cols, vals = [], [], []
    rhs = np.zeros(n)
    for axis, h in enumerate(vs):
        w = 1.0 / (h * h)
        diag += 2 * w
        i_lo, i_hi = _shift_pairs(index, axis)
        b_lo, b_hi = _shift_pairs(boundary, axis)
        f_lo, f_hi = _shift_pairs(f, axis)
        both = (i_lo >= 0) & (i_hi >= 0)
        rows += [i_lo[both], i_hi[both]]
        cols += [i_hi[both], i_lo[both]]
        vals += [np.full(both.sum(), -w)] * 2
        # interior voxel next to a boundary voxel: the known boundary value goes to the right-hand side
        sel = (i_lo >= 0) & b_hi
        np.add.at(rhs, i_lo[sel], w * f_hi[sel])
        sel = (i_hi >= 0) & b_lo
        np.add.at(rhs, i_hi[sel], w * f_lo[sel])
    a = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    a = (a + sparse.diags(diag)).tocsr().astype(np.float32)
    x0 = f[interior]
    if background0 is not None:
        start = box.cut(background0)[interior]
        x0 = np.where(np.isfinite(start), start, x0)
    b, iters = conjugate_gradient(_row_blocks(a), rhs.astype(np.float32), tol, maxiter, x0=x0.astype(np.float32))
    local = np.zeros(m.shape, np.float32)
    local[interior] = f[interior] - b
    return (box.full(local), box.full(interior)), iters


def _row_blocks(a: sparse.csr_matrix):
    """``x ↦ a @ x`` with the rows in blocks, one per core, multiplied side by side (scipy's
    sparse products release the GIL: the 1 mm head's Laplacian, 1.2 M rows, 9 ms in one block,
    6 ms in two)."""
    parts = parallel.slabs(a.shape[0], a.nnz)
    if len(parts) == 1:
        return a.dot
    blocks = [(s, a[s]) for s in parts]

    def apply(x):
        out = np.empty(a.shape[0], np.float32)

        def run(block):
            rows, part = block
            out[rows] = part @ x

        parallel.each(run, blocks)
        return out

    return apply


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
