"""Quality-guided spatial unwrapping along a maximum-quality spanning tree.

The idea of ROMEO (Dymerska et al. 2021): every edge between neighbouring voxels gets
a quality from phase and magnitude coherence; the phase is integrated along the tree
that keeps the best edges, so that unreliable edges (noise, steep gradients next to
air) are crossed last or not at all. Here the tree is built by scipy's compiled
Kruskal algorithm and the 2π corrections are summed along it by pointer jumping, so
nothing loops over voxels in Python.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components, minimum_spanning_tree

from .. import kernels
from .._shared.units import wrap

TWO_PI = 2 * np.pi
# Edge qualities are compared in 255 steps (ROMEO stores them as 8-bit weights).
_LEVELS = 255


def _pairs(a: np.ndarray, axis: int):
    """The two ends of every edge along ``axis`` (views)."""
    lo = [slice(None)] * 3
    hi = [slice(None)] * 3
    lo[axis], hi[axis] = slice(0, -1), slice(1, None)
    return a[tuple(lo)], a[tuple(hi)]


def edge_weights(
    phase: np.ndarray,
    mask: np.ndarray,
    *,
    magnitude: np.ndarray | None = None,
    phase2: np.ndarray | None = None,
    te_ratio: float = 1.0,
) -> list[np.ndarray]:
    """Quality in [0, 1] of the edges along each axis (0 where an end is outside ``mask``).

    The quality is the product of
    - phase coherence ``1 - |wrap(Δφ)|/π``: small steps are trustworthy;
    - phase-gradient coherence ``max(0, 1 - |wrap(Δφ) - wrap(Δφ2)·te_ratio|)`` with a
      second echo ``phase2`` (``te_ratio`` = TE of ``phase`` / TE of ``phase2``): the
      step must scale with echo time;
    - magnitude coherence ``(min/max)²`` of the two magnitudes, and the magnitude
      level ``(0.5 + 0.5·min(1, min/(m/2)))·(0.5 + 0.5·min(1, (m/2)/max))`` with ``m``
      the largest magnitude in the mask: dark voxels (noise) and very bright ones
      (inflow) count less.
    """
    mag = None
    if magnitude is not None:
        mag = np.where(mask, magnitude, 0).astype(np.float32)
        half_max = 0.5 * float(mag.max()) if mag.max() > 0 else 1.0
    out = []
    for axis in range(3):
        p_lo, p_hi = _pairs(phase, axis)
        d = wrap(p_hi - p_lo)
        w = 1.0 - np.abs(d) / np.pi
        if phase2 is not None:
            q_lo, q_hi = _pairs(phase2, axis)
            w *= np.maximum(0.0, 1.0 - np.abs(d - wrap(q_hi - q_lo) * te_ratio))
        if mag is not None:
            m_lo, m_hi = _pairs(mag, axis)
            lo, hi = np.minimum(m_lo, m_hi), np.maximum(m_lo, m_hi)
            with np.errstate(divide="ignore", invalid="ignore"):
                coh = np.where(hi > 0, lo / hi, 0.0)
                w *= coh * coh
                w *= 0.5 + 0.5 * np.minimum(1.0, lo / half_max)
                w *= 0.5 + 0.5 * np.minimum(1.0, np.where(hi > 0, half_max / hi, 1.0))
        k_lo, k_hi = _pairs(mask, axis)
        out.append(np.where(k_lo & k_hi, w, 0.0).astype(np.float32))
    return out


def unwrap_along_tree(phase: np.ndarray, mask: np.ndarray, *, magnitude: np.ndarray | None = None,
                      phase2: np.ndarray | None = None, te_ratio: float = 1.0,
                      seed_quality: np.ndarray | None = None) -> np.ndarray:
    """:func:`edge_weights` then :func:`tree_unwrap`, on the mask's bounding box only.

    Every edge with an end outside ``mask`` has zero quality and every voxel outside it
    is 0 in the result, so the box gives the same answer as the whole grid (a brain fills
    about half of a head scan's grid).
    """
    out = np.zeros(phase.shape, np.float32)
    if not mask.any():
        return out
    box = kernels.bounding_box(mask)

    def cut(x):
        return None if x is None else np.ascontiguousarray(x[box])

    w = edge_weights(cut(phase), cut(mask), magnitude=cut(magnitude), phase2=cut(phase2), te_ratio=te_ratio)
    out[box] = tree_unwrap(cut(phase), w, cut(mask), seed_quality=cut(seed_quality))
    return out


def tree_unwrap(phase: np.ndarray, weights: list[np.ndarray], mask: np.ndarray,
                seed_quality: np.ndarray | None = None) -> np.ndarray:
    """Unwrap ``phase`` inside ``mask`` along the spanning tree of highest edge quality.

    Each connected part of the mask is rooted at its voxel of highest
    ``seed_quality`` (default: the first voxel), whose wrapped value is kept. The
    result is congruent with the input: it differs by whole multiples of 2π.
    """
    n = int(mask.sum())
    out = np.zeros(phase.shape, np.float32)
    if n == 0:
        return out
    index = np.full(phase.shape, -1, np.int64)
    index[mask] = np.arange(n)
    rows, cols, cost = [], [], []
    for axis, w in enumerate(weights):
        i_lo, i_hi = _pairs(index, axis)
        sel = w > 0
        # an edge with zero quality still joins the tree if nothing better reaches the voxel
        both = (i_lo >= 0) & (i_hi >= 0)
        rows.append(i_lo[both])
        cols.append(i_hi[both])
        # lower cost = better edge, all > 0; qualities in 8 bits as ROMEO keeps them, which also
        # halves the time of the spanning tree's (stable) sort of the edges
        cost.append(np.where(sel[both], 1.0 + np.round((1.0 - w[both]) * _LEVELS) / _LEVELS, 3.0))
    rows = np.concatenate(rows)
    cols = np.concatenate(cols)
    cost = np.concatenate(cost)
    graph = coo_matrix((cost, (rows, cols)), shape=(n, n)).tocsr()
    tree = minimum_spanning_tree(graph)
    n_comp, comp = connected_components(tree, directed=False)
    # a virtual root (index n) attached to one seed voxel per connected part
    sq = np.zeros(n) if seed_quality is None else np.asarray(seed_quality)[mask].astype(np.float64)
    if n_comp == 1:  # the usual case: no sort of every voxel for one seed
        seeds = np.array([np.argmax(sq)])
    else:
        order = np.lexsort((-sq, comp))
        first = np.ones(n, bool)
        first[1:] = comp[order][1:] != comp[order][:-1]
        seeds = order[first]
    tree = tree.tocoo()
    t_rows = np.concatenate([tree.row, np.full(seeds.size, n)])
    t_cols = np.concatenate([tree.col, seeds])
    t_data = np.concatenate([tree.data, np.ones(seeds.size)])
    full = coo_matrix((t_data, (t_rows, t_cols)), shape=(n + 1, n + 1)).tocsr()
    _, pred = breadth_first_order(full, n, directed=False, return_predecessors=True)
    values = phase[mask].astype(np.float64)
    parent = pred[:n].astype(np.int64)
    # 2π steps from each voxel to its parent, then summed to the root by pointer jumping
    steps = np.zeros(n + 1, np.int64)
    inner = parent < n
    steps[:n][inner] = np.round((values[parent[inner]] - values[inner]) / TWO_PI).astype(np.int64)
    anc = np.append(parent, n)
    while np.any(anc[:n] != n):
        steps = steps + steps[anc]
        anc = anc[anc]
    out[mask] = (values + TWO_PI * steps[:n]).astype(np.float32)
    return out
