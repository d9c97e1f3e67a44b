"""Background field removal: total field -> local field inside an (eroded) brain mask.

Every method has the signature
``(field, mask, voxel_size, b0_direction=None, *, noise=None, ...) -> (local, eroded_mask)``;
the local field has the units of the input field. ``b0_direction`` (voxel axes) is used
by the dipole-based method (PDF), ``noise`` (the field's standard deviation, any unit)
weights the data where a method can use it; the others accept and ignore them.
"""

from __future__ import annotations

import logging

import numpy as np

from .. import kernels
from .._shared import checks as _checks
from . import pde, smv
from .._shared.weights import noise_weights
from .._shared.constants import VSHARP_RADII_MM, VSHARP_THRESHOLD
from .._shared.registry import Method

log = logging.getLogger(__name__)

__all__ = ["METHODS", "ismv", "lbv", "lbv_boundary_field", "pdf", "remove_polynomial", "resharp", "sharp", "vsharp"]

# SHARP, RESHARP and iSMV sphere radius (mm): Schweser et al. 2011 used ~5-6 voxels of
# ~1 mm; smaller spheres keep more of the brain's edge, larger ones reject more
# background and noise.
SMV_RADIUS_MM = 5.0
# RESHARP's Tikhonov weight (relative to C's gain of ~1 at high frequencies).
RESHARP_LAMBDA = 1e-3
# Relative residual at which the iterative solvers stop (RESHARP, iSMV, PDF). Fields are
# ppm-scale with local fields ~1 % of the background, so 1e-4 of the right-hand side is well
# below the local field; not so for LBV, whose right-hand side is the boundary values alone.
SOLVER_TOL = 1e-4
# LBV's relative residual. Its right-hand side is the boundary values alone, so with plain
# CG a residual of 1e-4 of it still left the local field 2.8 % of its RMS from the converged
# one on the 1 mm benchmark head (81 iterations; 1e-5: 0.4 %, 136 iterations), a smooth error
# that χ keeps: with the boundary refinement, χ NRMSE 25.54 / 33.60 / 33.87 % at 1e-4 against
# 25.40 / 33.48 / 33.76 % at 1e-5 and 25.43 / 33.50 / 33.77 % at 1e-6 and 1e-7 (1 mm, SNR 20,
# oblique 35° rows; benchmarks/README.md, background removal). Preconditioned by multigrid
# (since stop 58) the error left at a given residual is 6-17x smaller (it is no longer
# smooth), 11 iterations to 1e-5 on the 1 mm head's whole brain.
LBV_TOL = 1e-5
# The boundary refinement's field is a correction of ~13 % of the local field: 1e-3 leaves
# it 0.6 % off, and χ within 0.02 points of 1e-4 on the same rows, in 60 % of the iterations.
BOUNDARY_FIELD_TOL = 1e-3
# Background sources for PDF may sit this far (mm) outside the mask's bounding box.
PDF_MARGIN_MM = 12.0


def _common(field, mask, voxel_size):
    field = _checks.as_volume("field", field)
    mask = _checks.as_mask("mask", mask, field.shape)
    if not np.all(np.isfinite(field[mask])):
        raise ValueError("field holds NaN/Inf inside the mask")
    return field, mask, _checks.voxel_size(voxel_size)


def _radius(radius_mm, vs):
    r = _checks.positive("radius_mm", radius_mm)
    if r < vs.min():
        raise ValueError(f"radius_mm={r} is smaller than a voxel ({vs.min():g} mm)")
    return r


def _report(name, mask, eroded, iters=None):
    extra = f", {iters} iterations" if iters is not None else ""
    log.info("%s: eroded mask keeps %.1f%% of the mask%s", name, 100 * eroded.sum() / mask.sum(), extra)


def sharp(field, mask, voxel_size, b0_direction=None, *, noise=None, radius_mm: float = SMV_RADIUS_MM,
          threshold: float = VSHARP_THRESHOLD):
    """SHARP: one spherical-mean-value high-pass, deconvolved by truncated SVD.

    The mask is eroded by the sphere; inside it ``(δ - S) * f`` holds no background,
    and dividing by ``1 - S`` where it exceeds ``threshold`` gives the local field.

    Returns
    -------
    (local, eroded_mask)
        As every method (module docstring): float32 local field in the input's unit, bool mask.

    References
    ----------
    Schweser F, Deistung A, Lehr BW, Reichenbach JR. Quantitative imaging of intrinsic
    magnetic tissue properties using MRI signal phase: an approach to in vivo brain
    iron metabolism? NeuroImage 2011;54:2789-2807. doi:10.1016/j.neuroimage.2010.10.070
    """
    field, mask, vs = _common(field, mask, voxel_size)
    r = _radius(radius_mm, vs)
    local, eroded = smv.vsharp(field, mask, vs, [r], _threshold(threshold))
    _report("SHARP", mask, eroded)
    return local, eroded


