"""Conjugate gradients on float32 volumes, shared by background removal and inversion."""

from __future__ import annotations

import numpy as np

from . import parallel


def _step(x, r, z, p, ap, alpha, precond):
    """``x += αp``, ``r -= α·Ap``, ``z = M⁻¹r`` (flat arrays, slab by slab on the cores, a chunk at a time):
    returns (r·z, r·r)."""
    def run(s):
        for c in parallel.chunks(s):  # the temporaries α·p, α·Ap stay in cache
            x[c] += alpha * p[c]
            r[c] -= alpha * ap[c]
            if precond is not None:
                np.multiply(precond[c], r[c], out=z[c])
        if precond is None:
            rr = float(np.vdot(r[s], r[s]))
            return rr, rr
        return float(np.vdot(r[s], z[s])), float(np.vdot(r[s], r[s]))

    sums = parallel.each(run, parallel.slabs(x.size, x.size))
    return sum(a for a, _ in sums), sum(b for _, b in sums)


def _next_direction(p, z, beta):
    """``p = β·p + z`` (flat arrays, slab by slab, a chunk at a time)."""
    def run(s):
        for c in parallel.chunks(s):
            p[c] *= beta
            p[c] += z[c]

    parallel.each(run, parallel.slabs(p.size, p.size))


def conjugate_gradient(apply, b: np.ndarray, tol: float, maxiter: int, x0: np.ndarray | None = None,
                       precond: np.ndarray | None = None):
    """Conjugate gradients for a symmetric positive (semi-)definite ``apply`` on float32 arrays.

    Stops when ``||r|| <= tol·||b||``; returns (x, iterations). Vectors stay float32
    and keep their shape, so operators work on whole volumes (masks by
    multiplication, no gathering). ``precond``, a positive array of ``b``'s shape, is the
    inverse of a diagonal preconditioner ``M`` (e.g. Jacobi's ``1/diag(A)``), or a function
    ``r ↦ M⁻¹r`` for any symmetric positive definite ``M`` (a multigrid V-cycle): the search
    directions are then conjugate in the metric of ``M⁻¹A``; the stopping rule stays on
    the unpreconditioned residual.

    References
    ----------
    Hestenes MR, Stiefel E. Methods of conjugate gradients for solving linear systems.
    J Res Natl Bur Stand 1952;49:409-436. doi:10.6028/jres.049.044
    """
    x = np.zeros(b.shape, b.dtype) if x0 is None else x0.astype(b.dtype, order="C", copy=True)
    r = np.ascontiguousarray(b - apply(x)) if x0 is not None else b.copy(order="C")
    solve = precond if callable(precond) else None
    if solve is not None:
        precond = None
        z = np.ascontiguousarray(solve(r), dtype=b.dtype)
    else:
        z = r if precond is None else np.ascontiguousarray(precond * r)
    p = z.copy(order="C")
    rz = parallel.dot(r, z)
    rr = rz if precond is None and solve is None else parallel.dot(r, r)
    stop = (tol ** 2) * parallel.dot(b, b)
    # flat views of the vectors (all C-contiguous: made here), updated in place slab by slab
    fx, fr, fz, fp = (v.reshape(-1) for v in (x, r, z, p))
    fm = None if precond is None else np.ascontiguousarray(precond, dtype=b.dtype).reshape(-1)
    it = 0
    while it < maxiter and rr > stop:
        ap = apply(p)
        denom = parallel.dot(p, ap)
        if denom <= 0:
            break
        rz_new, rr = _step(fx, fr, fz, fp, np.ascontiguousarray(ap).reshape(-1), np.float32(rz / denom), fm)
        if solve is not None:  # z = M⁻¹r from the updated residual
            z = np.ascontiguousarray(solve(r), dtype=b.dtype)
            fz = z.reshape(-1)
            rz_new = parallel.dot(r, z)
        _next_direction(fp, fz, np.float32(rz_new / rz))
        rz = rz_new
        it += 1
    return x, it
