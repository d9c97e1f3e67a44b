"""Brain masks from the GRE magnitude (a deformable surface for whole heads, a threshold for
crops), the plausibility check of their volume, and mask erosion helpers."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from .._shared import checks as _checks
from .._shared.echoes import rss
from . import bet
from ._components import filled_holes as _filled_holes
from ._components import largest_component as _largest_component
from ._components import small_pieces_removed as _small_pieces_removed
from ._faces import (FOV_CUT_SECTION, cut_faces as _cut_faces, distance_to_narrow_exits, facing as _facing,
                     narrow_exits as _narrow_exits)
from .._shared.registry import Method

log = logging.getLogger(__name__)

__all__ = ["METHODS", "bet_brain_mask", "dilate", "distance_to_narrow_exits", "distance_to_outside", "erode", "magnitude_mask", "reliable_field_mask",
           "without_small_pieces"]

# Gaussian smoothing (mm) of the combined magnitude before thresholding: enough to
# tame noise, little enough that a 4-6 mm dark skull stays dark at 2 mm voxels.
_SMOOTH_MM = 1.0
# A voxel darker than this fraction of the 99th percentile is background (air, bone).
_DARK_FRACTION = 0.1
# Whole-head images hold 20-60 % background; below this fraction the field of view is
# taken to lie inside the head (a crop) and no skull stripping is attempted.
_MIN_BACKGROUND = 0.05
# Intracranial volume of adults, brain with CSF and veins (mL): 1.1-1.7 L typical; outside
# this range a whole-head mask has taken in non-brain (eyes, neck) or lost brain.
MASK_VOLUME_ML = (900.0, 1900.0)


def _box(mask: np.ndarray, margin) -> tuple[slice, ...]:
    """The bounding box of ``mask``'s voxels grown by ``margin`` voxels per axis, clipped to the volume."""
    found = ndimage.find_objects(mask.astype(np.uint8))[0]
    return tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, m, n in zip(found, margin, mask.shape))


def distance_to_outside(mask: np.ndarray, voxel_size, *, volume_edge: bool = False) -> np.ndarray:
    """Distance (mm, float64) from each voxel of ``mask`` to the nearest voxel outside it; 0 outside.

    The exact Euclidean distance transform. The volume's edge does not count as outside
    unless ``volume_edge``: then the volume is taken to be surrounded by one more layer
    outside the mask, so a voxel on a face is one voxel from the outside, as a voxel next to
    an outside voxel is (a field of view that cuts the brain: the field's region has an edge
    there, and the field's error is largest at an edge). A mask that touches no face has the
    same distances either way. It is computed on the mask's bounding box grown by one voxel,
    which gives the same distances as the whole volume (the grown box's outer layer is outside
    the mask, and no voxel beyond it is nearer) at a fraction of the cost: a brain fills about
    half of a whole-head field of view (1 mm head: 0.35 s against 0.68 s).

    The last answer is kept (keyed by the mask's voxels, the voxel size and whether a face
    counts): a 1 mm run asked for one region's distances three times (MEDI's edge taper
    before and after LBV's refinement, the χ sign check), 0.4-0.7 s each. A copy is returned.
    """
    vs = _checks.voxel_size(voxel_size)
    mask = np.asarray(mask, bool)
    if np.ndim(mask) != 3:
        raise ValueError(f"mask must be 3D, got shape {np.shape(mask)}")
    if not mask.any():
        return np.zeros(mask.shape)
    box = _box(mask, (1, 1, 1))
    grow = [(int(b.start == 0), int(b.stop == n)) for b, n in zip(box, mask.shape)]
    volume_edge = bool(volume_edge) and any(a or b for a, b in grow)  # no face touched: the same either way
    key = (mask.shape, tuple(vs.tolist()), volume_edge, hashlib.blake2b(np.packbits(mask)).digest())
    if _LAST_DISTANCES.get("key") != key:
        out = np.zeros(mask.shape)
        part = mask[box]
        if volume_edge:  # an outside layer where the box lies against a face of the volume
            inner = tuple(slice(a, a + n) for (a, _), n in zip(grow, part.shape))
            out[box] = ndimage.distance_transform_edt(np.pad(part, grow), sampling=vs)[inner]
        else:
            out[box] = ndimage.distance_transform_edt(part, sampling=vs)
        _LAST_DISTANCES.update(key=key, out=out)
    return _LAST_DISTANCES["out"].copy()


