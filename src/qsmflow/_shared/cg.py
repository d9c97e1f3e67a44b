"""Conjugate gradients on float32 volumes, shared by background removal and inversion."""

from __future__ import annotations

import numpy as np


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product of two float32 volumes (BLAS, blocked partial sums)."""
    return float(np.vdot(a.ravel(), b.ravel()))


def conjugate_gradient(apply, b: np.ndarray, tol: float, maxiter: int, x0: np.ndarray | None = None,
                       precond: np.ndarray | None = None):
    """Conjugate gradients for a symmetric positive (semi-)definite ``apply`` on float32 arrays.

    Stops when ``||r|| <= tol·||b||``; returns (x, iterations). Vectors stay float32
    and keep their shape, so operators work on whole volumes (masks by
    multiplication, no gathering). ``precond``, a positive array of ``b``'s shape, is the
    inverse of a diagonal preconditioner ``M`` (e.g. Jacobi's ``1/diag(A)``): the search
    directions are then conjugate in the metric of ``M⁻¹A``; the stopping rule stays on
    the unpreconditioned residual.

    References
    ----------
    Hestenes MR, Stiefel E. Methods of conjugate gradients for solving linear systems.
    J Res Natl Bur Stand 1952;49:409-436. doi:10.6028/jres.049.044
    """
    x = np.zeros_like(b) if x0 is None else x0.astype(b.dtype, copy=True)
    r = b - apply(x) if x0 is not None else b.copy()
    z = r if precond is None else precond * r
    p = z.copy()
    rz = _dot(r, z)
    rr = rz if precond is None else _dot(r, r)
    stop = (tol ** 2) * _dot(b, b)
    it = 0
    while it < maxiter and rr > stop:
        ap = apply(p)
        denom = _dot(p, ap)
        if denom <= 0:
            break
        alpha = np.float32(rz / denom)
        x += alpha * p
        r -= alpha * ap
        if precond is None:
            rz_new = rr = _dot(r, r)
            z = r
        else:
            z = np.multiply(precond, r, out=z)
            rz_new, rr = _dot(r, z), _dot(r, r)
        p *= np.float32(rz_new / rz)
        p += z
        rz = rz_new
        it += 1
    return x, it
