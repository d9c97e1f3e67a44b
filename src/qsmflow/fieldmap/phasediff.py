"""A dual-echo field map given as a phase difference (Hz)."""

from __future__ import annotations

import numpy as np

from .._shared import checks as _checks

__all__ = ["phasediff_fieldmap"]


def phasediff_fieldmap(
    phasediff: np.ndarray,
    magnitude: np.ndarray,
    delta_te: float,
    voxel_size,
    *,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """B0 field map (Hz) from a dual-echo phase-difference image.

    The phase difference ``φ(TE2) - φ(TE1)`` (rad, wrapped) is unwrapped with the
    quality-guided spanning tree (magnitude-weighted), its whole turn chosen so the
    median inside the mask lies in (-π, π], and divided by ``2π·(TE2 - TE1)``.

    Parameters
    ----------
    phasediff : ndarray (X, Y, Z)
        Wrapped phase difference (rad).
    magnitude : ndarray (X, Y, Z)
        A magnitude image of the same acquisition.
    delta_te : float
        ``TE2 - TE1`` (s).
    voxel_size : sequence of 3 float
        Voxel size (mm).
    mask : ndarray of bool, optional
        Where to unwrap (0 outside); default all.

    Returns
    -------
    ndarray (float32)
        Field (Hz).

    References
    ----------
    Jezzard P, Balaban RS. Correction for geometric distortion in echo planar images
    from B0 field variations. Magn Reson Med 1995;34:65-73. doi:10.1002/mrm.1910340111

    Dymerska B, Eckstein K, Bachrata B, Siow B, Trattnig S, Shmueli K, Robinson SD. Phase
    unwrapping with a rapid opensource minimum spanning tree algorithm (ROMEO). Magn Reson
    Med 2021;85:2294-2308. doi:10.1002/mrm.28563
    """
    from ..unwrap import romeo_unwrap

    phasediff = _checks.as_volume("phasediff", phasediff, finite=True)
    magnitude = _checks.as_volume("magnitude", magnitude, finite=True)
    _checks.same_shape("phasediff", phasediff, "magnitude", magnitude)
    dte = _checks.positive("delta_te", delta_te)
    if dte > 0.1:
        raise ValueError(f"delta_te must be in seconds, got {dte}: this looks like milliseconds")
    unwrapped = romeo_unwrap(phasediff, voxel_size, mask=mask, magnitude=magnitude)
    return (unwrapped / (2 * np.pi * dte)).astype(np.float32)
