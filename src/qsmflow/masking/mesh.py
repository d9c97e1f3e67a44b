"""Closed triangle meshes for the deformable brain surface: a tessellated sphere, vertex
neighbourhoods and normals, the enclosed volume, and filling a mesh into a voxel mask.

Coordinates are millimetres along the voxel axes (``index * voxel_size``).
"""

from __future__ import annotations

import numpy as np


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere tessellated from an icosahedron: (vertices (V, 3), faces (F, 3)).

    Each subdivision splits every triangle in four, so there are ``10·4^n + 2`` vertices
    (2562 for n = 4), all of degree 6 but the 12 original ones (degree 5). Faces are
    ordered counter-clockwise seen from outside (normals point out).
    """
    p = (1 + 5**0.5) / 2
    v = [(-1, p, 0), (1, p, 0), (-1, -p, 0), (1, -p, 0), (0, -1, p), (0, 1, p),
         (0, -1, -p), (0, 1, -p), (p, 0, -1), (p, 0, 1), (-p, 0, -1), (-p, 0, 1)]
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
         (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
         (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [np.array(x, float) / np.linalg.norm(x) for x in v]
    faces = np.array(f, np.int64)
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def mid(a, b):
            key = (a, b) if a < b else (b, a)
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = np.array(new, np.int64)
    return np.array(verts), faces


class Topology:
    """What stays fixed while a mesh's vertices move: its faces, each vertex's neighbours
    (``nbr``, padded with the vertex itself), and sparse operators for the neighbours' mean
    and for summing face normals onto vertices."""

    def __init__(self, faces: np.ndarray, n_vertices: int):
        from scipy import sparse

        self.faces = faces
        edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        edges = np.unique(np.sort(edges, axis=1), axis=0)
        both = np.concatenate([edges, edges[:, ::-1]])
        adj = sparse.csr_matrix((np.ones(len(both)), (both[:, 0], both[:, 1])), shape=(n_vertices, n_vertices))
        self.degree = np.asarray(adj.sum(1)).ravel()
        self.mean_op = sparse.diags(1 / self.degree) @ adj
        rows = faces.T.ravel()
        cols = np.tile(np.arange(len(faces)), 3)
        self.face_op = sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_vertices, len(faces)))
        self.nbr = np.repeat(np.arange(n_vertices)[:, None], int(self.degree.max()), axis=1)
        order = np.argsort(both[:, 0], kind="stable")
        src, dst = both[order, 0], both[order, 1]
        start = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n_vertices))[:-1]])
        self.nbr[src, np.arange(len(src)) - start[src]] = dst
        # every face's corners, per coordinate, as flat indices into (3, V) rows of coordinates
        self._corners = (np.arange(3)[None, :, None] * n_vertices + faces.T[:, None, :]).ravel()
        # the faces' normals summed onto their vertices and the neighbours' mean, side by side
        self._sums = sparse.block_diag([self.face_op, self.mean_op], format="csr")

    def normals(self, verts: np.ndarray) -> np.ndarray:
        """Unit outward normal per vertex: the area-weighted sum of its faces' normals."""
        return self.normals_t(np.ascontiguousarray(np.asarray(verts, float).T)).T

    def normals_t(self, xyz: np.ndarray, out: np.ndarray | None = None,
                  mean_out: np.ndarray | None = None) -> np.ndarray:
        """:meth:`normals` with coordinates as rows, (3, V) in and out: each of the surface's
        1000 iterations needs the normals, and whole rows are faster to work on than columns.
        With ``mean_out`` the neighbours' mean of each vertex is written there as well: both
        come from one sparse product per coordinate (the face sums and the mean side by side),
        which costs less than two (scipy's per-call cost is most of the time at 2562 vertices).
        """
        n_faces, n_verts = len(self.faces), xyz.shape[1]
        a, b, c = xyz.ravel()[self._corners].reshape(3, 3, n_faces)
        b -= a
        c -= a
        # b x c (written out: np.cross is slow on small arrays), then the vertices
        both = np.empty((3, n_faces + n_verts))
        fn = both[:, :n_faces]
        np.multiply(b[1], c[2], out=fn[0])
        fn[0] -= b[2] * c[1]
        np.multiply(b[2], c[0], out=fn[1])
        fn[1] -= b[0] * c[2]
        np.multiply(b[0], c[1], out=fn[2])
        fn[2] -= b[1] * c[0]
        both[:, n_faces:] = xyz
        n = np.empty_like(xyz)
        for k in range(3):
            row = self._sums @ both[k]
            n[k] = row[:n_verts]
            if mean_out is not None:
                mean_out[k] = row[n_verts:]
        length = np.einsum("ij,ij->j", n, n)
        np.sqrt(length, out=length)
        np.maximum(length, 1e-12, out=length)
        return np.divide(n, length, out=out)

    def spacing(self, verts: np.ndarray) -> float:
        """Mean over vertices of the mean distance to their neighbours."""
        d = np.linalg.norm(verts[self.nbr] - verts[:, None, :], axis=2)
        return float(np.mean(d.sum(1) / self.degree))


