"""Referencing of χ: the dipole inversion leaves χ's mean undetermined."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from ._shared import checks as _checks
from ._shared.constants import CSF_MIN_VOLUME_ML, CSF_R2STAR_PER_S, CSF_SEARCH_RADIUS_MM
from ._shared.registry import Method

log = logging.getLogger(__name__)

__all__ = ["METHODS", "csf_mask", "csf_reference", "mean_reference"]


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
    chi = _checks.as_volume("chi", chi)
    mask = _checks.as_mask("mask", mask, chi.shape)
    region = mask if region is None else _checks.as_mask("region", region, chi.shape) & mask
    if not region.any():
        raise ValueError("region does not overlap the mask")
    offset = float(chi[region].astype(np.float64).mean())
    return np.where(mask, chi - offset, 0).astype(np.float32), offset


def csf_mask(r2star: np.ndarray, mask: np.ndarray, voxel_size, *, threshold: float = CSF_R2STAR_PER_S,
             radius_mm: float = CSF_SEARCH_RADIUS_MM) -> np.ndarray:
    """Ventricular CSF from R2*, without an atlas.

    CSF decays slowest of all brain tissue (R2* ≈ 2-5/s against 15-35/s in grey and
    white matter). Voxels of the mask with ``R2* < threshold`` form candidates; the two
    largest connected candidate regions within ``radius_mm`` of the mask's centroid
    are taken for the lateral ventricles and kept whole: where they join the third and
    fourth ventricles or the subarachnoid CSF, that CSF is included too. Isolated low-R2*
    pockets far from the centre are not.

    Returns
    -------
    ndarray of bool
        The ventricles; empty (with a warning) when no candidate lies near the centre.

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
    thr = _checks.positive("threshold", threshold)
    cand = mask & np.isfinite(r2) & (r2 > 0) & (r2 < thr)  # R2* = 0: a failed (clipped) fit, not CSF
    labels, n = ndimage.label(cand, structure=np.ones((3, 3, 3)))
    if n == 0:
        log.warning("no CSF found: no voxel of the mask has R2* below %g/s", thr)
        return np.zeros(r2.shape, bool)
    centre = np.array(ndimage.center_of_mass(mask))
    grid = np.ogrid[tuple(slice(0, s) for s in r2.shape)]
    near = sum(((g - c) * h) ** 2 for g, c, h in zip(grid, centre, vs)) <= radius_mm ** 2
    sizes = np.bincount(labels[near & cand], minlength=n + 1)
    sizes[0] = 0
    keep = [i for i in np.argsort(sizes)[::-1][:2] if sizes[i] > 0]
    if not keep:
        log.warning("no CSF found within %g mm of the brain's centre (R2* < %g/s)", radius_mm, thr)
        return np.zeros(r2.shape, bool)
    out = np.isin(labels, keep)
    volume_ml = out.sum() * float(np.prod(vs)) / 1000
    if volume_ml < CSF_MIN_VOLUME_ML:
        log.warning("only %.2f mL of low-R2* tissue near the brain's centre (ventricles hold > %g mL); no CSF "
                    "reference region", volume_ml, CSF_MIN_VOLUME_ML)
        return np.zeros(r2.shape, bool)
    log.info("CSF mask: %d voxels (%.1f mL)", out.sum(), volume_ml)
    return out


def csf_reference(chi: np.ndarray, mask: np.ndarray, *, csf: np.ndarray) -> tuple[np.ndarray, float]:
    """Set the mean χ of ventricular CSF (see :func:`csf_mask`) to zero.

    CSF is free water, the conventional zero of brain QSM; a uniform CSF reference
    varies less between subjects than the whole-brain mean, which shifts with iron
    and myelin content.

    References
    ----------
    Straub S, Schneider TM, Emmerich J, et al. Suitable reference tissues for
    quantitative susceptibility mapping of the brain. Magn Reson Med 2017;78:204-214.
    doi:10.1002/mrm.26369

    Liu Z, Spincemaille P, Yao Y, Zhang Y, Wang Y. MEDI+0: Morphology enabled dipole
    inversion with automatic uniform cerebrospinal fluid zero reference for quantitative
    susceptibility mapping. Magn Reson Med 2018;79:2795-2803. doi:10.1002/mrm.26946
    """
    chi = _checks.as_volume("chi", chi)
    csf = _checks.as_mask("csf", csf, chi.shape) & _checks.as_mask("mask", mask, chi.shape)
    if not csf.any():
        raise ValueError("the CSF mask is empty inside the brain mask; use the whole-brain mean reference")
    return mean_reference(chi, mask, region=csf)


METHODS = {
    "mean": Method("mean", mean_reference, "whole-brain mean set to zero"),
    "csf": Method("csf", csf_reference, "ventricular CSF (R2* < 5/s near the brain's centre) set to zero"),
}
