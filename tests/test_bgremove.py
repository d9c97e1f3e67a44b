"""Background removal against fields whose split into local and background is known."""

import numpy as np
import pytest
from scipy import ndimage
from conftest import ellipsoid, grid_mm

from qsmflow import kernels, metrics
from qsmflow.bgremove import vsharp

SHAPE, VS = (56, 64, 48), (1.0, 1.0, 1.5)


def _scene(b0=(0, 0, 1)):
    """Brain-like ellipsoid with inner sources, and strong sources outside (air, bone)."""
    mask = ellipsoid(SHAPE, VS, (20, 23, 26))
    x, y, z = grid_mm(SHAPE, VS)
    inside = np.zeros(SHAPE, np.float32)
    for c, r, v in [((-6, 5, 0), 4, 0.15), ((7, -4, 4), 3, 0.1), ((0, 8, -8), 3, -0.05)]:
        inside[((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) <= r * r] = v
    inside += np.where(mask, 0.02 * np.sin(x / 4.0) * np.cos(y / 5.0), 0).astype(np.float32)
    outside = np.zeros(SHAPE, np.float32)
    outside[((x) ** 2 + (y - 28) ** 2 + (z + 20) ** 2) <= 8**2] = 9.4  # "sinus" next to the mask
    outside[~ellipsoid(SHAPE, VS, (25, 28, 32)) & ellipsoid(SHAPE, VS, (27, 30, 35))] = -2.0  # "skull"
    outside[mask] = 0
    # Sharp voxelised edges carry energy up to the Nyquist frequency, where the
    # continuous kernel's cross terms (oblique B0) ring through the whole volume and
    # make the field non-harmonic inside the mask (measured: 6 % of the background
    # RMS). Real fields are band-limited by the acquisition; a 1-voxel Gaussian edge
    # stands in for that (residual then 0.5 %, as for B0 along z).
    outside = ndimage.gaussian_filter(outside, 1.0)
    outside[mask] = 0
    local = kernels.forward_field(inside, VS, b0)
    background = kernels.forward_field(outside, VS, b0)
    return mask, local, background


# Harmonic input: V-SHARP leaves 0.4 % (axial) and 0.8 % (oblique) of the
# background's RMS; issue 4's acceptance bound is 5 %.
HARMONIC_RESIDUAL_TOL = 0.05
# Local field recovered with demeaned NRMSE 38-40 % (measured, both B0): the
# truncated deconvolution loses the lowest spatial frequencies and the eroded rim.
LOCAL_NRMSE_TOL = 45.0


def test_harmonic_field_is_removed():
    mask, _, background = _scene()
    local, eroded = vsharp(background, mask, VS)
    rms_in = np.sqrt(np.mean(background[eroded] ** 2))
    resid = local[eroded] - local[eroded].mean()
    assert np.sqrt(np.mean(resid**2)) / rms_in < HARMONIC_RESIDUAL_TOL
    assert eroded.sum() > 0.5 * mask.sum() and not np.any(eroded & ~mask)


@pytest.mark.parametrize("b0", [(0, 0, 1), (0, np.sin(0.35), np.cos(0.35))])
def test_local_field_recovered(b0):
    mask, true_local, background = _scene(b0)
    local, eroded = vsharp(true_local + background, mask, VS)
    err = metrics.nrmse(local, true_local, eroded)
    assert err < LOCAL_NRMSE_TOL
    # and the background really was large: without removal the error is huge
    assert metrics.nrmse(true_local + background, true_local, eroded) > 200


def test_units_pass_through_and_no_mutation():
    mask, true_local, background = _scene()
    total = (true_local + background).astype(np.float32)
    copy = total.copy()
    a, e1 = vsharp(total, mask, VS)
    b, e2 = vsharp(total * 127.7, mask, VS)
    np.testing.assert_allclose(b, a * 127.7, rtol=1e-3, atol=1e-4 * np.abs(b).max())
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_array_equal(total, copy)


def test_errors():
    mask, true_local, _ = _scene()
    with pytest.raises(ValueError, match="mask has shape"):
        vsharp(true_local, mask[:-1], VS)
    with pytest.raises(ValueError, match="threshold"):
        vsharp(true_local, mask, VS, threshold=1.5)
    with pytest.raises(ValueError, match="empty"):
        vsharp(true_local, np.zeros(SHAPE, bool), VS)
    tiny = np.zeros(SHAPE, bool)
    tiny[20:23, 20:23, 20:23] = True
    with pytest.raises(ValueError, match="thinner"):
        vsharp(true_local, tiny, VS, radii_mm=(6, 5))
