"""Total-variation dipole inversions: ADMM (FANSI) and Gauss-Newton (MEDI).

Both minimise a weighted data term plus ``α Σ |M_G ∇χ|₁`` on a :class:`Problem`.
The nonlinear data term compares complex exponentials of the phase,
``(W/s)²|exp(i s Dχ) - exp(i s f)|²/2`` with ``s`` the phase per ppm (rad/ppm), so
that for small residuals it equals the linear ``W²(Dχ - f)²/2`` and ``α`` means the
same in both; where the residual is large (noise, unwrapping errors) it saturates.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import kernels
from .._shared import parallel
from .._shared.cg import conjugate_gradient
from .problem import BLOCK_PLANES, Problem, shrink

log = logging.getLogger(__name__)

# Newton steps of the nonlinear z2 update per ADMM iteration (Milovic et al. 2018 use
# up to 10 with early exit at 1e-6 rad; 4 warm-started steps reach that here).
_NEWTON_STEPS = 4


def _newton_z2(z2, y, f, w2, mu2, s):
    """Per-voxel minimiser of (w²/s²)(1 - cos s(z - f)) + μ₂/2 (z - y)², by damped Newton steps."""
    for _ in range(_NEWTON_STEPS):
        e = s * (z2 - f)
        grad = w2 / s * np.sin(e) + mu2 * (z2 - y)
        # the cosine term's curvature is negative past a quarter turn: drop it there (a
        # majorising step) and never move more than 0.5 rad of phase at once
        hess = np.maximum(w2 * np.cos(e), 0) + mu2
        z2 = z2 - np.clip(grad / hess, -0.5 / s, 0.5 / s)
    return z2.astype(np.float32, copy=False)


def _tv_split(p: Problem, chi: np.ndarray, s: np.ndarray, thr, neg_thr, u: np.ndarray) -> None:
    """ADMM's update of the split ``z = ∇χ`` and its scaled dual ``s``, in place and block by
    block (:meth:`Problem.each_block`): ``g = ∇χ + s``, ``z = shrink(g)``, ``s ← g - z``, and
    ``u ← z - s``, the next χ update's input (``z`` itself is not kept). The same float32
    operations as on whole volumes, with a block's ``g`` and ``z`` in cache."""
    per_voxel = np.ndim(thr) == s.ndim

    def run(lo, hi, work):
        g, z = work[0][:, :hi - lo], work[1][:, :hi - lo]
        p.grad_planes(chi, lo, hi, g)
        sb = s[:, lo:hi]
        g += sb
        shrink(g, thr[:, lo:hi] if per_voxel else thr, neg_thr[:, lo:hi] if per_voxel else neg_thr, out=z)
        np.subtract(g, z, out=sb)
        np.subtract(z, sb, out=u[:, lo:hi])

    p.each_block(run, lambda: np.empty((2, 3, BLOCK_PLANES) + p.shape[1:], np.float32))


