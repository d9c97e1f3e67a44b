"""Referencing of χ: the dipole inversion leaves χ's mean undetermined."""

from __future__ import annotations

import logging

import numpy as np

from ._shared import checks as _checks
from ._shared.constants import (
    CSF_MIN_ECHO_SPAN_S,
    CSF_MIN_VOLUME_ML,
    CSF_R2STAR_FULL_PER_S,
    CSF_R2STAR_ZERO_PER_S,
)
from ._shared.registry import Method

log = logging.getLogger(__name__)

__all__ = ["METHODS", "csf_reference", "csf_weight_redraws", "csf_weights", "echo_span_too_short", "mean_reference"]


def mean_reference(chi: np.ndarray, mask: np.ndarray, *, region: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Subtract the mean of χ over ``region`` (default: the whole ``mask``).

    Returns
    -------
    chi : ndarray (float32)
        Referenced χ (ppm), zero outside ``mask``.
    offset : float
        The subtracted value (ppm).

    References
    ----------
    Straub S, Schneider TM, Emmerich J, et al. Suitable reference tissues for
    quantitative susceptibility mapping of the brain. Magn Reson Med 2017;78:204-214.
    doi:10.1002/mrm.26369
    """
    chi = _checks.as_volume("chi", chi, finite=True)
    mask = _checks.as_mask("mask", mask, chi.shape)
    region = mask if region is None else _checks.as_mask("region", region, chi.shape) & mask
    if not region.any():
        raise ValueError("region does not overlap the mask")
    return _subtract(chi, mask, float(chi[region].astype(np.float64).mean()))


def _subtract(chi: np.ndarray, mask: np.ndarray, offset: float) -> tuple[np.ndarray, float]:
    """χ minus ``offset`` inside ``mask``, 0 outside (float32), and the offset."""
    return np.where(mask, chi - offset, 0).astype(np.float32), offset


def echo_span_too_short(echo_span_s: float | None) -> bool:
    """Whether echoes spanning ``echo_span_s`` (last minus first echo time, s; None: unknown)
    are too close together for R2* to tell CSF (below :data:`CSF_MIN_ECHO_SPAN_S`)."""
    if echo_span_s is not None and not 0 <= echo_span_s <= 0.2:
        raise ValueError(f"echo_span_s must be the span of the echo times in seconds (0-0.2), got {echo_span_s:g}"
                         + ("; in milliseconds?" if echo_span_s > 0.2 else ""))
    return echo_span_s is not None and echo_span_s < CSF_MIN_ECHO_SPAN_S


def csf_weights(r2star: np.ndarray, mask: np.ndarray, voxel_size, *, r2star_noise: np.ndarray | None = None,
                echo_span_s: float | None = None, full: float = CSF_R2STAR_FULL_PER_S,
                zero: float = CSF_R2STAR_ZERO_PER_S) -> np.ndarray:
    """How much each voxel of ``mask`` is CSF, from R2*, without an atlas: weights in [0, 1].

    CSF decays slowest of all brain tissue (R2* ≈ 2-5/s against 15-35/s in grey and white
    matter at 3 T, 10-20/s at 1.5 T). The weight is 1 where ``R2* <= full``, 0 where
    ``R2* >= zero``, linear between (partial volume with cortex gets a share), over the
    whole mask: the ventricles and the subarachnoid CSF of every sulcus. Voxels where the
    fit failed (R2* not above 0) and, given ``r2star_noise`` (1/s per voxel, NaN where
    unknown), voxels whose R2* is less certain than the ramp is wide get 0. Given
    ``echo_span_s`` (last minus first echo time, s) below :data:`CSF_MIN_ECHO_SPAN_S`, every
    weight is 0: over so short a span the ramp's R2* differ by less than the echoes'
    systematic errors, which the noise map does not hold.

    This widens MEDI+0's region (the lateral ventricles: R2* below 5/s, connected to the
    centre of the brain) to all CSF: on the benchmark matrix the uniform-CSF term over the
    whole CSF lowers χ's error on every row with reliable R2* (benchmarks/README.md, Benchmark matrix).

    Returns
    -------
    ndarray (float32)
        The weights; all 0 (with a warning) when they sum to less than
        :data:`CSF_MIN_VOLUME_ML` mL.

    References
    ----------
    Liu Z, Spincemaille P, Yao Y, Zhang Y, Wang Y. MEDI+0: Morphology enabled dipole
    inversion with automatic uniform cerebrospinal fluid zero reference for
    quantitative susceptibility mapping. Magn Reson Med 2018;79:2795-2803.
    doi:10.1002/mrm.26946
    """
    r2 = _checks.as_volume("r2star", r2star)
    mask = _checks.as_mask("mask", mask, r2.shape)
    vs = _checks.voxel_size(voxel_size)
    width = _ramp_width(full, zero)
    ok = mask & np.isfinite(r2) & (r2 > 0)  # R2* = 0: a failed (clipped) fit, not CSF
    if ok.any() and float(np.median(r2[ok])) < 1.0:  # brain R2* is 10-40/s; T2* in s is below 1
        raise ValueError(f"r2star's median over the mask is {float(np.median(r2[ok])):.3g}; brain R2* is 10-40 per "
                         "second: is it T2* (s)? Give R2* = 1/T2*")
    if echo_span_too_short(echo_span_s):
        log.info("no CSF reference region: echoes spanning %.1f ms cannot tell CSF from tissue by R2* (%g ms or "
                 "more can)", 1e3 * echo_span_s, 1e3 * CSF_MIN_ECHO_SPAN_S)
        return np.zeros(r2.shape, np.float32)
    if r2star_noise is not None:
        sd = np.asarray(r2star_noise, np.float32)
        _checks.same_shape("r2star_noise", sd, "r2star", r2)
        noisy = ok & (sd > width)  # NaN (unknown) compares False: kept
        if noisy.any():
            log.info("CSF weights: %d voxels of the mask left out, their R2* noise above %g/s", noisy.sum(), width)
        ok &= ~noisy
    w = np.zeros(r2.shape, np.float32)
    w[ok] = _ramp(r2[ok], zero, width)
    volume_ml = float(w.sum(dtype=np.float64)) * float(np.prod(vs)) / 1000
    if volume_ml < CSF_MIN_VOLUME_ML:
        log.warning("only %.2f mL of CSF-like R2* (below %g/s) in the mask (the ventricles alone hold > %g mL); no "
                    "CSF reference region", volume_ml, zero, CSF_MIN_VOLUME_ML)
        return np.zeros(r2.shape, np.float32)
    log.info("CSF weights: %.1f mL (R2* %g-%g/s)", volume_ml, full, zero)
    return w


def csf_weight_redraws(weights: np.ndarray, r2star: np.ndarray, mask: np.ndarray, r2star_noise: np.ndarray, *,
                       samples: int, full: float = CSF_R2STAR_FULL_PER_S, zero: float = CSF_R2STAR_ZERO_PER_S,
                       seed: int = 0) -> list[np.ndarray]:
    """How the CSF weights of :func:`csf_weights` would come out of other scans: ``samples``
    random changes ``δw``, each from R2* redrawn about its measured value with its noise
    (``r2star_noise``, 1/s per voxel; a voxel with unknown noise, NaN, keeps its weight).

    A weight is the R2* ramp ``(zero - R2*)/(zero - full)`` clipped to [0, 1] on the voxels
    :func:`csf_weights` gives one (``mask``, a fitted R2*, noise no wider than the ramp); a
    voxel just above ``zero`` can gain a weight, one on the ramp's plateau keep 1 most of
    the time. The χ uncertainty map solves each of its samples with one of these CSF terms
    (:func:`qsmflow.inversion.medi`'s ``sd_csf_jitter``): in CSF and partial-volume CSF the
    weights' change moves χ more than the field noise does. ``weights`` must be what
    :func:`csf_weights` gave for ``r2star``, ``mask`` and ``r2star_noise``.
    """
    w = _checks.as_volume("weights", weights)
    r2 = np.asarray(r2star, np.float32)
    sd = np.asarray(r2star_noise, np.float32)
    mask = _checks.as_mask("mask", mask, w.shape)
    _checks.same_shape("r2star", r2, "weights", w)
    _checks.same_shape("r2star_noise", sd, "weights", w)
    width = _ramp_width(full, zero)
    on = mask & np.isfinite(r2) & (r2 > 0) & np.isfinite(sd) & (sd > 0) & (sd <= width)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(samples):
        drawn = r2[on] + sd[on] * rng.standard_normal(int(on.sum()), dtype=np.float32)
        change = np.zeros(w.shape, np.float32)
        change[on] = _ramp(drawn, zero, width) - w[on]
        out.append(change)
    return out


def _ramp(r2: np.ndarray, zero: float, width: float) -> np.ndarray:
    """The CSF weight of R2* (1/s): 1 up to ``zero - width``, 0 from ``zero``, linear between."""
    return np.clip((np.float32(zero) - r2) / np.float32(width), 0, 1)


def _ramp_width(full: float, zero: float) -> float:
    """The CSF ramp's width ``zero - full`` (1/s), both ends checked."""
    full = _checks.positive("full", full)
    if not zero > full:
        raise ValueError(f"zero={zero} must be above full={full} (R2* in 1/s)")
    return float(zero - full)


def csf_reference(chi: np.ndarray, mask: np.ndarray, *, csf: np.ndarray) -> tuple[np.ndarray, float]:
    """Set the mean χ of CSF to zero, weighted by ``csf`` (a mask, or the weights of
    :func:`csf_weights`).

    CSF is free water, the conventional zero of brain QSM; a uniform CSF reference
    varies less between subjects than the whole-brain mean, which shifts with iron
    and myelin content.

    Returns
    -------
    chi : ndarray (float32)
        Referenced χ (ppm), zero outside ``mask``.
    offset : float
        The subtracted value (ppm): ``Σ w χ / Σ w`` over ``mask``.

    References
    ----------
    Straub S, Schneider TM, Emmerich J, et al. Suitable reference tissues for
    quantitative susceptibility mapping of the brain. Magn Reson Med 2017;78:204-214.
    doi:10.1002/mrm.26369

    Liu Z, Spincemaille P, Yao Y, Zhang Y, Wang Y. MEDI+0: Morphology enabled dipole
    inversion with automatic uniform cerebrospinal fluid zero reference for quantitative
    susceptibility mapping. Magn Reson Med 2018;79:2795-2803. doi:10.1002/mrm.26946
    """
    chi = _checks.as_volume("chi", chi, finite=True)
    mask = _checks.as_mask("mask", mask, chi.shape)
    w = _checks.as_weights("csf", csf, chi.shape)[mask].astype(np.float64)
    if not w.any():
        raise ValueError("the CSF weights are zero inside the brain mask; use the whole-brain mean reference")
    return _subtract(chi, mask, float(np.dot(w, chi[mask]) / w.sum()))


METHODS = {
    "mean": Method("mean", mean_reference, "whole-brain mean set to zero"),
    "csf": Method("csf", csf_reference, "CSF (weighted by R2* from 4 to 8/s) set to zero"),
}