def _threshold(threshold):
    t = _checks.positive("threshold", threshold)
    if t >= 1:
        raise ValueError(f"threshold must be between 0 and 1, got {t}")
    return t


def vsharp(field, mask, voxel_size, b0_direction=None, *, noise=None, radii_mm=VSHARP_RADII_MM,
           threshold: float = VSHARP_THRESHOLD):
    """V-SHARP: spherical mean value filtering with kernels that shrink towards the edge.

    At each voxel the field is high-pass filtered, ``(δ - S_r) * f``, with the
    largest sphere ``S_r`` that fits inside the mask; harmonic (background) fields
    vanish under this filter. The filtered field is then deconvolved with the
    largest kernel, ``1 - S_rmax``, truncated where it is below ``threshold``.

    Parameters
    ----------
    field : ndarray (X, Y, Z)
        Total field (any unit; ppm in the pipeline).
    mask : ndarray of bool (X, Y, Z)
        Brain mask.
    voxel_size : sequence of 3 float
        Voxel size (mm); spheres are round in mm for anisotropic voxels.
    b0_direction, noise
        Accepted for a uniform signature; unused.
    radii_mm : sequence of float
        Sphere radii (mm), any order; the largest drives the deconvolution.
    threshold : float
        Truncation level of the deconvolution kernel (0 < threshold < 1).

    Returns
    -------
    local : ndarray (float32)
        Local field, zero outside ``eroded_mask``.
    eroded_mask : ndarray of bool
        The mask eroded by the smallest sphere.

    References
    ----------
    Wu B, Li W, Guidon A, Liu C. Whole brain susceptibility mapping using compressed
    sensing. Magn Reson Med 2012;67:137-147. doi:10.1002/mrm.23000

    Schweser F, Deistung A, Lehr BW, Reichenbach JR. Quantitative imaging of intrinsic
    magnetic tissue properties using MRI signal phase: an approach to in vivo brain iron
    metabolism? NeuroImage 2011;54:2789-2807. doi:10.1016/j.neuroimage.2010.10.070
    """
    field, mask, vs = _common(field, mask, voxel_size)
    radii = sorted((_checks.positive("radii_mm", r) for r in np.atleast_1d(radii_mm)), reverse=True)
    radii = [r for r in radii if r >= vs.min()]
    if not radii:
        raise ValueError(f"radii_mm must include a radius of at least one voxel ({vs.min():g} mm)")
    local, eroded = smv.vsharp(field, mask, vs, radii, _threshold(threshold))
    _report("V-SHARP", mask, eroded)
    return local, eroded


def resharp(field, mask, voxel_size, b0_direction=None, *, noise=None, radius_mm: float = SMV_RADIUS_MM,
            lam: float = RESHARP_LAMBDA, tol: float = SOLVER_TOL, max_iter: int = 200):
    """RESHARP: SHARP's deconvolution as Tikhonov-regularised least squares.

    Solves ``min_x ||M_e (δ - S) * (f - x)||² + λ ||x||²`` by conjugate gradients
    (``M_e``: the mask eroded by the sphere), which avoids the ringing of the
    truncated deconvolution.

    Returns
    -------
    (local, eroded_mask)
        As every method (module docstring): float32 local field in the input's unit, bool mask.

    References
    ----------
    Sun H, Wilman AH. Background field removal using spherical mean value filtering
    and Tikhonov regularization. Magn Reson Med 2014;71:1151-1157. doi:10.1002/mrm.24765
    """
    field, mask, vs = _common(field, mask, voxel_size)
    r = _radius(radius_mm, vs)
    lam = _checks.positive("lam", lam)
    (local, eroded), iters = smv.resharp(field, mask, vs, r, lam, tol, max_iter)
    _report("RESHARP", mask, eroded, iters)
    return local, eroded


def ismv(field, mask, voxel_size, b0_direction=None, *, noise=None, radius_mm: float = SMV_RADIUS_MM,
         tol: float = SOLVER_TOL, max_iter: int = 500):
    """iSMV: the background inside the eroded mask as the SMV-harmonic extension of the rim.

    On the mask eroded by the sphere the background obeys ``b = S * b``; on the
    rim it is taken as the measured field. The fixed point that Wen et al. reach by
    iterating ``b <- S * b`` is found here directly by conjugate gradients; the
    local field is ``f - b`` on the eroded mask.

    Returns
    -------
    (local, eroded_mask)
        As every method (module docstring): float32 local field in the input's unit, bool mask.

    References
    ----------
    Wen Y, Zhou D, Liu T, Spincemaille P, Wang Y. An iterative spherical mean value
    method for background field removal in MRI. Magn Reson Med 2014;72:1065-1071.
    doi:10.1002/mrm.24998
    """
    field, mask, vs = _common(field, mask, voxel_size)
    r = _radius(radius_mm, vs)
    (local, eroded), iters = smv.ismv(field, mask, vs, r, tol, max_iter)
    _report("iSMV", mask, eroded, iters)
    return local, eroded


