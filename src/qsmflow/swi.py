"""Susceptibility-weighted imaging (SWI) and minimum-intensity projections.

SWI multiplies a magnitude image by a mask made from the high-pass filtered phase, so
that voxels whose phase has the sign of venous blood are darkened.

Sign convention: qsmflow's phase is ``φ = φ0 + 2π·Δf·TE`` (Δf in Hz; the phantom's
forward model, and :mod:`qsmflow.fieldmap` fits Δf = +slope/2π). Venous blood is
paramagnetic, and inside a vein parallel to B0 the field rises by χ/3, so here veins
have **positive** phase; the masks suppress positive phase by default
(``phase_sign=+1``). Haacke et al. (2004) use the opposite sign (veins negative, the
"negative phase mask"); phase stored that way needs ``phase_sign=-1``. A vein
perpendicular to B0 has a negative inner field (-χ/6): it shows through its positive
outer lobes and its short T2*.
"""

from __future__ import annotations

import logging

import numpy as np

from . import kernels
from ._shared import checks as _checks
from ._shared.registry import references

log = logging.getLogger(__name__)

__all__ = ["CITATIONS", "clear_swi", "homodyne_swi", "min_intensity_projection", "minip_slices"]

#: Homodyne low-pass (mm): the Hann window reaches zero at 1/8 mm⁻¹ (64 of 512 samples on 256 mm).
HOMODYNE_FILTER_MM = 8.0
#: CLEAR-SWI's default high-pass σ is 4 voxels in-plane; here 4 mm along every axis.
CLEAR_SIGMA_MM = 4.0
#: Number of multiplications of the phase mask (Haacke et al. 2004 found 4 best for veins).
MASK_POWER = 4


def _sign(phase_sign) -> int:
    ok = isinstance(phase_sign, (int, float, np.integer, np.floating)) and not isinstance(phase_sign, bool)
    if not ok or phase_sign not in (1, -1):
        raise ValueError(f"phase_sign must be +1 (veins have positive phase, qsmflow's convention) or -1 "
                         f"(phase stored with the opposite sign), got {phase_sign!r}")
    return int(phase_sign)


def _filtered(vol: np.ndarray, shape: tuple[int, ...], kernel: np.ndarray) -> np.ndarray:
    """``vol`` zero-padded to ``shape``, multiplied by ``kernel`` in k-space, cropped back."""
    return kernels.crop(kernels.irfft(kernels.rfft(kernels.pad(vol, shape)) * kernel, shape), vol.shape)


def _phase_mask(phase: np.ndarray, inside: np.ndarray, sign: int, power: float) -> np.ndarray:
    """Haacke's linear mask: 1 for phase without the veins' sign, falling to 0 at ±π (sign·φ ≥ π → 0)."""
    f = np.clip(1.0 - np.maximum(sign * phase, 0.0) / np.pi, 0.0, 1.0)
    return np.where(inside, f ** power, 1.0).astype(np.float32)


