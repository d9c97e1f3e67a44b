"""Phase unwrapping: spatial (per echo, or a template echo) and temporal (across echoes).

Every method has the signature ``(phase, voxel_size, *, mask, magnitude, echo_times)``
for 3D or (X, Y, Z, E) phase in radians.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft as sfft

from .. import kernels
from .._shared import checks as _checks
from .._shared.echoes import weighted_line
from . import romeo
from .._shared.registry import Method

log = logging.getLogger(__name__)

__all__ = ["METHODS", "bestpath_unwrap", "correct_echo_offsets", "laplacian_unwrap", "romeo_unwrap", "temporal_unwrap"]


def _neumann_laplacian_eigenvalues(shape, voxel_size) -> np.ndarray:
    """Eigenvalues (1/mm²) of the 7-point Laplacian with reflecting boundaries (DCT-II basis)."""
    out = 0.0
    for axis, (n, d) in enumerate(zip(shape, voxel_size)):
        lam = (2.0 * np.cos(np.pi * np.arange(n) / n) - 2.0) / (d * d)
        view = [1] * len(shape)
        view[axis] = n
        out = out + lam.reshape(view)
    return np.asarray(out)


def laplacian_unwrap(phase: np.ndarray, voxel_size, *, mask: np.ndarray | None = None, magnitude=None,
                     echo_times=None) -> np.ndarray:
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
    mask, magnitude, echo_times
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
    phase = _checks.as_volume("phase", phase, dtype=np.float64, finite=True)
    vs = _checks.voxel_size(voxel_size)
    lam = _neumann_laplacian_eigenvalues(phase.shape, vs)

    def lap(x):
        return sfft.idctn(sfft.dctn(x, type=2, workers=kernels.threads()) * lam, type=2, workers=kernels.threads())

    s, c = np.sin(phase), np.cos(phase)
    rhs = c * lap(s) - s * lap(c)
    spec = sfft.dctn(rhs, type=2, workers=kernels.threads())
    with np.errstate(divide="ignore", invalid="ignore"):
        spec = spec / lam
    spec.flat[0] = 0.0
    return sfft.idctn(spec, type=2, workers=kernels.threads()).astype(np.float32)


def bestpath_unwrap(phase: np.ndarray, voxel_size, *, mask: np.ndarray | None = None, magnitude=None,
                    echo_times=None) -> np.ndarray:
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
    magnitude : ndarray, optional
        Unused (the reliability comes from the phase alone).
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

    Robinson SD, Bredies K, Khabipova D, Dymerska B, Marques JP, Schweser F. An illustrated
    comparison of processing methods for MR phase imaging and QSM: combining array coil
    signals and phase unwrapping. NMR Biomed 2017;30:e3601. doi:10.1002/nbm.3601
    """
    from skimage.restoration import unwrap_phase

    phase = np.asarray(phase)
    if phase.ndim == 4:
        out = np.stack([bestpath_unwrap(phase[..., e], voxel_size, mask=mask) for e in range(phase.shape[3])], axis=3)
        if echo_times is not None and phase.shape[3] > 1:
            full = np.ones(phase.shape[:3], bool) if mask is None else mask
            out = correct_echo_offsets(out, echo_times, full)
        return out
    phase = _checks.as_volume("phase", phase, dtype=np.float64, finite=True)
    _checks.voxel_size(voxel_size)
    mask = np.ones(phase.shape, bool) if mask is None else _checks.as_mask("mask", mask, phase.shape)
    wrapped = np.mod(phase + np.pi, 2 * np.pi) - np.pi
    out = unwrap_phase(np.ma.masked_array(wrapped, mask=~mask))
    return np.ma.filled(out, 0.0).astype(np.float32)