_LAST_DISTANCES: dict = {}


def erode(mask: np.ndarray, radius_mm: float, voxel_size) -> np.ndarray:
    """Erode ``mask`` by a ball of ``radius_mm`` (round in mm for anisotropic voxels).

    A voxel stays when no voxel outside the mask lies within ``radius_mm`` of it
    (exact Euclidean distance transform, :func:`distance_to_outside`; the volume's edge does
    not erode).
    """
    if radius_mm <= 0:
        _checks.voxel_size(voxel_size)
        if np.ndim(mask) != 3:
            raise ValueError(f"mask must be 3D, got shape {np.shape(mask)}")
        return np.asarray(mask, bool).copy()
    return distance_to_outside(mask, voxel_size) > radius_mm * (1 + 1e-9)


def dilate(mask: np.ndarray, radius_mm: float, voxel_size) -> np.ndarray:
    """Dilate ``mask`` by a ball of ``radius_mm``: every voxel within ``radius_mm`` of it.

    The distances are computed on the mask's bounding box grown by the radius (and a voxel):
    every voxel within the radius lies there, and its nearest mask voxel too.
    """
    vs = _checks.voxel_size(voxel_size)
    mask = np.asarray(mask, bool)
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    reach = tuple(int(np.ceil(radius_mm / h)) for h in vs)
    box = _box(mask, tuple(r + 1 for r in reach))
    out = np.zeros(mask.shape, bool)
    if max(reach) <= _BALL_REACH:  # a small ball: dilation by it, the same voxels as the distances
        out[box] = ndimage.binary_dilation(mask[box], structure=_ball(radius_mm, vs, reach))
    else:
        out[box] = ndimage.distance_transform_edt(~mask[box], sampling=vs) <= radius_mm * (1 + 1e-9)
    return out


# Up to this many voxels of reach per axis, :func:`dilate` uses the ball as a structuring
# element (1 mm head: the peel's one-voxel growth 0.05 s against 0.7 s of distance transform).
_BALL_REACH = 2


def _ball(radius_mm: float, vs: np.ndarray, reach) -> np.ndarray:
    """The voxel offsets within ``radius_mm`` of the centre, as a boolean structuring element."""
    axes = np.ogrid[tuple(slice(-r, r + 1) for r in reach)]
    return sum((a * h) ** 2 for a, h in zip(axes, vs)) <= (radius_mm * (1 + 1e-9)) ** 2


def _combined(magnitude, valid):
    """Root-sum-of-squares over echoes (0 outside ``valid``) and the checked ``valid`` mask."""
    mag = np.asarray(magnitude, dtype=np.float32)
    if mag.ndim == 3:
        mag = mag[..., None]
    _checks.as_volume("magnitude", mag, ndim=4, finite=True)
    img = rss(mag)
    valid = np.ones(img.shape, bool) if valid is None else _checks.as_mask("valid", valid, img.shape)
    return np.where(valid, img, 0).astype(np.float32), valid


def _crop_mask(img, valid, vs):
    """For a field of view inside the head (almost no dark background): every voxel with
    signal, with a warning; None for whole-head images."""
    smooth = ndimage.gaussian_filter(img, sigma=_SMOOTH_MM / vs)
    values = smooth[valid]
    if values.max() <= 0:
        raise ValueError("magnitude is zero everywhere: cannot make a mask")
    dark = np.mean(values < _DARK_FRACTION * np.percentile(values, 99))
    if dark >= _MIN_BACKGROUND:
        return None
    log.warning("the magnitude has almost no background (%.1f%% dark voxels): the field of view looks like "
                "a crop inside the head, so every voxel with signal is used as the mask; pass --mask to "
                "choose one", 100 * dark)
    return _largest_component(valid & (img > 0))


