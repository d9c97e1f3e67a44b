import numpy as np
import pytest

from qsmflow.reference import mean_reference


def test_mean_reference_zeroes_region_mean():
    rng = np.random.default_rng(0)
    chi = rng.normal(0.3, 0.1, (8, 8, 8)).astype(np.float32)
    mask = np.zeros((8, 8, 8), bool)
    mask[2:6, 2:6, 2:6] = True
    out, off = mean_reference(chi, mask)
    assert abs(out[mask].mean()) < 1e-6
    assert off == pytest.approx(chi[mask].mean(), rel=1e-5)
    assert np.all(out[~mask] == 0)
    region = mask.copy()
    region[2:4] = False
    out2, _ = mean_reference(chi, mask, region=region)
    assert abs(out2[region].mean()) < 1e-6


def test_mean_reference_errors():
    with pytest.raises(ValueError, match="empty"):
        mean_reference(np.zeros((4, 4, 4)), np.zeros((4, 4, 4), bool))
