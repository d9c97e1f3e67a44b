"""Brain masks from the GRE magnitude, and mask erosion helpers."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from . import _checks
from .constants import VESSEL_R2STAR_PER_S_AT_3T
from .registry import Method

log = logging.getLogger(__name__)

__all__ = ["METHODS", "dilate", "erode", "magnitude_mask"]

# Gaussian smoothing (mm) of the combined magnitude before thresholding: enough to
# tame noise, little enough that a 4-6 mm dark skull stays dark at 2 mm voxels.
_SMOOTH_MM = 1.0
# A voxel darker than this fraction of the 99th percentile is background (air, bone).
_DARK_FRACTION = 0.1
# Whole-head images hold 20-60 % background; below this fraction the field of view is
# taken to lie inside the head (a crop) and no skull stripping is attempted.
_MIN_BACKGROUND = 0.05


def erode(mask: np.ndarray, radius_mm: float, voxel_size) -> np.ndarray:
    """Erode ``mask`` by a ball of ``radius_mm`` (round in mm for anisotropic voxels).

    A voxel stays when no voxel outside the mask lies within ``radius_mm`` of it
    (exact Euclidean distance transform; the volume's edge does not erode).
    """
    vs = _checks.voxel_size(voxel_size)
    if radius_mm <= 0:
        return np.asarray(mask, bool).copy()
    return ndimage.distance_transform_edt(mask, sampling=vs) > radius_mm * (1 + 1e-9)


def dilate(mask: np.ndarray, radius_mm: float, voxel_size) -> np.ndarray:
    """Dilate ``mask`` by a ball of ``radius_mm``: every voxel within ``radius_mm`` of it."""
    vs = _checks.voxel_size(voxel_size)
    mask = np.asarray(mask, bool)
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask, sampling=vs) <= radius_mm * (1 + 1e-9)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == np.argmax(sizes)


def _vessel_exclusion(magnitude, echo_times, field_strength, mask, vs) -> np.ndarray:
    """Large veins on the brain's surface (dural sinuses, cortical veins): voxels with a
    high R2* in components that reach the mask's outer 3 mm, grown by 1 mm."""
    from .relaxometry import loglinear_r2star

    r2, _ = loglinear_r2star(magnitude, echo_times, mask=mask)
    tau = VESSEL_R2STAR_PER_S_AT_3T * field_strength / 3.0
    high = (r2 > tau) & mask
    rim = mask & ~erode(mask, 3.0, vs)
    lab, _ = ndimage.label(high)
    touching = np.unique(lab[rim & high])
    vessels = np.isin(lab, touching[touching > 0])
    return dilate(vessels, 1.0, vs) & mask


def magnitude_mask(
    magnitude: np.ndarray,
    voxel_size,
    *,
    valid: np.ndarray | None = None,
    echo_times=None,
    field_strength: float | None = None,
    erode_mm: float = 7.0,
    shrink_mm: float = 1.0,
    exclude_vessels: bool = True,
) -> np.ndarray:
    """Brain mask from the multi-echo magnitude.

    1. The echoes are combined as root-sum-of-squares, smoothed (σ = 1 mm) and
       thresholded (Otsu) into a head mask.
    2. The skull is dark in GRE: eroding the head by ``erode_mm`` cuts the bridges
       between brain, scalp, orbits and face; the largest component is the brain; it
       is dilated back by the same amount within the head mask.
    3. The mask's outer voxel layer is removed, and more up to ``shrink_mm``: those
       voxels are partly bone or dura, whatever the voxel size.
    4. With three or more echoes, large veins on the brain's surface (dural sinuses,
       cortical veins) are removed: connected regions whose R2* exceeds
       ``VESSEL_R2STAR_PER_S_AT_3T`` (scaled with B0) and that reach the mask's outer
       3 mm. Their strong fields are background for the brain, not local sources.
       Deep iron-rich nuclei and lesions do not touch the rim and stay.
    5. The largest component is kept and enclosed holes are filled.

    Images with almost no background (< 5 % dark voxels: a crop inside the head) skip
    steps 1-4: every voxel with signal is kept, with a warning.

    Parameters
    ----------
    magnitude : ndarray, (X, Y, Z) or (X, Y, Z, E)
        Magnitude image(s).
    voxel_size : sequence of 3 float
        Voxel size (mm).
    valid : ndarray of bool, optional
        Voxels that may be in the mask (e.g. finite input); default all.
    echo_times : sequence of float, optional
        Echo times (s); needed for the vessel step.
    field_strength : float, optional
        B0 (T), scales the vessel R2* threshold; needed for the vessel step.
    erode_mm : float
        Erosion radius (mm) that separates brain from scalp and face.
    shrink_mm : float
        Final erosion (mm) away from the skull, at least one voxel (0: none).
    exclude_vessels : bool
        Remove large surface veins (step 4).

    Returns
    -------
    ndarray of bool
        The brain mask.

    References
    ----------
    Otsu N. A threshold selection method from gray-level histograms. IEEE Trans Syst
    Man Cybern 1979;9:62-66. doi:10.1109/TSMC.1979.4310076

    Smith SM. Fast robust automated brain extraction. Hum Brain Mapp 2002;17:143-155.
    doi:10.1002/hbm.10062 (the erode / largest component / dilate idea).
    """
    mag = np.asarray(magnitude, dtype=np.float32)
    if mag.ndim == 3:
        mag = mag[..., None]
    _checks.as_volume("magnitude", mag, ndim=4)
    img = np.sqrt(np.sum(mag * mag, axis=3))
    vs = _checks.voxel_size(voxel_size)
    erode_mm = _checks.positive("erode_mm", erode_mm, allow_zero=True)
    shrink_mm = _checks.positive("shrink_mm", shrink_mm, allow_zero=True)
    valid = np.ones(img.shape, bool) if valid is None else _checks.as_mask("valid", valid, img.shape)
    smooth = ndimage.gaussian_filter(np.where(valid, img, 0).astype(np.float32), sigma=_SMOOTH_MM / vs)
    values = smooth[valid]
    if values.max() <= 0:
        raise ValueError("magnitude is zero everywhere: cannot make a mask")
    dark = np.mean(values < _DARK_FRACTION * np.percentile(values, 99))
    if dark < _MIN_BACKGROUND:
        log.warning("the magnitude has almost no background (%.1f%% dark voxels): the field of view looks like "
                    "a crop inside the head, so every voxel with signal is used as the mask; pass --mask to "
                    "choose one", 100 * dark)
        return _largest_component(valid & (img > 0))
    thr = threshold_otsu(values)
    head = (smooth > thr) & valid
    if not head.any():
        raise ValueError("no voxel of the magnitude is above the threshold: cannot make a mask")
    brain = head
    if erode_mm > 0:
        core = erode(head, erode_mm, vs)
        if core.any():
            brain = dilate(_largest_component(core), erode_mm, vs) & head
        else:
            log.warning("erosion by %.1f mm removed the whole head; using the thresholded head", erode_mm)
    if shrink_mm > 0:
        shrunk = ndimage.binary_erosion(brain)  # one voxel, face neighbours
        if shrink_mm > vs.min():
            shrunk = erode(shrunk, shrink_mm - vs.min(), vs)
        brain = shrunk if shrunk.any() else brain
    if exclude_vessels and (echo_times is None or field_strength is None or mag.shape[3] < 3):
        log.info("magnitude mask: large surface veins kept (needs three or more echoes, echo times and B0)")
    elif exclude_vessels:
        vessels = _vessel_exclusion(mag, echo_times, _checks.field_strength(field_strength), brain, vs)
        if vessels.any() and (brain & ~vessels).any():
            brain = brain & ~vessels
            log.info("magnitude mask: %d voxels of large surface veins removed", int(vessels.sum()))
    brain = ndimage.binary_fill_holes(_largest_component(brain)) & valid
    log.info("magnitude mask: Otsu threshold %.4g, %d voxels (%.1f mL)", thr, int(brain.sum()),
             brain.sum() * np.prod(vs) / 1000)
    return brain


METHODS = {
    "magnitude": Method(
        "magnitude",
        magnitude_mask,
        "Otsu threshold of the echo-combined magnitude, erosion, largest component, dilation, hole filling",
        (
            "Otsu N. A threshold selection method from gray-level histograms. IEEE Trans Syst Man Cybern "
            "1979;9:62-66. doi:10.1109/TSMC.1979.4310076",
        ),
    ),
}
