"""The discrete problem every iterative dipole inversion shares.

The local field and its weights live on the mask's bounding box, zero-padded so that
periodic copies of the field stay apart; the dipole convolution is an FFT product and
the gradient is a forward difference per mm with periodic wrap (its k-space symbol
``|G(k)|² = Σ (2 - 2cos 2πk_i/N_i)/h_i²`` is :func:`kernels.gradient_kernel_sq`), so
``DᵀD`` and ``GᵀG`` are both diagonal in k-space.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from .._shared import parallel


class Problem:
    """Field, weights and operators of one inversion on a padded box (all float32)."""

    def __init__(self, field: np.ndarray, mask: np.ndarray, vs: np.ndarray, b0: np.ndarray,
                 weights: np.ndarray, pad: int):
        self.box = kernels.PaddedBox(mask, pad=pad)
        self.full_shape, self.shape = self.box.full_shape, self.box.shape
        m = self.box.cut(mask)
        self.vs = np.asarray(vs, float)
        self.mask = self.put(m)
        self.f = self.put(np.where(m, self.box.cut(field), 0))
        self.w = self.put(np.where(m, self.box.cut(weights), 0))
        self.d = kernels.dipole_kernel(self.shape, vs, b0)
        self.g2 = kernels.gradient_kernel_sq(self.shape, vs)

    def put(self, x: np.ndarray) -> np.ndarray:
        """A box-sized array (or a full volume already cut to the box) on the padded grid."""
        return self.box.put(x)

    def cut(self, full: np.ndarray) -> np.ndarray:
        """A full-size volume's box on the padded grid."""
        return self.box.put(self.box.cut(full))

    def full(self, x: np.ndarray) -> np.ndarray:
        """The padded-grid array ``x`` back on the full volume (float32), zero outside the mask."""
        return self.box.full(np.where(self.mask > 0, x, 0), np.float32)

    def fft(self, x: np.ndarray) -> np.ndarray:
        return kernels.rfft(x)

    def ifft(self, xk: np.ndarray) -> np.ndarray:
        return kernels.irfft(xk, self.shape).astype(np.float32, copy=False)

    def dipole(self, x: np.ndarray) -> np.ndarray:
        """``D * x``: the field (ppm) of χ ``x`` (ppm)."""
        xk = self.fft(x)
        parallel.ufunc(np.multiply, xk, self.d, out=xk)
        return self.ifft(xk)

    def grad(self, x: np.ndarray) -> np.ndarray:
        """Forward differences per mm, periodic: shape ``(3,) + x.shape``."""
        out = np.empty((3,) + x.shape, np.float32)

        def diff(a, ix):  # component a on the slab ix (which spans axis a whole)
            o = np.moveaxis(out[a][ix], a, 0)
            xa = np.moveaxis(x[ix], a, 0)
            np.subtract(xa[1:], xa[:-1], out=o[:-1])
            np.subtract(xa[0], xa[-1], out=o[-1])
            if self.vs[a] != 1.0:
                o *= np.float32(1.0 / self.vs[a])

        # the first axis' differences on slabs of the second axis, the others on slabs of the first
        parallel.each(lambda part: diff(0, (slice(None), part)), parallel.slabs(x.shape[1], x.size))
        parallel.each(lambda part: [diff(a, (part,)) for a in (1, 2)], parallel.slabs(x.shape[0], x.size))
        return out

    def grad_adj(self, z: np.ndarray) -> np.ndarray:
        """Adjoint of :meth:`grad` (minus the backward-difference divergence)."""
        out = np.empty(z.shape[1:], np.float32)
        tmp = np.empty(out.shape, np.result_type(z.dtype, np.float32))  # float64 input: summed as float64 terms
        direct = tmp.dtype == np.float32

        def back(a, dst, ix):  # dst[ix] = component a's backward difference on the slab ix
            t = np.moveaxis(dst[ix], a, 0)
            za = np.moveaxis(z[a][ix], a, 0)
            np.subtract(za[:-1], za[1:], out=t[1:])
            np.subtract(za[-1], za[0], out=t[0])
            if self.vs[a] != 1.0:
                t *= np.float32(1.0 / self.vs[a])

        def first(part):  # the first axis' term, on slabs of the second axis
            ix = (slice(None), part)
            back(0, out if direct else tmp, ix)
            if not direct:
                out[ix] = tmp[ix]

        def rest(part):  # the other two added per slab of the first axis, in the same order
            for a in (1, 2):
                back(a, tmp, (part,))
                out[part] += tmp[part]

        parallel.each(first, parallel.slabs(out.shape[1], out.size))
        parallel.each(rest, parallel.slabs(out.shape[0], out.size))
        return out


def shrink(x: np.ndarray, threshold, negative=None) -> np.ndarray:
    """Soft thresholding: the proximal map of ``threshold·|x|₁`` (``x - clip(x, -t, t)``);
    ``negative`` is ``-threshold`` when the caller keeps it (a loop's constant)."""
    t = np.asarray(threshold, np.float32)
    c = np.minimum(x, t)
    np.maximum(c, -t if negative is None else negative, out=c)
    return np.subtract(x, c, out=c)
