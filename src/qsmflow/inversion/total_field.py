"""Total field inversion: tissue and background sources fitted together to the total field
(Liu et al. 2017), on MEDI+0's objective (:mod:`.tv`, the shared set-up in :mod:`._medi_shared`) with its own data-weight tapers, start
and preconditioning."""

from __future__ import annotations

import logging

import numpy as np

from .. import masking
from .._shared import checks as _checks
from .._shared.constants import CSF_LAMBDA, MEDI_EDGE_FRACTION, MEDI_EDGE_TAPER, MEDI_EDGE_TAPER_MM, TFI_FACE_TAPER
from .._shared.constants import TFI_FACE_TAPER_MM, TV_ALPHA
from . import regularisation, solvers
from ._common import _PAD_VOXELS, _note
from .problem import Problem
from ._medi_shared import SD_SAMPLES, _edge_tapered, _medi_problem, _sd_samples, _with_sd

log = logging.getLogger(__name__)


def _face_tapered(noise, mask, voxel_size, superior, taper, taper_mm):
    """(``noise`` raised toward the faces of the field of view that ``mask`` leaves through a
    narrow section on the body's side, ``-superior`` (see :func:`tfi`'s ``face_taper``),
    whether it was): None stays None."""
    taper = _checks.positive("face_taper", taper, allow_zero=True)
    taper_mm = _checks.positive("face_taper_mm", taper_mm)
    if noise is None or taper == 0:
        return noise, False
    mask = np.asarray(mask, bool)
    body = -_checks.b0_direction(superior, "superior")
    dist = masking.distance_to_narrow_exits(mask, _checks.voxel_size(voxel_size), toward=body)
    if dist is None:
        return noise, False
    log.info("TFI: the brain leaves the field of view toward the body through a narrow section (%s); the data are "
             "weighted less within about %.0f mm of that face", ", ".join(masking.narrow_exit_faces(mask, body)),
             2 * taper_mm)
    return np.where(mask, noise * (1 + taper * np.exp(-dist / taper_mm)), noise).astype(np.float32), True


# Liu et al. 2018: sources outside the brain are weighted 30x in the preconditioner, the
# ratio of background to tissue susceptibility they found to make CG converge fastest.
TFI_BACKGROUND_PRECONDITIONER = 30.0

#: Conjugate-gradient iterations per Gauss-Newton step of total field inversion (with the
#: capped Jacobi preconditioner, see :func:`tfi`).
TFI_CG_ITER = 150


