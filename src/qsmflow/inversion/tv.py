"""Total-variation inversions: TV (FANSI) and MEDI / MEDI+0, with the automatic weight.
What MEDI+0 shares with total field inversion (:mod:`.total_field`), its problem set-up, data
taper and χ uncertainty map, is in :mod:`._medi_shared`."""

from __future__ import annotations

import logging

import numpy as np

from .._shared import checks as _checks
from .._shared.constants import (CSF_LAMBDA, MEDI_EDGE_FRACTION, MEDI_EDGE_TAPER, MEDI_EDGE_TAPER_MM,
                                 TV_ALPHA)
from .._shared.weights import noise_weights
from . import regularisation, solvers
from ._common import (
    _PAD_VOXELS_TV,
    _check_noise_in_ppm,
    _note,
    _phase_scale,
    _setup,
)
from ._medi_shared import SD_MAX_STEPS, SD_SAMPLES, _edge_tapered, _medi_problem, _sd_samples, _with_sd
from .problem import Problem

log = logging.getLogger(__name__)


#: The relative update at which MEDI's Gauss-Newton steps stop when they start from a χ
#: (``chi0``, the chain's restart after LBV's boundary refinement) rather than from zero
#: (``tol``, 0.1). The early stop from zero regularises, which the weight was chosen with;
#: from a warm start the steps only follow the field's change, and stopping them at 10 %
#: (2 steps) left χ short: on the captured MEDI+0 problems of the 1 mm, SNR 20 and oblique 35°
#: rows, 10 / 3 / 2 / 1 % gave χ NRMSE 25.40 / 25.13 / 25.07 / 25.04 %, 33.48 / 32.90 / 32.36
#: / 32.13 % and 33.76 / 33.46 / 33.39 / 33.33 % in 2 / 3-4 / 5 / 6-7 steps (benchmarks/README.md).
#: On the whole matrix 1 % against 3 % gained 0.0-0.8 points on every one of the twelve MEDI+0
#: rows (1 mm 25.05 -> 24.94 %, the worst row, oblique 35°, 33.5 -> 33.3 %, SNR 20 32.9 -> 32.1 %)
#: for about three more steps. (On the small head of the tests, 10.2 / 10.3 / 10.6 % at 10 / 3 / 1 %.)
MEDI_RESTART_TOL = 0.01

#: CG iterations per Gauss-Newton step of that restart (from zero: ``cg_iter``, 25, where
#: the early stop is part of the estimate). The restart follows the lagged-diffusivity
#: iteration to its fixed point, which shorter inner solves reach in more, cheaper steps.
#: On the twelve MEDI+0 rows of the matrix 15 against 25 iterations cost 0.00-0.13 points of
#: χ NRMSE (1 mm 24.95 -> 25.07 %, the worst, oblique 35°, 33.32 -> 33.38 %, SNR 20 32.15 ->
#: 32.15 %; slopes within 0.002) in 7-8 steps instead of 7, and the 1 mm restart took 28 % less
#: time; 10 iterations lost up to 0.28 points (1 mm 25.19 %, oblique 35° 33.60 %) in 8-9 steps.
#: The restart at 25 iterations and a 2 % update (stop 42) scored no better in the same time.
MEDI_RESTART_CG_ITER = 15


