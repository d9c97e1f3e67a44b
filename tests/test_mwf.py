"""Three-pool complex fit: exact on noise-free data, refuses too few echoes."""

import numpy as np
import pytest

from qsmflow import mwf


def _three_pool(n, te, rng):
    frac = rng.uniform(0.05, 0.2, n)
    t = te[None]
    f_bg, phi0 = rng.uniform(-30, 30, n), rng.uniform(-3, 3, n)
    s = (frac[:, None] * np.exp(-t / rng.uniform(0.008, 0.012, n)[:, None] + 2j * np.pi * rng.uniform(3, 10, n)[:, None] * t)
         + 0.6 * (1 - frac)[:, None] * np.exp(-t / rng.uniform(0.055, 0.07, n)[:, None]
                                             + 2j * np.pi * rng.uniform(-3, 0, n)[:, None] * t)
         + 0.4 * (1 - frac)[:, None] * np.exp(-t / rng.uniform(0.04, 0.05, n)[:, None]))
    s = s * np.exp(1j * (2 * np.pi * f_bg[:, None] * t + phi0[:, None]))
    return s, frac, f_bg


def test_noise_free_mwf_recovered():
    """24 echoes every 2 ms, WM-like pools (Nam et al. 2015): MWF within 0.5 percentage points."""
    rng = np.random.default_rng(0)
    te = 0.002 + 0.002 * np.arange(24)
    s, frac, f_bg = _three_pool(600, te, rng)
    y = s.reshape(10, 6, 10, 24)
    maps = mwf.three_pool_mwf(np.abs(y), np.angle(y), te, mask=np.ones((10, 6, 10), bool),
                              field_hz=f_bg.reshape(10, 6, 10))
    err = maps["mwf"].ravel() - frac
    assert np.mean(np.abs(err)) < 0.005
    assert np.median(maps["residual"]) < 1e-3
    assert np.all((maps["t2star_my"] >= 0.003) & (maps["t2star_my"] <= 0.025))


def test_too_few_echoes_refused():
    te = 0.002 + 0.002 * np.arange(8)
    with pytest.raises(ValueError, match="at least 12 echoes"):
        mwf.three_pool_mwf(np.ones((3, 3, 3, 8)), np.zeros((3, 3, 3, 8)), te, mask=np.ones((3, 3, 3), bool))