def tfi(total_field: np.ndarray, mask: np.ndarray, voxel_size, b0_direction, *, magnitude: np.ndarray,
        phase_scale: float, noise=None, alpha: float | str = "auto", csf_mask: np.ndarray | None = None,
        lam_csf: float = CSF_LAMBDA, edge_fraction: float = MEDI_EDGE_FRACTION,
        background_preconditioner: float = TFI_BACKGROUND_PRECONDITIONER, max_iter: int = 5, tol: float = 0.02,
        cg_iter: int = TFI_CG_ITER, cg_tol: float = 0.003, return_sd: bool = False, sd_samples: int = SD_SAMPLES,
        sd_noise: np.ndarray | None = None, sd_csf_jitter=None, info: dict | None = None,
        edge_taper: float = MEDI_EDGE_TAPER, edge_taper_mm: float = MEDI_EDGE_TAPER_MM,
        face_taper: float = TFI_FACE_TAPER, face_taper_mm: float = TFI_FACE_TAPER_MM, superior=None):
    """Total field inversion: tissue and background sources from the total field in one step.

    Minimises MEDI+0's objective (see :func:`medi`) on the *total* field inside the brain
    mask, with χ free over the whole padded box around it: sources outside the mask
    explain the background field, sources inside are the tissue's χ; no background
    removal, no erosion. The unknown is ``y`` with ``χ = P y``, ``P`` 1 inside the mask
    and ``background_preconditioner`` outside, which lets conjugate gradients reach the
    strong background sources in few iterations. TV acts inside the mask only (the
    background sources are not smooth), and the data term is linear (the total field is
    unwrapped and spans many turns of phase). Returns χ inside the mask.

    The automatic weight is the discrepancy principle's starting rule,
    ``TV_ALPHA_PER_NOISE`` x median noise (ppm) x voxel size (mm): on the benchmark
    matrix the weight the principle settles on for MEDI is within 15 % of it on the 3D
    rows with voxels up to 2x2x3 mm, 38 % below it on the 2D multi-slice row (the search
    itself would need TFI solves, each as costly as the final one).

    Each step's conjugate gradients are preconditioned by the inverse diagonal of the step's
    operator (in ``y``), divided by its median over the mask and capped at 1
    (:func:`qsmflow.inversion.solvers.medi`'s ``capped``). Without it, from the third step
    on, 90-98 % of the residual sat on the sources just outside the mask (their field in
    the mask is as strong as the tissue's, and ``P`` scales their curvature up 900-fold)
    and stalled there, so 300 iterations per step were needed. Plain Jacobi, blind to any
    diagonal rescaling, undoes ``P`` instead (the far background sources, whose field is
    weak, then take long steps). Capped, only the stiff unknowns take shorter steps and the
    far sources keep ``P``'s. On the matrix's TFI rows 150 capped iterations per step gave
    32.8 / 41.3 / 45.9 / 45.1 / 73.7 % (1x1x2 mm, 2 mm, 2x2x3 mm, 2D, two echoes) against
    34.3 / 42.1 / 46.2 / 46.2 / 74.2 % with 300 plain ones, in about half the time; 100
    capped iterations gave 34.6 / 41.5 / 45.8 / 46.0 / 75.7 %.

    Parameters
    ----------
    total_field : ndarray (X, Y, Z)
        Total field (ppm), trustworthy inside ``mask``.
    mask : ndarray of bool
        Where the field is fitted (the brain, not eroded).
    magnitude, phase_scale, noise, csf_mask, lam_csf, edge_fraction, edge_taper, edge_taper_mm
        As for :func:`medi`. The edge taper weighs the data less toward the mask's edge,
        where the field holds partial volume with bone, sinus and the scalp's ringing (no
        background removal's error here, but the chain's field is worst there too). On the
        matrix's TFI rows a taper of 0 / 1 / 2 / **3** (over 2 mm) gave 41.5 / 41.1 / 40.9 /
        **40.9** % (2 mm), 46.0 / 45.6 / 45.4 / **45.4** % (2x2x3 mm), 45.1 / 45.5 / 45.7 /
        **46.0** % (2D multi-slice), 73.6 / 71.2 / 70.2 / **69.6** % (two echoes, the worst
        row; slope 0.56 -> 0.71), and at 3: 1x1x2 mm 32.6 -> 32.8 %, 2 mm oblique 43.7 -> 42.7 %.
        The weight and the χ SD map take the untapered noise, as MEDI's.
    face_taper, face_taper_mm : float
        Where the brain leaves the field of view toward the body through a narrow section (a
        face it touches with less than ``masking.FOV_CUT_SECTION`` of its largest section, whose
        outward normal lies within 60° of -B0: the brainstem through the bottom face of a
        tilted slab; not a slab's cut, not the vertex), the noise is taken as
        ``1 + face_taper·exp(-d/face_taper_mm)`` times the map, d the distance (mm) from that
        face. The field there holds the field of sources beyond the face, the neck and the
        body, farther than the padded box reaches, which the background sources find last:
        given the true background field alone, TFI put 17.4 % of the true χ's RMS into the
        brain of the 1x1x1.4 mm head tilted 35° (3.7 % axial), most of it in the lowest slices.
        The body's side is ``-superior``. Beyond the vertex only the skull's cap lies,
        within the padded box: tapering a cut vertex cost its top 20 mm 8 points of χ NRMSE
        (benchmarks/README.md, "TFI's face taper"), where the rows with the brainstem leaving
        gained (the 1.5 mm three-echo head tilted 35°: 54.0 -> 50.1 %). 0 turns it off.
    superior : sequence of 3 float, optional
        The head's superior direction in voxel axes; the chain reads it from the affine (world
        +z, :func:`qsmflow.io.superior_from_affine`), so that a B0 given with either sign
        tapers the same face. None: ``b0_direction``, which points superior for a patient lying
        head first as read from the affine (given with the other sign it would taper the top
        face instead, if the brain leaves through it).
    alpha : float or "auto"
        TV weight; "auto" as above (needs ``noise``; without it the fixed ``TV_ALPHA``,
        with a warning).
    background_preconditioner : float
        ``P`` outside the mask.
    max_iter, tol, cg_iter, cg_tol, return_sd, sd_samples, sd_noise, sd_csf_jitter
        As for :func:`medi`. Each χ SD sample with ``sd_csf_jitter`` is solved with the other
        scan's whole CSF term (:func:`qsmflow.inversion.solvers.noise_sd`); with only its
        diagonal changed (stops 43-44) TFI's Hessian became indefinite and a sample could come
        out 6x too large (2 mm head, SNR 40), so stop 44 had left the redraws out.

    References
    ----------
    Liu Z, Kee Y, Zhou D, Wang Y, Spincemaille P. Preconditioned total field inversion (TFI)
    method for quantitative susceptibility mapping. Magn Reson Med 2017;78:303-315.
    doi:10.1002/mrm.26331
    """
    pb = _checks.positive("background_preconditioner", background_preconditioner)
    weighed, face_tapered = _face_tapered(_edge_tapered(noise, mask, voxel_size, edge_taper, edge_taper_mm),
                                          mask, voxel_size, b0_direction if superior is None else superior,
                                          face_taper, face_taper_mm)
    p, edges, csf, s, lam_csf = _medi_problem(total_field, mask, voxel_size, b0_direction, magnitude, phase_scale,
                                              weighed, edge_fraction, csf_mask, lam_csf, "TFI", _PAD_VOXELS)
    edges *= p.mask > 0  # background sources are not smooth: no TV outside the mask
    precond = np.where(p.mask > 0, np.float32(1.0), np.float32(pb)).astype(np.float32)
    # the total field spans many turns of phase at the echo time: fit it linearly (it is
    # unwrapped already), i.e. with a phase scale small enough that sin(s r)/s = r
    s = min(s, 0.01 / max(float(np.abs(p.f).max()), 1e-6))
    alpha = _tfi_alpha(alpha, p, noise)
    samples, sd_noise = _sd_samples(return_sd, sd_samples, noise, sd_noise, p)
    chi, steps = solvers.medi(p, alpha, edges=edges, phase_scale=s, csf=csf, lam_csf=lam_csf, max_iter=max_iter,
                              tol=tol, cg_iter=cg_iter, cg_tol=cg_tol, eps=1e-6, precond=precond, jacobi=True,
                              capped=True)
    log.info("TFI alpha %.3g: %d Gauss-Newton steps", alpha, steps)
    _note(info, alpha=alpha, gauss_newton_steps=steps, converged=steps < max_iter,
          csf_voxels=int(csf.sum()) if csf is not None else 0,
          edge_taper=float(edge_taper) if noise is not None else 0.0, edge_taper_mm=float(edge_taper_mm),
          face_taper=float(face_taper) if face_tapered else 0.0, face_taper_mm=float(face_taper_mm))
    return _with_sd(p, chi, alpha, sd_noise, edges, csf, lam_csf, samples, info, jacobi=False,
                    csf_jitter=sd_csf_jitter)


def _tfi_alpha(alpha, p: Problem, noise) -> float:
    """TFI's TV weight: a number as is; "auto" from the median field noise in the mask."""
    if not isinstance(alpha, str):
        return _checks.positive("alpha", alpha)
    if alpha != "auto":
        raise ValueError(f"alpha must be a number or 'auto', got {alpha!r}")
    sigma = None if noise is None else p.box.cut(np.asarray(noise, np.float32))[p.box.crop(p.mask) > 0]
    if sigma is None or not np.any(np.isfinite(sigma) & (sigma > 0)):
        log.warning("TFI: no usable noise map, so the weight cannot be chosen from the data; using the fixed %.3g",
                    TV_ALPHA)
        return TV_ALPHA
    typical = float(np.median(sigma[np.isfinite(sigma) & (sigma > 0)]))
    return regularisation.TV_ALPHA_PER_NOISE * typical * float(np.prod(p.vs)) ** (1 / 3)