def enclosed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume (divergence theorem); equals the inside's volume for a simple closed mesh."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return float(np.einsum("ij,ij->", a, np.cross(b, c)) / 6.0)


def fill(verts_mm: np.ndarray, faces: np.ndarray, shape, voxel_size) -> np.ndarray:
    """Voxels whose centres lie inside the closed mesh (ray parity along the third axis).

    Every column of voxel centres is a ray along axis 2; each triangle it crosses toggles
    inside/outside from the crossing on. Rays are nudged by an irrational fraction of a
    voxel so that none passes exactly through an edge or a vertex.
    """
    shape = tuple(int(n) for n in shape)
    p = np.asarray(verts_mm, float) / np.asarray(voxel_size, float)
    tri = p[faces]  # (F, 3, 3) in voxel index units
    jitter = np.array([1e-4 * np.pi, 1e-4 * np.e])  # ray (i, j) runs at (i, j) + jitter
    lo = np.ceil(tri[:, :, :2].min(axis=1) - jitter).astype(np.int64)
    hi = np.floor(tri[:, :, :2].max(axis=1) - jitter).astype(np.int64)
    span = np.maximum(hi - lo + 1, 0)
    # crossings counted modulo 256 (uint8 wraps): only their parity matters
    toggles = np.zeros((shape[0], shape[1], shape[2] + 1), np.uint8)
    kx, ky = int(span[:, 0].max(initial=0)), int(span[:, 1].max(initial=0))
    if kx == 0 or ky == 0:
        return np.zeros(shape, bool)
    ox, oy = np.meshgrid(np.arange(kx), np.arange(ky), indexing="ij")
    ox, oy = ox.ravel(), oy.ravel()
    for chunk in np.array_split(np.arange(len(faces)), max(1, len(faces) * kx * ky // 2_000_000)):
        t = tri[chunk]
        ci = lo[chunk, 0][:, None] + ox[None, :]
        cj = lo[chunk, 1][:, None] + oy[None, :]
        x, y = ci + jitter[0], cj + jitter[1]
        (x0, y0), (x1, y1), (x2, y2) = [(t[:, k, 0][:, None], t[:, k, 1][:, None]) for k in range(3)]
        det = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
        ok_det = np.abs(det) > 1e-12
        det = np.where(ok_det, det, 1.0)
        w0 = ((y1 - y2) * (x - x2) + (x2 - x1) * (y - y2)) / det
        w1 = ((y2 - y0) * (x - x2) + (x0 - x2) * (y - y2)) / det
        w2 = 1 - w0 - w1
        hit = ok_det & (w0 >= 0) & (w1 >= 0) & (w2 >= 0) & (ci <= hi[chunk, 0][:, None]) & (cj <= hi[chunk, 1][:, None])
        hit &= (ci >= 0) & (ci < shape[0]) & (cj >= 0) & (cj < shape[1])
        z = w0 * t[:, 0, 2][:, None] + w1 * t[:, 1, 2][:, None] + w2 * t[:, 2, 2][:, None]
        k = np.clip(np.ceil(z[hit]), 0, shape[2]).astype(np.int64)
        np.add.at(toggles, (ci[hit], cj[hit], k), 1)
    parity = np.cumsum(toggles[..., : shape[2]], axis=2, dtype=np.uint8)
    return (parity & 1).astype(bool)