def lbv(field, mask, voxel_size, b0_direction=None, *, noise=None, tol: float = LBV_TOL,
        max_iter: int = 3000, background0: np.ndarray | None = None):
    """LBV: the background solves Laplace's equation inside the mask, equal to the field on its edge.

    The discrete Laplacian (voxel sizes honoured) on the mask's interior, with the
    measured field as Dirichlet condition on the one-voxel boundary, is solved by
    conjugate gradients on a sparse matrix, preconditioned by a multigrid V-cycle
    (:mod:`qsmflow.bgremove.multigrid`: about ten iterations whatever the grid's size, as
    the paper's multigrid solver); the local field is ``f - b`` in the
    interior (only the boundary layer is lost). CG stops at a residual of ``tol`` times the
    right-hand side, which holds the boundary values only: ``LBV_TOL`` (1e-5) leaves the local
    field within 0.4 % of the converged one on the 1 mm benchmark head. ``background0`` (the
    field's unit, full grid; NaN where unknown) starts CG from a known background, e.g. the
    solution on a nearby mask (``field - local`` there), instead of from the field itself.

    Returns
    -------
    (local, eroded_mask)
        As every method (module docstring): float32 local field in the input's unit, bool mask.

    References
    ----------
    Zhou D, Liu T, Spincemaille P, Wang Y. Background field removal by solving the
    Laplacian boundary value problem. NMR Biomed 2014;27:312-319. doi:10.1002/nbm.3064

    McAdams A, Sifakis E, Teran J. A parallel multigrid Poisson solver for fluids simulation
    on large grids. Proc ACM SIGGRAPH/Eurographics Symp Comput Animat 2010:65-74.
    doi:10.2312/SCA/SCA10/065-074
    """
    field, mask, vs = _common(field, mask, voxel_size)
    if background0 is not None:
        background0 = _checks.as_volume("background0", background0)
        _checks.same_shape("background0", background0, "field", field)
    (local, eroded), iters = pde.lbv(field, mask, vs, tol, max_iter, background0)
    _report("LBV", mask, eroded, iters)
    return local, eroded


def lbv_boundary_field(chi, mask, voxel_size, b0_direction, *, tol: float = BOUNDARY_FIELD_TOL,
                       max_iter: int = 3000):
    """The tissue field that :func:`lbv` took for background, estimated from a χ map.

    LBV sets the local field to zero on the mask's one-voxel boundary. The true local
    field is not zero there, so LBV's local field is short by the harmonic function that
    takes those true boundary values (the difference of two harmonic fields with the
    same boundary values as the total field). Given χ inverted from LBV's local field,
    its field on the boundary (``D * χ``, χ inside the mask only: the tissue's field)
    estimates the true values; the returned field is their harmonic extension into
    the interior, the same discrete Laplace problem LBV solves. Add it to LBV's local
    field and invert again: on the 1 mm benchmark head the chain's χ NRMSE went from 26.5
    to 25.5 % (``benchmarks/README.md``, LBV's boundary refinement).

    Parameters
    ----------
    chi : ndarray (X, Y, Z)
        χ (ppm) on ``mask``'s interior (what the inversion of LBV's local field returned).
    mask : ndarray of bool
        The region LBV was run on (not its eroded interior).
    voxel_size, b0_direction
        mm per voxel axis; the main field's direction in voxel axes.

    Returns
    -------
    ndarray (float32)
        The harmonic field (ppm) on the interior LBV returned, zero elsewhere.

    References
    ----------
    Zhou D, Liu T, Spincemaille P, Wang Y. Background field removal by solving the
    Laplacian boundary value problem. NMR Biomed 2014;27:312-319. doi:10.1002/nbm.3064

    Schweser F, Robinson SD, de Rochefort L, Li W, Bredies K. An illustrated comparison of
    processing methods for phase MRI and QSM: removal of background field contributions
    from sources outside the region of interest. NMR Biomed 2017;30:e3604. doi:10.1002/nbm.3604
    """
    chi = _checks.as_volume("chi", chi, finite=True)
    mask = _checks.as_mask("mask", mask, chi.shape)
    vs = _checks.voxel_size(voxel_size)
    box = kernels.PaddedBox(mask, margin=1)
    sub = box.cut(mask)
    field = kernels.forward_field(np.where(sub, box.cut(chi), 0), vs, b0_direction)
    (rest, interior), iters = pde.lbv(field, sub, vs, tol, max_iter)
    log.info("LBV boundary field: %d iterations", iters)
    return box.full(np.where(interior, field - rest, 0), np.float32)


