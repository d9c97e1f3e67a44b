"""The discrete Laplacian on a mask's interior, and a multigrid V-cycle that preconditions it.

LBV (and its boundary refinement) solves Laplace's equation on the brain's interior with
the field as Dirichlet condition on its edge. Plain conjugate gradients need a few hundred
iterations there (the smooth error modes have tiny residuals); preconditioned by one
V-cycle of geometric multigrid they need about ten, whatever the grid's size, as in LBV's
own paper (Zhou et al. 2014 solved it by full multigrid). The preconditioner follows
McAdams et al. 2010: coarse grids of twice the spacing with the Laplacian rediscretised on
them, damped Jacobi smoothing, a direct solve on the coarsest grid.

Choices measured on the 1 mm benchmark head's brain (1.3 M interior voxels; see
``benchmarks/README.md``, "LBV preconditioned by multigrid"): a coarse cell is interior
when all eight of its children are (11 iterations to 1e-5 against 16 when any child is),
children take their parent's value (piecewise-constant transfer: 11 iterations against 9
with trilinear transfer, whose 8-entry operator cost three times as long to build), two
Jacobi sweeps before and after the coarse correction.

References
----------
Zhou D, Liu T, Spincemaille P, Wang Y. Background field removal by solving the Laplacian
boundary value problem. NMR Biomed 2014;27:312-319. doi:10.1002/nbm.3064

McAdams A, Sifakis E, Teran J. A parallel multigrid Poisson solver for fluids simulation
on large grids. Proc ACM SIGGRAPH/Eurographics Symp Comput Animat 2010:65-74.
doi:10.2312/SCA/SCA10/065-074

Briggs WL, Henson VE, McCormick SF. A Multigrid Tutorial, 2nd ed. SIAM 2000 (damped Jacobi's
weight 6/7 for the 7-point Laplacian).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, ndimage, sparse

from .._shared import parallel

# Damped Jacobi's weight: the best smoother of the 3D 7-point Laplacian's rough modes.
JACOBI_WEIGHT = 6.0 / 7.0
# Jacobi sweeps before and after each coarse-grid correction.
SWEEPS = 2
# The coarsest grid is solved directly (dense Cholesky) once it has at most this many unknowns.
COARSEST = 1500


def interior_of(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` whose six face neighbours are all in it (never on the array's faces:
    outside the array counts as outside the mask)."""
    return ndimage.binary_erosion(mask)


class Laplacian:
    """``-∇²`` (voxel sizes ``vs`` in mm) on the voxels of ``interior``, zero outside them.

    ``interior`` must be False on the array's faces (:func:`interior_of` gives such a
    set). Unknowns are the interior voxels in C order (``flat`` holds their flat indices),
    and the operator is a CSR matrix of seven entries per row (a neighbour outside the
    interior enters with weight zero, its value being a known boundary value or zero).
    """

    def __init__(self, interior: np.ndarray, vs):
        self.shape = interior.shape
        self.vs = tuple(float(h) for h in vs)
        self.strides = tuple(int(s) for s in np.cumprod((1,) + self.shape[:0:-1])[::-1])  # in elements
        self.flat = np.flatnonzero(interior)
        n = self.flat.size
        index = np.full(interior.size, -1, np.int32)
        index[self.flat] = np.arange(n, dtype=np.int32)
        self.index = index
        own = np.arange(n, dtype=np.int32)
        cols = np.empty((n, 7), np.int32)
        vals = np.empty((n, 7), np.float32)
        cols[:, 0] = own
        vals[:, 0] = sum(2.0 / (h * h) for h in self.vs)
        k = 1
        for step, h in zip(self.strides, self.vs):
            for s in (step, -step):
                c = index.take(self.flat + s)
                outside = c < 0
                cols[:, k] = np.where(outside, own, c)
                vals[:, k] = np.where(outside, np.float32(0), np.float32(-1.0 / (h * h)))
                k += 1
        self.matrix = sparse.csr_matrix((vals.ravel(), cols.ravel(), np.arange(0, 7 * n + 1, 7)), shape=(n, n))
        self.apply = _row_blocks(self.matrix)

    @property
    def size(self) -> int:
        return self.flat.size

    def boundary_rhs(self, values: np.ndarray, boundary: np.ndarray) -> np.ndarray:
        """The right-hand side of ``-∇²u = 0`` with ``u = values`` on ``boundary`` (the known
        neighbours' terms moved over), on the interior's unknowns (float32)."""
        known = np.where(boundary, values, 0).astype(np.float32).reshape(-1)
        rhs = np.zeros(self.size, np.float32)
        for step, h in zip(self.strides, self.vs):
            w = np.float32(1.0 / (h * h))
            rhs += w * (known.take(self.flat + step) + known.take(self.flat - step))
        return rhs


