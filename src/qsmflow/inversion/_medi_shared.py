"""What MEDI+0 and total field inversion share: the noise-weighted problem with the
magnitude's edge mask and the CSF mask (:func:`_medi_problem`), the data weights' taper toward
the mask's edge, and the χ uncertainty map (``return_sd``) that follows either estimator."""

from __future__ import annotations

import logging
import time

import numpy as np

from .. import masking
from .._shared import checks as _checks
from .._shared.weights import noise_weights
from . import solvers
from ._common import _check_noise_in_ppm, _note, _phase_scale, _setup
from .problem import Problem

log = logging.getLogger(__name__)

# The χ uncertainty map (``return_sd``): noise samples, and CG iterations per sample. MEDI+0's
# map follows the Gauss-Newton steps it took (see :func:`solvers.noise_sd`): 8 Jacobi-
# preconditioned iterations for the first term, 4 for each later one (4 steps: 20 in all, the
# Hessian map's count before). On the 1 mm benchmark head (SNR 100, field noise alone) 8/4
# reads 4-10 % below 20/20 per term in every tissue class (CSF 0.55 / 0.61 of the whole
# chain's spread, cortex 0.79 / 0.87, white matter 0.99 / 1.04) at 40 % of the cost.
# The two samples run side by side in two threads; each voxel's value is then known to
# about ±50 %, and region summaries use the root-mean-square (unbiased).
SD_SAMPLES = 2
SD_CG_ITER = (8, 4)
# ...of at most this many Gauss-Newton steps: MEDI+0 with LBV's refinement takes 10-11 on the
# 1 mm benchmark head (4 from zero, 6-7 restarting), whose later terms add little. On one SNR 100
# realisation against the whole chain's spread over 20, 11 / 8 / 7 / 6 terms read white matter
# 0.98 / 0.97 / 0.96 / 0.95, cortex 0.84 / 0.83 / 0.83 / 0.82, CSF 0.87 / 0.87 / 0.86 / 0.86,
# iron-rich 1.02 / 1.00 / 0.99 / 0.97, in 7.4 / 6.3 / 5.3 / 4.4 s; fewer iterations per term
# cost more (8 + 3 per term over 8 terms: cortex 0.80, CSF 0.84 in 4.4 s).
SD_MAX_STEPS = 6
# TFI's map: the Hessian's response by plain CG (see :func:`solvers.noise_sd`), 40 iterations.
SD_CG_ITER_TFI = 40


def _medi_problem(field, mask, voxel_size, b0_direction, magnitude, phase_scale, noise, edge_fraction, csf_mask,
                  lam_csf, name, pad):
    """What MEDI and TFI share: the checked inputs on a :class:`Problem` with noise weights,
    padded by ``pad`` voxels, the magnitude's edge mask and the CSF mask on its grid:
    (problem, edges, csf or None, phase scale, lam_csf)."""
    f, mask, vs, b = _setup(field, mask, voxel_size, b0_direction, "total_field" if name == "TFI" else "local_field")
    mag = _checks.as_volume("magnitude", magnitude)
    _checks.same_shape("magnitude", mag, "field", f)
    s = _phase_scale(phase_scale)
    frac = _checks.positive("edge_fraction", edge_fraction)
    if frac >= 1:
        raise ValueError(f"edge_fraction={frac} must be below 1 (a share of gradient components)")
    lam_csf = _checks.positive("lam_csf", lam_csf, allow_zero=True)
    _check_noise_in_ppm(noise, f, mask)
    p = Problem(f, mask, vs, b, noise_weights(noise, mask), pad)
    edges = _edge_mask(p, p.cut(np.where(mask, mag, 0)), frac)
    csf = None
    if csf_mask is not None:
        csf = p.cut(_checks.as_weights("csf_mask", csf_mask, f.shape) * mask)
        if not csf.any():
            log.warning("%s: the CSF mask does not overlap the brain mask; the CSF term is off", name)
            csf = None
    return p, edges, csf, s, lam_csf


