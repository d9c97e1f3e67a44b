"""Which faces of the field of view cut a region: one criterion for the chain's choice of
inversion (:func:`qsmflow.masking.faces_cutting`) and BET's slab handling; and that handling:
where BET's surface leaves the field of view, the slab's fall-off toward its faces divided out
and the faces repeated (see :func:`qsmflow.masking.bet.bet_mask`)."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

# A region whose section on a face of the field of view is at least this share of its largest
# section along that axis is cut by it (a slab): the 64 / 80 mm axial slabs of the benchmark
# head 0.55-0.89; the BET masks of the whole benchmark heads touch no face, the Philips head's
# 0.016 (its top slice).
FOV_CUT_SECTION = 0.25


def cut_faces(region: np.ndarray) -> list[tuple[bool, bool]]:
    """Per axis, whether the first and the last face cut ``region`` (see ``FOV_CUT_SECTION``)."""
    region = np.asarray(region, bool)
    out = []
    for axis in range(region.ndim):
        section = region.sum(axis=tuple(a for a in range(region.ndim) if a != axis))
        out.append(tuple(bool(section[i] >= FOV_CUT_SECTION * section.max() > 0) for i in (0, -1)))
    return out


def narrow_exits(region: np.ndarray) -> list[tuple[bool, bool]]:
    """Per axis, whether ``region`` leaves the field of view through the first and the last
    face by a narrow section: it touches the face, but with less than ``FOV_CUT_SECTION`` of
    its largest section along that axis (the brainstem through the bottom face of a tilted
    slab, the vertex through the top one), where :func:`cut_faces` sees a slab."""
    region = np.asarray(region, bool)
    out = []
    for axis in range(region.ndim):
        section = region.sum(axis=tuple(a for a in range(region.ndim) if a != axis))
        out.append(tuple(bool(0 < section[i] < FOV_CUT_SECTION * section.max()) for i in (0, -1)))
    return out


# A face "faces" a direction when its outward normal lies within this angle of it.
FACING_DEG = 60.0


def facing(axis: int, side: int, toward) -> bool:
    """Whether the face (``axis``, ``side`` 0 first / 1 last) of the field of view faces the
    direction ``toward`` (voxel axes; None: every face does), within ``FACING_DEG``."""
    if toward is None:
        return True
    t = np.asarray(toward, float)
    return bool((1 if side else -1) * t[axis] / np.linalg.norm(t) >= np.cos(np.radians(FACING_DEG)))


def distance_to_narrow_exits(region: np.ndarray, voxel_size, toward=None) -> np.ndarray | None:
    """Distance (mm) of each voxel's centre from the nearest face of the field of view that
    ``region`` leaves through a narrow section (:func:`narrow_exits`, the face's own voxels
    at 0) and that faces ``toward`` (:func:`facing`); None when there is no such face."""
    region = np.asarray(region, bool)
    dist = None
    for axis, sides in enumerate(narrow_exits(region)):
        n = region.shape[axis]
        for side, exits in zip((0, 1), sides):
            if not exits or not facing(axis, side, toward):
                continue
            idx = np.arange(n) if side == 0 else (n - 1) - np.arange(n)
            d = (idx * float(voxel_size[axis])).reshape([-1 if a == axis else 1 for a in range(region.ndim)])
            dist = d if dist is None else np.minimum(dist, d)
    return None if dist is None else np.broadcast_to(dist, region.shape)


# A field of view that cuts the brain (a slab): where more than this share of the first
# surface's vertices lie beyond a face, the image is extended there by repeating the face
# for this many mm and the surface found again (see bet_mask).
FOV_CUT_VERTEX_SHARE = 0.01
FOV_CUT_PAD_MM = 32.0
# A slab-selective excitation's flip angle, and with it the signal, falls toward the slab's
# faces (to about half at the face without slice oversampling). Within this many mm of a face
# that cuts the head the slices' shading is measured and divided out before the face is
# repeated (see face_rolloff; the benchmark's profile reaches 0.99 at 8 mm).
FOV_CUT_ROLLOFF_MM = 12.0


def bright_faces(img: np.ndarray) -> list[tuple[bool, bool]]:
    """Per axis, whether the first and last face of the field of view cut the head: the
    section of its bright voxels (above 0.2 x the 98th percentile) by the package's criterion
    (``masking.FOV_CUT_SECTION``). A whole head's faces hold air or the neck's section
    (0.44-0.46 of the largest on the benchmark heads, 0.87 on the Philips head), so this
    alone does not tell a slab: BET asks it only once its surface has left the field of view."""
    return cut_faces(img > 0.2 * float(np.percentile(img, 98)))


def face_rolloff(img: np.ndarray, vs, faces) -> np.ndarray:
    """``img`` with the signal fall-off toward each of ``faces`` (per axis, first and last:
    :func:`bright_faces`) divided out.

    Going outward from ``FOV_CUT_ROLLOFF_MM`` inside such a face, each slice's scale against
    the next inner one is the median ratio of their intensities over the voxels bright in
    both (anatomy changes little from one slice to the next; a flip-angle profile scales the
    whole slice). Their running product is the slice's shading, divided out where it is
    below 1 (a slice brighter than the inner ones is anatomy, left alone).
    """
    out = img
    hi = float(np.percentile(img, 98))
    for axis, sides in enumerate(faces):
        n = img.shape[axis]
        depth = min(int(np.ceil(FOV_CUT_ROLLOFF_MM / vs[axis])), n // 3)
        for side, cuts in enumerate(sides):
            if depth < 1 or not cuts:
                continue
            order = list(range(depth, -1, -1)) if side == 0 else list(range(n - 1 - depth, n))
            scale, shading = 1.0, {}
            for inner, outer in zip(order[:-1], order[1:]):
                a, b = np.take(img, inner, axis=axis), np.take(img, outer, axis=axis)
                both = (a > 0.2 * hi) & (b > 0.2 * hi)
                if both.sum() < 100:
                    break
                scale *= float(np.median(b[both] / a[both]))
                shading[outer] = min(scale, 1.0)
            if shading and min(shading.values()) < 1.0:
                out = out.copy() if out is img else out
                for k, sc in shading.items():
                    idx = [slice(None)] * 3
                    idx[axis] = k
                    out[tuple(idx)] /= np.float32(sc)
                log.info("BET: the signal falls toward the cut face (axis %d, %s) to %.2f of the slices %d voxels "
                         "inside; divided out", axis, "start" if side == 0 else "end", min(shading.values()), depth)
    return out


def surface_beyond_faces(verts, shape, wvs, vs) -> list[tuple[int, int]]:
    """Voxels (of the original grid, ``vs``) to add before and after each axis: the faces of
    the field of view (the working grid's ``shape`` of ``wvs`` mm voxels) that more than
    ``FOV_CUT_VERTEX_SHARE`` of the surface's vertices ``verts`` (mm) lie beyond."""
    lo = (verts < -wvs / 2).mean(0)
    hi = (verts > (np.asarray(shape) - 0.5) * wvs).mean(0)
    n = np.ceil(FOV_CUT_PAD_MM / vs).astype(int)
    return [(int(n[a]) if lo[a] > FOV_CUT_VERTEX_SHARE else 0, int(n[a]) if hi[a] > FOV_CUT_VERTEX_SHARE else 0)
            for a in range(3)]


def extended(img, valid, decay, cut):
    """``img``, ``valid`` and ``decay`` (or None) extended past the field of view's faces by
    repeating them (``cut``: voxels before and after each axis)."""
    return (np.pad(img, cut, mode="edge"), np.pad(valid, cut, mode="edge"),
            None if decay is None else np.pad(decay, cut, mode="edge"))