def tv(local_field: np.ndarray, mask: np.ndarray, voxel_size, b0_direction, *, noise=None,
       alpha: float | str = "auto", nonlinear: bool = False, phase_scale: float | None = None,
       max_iter: int = 150, tol: float = 1e-3, info: dict | None = None) -> np.ndarray:
    """Weighted total-variation inversion by ADMM (FANSI), linear or nonlinear data term.

    Minimises ``½||W(Dχ - f)||² + α||∇χ||₁`` (anisotropic TV, gradients per mm) with
    splits ``z = ∇χ`` and ``z₂ = Dχ``, which keep every update closed-form; the
    nonlinear variant compares ``exp(i·s·Dχ)`` with ``exp(i·s·f)`` and solves ``z₂`` by
    Newton steps. ADMM penalties ``μ₁ = 100α``, ``μ₂ = 1`` (Milovic et al. 2018).

    Parameters
    ----------
    noise : ndarray, optional
        Standard deviation of the local field (ppm, e.g. the field-fit noise map over
        γ̄B0); ``W = 1/noise`` scaled to mean 1.
    alpha : float or "auto"
        TV weight (ppm·mm for weights of mean 1). "auto": the discrepancy principle
        with ``noise`` (:func:`qsmflow.inversion.regularisation.discrepancy`); without a noise map
        the fixed ``TV_ALPHA`` with a warning.
    nonlinear : bool
        Use the nonlinear data term; needs ``phase_scale``.
    phase_scale : float
        Phase per ppm of field at the echo time the data term should mimic, rad/ppm
        (``2π·γ̄·B0·TE·1e-6``).
    max_iter, tol
        ADMM iterations and the relative χ update that stops them.

    Returns
    -------
    ndarray (float32)
        χ (ppm), zero outside ``mask``.

    References
    ----------
    Bilgic B, Fan AP, Polimeni JR, Cauley SF, Bianciardi M, Adalsteinsson E, Wald LL,
    Setsompop K. Fast quantitative susceptibility mapping with L1-regularization and
    automatic parameter selection. Magn Reson Med 2014;72:1444-1459. doi:10.1002/mrm.25029

    Milovic C, Bilgic B, Zhao B, Acosta-Cabronero J, Tejos C. Fast nonlinear
    susceptibility inversion with variational regularization. Magn Reson Med
    2018;80:814-821. doi:10.1002/mrm.27073
    """
    f, mask, vs, b = _setup(local_field, mask, voxel_size, b0_direction)
    s = _phase_scale(phase_scale) if nonlinear else None
    _check_noise_in_ppm(noise, f, mask)
    p = Problem(f, mask, vs, b, noise_weights(noise, mask), _PAD_VOXELS_TV)

    def solve(a, x0=None, iters=max_iter):
        return solvers.fansi(p, a, mu1=100 * a, mu2=1.0, max_iter=iters, tol=tol, phase_scale=s, x0=x0)

    alpha, x0 = _auto_alpha(alpha, solve, p, noise, "TV")
    chi, it = solve(alpha, x0)
    log.info("TV (%s) alpha %.3g: %d ADMM iterations%s", "nonlinear" if s else "linear", alpha, it,
             "" if it < max_iter else " (iteration cap reached)")
    _note(info, alpha=alpha, iterations=it, converged=it < max_iter)
    return p.full(chi)