def _centre_turn(unwrapped: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Remove the whole number of turns that puts the median inside the mask in (-π, π].

    After the scanner's frequency adjustment and shimming the brain's median field is
    near 0, so this fixes the free global multiple of 2π of a spatial unwrapping.
    """
    k = np.round(np.median(unwrapped[mask]) / (2 * np.pi))
    return unwrapped - np.float32(2 * np.pi * k) * mask if k else unwrapped


def romeo_unwrap(
    phase: np.ndarray,
    voxel_size,
    *,
    mask: np.ndarray | None = None,
    magnitude: np.ndarray | None = None,
    echo_times=None,
    template: int = 0,
) -> np.ndarray:
    """Quality-guided unwrapping (the ROMEO idea): one spatial unwrap, then temporal.

    3D phase is unwrapped spatially along the spanning tree of the best edges, whose
    quality combines phase coherence and magnitude coherence and level. For
    multi-echo phase with ``echo_times`` only the ``template`` echo is unwrapped
    spatially (edge quality also from the phase-gradient coherence with a second
    echo); every other echo is unwrapped in time, voxel by voxel, against the field
    fitted through the echoes already unwrapped, nearest echo time first. Temporal
    unwrapping does not care how steep the phase is in space, so late echoes next to
    the sinuses are unwrapped correctly wherever the template is.

    The echoes' phase offset φ0 must have been removed first (see
    :mod:`qsmflow.phaseoffset`): the temporal model is ``φ_n = 2π·f·TE_n``.

    Parameters
    ----------
    phase, voxel_size
        As for :func:`laplacian_unwrap`: wrapped phase (rad), 3D or 4D; voxel size (mm).
    mask : ndarray of bool, optional
        Voxels to unwrap (0 outside). Default: all.
    magnitude : ndarray, optional
        Magnitude, same shape as ``phase``: improves the edge quality.
    echo_times : sequence of float, optional
        Echo times (s); without them every echo is unwrapped spatially on its own.
    template : int
        Echo unwrapped spatially (0 = the first).

    Returns
    -------
    ndarray (float32)
        Unwrapped phase, congruent with the input in every voxel of the mask; the
        global multiple of 2π puts the template's median in (-π, π].

    References
    ----------
    Dymerska B, Eckstein K, Bachrata B, Siow B, Trattnig S, Shmueli K, Robinson SD.
    Phase unwrapping with a rapid opensource minimum spanning tree algorithm
    (ROMEO). Magn Reson Med 2021;85:2294-2308. doi:10.1002/mrm.28563
    """
    phase = np.asarray(phase)
    vs = _checks.voxel_size(voxel_size)
    del vs  # the tree lives on the voxel grid; the size only has to be valid
    if phase.ndim == 3:
        phase = _checks.as_volume("phase", phase, finite=True)
        mask = np.ones(phase.shape, bool) if mask is None else _checks.as_mask("mask", mask, phase.shape)
        mag = None if magnitude is None else _checks.as_volume("magnitude", magnitude, finite=True)
        if mag is not None:
            _checks.same_shape("phase", phase, "magnitude", mag)
        return _centre_turn(romeo.unwrap_along_tree(phase, mask, magnitude=mag, seed_quality=mag), mask)
    phase = _checks.as_volume("phase", phase, ndim=4, finite=True)
    n_e = phase.shape[3]
    mask = np.ones(phase.shape[:3], bool) if mask is None else _checks.as_mask("mask", mask, phase.shape[:3])
    mag = None if magnitude is None else _checks.as_volume("magnitude", magnitude, ndim=4, finite=True)
    if mag is not None:
        _checks.same_shape("phase", phase, "magnitude", mag)
    if echo_times is None or n_e == 1:
        return np.stack([romeo_unwrap(phase[..., e], voxel_size, mask=mask,
                                      magnitude=None if mag is None else mag[..., e]) for e in range(n_e)], axis=3)
    te = _checks.echo_times(echo_times, n_e)
    if not 0 <= template < n_e:
        raise ValueError(f"template must be an echo index between 0 and {n_e - 1}, got {template}")
    second = template + 1 if template + 1 < n_e else template - 1
    seed = None if mag is None else mag[..., template]
    unwrapped_t = _centre_turn(romeo.unwrap_along_tree(phase[..., template], mask, magnitude=seed,
                                                       phase2=phase[..., second], te_ratio=te[template] / te[second],
                                                       seed_quality=seed), mask)
    return temporal_unwrap(phase, unwrapped_t, template, te, mask=mask, magnitude=mag)


def temporal_unwrap(
    phase: np.ndarray,
    template_unwrapped: np.ndarray,
    template: int,
    echo_times,
    *,
    mask: np.ndarray,
    magnitude: np.ndarray | None = None,
) -> np.ndarray:
    """Unwrap every echo in time from one spatially unwrapped template echo.

    Echoes are taken nearest echo time first; each is unwrapped to the value
    predicted from the echoes already unwrapped: ``φ_n = φ_n^w + 2π·round((φ̂_n - φ_n^w)/2π)``.
    From the template alone the prediction is ``φ_t·TE_n/TE_t`` (the phase offset
    must have been removed); from two or more echoes it is their weighted line
    (weights ``magnitude²``), whose intercept absorbs what is left of the offset.

    References
    ----------
    Dymerska B, et al. Magn Reson Med 2021;85:2294-2308. doi:10.1002/mrm.28563
    """
    phase = _checks.as_volume("phase", phase, ndim=4, finite=True)
    te = _checks.echo_times(echo_times, phase.shape[3])
    if not 0 <= int(template) < te.size:
        raise ValueError(f"template must be an echo index from 0 to {te.size - 1}, got {template}")
    template = int(template)
    mask = _checks.as_mask("mask", mask, phase.shape[:3])
    template_unwrapped = _checks.as_volume("template_unwrapped", template_unwrapped, dtype=None, finite=True)
    _checks.same_shape("template_unwrapped", template_unwrapped, "mask", mask)
    if magnitude is not None:
        magnitude = _checks.as_volume("magnitude", magnitude, ndim=4, finite=True)
        _checks.same_shape("magnitude", magnitude, "phase", phase)
    out = np.zeros(phase.shape, np.float32)
    out[..., template] = template_unwrapped
    p = phase[mask].astype(np.float64)  # (V, E)
    w = np.ones_like(p) if magnitude is None else magnitude[mask].astype(np.float64) ** 2 + 1e-30
    done = [template]
    unwrapped = {template: template_unwrapped[mask].astype(np.float64)}
    for n in sorted(range(te.size), key=lambda e: (abs(te[e] - te[template]), e)):
        if n == template:
            continue
        t = te[done]
        y = np.stack([unwrapped[e] for e in done], axis=1)
        ww = w[:, done]
        if len(done) == 1:  # through the origin: φ0 has been removed
            pred = y[:, 0] * (te[n] / t[0])
        else:  # a line with intercept absorbs what is left of φ0
            intercept, slope, _ = weighted_line(y, ww, t)
            pred = intercept + slope * te[n]
        unwrapped[n] = p[:, n] + 2 * np.pi * np.round((pred - p[:, n]) / (2 * np.pi))
        out[..., n][mask] = unwrapped[n]
        done.append(n)
    return out


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
    "romeo": Method("romeo", romeo_unwrap,
                    "quality-guided spanning-tree unwrapping of a template echo, temporal unwrapping of the others"),
    "bestpath": Method("bestpath", bestpath_unwrap,
                       "quality-guided 3D best-path unwrapping per echo (congruent), echoes aligned by 2pi offsets"),
    "laplacian": Method("laplacian", laplacian_unwrap,
                        "Laplacian unwrapping with a cosine-transform Poisson solver (robust, not congruent)"),
}
