"""Shared fixtures: small analytic volumes and the optional real sample data."""

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(sub: str) -> Path:
    """Path to a folder of ../shared/data, skipping the test when it is absent."""
    p = DATA / sub
    if not p.exists():
        pytest.skip(f"sample data {p} not available")
    return p


def grid_mm(shape, voxel_size, centre=None):
    """Coordinates (mm) of voxel centres relative to the volume centre."""
    centre = (np.asarray(shape) - 1) / 2.0 if centre is None else np.asarray(centre)
    return np.meshgrid(*[(np.arange(n) - c) * d for n, c, d in zip(shape, centre, voxel_size)], indexing="ij")


def ellipsoid(shape, voxel_size, radii_mm, centre_mm=(0, 0, 0)):
    g = grid_mm(shape, voxel_size)
    return sum(((x - c) / r) ** 2 for x, c, r in zip(g, centre_mm, radii_mm)) <= 1.0
