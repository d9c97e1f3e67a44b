"""Batched Levenberg-Marquardt: one small least-squares problem per voxel, all voxels at once.

The one nonlinear least-squares engine of qsmflow (mono-exponential R2*, the three-pool
myelin water model). Every voxel has its own damping, which shrinks after a step that
lowers its cost and grows otherwise (the step is then not taken), and its own stopping
rule; the normal equations of all voxels are formed and solved together. Bounds clip the
step (a projected step: along an active bound the other parameters move slowly).
"""

from __future__ import annotations

import numpy as np

#: A voxel whose damping reaches this has stopped moving: it leaves the loop.
LAMBDA_MAX = 1e12


def levenberg_marquardt(model, y: np.ndarray, p: np.ndarray, *, weights: np.ndarray | None = None,
                        lower=None, upper=None, lam: float = 1e-3, down: float = 0.5, up: float = 10.0,
                        max_iter: int = 30, tol: float | None = None, watch=None, chunk: int | None = None):
    """Minimise ``Σ_e w_e |y_e - f_e(p)|²`` for every voxel by damped Gauss-Newton steps.

    Parameters
    ----------
    model : callable
        ``model(p, rows)`` -> ``(f (V, E), J (V, E, K))``: the model and its Jacobian at
        parameters ``p`` (V, K) of the voxels ``rows`` (a slice of the whole batch). Real
        or complex; a complex residual counts its real and imaginary parts.
    y : ndarray (N, E)
        Data, real or complex.
    p : ndarray (N, K)
        Starting parameters (not modified).
    weights : ndarray (N, E), optional
        Weight of each squared residual (real models only); default 1.
    lower, upper : array-like (K,), optional
        Bounds; a step is clipped into them.
    lam, down, up : float
        Starting damping, its factor after an accepted step and after a rejected one. The
        damping adds ``lam·diag(JᵀWJ)`` to the normal matrix (Marquardt's scaling).
    max_iter : int
        Steps at most.
    tol, watch : float and sequence of int, optional
        A voxel stops when a step (taken or not) moves each parameter in ``watch`` (all
        when None) by at most ``tol`` x max(|parameter|, 1). None: no such stop. A voxel
        also stops when its damping reaches ``LAMBDA_MAX``.
    chunk : int, optional
        Voxels per batch (memory: the normal matrices are V x K x K).

    Returns
    -------
    p : ndarray (N, K)
    cost : ndarray (N,)
    steps : int
        Steps taken by the longest-running batch.
    moving : int
        Voxels that had not stopped when ``max_iter`` was reached.

    Two parameters are solved in closed form (Cramer's rule), more by ``numpy.linalg.solve``;
    a singular system ends the batch's loop where it stands.

    References
    ----------
    Marquardt DW. An algorithm for least-squares estimation of nonlinear parameters.
    J Soc Ind Appl Math 1963;11:431-441. doi:10.1137/0111030
    """
    p_out, c_out = np.array(p, copy=True), np.empty(len(y))
    steps = moving = 0
    size = len(y) if chunk is None else chunk
    for start in range(0, len(y), max(size, 1)):
        rows = slice(start, start + size)
        w = None if weights is None else weights[rows]
        q, c, n, left = _batch(model, y[rows], p_out[rows], w, rows, lower, upper, lam, down, up, max_iter, tol,
                               watch)
        p_out[rows], c_out[rows] = q, c
        steps, moving = max(steps, n), moving + left
    return p_out, c_out, steps, moving


def _cost(r: np.ndarray, w) -> np.ndarray:
    if np.iscomplexobj(r):
        return np.sum(r.real ** 2 + r.imag ** 2, axis=1)
    return np.sum(r * r, axis=1) if w is None else np.sum(w * r * r, axis=1)


def _step(jac: np.ndarray, r: np.ndarray, w, lam: np.ndarray) -> np.ndarray:
    """The damped Gauss-Newton step (V, K) for residuals ``r = y - f``."""
    if np.iscomplexobj(jac):
        jac = np.concatenate([jac.real, jac.imag], axis=1)
        r = np.concatenate([r.real, r.imag], axis=1)
    wj = jac if w is None else w[:, :, None] * jac
    if jac.shape[2] == 2:
        j0, j1 = jac[..., 0], jac[..., 1]
        a00 = np.sum(wj[..., 0] * j0, axis=1)
        a01 = np.sum(wj[..., 0] * j1, axis=1)
        a11 = np.sum(wj[..., 1] * j1, axis=1)
        g0, g1 = np.sum(wj[..., 0] * r, axis=1), np.sum(wj[..., 1] * r, axis=1)
        a00d, a11d = np.maximum(a00, 1e-12) * (1 + lam), np.maximum(a11, 1e-12) * (1 + lam)
        det = a00d * a11d - a01 * a01
        det = np.where(np.abs(det) > 0, det, np.inf)
        return np.stack([(a11d * g0 - a01 * g1) / det, (a00d * g1 - a01 * g0) / det], axis=1)
    a = np.einsum("vei,vej->vij", wj, jac)
    g = np.einsum("vei,ve->vi", wj, r)
    damp = lam[:, None] * np.maximum(np.einsum("vii->vi", a), 1e-12)
    return np.linalg.solve(a + damp[:, :, None] * np.eye(jac.shape[2])[None], g[..., None])[..., 0]


def _batch(model, y, q, w, rows, lower, upper, lam0, down, up, max_iter, tol, watch):
    lam = np.full(len(y), float(lam0))
    f, jac = model(q, rows)
    r = y - f
    c = _cost(r, w)
    active = np.ones(len(y), bool)
    it = 0
    for it in range(1, max_iter + 1):
        try:
            step = _step(jac, r, w, lam)
        except np.linalg.LinAlgError:
            break
        new = q + step * active[:, None]
        if lower is not None or upper is not None:
            new = np.clip(new, lower, upper)
        f_new, jac_new = model(new, rows)
        r_new = y - f_new
        c_new = _cost(r_new, w)
        better = c_new < c
        q = np.where(better[:, None], new, q)
        r = np.where(better[:, None], r_new, r)
        jac = np.where(better[:, None, None], jac_new, jac)
        c = np.where(better, c_new, c)
        lam = np.where(better, lam * down, lam * up)
        if tol is not None:  # a step this small, taken or not, leaves the voxel where it is
            cols = slice(None) if watch is None else list(watch)
            small = np.abs(step[:, cols]) <= tol * np.maximum(np.abs(q[:, cols]), 1.0)
            active &= ~np.all(small, axis=1)
        active &= lam < LAMBDA_MAX
        if not active.any():
            break
    return q, c, it, int(active.sum())
