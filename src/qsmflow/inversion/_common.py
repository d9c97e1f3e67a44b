"""What every inversion shares: checked inputs, the padding of the mask's box, the
provenance notes, and the nonlinear data term's phase scale."""

from __future__ import annotations

import numpy as np

from .._shared import checks as _checks

# Zero padding around the mask's bounding box (voxels): periodic copies of the
# field then sit at least this far apart.
_PAD_VOXELS = 16


def _setup(local_field, mask, voxel_size, b0_direction):
    f = _checks.as_volume("local_field", local_field)
    mask = _checks.as_mask("mask", mask, f.shape)
    if not np.all(np.isfinite(f[mask])):
        raise ValueError("local_field holds NaN/Inf inside the mask")
    return f, mask, _checks.voxel_size(voxel_size), _checks.b0_direction(b0_direction)


def _note(info: dict | None, **values) -> None:
    """Record what a method chose (weights, iterations) for the provenance file."""
    if info is not None:
        info.update({k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in values.items()})


def _phase_scale(value) -> float:
    if value is None:
        raise ValueError("the nonlinear data term needs phase_scale (rad/ppm = 2π·γ̄·B0·TE·1e-6)")
    return _checks.positive("phase_scale", value)
