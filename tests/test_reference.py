import numpy as np
import pytest

from qsmflow.reference import csf_mask, csf_reference, mean_reference


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


def _r2_with_ventricles():
    """Brain of R2* 20/s with central 'ventricles' (3/s) and a low-R2* blob far from the centre."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import ellipsoid

    shape, vs = (40, 48, 36), (2.0, 2.0, 2.0)
    mask = ellipsoid(shape, vs, (36, 44, 32))
    r2 = np.where(mask, 20.0, 0).astype(np.float32)
    vent = ellipsoid(shape, vs, (6, 14, 5), (-8, 0, 0)) | ellipsoid(shape, vs, (6, 14, 5), (8, 0, 0))
    far = ellipsoid(shape, vs, (4, 4, 4), (0, 36, 0))
    r2[vent | far] = 3.0
    return r2, mask, vs, vent, far


def test_csf_mask_finds_central_low_r2star():
    r2, mask, vs, vent, far = _r2_with_ventricles()
    csf = csf_mask(r2, mask, vs)
    assert np.array_equal(csf, vent & mask)  # both ventricles, not the blob 36 mm out
    assert not (csf & far).any()


def test_csf_mask_none_found(caplog):
    r2, mask, vs, vent, _ = _r2_with_ventricles()
    out = csf_mask(np.where(mask, 25.0, 0), mask, vs)
    assert not out.any() and "no CSF" in caplog.text
    tiny = np.where(mask, 25.0, 0)
    tiny[20, 24, 18] = 3.0  # one voxel (8 µL) is not a reference region
    assert not csf_mask(tiny, mask, vs).any() and "no CSF reference region" in caplog.text


def test_csf_reference_zeroes_csf():
    r2, mask, vs, vent, _ = _r2_with_ventricles()
    chi = np.where(mask, 0.05, 0).astype(np.float32)
    chi[vent] = 0.02
    out, off = csf_reference(chi, mask, csf=vent)
    assert off == pytest.approx(0.02, abs=1e-6)
    assert np.allclose(out[vent], 0, atol=1e-6) and np.allclose(out[mask & ~vent], 0.03, atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        csf_reference(chi, mask, csf=np.zeros_like(mask))
