"""Procedural anatomy of the numerical head phantom (private helper of :mod:`qsmflow.phantom`).

The head is a continuous description in millimetres: every structure is a signed distance
function (negative inside) of *template* coordinates, a smoothly and randomly deformed copy
of the physical coordinates, so the same seeded head can be evaluated on any grid (the fine
simulation grid, the output grid for labels at voxel centres, a coarse grid for the body
outside the field of view). Template coordinates are millimetres with x left→right,
y posterior→anterior, z inferior→superior and the origin near the anterior commissure;
positions follow the MNI atlas scaled by ~0.93 to an average adult head.

Nothing here knows about MRI: :mod:`qsmflow.phantom` turns the labels into tissue
properties and simulates the signal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

F32 = np.float32

# Label numbers (shared with qsmflow.phantom.TISSUES).
AIR, CSF, VENTRICLE, GM, WM = 0, 1, 2, 3, 4
CAUDATE, PUTAMEN, PALLIDUS, THALAMUS, RED_NUCLEUS, NIGRA, DENTATE = 5, 6, 7, 8, 9, 10, 11
CB_GM, CB_WM, BRAINSTEM, VEIN, SINUS, DURA = 12, 13, 14, 15, 16, 17
SOFT, FAT, BONE, MARROW, EYE, NERVE, CALCIFICATION, HAEMORRHAGE = 18, 19, 20, 21, 22, 23, 24, 25

# Template coordinates of the centre of the field of view: the head (scalp included) is
# centred in y and leaves ~10 mm of air above the vertex in a 160 mm tall FOV.
FOV_CENTRE = np.array([0.0, -12.5, 10.5])
# Largest displacement (mm) of the random deformation; bounding boxes grow by it.
_DEFORM_MM = 3.0
_BOX_MARGIN = _DEFORM_MM + 2.5
# Painting works on slabs of about this many voxels to bound temporary memory.
_SLAB_VOXELS = 3_000_000


# --------------------------------------------------------------------------- primitives


def _smin(a, b, k):
    """Polynomial smooth minimum (union of two SDFs) with blending width ``k`` mm."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _smax(a, b, k):
    """Smooth maximum (intersection)."""
    return -_smin(-a, -b, k)


