"""Magnetic fields of the numerical head phantom (private helper of :mod:`qsmflow.phantom`).

The total and local fields are dipole convolutions of susceptibility maps on the fine
simulation grid (zero-padded, air as the zero reference); the body outside the field of
view (neck, face) adds its field, computed on a coarse grid and made harmonic inside the
FOV; a scanner-like 2nd-order spherical-harmonic shim is removed from the total field.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft as sfft

from .. import kernels

logger = logging.getLogger(__name__)

F32 = np.float32

# Body outside the field of view: coarse grid spacing and extension (mm) per side.
_OUTSIDE_SPACING_MM = 4.0
_OUTSIDE_EXTENT_MM = ((24, 24), (24, 48), (144, 16))


def dipole_fields(sources, voxel_size, b0_dir):
    """Fields (ppm) of several χ maps on one grid, sharing one dipole kernel."""
    shape = sources[0].shape
    fshape = kernels.fft_shape(shape, [n // 2 for n in shape])
    d = kernels.dipole_kernel(fshape, voxel_size, b0_dir)
    out = []
    for src in sources:
        k = kernels.rfft(kernels.pad(src, fshape))
        k *= d
        field = kernels.irfft(k, fshape)
        del k
        out.append(np.ascontiguousarray(kernels.crop(field, shape), dtype=F32))
        del field
    return out


def outside_fov_field(model, shape, vs, b0_dir, fine_axes, tissues):
    """Field (ppm) inside the FOV of the body outside it (neck, face), on a coarse grid.

    ``tissues`` is the tissue table (:data:`qsmflow.phantom.TISSUES`).
    """
    fov = np.asarray(shape) * vs
    n_in = np.maximum(2, np.round(fov / _OUTSIDE_SPACING_MM)).astype(int)
    step = fov / n_in  # the FOV is tiled exactly by coarse cells
    axes, inside = [], []
    for i in range(3):
        lo, hi = (int(np.ceil(m / step[i])) for m in _OUTSIDE_EXTENT_MM[i])
        idx = np.arange(-lo, n_in[i] + hi)
        axes.append(-fov[i] / 2 + (idx + 0.5) * step[i])
        inside.append(slice(lo, lo + n_in[i]))
    painted = model.paint(axes, step, detail=False, vessels=False)
    chi = np.zeros(painted.labels.shape, F32)
    for name, t in tissues.items():
        if name != "air":
            chi[painted.labels == t.label] = t.chi_ppm - tissues["air"].chi_ppm
    chi[tuple(inside)] = 0.0
    field = kernels.forward_field(chi, step, b0_dir)
    # interpolate from the cells inside the FOV only: the field jumps across the FOV
    # boundary where the body is cut, and the fine grid lies entirely inside it
    coarse = _interp_separable(field[tuple(inside)], [a[s] for a, s in zip(axes, inside)], fine_axes)
    return _harmonic_interior(coarse, [a[1] - a[0] for a in fine_axes])


def _harmonic_interior(g, spacing):
    """The harmonic function equal to ``g`` on the grid's outer faces (Dirichlet problem).

    The body outside the FOV has no sources inside it, so its field there is harmonic;
    a coarse-grid computation cut at the FOV and interpolated is not (with oblique B0
    the sharp cut rings through the volume and V-SHARP could not remove it). Solving
    Laplace's equation with the interpolated values on the boundary restores a field
    of purely external sources: ``u = g + v`` with ``∇²v = -∇²g`` inside, ``v = 0`` on the
    faces, by a sine-transform Poisson solver.
    """
    g = np.asarray(g, np.float64)
    inner = tuple(slice(1, -1) for _ in range(3))
    lap = np.zeros(tuple(n - 2 for n in g.shape))
    for ax, h in enumerate(spacing):
        lo = [slice(1, -1)] * 3
        hi = [slice(1, -1)] * 3
        lo[ax], hi[ax] = slice(0, -2), slice(2, None)
        lap += (g[tuple(lo)] - 2 * g[inner] + g[tuple(hi)]) / (h * h)
    eig = 0.0
    for ax, (n, h) in enumerate(zip(lap.shape, spacing)):
        lam = (2 * np.cos(np.pi * np.arange(1, n + 1) / (n + 1)) - 2) / (h * h)
        view = [1, 1, 1]
        view[ax] = n
        eig = eig + lam.reshape(view)
    v = sfft.idstn(sfft.dstn(-lap, type=1, workers=kernels.threads()) / eig, type=1, workers=kernels.threads())
    out = g.copy()
    out[inner] += v
    return out.astype(F32)


def _interp_separable(a, src_axes, dst_axes):
    """Trilinear interpolation of ``a`` (on ``src_axes``) at the grid ``dst_axes``."""
    out = a
    for ax in range(3):
        src, dst = np.asarray(src_axes[ax]), np.asarray(dst_axes[ax])
        pos = np.clip((dst - src[0]) / (src[1] - src[0]), 0, src.size - 1)
        i0 = np.minimum(pos.astype(int), src.size - 2)
        w = (pos - i0).astype(F32)
        view = [1, 1, 1]
        view[ax] = -1
        w = w.reshape(view)
        out = np.take(out, i0, axis=ax) * (1 - w) + np.take(out, i0 + 1, axis=ax) * w
    return out.astype(F32)


def remove_shim(field, mask, axes):
    """Subtract (in place) the least-squares 0th-2nd order spherical harmonics over ``mask``."""
    step = max(1, int(round(np.cbrt(mask.sum() / 1.5e6))))
    sub = mask[::step, ::step, ::step]
    idx = np.nonzero(sub)
    x, y, z = (axes[i][::step][idx[i]] / 100.0 for i in range(3))

    def basis(x, y, z):
        return [np.ones_like(x * y * z), x, y, z, x * y, x * z, y * z, x * x - y * y, 2 * z * z - x * x - y * y]

    a = np.stack(basis(x, y, z), 1)
    c = np.linalg.lstsq(a, field[::step, ::step, ::step][idx].astype(np.float64), rcond=None)[0]
    gx, gy, gz = (np.asarray(axes[i]) / 100.0 for i in range(3))
    gx, gy, gz = gx[:, None, None], gy[None, :, None], gz[None, None, :]
    field -= (c[0] + c[1] * gx + (c[7] - c[8]) * gx * gx).astype(F32)
    field -= (c[2] * gy - (c[7] + c[8]) * gy * gy + c[4] * gx * gy).astype(F32)
    field -= (c[3] * gz + 2 * c[8] * gz * gz + c[5] * gx * gz + c[6] * gy * gz).astype(F32)
    logger.debug("phantom: shim coefficients %s", np.round(c, 3).tolist())

