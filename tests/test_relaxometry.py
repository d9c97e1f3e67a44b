"""R2* fits: exact on noise-free data."""

import numpy as np
import pytest

from qsmflow.constants import T2STAR_CAP_S
from qsmflow.relaxometry import loglinear_r2star, t2star_from_r2star

# noise-free mono-exponential data: float32 input limits the relative error to ~1e-6
EXACT_RTOL = 1e-4


def test_noise_free_recovered_exactly():
    rng = np.random.default_rng(3)
    shape = (5, 6, 7)
    r2 = rng.uniform(5, 80, shape)
    s0 = rng.uniform(100, 1000, shape)
    te = np.array([0.003, 0.008, 0.015, 0.024, 0.031])
    mag = (s0[..., None] * np.exp(-r2[..., None] * te)).astype(np.float32)
    r2_est, s0_est = loglinear_r2star(mag, te)
    np.testing.assert_allclose(r2_est, r2, rtol=EXACT_RTOL)
    np.testing.assert_allclose(s0_est, s0, rtol=EXACT_RTOL)


def test_mask_and_zero_signal():
    te = [0.005, 0.01]
    mag = np.ones((4, 4, 4, 2), np.float32)
    mag[0, 0, 0] = 0
    mask = np.ones((4, 4, 4), bool)
    mask[1] = False
    r2, s0 = loglinear_r2star(mag, te, mask=mask)
    assert r2[0, 0, 0] == 0 and r2[1].max() == 0 and s0[1].max() == 0


def test_single_echo_refused():
    with pytest.raises(ValueError, match="2 echoes"):
        loglinear_r2star(np.ones((4, 4, 4, 1)), [0.01])


def test_t2star_rule():
    r2 = np.array([[[0.0, -1.0, 1.0, 20.0]]])
    t2 = t2star_from_r2star(r2)
    np.testing.assert_allclose(t2.ravel(), [T2STAR_CAP_S, T2STAR_CAP_S, T2STAR_CAP_S, 0.05], rtol=1e-6)
