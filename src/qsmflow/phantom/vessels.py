"""Blood vessels of the numerical head phantom (private helper of :mod:`qsmflow.phantom.geometry`).

Dural venous sinuses, deep veins, cortical surface veins and thin tortuous medullary veins
are drawn as tapered polylines in template coordinates (placed against the head's SDFs),
densified and mapped once to physical space; :func:`paint_vessels` then rasterises them as
the fraction of each voxel they cover, normalised so that every vessel keeps its true
cross-section (and hence its magnetic moment) on any grid.
"""

from __future__ import annotations

import logging

import numpy as np

from .labels import SINUS, VEIN
from .procedural import Ellipsoid, catmull_rom, segment_distance

logger = logging.getLogger(__name__)

F32 = np.float32


def _snap(pts, sdf, level, iters=6):
    """Move points (N, 3) along the SDF gradient onto the level set ``sdf == level``."""
    p = np.asarray(pts, float).copy()
    level = np.broadcast_to(np.asarray(level, float), (len(p),))
    h = 0.25

    def f(x):
        return sdf(tuple(x[:, i].astype(F32) for i in range(3))).astype(float)

    for _ in range(iters):
        f0 = f(p)
        g = np.stack([(f(p + h * np.eye(3)[i]) - f0) / h for i in range(3)], 1)
        p -= ((f0 - level) / np.maximum(np.sum(g * g, 1), 1e-6))[:, None] * g
    return p


def build_vessels(model, rng):
    """Venous sinuses and veins of the head ``model``: polylines (template space) mapped to physical space.

    Returns a list of ``(points (N, 3) in physical mm, radii (N,) mm, label)`` per vessel.
    The random draws are made in a fixed order (sinuses, surface veins, medullary veins):
    the same seed gives the same veins.
    """
    curves = []  # (control points, radii, type, step)

    def add(points, radii, vtype, step=2.0):
        p = np.asarray(points, float)
        curves.append((p, np.broadcast_to(np.asarray(radii, float), (len(p),)).copy(), vtype, step))

    _sinuses(model, rng, add)
    _deep_veins(add)
    _surface_veins(model, rng, add)
    _medullary_veins(model, rng, add)
    return _to_physical(model, curves)


def _sinuses(model, rng, add):
    """Dural sinuses down to the jugular veins, the great vein of Galen."""
    # superior sagittal sinus: under the inner table along the midline
    phi = np.radians(np.linspace(32, 208, 16))
    sss = np.stack([np.zeros_like(phi), -14 + 80 * np.cos(phi), 9 + 64 * np.sin(phi)], 1)
    rad = np.linspace(2.2, 4.3, len(sss))
    sss = _snap(sss, model.icv, -0.8 * rad)
    sss[:, 0] = model.midline(sss)
    add(sss, rad, SINUS)
    torcular = sss[-1]
    # transverse and sigmoid sinuses down to the internal jugular veins
    dom = rng.uniform(0.75, 1.0)
    for sg in (-1, 1):
        k = dom if sg < 0 else 1.0
        tr = [(16, -91, -13), (32, -86, -16), (46, -74, -21), (52, -60, -26), (52, -48, -33), (48, -40, -43),
              (44, -35, -52)]
        tr = np.array(tr, float) * [sg, 1, 1]
        tr = _snap(tr, model.icv, -1.2 * k)
        jug = np.array([(sg * 42, -31, -64), (sg * 40, -26, -80), (sg * 37, -15, -120), (sg * 34, -8, -300)], float)
        rad = np.concatenate([[4.3], np.full(len(tr), 4.0 * k), [4.8, 5.5, 6.0, 6.0]])
        add(np.vstack([torcular, tr, jug]), rad, SINUS)
    # straight sinus, great vein of Galen, inferior sagittal sinus
    straight = np.array([(0, -43, 4), (0, -60, -2), (0, -76, -8)], float)
    straight[:, 0] = model.midline(straight)
    add(np.vstack([straight, torcular]), [2.0, 2.4, 2.6, 3.0], SINUS)
    add([(0, -36, 8), (0, -41, 6), (0, -43, 4)], [1.8, 2.2, 2.3], VEIN)
    ang = np.radians(np.linspace(25, 160, 10))
    isss = np.stack([np.zeros_like(ang), -8 + 42 * np.cos(ang), 6 + 23 * np.sin(ang)], 1)
    isss[:, 0] = model.midline(isss)
    add(np.vstack([isss, [(0, -41, 6)]]), np.linspace(0.7, 1.2, len(isss) + 1), SINUS)