def fansi(p: Problem, alpha: float, *, mu1: float, mu2: float, max_iter: int, tol: float,
          phase_scale: float | None = None, edges: np.ndarray | None = None, x0: np.ndarray | None = None):
    """Weighted TV by ADMM with splits ``z = ∇χ`` and ``z₂ = Dχ``; returns (χ, iterations).

    ``phase_scale`` (rad/ppm) switches on the nonlinear data term. ``edges`` (3, ...)
    multiplies ``α`` per gradient component (0 at magnitude edges). The loop stops when
    the relative update of χ falls below ``tol``.
    """
    w2 = p.w * p.w
    chi = np.zeros(p.shape, np.float32) if x0 is None else x0.astype(np.float32, copy=True)
    chi_k = p.fft(chi)
    dchi = p.ifft(chi_k * p.d)
    s = np.zeros((3,) + p.shape, np.float32)
    s2 = np.zeros(p.shape, np.float32)
    u = p.grad(chi)  # z - s, the χ update's input; z = ∇χ and s = 0 to start
    z2 = (w2 * p.f + mu2 * dchi) / (w2 + mu2)
    denom = (mu1 * p.g2 + mu2 * p.d * p.d).astype(np.float32)
    denom.flat[0] = 1.0
    thr = np.float32(alpha / mu1) if edges is None else (np.float32(alpha / mu1) * edges).astype(np.float32)
    neg_thr = -thr
    data_num, data_den = w2 * p.f, w2 + mu2  # the linear z2 update's constant parts
    mu2_d = mu2 * p.d
    ew = parallel.ufunc  # element-wise work on the volumes, slab by slab on the cores
    buf = np.empty(p.shape, np.float32)
    it = 0
    for it in range(1, max_iter + 1):
        chi_k = p.fft(p.grad_adj(u))
        ew(np.multiply, chi_k, mu1, out=chi_k)
        data_k = p.fft(ew(np.subtract, z2, s2, out=buf))
        ew(np.multiply, data_k, mu2_d, out=data_k)
        ew(np.add, chi_k, data_k, out=chi_k)
        ew(np.divide, chi_k, denom, out=chi_k)
        del data_k
        chi_k.flat[0] = 0.0
        new = p.ifft(chi_k)
        change = np.sqrt(parallel.dot(ew(np.subtract, new, chi, out=buf), buf)) / max(np.sqrt(parallel.dot(new, new)),
                                                                                       1e-30)
        chi = new
        dchi = p.ifft(ew(np.multiply, chi_k, p.d, out=chi_k))
        _tv_split(p, chi, s, thr, neg_thr, u)
        y = ew(np.add, dchi, s2, out=dchi)
        if phase_scale is None:
            z2 = ew(np.divide, ew(np.add, data_num, ew(np.multiply, y, mu2, out=buf), out=buf), data_den, out=buf).copy()
        else:
            z2 = _newton_z2(z2, y, p.f, w2, mu2, phase_scale)
        s2 = ew(np.subtract, y, z2, out=y)
        if change < tol:
            break
    return chi, it


def _tv_weights(p: Problem, chi: np.ndarray, edges: np.ndarray, eps: float, newton: bool) -> np.ndarray:
    """TV's weights per gradient component at ``χ``, edge mask squared in: the lagged
    diffusivity ``V = 1/sqrt(|M∇χ|² + eps)`` or, with ``newton``, its curvature ``eps·V³``.
    Block by block of planes (:meth:`Problem.each_block`), in place on the gradient, so that
    no volume-sized temporary is made (the same float32 operations as on whole volumes)."""
    out = np.empty((3,) + chi.shape, np.float32)
    eps = np.float32(eps)

    def run(lo, hi, _):
        g = out[:, lo:hi]
        p.grad_planes(chi, lo, hi, g)
        for a in range(3):
            m, e = g[a], edges[a, lo:hi]
            m *= e
            np.multiply(m, m, out=m)
            m += eps
            np.sqrt(m, out=m)
            np.divide(np.float32(1.0), m, out=m)  # per component: anisotropic TV
            if newton:
                m[...] = eps * m * m * m
            m *= e * e  # once, not per product

    p.each_block(run)
    return out


def _csf_projection(weights, lam: float):
    """The CSF term's operator for CSF weights ``w`` (None: no term): ``(add, index, w)``, where
    ``add(out, x)`` adds ``lam · w ⊙ (x - Σwx/Σw)`` (``λ_c PᵀP x``, the weighted projection onto
    zero-mean CSF values; positive semi-definite for ``lam`` ≥ 0) to ``out`` in place and returns
    it. Only the weighted voxels are touched (~3 % of the box at 1 mm), gathered by index on
    flat views (3x faster than ``.flat``'s iterator)."""
    idx = np.flatnonzero(weights) if weights is not None else np.empty(0, np.intp)
    w = np.asarray(weights).reshape(-1)[idx].astype(np.float32) if idx.size else np.empty(0, np.float32)
    total = float(w.sum(dtype=np.float64))  # the weights are 1 for a boolean mask
    lam = np.float32(lam)

    def add(out, x):
        if total:
            vals = x.reshape(-1)[idx]
            vals -= np.float32(np.dot(w, vals) / total)
            vals *= w
            vals *= lam
            if out.flags.c_contiguous:
                out.reshape(-1)[idx] += vals
            else:  # reshape would copy, and the sum would be lost
                out.flat[idx] += vals
        return out

    return add, idx, w


