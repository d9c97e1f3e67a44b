"""Rasterising the numerical head phantom (private helper of :mod:`qsmflow.phantom.geometry`).

:func:`paint` evaluates a :class:`~qsmflow.phantom.geometry.HeadModel` on a grid of
physical coordinates, slab by slab to bound memory: tissue labels in layers (scalp, fat,
skull with diploë; skull base, face bones, orbits; air cavities; intracranial CSF; then
the brain: cortex folded into sulci, cerebellar folia, brainstem, deep grey matter,
ventricles, dura and lesions), the brain hull, and the vessels' voxel coverage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labels import (
    AIR,
    BONE,
    BRAINSTEM,
    CAUDATE,
    CB_GM,
    CB_WM,
    CSF,
    DENTATE,
    DURA,
    EYE,
    FAT,
    GM,
    MARROW,
    NERVE,
    SINUS,
    SOFT,
    VENTRICLE,
    WM,
)
from .vessels import paint_vessels
from .procedural import smax, smin, sstep

F32 = np.float32

# Painting works on slabs of about this many voxels to bound temporary memory.
_SLAB_VOXELS = 3_000_000


@dataclass
class Painted:
    """Result of evaluating the head on a grid."""

    labels: np.ndarray  # uint8 tissue label at each grid point (veins not included)
    brain: np.ndarray  # bool, inside the brain hull (parenchyma, ventricles, sulcal CSF)
    vessel_cover: np.ndarray | None  # uint8 0..255 fraction of the voxel covered by blood vessels
    vessel_type: np.ndarray | None  # uint8 label (VEIN or SINUS) of the covering vessel


def paint(model, axes, spacing, *, detail=True, vessels=True):
    """Evaluate the head on the grid with the given physical axes (mm from the FOV centre)."""
    ax, ay, az = (np.asarray(a, float) for a in axes)
    shape = (ax.size, ay.size, az.size)
    if detail and model.sulci[0].tex is None:
        model.prepare(spacing)
    labels = np.zeros(shape, np.uint8)
    brain = np.zeros(shape, bool)
    step = max(1, _SLAB_VOXELS // (shape[1] * shape[2]))
    for x0 in range(0, shape[0], step):
        sl = slice(x0, min(shape[0], x0 + step))
        _paint_slab(model, labels[sl], brain[sl], (ax[sl], ay, az), detail)
    cover = vtype = None
    if vessels:
        cover, vtype = paint_vessels(model.segments, (ax, ay, az), spacing)
    return Painted(labels, brain, cover, vtype)


def _paint_slab(model, lab, brain, axes, detail):
    q = model.template_grid(*axes)

    def box(lo, hi):
        return model.index_box(axes, np.asarray(lo, float), np.asarray(hi, float))

    def sub(b):
        return tuple(c[b] for c in q)

    def paint(shapes, value, level=0.0, inner=None, where=None):
        """Paint ``value`` where each SDF < level (and ``inner`` where SDF < inner[0])."""
        for e in shapes:
            grow = max(level, 0.0)
            b = box(np.asarray(e.lo) - grow, np.asarray(e.hi) + grow)
            if b is None:
                continue
            f = e(sub(b))
            view = lab[b]
            m = f < level
            if where is not None:
                m &= where[b]
            view[m] = value
            if inner is not None:
                view[f < inner[0]] = inner[1]

    low = [f.grid(*axes) for f in model.low[:3]]
    # 1. head: soft tissue, subcutaneous fat, skull with diploë
    env = model.cerebral_envelope(q)
    cb = model.cerebellum(q)
    bs = model.brainstem(q)
    u = smin(smin(env, cb, 6.0), bs, 6.0)
    for c in model.cisterns:
        u = smin(u, c(q), 5.0)
    u = smin(u, model.canal(q), 4.0)
    icv = u - model.csf_thickness(low[0])
    del u
    thick = model.skull_thickness(q, low[1])
    head = icv - thick - (F32(model.scalp_mm) + F32(0.8) * low[2])
    for part in (model.face, model.nose, model.neck):
        head = smin(head, part(q), 14.0)
    for lid in model.lids:
        head = smin(head, lid(q), 5.0)
    lab[head < 0] = SOFT
    lab[(head < -1.5) & (head > -4.2)] = FAT
    del head
    bone = (icv >= 0) & (icv < thick)
    lab[bone] = BONE
    lab[bone & (icv > 1.4) & (icv < thick - 1.5)] = MARROW
    del bone
    _paint_skull_base(model, lab, axes, icv, thick, box, sub, paint)
    # 4. intracranial CSF, then the brain
    lab[icv < 0] = CSF
    brain[...] = smin(smin(env, cb, 4.0), bs, 4.0) < 0
    del icv, thick
    if not detail:
        lab[brain] = WM
        return
    _paint_cerebrum(model, lab, q, env, cb, low, axes)
    _paint_cerebellum(model, lab, q, cb, axes)
    lab[bs < 0] = BRAINSTEM
    del env, cb, bs
    _paint_deep(model, lab, q, axes, box, sub, paint)


def _paint_skull_base(model, lab, axes, icv, thick, box, sub, paint):
    """Skull base, face bones and spine; the cavities' bony walls, orbits and eyes; then the
    air of the sinuses, mastoid and ethmoid cells, ear canals and airway. ``icv`` and
    ``thick`` are the intracranial SDF and the skull's thickness; ``box``, ``sub`` and
    ``paint`` are :func:`_paint_slab`'s helpers on the same grid."""
    # 2. skull base, face bones, spine, bony walls of the cavities and orbits
    paint(model.petrous, BONE)
    paint([model.clivus], BONE, inner=(-2.0, MARROW))
    paint(model.vertebrae + [model.dens], BONE, inner=(-1.5, MARROW))
    paint(model.mandible, BONE, inner=(-2.0, MARROW))
    cavities = model.frontal_sinus + model.ethmoid + [model.sphenoid] + model.maxillary + model.nasal
    cavities += model.mastoid + model.middle_ear
    inside_head = lab != AIR
    paint(cavities + model.orbit, BONE, level=1.6, where=inside_head)
    paint(model.orbit, FAT)
    paint(model.eye, EYE)
    paint([model.pituitary], SOFT)
    # 3. air: sinuses, air cells, ear canals, airway
    paint(model.maxillary + model.nasal + model.middle_ear + model.ear_canal + [model.airway], AIR)
    in_bone = (icv > 1.3) & (icv < thick - 1.3)
    paint(model.frontal_sinus, AIR, where=in_bone)
    b = box(model.sphenoid.lo, model.sphenoid.hi)
    if b is not None:
        qq = sub(b)
        view = lab[b]
        view[(model.sphenoid(qq) < 0) & (np.abs(qq[0] - F32(model.sphenoid_septum)) > 0.7)] = AIR
    for e, thr in [(e, -0.35) for e in model.ethmoid] + [(e, -0.1) for e in model.mastoid]:
        b = box(e.lo, e.hi)
        if b is not None:
            cells = model.cells.grid(*(a[s] for a, s in zip(axes, b)))
            view = lab[b]
            view[(e(sub(b)) < 0) & (cells > thr)] = AIR