def homodyne_swi(magnitude, phase, *, mask=None, voxel_size, filter_mm: float = HOMODYNE_FILTER_MM,
                 power: float = MASK_POWER, phase_sign: int = 1):
    """Single-echo SWI with a homodyne high-pass filter (Haacke et al. 2004).

    The complex image ``z = |S|·e^{iφ}`` is divided by its low-passed copy; the phase of
    the ratio, ``arg(z·conj(LP z))``, keeps the phase of small structures and drops the
    smooth background and the wraps. The low-pass is a separable k-space Hann window
    reaching zero at ``|k_i| = 1/filter_mm``: the same width in mm for any voxel size (W
    samples across a field of view of L mm is ``filter_mm = 2L/W``); the volume is
    zero-padded by ``filter_mm``. The mask ``f = 1 - max(s·φ, 0)/π`` (``s =
    phase_sign``) is 1 where the phase has not the veins' sign and falls linearly to 0
    at ``s·φ = π``; ``SWI = |S|·f^power``.

    Parameters
    ----------
    magnitude, phase : ndarray (X, Y, Z)
        One echo: magnitude and phase (rad, wrapped or not).
    mask : ndarray of bool, optional
        Voxels where the phase mask is applied (default: all); elsewhere SWI = magnitude.
    voxel_size : sequence of 3 float
        Voxel size (mm).
    filter_mm : float
        Low-pass scale (mm): larger keeps more of the background (default 8 mm).
    power : float
        Number of mask multiplications (default 4).
    phase_sign : {+1, -1}
        Sign of the veins' phase: +1 in qsmflow's convention (module notes).

    Returns
    -------
    swi, hp_phase : ndarray (float32)
        Susceptibility-weighted magnitude; high-pass filtered phase (rad, in [-π, π]).

    References
    ----------
    Haacke EM, Xu Y, Cheng YCN, Reichenbach JR. Susceptibility weighted imaging (SWI).
    Magn Reson Med 2004;52:612-618. doi:10.1002/mrm.20198
    """
    mag = _checks.as_volume("magnitude", magnitude, finite=True)
    ph = _checks.as_volume("phase", phase, finite=True)
    _checks.same_shape("magnitude", mag, "phase", ph)
    vs = _checks.voxel_size(voxel_size)
    width = _checks.positive("filter_mm", filter_mm)
    power = _checks.positive("power", power)
    sign = _sign(phase_sign)
    inside = np.ones(mag.shape, bool) if mask is None else _checks.as_mask("mask", mask, mag.shape)
    shape = kernels.fft_shape(mag.shape, [int(np.ceil(width / d)) for d in vs])
    window = np.float32(1.0)
    for k in kernels.kspace_coords(shape, vs):  # Hann: 1 at k = 0, 0 from |k| = 1/filter_mm on
        window = window * (0.5 + 0.5 * np.cos(np.pi * np.minimum(np.abs(k) * width, 1.0))).astype(np.float32)
    re, im = mag * np.cos(ph), mag * np.sin(ph)
    lp_re, lp_im = _filtered(re, shape, window), _filtered(im, shape, window)
    # z·conj(LP z): the phase of z / LP z without dividing by a small |LP z|
    hp = np.arctan2(im * lp_re - re * lp_im, re * lp_re + im * lp_im).astype(np.float32)
    swi = (mag * _phase_mask(hp, inside, sign, power)).astype(np.float32)
    log.info("homodyne SWI: Hann low-pass to 1/%g mm⁻¹, mask^%g, veins' phase sign %+d", width, power, sign)
    return swi, hp


def clear_swi(magnitude, field_hz, echo_times, *, mask=None, voxel_size, sigma_mm: float = CLEAR_SIGMA_MM,
              effective_te: float | None = None, power: float = MASK_POWER, phase_sign: int = 1):
    """Multi-echo SWI in the spirit of CLEAR-SWI (Eckstein et al. 2021).

    The magnitude is the root-sum-of-squares over the echoes, ``sqrt(Σ S_n²)``. The
    multi-echo field map (Hz, e.g. qsmflow's fitted total field) is high-pass filtered
    by subtracting a Gaussian-smoothed copy (σ in mm) normalised inside the mask,
    ``G*(f·m) / G*m``, turned into phase at ``effective_te``, ``φ = 2π·Δf_hp·TE_eff``,
    and Haacke's linear mask (as :func:`homodyne_swi`; s·φ ≥ π → 0) is multiplied in.

    Followed from CLEAR-SWI (CLEARSWI.jl defaults): RSS magnitude, phase from all
    echoes, Gaussian high-pass of σ = 4 voxels (here 4 mm along every axis instead of
    in-plane only) normalised inside a mask. Simplified: no receive-sensitivity
    correction or softplus compression of the magnitude; the field map is taken as
    given (CLEAR-SWI unwraps and filters each echo, then combines them weighted by
    magnitude·TE); CLEAR-SWI's default sigmoid mask ``(1 + tanh(1 - φ/m))/2``, ``m``
    scaled to the median positive phase, is replaced by the linear mask at an explicit
    TE, so SWI = magnitude wherever the phase has not the veins' sign.

    Parameters
    ----------
    magnitude : ndarray (X, Y, Z, E)
        Multi-echo magnitude.
    field_hz : ndarray (X, Y, Z)
        Field map (Hz) in qsmflow's sign convention (phase = +2π·Δf·TE).
    echo_times : sequence of float
        Echo times (s), one per echo.
    mask : ndarray of bool, optional
        Tissue (default: all voxels): smoothing normalised and phase mask applied inside.
    voxel_size : sequence of 3 float
        Voxel size (mm).
    sigma_mm : float
        σ of the Gaussian high-pass (mm, default 4).
    effective_te : float, optional
        Echo time (s) turning the filtered field into phase (default: mean echo time).
    power : float
        Number of mask multiplications (default 4).
    phase_sign : {+1, -1}
        Sign of the veins' field: +1 in qsmflow's convention.

    Returns
    -------
    swi, hp_phase : ndarray (float32)
        SWI of the combined magnitude; filtered phase at ``effective_te`` (rad, not
        wrapped, 0 outside the mask).

    References
    ----------
    Haacke EM, Xu Y, Cheng YCN, Reichenbach JR. Susceptibility weighted imaging (SWI).
    Magn Reson Med 2004;52:612-618. doi:10.1002/mrm.20198

    Eckstein K, Bachrata B, Hangel G, Widhalm G, Enzinger C, Barth M, Trattnig S,
    Robinson SD. Improved susceptibility weighted imaging at ultra-high field using
    bipolar multi-echo acquisition and optimized image processing: CLEAR-SWI.
    NeuroImage 2021;237:118175. doi:10.1016/j.neuroimage.2021.118175
    """
    mag = _checks.as_volume("magnitude", magnitude, ndim=4, finite=True)
    field = _checks.as_volume("field_hz", field_hz, finite=True)
    if field.shape != mag.shape[:3]:
        raise ValueError(f"field_hz has shape {field.shape} but the magnitude's echoes have shape {mag.shape[:3]}")
    te = _checks.echo_times(echo_times, mag.shape[3])
    vs = _checks.voxel_size(voxel_size)
    sigma = _checks.positive("sigma_mm", sigma_mm)
    power = _checks.positive("power", power)
    sign = _sign(phase_sign)
    te_eff = float(te.mean()) if effective_te is None else _checks.positive("effective_te", effective_te)
    if effective_te is not None:
        try:  # the same limits as any echo time: seconds, at most a gradient echo's
            _checks.echo_times([te_eff])
        except ValueError as exc:
            raise ValueError(f"effective_te: {exc}") from None
    inside = np.ones(field.shape, bool) if mask is None else _checks.as_mask("mask", mask, field.shape)
    combined = np.sqrt(np.sum(np.square(mag, dtype=np.float64), axis=3)).astype(np.float32)
    smooth, _ = kernels.masked_gaussian(field, inside, sigma, vs)
    hp = np.where(inside, (2 * np.pi * te_eff) * (field - smooth), 0.0).astype(np.float32)
    swi = (combined * _phase_mask(hp, inside, sign, power)).astype(np.float32)
    log.info("CLEAR-style SWI: %d echoes, high-pass σ %g mm, phase at %.1f ms, mask^%g", te.size, sigma,
             1e3 * te_eff, power)
    return swi, hp


