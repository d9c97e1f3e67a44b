"""Procedural anatomy of the numerical head phantom (private helper of :mod:`qsmflow.phantom`).

The head is a continuous description in millimetres: every structure is a signed distance
function (negative inside) of *template* coordinates, a smoothly and randomly deformed copy
of the physical coordinates, so the same seeded head can be evaluated on any grid (the fine
simulation grid, the output grid for labels at voxel centres, a coarse grid for the body
outside the field of view). Template coordinates are millimetres with x left→right,
y posterior→anterior, z inferior→superior and the origin near the anterior commissure;
positions follow the MNI atlas scaled by ~0.93 to an average adult head.

:class:`HeadModel` holds every random choice of one head: the deformation, the anatomy's
shapes and the composite SDFs built from them. The generic shapes and random fields are in
:mod:`qsmflow.phantom.procedural`, the vessels in :mod:`qsmflow.phantom.vessels`, and the
rasterisation into labels in :mod:`qsmflow.phantom.paint`. Nothing here knows about MRI:
:mod:`qsmflow.phantom` turns the labels into tissue properties and simulates the signal.
"""

from __future__ import annotations

import numpy as np

from . import paint
from .labels import CALCIFICATION, GM, HAEMORRHAGE, NIGRA, PALLIDUS, PUTAMEN, RED_NUCLEUS, THALAMUS
from .vessels import build_vessels
from .procedural import Ellipsoid, SulcalMap, TensorNoise, Tube, rotation, smax, smin, sstep

F32 = np.float32

# Template coordinates of the centre of the field of view: the head (scalp included) is
# centred in y and leaves ~10 mm of air above the vertex in a 160 mm tall FOV.
FOV_CENTRE = np.array([0.0, -12.5, 10.5])
# Largest displacement (mm) of the random deformation; bounding boxes grow by it.
_DEFORM_MM = 3.0
_BOX_MARGIN = _DEFORM_MM + 2.5


def _jit(rng, sd):
    """A random offset (mm) of standard deviation ``sd``."""
    return rng.normal(0.0, sd)


def _size(rng, v):
    """A random size factor 1 ± v (relative SD ``v``, clipped at 2 SD)."""
    return 1.0 + float(np.clip(rng.normal(0, v), -2 * v, 2 * v))


def _mirror(sg, pts):
    """Points given for the right hemisphere, mirrored to side ``sg`` (±1)."""
    p = np.array(pts, float)
    p[:, 0] *= sg
    return p