def medi(local_field: np.ndarray, mask: np.ndarray, voxel_size, b0_direction, *, magnitude: np.ndarray,
         phase_scale: float, noise=None, alpha: float | str = "auto", csf_mask: np.ndarray | None = None,
         lam_csf: float = CSF_LAMBDA, edge_fraction: float = MEDI_EDGE_FRACTION, max_iter: int = 10,
         tol: float = 0.1, restart_tol: float = MEDI_RESTART_TOL, cg_iter: int = 25, cg_tol: float = 0.01,
         restart_cg_iter: int = MEDI_RESTART_CG_ITER, edge_taper: float = MEDI_EDGE_TAPER,
         edge_taper_mm: float = MEDI_EDGE_TAPER_MM, return_sd: bool = False, sd_samples: int = SD_SAMPLES,
         sd_noise: np.ndarray | None = None, sd_csf_jitter=None, sd_field_jitter=None,
         chi0: np.ndarray | None = None, chi0_steps: int = 0, search_start: bool = False,
         info: dict | None = None):
    """MEDI: morphology-enabled dipole inversion, nonlinear and noise-weighted; MEDI+0 with a CSF mask.

    Minimises ``½||(W/s)(exp(i s Dχ) - exp(i s f))||² + α||M_G ∇χ||₁
    (+ ½λ_c||M_csf(χ - mean_csf χ)||²)`` by Gauss-Newton steps, each solved by
    conjugate gradients with lagged-diffusivity TV (``ε = 1e-6``). ``M_G`` is 0 on the
    magnitude's edges: the ``edge_fraction`` of gradient components (over the three
    axes) with the largest magnitude gradient, 1 elsewhere, so TV does not smooth
    across anatomical boundaries.

    Parameters
    ----------
    magnitude : ndarray (X, Y, Z)
        Magnitude image for the edge mask (e.g. the echo-combined magnitude).
    phase_scale : float
        rad/ppm at the echo time the data term should mimic (``2π·γ̄·B0·TE·1e-6``).
    noise : ndarray, optional
        Standard deviation of the local field (ppm); ``W = 1/noise`` scaled to mean 1.
    alpha : float or "auto"
        TV weight, as in :func:`tv`; "auto" takes the discrepancy-principle weight of
        the (cheaper) TV problem, searched from ``regularisation.MEDI_ALPHA_PER_NOISE`` x the
        median noise x the voxel size.
    csf_mask : ndarray, optional
        CSF weights in [0, 1] per voxel, e.g. from :func:`qsmflow.reference.csf_weights`
        (a boolean mask is weights of 0 and 1; the name is kept from when it was a mask):
        adds the MEDI+0 term holding CSF uniform, ``lam_csf`` (relative to the data term)
        times the weighted spread of χ over it.
    edge_fraction : float
        Share of gradient components taken as edges (MEDI's 0.9 over three axes = 0.3).
    max_iter, tol, cg_iter, cg_tol, restart_cg_iter
        Gauss-Newton steps, the relative update that stops them (``restart_tol`` when they
        start from ``chi0``, see ``MEDI_RESTART_TOL``), CG iterations (``restart_cg_iter``
        from ``chi0``, see ``MEDI_RESTART_CG_ITER``) and tolerance per step. The CG is Jacobi-preconditioned (the data term's diagonal
        weighted ``solvers.JACOBI_DATA_WEIGHT`` = 10x against TV's); MEDI stops it early
        (the MEDI toolbox at 100 iterations), and where it stops is part of the estimate.
        Chosen by the worst row of the benchmark matrix's eleven MEDI+0 rows (voxels up to
        1.5 mm): 25 iterations gave a worst row of 40.8 % χ NRMSE (SNR 20; 15 iterations
        41.6 %, 35 iterations 40.7 %) and rows from 1.9 points below to 0.1 above 50 plain iterations,
        in half their time; the true diagonal (weight 1) with 35 iterations 41.3 %, weight
        3 41.0 %, weight 30 40.6 % with a higher HFEN on every row, weight 1000 43.6 % on
        the 1 mm head alone (32.2 % before).
    edge_taper, edge_taper_mm : float
        With a noise map, the data weigh less toward the edge of ``mask``: the noise is taken
        as ``noise · (1 + edge_taper · exp(-(d - h) / edge_taper_mm))``, ``d`` the distance
        (mm) to the nearest voxel outside the mask and ``h`` the smallest voxel side. A local
        field from a background removal is least reliable at its region's edge (LBV takes
        it to be zero there; SHARP-type filters leave their kernel's error), an error the
        thermal noise map does not hold. 0 turns it off; it needs a noise map. The automatic
        weight and ``return_sd`` take the untapered noise map (the edge's error neither is
        noise to be left unfitted nor varies between scans).
    return_sd : bool
        Also return the standard deviation of χ (ppm) due to the field noise ``noise``
        (required): ``(χ, sd)``; see Notes.
    sd_samples : int
        Noise samples for ``return_sd``; each voxel's SD is known to about ``1/sqrt(2·sd_samples)``.
    sd_noise : ndarray, optional
        The field noise (ppm) ``return_sd`` propagates, if not ``noise``: e.g. its thermal
        part alone (:func:`qsmflow.fieldmap.thermal_noise`) when ``noise`` also holds the
        field model's error, which weights the data but does not vary between scans.
    sd_csf_jitter : sequence of ndarray, optional
        ``sd_samples`` changes of ``csf_mask``'s weights that the scan's noise causes, one
        per sample (:func:`qsmflow.reference.csf_weight_redraws`): ``return_sd`` then also
        carries the weights' changes between scans, which move χ in CSF (each sample is
        solved with the other scan's CSF term, see :func:`solvers.noise_sd`).
    sd_field_jitter : sequence of ndarray, optional
        ``sd_samples`` changes of ``local_field`` (ppm, its grid) that the scan's noise causes
        through a decision taken before the inversion, one per sample, each added to that
        sample's noise draw: e.g. a background removal on a redrawn peel of the region's
        edge (:func:`qsmflow.workflows.jitter.peel_field_jitter`).
    chi0 : ndarray, optional
        χ (ppm) to start the Gauss-Newton steps from instead of zero: the solution for a
        nearby field (see :func:`qsmflow.bgremove.lbv_boundary_field`); the steps stop by
        ``restart_tol``. Give ``alpha`` with it (a number), or the weight is searched again.
    chi0_steps : int
        The Gauss-Newton steps that produced ``chi0``: ``return_sd`` follows the steps from
        zero, these and the new ones.
    search_start : bool
        With ``alpha="auto"`` and no ``chi0``, start the Gauss-Newton steps from the weight
        search's last linear-TV solution (the same weight and edge mask) instead of zero; the
        steps still stop at ``tol``. That solution is MEDI's without the nonlinear data term
        and the CSF term; from it the steps reach ``tol`` in 1-2 instead of 3-4. The chain
        starts its first pass so when a restart follows (LBV's refinement, see
        :func:`qsmflow.workflows.chain.inversion_and_reference`): on the benchmark matrix's 1 mm,
        SNR 20, oblique 35° 1x1x1.4 mm, 1.5 T and coronal-slab rows, through the refinement and
        the restart, χ NRMSE 24.63 / 35.09 / 32.29 / 25.21 / 31.03 % from zero against 24.51 /
        35.13 / 32.21 / 25.09 / 30.42 % from the search, with two Gauss-Newton steps fewer
        (stop 57). It is not the default alone: without the restart, on the tests' small head
        the start from the search read 6.1 % against 4.6 % from zero (the early stop from zero
        regularises less there than the TV minimiser). The uncertainty map counts such a start
        as ``SD_MAX_STEPS`` steps (the search's solution is near the TV minimiser, whose
        response the map's terms tend to).

    Returns
    -------
    chi : ndarray (float32)
        χ (ppm), zero outside ``mask``.
    sd : ndarray (float32)
        With ``return_sd``: χ's standard deviation from the field noise (ppm), zero outside
        ``mask``; returned as ``(chi, sd)``.

    Notes
    -----
    The uncertainty map is the standard deviation of χ that the noise causes: the response
    of the Gauss-Newton steps MEDI took (lagged-diffusivity TV, from zero) to field noise of
    SD ``sd_noise`` (independent between voxels) and, with ``sd_csf_jitter``, to the CSF weights'
    jitter, linearised at χ (:func:`solvers.noise_sd`), sampled ``sd_samples`` times.
    It follows the estimator, not the noise map: it is larger where TV has not flattened χ
    (tissue edges, veins, iron-rich nuclei), and a region with a noisier field can have a
    *lower* SD, because the noise weighting lets TV regularise more there (more bias,
    less variance). It is not the error: χ also
    carries the bias of the regularisation, of the background removal and of the field
    model, which no noise propagation sees.

    Following the steps, not the objective's Hessian, matters: the loop stops at a 10 %
    update (``tol``), which regularises more than the minimiser would, most in the smooth
    iron-rich nuclei (there the Hessian's map read 1.41-1.64x the spread of MEDI as run over
    noise draws with every other input fixed; ``benchmarks/chi_sd.py --estimator``). The
    CSF weights and, given ``sd_field_jitter``, the peel of the region's edge are the
    decisions of the chain that move with the noise which the map models; the magnitude
    edges move too, unmodelled.

    References
    ----------
    Liu T, Liu J, de Rochefort L, Spincemaille P, Khalidov I, Ledoux JR, Wang Y.
    Morphology enabled dipole inversion (MEDI) from a single-angle acquisition:
    comparison with COSMOS in human brain imaging. Magn Reson Med 2011;66:777-783.
    doi:10.1002/mrm.22816

    Liu T, Wisnieff C, Lou M, Chen W, Spincemaille P, Wang Y. Nonlinear formulation of
    the magnetic field to source relationship for robust quantitative susceptibility
    mapping. Magn Reson Med 2013;69:467-476. doi:10.1002/mrm.24272

    Liu Z, Spincemaille P, Yao Y, Zhang Y, Wang Y. MEDI+0: Morphology enabled dipole
    inversion with automatic uniform cerebrospinal fluid zero reference for
    quantitative susceptibility mapping. Magn Reson Med 2018;79:2795-2803.
    doi:10.1002/mrm.26946
    """
    tol, restart_tol = _checks.positive("tol", tol), _checks.positive("restart_tol", restart_tol)
    if not isinstance(search_start, (bool, np.bool_)):
        raise ValueError(f"search_start must be True or False, got {search_start!r}")
    cg_iter = _checks.whole_number("cg_iter", cg_iter)
    restart_cg_iter = _checks.whole_number("restart_cg_iter", restart_cg_iter)
    if return_sd and sd_noise is None:
        sd_noise = noise
    p, edges, csf, s, lam_csf = _medi_problem(local_field, mask, voxel_size, b0_direction, magnitude, phase_scale,
                                              _edge_tapered(noise, mask, voxel_size, edge_taper, edge_taper_mm),
                                              edge_fraction, csf_mask, lam_csf, "MEDI+0", _PAD_VOXELS_TV)

    def tv_solve(a, x0=None, iters=150):  # the cheaper problem the automatic weight is searched on
        return solvers.fansi(p, a, mu1=100 * a, mu2=1.0, max_iter=iters, tol=1e-3, x0=x0, edges=edges)

    # the misfit the noise map's noise would leave under the (tapered) weights: the taper is
    # not noise to be left unfitted, so it does not raise the weight
    alpha, x_search = _auto_alpha(alpha, tv_solve, p, noise, "MEDI (by linear TV with its edge mask)",
                                  per_noise=regularisation.MEDI_ALPHA_PER_NOISE)
    samples, sd_noise = _sd_samples(return_sd, sd_samples, noise, sd_noise, p)
    x0, start = None, "zero"
    if chi0 is not None:
        chi0 = _checks.as_volume("chi0", chi0, finite=True)
        if chi0.shape != tuple(p.full_shape):
            raise ValueError(f"chi0 has shape {chi0.shape} but the local field has shape {tuple(p.full_shape)}")
        x0, start = p.cut(chi0) * (p.mask > 0), "chi0"
    elif search_start and x_search is not None:
        x0, start = x_search * (p.mask > 0), "weight search"
    chi0_steps = int(_checks.positive("chi0_steps", chi0_steps, allow_zero=True)) if chi0 is not None else 0
    # the steps before these that the uncertainty map follows: the search's TV solution is
    # near a minimiser, so the map's steps in full
    sd_prior_steps = SD_MAX_STEPS if start == "weight search" else chi0_steps
    chi, steps = solvers.medi(p, alpha, edges=edges, phase_scale=s, csf=csf, lam_csf=lam_csf, max_iter=max_iter,
                              tol=tol if chi0 is None else restart_tol,
                              cg_iter=cg_iter if chi0 is None else restart_cg_iter, cg_tol=cg_tol, eps=1e-6,
                              x0=x0)
    log.info("MEDI%s alpha %.3g: %d Gauss-Newton steps%s", "+0" if csf is not None else "", alpha, steps,
             {"zero": " from zero", "chi0": f" from a warm start of {chi0_steps}",
              "weight search": " from the weight search's TV solution"}[start])
    _note(info, alpha=alpha, gauss_newton_steps=steps, converged=steps < max_iter, warm_start_steps=chi0_steps,
          start=start,
          csf_voxels=int(csf.sum()) if csf is not None else 0,
          edge_taper=float(edge_taper) if noise is not None else 0.0, edge_taper_mm=float(edge_taper_mm))
    return _with_sd(p, chi, alpha, sd_noise, edges, csf, lam_csf, samples, info, jacobi=True,
                    steps=steps + sd_prior_steps, csf_jitter=sd_csf_jitter, field_jitter=sd_field_jitter)