class VCycle:
    """One multigrid V-cycle for a :class:`Laplacian`: a symmetric positive definite
    approximation of its inverse, called on a residual (float32, the unknowns' order).

    Grids of twice the spacing (a cell interior when all its children are; only the finer
    axes of anisotropic voxels are coarsened, see :func:`coarsening`) until the
    coarsest has at most ``COARSEST`` unknowns, which are solved directly; ``SWEEPS`` damped
    Jacobi sweeps before and after each coarse correction (the same on both sides, so that
    the cycle is symmetric, as conjugate gradients need).
    """

    def __init__(self, fine: Laplacian):
        self.levels = [fine]
        self.parents = []  # per level: each unknown's parent on the next grid (its size: none)
        self.coarsest = None
        self.children = []  # per level: how many fine cells a coarse one holds
        level = fine
        while level.size > COARSEST:
            factors = coarsening(level.vs)
            interior = _coarser(level.index.reshape(level.shape) >= 0, factors)
            if not interior.any():
                break
            coarse = Laplacian(interior, tuple(f * h for f, h in zip(factors, level.vs)))
            pos = np.unravel_index(level.flat, level.shape)
            parent = coarse.index.take(np.ravel_multi_index(tuple(p // f for p, f in zip(pos, factors)), coarse.shape))
            self.parents.append(np.where(parent < 0, coarse.size, parent).astype(np.int32))
            self.children.append(int(np.prod(factors)))
            self.levels.append(coarse)
            level = coarse
        if level.size <= COARSEST:
            self.coarsest = linalg.cho_factor(level.matrix.toarray().astype(np.float64))
        self.smoothers = [np.float32(JACOBI_WEIGHT) / lv.matrix.diagonal().astype(np.float32) for lv in self.levels]

    def __call__(self, r: np.ndarray) -> np.ndarray:
        return self._cycle(0, r)

    def _cycle(self, k: int, r: np.ndarray) -> np.ndarray:
        level, wd = self.levels[k], self.smoothers[k]
        if k == len(self.levels) - 1:
            if self.coarsest is not None:
                return linalg.cho_solve(self.coarsest, r.astype(np.float64)).astype(np.float32)
            return wd * r  # a grid too thin to coarsen further: one Jacobi sweep
        x = wd * r
        for _ in range(SWEEPS - 1):
            x += wd * (r - level.apply(x))
        parent = self.parents[k]
        n_coarse = self.levels[k + 1].size
        # restriction: the children's residuals summed, over their number (the transpose of the
        # piecewise-constant prolongation, scaled so that the coarse operator is the
        # rediscretised one)
        rc = np.bincount(parent, weights=r - level.apply(x), minlength=n_coarse + 1)[:n_coarse]
        e = self._cycle(k + 1, (rc / self.children[k]).astype(np.float32))
        x += np.append(e, np.float32(0)).take(parent)
        for _ in range(SWEEPS):
            x += wd * (r - level.apply(x))
        return x


def coarsening(vs) -> tuple:
    """Per axis, 2 where the next grid doubles the spacing, 1 where it keeps it: only the axes
    within 1.5x of the finest spacing are coarsened (semi-coarsening), so that anisotropic
    voxels become nearly isotropic before all axes are coarsened together (on 1x1x2.5 mm
    voxels the iterations to 1e-6 grow from 14 to 30 with the grid under full coarsening)."""
    finest = min(vs)
    return tuple(2 if h <= 1.5 * finest else 1 for h in vs)


def _coarser(interior: np.ndarray, factors) -> np.ndarray:
    """Cells of the coarser grid (``factors`` per axis) whose children are all in ``interior``."""
    padded = np.pad(interior, [(0, -n % f) for n, f in zip(interior.shape, factors)])
    split = [d for n, f in zip(padded.shape, factors) for d in (n // f, f)]
    return padded.reshape(split).all(axis=(1, 3, 5))


def _row_blocks(a: sparse.csr_matrix):
    """``x ↦ a @ x`` with the rows in blocks, one per core, multiplied side by side (scipy's
    sparse products release the GIL: the 1 mm head's Laplacian, 1.2 M rows, 9 ms in one block,
    6 ms in two)."""
    parts = parallel.slabs(a.shape[0], a.nnz)
    if len(parts) == 1:
        return a.dot
    blocks = [(s, a[s]) for s in parts]

    def apply(x):
        out = np.empty(a.shape[0], np.float32)

        def run(block):
            rows, part = block
            out[rows] = part @ x

        parallel.each(run, blocks)
        return out

    return apply