def narrow_exit_faces(mask: np.ndarray, toward=None) -> list[str]:
    """The faces of the field of view ``mask`` leaves through a narrow section and that face
    ``toward`` (:func:`distance_to_narrow_exits`), as "k = 0" (axis letter, index of the slice)."""
    mask = np.asarray(mask, bool)
    exits = [tuple(e and _facing(axis, side, toward) for side, e in enumerate(sides))
             for axis, sides in enumerate(_narrow_exits(mask))]
    return _face_names(mask.shape, exits)


def _face_names(shape, faces) -> list[str]:
    """Faces flagged per axis (first, last) named by voxel index, e.g. ``["k = 0"]``."""
    return [f"{letter} = {i}" for letter, n, sides in zip("ijk", shape, faces)
            for i, flagged in zip((0, n - 1), sides) if flagged]


def faces_cutting(mask: np.ndarray) -> list[str]:
    """The faces of the field of view that cut the mask: where the mask's section on the face
    is at least :data:`FOV_CUT_SECTION` of its largest section along that axis (a slab through
    the brain, or a crop inside the head; a brainstem cut at the bottom of a whole-head field
    of view has a small share). Named by voxel index, e.g. ``["k = 0", "k = 63"]``."""
    mask = np.asarray(mask, bool)
    return _face_names(mask.shape, _cut_faces(mask))


def check_volume(mask: np.ndarray, voxel_size) -> None:
    """Warn when a whole-head brain mask's volume is outside :data:`MASK_VOLUME_ML`. A mask that
    the field of view cuts (:func:`faces_cutting`) is not warned about for being small: a
    slab holds part of the brain."""
    ml = float(mask.sum() * np.prod(_checks.voxel_size(voxel_size)) / 1000)
    lo, hi = MASK_VOLUME_ML
    cut = faces_cutting(mask) if ml < lo else []
    if ml > hi:
        log.warning("the brain mask holds %.2f L, more than an adult brain (%.1f-%.1f L): it may take in eyes, "
                    "muscle or neck, and χ there is meaningless; look at the mask and pass --mask if it is wrong",
                    ml / 1000, lo / 1000, hi / 1000)
    elif cut:
        log.info("the field of view cuts the brain (at %s): the mask holds the %.2f L of it inside", " and ".join(cut),
                 ml / 1000)
    elif ml < lo:
        log.warning("the brain mask holds %.2f L, less than an adult brain (%.1f-%.1f L): fine if the field of "
                    "view cuts the brain (a slab) or for a child, otherwise brain is missing; look at the mask "
                    "and pass --mask if it is wrong", ml / 1000, lo / 1000, hi / 1000)


