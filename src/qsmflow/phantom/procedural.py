"""Procedural geometry for the numerical head phantom (private helper of :mod:`qsmflow.phantom.geometry`).

Generic building blocks, none of which knows about anatomy: smooth boolean operations on
signed distance functions (SDFs, negative inside), rotations, ellipsoid and tapered-tube
SDFs, Catmull-Rom densification of polylines, smooth Gaussian random fields that can be
evaluated at any resolution, and the random gyral pattern on a sphere that folds the cortex.
All lengths are millimetres; fields are evaluated in float32.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def smin(a, b, k):
    """Polynomial smooth minimum (union of two SDFs) with blending width ``k`` mm."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def smax(a, b, k):
    """Smooth maximum (intersection)."""
    return -smin(-a, -b, k)


def sstep(x, e0, e1):
    """Cubic smooth step from 0 at ``e0`` to 1 at ``e1`` (``e0 > e1`` makes it decrease)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def rotation(yaw=0.0, pitch=0.0, roll=0.0):
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


def segment_distance(q, a, b):
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
            dist, t = segment_distance(q, self.p[i], self.p[i + 1])
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
