"""Accuracy metrics against a ground truth (phantom, demo, benchmarks)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .._shared import checks as _checks

__all__ = ["chi_scores", "dice", "evaluate", "evaluate_field", "format_report", "hfen", "nrmse", "region_means", "regression_slope"]


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


# Tissues a brain mask must not hold: skull, scalp and air (CSF, dura and veins are allowed).
NON_BRAIN = ("air", "soft_tissue", "fat", "bone", "marrow", "eye")
DEEP_GREY = ("caudate", "putamen", "globus_pallidus", "thalamus", "red_nucleus", "substantia_nigra", "dentate")


def _label_ids(label_names: dict, names) -> dict:
    """Label id of each requested region name present in ``label_names``."""
    by_name = {str(n): int(i) for i, n in label_names.items()}
    return {n: by_name[n] for n in names if n in by_name}


def evaluate_field(result, truth) -> dict:
    """Mask and total-field accuracy (see :func:`evaluate`) of a run that reached the field fit."""
    brain = np.asarray(truth.brain_mask, bool)
    non_brain = np.isin(truth.labels, list(_label_ids(truth.label_names, NON_BRAIN).values()))
    out = {
        "mask_dice": dice(result.mask, brain),
        "mask_coverage": float((result.mask & brain).sum() / brain.sum()),
        "mask_outside": float((result.mask & non_brain).sum() / max(result.mask.sum(), 1)),
    }
    both = result.mask & brain
    err = result.total_field_hz[both].astype(np.float64) - truth.total_field_hz[both]
    loc = truth.local_field_ppm[both].astype(np.float64) * result.parameters["hz_per_ppm"]
    out["total_field_error_pct"] = float(100 * np.std(err) / np.std(loc))
    return out


def chi_scores(chi: np.ndarray, truth, ev: np.ndarray) -> dict:
    """χ against a simulated head inside ``ev``: ``chi_nrmse``, ``chi_hfen`` (%),
    ``deep_grey`` (region: (estimated, true) ppm, both relative to the mean over ``ev``)
    and ``deep_grey_slope``."""
    out = {"chi_nrmse": nrmse(chi, truth.chi, ev), "chi_hfen": hfen(chi, truth.chi, ev)}
    ids = _label_ids(truth.label_names, DEEP_GREY)
    e_means = region_means(chi - chi[ev].mean(), truth.labels, ids.values(), mask=ev)
    t_means = region_means(truth.chi - truth.chi[ev].mean(), truth.labels, ids.values(), mask=ev)
    out["deep_grey"] = {k: (float(a), float(b)) for k, a, b in zip(ids, e_means, t_means)}
    out["deep_grey_slope"] = regression_slope(e_means, t_means) if len(ids) >= 2 else float("nan")
    return out


def evaluate(result, truth) -> dict:
    """Per-stage accuracy of a pipeline result against a simulated head's ground truth.

    Parameters
    ----------
    result : QSMResult
        Output of :func:`qsmflow.pipeline.run`.
    truth : HeadPhantom
        The simulated head (``brain_mask``, ``total_field_hz``, ``local_field_ppm``,
        ``chi``, ``r2star``, ``labels``, ``label_names``, ``field_strength``).

    Returns
    -------
    dict
        ``mask_dice``, ``mask_coverage`` (fraction of the true brain inside the mask),
        ``mask_outside`` (fraction of the mask in skull, scalp, eyes or air),
        ``total_field_error_pct`` (RMS of the demeaned total-field error over the RMS
        of the demeaned true local field, in the true brain ∩ mask),
        ``local_field_nrmse`` (%), ``chi_nrmse`` (%), ``chi_hfen`` (%),
        ``deep_grey_slope``, ``deep_grey`` (region: (estimated, true) χ in ppm, both
        referenced to the evaluation region's mean), ``r2star_deep_grey`` (region:
        (estimated, true) median R2* in 1/s), ``r2star_max_error_pct``.
    """
    brain = np.asarray(truth.brain_mask, bool)
    out = evaluate_field(result, truth)
    ev = result.eroded_mask & brain
    out["local_field_nrmse"] = nrmse(result.local_field_ppm, truth.local_field_ppm, ev)
    out.update(chi_scores(result.chi, truth, ev))
    ids = _label_ids(truth.label_names, DEEP_GREY)
    if result.r2star is not None:
        r2 = {}
        for name, i in ids.items():
            region = (truth.labels == i) & result.mask
            if region.any():
                r2[name] = (float(np.median(result.r2star[region])), float(np.median(truth.r2star[region])))
        out["r2star_deep_grey"] = r2
        out["r2star_max_error_pct"] = max((100 * abs(a - b) / b for a, b in r2.values()), default=float("nan"))
    return out


def format_report(m: dict) -> str:
    """A plain-text table of :func:`evaluate`'s output."""
    rows = [
        ("mask", "Dice / coverage / outside", f"{m['mask_dice']:.3f} / {100 * m['mask_coverage']:.1f}% / "
                                               f"{100 * m['mask_outside']:.1f}%"),
        ("field map", "total-field error (% of local-field RMS)", f"{m['total_field_error_pct']:.1f}"),
        ("background", "local-field NRMSE (%)", f"{m['local_field_nrmse']:.1f}"),
        ("inversion", "chi NRMSE / HFEN (%)", f"{m['chi_nrmse']:.1f} / {m['chi_hfen']:.1f}"),
        ("deep grey", "chi slope vs truth", f"{m['deep_grey_slope']:.2f}"),
    ]
    for name, (a, b) in m["deep_grey"].items():
        rows.append(("", f"chi {name} (ppm) est / true", f"{a:+.3f} / {b:+.3f}"))
    if "r2star_deep_grey" in m:
        rows.append(("R2*", "largest deep-grey error (%)", f"{m['r2star_max_error_pct']:.1f}"))
        for name, (a, b) in m["r2star_deep_grey"].items():
            rows.append(("", f"R2* {name} (1/s) est / true", f"{a:.1f} / {b:.1f}"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows)