def _csf_diagonal(w: np.ndarray, lam) -> np.ndarray:
    """The diagonal of the CSF term for weights ``w`` (the weighted voxels' values, or a whole
    volume): ``lam · w (1 - w/Σw)``."""
    return np.float32(lam) * w * (1 - w / np.float32(w.sum(dtype=np.float64) or 1.0))


def _gauss_newton_system(p: Problem, chi: np.ndarray, alpha: float, edges: np.ndarray, csf, lam_csf: float,
                         eps: float, precond, newton: bool = False, data_diag: np.ndarray | None = None,
                         capped: bool = False):
    """The linearised normal operator at ``χ``: (normal, q, tv_op, add_csf, jacobi).

    TV enters by its lagged-diffusivity weights ``V = 1/sqrt(|M∇χ|² + eps)`` per gradient
    component, or with ``newton`` by its curvature ``eps·V³``. ``normal`` acts on the
    preconditioned unknown ``y`` (``χ = q(y)``); ``tv_op`` acts on ``χ``, and
    ``add_csf(out, x)`` adds ``λ_c PᵀP x`` to ``out`` in place. With ``data_diag`` (the
    data term's share of the diagonal, :func:`data_diagonal`), ``jacobi`` is the inverse of
    the diagonal of ``normal`` with TV's and the CSF term's exact diagonals added, or with
    ``capped`` that inverse over its median in the mask, capped at 1 (:func:`medi`); else None.
    """
    w2 = p.w * p.w
    add_csf, csf_idx, csf_w = _csf_projection(csf, lam_csf)
    lam = np.float32(lam_csf)
    v = _tv_weights(p, chi, edges, eps, newton)
    jacobi = None if data_diag is None else _inverse_diagonal(p, v, alpha, data_diag, csf_idx, csf_w, lam, precond)
    if capped and jacobi is not None:
        jacobi /= np.float32(np.median(jacobi[p.mask > 0]))
        np.minimum(jacobi, np.float32(1.0), out=jacobi)

    def q(x, out=None):
        if precond is None:
            return x
        return parallel.ufunc(np.multiply, precond, x, out=np.empty_like(x) if out is None else out)

    def tv_op(x):
        return p.tv_laplacian(x, v)

    def normal(x):
        u = q(x)
        field = p.dipole(u)
        out = p.dipole(parallel.ufunc(np.multiply, w2, field, out=field))
        parallel.axpy(out, np.float32(alpha), tv_op(u))
        out = add_csf(out, u)
        return q(out, out=out)

    return normal, q, tv_op, add_csf, jacobi


# The Jacobi preconditioner of MEDI's Gauss-Newton systems weights the data term's diagonal
# by this factor against TV's (see :func:`data_diagonal`): the noise weights then set the
# scale of each voxel's steps more than TV's lagged weights, which vary 1000-fold. Chosen
# with MEDI's 25 CG iterations on the benchmark matrix (see :func:`qsmflow.inversion.medi`).
JACOBI_DATA_WEIGHT = 10.0


