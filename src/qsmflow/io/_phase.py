"""Phase units: stored phase -> radians by an explicit, logged rule."""

from __future__ import annotations

import logging

import numpy as np

from .._shared import checks as _checks

log = logging.getLogger(__name__)

# Siemens: -4096..4095 (12 bit, signed) and 0..4095 (unsigned); GE/older: -2048..2047.
_INTEGER_PHASE_RANGES = ((-4096, 4095), (0, 4095), (-2048, 2047))
# Radians are accepted up to this relative overshoot of pi (float rounding, 2π stored as π·(1+ε)).
_RADIAN_SLACK = 1e-3
# Float phase in radians spans almost the full circle outside the brain (noise);
# data whose largest |value| is below this fraction of pi is taken as scaled, not radians.
_RADIAN_MIN_SPAN = 0.9
# Integer phase fills a scanner range when both ends come within this fraction of it.
_RANGE_FILL = 0.05
# A range is "symmetric" when |min| and |max| agree within this fraction.
_SYMMETRY_TOL = 0.02
# Radians with values beyond ±π (an unwrapped phase, a phase resampled or interpolated as a real
# image: cubic interpolation overshoots across every wrap, to ±5.3 on the real Philips head
# rotated 5°, 8.4 % of its voxels; romeo_small's phase_with_nan, ±1.5π, 2.1 %) against a phase
# scaled to another range ±m (degrees, ±4096 as floats, milliradians): a scaled phase wraps
# over its whole range, so about π/m of its values lie within ±π (±4: 79 %), where radians keep
# most of theirs there (the Philips head rotated: 92 %). Radians when at least this share of the
# nonzero values lies within ±π...
_RADIAN_INSIDE_SHARE = 0.85
# ...and this much more than a uniformly scaled phase of the same range would put there.
_RADIAN_INSIDE_MARGIN = 0.15


def _radian_overshoot(x: np.ndarray) -> tuple[int, float] | None:
    """(count, share) of the nonzero values beyond ±π when ``x`` reads as radians with values
    beyond ±π rather than a phase scaled to its range (see ``_RADIAN_INSIDE_SHARE``); else None.
    Zeros (a masked background) are left out of the shares: they say nothing of the units."""
    values = np.abs(x[x != 0]) if np.any(x == 0) else np.abs(x).reshape(-1)
    if not values.size:
        return None
    beyond = values > np.pi * (1 + _RADIAN_SLACK)
    n = int(np.count_nonzero(beyond))
    inside = 1.0 - n / values.size
    scaled_inside = np.pi / float(values.max())  # a uniformly wrapped phase of this range
    if inside < max(_RADIAN_INSIDE_SHARE, scaled_inside + _RADIAN_INSIDE_MARGIN):
        return None
    rest = values[~beyond]
    if not rest.size or float(rest.max()) < _RADIAN_MIN_SPAN * np.pi:
        return None
    return n, n / values.size


