"""Referencing of χ: the dipole inversion leaves χ's mean undetermined."""

from __future__ import annotations

import numpy as np

from . import _checks
from .registry import Method

__all__ = ["METHODS", "mean_reference"]


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


METHODS = {
    "mean": Method(
        "mean",
        mean_reference,
        "whole-brain mean set to zero",
        ("Straub S, Schneider TM, Emmerich J, et al. Suitable reference tissues for quantitative susceptibility "
         "mapping of the brain. Magn Reson Med 2017;78:204-214. doi:10.1002/mrm.26369",),
    ),
}