def _paint_cerebrum(model, lab, q, env, cb, low, axes):
    cerebrum = smax(env, F32(3.0) - cb, 3.0)
    idx = np.nonzero(cerebrum < 0)
    if idx[0].size == 0:
        return
    qi = tuple(c[idx] for c in q)
    depth = -cerebrum[idx]
    del cerebrum
    # no cortex on the medial floor (hypothalamus, where the brainstem joins)
    depth_ctx = depth + F32(40.0) * model.w_medial(qi) * sstep(qi[2], 8.0, 2.0)
    slow = model.meander[1].grid(*axes)
    inter, sylvian, x_mid, _ = model.fissure(qi, slow[idx])
    pial = np.minimum(depth_ctx, inter)
    # sulci: radial sheets of the gyral pattern, 10-17 mm deep from the convexity and
    # the medial surface, wider at their mouth
    max_depth = F32(15.0) + F32(4.0) * low[1][idx]
    cand = np.nonzero(pial < max_depth + 3.5)[0]
    if cand.size:
        c = (0.0, -14.0, 9.0)
        d = [qi[i][cand] - F32(c[i]) for i in range(3)]
        # sheets radial from the centre on the convexity; perpendicular to the medial
        # wall near the fissure (the lateral component fades out there)
        d[0] = d[0] * sstep(inter[cand] - depth_ctx[cand], -4.0, 4.0)
        r = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2) + F32(1e-6)
        u = [di / r for di in d]
        right = qi[0][cand] > x_mid[cand]
        s = np.empty(cand.size, F32)
        for hemi, m in ((0, ~right), (1, right)):
            if m.any():
                s[m] = model.sulci[hemi].lookup([ui[m] for ui in u])
        s *= r / F32(model.sulci[0].radius)
        # bend the sheets in 3D so that sulci meander in every section
        sel = tuple(i[cand] for i in idx)
        s += F32(2.0) * model.meander[0].grid(*axes)[sel] + F32(3.0) * slow[sel]
        pd = pial[cand]
        half = F32(0.45) + F32(0.6) * np.exp(-pd / F32(2.0))
        pial[cand] = np.minimum(pd, np.maximum(np.abs(s) - half, pd - max_depth[cand]))
    pial = np.minimum(pial, sylvian)
    thick = F32(2.7) + F32(0.35) * low[2][idx]
    lab[idx] = np.where(pial < 0, CSF, np.where(pial < thick, GM, WM)).astype(np.uint8)