def data_diagonal(p: Problem, weight: float | None = None) -> np.ndarray:
    """``weight`` x the diagonal of the data term ``DᵀW²D`` on ``p``'s grid.

    Entry ``i`` is ``Σ_j d(i - j)² w_j²`` (``d`` the dipole kernel in image space, even), the
    correlation of ``W²`` with ``d²``: two FFTs. ``weight`` > 1 lets the data term's
    noise weighting, rather than TV's lagged-diffusivity weights, scale the unknowns.
    """
    dk = p.ifft(p.d.astype(np.complex64))
    diag = p.ifft(p.fft(p.w * p.w) * p.fft(dk * dk))
    np.maximum(diag, 0, out=diag)  # float32 round-off around zero, far from the mask
    diag *= np.float32(JACOBI_DATA_WEIGHT if weight is None else weight)
    return diag


def _inverse_diagonal(p: Problem, v: np.ndarray, alpha: float, data_diag: np.ndarray, csf_idx: np.ndarray,
                      csf_w: np.ndarray, lam: np.float32, precond) -> np.ndarray:
    """``1 / diag(Q (data + α GᵀVG + λ_c PᵀP) Q)``: TV's diagonal is ``Σ_a (V_a,i + V_a,i-1)/h_a²``
    (forward differences, periodic), the CSF term's ``λ_c w (1 - w/Σw)`` (``λ_c (1 - 1/n)`` for a mask)."""
    diag = data_diag.copy()
    for a, h in enumerate(p.vs):
        tv = v[a] + np.roll(v[a], 1, axis=a)
        tv *= np.float32(alpha / h ** 2)
        diag += tv
    if csf_idx.size:
        diag.flat[csf_idx] += _csf_diagonal(csf_w, lam)
    if precond is not None:
        diag *= precond * precond
    floor = np.float32(1e-6) * float(diag.max())  # voxels no term reaches (TFI's far background)
    return np.float32(1.0) / np.maximum(diag, floor)


def medi(p: Problem, alpha: float, *, edges: np.ndarray, phase_scale: float, csf: np.ndarray | None,
         lam_csf: float, max_iter: int, tol: float, cg_iter: int, cg_tol: float, eps: float,
         precond: np.ndarray | None = None, jacobi: bool = True, capped: bool = False,
         x0: np.ndarray | None = None):
    """MEDI: Gauss-Newton on the nonlinear data term with lagged-diffusivity TV; returns (χ, steps).

    The steps start from zero, or from ``x0`` (χ on the padded grid; without ``precond``).

    Each step solves ``(DᵀW²D + α GᵀM V M G + λ_c PᵀP) dχ = -∇E`` by conjugate
    gradients, ``V = 1/sqrt(|M ∇χ|² + eps)``, ``P x = M_csf (x - mean_csf x)``.
    With ``precond`` (a positive diagonal ``Q``) the unknown is ``y`` with ``χ = Q y``
    and every operator is wrapped as ``Q A Q`` (total field inversion). With ``jacobi`` the
    CG is preconditioned by the inverse diagonal of the step's operator, its data part
    weighted ``JACOBI_DATA_WEIGHT`` (:func:`data_diagonal`); being blind to diagonal
    rescaling, it makes ``Q`` moot. With ``capped`` as well (total field inversion) the
    inverse diagonal is divided by its median over the mask and capped at 1: it shortens
    the steps of the stiff unknowns only (the sources just outside the mask, whose field in
    the mask is as strong as the tissue's but which ``Q`` scales up, and the voxels TV holds
    hardest), and leaves ``Q``'s long steps to the far sources, whose field is weak.
    """
    w2 = p.w * p.w
    s = phase_scale
    if x0 is not None and precond is not None:
        raise ValueError("a warm start (x0) is for MEDI without a preconditioner")
    y = np.zeros(p.shape, np.float32) if x0 is None else np.array(x0, np.float32)
    step = 0
    chi = y
    data_diag = data_diagonal(p) if jacobi else None
    for step in range(1, max_iter + 1):
        normal, q, tv_op, add_csf, minv = _gauss_newton_system(p, chi, alpha, edges, csf, lam_csf, eps, precond,
                                                               data_diag=data_diag, capped=capped)
        dchi_field = p.dipole(chi)
        grad_e = p.dipole(w2 / s * np.sin(s * (dchi_field - p.f)).astype(np.float32))
        grad_e += np.float32(alpha) * tv_op(chi)
        add_csf(grad_e, chi)
        dy, cg_steps = conjugate_gradient(normal, -q(grad_e), cg_tol, cg_iter, precond=minv)
        y += dy
        chi = q(y)
        ratio = np.linalg.norm(q(dy)) / max(np.linalg.norm(chi), 1e-30)
        log.debug("MEDI step %d: %d CG iterations, |dchi|/|chi| = %.3g", step, cg_steps, ratio)
        if ratio < tol:
            break
    return chi, step


