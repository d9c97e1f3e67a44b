"""Spatial phase unwrapping."""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft as sfft

from . import _checks
from .registry import Method

log = logging.getLogger(__name__)

__all__ = ["METHODS", "laplacian_unwrap"]


def _neumann_laplacian_eigenvalues(shape, voxel_size) -> np.ndarray:
    """Eigenvalues (1/mm²) of the 7-point Laplacian with reflecting boundaries (DCT-II basis)."""
    out = 0.0
    for axis, (n, d) in enumerate(zip(shape, voxel_size)):
        lam = (2.0 * np.cos(np.pi * np.arange(n) / n) - 2.0) / (d * d)
        view = [1] * len(shape)
        view[axis] = n
        out = out + lam.reshape(view)
    return np.asarray(out)


def laplacian_unwrap(phase: np.ndarray, voxel_size) -> np.ndarray:
    """Laplacian phase unwrapping (Schofield & Zhu), per echo.

    The Laplacian of the true phase is obtained from the wrapped phase as
    ``cos φ ∇²(sin φ) - sin φ ∇²(cos φ)`` and integrated back with a discrete Poisson
    solver. Both use the cosine transform (reflecting boundaries), so no padding is
    needed and the box edges add no jumps. The result equals the true phase up to
    a smooth (harmonic) function and is *not* congruent with the input: it is a
    robust field estimate for background removal, not an exact unwrapping.

    Parameters
    ----------
    phase : ndarray, (X, Y, Z) or (X, Y, Z, E)
        Wrapped phase (rad).
    voxel_size : sequence of 3 float
        Voxel size (mm).

    Returns
    -------
    ndarray (float32)
        Unwrapped phase (rad), same shape; each echo has zero mean.

    References
    ----------
    Schofield MA, Zhu Y. Fast phase unwrapping algorithm for interferometric
    applications. Opt Lett 2003;28:1194-1196. doi:10.1364/OL.28.001194
    """
    phase = np.asarray(phase)
    if phase.ndim == 4:
        return np.stack([laplacian_unwrap(phase[..., e], voxel_size) for e in range(phase.shape[3])], axis=3)
    phase = _checks.as_volume("phase", phase, dtype=np.float64)
    vs = _checks.voxel_size(voxel_size)
    lam = _neumann_laplacian_eigenvalues(phase.shape, vs)

    def lap(x):
        return sfft.idctn(sfft.dctn(x, type=2, workers=-1) * lam, type=2, workers=-1)

    s, c = np.sin(phase), np.cos(phase)
    rhs = c * lap(s) - s * lap(c)
    spec = sfft.dctn(rhs, type=2, workers=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        spec = spec / lam
    spec.flat[0] = 0.0
    return sfft.idctn(spec, type=2, workers=-1).astype(np.float32)


METHODS = {
    "laplacian": Method(
        "laplacian",
        laplacian_unwrap,
        "Laplacian unwrapping with a cosine-transform Poisson solver (robust, not congruent)",
        ("Schofield MA, Zhu Y. Fast phase unwrapping algorithm for interferometric applications. "
         "Opt Lett 2003;28:1194-1196. doi:10.1364/OL.28.001194",),
    ),
}