def _auto_alpha(alpha, solve, p: Problem, noise, name: str, per_noise: float = regularisation.TV_ALPHA_PER_NOISE):
    """(TV weight, warm start): a given number as is; "auto" by the discrepancy principle from
    ``per_noise`` x the median noise x the voxel size, or ``TV_ALPHA`` with a warning when there
    is no usable noise map."""
    if not isinstance(alpha, str):
        return _checks.positive("alpha", alpha), None
    if alpha != "auto":
        raise ValueError(f"alpha must be a number or 'auto', got {alpha!r}")
    if noise is not None:
        noise = np.asarray(noise, np.float32)
        if noise.shape != p.full_shape:
            raise ValueError(f"noise has shape {noise.shape} but the local field has shape {p.full_shape}; "
                             "they must match")
        sub = p.box.cut(noise)[p.box.crop(p.mask) > 0]
        if not np.any(np.isfinite(sub) & (sub > 0)):
            log.warning("%s: the noise map is unknown (zero or NaN) inside the mask", name)
            noise = None
    if noise is None:
        log.warning("%s: no noise map, so the regularisation weight cannot be chosen from the data; using the "
                    "fixed %.3g (pass the field-noise map for an automatic choice)", name, TV_ALPHA)
        return TV_ALPHA, None
    return regularisation.discrepancy(solve, p, noise, name, per_noise=per_noise,
                                      slope=regularisation.TV_MISFIT_SLOPE)