def pdf(field, mask, voxel_size, b0_direction=None, *, noise=None, margin_mm: float = PDF_MARGIN_MM,
        tol: float = SOLVER_TOL, max_iter: int = 100):
    """PDF: the background is the field of dipoles outside the mask that best fits the field inside.

    ``min_χ ||W (f - D * χ)||²`` over χ supported outside the mask (within its
    bounding box grown by ``margin_mm``), with ``W = 1/noise`` inside the mask, by
    conjugate gradients on the normal equations. The field of interior sources is
    orthogonal (in the weighted sense) to that of exterior dipoles, so it is what
    remains.

    Parameters
    ----------
    field, mask, voxel_size
        As for every method.
    b0_direction : sequence of 3 float
        B0 in voxel axes (required).
    noise : ndarray, optional
        Standard deviation of the field (any unit): weights ``1/noise``.
    max_iter : int
        CG iterations. PDF converges slowly; on the 1 mm benchmark head 100 iterations
        give a local-field NRMSE 0.6 points above 200 iterations in half the time.

    Returns
    -------
    (local, eroded_mask)
        As every method (module docstring): float32 local field in the input's unit, bool mask.

    References
    ----------
    Liu T, Khalidov I, de Rochefort L, Spincemaille P, Liu J, Tsiouris AJ, Wang Y. A
    novel background field removal method for MRI using projection onto dipole fields
    (PDF). NMR Biomed 2011;24:1129-1136. doi:10.1002/nbm.1670
    """
    field, mask, vs = _common(field, mask, voxel_size)
    if b0_direction is None:
        raise ValueError("PDF needs b0_direction (B0 in voxel axes)")
    b0 = _checks.b0_direction(b0_direction)
    weights = noise_weights(noise, mask)
    margin = int(np.ceil(_checks.positive("margin_mm", margin_mm) / vs.min()))
    (local, eroded), iters = pde.pdf(field, mask, vs, b0, weights, margin, tol, max_iter)
    _report("PDF", mask, eroded, iters)
    return local, eroded


def remove_polynomial(local: np.ndarray, mask: np.ndarray, voxel_size, *, order: int = 2,
                      noise: np.ndarray | None = None) -> np.ndarray:
    """Subtract the weighted least-squares polynomial of ``order`` from the local field.

    Residual background that a method leaves is smooth; a low-order polynomial
    (all ``x^i y^j z^k``, ``i+j+k ≤ order``, in mm from the mask's centre) removes it at
    the price of the local field's own lowest-order content.

    Returns
    -------
    ndarray (float32)
        The local field minus the fitted polynomial, zero outside ``mask``.

    References
    ----------
    Schweser F, Robinson SD, de Rochefort L, Li W, Bredies K. An illustrated
    comparison of processing methods for phase MRI and QSM: removal of background
    field contributions from sources outside the region of interest. NMR Biomed
    2017;30:e3604. doi:10.1002/nbm.3604
    """
    local = _checks.as_volume("local", local)
    mask = _checks.as_mask("mask", mask, local.shape)
    vs = _checks.voxel_size(voxel_size)
    if not isinstance(order, (int, np.integer)) or not 0 <= order <= 4:
        raise ValueError(f"order must be an integer from 0 to 4, got {order!r}")
    idx = np.nonzero(mask)
    coords = [(i - i.mean()) * d / 100.0 for i, d in zip(idx, vs)]
    terms = [coords[0] ** a * coords[1] ** b * coords[2] ** c
             for a in range(order + 1) for b in range(order + 1 - a) for c in range(order + 1 - a - b)]
    design = np.stack(terms, axis=1)
    w = noise_weights(noise, mask)[idx].astype(np.float64)
    coef, *_ = np.linalg.lstsq(design * w[:, None], local[idx] * w, rcond=None)
    out = local.copy()
    out[idx] -= (design @ coef).astype(np.float32)
    return out


METHODS = {
    "pdf": Method("pdf", pdf, "projection onto dipole fields, noise-weighted, conjugate gradients"),
    "lbv": Method("lbv", lbv, "Laplacian boundary value problem, multigrid-preconditioned conjugate gradients"),
    "vsharp": Method("vsharp", vsharp, "variable-radius SMV high-pass filter with truncated deconvolution"),
    "sharp": Method("sharp", sharp, "single-radius SMV high-pass filter with truncated deconvolution"),
    "resharp": Method("resharp", resharp, "SMV high-pass with Tikhonov-regularised deconvolution"),
    "ismv": Method("ismv", ismv, "iterative spherical mean value (solved by conjugate gradients)"),
}