def _deep_veins(add):
    """Internal cerebral, thalamostriate and basal veins of both hemispheres."""
    # deep veins: internal cerebral, thalamostriate, basal veins of Rosenthal
    for sg in (-1, 1):
        m = np.array([sg, 1.0, 1.0])
        add(np.array([(2.6, 1, 12.5), (2.6, -12, 11.5), (2.2, -26, 10), (1.3, -34, 8.5), (0, -38, 7.5)]) * m,
            [0.9, 1.0, 1.1, 1.3, 1.5], VEIN)
        add(np.array([(20, -29, 16), (16, -15, 18), (11.5, -3, 16.5), (3.2, 1.5, 12.5)]) * m,
            [0.6, 0.7, 0.8, 0.9], VEIN)
        add(np.array([(19, 3, -17), (18, -8, -14.5), (15.5, -20, -10.5), (9.5, -32, -3), (3, -38, 5)]) * m,
            [0.8, 0.9, 1.0, 1.1, 1.2], VEIN)


def _surface_veins(model, rng, add):
    """Superficial middle cerebral vein, vein of Labbé and cortical veins, on the brain's surface."""
    env = model.cerebral_envelope
    # surface veins: superficial middle cerebral, Labbé, superior cortical veins into the SSS
    surface = []
    for sg in (-1, 1):
        m = np.array([sg, 1.0, 1.0])
        smcv = np.array([(60, -34, 12), (60, -15, 2), (55, 2, -8), (46, 16, -19)]) * m
        labbe = np.array([(60, -22, 4), (61, -38, -8), (56, -55, -17), (50, -68, -20)]) * m
        surface += [(smcv, np.array([1.0, 1.1, 1.2, 1.3])), (labbe, np.array([0.9, 1.0, 1.1, 1.2]))]
        c = np.array([0.0, -14.0, 9.0])
        for y0 in np.sort(rng.uniform(-80, 48, int(rng.integers(9, 13)))):
            start = np.array([sg * 70.0, y0, rng.uniform(-8, 25)]) - c
            end = np.array([sg * 2.0, y0 + rng.normal(-6, 6), 80.0]) - c
            t = np.linspace(0, 1, 9)[:, None]
            dirs = (1 - t) * start / np.linalg.norm(start) + t * end / np.linalg.norm(end)
            dirs += 0.05 * np.sin(np.pi * t * rng.uniform(1, 3) + rng.uniform(0, 6)) * rng.normal(0, 1, 3)
            dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
            surface.append((c + 90 * dirs, np.linspace(rng.uniform(0.5, 0.8), rng.uniform(1.0, 1.5), len(t))))
    pts = _snap(np.vstack([p for p, _ in surface]), env, np.concatenate([r + 0.4 for _, r in surface]))
    start = 0
    for p, r in surface:
        add(pts[start : start + len(p)], r, VEIN)
        start += len(p)


def _medullary_veins(model, rng, add):
    """Thin, tortuous veins fanning out of the lateral ventricles through the white matter."""
    env = model.cerebral_envelope
    # medullary veins: thin, tortuous, fanning out of the lateral ventricles through the
    # white matter in every direction, up to ~6 mm under the cortex
    anchors = [e for e in model.ventricles if isinstance(e, Ellipsoid)]
    n_med = 150
    which = rng.integers(len(anchors), size=n_med)
    d = rng.normal(0, 1, (n_med, 3))
    sgn = np.array([np.sign(anchors[i].c[0]) for i in which])
    d[:, 0] = sgn * np.abs(d[:, 0]) * 1.3
    d[:, 2] = np.abs(d[:, 2]) * 1.2 - 0.25
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    target = np.array([anchors[i].c + d[j] * anchors[i].a.min() * 0.6 for j, i in enumerate(which)])
    p = target.copy()
    active = np.ones(n_med, bool)
    for _ in range(60):
        nxt = p + 1.5 * d
        inside = env(tuple(nxt[:, i].astype(F32) for i in range(3))) < -7.0
        active &= inside
        p[active] = nxt[active]
    for j in range(n_med):
        length = np.linalg.norm(p[j] - target[j])
        if length < 12:
            continue
        k = max(5, int(length / 4))
        t = np.linspace(0, 1, k)[:, None]
        perp = np.cross(d[j], rng.normal(0, 1, 3))
        perp /= np.linalg.norm(perp)
        perp2 = np.cross(d[j], perp)
        amp = rng.uniform(1.0, 3.0)
        wig = (
            np.sin(np.pi * t * rng.uniform(1, 3) + rng.uniform(0, 6)) * perp * amp
            + np.sin(np.pi * t * rng.uniform(1.5, 4) + rng.uniform(0, 6)) * perp2 * amp * 0.7
        ) * np.sin(np.pi * t)
        r_end = rng.uniform(0.3, 0.5) * (1.8 if rng.uniform() < 0.12 else 1.0)
        add(p[j] + (target[j] - p[j]) * t + wig, np.linspace(r_end * 0.7, r_end * 1.4, k), VEIN, step=1.5)