def noise_sd(p: Problem, chi: np.ndarray, alpha: float, sigma: np.ndarray, *, edges: np.ndarray,
             csf: np.ndarray | None, lam_csf: float, eps: float, samples: int, cg_iter,
             steps: int | None = None, csf_jitter=None, jacobi: bool = True, field_jitter=None,
             seed: int = 0) -> np.ndarray:
    """Standard deviation of χ due to field noise ``sigma`` (ppm per voxel), on the padded grid.

    The estimate's response to a field perturbation ``n`` is linearised at ``χ``, drawn
    ``samples`` times as ``n = sigma·ξ`` (``ξ`` standard normal); the variance is the mean of
    ``δχ²``. Two responses:

    - ``steps`` None: the objective's minimiser, ``δχ = H⁻¹ DᵀW² n`` with ``H = DᵀW²D +
      α GᵀM V' M G + λ_c PᵀP`` the Hessian of :func:`medi`'s objective (TV's own curvature
      ``V' = eps/(|M∇χ|²+eps)^{3/2}``), by ``cg_iter`` CG iterations from zero.
    - ``steps`` K: the estimate as :func:`medi` computes it, K lagged-diffusivity steps from
      zero, which stop before the minimiser and so regularise more (most in the smooth
      iron-rich nuclei). Linearised at the solution, K steps answer ``b = DᵀW² n`` with
      ``Σ_{j<K} (A⁻¹C)^j A⁻¹ b``, ``A`` the lagged system (TV's weights ``V``) and ``C = A -
      H = α GᵀM (V - V') M G``; each ``A⁻¹`` by CG, ``cg_iter = (first, rest)`` iterations
      for the first term and each later one. It tends to the Hessian's response as K grows.

    ``csf_jitter`` (a sequence of ``samples`` arrays on the padded grid) holds changes ``δw``
    of the CSF weights ``w`` that the scan's noise causes, one per sample
    (:func:`qsmflow.reference.csf_weight_redraws`). Each sample is solved with the other
    scan's whole CSF term, weights ``w' = w + δw``: its gradient at χ, ``λ_c w' (χ - m')``
    with ``m' = Σw'χ/Σw'``, replaces this scan's ``λ_c w (χ - m)`` on the sample's right-hand
    side, and its operator ``λ_c (diag w' - w'w'ᵀ/Σw')`` replaces this scan's in the
    sample's steps. (A first-order response with the operator unchanged ran to 4x the spread
    over repeated scans in the few tissue voxels that carry a weight on the benchmark head; a
    per-voxel secant bound of it under-predicted CSF's spread by a quarter. Changing only the
    diagonal by ``λ_c δw``, as at stop 43, leaves ``-λ_c wwᵀ/Σw``, the rank-one part, where the
    weights fell: not the CSF term of any weights, and indefinite where the rest of the
    operator is weak. On TFI's Hessian (2 mm head, SNR 40) CG's search directions then met
    curvature down to -1.4·10⁻⁴ against 0.03 without the redraws, and a sample came out 6x
    too large; with the whole term, 0.031-0.035.)

    ``field_jitter`` (a sequence of ``samples`` fields on the padded grid, ppm) adds to each
    sample's noise draw a change of the field that the same noise causes elsewhere in the
    chain: the local field's response to a redrawn peel of the region's edge
    (:func:`qsmflow.workflows.jitter.peel_field_jitter`).

    With ``jacobi`` the CG is preconditioned with the operator's diagonal; total field
    inversion turns it off: its Hessian outside the mask is the data term alone,
    whose diagonal vanishes away from the brain, and the preconditioned steps then move the
    free background sources instead of the tissue (its SD came out at a quarter of the spread
    over noise draws). Nor is TFI's ``Q`` used: its background weight speeds up the fit of
    the background, not the tissue's response to noise.
    """
    # the inverse diagonal (Jacobi) of the operator that is solved only
    ddiag = data_diagonal(p, weight=1.0) if jacobi else None
    op, _, _, _, minv = _gauss_newton_system(p, chi, alpha, edges, csf, lam_csf, eps, None, newton=not steps,
                                             data_diag=ddiag)
    del ddiag
    first, rest, gap_w = cg_iter, 0, None
    if steps:
        first, rest = cg_iter
        # C = A - H = α Gᵀ M (V - V') M G: one gradient and its adjoint per product
        gap_w = _tv_weights(p, chi, edges, eps, newton=False)
        gap_w -= _tv_weights(p, chi, edges, eps, newton=True)
        gap_w *= np.float32(alpha)
    w2s = p.w * p.w * sigma
    seeds = np.random.SeedSequence(seed).spawn(samples)
    precond = minv if jacobi else None
    for name, jit in (("field_jitter", field_jitter), ("csf_jitter", csf_jitter)):
        if jit is not None and len(jit) != samples:
            raise ValueError(f"{name} holds {len(jit)} arrays for {samples} samples")
    if csf is None:
        csf_jitter = None
    if csf_jitter is not None:
        csf_w = csf.astype(np.float32)
        drop_csf = _csf_projection(csf_w, -lam_csf)[0]  # takes this scan's CSF term away again

    def curvature_gap(x):  # C x = α Gᵀ M (V - V') M G x
        return p.tv_laplacian(x, gap_w)

    def response_sq(k):
        rng = np.random.default_rng(seeds[k])
        draw = w2s * rng.standard_normal(p.shape, dtype=np.float32)
        if field_jitter is not None:
            draw += p.w * p.w * field_jitter[k]
        rhs = p.dipole(draw)
        op_k, precond_k = op, precond
        if csf_jitter is not None:  # the other scan's CSF term: its force at χ, and its stiffness
            w_other = np.clip(csf_w + csf_jitter[k], 0, None).astype(np.float32)
            add_other = _csf_projection(w_other, lam_csf)[0]
            rhs -= add_other(drop_csf(np.zeros_like(rhs), chi), chi)

            def op_k(x, _add=add_other):
                out = op(x)
                return _add(drop_csf(out, x), x)

            if precond is not None:
                diag = np.float32(1) / precond
                diag_k = diag + _csf_diagonal(w_other, lam_csf) - _csf_diagonal(csf_w, lam_csf)
                precond_k = np.float32(1) / np.maximum(diag_k, np.float32(0.1) * diag)
        term, _ = conjugate_gradient(op_k, rhs, 0.0, first, precond=precond_k)
        d = term.copy()
        for _ in range((steps or 1) - 1):
            term, _ = conjugate_gradient(op_k, curvature_gap(term), 0.0, rest, precond=precond_k)
            d += term
        return d * d

    # independent solves run side by side: two FFTs in two threads run nearly twice as fast
    # as one FFT on two cores, and the element-wise work is shared too
    with ThreadPoolExecutor(max_workers=min(samples, kernels.cores())) as pool:
        var = sum(pool.map(response_sq, range(samples)))
    return np.sqrt(var / np.float32(samples)).astype(np.float32)