def _paint_cerebellum(model, lab, q, cb, axes):
    idx = np.nonzero(cb < 0)
    if idx[0].size == 0:
        return
    qi = tuple(c[idx] for c in q)
    depth = -cb[idx]
    # folia: transverse sheets fanning out of an axis through the fastigium; deep
    # fissures between lobules, shallow ones between folia
    dy, dz = qi[1] + F32(44.0), qi[2] + F32(28.0)
    r = np.sqrt(dy * dy + dz * dz) + F32(1e-6)
    theta = np.arctan2(dz, dy) + F32(0.13) * model.folia_noise.grid(*axes)[idx]
    d1 = F32(2 * np.pi / 15)
    d2 = d1 / F32(4.0)
    a1 = np.abs(theta - d1 * np.round(theta / d1)) * r - F32(0.45)
    a2 = np.abs(theta - d2 * np.round(theta / d2)) * r - F32(0.3)
    p = np.minimum(depth, np.maximum(a1, depth - F32(17.0)))
    p = np.minimum(p, np.maximum(a2, depth - F32(4.5)))
    lab[idx] = np.where(p < 0, CSF, np.where(p < 1.4, CB_GM, CB_WM)).astype(np.uint8)

def _paint_deep(model, lab, q, axes, box, sub, paint):
    # corpus callosum over the ventricles
    b = box((-24, -48, -14), (24, 32, 26))
    if b is not None:
        x, y, z = sub(b)
        outer = ((y + 8) / F32(37.0)) ** 2 + ((z - 6) / F32(17.0)) ** 2
        inner = ((y + 8) / F32(31.0)) ** 2 + ((z - 6) / F32(10.0)) ** 2
        view = lab[b]
        view[(outer < 1) & (inner > 1) & (np.abs(x) < 20) & (z > 0)] = WM
    paint(model.ventricles, VENTRICLE)
    paint(model.caudate, CAUDATE)
    for label, e in model.nuclei:
        paint([e], label)
    paint([model.third, model.aqueduct, model.fourth], VENTRICLE)
    for e in model.dentate:
        bb = box(e.lo, e.hi)
        if bb is None:
            continue
        qq = sub(bb)
        rho = e.rho(qq) + F32(0.07) * model.cells.grid(*(a[s] for a, s in zip(axes, bb)))
        d = e.local(qq)
        # a crumpled shell, its hilum open medially and upwards
        sg = F32(np.sign(e.c[0]))
        hil = (-sg * d[0] * F32(0.6) + d[2] * F32(0.8)) / (np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2) + F32(1e-6))
        view = lab[bb]
        view[(rho < 1.0) & (rho > 0.68) & (hil < 0.55)] = DENTATE
    paint(model.optic, NERVE)
    paint(model.cavernous, SINUS)
    # dura: falx in the interhemispheric fissure, tentorium over the cerebellum
    bb = box((-8, -100, -40), (8, 75, 75))
    if bb is not None:
        qq = sub(bb)
        inter, _, x_mid, inside_arch = model.fissure(qq, model.meander[1].grid(*(a[s] for a, s in zip(axes, bb))))
        view = lab[bb]
        view[(np.abs(qq[0] - x_mid) < 0.45) & (inside_arch < -4.0) & (inter < 0) & (view == CSF)] = DURA
    bb = box((-60, -95, -35), (60, -30, -5))
    if bb is not None:
        qq = sub(bb)
        c = model.cerebellum(qq)
        view = lab[bb]
        view[(np.abs(c - F32(1.6)) < 0.45) & (qq[2] > -30.0) & (qq[1] < -36.0) & (view == CSF)] = DURA
    for label, e in model.lesions:
        bb = box(e.lo, e.hi)
        if bb is not None:
            view = lab[bb]
            view[e.rho(sub(bb)) + F32(0.25) * model.cells.grid(*(a[s] for a, s in zip(axes, bb))) < 1.0] = label