class HeadModel:
    """All random choices of one head, made once from a seed; evaluate it with :meth:`paint`."""

    def __init__(self, seed, *, lesions=False):
        seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        kids = seq.spawn(8)
        geo, noise, sulci, veins, lesion_rng = (np.random.default_rng(s) for s in kids[:5])
        self.texture_seeds = kids[5:8]  # for the tissue textures drawn by qsmflow.phantom
        self.scale = 1.0 + np.array([0.01, 0.01, 0.015]) * np.clip(geo.standard_normal(3), -1.5, 1.5)
        self.deform = [TensorNoise(noise, 90.0, period=512.0) for _ in range(3)]
        # scale each component so that its largest value over the head is _DEFORM_MM
        box = [np.arange(-110.0, 111.0, 5.0), np.arange(-140.0, 121.0, 5.0), np.arange(-170.0, 111.0, 5.0)]
        self.deform_amp = [_DEFORM_MM / (1.05 * float(np.abs(d.grid(*box)).max())) for d in self.deform]
        self.low = [TensorNoise(noise, 35.0, period=512.0) for _ in range(3)]
        self.cells = TensorNoise(noise, 4.5, period=64.0)
        self.folia_noise = TensorNoise(noise, 18.0, period=256.0)
        self.meander = [TensorNoise(noise, 11.0, period=256.0), TensorNoise(noise, 30.0, period=512.0)]
        self.sulci = [SulcalMap(sulci, 15.0), SulcalMap(sulci, 15.0)]  # left, right hemisphere
        self._build_anatomy(geo)
        self.lesions = self._build_lesions(lesion_rng) if lesions else []
        self.segments = build_vessels(self, veins)  # (points, radii, label) per vessel, physical mm

    # ------------------------------------------------------------ coordinates
    def template_grid(self, ax, ay, az):
        """Template coordinates (3 float32 arrays) of the grid with physical axes ``ax, ay, az``."""
        u = [d.grid(ax, ay, az) for d in self.deform]
        g = np.ix_(ax, ay, az)
        return tuple(
            F32(FOV_CENTRE[i]) + (g[i] / self.scale[i]).astype(F32) + F32(self.deform_amp[i]) * u[i] for i in range(3)
        )

    def _deform_points(self, p):
        return np.stack([d.points(p[:, 0], p[:, 1], p[:, 2]) * a for d, a in zip(self.deform, self.deform_amp)], 1)

    def physical(self, q):
        """Inverse of the template mapping for points ``q`` (N, 3), by fixed-point iteration."""
        q = np.asarray(q, float)
        p = (q - FOV_CENTRE) * self.scale
        for _ in range(4):
            p = (q - FOV_CENTRE - self._deform_points(p)) * self.scale
        return p

    def prepare(self, spacing):
        """Build the gyral cube maps with texels about as fine as ``spacing`` (mm)."""
        n = int(np.clip(np.ceil(120.0 / float(np.min(spacing))), 48, 256))
        for m in self.sulci:
            if m.tex is None or m.n != n:
                m.build(n)

    # ------------------------------------------------------------ anatomy parameters
    def _build_anatomy(self, rng):
        """Every shape of the head, drawn from ``rng`` in a fixed order (the order is part of
        the seed's meaning: the same seed gives the same head)."""
        self._build_envelope(rng)
        vs = _size(rng, 0.15) + 0.1  # ventricle size factor (age, individual variation)
        self._build_deep_grey(rng)
        self._build_ventricles(vs)
        self._build_optic_and_sellar()
        self._build_skull_base_and_face(rng)

    def _build_envelope(self, rng):
        """Cerebrum, cerebellum, brainstem, cord, cisterns and the layers around the brain."""
        def jit(sd):
            return _jit(rng, sd)

        def s(v):
            return _size(rng, v)

        self.E1 = Ellipsoid((0, -14, 9), (60.5 * s(0.015), 74.5 * s(0.015), 57 * s(0.02)))
        self.temporal = [
            Ellipsoid((sg * 42, -14, -21), (19, 37, 18), rotation(pitch=-10)) for sg in (-1, 1)
        ]
        self.cb = [Ellipsoid((sg * 21, -61, -35), (27 * s(0.03), 28, 21 * s(0.03))) for sg in (-1, 1)]
        self.cb.append(Ellipsoid((0, -60, -31), (11, 26, 21)))
        self.bs = [
            Ellipsoid((0, -21, -6), (12.5, 10, 9)),
            Ellipsoid((0, -25, -25), (13.5, 11.5, 11), rotation(pitch=-8)),
            Ellipsoid((0, -33, -44), (9, 8.5, 12), rotation(pitch=15)),
        ]
        self.cord = Tube([(0, -35, -52), (0, -38, -68), (0, -42, -100), (0, -44, -300)], 6.0)
        self.cisterns = [Ellipsoid((0, -60, -54), (14, 14, 9)), Ellipsoid((0, -6, -16), (11, 10, 4.5))]
        self.canal = Tube([(0, -35, -50), (0, -38, -68), (0, -42, -100), (0, -44, -300)], 9.0)
        self.csf_margin = 2.6 + jit(0.3)
        self.skull_mm = 6.0 + jit(0.5)
        self.scalp_mm = 5.0
        self.x_mid_amp, self.x_mid_ph = rng.uniform(0.5, 2.0), rng.uniform(0, 2 * np.pi)
        self.sylvian = (rng.uniform(-8, -4), rng.uniform(0.3, 0.42))  # z offset, slope
        self.x_insula = 36.0 + jit(1.0)

    def _build_deep_grey(self, rng):
        """Deep grey nuclei of both hemispheres, the caudate and the dentate nuclei."""
        def jit(sd):
            return _jit(rng, sd)

        def s(v):
            return _size(rng, v)

        # deep grey matter (both hemispheres)
        self.nuclei = []
        for sg in (-1, 1):
            j = [np.array([jit(0.8), jit(0.8), jit(0.8)]) for _ in range(6)]
            self.nuclei += [
                (THALAMUS, Ellipsoid(_mirror(sg, [(11, -18, 7)])[0] + j[2], (8.5 * s(0.05), 16 * s(0.05), 10),
                                     rotation(yaw=sg * 15))),
                (PUTAMEN, Ellipsoid(_mirror(sg, [(24.5, 2, 1)])[0] + j[0], (6.0 * s(0.06), 16 * s(0.06), 11),
                                    rotation(yaw=sg * 10, roll=sg * 12))),
                (PALLIDUS, Ellipsoid(_mirror(sg, [(18, -3, -1)])[0] + j[1], (4.5, 10 * s(0.06), 6.5),
                                     rotation(yaw=sg * 12, roll=sg * 15))),
                (GM, Ellipsoid(_mirror(sg, [(22, 0, -19)])[0] + j[3], (7, 7.5, 6.5))),  # amygdala
                (GM, Tube(_mirror(sg, [(26, -6, -21), (28, -18, -16), (27, -30, -9), (22, -38, -2)]),  # hippocampus
                          [4.5, 4.2, 3.5, 2.5])),
                (RED_NUCLEUS, Ellipsoid(_mirror(sg, [(4.5, -19, -8)])[0] + 0.4 * j[4], (3.0, 3.6, 3.5))),
            ]
            # substantia nigra: a curved band along the cerebral peduncle, lateral to the red nucleus
            for cx, cy, cz in [(12, -13, -10.5), (10, -17, -11), (7.5, -21, -11.5)]:
                self.nuclei.append(
                    (NIGRA, Ellipsoid(_mirror(sg, [(cx, cy, cz)])[0] + 0.4 * j[5], (1.9, 4.2, 3.6),
                                      rotation(yaw=sg * 40, roll=-sg * 20)))
                )
        self.caudate = []
        for sg in (-1, 1):
            jj = np.array([jit(0.7), jit(0.7), jit(0.7)])
            self.caudate.append(Ellipsoid(_mirror(sg, [(13.5, 11, 9)])[0] + jj, (5.5, 10 * s(0.06), 9)))
            body = _mirror(sg, [(15.5, 2, 15), (17.5, -10, 17.5), (21, -25, 16.5), (24, -33, 12)])
            self.caudate.append(Tube(body + jj, [3.8, 2.8, 2.0, 1.4]))
        self.dentate = [
            Ellipsoid(_mirror(sg, [(14, -56, -31)])[0] + rng.normal(0, 0.6, 3), (7, 9, 6.5), rotation(yaw=sg * 25))
            for sg in (-1, 1)
        ]

    def _build_ventricles(self, vs):
        """Lateral, third and fourth ventricles and the aqueduct; ``vs`` scales their size."""
        self.ventricles = []
        for sg in (-1, 1):
            self.ventricles += [
                Ellipsoid((sg * (2.0 + 4.2 * vs), 12, 12), (4.6 * vs, 13, 7.0 * vs), rotation(roll=-sg * 25)),
                Ellipsoid((sg * (2.5 + 6.0 * vs), -14, 14.5), (6.2 * vs, 17, 4.6 * vs), rotation(roll=-sg * 25)),
                Ellipsoid((sg * 20, -35, 12), (6.0 * vs, 8, 7.0 * vs)),
                Tube(_mirror(sg, [(21, -39, 11), (19.5, -52, 9), (16, -62, 7)]), np.array([3.0, 2.2, 1.0]) * vs),
                Tube(_mirror(sg, [(25, -35, 6), (31, -29, -4), (31, -18, -12.5), (28.5, -6, -17)]),
                     np.array([3.0, 2.5, 2.0, 1.4]) * vs),
            ]
        self.third = Ellipsoid((0, -12, -1), (2.2 * vs, 15, 10))
        self.aqueduct = Tube([(0, -27, -3), (0, -33, -12), (0, -38, -21)], 1.0)
        self.fourth = Ellipsoid((0, -39.5, -30), (7, 3.5, 8), rotation(pitch=20))

    def _build_optic_and_sellar(self):
        """Optic nerves, chiasm and tracts; cavernous sinuses and pituitary."""
        self.optic = []
        for sg in (-1, 1):
            self.optic.append(
                Tube(  # optic nerve, chiasm, optic tract
                    _mirror(sg, [(31, 48.5, -40), (22, 35, -36), (12, 20, -30), (5, 5, -18), (0, 2, -15.5),
                                 (8, -4, -14), (16, -14, -10), (22, -24, -6)]),
                    [1.8, 1.8, 1.7, 1.6, 2.0, 1.6, 1.5, 1.3],
                )
            )
        self.cavernous = [Ellipsoid((sg * 13, -1, -27), (4, 9, 5.5)) for sg in (-1, 1)]
        self.pituitary = Ellipsoid((0, -2, -25), (6.5, 5, 4))

    def _build_skull_base_and_face(self, rng):
        """Skull base, sinuses, ears, orbits, face, jaw and neck."""
        def jit(sd):
            return _jit(rng, sd)

        def s(v):
            return _size(rng, v)

        fs = s(0.12)
        self.frontal_sinus = [
            Ellipsoid((sg * 8 * fs, 69, 4), (9 * fs, 7.0, 11 * fs), rotation(roll=sg * 15)) for sg in (-1, 1)
        ]
        self.frontal_bump = (np.array([0.0, 66.0, 3.0]), 13.0 * fs, 7.5)
        self.ethmoid = [Ellipsoid((sg * 8, 44, -40), (5.5, 16, 10.5)) for sg in (-1, 1)]
        self.sphenoid = Ellipsoid((jit(1.5), 12, -41), (12 * s(0.1), 11 * s(0.1), 9.5))
        self.sphenoid_septum = jit(2.5)
        self.maxillary = [Ellipsoid((sg * 28, 48, -69), (13, 17, 14)) for sg in (-1, 1)]
        self.nasal = [Ellipsoid((sg * 6, 56, -64), (4.5, 24, 15)) for sg in (-1, 1)]
        self.airway = Tube([(0, 30, -62), (0, 16, -70), (0, 2, -90), (0, 4, -130), (0, 14, -300)], [9, 10, 8, 8, 9])
        ms = s(0.15)
        self.mastoid = [Ellipsoid((sg * 45, -43, -45), (10 * ms, 12 * ms, 12 * ms)) for sg in (-1, 1)]
        self.middle_ear = [Ellipsoid((sg * 40, -30, -40), (2.5, 6, 7)) for sg in (-1, 1)]
        self.ear_canal = [
            Tube(_mirror(sg, [(80, -32, -43), (56, -31, -41), (42, -30, -40)]), [4.0, 3.5, 3.0]) for sg in (-1, 1)
        ]
        self.petrous = [Ellipsoid((sg * 32, -31, -41), (28, 10, 9), rotation(yaw=sg * 50)) for sg in (-1, 1)]
        self.clivus = Ellipsoid((0, -8, -40), (13, 24, 11), rotation(pitch=40))
        self.orbit = [Ellipsoid((sg * 27, 52, -38), (15, 25, 15), rotation(yaw=-sg * 22, pitch=-10)) for sg in (-1, 1)]
        self.eye = [Ellipsoid((sg * 31, 60.5, -40), (12, 12, 12)) for sg in (-1, 1)]
        self.lids = [Ellipsoid((sg * 31, 61.5, -40), (14.5, 14.5, 15)) for sg in (-1, 1)]
        self.vertebrae = [Ellipsoid((0, -21, z), (9, 8, 6.5)) for z in (-92, -110, -128, -146, -164, -182)]
        self.dens = Ellipsoid((0, -24, -78), (5, 5, 9))
        self.mandible = [
            Tube(_mirror(sg, [(48, -22, -52), (47, -14, -78), (45, -10, -100), (30, 25, -108), (0, 55, -112)]), 6.0)
            for sg in (-1, 1)
        ]
        self.face = Ellipsoid((0, 36, -62), (60, 41, 42))
        self.nose = Ellipsoid((0, 79, -56), (9, 11, 18), rotation(pitch=-20))
        self.neck = Ellipsoid((0, -16, -180), (55, 58, 135))


    def _build_lesions(self, rng):
        out = []
        for label, centre, semi in ((CALCIFICATION, (-24, 24, 28), 2.8), (HAEMORRHAGE, (28, -38, 30), 3.6)):
            c = np.array(centre) + rng.normal(0, 1.5, 3)
            a = semi * np.exp(rng.normal(0, 0.12, 3))
            out.append((label, Ellipsoid(c, a, rotation(yaw=rng.uniform(0, 90), pitch=rng.uniform(0, 90)))))
        return out

    # ------------------------------------------------------------ composite SDFs (template coordinates)
    def w_medial(self, q):
        """1 under the diencephalon (where the brainstem joins), fading out over ~8 mm."""
        x, y, _ = q
        rho = np.sqrt((x / F32(16.0)) ** 2 + ((y + F32(17.0)) / F32(25.0)) ** 2)
        return sstep(rho, 1.0, 0.55)

    def cerebral_envelope(self, q):
        floor = F32(-23.0) + F32(9.0) * self.w_medial(q)
        env = smax(self.E1(q), floor - q[2], 6.0)
        for t in self.temporal:
            env = smin(env, t(q), 8.0)
        return env

    def cerebellum(self, q):
        out = self.cb[0](q)
        for e in self.cb[1:]:
            out = smin(out, e(q), 5.0)
        return out

    def brainstem(self, q):
        out = self.bs[0](q)
        for e in self.bs[1:]:
            out = smin(out, e(q), 5.0)
        return smin(out, self.cord(q), 4.0)

    def icv(self, q, low0=None):
        """Intracranial (and spinal canal) cavity: the brain grown by the CSF layer."""
        u = smin(smin(self.cerebral_envelope(q), self.cerebellum(q), 6.0), self.brainstem(q), 6.0)
        for c in self.cisterns:
            u = smin(u, c(q), 5.0)
        u = smin(u, self.canal(q), 4.0)
        if low0 is None:
            low0 = self.low[0].points(*q).astype(F32)
        return u - self.csf_thickness(low0)

    def csf_thickness(self, low):
        """Subarachnoid CSF layer between brain and skull: ~1.3-5 mm, 2.6 mm typical."""
        return F32(self.csf_margin) * np.exp(F32(0.22) * np.clip(low, -3.0, 3.0))

    def skull_thickness(self, q, low):
        x, y, z = q
        c, r, amp = self.frontal_bump
        bump = np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / F32(2 * r * r)) * F32(amp)
        inion = np.exp(-(x**2 + (y + 92) ** 2 + (z + 8) ** 2) / F32(2 * 12.0**2)) * F32(2.5)
        temporal = np.exp(-((np.abs(x) - 60) ** 2 + (y + 8) ** 2 + (z + 2) ** 2) / F32(2 * 22.0**2)) * F32(2.8)
        return np.maximum(F32(self.skull_mm) + F32(0.8) * low + bump + inion - temporal, F32(2.5))

    def midline(self, pts):
        """x (template mm) of the interhemispheric fissure at points (N, 3)."""
        wob = 3.0 * self.meander[1].points(pts[:, 0], pts[:, 1], pts[:, 2])
        return self.x_mid_amp * np.sin(pts[:, 1] / 45.0 + self.x_mid_ph) + 0.5 * wob

    def fissure(self, q, meander=None):
        """SDFs of the interhemispheric and Sylvian fissures (CSF clefts with pial walls)."""
        x, y, z = q
        wob = F32(0.0) if meander is None else F32(3.0) * meander
        x_mid = F32(self.x_mid_amp) * np.sin(y / F32(45.0) + F32(self.x_mid_ph)) + F32(0.5) * wob
        # corpus-callosum arch: no fissure inside it, nor below it
        arch = np.sqrt(((y + 8) / F32(37.0)) ** 2 + ((z - 6) / F32(17.0)) ** 2)
        arch_sdf = (arch - 1.0) * F32(17.0)
        below = np.maximum(np.abs(y + 8) - 37.0, z - 6.0)
        inside_arch = np.minimum(arch_sdf, below)
        inter = np.maximum(np.abs(x - x_mid) - 0.95, -inside_arch)
        # Sylvian: horizontal stem + vertical insular cleft
        z0, slope = self.sylvian
        zs = F32(z0) - F32(slope) * y + wob
        ax = np.abs(x) + F32(0.6) * wob
        yr = np.maximum(y - 18.0, -48.0 - y)
        stem = np.maximum(np.maximum(np.abs(z - zs) * F32(np.cos(np.arctan(slope))) - 0.9, F32(self.x_insula) - ax), yr)
        vert = np.maximum(
            np.maximum(np.abs(ax - F32(self.x_insula)) - 0.8, np.maximum(z - zs - 13.0, zs - 12.0 - z)),
            np.maximum(y - 12.0, -40.0 - y),
        )
        return inter, np.minimum(stem, vert), x_mid, inside_arch

    # ------------------------------------------------------------ painting
    def paint(self, axes, spacing, *, detail=True, vessels=True):
        """Evaluate the head on the grid with the given physical axes (mm from the FOV centre).

        Returns a :class:`qsmflow.phantom.paint.Painted`; see :func:`qsmflow.phantom.paint.paint`.
        """
        return paint.paint(self, axes, spacing, detail=detail, vessels=vessels)

    def index_box(self, axes, lo, hi):
        """Index slices of the grid covering the template box [lo, hi] (grown by the deformation)."""
        out = []
        for i, a in enumerate(axes):
            plo = (lo[i] - _BOX_MARGIN - FOV_CENTRE[i]) * self.scale[i]
            phi = (hi[i] + _BOX_MARGIN - FOV_CENTRE[i]) * self.scale[i]
            i0, i1 = np.searchsorted(a, plo), np.searchsorted(a, phi, side="right")
            if i1 <= i0:
                return None
            out.append(slice(int(i0), int(i1)))
        return tuple(out)