def scale_phase(phase: np.ndarray, *, on_disk_integer: bool = False, phase_scale: float | None = None,
                overwrite: bool = False) -> tuple[np.ndarray, dict]:
    """Bring phase to radians wrapped to [-pi, pi), by an explicit rule.

    Rules, in order:

    1. ``phase_scale`` given: multiply by it.
    2. Integer values (on disk, after ``scl_slope``/``scl_inter``) in a scanner range:
       -4096..4095 -> x·π/4096; 0..4095 -> x·2π/4096 - π; -2048..2047 -> x·π/2048.
    3. Values within ±π (and reaching at least 0.9π): radians, kept.
    4. Values within [0, 2π]: radians, wrapped.
    5. Values of which at least 85 % (and 15 % more than a phase wrapped over the whole range
       would hold) lie within ±π, reaching 0.9π there: radians with values beyond ±π (a phase
       interpolated across its wraps, an unwrapped phase), wrapped, with a warning.
    6. Any other symmetric range (|min| ≈ |max|): scaled by its maximum, x·π/max|x|.
    7. Anything else is refused with a request for ``--phase-scale``.

    Parameters
    ----------
    phase : ndarray
        Finite phase values as read (NaN/Inf already removed).
    on_disk_integer : bool
        The file stores integers (before any scaling).
    phase_scale : float, optional
        Forced factor to radians.
    overwrite : bool
        ``phase`` (float64) may be used as the work array and left scaled: one copy of a
        whole series fewer (the reader, which drops its array after, passes True).

    Returns
    -------
    radians : ndarray (float32)
    rule : dict
        ``{"rule": str, "factor": float, "offset": float, "range": [min, max]}``.
    """
    x = np.asarray(phase, dtype=np.float64)
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    rng = [lo, hi]
    if phase_scale is not None:
        factor = _checks.positive("phase_scale", phase_scale)
        rule = {"rule": f"forced by --phase-scale: phase x {factor:g}", "factor": factor, "offset": 0.0, "range": rng}
    elif hi - lo == 0:
        raise ValueError(f"the phase is constant ({lo}); is this a phase image?")
    else:
        rule = None
        # only a range beyond radians can be a scanner's integers (the check reads every value)
        if hi > np.pi * (1 + _RADIAN_SLACK) and (on_disk_integer or bool(np.all(np.abs(x - np.round(x)) < 1e-6))):
            for a, b in _INTEGER_PHASE_RANGES:
                # noise outside the head fills the scanner's whole range: both ends must be reached
                near = _RANGE_FILL * (b - a)
                if a <= lo <= a + near and b - near <= hi <= b:
                    if a == 0:
                        rule = {"rule": f"integers {a}..{b} mapped to [-pi, pi): x*2pi/{b + 1} - pi",
                                "factor": 2 * np.pi / (b + 1), "offset": -np.pi, "range": rng}
                    else:
                        rule = {"rule": f"integers {a}..{b} mapped to [-pi, pi): x*pi/{-a}",
                                "factor": np.pi / -a, "offset": 0.0, "range": rng}
                    break
        m = max(abs(lo), abs(hi))
        if rule is not None:
            pass
        elif m <= np.pi * (1 + _RADIAN_SLACK) and m >= _RADIAN_MIN_SPAN * np.pi:
            rule = {"rule": "radians, kept", "factor": 1.0, "offset": 0.0, "range": rng}
        elif lo >= 0 and hi <= 2 * np.pi * (1 + _RADIAN_SLACK) and hi > np.pi:
            rule = {"rule": "radians in [0, 2pi), wrapped to [-pi, pi)", "factor": 1.0, "offset": 0.0, "range": rng}
        elif (overshoot := _radian_overshoot(x)) is not None:
            n, share = overshoot
            rule = {"rule": f"radians with {n} values beyond +-pi, wrapped", "factor": 1.0, "offset": 0.0,
                    "range": rng}
            rule["warning"] = (f"{n} phase values ({100 * share:.2g} %) lie beyond ±π (the range is {lo:.3g} to "
                               f"{hi:.3g}) while the rest fills ±π: the phase is taken as radians and those values are wrapped. "
                               "Such values come from an unwrapped phase, or from resampling or interpolating a "
                               "phase image, which corrupts it wherever it wraps: resample the complex image (or "
                               "real and imaginary) instead. "
                               "If the phase is not in radians, pass --phase-scale (phase_scale= in Python) with "
                               "its factor")
            log.warning(rule["warning"])
        elif abs(abs(lo) - abs(hi)) <= _SYMMETRY_TOL * m:
            rule = {"rule": f"symmetric range +-{m:.6g} scaled by its maximum: x*pi/{m:.6g}",
                    "factor": np.pi / m, "offset": 0.0, "range": rng}
            if m < np.pi:  # could be radians that do not wrap (a masked or unwrapped phase, short echoes)
                rule["warning"] = (f"the phase spans only ±{m:.3g}, less than radians' ±π, and is taken as a scaled "
                                   f"phase: multiplied by {np.pi / m:.3g}. If it is in radians already (a masked or "
                                   "unwrapped phase), pass --phase-scale 1 (phase_scale=1 in Python), or χ will be that many times too large")
                log.warning(rule["warning"])
        else:
            raise ValueError(
                f"cannot tell the phase units from its range [{lo:.6g}, {hi:.6g}]: it is neither radians nor a "
                "scanner integer range; pass --phase-scale (phase_scale= in Python) with the factor that converts it to radians "
                "(1 if it is in radians already, e.g. a crop or a masked phase that does not reach ±π)"
            )
    # in place on one float64 copy (a whole 4D series is ~200 MB at 1 mm); the same values as
    # mod(x·factor + offset + π, 2π) - π
    # never the caller's array (or a view of it) unless it is given away
    y = x.copy() if np.may_share_memory(x, phase) and not overwrite else x
    if rule["factor"] != 1.0:
        y *= rule["factor"]
    if rule["offset"]:
        y += rule["offset"]
    y += np.pi
    np.mod(y, 2 * np.pi, out=y)
    y -= np.pi
    return y.astype(np.float32), rule