def _to_physical(model, curves):
    """Densify each curve and map it to physical space in one batch: (points, radii, label) per vessel."""
    # densify and map to physical space in one batch (the painter uses true radii there)
    dense = []
    for ctrl, rad, vtype, _ in curves:
        pts = catmull_rom(ctrl, 1.5)
        s_ctrl = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1))])
        s_dense = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        s_dense *= s_ctrl[-1] / max(s_dense[-1], 1e-9)
        dense.append((pts, np.interp(s_dense, s_ctrl, rad), vtype))
    phys = model.physical(np.vstack([p for p, _, _ in dense]))
    segments = []
    start = 0
    for pts, rad, vtype in dense:
        segments.append((phys[start : start + len(pts)], rad, vtype))
        start += len(pts)
    logger.debug("phantom vessels: %d curves, %d segments", len(segments), start - len(segments))
    return segments




def paint_vessels(segments, axes, spacing):
    """Fraction (uint8, 0..255) of each voxel of the grid ``axes`` covered by vessels, and their label."""
    shape = tuple(a.size for a in axes)
    cover = np.zeros(shape, np.uint8)
    vtype = np.zeros(shape, np.uint8)
    h = float(np.prod(spacing)) ** (1.0 / 3.0)
    origin = np.array([a[0] for a in axes])
    step = np.array([a[1] - a[0] if a.size > 1 else 1.0 for a in axes])
    axes32 = [a.astype(F32) for a in axes]
    # curves are stored every ~1.5 mm; coarse grids use longer straight segments
    every = max(1, int(h / 0.75))
    for pts, rad, vt in segments:
        keep = np.unique(np.r_[0 : len(pts) : every, len(pts) - 1])
        pts, rad = pts[keep], rad[keep]
        a, b = pts[:-1], pts[1:]
        rmax = np.maximum(rad[:-1], rad[1:])[:, None] + h
        i0 = np.maximum(np.ceil((np.minimum(a, b) - rmax - origin) / step), 0).astype(int)
        i1 = np.minimum(np.floor((np.maximum(a, b) + rmax - origin) / step) + 1, shape).astype(int)
        for i in np.nonzero(np.all(i1 > i0, axis=1))[0]:
            sl = tuple(slice(i0[i, k], i1[i, k]) for k in range(3))
            g = (
                axes32[0][sl[0]][:, None, None],
                axes32[1][sl[1]][None, :, None],
                axes32[2][sl[2]][None, None, :],
            )
            dist, t = segment_distance(g, a[i], b[i])
            r0, r1 = rad[i], rad[i + 1]
            # coverage ramp, normalised so the covered cross-section is pi r^2
            norm = F32(min(1.0, _area_ratio(0.5 * (r0 + r1), h)))
            cov = np.clip(F32(0.5) - (dist - (F32(r0) + t * F32(r1 - r0))) / F32(h), 0.0, 1.0) * norm
            c8 = (cov * 255 + 0.5).astype(np.uint8)
            view, tview = cover[sl], vtype[sl]
            upd = c8 > view
            view[upd] = c8[upd]
            tview[upd] = vt
    return cover, vtype



def _area_ratio(r, h):
    """pi r^2 over the integral of the linear coverage ramp of width ``h`` around a disc of radius r."""
    if r >= h / 2:
        integral = np.pi * r * r + np.pi * h * h / 12
    else:
        d = r + h / 2
        integral = 2 * np.pi * ((0.5 + r / h) * d * d / 2 - d**3 / (3 * h))
    return np.pi * r * r / integral
