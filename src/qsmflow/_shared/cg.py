"""Conjugate gradients on float32 volumes, shared by background removal and inversion."""

from __future__ import annotations

import numpy as np


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product of two float32 volumes (BLAS, blocked partial sums)."""
    return float(np.vdot(a.ravel(), b.ravel()))


def conjugate_gradient(apply, b: np.ndarray, tol: float, maxiter: int, x0: np.ndarray | None = None):
    """Conjugate gradients for a symmetric positive (semi-)definite ``apply`` on float32 arrays.

    Stops when ``||r|| <= tol·||b||``; returns (x, iterations). Vectors stay float32
    and keep their shape, so operators work on whole volumes (masks by
    multiplication, no gathering).
    """
    x = np.zeros_like(b) if x0 is None else x0.astype(b.dtype, copy=True)
    r = b - apply(x) if x0 is not None else b.copy()
    p = r.copy()
    rs = _dot(r, r)
    stop = (tol ** 2) * _dot(b, b)
    it = 0
    while it < maxiter and rs > stop:
        ap = apply(p)
        denom = _dot(p, ap)
        if denom <= 0:
            break
        alpha = np.float32(rs / denom)
        x += alpha * p
        r -= alpha * ap
        rs_new = _dot(r, r)
        p *= np.float32(rs_new / rs)
        p += r
        rs = rs_new
        it += 1
    return x, it
