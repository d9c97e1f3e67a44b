"""What every inversion shares: checked inputs, the padding of the mask's box, the
provenance notes, and the nonlinear data term's phase scale."""

from __future__ import annotations

import numpy as np

from .._shared import checks as _checks

# Zero padding around the mask's bounding box (voxels): periodic copies of the
# field then sit at least this far apart. Total field inversion places the background's
# sources there, and the direct methods and iLSQR were validated with it.
_PAD_VOXELS = 16
# TV and MEDI (the data weighted 0 outside the mask, χ free on the padded grid, TV
# regularising it): on the benchmark's 1 mm, oblique 35° 1x1x1.4 mm and SNR 20 heads MEDI+0
# with 4, 8, 12 or 16 voxels gave the same χ within 0.04 points of NRMSE (31.24 / 31.22 /
# 31.19 / 31.20 % at 1 mm) and the same uncertainty map within 0.2 %, while 8 instead of 16
# shrinks the 1 mm grid from 144x180x160 to 135x162x150 (FFTs on 21 % fewer voxels).
_PAD_VOXELS_TV = 8


def _setup(local_field, mask, voxel_size, b0_direction, field_name: str = "local_field"):
    f = _checks.as_volume(field_name, local_field)
    mask = _checks.as_mask("mask", mask, f.shape)
    if not np.all(np.isfinite(f[mask])):
        raise ValueError(f"{field_name} holds NaN/Inf inside the mask")
    return f, mask, _checks.voxel_size(voxel_size), _checks.b0_direction(b0_direction)


# A field map's noise in ppm: 0.001-0.02 on the benchmark matrix and the real heads (0.0099 on the
# two-echo Philips head). Above this median, and many times the field it is the noise of, the
# map is in another unit (Hz: 0.1-2 at 3 T), and the inversion would take the field for noise.
_NOISE_PPM_IMPLAUSIBLE = 0.05


def _check_noise_in_ppm(noise, field: np.ndarray, mask: np.ndarray) -> None:
    """Refuse a noise map that cannot be in ppm: its median above 0.05 ppm and above 10x the
    RMS of the field inside the mask (a noise map in Hz gave χ = 0 everywhere)."""
    if noise is None:
        return
    values = np.asarray(noise, np.float64)
    _checks.same_shape("noise", values, "mask", mask)
    values = values[mask & np.isfinite(values)]
    if not values.size:
        return
    typical = float(np.median(values))
    rms = float(np.sqrt(np.mean(np.square(field[mask], dtype=np.float64))))
    if typical > _NOISE_PPM_IMPLAUSIBLE and typical > 10 * rms:
        raise ValueError(f"the noise map's median {typical:.3g} is far above any field noise in ppm and "
                         f"{typical / max(rms, 1e-12):.0f}x the field's RMS ({rms:.3g}): is it in Hz? Divide it by "
                         "γ̄B0 (127.7 Hz/ppm at 3 T)")


def _note(info: dict | None, **values) -> None:
    """Record what a method chose (weights, iterations) for the provenance file."""
    if info is not None:
        info.update({k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in values.items()})


def _phase_scale(value) -> float:
    if value is None:
        raise ValueError("the nonlinear data term needs phase_scale (rad/ppm = 2π·γ̄·B0·TE·1e-6)")
    return _checks.positive("phase_scale", value)