def magnitude_mask(
    magnitude: np.ndarray,
    voxel_size,
    *,
    valid: np.ndarray | None = None,
    erode_mm: float = 7.0,
    shrink_mm: float = 1.0,
) -> np.ndarray:
    """Brain mask by thresholding the multi-echo magnitude.

    1. The echoes are combined as root-sum-of-squares, smoothed (σ = 1 mm) and
       thresholded (Otsu) into a head mask.
    2. The skull is dark in GRE: eroding the head by ``erode_mm`` cuts the bridges
       between brain, scalp, orbits and face; the largest component is the brain; it
       is dilated back by the same amount within the head mask.
    3. The mask's outer voxel layer is removed, and more up to ``shrink_mm``: those
       voxels are partly bone or dura, whatever the voxel size.
    4. The largest component is kept and enclosed holes are filled.

    A threshold follows the receive coil's shading (a multi-channel coil's dark brain
    centre falls below it) and keeps whatever touches the brain through the skull base;
    for whole heads :func:`bet_brain_mask` is the default. Images with almost no
    background (< 5 % dark voxels: a crop inside the head) skip steps 1-3: every voxel
    with signal is kept, with a warning.

    Parameters
    ----------
    magnitude : ndarray, (X, Y, Z) or (X, Y, Z, E)
        Magnitude image(s).
    voxel_size : sequence of 3 float
        Voxel size (mm).
    valid : ndarray of bool, optional
        Voxels that may be in the mask (e.g. finite input); default all.
    erode_mm : float
        Erosion radius (mm) that separates brain from scalp and face.
    shrink_mm : float
        Final erosion (mm) away from the skull, at least one voxel (0: none).

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
    img, valid = _combined(magnitude, valid)
    vs = _checks.voxel_size(voxel_size)
    erode_mm = _checks.positive("erode_mm", erode_mm, allow_zero=True)
    shrink_mm = _checks.positive("shrink_mm", shrink_mm, allow_zero=True)
    crop = _crop_mask(img, valid, vs)
    if crop is not None:
        return crop
    smooth = ndimage.gaussian_filter(img, sigma=_SMOOTH_MM / vs)
    thr = threshold_otsu(smooth[valid])
    head = (smooth > thr) & valid  # never empty: a flat image took the crop path above
    brain = head
    if erode_mm > 0:
        core = erode(head, erode_mm, vs)
        if core.any():
            brain = dilate(_largest_component(core), erode_mm, vs) & head
        else:
            log.warning("erosion by %.1f mm removed the whole head; using the thresholded head", erode_mm)
    brain = _shrink(brain, shrink_mm, vs)
    brain = _filled_holes(_largest_component(brain)) & valid
    log.info("threshold mask: Otsu threshold %.4g, %d voxels (%.1f mL)", thr, int(brain.sum()),
             brain.sum() * np.prod(vs) / 1000)
    check_volume(brain, vs)
    return brain


def _shrink(mask, shrink_mm, vs):
    """Remove the outer voxel layer, and more up to ``shrink_mm`` (0: nothing)."""
    if shrink_mm <= 0:
        return mask
    shrunk = ndimage.binary_erosion(mask)  # one voxel, face neighbours
    if shrink_mm > vs.min():
        shrunk = erode(shrunk, shrink_mm - vs.min(), vs)
    return shrunk if shrunk.any() else mask


def bet_brain_mask(
    magnitude: np.ndarray,
    voxel_size,
    *,
    valid: np.ndarray | None = None,
    fractional_threshold: float = bet.BET_FRACTIONAL_THRESHOLD,
    shrink_mm: float = 0.0,
) -> np.ndarray:
    """Brain mask of a whole-head GRE by a deformable surface (:func:`qsmflow.masking.bet.bet_mask`).

    Keeps brain, cerebellum, brainstem, cortical CSF and every vein and sinus inside the
    skull; eyes, muscle, face and neck stay out. Images with almost no background (a crop
    inside the head) get every voxel with signal instead, with a warning. A mask outside
    0.9-1.9 L is warned about.

    Parameters
    ----------
    magnitude, voxel_size, valid
        As for :func:`magnitude_mask`; several echoes in the order of their echo times (the
        surface moves on their root-sum-of-squares and on the last echo, and the mask is the
        union: see :func:`qsmflow.masking.bet.bet_mask`).
    fractional_threshold : float
        BET's ``-f`` (0-1; smaller: larger mask).
    shrink_mm : float
        Erosion (mm) of the surface's inside, away from the skull (0: none; otherwise at
        least one voxel).

    Returns
    -------
    ndarray of bool
        The brain mask (brain, cerebellum, brainstem, cortical CSF, veins and sinuses).

    References
    ----------
    Smith SM. Fast robust automated brain extraction. Hum Brain Mapp 2002;17:143-155.
    doi:10.1002/hbm.10062
    """
    img, valid = _combined(magnitude, valid)
    vs = _checks.voxel_size(voxel_size)
    shrink_mm = _checks.positive("shrink_mm", shrink_mm, allow_zero=True)
    crop = _crop_mask(img, valid, vs)
    if crop is not None:
        return crop
    del img  # BET combines the echoes itself, and reads their decay
    brain = _shrink(bet.bet_mask(magnitude, vs, valid=valid, fractional_threshold=fractional_threshold), shrink_mm, vs)
    check_volume(brain, vs)
    return brain


# Field-reliability peel: voxels whose field noise exceeds this many times the mask's median,
# or whose R2* exceeds the venous-blood level below (1/s at 3 T, scaled with B0: venous blood
# 40-50/s, the most iron-rich grey matter 35/s), are unreliable as a field or are a dural sinus;
# they are left out where they connect to the mask's edge within this depth (mm), with one
# voxel (at least PEEL_GROW_MM) around them. Deep veins and nuclei never connect to the edge
# that shallowly. On the benchmark heads this peel takes 0-3 of 1,900-3,000 vein voxels inside
# the brain and 1-2 % of the brain's Σχ²; the extra voxel lowered χ NRMSE by 1-3.5 points on
# every variant (1 mm: 33.7 -> 32.8 %, oblique 35°: 45.1 -> 41.6 %, 2 mm: 61.9 -> 58.8 %).
# The depth was 10 mm until stop 54. On the Zubal head (a real segmentation, benchmarks/zubal.py)
# BET's mask reaches into the orbits, so the brain's own edge there lies 11-17 mm inside the
# mask's: the orbital fat's chemical shift and the field next to the sinuses' air left voxels
# 8-22x the median noise (R2* 30-90/s) in the local region, and χ of -3.8 to +2.8 ppm in CSF
# (1 mm: χ NRMSE 72.5 %; 41.5 % with the head as reviewed, whose truth holds no voxel touching
# fat or air). 15 mm: 32.1 / 31.4 % (2 mm: 42.7 -> 40.7, 41.1 -> 40.5 %); every procedural row of
# the matrix within +0.4 points, the 1 mm head's veins left out of the local region 10 of 2,963
# at both depths (20 mm: 32.1 / 40.9 % on the first version, not run on the rest).
PEEL_NOISE_FACTOR = 3.0
PEEL_R2STAR_PER_S_AT_3T = 40.0
PEEL_DEPTH_MM = 15.0
PEEL_GROW_MM = 1.0
# R2* is used for the peel only where the fit resolves the limit: its noise (1/s, median over
# the mask) below this fraction of the limit (two echoes 2.3 ms apart at SNR 30: ~20/s, not used).
_R2STAR_USABLE = 0.25


def reliable_field_mask(mask: np.ndarray, noise: np.ndarray, voxel_size, *, r2star: np.ndarray | None = None,
                        r2star_noise: float | None = None, field_strength: float = 3.0,
                        factor: float = PEEL_NOISE_FACTOR, depth_mm: float = PEEL_DEPTH_MM,
                        depth: np.ndarray | None = None, verbose: bool = True) -> np.ndarray:
    """The brain mask without its unreliable edge: where background removal and the dipole
    inversion work.

    The brain mask holds everything inside the skull, including the dural sinuses and the
    partial-volume voxels against bone and air. At its edge those voxels are bad data for a
    background removal: their field noise is high (the field fit raises it where the phase
    does not evolve linearly: intravoxel dephasing next to air, partial volume with bone),
    or their R2* is that of venous blood (a sinus, whose strong field on the mask's boundary
    LBV would take as background). Such voxels within ``depth_mm`` of the edge and connected
    to it through other such voxels are left out, with one voxel around them (their partial
    volume). Veins and nuclei deeper inside stay, as do reliable voxels anywhere.

    Parameters
    ----------
    mask : ndarray of bool
        Brain mask.
    noise : ndarray
        Field-map standard deviation (any unit); NaN (unknown): only R2* is used.
    voxel_size : sequence of 3 float
        Voxel size (mm).
    r2star : ndarray, optional
        R2* map (1/s); with ``r2star_noise`` (1/s, typical), used when it resolves the
        venous level (:data:`PEEL_R2STAR_PER_S_AT_3T` scaled with ``field_strength``).
    factor : float
        Noise above this many times the mask's median is unreliable (0: noise not used).
    depth_mm : float
        How deep (mm) the peel may reach.
    depth : ndarray, optional
        ``distance_to_outside(mask, voxel_size)`` when already computed (a caller peeling the
        same mask several times).
    verbose : bool
        Log what was left out (False: quiet, for a caller redrawing the peel).

    Returns
    -------
    ndarray of bool
        The mask less the peeled edge (the largest component of what is left); a copy of
        ``mask`` when nothing is flagged, or when the peel would take half of it or more
        (with a warning).
    """
    vs = _checks.voxel_size(voxel_size)
    mask = np.asarray(mask, bool)
    _checks.same_shape("noise", np.asarray(noise), "mask", mask)
    if r2star is not None:
        _checks.same_shape("r2star", np.asarray(r2star), "mask", mask)
    flagged = np.zeros(mask.shape, bool)
    values = np.asarray(noise, np.float32)[mask]
    if factor > 0 and np.all(np.isfinite(values)) and np.any(values > 0):
        flagged |= mask & (np.asarray(noise) > factor * float(np.median(values)))
    limit = PEEL_R2STAR_PER_S_AT_3T * field_strength / 3.0
    if r2star is not None and r2star_noise is not None and r2star_noise < _R2STAR_USABLE * limit:
        flagged |= mask & (np.asarray(r2star) > limit)
    if depth is None:
        depth = distance_to_outside(mask, vs, volume_edge=True)
    else:
        _checks.same_shape("depth", np.asarray(depth), "mask", mask)
    lab, n = ndimage.label(flagged & (depth <= depth_mm))
    if n == 0:
        return mask.copy()
    rim = mask & ~ndimage.binary_erosion(mask)
    touching = np.unique(lab[rim])
    # one voxel more (at least 1 mm): the partial-volume rim of a sinus or of bone
    peel = dilate(np.isin(lab, touching[touching > 0]), max(PEEL_GROW_MM, float(vs.max())), vs) & mask
    kept = _largest_component(mask & ~peel)
    if kept.sum() < 0.5 * mask.sum():
        if verbose:
            log.warning("the field is unreliable over half of the brain mask's edge region; the mask is kept whole")
        return mask.copy()
    if verbose:
        log.info("field reliability: %d voxels (%.1f%% of the mask) at its edge left out (noise above %g x median%s)",
                 int(mask.sum() - kept.sum()), 100 * (1 - kept.sum() / mask.sum()), factor,
                 f", R2* above {limit:g}/s" if r2star is not None and r2star_noise is not None
                 and r2star_noise < _R2STAR_USABLE * limit else "")
    return kept


# Pieces of a local field's region smaller than this (mL) are left out. Eroding a region
# (LBV's interior, SHARP's kernel) leaves single voxels where it was thin; alone, a voxel's
# χ is held neither by its own field (a point source's field at its own voxel is ~0) nor by
# TV where its magnitude's edges mask every gradient: on the T1-weighted 1.5 T benchmark head
# MEDI+0 put 20 and 8.6 ppm in two such voxels, 87 % of the χ error. 1 mL is 1,000 voxels at
# 1 mm, 83 at 2x2x3 mm; a slab's separate temporal pole is several mL.
MIN_REGION_PIECE_ML = 1.0


def without_small_pieces(region: np.ndarray, voxel_size, min_ml: float = MIN_REGION_PIECE_ML) -> np.ndarray:
    """``region`` without its face-connected pieces under ``min_ml`` mL (the largest piece always
    kept); ``region`` itself when nothing is dropped."""
    region = np.asarray(region, bool)
    kept = _small_pieces_removed(region, int(np.ceil(min_ml * 1000 / np.prod(_checks.voxel_size(voxel_size)))))
    dropped = int(region.sum() - kept.sum())
    if not dropped:
        return region
    log.info("local field: %d voxels in pieces under %g mL cut off from the rest of the region left out",
             dropped, min_ml)
    return kept


METHODS = {
    "bet": Method("bet", bet_brain_mask,
                  "deformable brain surface (BET) on the echo-combined magnitude, receive-coil shading divided out"),
    "threshold": Method("threshold", magnitude_mask, "Otsu threshold of the echo-combined magnitude, erosion, "
                        "largest component, dilation, hole filling"),
}
