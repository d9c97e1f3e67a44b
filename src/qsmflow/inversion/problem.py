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


# Planes of the first axis per block of :meth:`Problem.grad`, :meth:`~Problem.grad_adj` and
# :meth:`~Problem.tv_laplacian`: a block's gradient (3 x 13 planes of the 1 mm inversion's
# 162x150 box, 3.8 MB) stays in cache between the operations on it. On that box Gᵀ V G x took
# 10-11 ms in blocks of 12 planes against 19-21 ms as three whole-volume passes (8: 10-12,
# 16: 12-13, 34: 13-14 ms; benchmarks/README.md, Speed).
BLOCK_PLANES = 12


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
        self.each_block(lambda lo, hi, _: self.grad_planes(x, lo, hi, out[:, lo:hi]))
        return out

    def grad_adj(self, z: np.ndarray) -> np.ndarray:
        """Adjoint of :meth:`grad` (minus the backward-difference divergence)."""
        out = np.empty(z.shape[1:], np.float32)
        dtype = np.result_type(z.dtype, np.float32)  # float64 input: summed as float64 terms

        def run(lo, hi, tmp):
            self._adj_planes(self.planes(z[0], lo - 1, hi), z[1, lo:hi], z[2, lo:hi], out[lo:hi], tmp[:hi - lo])

        self.each_block(run, lambda: np.empty((BLOCK_PLANES,) + out.shape[1:], dtype))
        return out

    def tv_laplacian(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``Gᵀ diag(v) G x``, ``v`` (3, ...) a weight per gradient component: :meth:`grad_adj`
        of ``v ⊙`` :meth:`grad` of ``x`` (the same float32 operations, so the same result to
        the bit), block by block so that the gradient never leaves the cache."""
        out = np.empty(x.shape, np.float32)

        def run(lo, hi, scratch):
            g, tmp = scratch[0][:, :hi - lo + 1], scratch[1][:hi - lo]
            self.grad_planes(x, lo - 1, hi, g)  # the first axis' term needs plane lo - 1 too
            for a in range(3):
                g[a] *= self.planes(v[a], lo - 1, hi)
            self._adj_planes(g[0], g[1, 1:], g[2, 1:], out[lo:hi], tmp)

        self.each_block(run, lambda: (np.empty((3, BLOCK_PLANES + 1) + x.shape[1:], np.float32),
                                      np.empty((BLOCK_PLANES,) + x.shape[1:], np.float32)))
        return out

    def each_block(self, fn, scratch=None) -> None:
        """``fn(lo, hi, work)`` for every block of at most ``BLOCK_PLANES`` planes ``lo:hi`` of
        the first axis, the blocks of each slab (:func:`parallel.slabs`) in one thread; ``work``
        is ``scratch()``, made once per slab (None without ``scratch``)."""
        def run(part):
            work = scratch() if scratch is not None else None
            for lo in range(part.start, part.stop, BLOCK_PLANES):
                fn(lo, min(lo + BLOCK_PLANES, part.stop), work)

        parallel.each(run, parallel.slabs(self.shape[0], int(np.prod(self.shape))))

    @staticmethod
    def planes(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Planes ``lo:hi`` of ``x``'s first axis, periodic: a view, or a copy where they wrap."""
        n = x.shape[0]
        return x[lo:hi] if 0 <= lo and hi <= n else np.take(x, np.arange(lo, hi) % n, axis=0)

    def grad_planes(self, x, lo, hi, out):
        """:meth:`grad` on planes ``lo:hi`` of the first axis (periodic) into ``out`` (3, hi - lo, ...)."""
        xs = self.planes(x, lo, hi + 1)
        np.subtract(xs[1:], xs[:-1], out=out[0])
        for a in (1, 2):
            o, xa = np.moveaxis(out[a], a, 0), np.moveaxis(xs[:-1], a, 0)
            np.subtract(xa[1:], xa[:-1], out=o[:-1])
            np.subtract(xa[0], xa[-1], out=o[-1])
        for a in range(3):
            if self.vs[a] != 1.0:
                out[a] *= np.float32(1.0 / self.vs[a])

    def _adj_planes(self, z0, z1, z2, out, tmp):
        """:meth:`grad_adj` on a block of planes into ``out``: ``z0`` the first component on the
        block's planes and the one before it, ``z1``, ``z2`` the others on the block's planes;
        ``tmp`` a block-sized buffer of the terms' type. The terms are added in axis order."""
        for a, za in enumerate((z0, z1, z2)):
            t = np.moveaxis(tmp, a, 0)
            if a == 0:
                np.subtract(za[:-1], za[1:], out=tmp)
            else:
                za = np.moveaxis(za, a, 0)
                np.subtract(za[:-1], za[1:], out=t[1:])
                np.subtract(za[-1], za[0], out=t[0])
            if self.vs[a] != 1.0:
                tmp *= np.float32(1.0 / self.vs[a])
            if a == 0:
                out[...] = tmp
            else:
                out += tmp


def shrink(x: np.ndarray, threshold, negative=None, out: np.ndarray | None = None) -> np.ndarray:
    """Soft thresholding: the proximal map of ``threshold·|x|₁`` (``x - clip(x, -t, t)``);
    ``negative`` is ``-threshold`` when the caller keeps it (a loop's constant), ``out`` the
    array to write to (not ``x``)."""
    t = np.asarray(threshold, np.float32)
    c = np.minimum(x, t, out=out)
    np.maximum(c, -t if negative is None else negative, out=c)
    return np.subtract(x, c, out=c)
