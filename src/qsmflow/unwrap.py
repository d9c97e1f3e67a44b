"""Spatial phase unwrapping."""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft as sfft

from . import _checks
from .registry import Method

log = logging.getLogger(__name__)

__all__ = ["METHODS", "bestpath_unwrap", "correct_echo_offsets", "laplacian_unwrap"]


def _neumann_laplacian_eigenvalues(shape, voxel_size) -> np.ndarray:
    """Eigenvalues (1/mm²) of the 7-point Laplacian with reflecting boundaries (DCT-II basis)."""
    out = 0.0
    for axis, (n, d) in enumerate(zip(shape, voxel_size)):
        lam = (2.0 * np.cos(np.pi * np.arange(n) / n) - 2.0) / (d * d)
        view = [1] * len(shape)
        view[axis] = n
        out = out + lam.reshape(view)
    return np.asarray(out)


def laplacian_unwrap(phase: np.ndarray, voxel_size, *, mask: np.ndarray | None = None, echo_times=None) -> np.ndarray:
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
    mask, echo_times
        Accepted for a uniform signature; unused (the whole box is solved, and the
        echoes are independent).

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


def bestpath_unwrap(phase: np.ndarray, voxel_size, *, mask: np.ndarray | None = None, echo_times=None) -> np.ndarray:
    """Quality-guided 3D unwrapping along the most reliable path, per echo.

    Voxel pairs are joined in order of their reliability (inverse of the phase's
    second differences), so noisy regions are unwrapped last and cannot spread
    errors into clean ones. The output is congruent with the input: it differs from
    it by an exact multiple of 2π in every voxel. Each connected part of the mask,
    and each echo, carries its own global multiple of 2π; with ``echo_times`` the
    echoes are aligned by :func:`correct_echo_offsets`.

    Parameters
    ----------
    phase : ndarray, (X, Y, Z) or (X, Y, Z, E)
        Wrapped phase (rad).
    voxel_size : sequence of 3 float
        Voxel size (mm) (the path is defined on the voxel grid).
    mask : ndarray of bool, optional
        Voxels to unwrap; 0 is returned outside it. Default: all.
    echo_times : sequence of float, optional
        Echo times (s) of a 4D input: align the echoes' global 2π offsets.

    Returns
    -------
    ndarray (float32)

    References
    ----------
    Abdul-Rahman HS, Gdeisat MA, Burton DR, Lalor MJ, Lilley F, Moore CJ. Fast and
    robust three-dimensional best path phase unwrapping algorithm. Appl Opt
    2007;46:6623-6635. doi:10.1364/AO.46.006623
    """
    from skimage.restoration import unwrap_phase

    phase = np.asarray(phase)
    if phase.ndim == 4:
        out = np.stack([bestpath_unwrap(phase[..., e], voxel_size, mask=mask) for e in range(phase.shape[3])], axis=3)
        if echo_times is not None and phase.shape[3] > 1:
            full = np.ones(phase.shape[:3], bool) if mask is None else mask
            out = correct_echo_offsets(out, echo_times, full)
        return out
    phase = _checks.as_volume("phase", phase, dtype=np.float64)
    _checks.voxel_size(voxel_size)
    mask = np.ones(phase.shape, bool) if mask is None else _checks.as_mask("mask", mask, phase.shape)
    wrapped = np.mod(phase + np.pi, 2 * np.pi) - np.pi
    out = unwrap_phase(np.ma.masked_array(wrapped, mask=~mask))
    return np.ma.filled(out, 0.0).astype(np.float32)


def correct_echo_offsets(unwrapped: np.ndarray, echo_times, mask: np.ndarray) -> np.ndarray:
    """Remove global 2π offsets between separately unwrapped echoes.

    Echo 2 is aligned so that the median phase change from echo 1 inside the mask
    lies in (-π, π] (after shimming the brain's median field is small); each later
    echo is aligned to the line fitted through the echoes before it, by the median
    multiple of 2π of its difference from that prediction.

    Parameters
    ----------
    unwrapped : ndarray (X, Y, Z, E)
        Per-echo unwrapped phase (rad), each congruent with its wrapped phase.
    echo_times : sequence of float
        Echo times (s).
    mask : ndarray of bool
        Voxels used for the medians.

    Returns
    -------
    ndarray (float32)
        Phase with offsets of whole multiples of 2π removed (a new array).

    References
    ----------
    Robinson SD, Bredies K, Khabipova D, Dymerska B, Marques JP, Schweser F. An
    illustrated comparison of processing methods for MR phase imaging and QSM:
    combining array coil signals and phase unwrapping. NMR Biomed 2017;30:e3601.
    doi:10.1002/nbm.3601
    """
    ph = _checks.as_volume("unwrapped", unwrapped, ndim=4).copy()
    te = _checks.echo_times(echo_times, ph.shape[3])
    mask = _checks.as_mask("mask", mask, ph.shape[:3])
    two_pi = 2 * np.pi
    for n in range(1, te.size):
        if n == 1:
            pred = ph[..., 0][mask]
        else:
            t = te[:n] - te[:n].mean()
            y = ph[..., :n][mask]
            slope = (y - y.mean(axis=1, keepdims=True)) @ t / (t @ t)
            pred = y.mean(axis=1) + slope * (te[n] - te[:n].mean())
        k = np.round(np.median(ph[..., n][mask] - pred) / two_pi)
        if k:
            ph[..., n][mask] -= np.float32(k * two_pi)
            log.info("echo %d: removed a global offset of %+d x 2pi", n + 1, int(k))
    return ph


METHODS = {
    "bestpath": Method(
        "bestpath",
        bestpath_unwrap,
        "quality-guided 3D best-path unwrapping per echo (congruent), echoes aligned by 2pi offsets",
        ("Abdul-Rahman HS, Gdeisat MA, Burton DR, Lalor MJ, Lilley F, Moore CJ. Fast and robust "
         "three-dimensional best path phase unwrapping algorithm. Appl Opt 2007;46:6623-6635. "
         "doi:10.1364/AO.46.006623",
         "Robinson SD, Bredies K, Khabipova D, Dymerska B, Marques JP, Schweser F. An illustrated comparison "
         "of processing methods for MR phase imaging and QSM: combining array coil signals and phase "
         "unwrapping. NMR Biomed 2017;30:e3601. doi:10.1002/nbm.3601"),
    ),
    "laplacian": Method(
        "laplacian",
        laplacian_unwrap,
        "Laplacian unwrapping with a cosine-transform Poisson solver (robust, not congruent)",
        ("Schofield MA, Zhu Y. Fast phase unwrapping algorithm for interferometric applications. "
         "Opt Lett 2003;28:1194-1196. doi:10.1364/OL.28.001194",),
    ),
}
