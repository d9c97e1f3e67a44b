"""Accuracy metrics against a ground truth (phantom, demo, benchmarks)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import _checks

__all__ = ["dice", "hfen", "nrmse", "region_means", "regression_slope"]


def _pair(est, ref, mask):
    est = np.asarray(est, np.float64)
    ref = np.asarray(ref, np.float64)
    _checks.same_shape("estimate", est, "reference", ref)
    mask = _checks.as_mask("mask", mask, ref.shape)
    return est, ref, mask


def nrmse(est: np.ndarray, ref: np.ndarray, mask: np.ndarray, *, demean: bool = True) -> float:
    """Normalised RMS error (%) inside ``mask``: ``100·||e - r|| / ||r||``.

    With ``demean`` both are made zero-mean inside the mask first (χ and local
    fields are defined up to a constant).
    """
    est, ref, mask = _pair(est, ref, mask)
    e, r = est[mask], ref[mask]
    if demean:
        e, r = e - e.mean(), r - r.mean()
    denom = np.linalg.norm(r)
    if denom == 0:
        raise ValueError("the reference is constant inside the mask; NRMSE is undefined")
    return float(100 * np.linalg.norm(e - r) / denom)


def hfen(est: np.ndarray, ref: np.ndarray, mask: np.ndarray, *, sigma_voxels: float = 1.5) -> float:
    """High-frequency error norm (%): NRMSE of Laplacian-of-Gaussian filtered maps.

    References
    ----------
    Ravishankar S, Bresler Y. MR image reconstruction from highly undersampled
    k-space data by dictionary learning. IEEE Trans Med Imaging 2011;30:1028-1041.
    doi:10.1109/TMI.2010.2090538
    """
    est, ref, mask = _pair(est, ref, mask)
    le = ndimage.gaussian_laplace(np.where(mask, est, 0), sigma_voxels)
    lr = ndimage.gaussian_laplace(np.where(mask, ref, 0), sigma_voxels)
    return nrmse(le, lr, mask, demean=False)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two masks."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    _checks.same_shape("a", a, "b", b)
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


def region_means(values: np.ndarray, labels: np.ndarray, ids, *, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean of ``values`` over each label in ``ids`` (within ``mask``); NaN for empty regions."""
    values = np.asarray(values, np.float64)
    labels = np.asarray(labels)
    _checks.same_shape("values", values, "labels", labels)
    sel = np.ones(values.shape, bool) if mask is None else np.asarray(mask, bool)
    out = []
    for i in ids:
        region = (labels == i) & sel
        out.append(values[region].mean() if region.any() else np.nan)
    return np.array(out)


def regression_slope(est_means, true_means) -> float:
    """Least-squares slope of estimated against true region means (with intercept)."""
    x = np.asarray(true_means, float)
    y = np.asarray(est_means, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        raise ValueError("need at least two regions with different true values for a slope")
    return float(np.polyfit(x[ok], y[ok], 1)[0])
