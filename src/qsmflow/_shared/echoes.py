"""Combining a multi-echo magnitude into one image."""

from __future__ import annotations

import numpy as np


def rss(magnitude: np.ndarray) -> np.ndarray:
    """Root sum of squares over the echoes (last axis of a 4D array), float32; a 3D image is
    returned as it is. The echo-combined magnitude of masking, MEDI's edges and the checks."""
    mag = np.asarray(magnitude)
    if mag.ndim != 4:
        return mag
    mag = mag.astype(np.float32, copy=False)
    return np.sqrt(np.sum(mag * mag, axis=3))