def minip_slices(slab_mm: float, voxel_mm: float) -> int:
    """Slices in a slab: ``slab_mm / voxel_mm`` rounded to the nearest odd count ≥ 1.

    An exact even count is a tie between two odd counts and rounds up, so the slab is
    never thinner than asked (8 mm of 2 mm slices → 5 slices, 10 mm).
    """
    slab = _checks.positive("slab_mm", slab_mm)
    voxel = _checks.positive("voxel size", voxel_mm)
    return 2 * max(int(np.floor((slab / voxel - 1) / 2 + 0.5 + 1e-9)), 0) + 1


def min_intensity_projection(image, voxel_size, *, slab_mm: float = 16.0, axis: int = 2) -> np.ndarray:
    """Sliding minimum-intensity projection (minIP) over a slab ``slab_mm`` thick.

    Each output slice is the minimum over the :func:`minip_slices` slices centred on it
    along ``axis`` (``slab_mm / voxel_size[axis]`` to the nearest odd count, ties up),
    clipped at the ends of the volume: the same thickness in mm for any slice spacing.

    Parameters
    ----------
    image : ndarray (X, Y, Z)
        Image to project (typically SWI).
    voxel_size : sequence of 3 float
        Voxel size (mm).
    slab_mm : float
        Slab thickness (mm, default 16).
    axis : {0, 1, 2}
        Projection axis (default 2, axial slabs for z along the slices).

    Returns
    -------
    ndarray (float32)
        Same shape as ``image``.

    References
    ----------
    Haacke EM, et al. Magn Reson Med 2004;52:612-618. doi:10.1002/mrm.20198 (minIP slabs)
    """
    img = _checks.as_volume("image", image)
    vs = _checks.voxel_size(voxel_size)
    if isinstance(axis, bool) or axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    n = minip_slices(slab_mm, vs[axis])
    half = min(n // 2, img.shape[axis] - 1)  # a wider slab than the volume is the whole axis
    widths = [(half, half) if a == axis else (0, 0) for a in range(3)]
    padded = np.pad(img, widths, mode="edge")  # repeating an end slice adds no new minimum
    out = img.copy()
    for offset in range(2 * half + 1):
        index = [slice(None)] * 3
        index[axis] = slice(offset, offset + img.shape[axis])
        np.minimum(out, padded[tuple(index)], out=out)
    log.info("minIP over %d slices (%g mm slab, %g mm slices) along axis %d", n, slab_mm, vs[axis], axis)
    return out


#: What a run using each SWI variant cites (the References of its function).
CITATIONS = {"homodyne": references(homodyne_swi), "clear": references(clear_swi)}
