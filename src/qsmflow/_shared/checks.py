"""Argument validators shared by every stage.

Each raises ``ValueError`` or ``TypeError`` naming the argument, what was expected
and what came, so the CLI can print it as a one-line message.
"""

from __future__ import annotations

import numpy as np

from .constants import FIELD_STRENGTH_RANGE_T, MAX_ECHO_TIME_S, MAX_GRE_ECHO_TIME_S


def as_volume(name: str, arr, *, ndim: int = 3, dtype=np.float32, finite: bool = False) -> np.ndarray:
    """Return ``arr`` as an array of ``ndim`` dimensions and the given dtype; with ``finite``,
    one holding no NaN/Inf (where one would spread through the whole result, or hang it)."""
    if not isinstance(arr, np.ndarray):
        try:
            arr = np.asarray(arr)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise TypeError(f"{name} must be an array, got {type(arr).__name__}") from exc
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}D, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if ndim == 3 and min(arr.shape) < 2:
        raise ValueError(f"{name} must be a 3D volume with at least 2 voxels along each axis, got shape {arr.shape}")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if finite and np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} holds {bad} NaN/Inf value(s); set them to 0 and leave those voxels out of the mask "
                         "(qsmflow.io's loaders do so)")
    return arr


def as_mask(name: str, mask, shape: tuple[int, ...]) -> np.ndarray:
    """Return ``mask`` as a bool array of ``shape`` with at least one voxel set."""
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} has shape {mask.shape} but the data have shape {tuple(shape)}")
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.number):
            raise TypeError(f"{name} must be boolean or 0/1, got dtype {mask.dtype}")
        mask = mask != 0
    if not mask.any():
        raise ValueError(f"{name} is empty: no voxel is inside it")
    return mask


def as_weights(name: str, weights, shape: tuple[int, ...]) -> np.ndarray:
    """Return a mask or a map of weights in [0, 1] as float32 of ``shape`` (True -> 1),
    with at least one voxel above zero."""
    w = np.asarray(weights)
    if w.dtype == bool:
        return as_mask(name, w, shape).astype(np.float32)
    if w.shape != tuple(shape):
        raise ValueError(f"{name} has shape {w.shape} but the data have shape {tuple(shape)}")
    if not np.issubdtype(w.dtype, np.number):
        raise TypeError(f"{name} must be a mask or weights in [0, 1], got dtype {w.dtype}")
    w = w.astype(np.float32)
    if not np.isfinite(w).all() or w.min() < 0 or w.max() > 1:
        raise ValueError(f"{name} must hold weights between 0 and 1 (a mask, or a CSF likelihood)")
    if not w.any():
        raise ValueError(f"{name} is empty: no voxel is inside it")
    return w


def same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    """Refuse arrays whose shapes differ."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}")


def voxel_size(vs, ndim: int = 3) -> np.ndarray:
    """Return the voxel size as ``ndim`` positive finite floats (mm)."""
    try:
        vs = np.asarray(vs, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"voxel_size must be {ndim} numbers in mm, got {vs!r}") from exc
    if vs.size != ndim or not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise ValueError(f"voxel_size must be {ndim} positive numbers in mm, got {vs.tolist()}")
    if np.any(vs > 20):
        raise ValueError(f"voxel_size must be in mm; {vs.tolist()} looks like a matrix size or cm/µm")
    return vs


def b0_direction(vec, name: str = "b0_direction") -> np.ndarray:
    """Return the B0 direction (or another direction, ``name``) as a unit 3-vector (voxel axes)."""
    try:
        vec = np.asarray(vec, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be 3 numbers, got {vec!r}") from exc
    if vec.size != 3 or not np.all(np.isfinite(vec)):
        raise ValueError(f"{name} must be 3 finite numbers, got {vec.tolist()}")
    norm = np.linalg.norm(vec)
    if norm < 1e-6:
        raise ValueError(f"{name} must not be the zero vector")
    return vec / norm


def echo_times(te, n_echoes: int | None = None) -> np.ndarray:
    """Return echo times in seconds, strictly increasing, matching ``n_echoes``."""
    try:
        te = np.asarray(te, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"echo_times must be numbers in seconds, got {te!r}") from exc
    if te.size == 0:
        raise ValueError("echo_times is empty; give one echo time (s) per echo")
    if not np.all(np.isfinite(te)):
        raise ValueError(f"echo_times must be finite, got {te.tolist()}")
    if np.any(te > MAX_ECHO_TIME_S):
        # echo times of 1-100 ms written in ms read 1-100; in microseconds 1000-100000
        unit, factor = ("microseconds", 1e6) if te.min() >= 500 else ("milliseconds", 1e3)
        raise ValueError(
            f"echo_times must be in seconds, got {te.tolist()}: these look like {unit}; "
            f"divide by {factor:.0f} (e.g. {', '.join(f'{t / factor:g}' for t in te)})"
        )
    if np.any(te > MAX_GRE_ECHO_TIME_S):
        raise ValueError(
            f"echo times {te.tolist()} s are longer than any gradient echo (at most {MAX_GRE_ECHO_TIME_S:g} s): "
            "check their values and unit (seconds, e.g. 0.004 for 4 ms)"
        )
    if np.any(te <= 0):
        raise ValueError(f"echo_times must be positive (s), got {te.tolist()}")
    if te.size > 1 and np.any(np.diff(te) <= 0):
        raise ValueError(f"echo_times must be strictly increasing, got {te.tolist()}")
    if n_echoes is not None and te.size != n_echoes:
        raise ValueError(f"got {te.size} echo times for {n_echoes} echoes; give one echo time per echo")
    return te


def field_strength(b0) -> float:
    """Return the field strength in tesla, refusing implausible values."""
    try:
        b0 = float(b0)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"field_strength must be a number in tesla, got {b0!r}") from exc
    lo, hi = FIELD_STRENGTH_RANGE_T
    if not (lo <= b0 <= hi):
        raise ValueError(f"field_strength must be in tesla between {lo} and {hi}, got {b0}")
    return b0


def positive(name: str, value, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float that is positive (or non-negative)."""
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number, got {value!r}") from exc
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value}")
    return value


def whole_number(name: str, value, *, minimum: int = 1) -> int:
    """Return ``value`` as an int that is a whole number of at least ``minimum`` (a count: not a
    bool, which would read as 0 or 1, nor a float such as 2.5)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}, got {value!r}")
    return int(value)


def flag(name: str, value) -> bool:
    """``value`` if it is True or False (numpy's too); anything else (1, "yes", None) is refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)
