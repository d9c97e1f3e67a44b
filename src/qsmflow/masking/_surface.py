"""BET's deformable surface (Smith 2002): a tessellated sphere moved by bet2's three forces
(tangential spacing, curvature-switched smoothing, the local intensity threshold), rerun with
more smoothing while it crosses itself. :mod:`qsmflow.masking.bet` runs it on GRE images."""

from __future__ import annotations

import functools
import logging

import numpy as np
from scipy.spatial import cKDTree

from . import mesh as _mesh

log = logging.getLogger(__name__)

# Constants of the published method as FSL's bet2 implements them (Smith 2002; bet2.cpp):
_ITERATIONS = 1000
_SUBDIVISIONS = 4  # 2562 vertices
_R_MIN_MM, _R_MAX_MM = 3.33, 10.0  # radii of curvature between which smoothing switches on
_STEP = 0.05  # u3 = _STEP · f3 · l · n (the intensity force, a fraction of the vertex spacing)
_D_MIN_MM, _D_MAX_MM = 7.0, 3.0  # inward search depths for I_min and I_max
_BT_EXPONENT = 0.275  # bet2 uses b_t = f ** 0.275, so f = 0.5 means b_t = 0.83
_INTERSECTION_SCORE = 4000.0  # bet2's self-intersection threshold
_MAX_PASSES = 10
# Iterations of a surface found again on a similar image (the second bias pass, and the
# second surface) that starts from the last surface instead of the sphere: each moved the
# surface by up to 8-10 mm (median 1 mm) on the 2 mm benchmark head, and at about 0.05 x
# the vertex spacing per iteration (~0.15 mm) 300 iterations reach that; from the sphere
# each took 1000. The first bias pass moves it by up to 28 mm (median 4.5 mm) from a first
# surface that may fold (it is not rerun), so it starts from the sphere. On 12 heads of
# the benchmark matrix the masks kept as much of the brain (within 0.1 % of it) and less
# extracranial tissue on 9 (at most 1.1 mL more on the others; benchmarks/README.md,
# "BET's warm starts").
WARM_ITERATIONS = 300
def _robust_range(img: np.ndarray) -> tuple[float, float]:
    """2nd and 98th percentiles of the whole volume (background included), as bet2."""
    lo, hi = np.percentile(img, [2.0, 98.0])
    if hi <= lo:
        hi = float(img.max())
    return float(lo), float(hi)


def _start(img, vs):
    """Brain/background threshold t, robust range, centre of gravity (mm), radius (mm), median tm."""
    t2, t98 = _robust_range(img)
    t = t2 + 0.1 * (t98 - t2)
    above = img > t
    if not above.any():
        raise ValueError("the magnitude has no voxel above the background threshold: cannot find the head")
    idx = np.nonzero(above)
    w = np.minimum(img[idx] - t2, t98 - t2)
    pts = np.stack(idx, 1) * vs
    cog = (pts * w[:, None]).sum(0) / w.sum()
    radius = (3 * above.sum() * np.prod(vs) / (4 * np.pi)) ** (1 / 3)
    grid = np.ogrid[tuple(slice(0, n) for n in img.shape)]
    d2 = sum(((g * v) - c) ** 2 for g, v, c in zip(grid, vs, cog))
    inside = (d2 < radius**2) & (img > t2) & (img < t98)
    tm = float(np.median(img[inside])) if inside.any() else t98
    return dict(t2=t2, t=t, tm=tm, cog=cog, radius=radius)


def _self_intersection(verts, verts0, topo, l_now, l0) -> float:
    """bet2's score: non-neighbouring vertex pairs closer than the mean spacing, weighted by
    how much closer they came than on the starting sphere."""
    pairs = cKDTree(verts).query_pairs(l_now, output_type="ndarray")
    if pairs.size == 0:
        return 0.0
    adjacent = (topo.nbr[pairs[:, 0]] == pairs[:, 1][:, None]).any(1)
    pairs = pairs[~adjacent]
    d = np.linalg.norm(verts[pairs[:, 0]] - verts[pairs[:, 1]], axis=1) / l_now
    d0 = np.linalg.norm(verts0[pairs[:, 0]] - verts0[pairs[:, 1]], axis=1) / l0
    return float(2 * np.sum((d - d0) ** 2))  # ordered pairs, as bet2 counts them