def _edge_tapered(noise, mask, voxel_size, taper, taper_mm):
    """``noise`` raised toward the edge of ``mask`` (see :func:`qsmflow.inversion.medi`'s ``edge_taper``); None stays None."""
    taper = _checks.positive("edge_taper", taper, allow_zero=True)
    taper_mm = _checks.positive("edge_taper_mm", taper_mm)
    if noise is None or taper == 0:
        return noise
    vs = _checks.voxel_size(voxel_size)
    mask = np.asarray(mask, bool)
    noise = _checks.as_volume("noise", noise)
    _checks.same_shape("noise", noise, "mask", mask)
    depth = masking.distance_to_outside(mask, vs, volume_edge=True)
    factor = 1 + taper * np.exp(-np.maximum(depth - vs.min(), 0) / taper_mm)
    return np.where(mask, noise * factor, noise).astype(np.float32)

def _sd_samples(return_sd: bool, samples, noise, sd_noise, p: Problem):
    """The checked sample count for the χ uncertainty map (0: not asked for) and the noise it
    propagates (``sd_noise``, else ``noise``)."""
    if not return_sd:
        return 0, None
    samples = _checks.whole_number("sd_samples", samples)
    if sd_noise is not None:
        sd_noise = _checks.as_volume("sd_noise", sd_noise)
        if sd_noise.shape != tuple(p.full_shape):
            raise ValueError(f"sd_noise has shape {sd_noise.shape} but the field has shape {tuple(p.full_shape)}")
        return samples, sd_noise
    if noise is None:
        raise ValueError("the χ uncertainty map needs the field-noise map: pass noise (ppm), e.g. the field fit's "
                         "noise map over γ̄B0")
    return samples, noise


def _with_sd(p: Problem, chi, alpha, noise, edges, csf, lam_csf, samples, info, *, jacobi: bool,
             steps: int | None = None, csf_jitter=None, field_jitter=None):
    """χ on the full grid, and with ``samples`` > 0 its noise SD: χ or (χ, sd), following
    ``steps`` Gauss-Newton steps with Jacobi-preconditioned CG (MEDI) or the Hessian by plain
    CG (TFI); ``csf_jitter`` and ``field_jitter`` (full grid, one per sample) add the CSF
    weights' changes and the field's."""
    if not samples:
        return p.full(chi)
    t0 = time.perf_counter()
    iters = SD_CG_ITER if jacobi else SD_CG_ITER_TFI
    sigma = p.cut(np.nan_to_num(np.asarray(noise, np.float32), nan=0.0, posinf=0.0)) * (p.mask > 0)
    csf_jitter = _per_sample(p, "sd_csf_jitter", csf_jitter, samples)
    field_jitter = _per_sample(p, "sd_field_jitter", field_jitter, samples)
    steps = min(steps, SD_MAX_STEPS) if jacobi else None
    sd = solvers.noise_sd(p, chi, alpha, np.maximum(sigma, 0), edges=edges, csf=csf, lam_csf=lam_csf, eps=1e-6,
                          samples=samples, cg_iter=iters, steps=steps, csf_jitter=csf_jitter, jacobi=jacobi,
                          field_jitter=field_jitter)
    _note(info, sd_samples=samples, sd_cg_iterations=iters if not jacobi else iters[0] + iters[1] * (steps - 1),
          sd_seconds=time.perf_counter() - t0)
    return p.full(chi), p.full(sd)


def _per_sample(p: Problem, name: str, arrays, samples: int):
    """One full-grid array per sample, checked and cut to the padded grid (None stays None)."""
    if arrays is None:
        return None
    if len(arrays) != samples:
        raise ValueError(f"{name} holds {len(arrays)} arrays; give one per sample ({samples})")
    cut = []
    for a in arrays:
        a = _checks.as_volume(name, a)
        if a.shape != tuple(p.full_shape):
            raise ValueError(f"{name} has shape {a.shape} but the field has shape {tuple(p.full_shape)}")
        cut.append(p.cut(np.nan_to_num(a, nan=0.0).astype(np.float32)) * (p.mask > 0))
    return cut


def _edge_mask(p: Problem, mag: np.ndarray, fraction: float) -> np.ndarray:
    """1 where the magnitude gradient component is below the (1 - fraction) quantile, else 0."""
    g = np.abs(p.grad(mag))
    inside = np.broadcast_to(p.mask > 0, g.shape)
    thr = np.quantile(g[inside], 1 - fraction)
    return (g <= thr).astype(np.float32)