def _sstep(x, e0, e1):
    """Cubic smooth step from 0 at ``e0`` to 1 at ``e1`` (``e0 > e1`` makes it decrease)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _rotation(yaw=0.0, pitch=0.0, roll=0.0):
    """Columns are the local axes in template coordinates: yaw about z, pitch about x, roll about y (deg)."""
    a, b, c = np.radians([yaw, pitch, roll])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    return rz @ rx @ ry


class Ellipsoid:
    """Ellipsoid SDF (first-order distance, exact on the surface)."""

    def __init__(self, centre, semi, rot=None):
        self.c = np.asarray(centre, float)
        self.a = np.asarray(semi, float)
        self.rot = None if rot is None else np.asarray(rot, float)
        r = self.a.max() if rot is not None else self.a
        self.lo, self.hi = self.c - r, self.c + r

    def local(self, q):
        d = [q[i] - F32(self.c[i]) for i in range(3)]
        if self.rot is None:
            return d
        m = self.rot
        return [F32(m[0, i]) * d[0] + F32(m[1, i]) * d[1] + F32(m[2, i]) * d[2] for i in range(3)]

    def rho(self, q):
        d = self.local(q)
        return np.sqrt(sum((di / F32(ai)) ** 2 for di, ai in zip(d, self.a)))

    def __call__(self, q):
        d = self.local(q)
        u2 = sum((di / F32(ai)) ** 2 for di, ai in zip(d, self.a))
        g2 = sum((di / F32(ai * ai)) ** 2 for di, ai in zip(d, self.a))
        rho = np.sqrt(u2)
        scale = np.clip(rho / (np.sqrt(g2) + F32(1e-9)), self.a.min(), self.a.max())
        return (rho - 1.0) * scale


def _segment_distance(q, a, b):
    """Distance from points ``q`` to the segment ``a``-``b`` and the segment parameter."""
    ab = b - a
    l2 = float(ab @ ab) or 1e-12
    d = [q[i] - F32(a[i]) for i in range(3)]
    t = np.clip((d[0] * F32(ab[0]) + d[1] * F32(ab[1]) + d[2] * F32(ab[2])) / F32(l2), 0.0, 1.0)
    dist = np.sqrt(sum((d[i] - t * F32(ab[i])) ** 2 for i in range(3)))
    return dist, t


class Tube:
    """Tapered tube along a polyline (SDF = distance to the polyline minus the local radius)."""

    def __init__(self, points, radii):
        self.p = np.asarray(points, float)
        self.r = np.broadcast_to(np.asarray(radii, float), (len(self.p),)).copy()
        self.lo = (self.p - self.r[:, None]).min(0)
        self.hi = (self.p + self.r[:, None]).max(0)

    def __call__(self, q):
        out = None
        for i in range(len(self.p) - 1):
            dist, t = _segment_distance(q, self.p[i], self.p[i + 1])
            f = dist - (F32(self.r[i]) + t * F32(self.r[i + 1] - self.r[i]))
            out = f if out is None else np.minimum(out, f)
        return out


def catmull_rom(points, step_mm):
    """Densify a polyline with a uniform Catmull-Rom spline through its points (step in mm)."""
    p = np.asarray(points, float)
    if len(p) < 3:
        return p
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = [p[0]]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        n = max(1, int(np.ceil(np.linalg.norm(p2 - p1) / step_mm)))
        t = (np.arange(1, n + 1) / n)[:, None]
        seg = 0.5 * (
            2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
        )
        out.extend(seg)
    return np.array(out)


class TensorNoise:
    """Smooth Gaussian random field: a random real Fourier series on a periodic box.

    The field is a tensor product of 1D cosine/sine bases, so it is evaluated on a grid by
    three small matrix products, at any resolution, and gives the same values at the same
    millimetre positions whatever the grid. Unit variance, zero mean, correlation length
    about ``wavelength`` mm.
    """

    def __init__(self, rng, wavelength, period=256.0, cutoff=1.6):
        n = max(1, int(np.ceil(period * cutoff / wavelength)))
        self.freqs = np.arange(1, n + 1) / period
        f_axis = np.concatenate([[0.0], np.repeat(self.freqs, 2)])
        w_axis = np.concatenate([[1.0], np.full(2 * n, 0.5)])
        fmag = np.sqrt(f_axis[:, None, None] ** 2 + f_axis[None, :, None] ** 2 + f_axis[None, None, :] ** 2)
        amp = np.exp(-((fmag * wavelength) ** 2)) * (fmag * wavelength <= cutoff)
        amp[0, 0, 0] = 0.0
        c = rng.standard_normal(amp.shape) * amp
        var = np.einsum("ijk,i,j,k->", c * c, w_axis, w_axis, w_axis)
        self.c = (c / np.sqrt(var)).astype(F32)

    def _basis(self, x):
        ang = (2 * np.pi) * np.asarray(x, float).reshape(-1)[:, None] * self.freqs[None, :]
        b = np.empty((ang.shape[0], 2 * self.freqs.size + 1), F32)
        b[:, 0] = 1.0
        b[:, 1::2] = np.cos(ang)
        b[:, 2::2] = np.sin(ang)
        return b

    def grid(self, ax, ay, az):
        bx, by, bz = self._basis(ax), self._basis(ay), self._basis(az)
        t = np.tensordot(self.c, bz, axes=([2], [1]))  # (i, j, z)
        t = np.tensordot(t, by, axes=([1], [1]))  # (i, z, y)
        t = np.tensordot(bx, t, axes=([1], [0]))  # (x, z, y)
        return np.ascontiguousarray(t.transpose(0, 2, 1), dtype=F32)

    def points(self, x, y, z):
        bx, by, bz = self._basis(x), self._basis(y), self._basis(z)
        t = np.tensordot(bz, self.c, axes=([1], [2]))  # (n, i, j)
        return np.einsum("nij,ni,nj->n", t, bx, by, optimize=True)


class SulcalMap:
    """Random gyral pattern on a sphere, stored as a cube map.

    The zero set of a sum of random plane waves (wavelength ~ gyral spacing) restricted to
    a sphere of radius ``radius`` mm is a network of lines; extruded radially it gives
    sheets perpendicular to the brain surface: the sulci. The map stores the signed
    distance (mm on the sphere) to the nearest zero line, ``n / |grad_t n|``.
    """

    def __init__(self, rng, wavelength, n_waves=96, radius=60.0):
        v = rng.standard_normal((n_waves, 3))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        kmag = 2 * np.pi / wavelength * np.exp(0.15 * rng.standard_normal(n_waves))
        self.k = v * kmag[:, None]
        self.phase = rng.uniform(0, 2 * np.pi, n_waves)
        self.radius = radius
        self.tex = None

    def build(self, n):
        t = (np.arange(n) + 0.5) / n * 2 - 1
        a, b = np.meshgrid(t, t, indexing="ij")
        faces = []
        for axis in range(3):
            o1, o2 = [i for i in range(3) if i != axis]
            for sign in (1.0, -1.0):
                d = np.empty((n * n, 3))
                d[:, axis] = sign
                d[:, o1] = a.ravel()
                d[:, o2] = b.ravel()
                d /= np.linalg.norm(d, axis=1, keepdims=True)
                faces.append(d)
        d = np.concatenate(faces)
        tex = np.empty(len(d), F32)
        for start in range(0, len(d), 65536):
            dd = d[start : start + 65536]
            arg = (dd * self.radius) @ self.k.T + self.phase
            val = np.cos(arg).sum(1)
            grad = -np.sin(arg) @ self.k
            grad -= dd * np.sum(grad * dd, axis=1, keepdims=True)
            g = np.maximum(np.linalg.norm(grad, axis=1), 0.05 * np.linalg.norm(self.k, axis=1).mean())
            tex[start : start + 65536] = val / g
        self.n = n
        self.tex = tex

    def lookup(self, u):
        """Signed distance on the sphere for unit directions ``u`` (tuple of 1D arrays)."""
        n = self.n
        au = np.abs(np.stack(u))
        m = np.argmax(au, axis=0)
        out = np.empty(u[0].shape, F32)
        for axis in range(3):
            o1, o2 = [i for i in range(3) if i != axis]
            sel = m == axis
            if not sel.any():
                continue
            den = au[axis][sel]
            face = 2 * axis + (u[axis][sel] < 0)
            fa = np.clip((u[o1][sel] / den + 1) * 0.5 * n - 0.5, 0, n - 1)
            fb = np.clip((u[o2][sel] / den + 1) * 0.5 * n - 0.5, 0, n - 1)
            ia = np.minimum(fa.astype(np.int64), n - 2)
            ib = np.minimum(fb.astype(np.int64), n - 2)
            wa, wb = (fa - ia).astype(F32), (fb - ib).astype(F32)
            base = (face * n + ia) * n + ib
            t = self.tex
            lo = t[base] * (1 - wa) + t[base + n] * wa
            hi = t[base + 1] * (1 - wa) + t[base + n + 1] * wa
            out[sel] = lo * (1 - wb) + hi * wb
        return out


# --------------------------------------------------------------------------- the head


@dataclass
class Painted:
    """Result of evaluating the head on a grid."""

    labels: np.ndarray  # uint8 tissue label at each grid point (veins not included)
    brain: np.ndarray  # bool, inside the brain hull (parenchyma, ventricles, sulcal CSF)
    vessel_cover: np.ndarray | None  # uint8 0..255 fraction of the voxel covered by blood vessels
    vessel_type: np.ndarray | None  # uint8 label (VEIN or SINUS) of the covering vessel


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
        self._build_vessels(veins)

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
        def jit(sd):
            return rng.normal(0.0, sd)

        def s(v):  # random size factor
            return 1.0 + float(np.clip(rng.normal(0, v), -2 * v, 2 * v))

        def mirror(sg, pts):  # points given for the right hemisphere, mirrored to side sg
            p = np.array(pts, float)
            p[:, 0] *= sg
            return p

        self.E1 = Ellipsoid((0, -14, 9), (60.5 * s(0.015), 74.5 * s(0.015), 57 * s(0.02)))
        self.temporal = [
            Ellipsoid((sg * 42, -14, -21), (19, 37, 18), _rotation(pitch=-10)) for sg in (-1, 1)
        ]
        self.cb = [Ellipsoid((sg * 21, -61, -35), (27 * s(0.03), 28, 21 * s(0.03))) for sg in (-1, 1)]
        self.cb.append(Ellipsoid((0, -60, -31), (11, 26, 21)))
        self.bs = [
            Ellipsoid((0, -21, -6), (12.5, 10, 9)),
            Ellipsoid((0, -25, -25), (13.5, 11.5, 11), _rotation(pitch=-8)),
            Ellipsoid((0, -33, -44), (9, 8.5, 12), _rotation(pitch=15)),
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
        vs = s(0.15) + 0.1  # ventricle size factor (age, individual variation)
        # deep grey matter (both hemispheres)
        self.nuclei = []
        for sg in (-1, 1):
            j = [np.array([jit(0.8), jit(0.8), jit(0.8)]) for _ in range(6)]
            self.nuclei += [
                (THALAMUS, Ellipsoid(mirror(sg, [(11, -18, 7)])[0] + j[2], (8.5 * s(0.05), 16 * s(0.05), 10),
                                     _rotation(yaw=sg * 15))),
                (PUTAMEN, Ellipsoid(mirror(sg, [(24.5, 2, 1)])[0] + j[0], (6.0 * s(0.06), 16 * s(0.06), 11),
                                    _rotation(yaw=sg * 10, roll=sg * 12))),
                (PALLIDUS, Ellipsoid(mirror(sg, [(18, -3, -1)])[0] + j[1], (4.5, 10 * s(0.06), 6.5),
                                     _rotation(yaw=sg * 12, roll=sg * 15))),
                (GM, Ellipsoid(mirror(sg, [(22, 0, -19)])[0] + j[3], (7, 7.5, 6.5))),  # amygdala
                (GM, Tube(mirror(sg, [(26, -6, -21), (28, -18, -16), (27, -30, -9), (22, -38, -2)]),  # hippocampus
                          [4.5, 4.2, 3.5, 2.5])),
                (RED_NUCLEUS, Ellipsoid(mirror(sg, [(4.5, -19, -8)])[0] + 0.4 * j[4], (3.0, 3.6, 3.5))),
            ]
            # substantia nigra: a curved band along the cerebral peduncle, lateral to the red nucleus
            for cx, cy, cz in [(12, -13, -10.5), (10, -17, -11), (7.5, -21, -11.5)]:
                self.nuclei.append(
                    (NIGRA, Ellipsoid(mirror(sg, [(cx, cy, cz)])[0] + 0.4 * j[5], (1.9, 4.2, 3.6),
                                      _rotation(yaw=sg * 40, roll=-sg * 20)))
                )
        self.caudate = []
        for sg in (-1, 1):
            jj = np.array([jit(0.7), jit(0.7), jit(0.7)])
            self.caudate.append(Ellipsoid(mirror(sg, [(13.5, 11, 9)])[0] + jj, (5.5, 10 * s(0.06), 9)))
            body = mirror(sg, [(15.5, 2, 15), (17.5, -10, 17.5), (21, -25, 16.5), (24, -33, 12)])
            self.caudate.append(Tube(body + jj, [3.8, 2.8, 2.0, 1.4]))
        self.dentate = [
            Ellipsoid(mirror(sg, [(14, -56, -31)])[0] + rng.normal(0, 0.6, 3), (7, 9, 6.5), _rotation(yaw=sg * 25))
            for sg in (-1, 1)
        ]
        # ventricles (sizes scaled by vs)
        self.ventricles = []
        for sg in (-1, 1):
            self.ventricles += [
                Ellipsoid((sg * (2.0 + 4.2 * vs), 12, 12), (4.6 * vs, 13, 7.0 * vs), _rotation(roll=-sg * 25)),
                Ellipsoid((sg * (2.5 + 6.0 * vs), -14, 14.5), (6.2 * vs, 17, 4.6 * vs), _rotation(roll=-sg * 25)),
                Ellipsoid((sg * 20, -35, 12), (6.0 * vs, 8, 7.0 * vs)),
                Tube(mirror(sg, [(21, -39, 11), (19.5, -52, 9), (16, -62, 7)]), np.array([3.0, 2.2, 1.0]) * vs),
                Tube(mirror(sg, [(25, -35, 6), (31, -29, -4), (31, -18, -12.5), (28.5, -6, -17)]),
                     np.array([3.0, 2.5, 2.0, 1.4]) * vs),
            ]
        self.third = Ellipsoid((0, -12, -1), (2.2 * vs, 15, 10))
        self.aqueduct = Tube([(0, -27, -3), (0, -33, -12), (0, -38, -21)], 1.0)
        self.fourth = Ellipsoid((0, -39.5, -30), (7, 3.5, 8), _rotation(pitch=20))
        self.optic = []
        for sg in (-1, 1):
            self.optic.append(
                Tube(  # optic nerve, chiasm, optic tract
                    mirror(sg, [(31, 48.5, -40), (22, 35, -36), (12, 20, -30), (5, 5, -18), (0, 2, -15.5), (8, -4, -14),
                                (16, -14, -10), (22, -24, -6)]),
                    [1.8, 1.8, 1.7, 1.6, 2.0, 1.6, 1.5, 1.3],
                )
            )
        self.cavernous = [Ellipsoid((sg * 13, -1, -27), (4, 9, 5.5)) for sg in (-1, 1)]
        self.pituitary = Ellipsoid((0, -2, -25), (6.5, 5, 4))
        # skull base, face, air
        fs = s(0.12)
        self.frontal_sinus = [
            Ellipsoid((sg * 8 * fs, 69, 4), (9 * fs, 7.0, 11 * fs), _rotation(roll=sg * 15)) for sg in (-1, 1)
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
            Tube(mirror(sg, [(80, -32, -43), (56, -31, -41), (42, -30, -40)]), [4.0, 3.5, 3.0]) for sg in (-1, 1)
        ]
        self.petrous = [Ellipsoid((sg * 32, -31, -41), (28, 10, 9), _rotation(yaw=sg * 50)) for sg in (-1, 1)]
        self.clivus = Ellipsoid((0, -8, -40), (13, 24, 11), _rotation(pitch=40))
        self.orbit = [Ellipsoid((sg * 27, 52, -38), (15, 25, 15), _rotation(yaw=-sg * 22, pitch=-10)) for sg in (-1, 1)]
        self.eye = [Ellipsoid((sg * 31, 60.5, -40), (12, 12, 12)) for sg in (-1, 1)]
        self.lids = [Ellipsoid((sg * 31, 61.5, -40), (14.5, 14.5, 15)) for sg in (-1, 1)]
        self.vertebrae = [Ellipsoid((0, -21, z), (9, 8, 6.5)) for z in (-92, -110, -128, -146, -164, -182)]
        self.dens = Ellipsoid((0, -24, -78), (5, 5, 9))
        self.mandible = [
            Tube(mirror(sg, [(48, -22, -52), (47, -14, -78), (45, -10, -100), (30, 25, -108), (0, 55, -112)]), 6.0)
            for sg in (-1, 1)
        ]
        self.face = Ellipsoid((0, 36, -62), (60, 41, 42))
        self.nose = Ellipsoid((0, 79, -56), (9, 11, 18), _rotation(pitch=-20))
        self.neck = Ellipsoid((0, -16, -180), (55, 58, 135))

    def _build_lesions(self, rng):
        out = []
        for label, centre, semi in ((CALCIFICATION, (-24, 24, 28), 2.8), (HAEMORRHAGE, (28, -38, 30), 3.6)):
            c = np.array(centre) + rng.normal(0, 1.5, 3)
            a = semi * np.exp(rng.normal(0, 0.12, 3))
            out.append((label, Ellipsoid(c, a, _rotation(yaw=rng.uniform(0, 90), pitch=rng.uniform(0, 90)))))
        return out

    # ------------------------------------------------------------ composite SDFs (template coordinates)
    def _w_medial(self, q):
        """1 under the diencephalon (where the brainstem joins), fading out over ~8 mm."""
        x, y, _ = q
        rho = np.sqrt((x / F32(16.0)) ** 2 + ((y + F32(17.0)) / F32(25.0)) ** 2)
        return _sstep(rho, 1.0, 0.55)

    def cerebral_envelope(self, q):
        floor = F32(-23.0) + F32(9.0) * self._w_medial(q)
        env = _smax(self.E1(q), floor - q[2], 6.0)
        for t in self.temporal:
            env = _smin(env, t(q), 8.0)
        return env

    def cerebellum(self, q):
        out = self.cb[0](q)
        for e in self.cb[1:]:
            out = _smin(out, e(q), 5.0)
        return out

    def brainstem(self, q):
        out = self.bs[0](q)
        for e in self.bs[1:]:
            out = _smin(out, e(q), 5.0)
        return _smin(out, self.cord(q), 4.0)

    def icv(self, q, low0=None):
        """Intracranial (and spinal canal) cavity: the brain grown by the CSF layer."""
        u = _smin(_smin(self.cerebral_envelope(q), self.cerebellum(q), 6.0), self.brainstem(q), 6.0)
        for c in self.cisterns:
            u = _smin(u, c(q), 5.0)
        u = _smin(u, self.canal(q), 4.0)
        if low0 is None:
            low0 = self.low[0].points(*q).astype(F32)
        return u - self._csf_thickness(low0)

    def _csf_thickness(self, low):
        """Subarachnoid CSF layer between brain and skull: ~1.3-5 mm, 2.6 mm typical."""
        return F32(self.csf_margin) * np.exp(F32(0.22) * np.clip(low, -3.0, 3.0))

    def _skull_thickness(self, q, low):
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

    def _fissure(self, q, meander=None):
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
        """Evaluate the head on the grid with the given physical axes (mm from the FOV centre)."""
        ax, ay, az = (np.asarray(a, float) for a in axes)
        shape = (ax.size, ay.size, az.size)
        if detail and self.sulci[0].tex is None:
            self.prepare(spacing)
        labels = np.zeros(shape, np.uint8)
        brain = np.zeros(shape, bool)
        step = max(1, _SLAB_VOXELS // (shape[1] * shape[2]))
        for x0 in range(0, shape[0], step):
            sl = slice(x0, min(shape[0], x0 + step))
            self._paint_slab(labels[sl], brain[sl], (ax[sl], ay, az), detail)
        cover = vtype = None
        if vessels:
            cover, vtype = self._paint_vessels((ax, ay, az), spacing)
        return Painted(labels, brain, cover, vtype)

    def _index_box(self, axes, lo, hi):
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

    def _paint_slab(self, lab, brain, axes, detail):
        q = self.template_grid(*axes)

        def box(lo, hi):
            return self._index_box(axes, np.asarray(lo, float), np.asarray(hi, float))

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

        low = [f.grid(*axes) for f in self.low[:3]]
        # 1. head: soft tissue, subcutaneous fat, skull with diploë
        env = self.cerebral_envelope(q)
        cb = self.cerebellum(q)
        bs = self.brainstem(q)
        u = _smin(_smin(env, cb, 6.0), bs, 6.0)
        for c in self.cisterns:
            u = _smin(u, c(q), 5.0)
        u = _smin(u, self.canal(q), 4.0)
        icv = u - self._csf_thickness(low[0])
        del u
        thick = self._skull_thickness(q, low[1])
        head = icv - thick - (F32(self.scalp_mm) + F32(0.8) * low[2])
        for part in (self.face, self.nose, self.neck):
            head = _smin(head, part(q), 14.0)
        for lid in self.lids:
            head = _smin(head, lid(q), 5.0)
        lab[head < 0] = SOFT
        lab[(head < -1.5) & (head > -4.2)] = FAT
        del head
        bone = (icv >= 0) & (icv < thick)
        lab[bone] = BONE
        lab[bone & (icv > 1.4) & (icv < thick - 1.5)] = MARROW
        del bone
        # 2. skull base, face bones, spine, bony walls of the cavities and orbits
        paint(self.petrous, BONE)
        paint([self.clivus], BONE, inner=(-2.0, MARROW))
        paint(self.vertebrae + [self.dens], BONE, inner=(-1.5, MARROW))
        paint(self.mandible, BONE, inner=(-2.0, MARROW))
        cavities = self.frontal_sinus + self.ethmoid + [self.sphenoid] + self.maxillary + self.nasal
        cavities += self.mastoid + self.middle_ear
        inside_head = lab != AIR
        paint(cavities + self.orbit, BONE, level=1.6, where=inside_head)
        paint(self.orbit, FAT)
        paint(self.eye, EYE)
        paint([self.pituitary], SOFT)
        # 3. air: sinuses, air cells, ear canals, airway
        paint(self.maxillary + self.nasal + self.middle_ear + self.ear_canal + [self.airway], AIR)
        in_bone = (icv > 1.3) & (icv < thick - 1.3)
        paint(self.frontal_sinus, AIR, where=in_bone)
        del in_bone, inside_head
        b = box(self.sphenoid.lo, self.sphenoid.hi)
        if b is not None:
            qq = sub(b)
            view = lab[b]
            view[(self.sphenoid(qq) < 0) & (np.abs(qq[0] - F32(self.sphenoid_septum)) > 0.7)] = AIR
        for e, thr in [(e, -0.35) for e in self.ethmoid] + [(e, -0.1) for e in self.mastoid]:
            b = box(e.lo, e.hi)
            if b is not None:
                cells = self.cells.grid(*(a[s] for a, s in zip(axes, b)))
                view = lab[b]
                view[(e(sub(b)) < 0) & (cells > thr)] = AIR
        # 4. intracranial CSF, then the brain
        lab[icv < 0] = CSF
        brain[...] = _smin(_smin(env, cb, 4.0), bs, 4.0) < 0
        del icv, thick
        if not detail:
            lab[brain] = WM
            return
        self._paint_cerebrum(lab, q, env, cb, low, axes)
        self._paint_cerebellum(lab, q, cb, axes)
        lab[bs < 0] = BRAINSTEM
        del env, cb, bs
        self._paint_deep(lab, q, axes, box, sub, paint)

    def _paint_cerebrum(self, lab, q, env, cb, low, axes):
        cerebrum = _smax(env, F32(3.0) - cb, 3.0)
        idx = np.nonzero(cerebrum < 0)
        if idx[0].size == 0:
            return
        qi = tuple(c[idx] for c in q)
        depth = -cerebrum[idx]
        del cerebrum
        # no cortex on the medial floor (hypothalamus, where the brainstem joins)
        depth_ctx = depth + F32(40.0) * self._w_medial(qi) * _sstep(qi[2], 8.0, 2.0)
        slow = self.meander[1].grid(*axes)
        inter, sylvian, x_mid, _ = self._fissure(qi, slow[idx])
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
            d[0] = d[0] * _sstep(inter[cand] - depth_ctx[cand], -4.0, 4.0)
            r = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2) + F32(1e-6)
            u = [di / r for di in d]
            right = qi[0][cand] > x_mid[cand]
            s = np.empty(cand.size, F32)
            for hemi, m in ((0, ~right), (1, right)):
                if m.any():
                    s[m] = self.sulci[hemi].lookup([ui[m] for ui in u])
            s *= r / F32(self.sulci[0].radius)
            # bend the sheets in 3D so that sulci meander in every section
            sel = tuple(i[cand] for i in idx)
            s += F32(2.0) * self.meander[0].grid(*axes)[sel] + F32(3.0) * slow[sel]
            pd = pial[cand]
            half = F32(0.45) + F32(0.6) * np.exp(-pd / F32(2.0))
            pial[cand] = np.minimum(pd, np.maximum(np.abs(s) - half, pd - max_depth[cand]))
        pial = np.minimum(pial, sylvian)
        thick = F32(2.7) + F32(0.35) * low[2][idx]
        lab[idx] = np.where(pial < 0, CSF, np.where(pial < thick, GM, WM)).astype(np.uint8)

    def _paint_cerebellum(self, lab, q, cb, axes):
        idx = np.nonzero(cb < 0)
        if idx[0].size == 0:
            return
        qi = tuple(c[idx] for c in q)
        depth = -cb[idx]
        # folia: transverse sheets fanning out of an axis through the fastigium; deep
        # fissures between lobules, shallow ones between folia
        dy, dz = qi[1] + F32(44.0), qi[2] + F32(28.0)
        r = np.sqrt(dy * dy + dz * dz) + F32(1e-6)
        theta = np.arctan2(dz, dy) + F32(0.13) * self.folia_noise.grid(*axes)[idx]
        d1 = F32(2 * np.pi / 15)
        d2 = d1 / F32(4.0)
        a1 = np.abs(theta - d1 * np.round(theta / d1)) * r - F32(0.45)
        a2 = np.abs(theta - d2 * np.round(theta / d2)) * r - F32(0.3)
        p = np.minimum(depth, np.maximum(a1, depth - F32(17.0)))
        p = np.minimum(p, np.maximum(a2, depth - F32(4.5)))
        lab[idx] = np.where(p < 0, CSF, np.where(p < 1.4, CB_GM, CB_WM)).astype(np.uint8)

    def _paint_deep(self, lab, q, axes, box, sub, paint):
        # corpus callosum over the ventricles
        b = box((-24, -48, -14), (24, 32, 26))
        if b is not None:
            x, y, z = sub(b)
            outer = ((y + 8) / F32(37.0)) ** 2 + ((z - 6) / F32(17.0)) ** 2
            inner = ((y + 8) / F32(31.0)) ** 2 + ((z - 6) / F32(10.0)) ** 2
            view = lab[b]
            view[(outer < 1) & (inner > 1) & (np.abs(x) < 20) & (z > 0)] = WM
        paint(self.ventricles, VENTRICLE)
        paint(self.caudate, CAUDATE)
        for label, e in self.nuclei:
            paint([e], label)
        paint([self.third, self.aqueduct, self.fourth], VENTRICLE)
        for e in self.dentate:
            bb = box(e.lo, e.hi)
            if bb is None:
                continue
            qq = sub(bb)
            rho = e.rho(qq) + F32(0.07) * self.cells.grid(*(a[s] for a, s in zip(axes, bb)))
            d = e.local(qq)
            # a crumpled shell, its hilum open medially and upwards
            sg = F32(np.sign(e.c[0]))
            hil = (-sg * d[0] * F32(0.6) + d[2] * F32(0.8)) / (np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2) + F32(1e-6))
            view = lab[bb]
            view[(rho < 1.0) & (rho > 0.68) & (hil < 0.55)] = DENTATE
        paint(self.optic, NERVE)
        paint(self.cavernous, SINUS)
        # dura: falx in the interhemispheric fissure, tentorium over the cerebellum
        bb = box((-8, -100, -40), (8, 75, 75))
        if bb is not None:
            qq = sub(bb)
            inter, _, x_mid, inside_arch = self._fissure(qq, self.meander[1].grid(*(a[s] for a, s in zip(axes, bb))))
            view = lab[bb]
            view[(np.abs(qq[0] - x_mid) < 0.45) & (inside_arch < -4.0) & (inter < 0) & (view == CSF)] = DURA
        bb = box((-60, -95, -35), (60, -30, -5))
        if bb is not None:
            qq = sub(bb)
            c = self.cerebellum(qq)
            view = lab[bb]
            view[(np.abs(c - F32(1.6)) < 0.45) & (qq[2] > -30.0) & (qq[1] < -36.0) & (view == CSF)] = DURA
        for label, e in self.lesions:
            bb = box(e.lo, e.hi)
            if bb is not None:
                view = lab[bb]
                view[e.rho(sub(bb)) + F32(0.25) * self.cells.grid(*(a[s] for a, s in zip(axes, bb))) < 1.0] = label

    # ------------------------------------------------------------ vessels
    @staticmethod
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

    def _build_vessels(self, rng):
        """Venous sinuses and veins: polylines (template space) mapped to physical space."""
        curves = []  # (control points, radii, type, step)

        def add(points, radii, vtype, step=2.0):
            p = np.asarray(points, float)
            curves.append((p, np.broadcast_to(np.asarray(radii, float), (len(p),)).copy(), vtype, step))

        env = self.cerebral_envelope
        # superior sagittal sinus: under the inner table along the midline
        phi = np.radians(np.linspace(32, 208, 16))
        sss = np.stack([np.zeros_like(phi), -14 + 80 * np.cos(phi), 9 + 64 * np.sin(phi)], 1)
        rad = np.linspace(2.2, 4.3, len(sss))
        sss = self._snap(sss, self.icv, -0.8 * rad)
        sss[:, 0] = self.midline(sss)
        add(sss, rad, SINUS)
        torcular = sss[-1]
        # transverse and sigmoid sinuses down to the internal jugular veins
        dom = rng.uniform(0.75, 1.0)
        for sg in (-1, 1):
            k = dom if sg < 0 else 1.0
            tr = [(16, -91, -13), (32, -86, -16), (46, -74, -21), (52, -60, -26), (52, -48, -33), (48, -40, -43),
                  (44, -35, -52)]
            tr = np.array(tr, float) * [sg, 1, 1]
            tr = self._snap(tr, self.icv, -1.2 * k)
            jug = np.array([(sg * 42, -31, -64), (sg * 40, -26, -80), (sg * 37, -15, -120), (sg * 34, -8, -300)], float)
            rad = np.concatenate([[4.3], np.full(len(tr), 4.0 * k), [4.8, 5.5, 6.0, 6.0]])
            add(np.vstack([torcular, tr, jug]), rad, SINUS)
        # straight sinus, great vein of Galen, inferior sagittal sinus
        straight = np.array([(0, -43, 4), (0, -60, -2), (0, -76, -8)], float)
        straight[:, 0] = self.midline(straight)
        add(np.vstack([straight, torcular]), [2.0, 2.4, 2.6, 3.0], SINUS)
        add([(0, -36, 8), (0, -41, 6), (0, -43, 4)], [1.8, 2.2, 2.3], VEIN)
        ang = np.radians(np.linspace(25, 160, 10))
        isss = np.stack([np.zeros_like(ang), -8 + 42 * np.cos(ang), 6 + 23 * np.sin(ang)], 1)
        isss[:, 0] = self.midline(isss)
        add(np.vstack([isss, [(0, -41, 6)]]), np.linspace(0.7, 1.2, len(isss) + 1), SINUS)
        # deep veins: internal cerebral, thalamostriate, basal veins of Rosenthal
        for sg in (-1, 1):
            m = np.array([sg, 1.0, 1.0])
            add(np.array([(2.6, 1, 12.5), (2.6, -12, 11.5), (2.2, -26, 10), (1.3, -34, 8.5), (0, -38, 7.5)]) * m,
                [0.9, 1.0, 1.1, 1.3, 1.5], VEIN)
            add(np.array([(20, -29, 16), (16, -15, 18), (11.5, -3, 16.5), (3.2, 1.5, 12.5)]) * m,
                [0.6, 0.7, 0.8, 0.9], VEIN)
            add(np.array([(19, 3, -17), (18, -8, -14.5), (15.5, -20, -10.5), (9.5, -32, -3), (3, -38, 5)]) * m,
                [0.8, 0.9, 1.0, 1.1, 1.2], VEIN)
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
        pts = self._snap(np.vstack([p for p, _ in surface]), env, np.concatenate([r + 0.4 for _, r in surface]))
        start = 0
        for p, r in surface:
            add(pts[start : start + len(p)], r, VEIN)
            start += len(p)
        # medullary veins: thin, tortuous, fanning out of the lateral ventricles through the
        # white matter in every direction, up to ~6 mm under the cortex
        anchors = [e for e in self.ventricles if isinstance(e, Ellipsoid)]
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
        # densify and map to physical space in one batch (the painter uses true radii there)
        dense = []
        for ctrl, rad, vtype, _ in curves:
            pts = catmull_rom(ctrl, 1.5)
            s_ctrl = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1))])
            s_dense = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
            s_dense *= s_ctrl[-1] / max(s_dense[-1], 1e-9)
            dense.append((pts, np.interp(s_dense, s_ctrl, rad), vtype))
        phys = self.physical(np.vstack([p for p, _, _ in dense]))
        self.segments = []
        start = 0
        for pts, rad, vtype in dense:
            self.segments.append((phys[start : start + len(pts)], rad, vtype))
            start += len(pts)
        logger.debug("phantom vessels: %d curves, %d segments", len(self.segments), start - len(self.segments))

    def _paint_vessels(self, axes, spacing):
        shape = tuple(a.size for a in axes)
        cover = np.zeros(shape, np.uint8)
        vtype = np.zeros(shape, np.uint8)
        h = float(np.prod(spacing)) ** (1.0 / 3.0)
        origin = np.array([a[0] for a in axes])
        step = np.array([a[1] - a[0] if a.size > 1 else 1.0 for a in axes])
        axes32 = [a.astype(F32) for a in axes]
        # curves are stored every ~1.5 mm; coarse grids use longer straight segments
        every = max(1, int(h / 0.75))
        for pts, rad, vt in self.segments:
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
                dist, t = _segment_distance(g, a[i], b[i])
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