def _evolve(img, vs, verts, topo, prm, smooth_boost, iterations=None):
    """bet2's iterations of the three forces; returns the vertices (mm) and their spacing.

    The loop works on coordinates as rows, (3, V), and in place: it runs 1000 times over
    2562 vertices, so numpy's per-call cost and fresh temporaries would dominate.
    """
    iterations = _ITERATIONS if iterations is None else iterations
    t2, t, tm = prm["t2"], prm["t"], prm["tm"]
    e = (1 / _R_MIN_MM + 1 / _R_MAX_MM) / 2
    f = 6 / (1 / _R_MIN_MM - 1 / _R_MAX_MM)
    step = min(float(vs.min()), 1.0)
    depths = np.unique(np.round(np.concatenate([[1.0, _D_MIN_MM], np.arange(2 * step, _D_MIN_MM, step)]), 6))
    depths = depths[depths >= 1.0]
    n_max = int(np.sum(depths < _D_MAX_MM))  # I_max looks over the first n_max depths only
    deepest = int(np.searchsorted(depths, _D_MIN_MM))
    # The image in a frame wide enough for every sample; off the field of view it reads
    # +inf for I_min and -inf for I_max. Vertices are held inside the frame's inner part, so
    # that a vertex far outside the image still samples only the frame.
    reach = int(np.ceil(_D_MIN_MM / vs.min())) + 1
    pad = 2 * reach + 1
    img32 = img.astype(np.float32)
    low = np.pad(img32, pad, constant_values=np.inf).ravel()
    high = np.pad(img32, pad, constant_values=-np.inf).ravel()
    shape = np.array(img.shape) + 2 * pad
    strides = (int(shape[1] * shape[2]), int(shape[2]), 1)
    limits = [(float(reach), float(n - 1 - reach)) for n in shape]
    inv_vs = (1 / vs)[:, None]
    lower, upper = (np.array([lim[j] for lim in limits])[:, None] for j in (0, 1))
    strides = np.array(strides)[:, None, None]
    depth_col = depths[None, :, None]  # samples are (axis, depth, vertex): reductions run over depth
    xyz = np.array(verts, float).T.copy()
    normal, s = np.empty_like(xyz), np.empty_like(xyz)
    pos, proj = np.empty_like(xyz), np.empty_like(xyz)
    sample = np.empty((3, len(depths), xyz.shape[1]))
    part, idx = np.empty(sample.shape, np.int64), np.empty(sample.shape[1:], np.int64)
    spacing = topo.spacing(verts)
    for it in range(iterations):
        if it == 50 or (it and it % 100 == 0):
            spacing = topo.spacing(xyz.T)
        topo.normals_t(xyz, out=normal, mean_out=s)
        s -= xyz
        sn_len = np.einsum("ij,ij->j", s, normal)
        sn = sn_len * normal
        # f2 = (1 + tanh(f (2 |s_n| / l^2 - e))) / 2, as a logistic (exp is twice tanh's speed)
        f2 = np.abs(sn_len)
        f2 *= -4 * f / spacing**2
        f2 += 2 * f * e
        np.exp(f2, out=f2)
        f2 += 1
        np.reciprocal(f2, out=f2)
        if smooth_boost > 1:
            boost = smooth_boost if it <= 750 else 4 * (1 - it / iterations) * (smooth_boost - 1) + 1
            f2 = np.where(sn_len > 0, np.minimum(f2 * boost, 1.0), f2)
        # intensities along the inward normal (nearest voxel, as bet2): flat indices of the
        # framed image, all axes and depths at once
        np.multiply(xyz, inv_vs, out=pos)
        pos += pad + 0.5
        np.maximum(pos, lower, out=pos)
        np.minimum(pos, upper, out=pos)
        np.multiply(normal, inv_vs, out=proj)
        np.multiply(depth_col, proj[:, None, :], out=sample)
        np.subtract(pos[:, None, :], sample, out=sample)
        np.copyto(part, sample, casting="unsafe")  # truncation: all positive
        part *= strides
        np.add(part[0], part[1], out=idx)
        idx += part[2]
        lows = low[idx]
        i_min = np.maximum(t2, np.minimum(tm, lows.min(0)))
        i_max = np.minimum(tm, np.maximum(t, high[idx[:n_max]].max(0)))
        b_t = prm["bt"] if not prm["g"] else np.clip(
            prm["bt"] + prm["g"] * (xyz[2] - prm["cog"][2]) / prm["radius"], 0, 1)
        rng = i_max - t2
        f3 = 2 * (i_min - t2 - rng * b_t) / np.where(rng > 0, rng, 1.0)
        f3[np.isinf(lows[0]) | np.isinf(lows[deepest])] = 0.0  # no intensity force off the field of view
        # x += (s - s_n) / 2 + f2 s_n + (_STEP l f3) n
        s -= sn
        s *= 0.5
        xyz += s
        sn *= f2
        xyz += sn
        f3 *= _STEP * spacing
        normal *= f3
        xyz += normal
    return xyz.T.copy(), spacing


@functools.lru_cache(maxsize=1)
def _topology():
    """The unit icosphere's vertices and :class:`~qsmflow.masking.mesh.Topology`, built once
    per process (45 ms each time)."""
    unit, faces = _mesh.icosphere(_SUBDIVISIONS)
    unit.flags.writeable = False
    return unit, _mesh.Topology(faces, len(unit))


def _surface(img, vs, f, g, *, passes=_MAX_PASSES, start=None):
    """BET's surface on ``img``: vertices (mm) and its topology; reruns with more smoothing
    while the surface crosses itself, up to ``passes`` runs in all.

    ``start``: a surface (vertices, topology) found on a similar image to move from, for
    ``WARM_ITERATIONS`` iterations, instead of the sphere for 1000. If it crosses itself
    the surface is found from the sphere as without ``start`` (and ``passes`` more runs).
    """
    prm = _start(img, vs)
    prm.update(bt=f**_BT_EXPONENT, g=g)
    unit, topo = _topology()
    sphere = prm["cog"] + unit * (prm["radius"] / 2)
    l0 = topo.spacing(sphere)
    if start is not None:
        verts, spacing = _evolve(img, vs, start[0], topo, prm, 1.0, WARM_ITERATIONS)
        score = _self_intersection(verts, sphere, topo, spacing, l0)
        if score <= _INTERSECTION_SCORE:
            return verts, topo
        log.info("BET: the surface moved on from the last one crosses itself (score %.0f); found again from "
                 "the sphere", score)
    for attempt in range(passes):
        verts, spacing = _evolve(img, vs, sphere, topo, prm, 1.0 if attempt == 0 else 10.0 ** (attempt + 1))
        score = _self_intersection(verts, sphere, topo, spacing, l0)
        if score <= _INTERSECTION_SCORE:
            break
        if attempt + 1 < passes:
            log.info("BET: the surface crosses itself (score %.0f); rerun with more smoothing", score)
    return verts, topo
