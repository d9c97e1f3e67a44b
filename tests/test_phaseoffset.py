"""MCPC-3D-S phase-offset removal on a known offset."""

import numpy as np
import pytest
from conftest import ellipsoid, grid_mm

from qsmflow.phaseoffset import mcpc3ds, no_offset_removal

# With a smooth offset spanning 6 rad and a field that wraps at every echo, the
# recovered offset matches up to a constant with an SD of ~0.01 rad (measured:
# smoothing of a 3rd-order polynomial over 5 mm); the residual phase after
# removal is that small too.
OFFSET_TOL_RAD = 0.05


def _data(snr=np.inf, seed=0):
    shape, vs = (44, 48, 32), (1.0, 1.0, 1.5)
    x, y, z = grid_mm(shape, vs)
    phi0 = 2.0 + 0.06 * x - 0.04 * y + 0.0015 * x * y + 0.0008 * z * z
    field = 40.0 * np.sin(x / 9.0) + 1.5 * y  # Hz, wraps by TE 2
    te = np.array([0.004, 0.010, 0.016])
    mag = np.exp(-(x * x + y * y + z * z) / 3000.0)[..., None] * np.exp(-20 * te)
    sig = mag * np.exp(1j * (phi0[..., None] + 2 * np.pi * field[..., None] * te))
    if np.isfinite(snr):
        rng = np.random.default_rng(seed)
        sig = sig + (rng.standard_normal(sig.shape) + 1j * rng.standard_normal(sig.shape)) / snr
    mask = ellipsoid(shape, vs, (19, 21, 20))
    return vs, te, phi0, field, np.angle(sig).astype(np.float32), np.abs(sig).astype(np.float32), mask


def test_mcpc3ds_recovers_offset():
    vs, te, phi0, field, phase, mag, mask = _data()
    corrected, offset = mcpc3ds(phase, mag, te, vs, mask=mask)
    d = np.angle(np.exp(1j * (offset - phi0)))[mask]
    assert np.std(d) < OFFSET_TOL_RAD and abs(np.median(d)) < OFFSET_TOL_RAD
    expect = np.angle(np.exp(1j * 2 * np.pi * field[..., None] * te))
    resid = np.angle(np.exp(1j * (corrected - expect)))[mask]
    assert np.abs(resid).max() < 3 * OFFSET_TOL_RAD


def test_mcpc3ds_with_noise_and_no_offset_removal():
    vs, te, phi0, field, phase, mag, mask = _data(snr=30)
    _, offset = mcpc3ds(phase, mag, te, vs, mask=mask)
    d = np.angle(np.exp(1j * (offset - phi0)))[mask]
    assert np.std(d) < 2 * OFFSET_TOL_RAD
    same, zero = no_offset_removal(phase, mag, te, vs, mask=mask)
    np.testing.assert_array_equal(same, phase)
    assert not zero.any()


def test_mcpc3ds_errors():
    vs, te, phi0, field, phase, mag, mask = _data()
    with pytest.raises(ValueError, match="two echoes"):
        mcpc3ds(phase[..., :1], mag[..., :1], te[:1], vs, mask=mask)
    with pytest.raises(ValueError, match="shape"):
        mcpc3ds(phase, mag[..., :2], te, vs, mask=mask)
