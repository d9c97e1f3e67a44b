"""Brain extraction by a deformable surface (BET, Smith 2002) for whole-head GRE magnitude."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from . import mesh as _mesh
from ._surface import _MAX_PASSES, _surface
from ._components import filled_holes, largest_component
from ._faces import FOV_CUT_PAD_MM
from ._faces import bright_faces as _bright_faces
from ._faces import extended as _extended
from ._faces import face_rolloff as _face_rolloff
from ._faces import surface_beyond_faces as _faces_cut
from .._shared import checks as _checks
from .._shared.echoes import rss

log = logging.getLogger(__name__)

__all__ = ["bet_mask"]

# The surface moves on block means of voxels of at least this size / 1.45 (mm).
_WORKING_VOXEL_MM = 2.0
# BET's -f for GRE magnitude: chosen on the benchmark heads and the real Philips head (see benchmarks/README.md).
BET_FRACTIONAL_THRESHOLD = 0.6
# The second surface (multi-echo input) moves on the working image smoothed by this SD (mm),
# and adds only voxels whose signal decays (first to last echo) no faster than this many
# times the first mask's median: white and grey matter 0.6-1.3x, veins 1.5-4.3x, the skull
# base's fatty marrow 3.2-7.3x (10th-90th percentiles on the 1 mm benchmark head).
SECOND_SURFACE_SMOOTHING_MM = 1.0
FAST_DECAY_FACTOR = 3.0
# Surfaces found again after dividing out the shading fitted inside the last one. A quadratic
# does not follow a 32-channel array's profile, and each pass fits it over more of the brain.
# On the benchmark matrix (22 rows, stop 46) 2 passes against 1: every row's brain covered by
# the mask the same or up to 0.75 % more (one row 0.64 % less: the uniform coil, which has no
# shading to fit) and 0.1-0.7 % less outside the brain; χ NRMSE from 0.7 points better to 0.4
# worse (7 T), the worst row (two echoes) 69.6 -> 69.2 %, the slabs 0.3-0.7 points better, all
# but the 35° slab; 0.4-0.8 s more at 1 mm. Stop 53, on heads of other anatomies (the demo's
# 1.5 mm grid, T1-weighted, seeds 0-7; benchmarks/mask.py's "anatomy N"): with 2 passes seed 0's
# surfaces closed along the tentorium on both images and the mask left out 31 % of the cerebellum
# (3.35 % of the brain, in one 36 mL piece), with 3 passes 0.2 % (0.21 %); the other seven the
# same within 0.02 % of the brain, with 0.4-0.9 mL less tissue outside it.
BET_BIAS_PASSES = 3
# Brain cut off by a sheet of CSF (stop 59). At echoes too early for CSF to outshine tissue in a
# T1-weighted scan (CSF 0.6-0.7x grey matter at 2-8 ms, TR 15 ms, 15°), BET's threshold puts a
# wide CSF sheet outside the brain (the phantom's CSF over the cerebellum and its tentorium:
# 3-17 mm, median 5 mm, as an atrophic brain's) and both surfaces close along it, leaving out
# 53-98 % of the cerebellum on 1-1.5 mm heads with two or three echoes up to 8 ms. A surface
# found from the sphere at ``CUT_OFF_F`` on the last echo (its threshold between CSF and bone)
# crosses such sheets, and leaks elsewhere (on the real Philips head into both globes, the
# temporal muscles and the neck). What it adds is kept only as whole pieces that look like
# brain behind CSF: thicker than ``CUT_OFF_OPENING_MM`` (an opening: a rim of scalp or marrow
# is not), each voxel decaying no faster than the second surface allows, and each piece of at
# least ``CUT_OFF_MIN_ML`` lying against the mask over at least ``CUT_OFF_MIN_CONTACT`` of its
# outline, wrapped elsewhere in tissue darker than ``CUT_OFF_MAX_OUTSIDE`` x the mask's median at
# the first echo (CSF and bone; globes, muscle and neck lie in fat and soft tissue) and decaying
# as brain (median at most ``CUT_OFF_MAX_DECAY`` x the mask's). Pieces measured (contact /
# wrapping / decay): cerebella 0.24-0.29 / 0.38-0.55 / 0.82-0.89; the real Philips head's leaks
# 0.00-0.14 / 0.16-0.88 / 0.76-2.09; the Zubal head's globes 0.16-0.19 / 0.90-0.95. f 0.3 crossed
# the sheet on the matrix's heads but not on a 2-2.5 mm head simulated without oversampling (its
# CSF purer and darker); 0.2 on all. A coarser surface (642 vertices, a quarter of the time)
# found the same pieces on the matrix's heads, wrapped in up to 0.59, but not the 9.8 mL of the
# proton-density uniform-coil head's cerebellum that this one adds (7.9 -> 3.2 % of it left out).
CUT_OFF_F = 0.2
CUT_OFF_OPENING_MM = 3.0
CUT_OFF_MIN_ML = 5.0
CUT_OFF_MIN_CONTACT = 0.2
CUT_OFF_MAX_OUTSIDE = 0.65
CUT_OFF_MAX_DECAY = 1.5


def _working_image(img, vs):
    """Block means to voxels of at least ~1.4 mm (the surface is smooth on that scale, and
    tissue texture averages out); returns the image, its voxel size and the offset (mm) of
    its voxel centres on the original grid."""
    k = np.maximum(1, np.floor(_WORKING_VOXEL_MM / vs + 1e-6)).astype(int)
    if np.all(k == 1):
        return img, vs, np.zeros(3)
    n = np.array(img.shape) // k
    small = img[: n[0] * k[0], : n[1] * k[1], : n[2] * k[2]].reshape(n[0], k[0], n[1], k[1], n[2], k[2])
    return small.mean(axis=(1, 3, 5), dtype=np.float32), vs * k, (k - 1) / 2 * vs


def _brain_bias(img, vs, brain, *, order=2):
    """Receive-coil shading over the brain: a polynomial of ``order`` in mm fitted to the log
    intensity of the brain's tissue voxels (its darkest fifth left out: veins, partial
    volume), clamped outside the brain to the range it takes inside; median 1 in the brain.
    ``>=``: a brain of one intensity (a phantom) keeps all its voxels, and no shading."""
    keep = brain & (img >= np.percentile(img[brain], 20))
    idx = np.argwhere(keep)
    centre = idx.mean(0) * vs
    scale = float(np.max(np.abs(idx * vs - centre)))
    powers = [(i, j, k) for i in range(order + 1) for j in range(order + 1) for k in range(order + 1)
              if i + j + k <= order]
    u = (idx * vs - centre) / scale
    design = np.stack([u[:, 0] ** i * u[:, 1] ** j * u[:, 2] ** k for i, j, k in powers], 1)
    coef, *_ = np.linalg.lstsq(design, np.log(img[keep]), rcond=None)
    axes = [(np.arange(n) * v - c) / scale for n, v, c in zip(img.shape, vs, centre)]
    log_bias = np.zeros(img.shape, np.float32)
    for c, (i, j, k) in zip(coef, powers):
        log_bias += np.float32(c) * (axes[0] ** i)[:, None, None].astype(np.float32) \
            * (axes[1] ** j)[None, :, None].astype(np.float32) * (axes[2] ** k)[None, None, :].astype(np.float32)
    lo, hi = log_bias[brain].min(), log_bias[brain].max()
    return np.exp(np.clip(log_bias, lo, hi) - np.median(log_bias[brain])).astype(np.float32)


def _decay(mag):
    """Signal decay from the first to the last echo, log(S_1 / S_last), per voxel."""
    tiny = np.float32(1e-30)
    return np.log(np.maximum(mag[..., 0], tiny)) - np.log(np.maximum(mag[..., -1], tiny))


def _cleaned(mask, valid):
    """``mask``'s largest piece (folds of a surface leave small islands), holes filled but
    not with invalid voxels. Worked on the box around the mask: the same voxels (a background
    region that reaches the field of view's border leaves the box through its faces)."""
    mask = mask & valid
    hit = [np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    if any(h.size == 0 for h in hit):
        return mask
    box = tuple(slice(h[0], h[-1] + 1) for h in hit)
    out = np.zeros_like(mask)
    out[box] = filled_holes(largest_component(mask[box])) & valid[box]
    return out


def _inside(verts, faces, valid, vs):
    """The mask a surface encloses on the voxel grid, cleaned."""
    return _cleaned(_mesh.fill(verts, faces, valid.shape, vs), valid)


def bet_mask(
    magnitude: np.ndarray,
    voxel_size,
    *,
    valid: np.ndarray | None = None,
    fractional_threshold: float = BET_FRACTIONAL_THRESHOLD,
    vertical_gradient: float = 0.0,
    bias_passes: int = BET_BIAS_PASSES,
    second_surface: bool = True,
    surface_echoes: str = "both",
    cut_off_pieces: bool = True,
    return_surface: bool = False,
):
    """Brain mask of a whole-head image by BET's deformable surface (Smith 2002).

    A tessellated sphere (2562 vertices) starts at half the head's radius around its
    centre of gravity and moves, 1000 times, under three forces: a tangential one that
    keeps the vertices evenly spaced, a smoothing one that switches on where the local
    radius of curvature falls below ~10 mm, and an intensity one that pushes the surface
    outwards while the voxels just inside it are brighter than a local threshold
    between the darkest voxel within 7 mm and the brightest within 3 mm (a fraction
    ``b_t = f^0.275`` of that range, as FSL's bet2). A surface that crosses itself is
    rerun with stronger smoothing (up to 10 passes; not the first surface of a bias-corrected
    run, which only outlines where the shading is fitted). The inside of the final surface is
    the mask.

    For gradient-echo magnitude, two things are added:

    - the surface moves on block means of ~1.4-2 mm voxels: texture inside the brain
      (cerebellar folia, sulci, veins) averages out, the skull stays dark;
    - multi-channel receive coils make the brain's centre darker than its rim, which stops
      the surface early. After a first surface, the shading is fitted inside it (a
      2nd-order polynomial of the log intensity), divided out, and the surface found again
      (``bias_passes`` times; from the sphere the first time, then moving on from the last
      surface for ``WARM_ITERATIONS``, 300, as the second surface below does);
    - white matter is darker than cortex and CSF in GRE. Where the shading fit leaves the
      rim too dark (a quadratic does not follow a 32-channel array's profile: 10 % RMS left
      over on the benchmark heads), white matter falls below 0.87 of the bright cortex
      within 3 mm and the surface stops in it, cutting out part of a lobe (up to 18.7 mL,
      2.2 % of the brain, on the demo head). With two or more echoes a second surface moves
      on the corrected image smoothed by 1 mm (``SECOND_SURFACE_SMOOTHING_MM``), which
      passes those textures; it also moves about 1 mm further into the skull base's fatty
      marrow, whose χ sources inside the mask cost 8 points of χ NRMSE on the 1 mm
      benchmark head. So what it adds is kept only where the signal decays from the first
      to the last echo no faster than 3× the first mask's median (``FAST_DECAY_FACTOR``:
      brain 0.6-1.3×, veins 1.5-4.3×, marrow 3.2-7.3×, 10th-90th percentiles). A single
      echo, or echoes that do not decay, get the first surface alone.

    - spoiled GRE weights each tissue by its T1: at the first echoes CSF (long T1) is dark
      and the skull base's marrow and the scalp's fat (short T1) are bright, and on the
      benchmark's T1-weighted heads (TR 35 ms, 15°) the surface on all echoes closed along
      the tentorium and left out 62-78 % of the cerebellum on 12 of 25 heads. At the last
      echo marrow has decayed and CSF is bright: a surface there keeps the cerebellum on
      every T1-weighted head, but left out up to 7.7 % of it on heads without T1 weighting,
      where the surface on all echoes loses none. So with two or more echoes
      (``surface_echoes="both"``) a surface is found on both images and the mask is their
      union: on the matrix's T1-weighted heads 0.01-0.87 % of the brain left out (all echoes
      alone: up to 8.9 %), 5-27 mL of tissue outside the brain kept (4-20 mL)
      (``benchmarks/mask.py``). The receive coils shade every echo alike, so the last echo's
      image is divided by the shading the passes on all echoes fitted and its surface is
      found once from the sphere (then the second surface), not through passes of its own:
      on 37 T1-weighted heads the brain left out changed by -0.14 to +0.10 % of the brain,
      the cerebellum left out fell on 14 and rose on none, the tissue outside the brain
      changed by -1.0 to +0.2 mL, and the mask took 8-41 % less time (7 proton-density
      heads: -0.02 to +0.01 %, -1.3 to +3.6 mL; the log's "BET: one shading for every
      echo"). The echoes must be in the order of their echo times (the command line
      checks it).

    - where CSF is dark at every echo (T1-weighted echo trains ending before ~10 ms), a wide
      sheet of it can hold both surfaces away from a part of the brain behind it: on the
      phantom's heads with echoes at 2-8 ms, the cerebellum under the CSF over it (53-98 % of
      it left out). With two or more echoes (``cut_off_pieces``), a third surface is found on
      the last echo at a threshold below CSF (``CUT_OFF_F``, 0.2), and of what it adds only
      whole pieces that look like brain behind CSF are kept: at least 3 mm thick and 5 mL,
      lying against the mask over a fifth of their outline, otherwise wrapped in tissue as
      dark as CSF and bone at the first echo, and decaying as the brain does (see the
      ``CUT_OFF_*`` constants for the figures). On the benchmark matrix only the two rows with
      such echoes changed (1.5 mm, 2-8 ms: 97.4 -> 0.0 % of the cerebellum left out); the real
      Philips head's mask is the same to the voxel (the low surface's leaks into the globes,
      muscles and neck all fail the tests). It costs one more surface (about 1 s at 1 mm).

    The skull and the air of the sinuses are dark at every echo, so the surface stops at
    the skull's inner table: brain, cerebellum, brainstem, cortical CSF, the dural sinuses
    and every vein inside are kept whatever their signal; eyes, muscle and the neck stay
    out where bone or darker tissue separates them from the brain.

    Slabs that cut the brain: where the inward search leaves the field of view the
    intensity force stops. A slab thinner than the brain is tall (then the surface, which
    starts as a sphere and is kept smooth, cannot turn the sharp corner at the slab's faces
    and shrinks away from the brain's sides: on the benchmark head a 64 mm axial slab lost
    49 % of its brain, an 80 mm one 16 %). So where more than 1 % of the first surface's
    vertices lie beyond a face of the field of view (``FOV_CUT_VERTEX_SHARE``), the image
    is extended there by repeating that face for 32 mm (``FOV_CUT_PAD_MM``): the brain
    seems to go on as it was cut, the surface closes beyond the face, and the mask is cut
    back to the field of view (64 / 80 mm slabs: 98.5 / 97.0 % of the brain kept; 16 / 48 mm
    gave 98.0 / 95.3 % and 99.6 / 97.3 %, with the same Dice). A whole head, whose surface
    stays inside its skull, is not extended and its mask is the same to the voxel.
    A slab's signal falls toward its faces with the excitation's flip angle (to about half
    on the end slices without slice oversampling). That darker face could hold the first
    surface inside it, and a dark repeated face draws the surface in: on the benchmark's
    slabs the end slice's brain was 52-64 % covered. So before the faces are repeated, the
    fall-off is measured from slice to slice and divided out (:func:`_face_rolloff`), and
    every face that cuts the head (:func:`_bright_faces`) is extended, not only those the
    first surface left by: end slices 98.7-99.1 % covered, the mask's share outside the
    brain 8.5-10.2 -> 9.8-11.9 % (the repeated end slice closes notches of the brain's
    outline there, such as between the temporal lobes; ``benchmarks/slab_faces.py``).

    Parameters
    ----------
    magnitude : ndarray, (X, Y, Z) or (X, Y, Z, E)
        Magnitude image(s), echoes in the order of their echo times.
    voxel_size : sequence of 3 float
        Voxel size (mm); all distances are in mm.
    valid : ndarray of bool, optional
        Voxels that may be in the mask (finite input); default all.
    fractional_threshold : float
        BET's ``-f`` (0-1): smaller gives a larger brain outline.
    vertical_gradient : float
        BET's ``-g`` (-1…1): the threshold changes along the third voxel axis; positive
        values give a larger outline at the bottom (low third index) and a smaller one at
        the top, as FSL's bet.
    bias_passes : int
        Surfaces found again after dividing out the shading fitted inside the last one
        (``BET_BIAS_PASSES``, 3: see its comment for the figures), on the first image; the
        last echo's image (``surface_echoes="both"``) is divided by the shading they fitted.
    second_surface : bool
        With two or more echoes, add what a surface on the smoothed image encloses where the
        signal does not decay fast (see above); False: the first surface alone.
    surface_echoes : {"both", "all", "last"}
        The image(s) the surface moves on: the echoes' root-sum-of-squares and the last echo,
        the mask being the union ("both", the default); or one of them. One echo: its image.
    cut_off_pieces : bool
        With two or more echoes and ``surface_echoes="both"``, add the pieces of brain a sheet
        of dark CSF cut off (see above); False: the surfaces' union alone.
    return_surface : bool
        Also return the vertices (mm, original grid) and faces of the surface the mask is
        the inside of (on all echoes' image, after the bias passes; not the second surface,
        nor the last echo's, which only add to it).

    Returns
    -------
    ndarray of bool
        The mask (and ``(vertices, faces)`` with ``return_surface``).

    References
    ----------
    Smith SM. Fast robust automated brain extraction. Hum Brain Mapp 2002;17:143-155.
    doi:10.1002/hbm.10062
    """
    mag = np.asarray(magnitude, np.float32)
    if mag.ndim == 3:
        mag = mag[..., None]
    _checks.as_volume("magnitude", mag, ndim=4, finite=True)
    vs = _checks.voxel_size(voxel_size)
    f = _checks.positive("fractional_threshold", fractional_threshold)
    if not 0 < f < 1:
        raise ValueError(f"fractional_threshold must be between 0 and 1, got {f}")
    g = float(vertical_gradient)
    if not -1 <= g <= 1:
        raise ValueError(f"vertical_gradient must be between -1 and 1, got {g}")
    if isinstance(bias_passes, bool) or not isinstance(bias_passes, (int, np.integer)) or bias_passes < 0:
        raise ValueError(f"bias_passes must be a non-negative integer, got {bias_passes!r}")
    second_surface = _checks.flag("second_surface", second_surface)
    cut_off_pieces = _checks.flag("cut_off_pieces", cut_off_pieces)
    if surface_echoes not in ("both", "all", "last"):
        raise ValueError(f"surface_echoes must be 'both', 'all' or 'last', got {surface_echoes!r}")
    valid = np.ones(mag.shape[:3], bool) if valid is None else _checks.as_mask("valid", valid, mag.shape[:3])
    decay = _decay(mag) if mag.shape[-1] >= 2 and second_surface else None
    one_echo = mag.shape[-1] == 1  # its image is both
    mask, surface, shading = _surface_mask(
        np.array(mag[..., -1]) if surface_echoes == "last" and not one_echo else rss(mag), valid, vs, f, g,
        bias_passes, decay)
    if surface_echoes == "both" and not one_echo:
        more, _, low = _surface_mask(np.array(mag[..., -1]), valid, vs, f, g, bias_passes, decay, shading=shading,
                                     low_f=CUT_OFF_F if decay is not None and cut_off_pieces else None)
        log.info("BET on the last echo adds %d voxels (%.1f mL) to BET on all echoes", int((more & ~mask).sum()),
                 (more & ~mask).sum() * np.prod(vs) / 1000)
        mask = _cleaned(mask | more, valid)
        if low is not None:
            mask = _with_cut_off_pieces(mask, low, mag[..., 0], decay, vs, valid)
    log.info("BET brain mask: %d voxels (%.1f mL), f %.2f", int(mask.sum()), mask.sum() * np.prod(vs) / 1000, f)
    return (mask, surface) if return_surface else mask


def _surface_mask(img, valid, vs, f, g, bias_passes, decay, shading=None, low_f=None):
    """One image's BET mask, the surface (vertices in mm on the original grid, faces) whose
    inside it is, and the shading it divided out: the first surface (extended past faces of
    the field of view that cut the brain), the shading passes and, with ``decay``, the
    second surface (see bet_mask). Given the ``shading`` another echo's image of the same head
    returned, that shading is divided out instead (:func:`_shaded_surface_mask`)."""
    if shading is not None:
        return _shaded_surface_mask(img, valid, vs, f, g, decay, shading, low_f)
    work, wvs, offset = _working_image(np.where(valid, img, 0).astype(np.float32), vs)
    # a surface that only outlines where the shading is fitted needs no rerun when it
    # crosses itself: a fold moves a few voxels of the fit, not the smooth polynomial
    verts, topo = _surface(work, wvs, f, g, passes=1 if bias_passes else _MAX_PASSES)
    cut = _faces_cut(verts, work.shape, wvs, vs)  # all (0, 0) for a whole head, or with FOV_CUT_PAD_MM = 0
    if any(map(any, cut)):
        img = np.where(valid, img, 0).astype(np.float32)
        faces = _bright_faces(img)
        img = _face_rolloff(img, vs, faces)
        # every face that cuts the head is extended, not only those the surface left by: a
        # face darkened by the excitation, or cutting a smaller section of the brain, can
        # hold the first surface inside it
        pad = np.ceil(FOV_CUT_PAD_MM / vs).astype(int)
        cut = [(a or int(p) * lo, b or int(p) * hi) for (a, b), (lo, hi), p in zip(cut, faces, pad)]
        log.info("BET: the field of view cuts the brain; the image is extended by repeating its faces (voxels "
                 "before/after each axis: %s) and the surface found again", cut)
        img, valid, decay = _extended(img, valid, decay, cut)
        work, wvs, offset = _working_image(np.where(valid, img, 0).astype(np.float32), vs)
        verts, topo = _surface(work, wvs, f, g, passes=1 if bias_passes else _MAX_PASSES)
    del img
    total = np.ones(work.shape, np.float32)
    for k in range(bias_passes):  # each but the first starts from the last surface
        inside = _mesh.fill(verts, topo.faces, work.shape, wvs)
        if inside.sum() < 100:
            break
        bias = _brain_bias(work, wvs, inside)
        total *= bias
        work = work / bias
        verts, topo = _surface(work, wvs, f, g, start=(verts, topo) if k else None)
    mask, surface = _second_surface(work, wvs, offset, verts, topo, valid, vs, f, g, decay, cut)
    return mask, surface, dict(cut=cut, total=total if bias_passes else None)


def _shaded_surface_mask(img, valid, vs, f, g, decay, shading, low_f=None):
    """BET's mask of another echo's image of the same head: the coil shading the first
    image's passes fitted (``shading``, from :func:`_surface_mask`) divided out, the
    field of view extended as for that image, one surface from the sphere and the second
    surface. With ``low_f``, the third item returned is the inside of another surface found
    from the sphere on the same image at the threshold ``low_f`` (see CUT_OFF_F), else None."""
    cut = shading["cut"]
    img = np.where(valid, img, 0).astype(np.float32)
    if any(map(any, cut)):
        img, valid, decay = _extended(_face_rolloff(img, vs, _bright_faces(img)), valid, decay, cut)
    work, wvs, offset = _working_image(img, vs)  # zero where not valid, the extension too
    del img
    if shading["total"] is not None:
        work = work / shading["total"]
    verts, topo = _surface(work, wvs, f, g)
    low = None
    if low_f is not None:
        v_low, t_low = _surface(work, wvs, low_f, g)
        inner = tuple(slice(a, n - b) for (a, b), n in zip(cut, valid.shape))
        low = _inside(v_low + offset, t_low.faces, valid, vs)[inner]
    mask, surface = _second_surface(work, wvs, offset, verts, topo, valid, vs, f, g, decay, cut)
    return mask, surface, low


def _with_cut_off_pieces(mask, low, first_all, decay, vs, valid):
    """``mask`` with the pieces of ``low`` (a surface's inside at the threshold CUT_OFF_F)
    that look like brain cut off from it by CSF (see CUT_OFF_F): thick, decaying as brain,
    against the mask and otherwise wrapped in CSF and bone. ``first_all``: the first echo."""
    from . import _box, dilate, erode  # the package's morphology (it imports this module)

    decay_mid = float(np.median(decay[mask]))
    cand = low & ~mask
    if not cand.any() or decay_mid <= 0:  # echoes that do not decay: no telling brain from marrow
        return mask
    # all of it on the candidates' box grown by the reach of the opening and of the test
    # of what lies near the mask (the pieces' outlines lie within a voxel of them)
    reach = np.ceil(max(CUT_OFF_OPENING_MM, 1.5 * float(np.max(vs))) / vs).astype(int) + 2
    box = _box(cand, reach)
    inside, first, decay = mask[box], first_all[box], decay[box]
    cand = dilate(erode(cand[box], CUT_OFF_OPENING_MM, vs), CUT_OFF_OPENING_MM, vs)
    cand &= decay <= FAST_DECAY_FACTOR * decay_mid
    lab, _ = ndimage.label(cand)
    ml = float(np.prod(vs)) / 1000
    bright = float(np.median(first_all[mask]))
    near = dilate(inside, 1.5 * float(np.max(vs)), vs)
    keep = []
    for k, sub in enumerate(ndimage.find_objects(lab), start=1):
        sub = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in sub)
        piece = lab[sub] == k
        if piece.sum() * ml < CUT_OFF_MIN_ML:
            continue
        shell = ndimage.binary_dilation(piece) & ~piece
        contact = float((shell & inside[sub]).sum() / shell.sum())
        outer = shell & ~near[sub]
        outside = float(np.median(first[sub][outer])) / bright if outer.any() else 0.0
        slow = float(np.median(decay[sub][piece])) / decay_mid
        ok = contact >= CUT_OFF_MIN_CONTACT and outside <= CUT_OFF_MAX_OUTSIDE and slow <= CUT_OFF_MAX_DECAY
        log.info("BET: a piece of %.1f mL beyond a CSF sheet: against the mask over %.2f of its outline, wrapped in "
                 "%.2f x the mask's first-echo signal, decay %.2f x the mask's: %s", piece.sum() * ml, contact,
                 outside, slow, "added" if ok else "left out")
        if ok:
            keep.append(k)
    if not keep:
        return mask
    added = np.zeros_like(mask)
    added[box] = np.isin(lab, keep)
    return _cleaned(mask | added, valid)


def _second_surface(work, wvs, offset, verts, topo, valid, vs, f, g, decay, cut):
    """The mask inside the surface ``verts`` (working grid, mm) with, given ``decay``, what the
    second surface adds (see bet_mask), cut back to the field of view (``cut``, as
    :func:`_extended` took it); and the surface (vertices in mm on the original grid, faces)."""
    verts = verts + offset
    mask = _inside(verts, topo.faces, valid, vs)
    if decay is not None:
        limit = FAST_DECAY_FACTOR * float(np.median(decay[mask])) if mask.any() else 0.0
        if limit > 0:  # echoes that do not decay tell marrow from brain no better than one echo
            smooth = ndimage.gaussian_filter(work, SECOND_SURFACE_SMOOTHING_MM / wvs, truncate=3.0)
            v2, t2 = _surface(smooth, wvs, f, g, start=(verts - offset, topo))
            wider = _inside(v2 + offset, t2.faces, valid, vs)
            added = wider & ~mask & (decay <= limit)
            log.info("BET: the second surface adds %d voxels (%.1f mL)", int(added.sum()),
                     added.sum() * np.prod(vs) / 1000)
            mask = _cleaned(mask | added, valid)
    inner = tuple(slice(a, n - b) for (a, b), n in zip(cut, mask.shape))
    return mask[inner], (verts - np.array([a for a, _ in cut]) * vs, topo.faces)
