import numpy as np
import pytest

from qsmflow.reference import csf_reference, csf_weight_redraws, csf_weights, mean_reference


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
    """Brain of R2* 20/s with central 'ventricles' (3/s) and a low-R2* sulcus far from the centre."""
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


def test_csf_weights_ramp_over_the_whole_mask():
    r2, mask, vs, vent, far = _r2_with_ventricles()
    w = csf_weights(r2, mask, vs)
    assert w.dtype == np.float32
    assert np.all(w[vent & mask] == 1) and np.all(w[far & mask] == 1)  # every CSF, not only the centre's
    assert np.all(w[mask & ~vent & ~far] == 0) and np.all(w[~mask] == 0)
    # the ramp, literal: 1 at <= 4/s, (8 - R2*) / 4 between, 0 from 8/s; a failed fit (0) is not CSF
    probe = r2.copy()
    idx = np.argwhere(vent & mask)[:6]
    for (i, j, k), v in zip(idx, (4.0, 5.0, 6.0, 7.5, 8.0, 0.0)):
        probe[i, j, k] = v
    w = csf_weights(probe, mask, vs)
    assert [float(w[tuple(ijk)]) for ijk in idx] == pytest.approx([1.0, 0.75, 0.5, 0.125, 0.0, 0.0])


def test_csf_weights_leave_out_uncertain_r2star():
    r2, mask, vs, vent, far = _r2_with_ventricles()
    noise = np.where(far, 5.0, 1.0).astype(np.float32)  # R2* known to ±5/s in the far sulcus: wider than the ramp
    noise[0, 0, 0] = np.nan  # unknown noise is no reason to drop a voxel
    w = csf_weights(r2, mask, vs, r2star_noise=noise)
    assert np.all(w[far] == 0) and np.all(w[vent & mask] == 1)


def test_csf_weight_redraws_are_the_ramp_under_the_r2star_noise():
    """Other scans' weights: R2* redrawn about each value with its noise, through the ramp
    (1 below 4/s, 0 above 8/s). In the ramp's middle the weights' SD is noise/4 and their mean
    the weight (linear there); on the plateau far below 4/s (1 ± 0.5/s) nothing moves; a voxel
    just above 8/s gains a weight in some scans (R2* 8.5 ± 1: a third of them, the normal's
    tail below 8); a voxel with unknown noise, or noise wider than the ramp, or outside the
    mask, never moves."""
    r2 = np.repeat(np.array([6.0, 1.0, 8.5, 6.0, 6.0, 6.0], np.float32)[:, None, None], 2, axis=1).repeat(2, axis=2)
    noise = np.repeat(np.array([0.4, 0.5, 1.0, np.nan, 5.0, 0.4], np.float32)[:, None, None], 2, axis=1).repeat(2, 2)
    mask = np.ones(r2.shape, bool)  # one case per first index, the same in its 2x2
    mask[5] = False
    w = np.where(mask & ~(noise > 4), np.clip((8 - r2) / 4, 0, 1), 0).astype(np.float32)  # as csf_weights gives them
    draws = np.array(csf_weight_redraws(w, r2, mask, noise, samples=4000, seed=1))[:, :, 0, 0]
    assert draws.shape == (4000, 6) and draws.dtype == np.float32
    new = w[:, 0, 0] + draws
    assert new[:, 0].std() == pytest.approx(0.1, rel=0.05) and new[:, 0].mean() == pytest.approx(0.5, abs=0.005)
    assert np.all(draws[:, 1] == 0)
    assert w[2, 0, 0] == 0 and np.mean(new[:, 2] > 0) == pytest.approx(0.31, abs=0.03)
    assert np.all(draws[:, 3:] == 0)
    assert np.all((new >= 0) & (new <= 1))
    with pytest.raises(ValueError, match="r2star_noise has shape"):
        csf_weight_redraws(w, r2, mask, noise[:3], samples=2)


def test_csf_weights_need_echoes_spread_in_time(caplog):
    """Echoes 2.3 ms apart cannot tell 3/s from 20/s reliably (0.9 % more decay across the
    ramp): no weights, said in words; 10 ms apart they can."""
    caplog.set_level("INFO", logger="qsmflow.reference")
    r2, mask, vs, vent, _ = _r2_with_ventricles()
    w = csf_weights(r2, mask, vs, echo_span_s=0.0023)
    assert not w.any() and "echoes spanning 2.3 ms cannot tell CSF from tissue" in caplog.text
    assert np.all(csf_weights(r2, mask, vs, echo_span_s=0.010)[vent & mask] == 1)


def test_csf_weights_none_found(caplog):
    r2, mask, vs, vent, _ = _r2_with_ventricles()
    out = csf_weights(np.where(mask, 25.0, 0), mask, vs)
    assert not out.any() and "no CSF reference region" in caplog.text
    tiny = np.where(mask, 25.0, 0)
    tiny[20, 24, 18] = 3.0  # one voxel (8 µL) is not a reference region
    assert not csf_weights(tiny, mask, vs).any()
    with pytest.raises(ValueError, match="above full"):
        csf_weights(r2, mask, vs, full=8.0, zero=4.0)


def test_csf_reference_zeroes_csf():
    r2, mask, vs, vent, _ = _r2_with_ventricles()
    chi = np.where(mask, 0.05, 0).astype(np.float32)
    chi[vent] = 0.02
    out, off = csf_reference(chi, mask, csf=vent)
    assert off == pytest.approx(0.02, abs=1e-6)
    assert np.allclose(out[vent], 0, atol=1e-6) and np.allclose(out[mask & ~vent], 0.03, atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        csf_reference(chi, mask, csf=np.zeros_like(mask))


def test_csf_reference_weights_the_mean():
    """Weights 1 on the ventricles (χ 0.02) and 0.25 on the rest (χ 0.05): offset
    (0.02·n_v + 0.25·0.05·n_r) / (n_v + 0.25·n_r), written out by hand."""
    _, mask, _, vent, _ = _r2_with_ventricles()
    vent = vent & mask
    chi = np.where(vent, 0.02, 0.05).astype(np.float32)
    w = np.where(vent, 1.0, 0.25).astype(np.float32)
    n_v, n_r = vent.sum(), (mask & ~vent).sum()
    _, off = csf_reference(chi, mask, csf=w)
    assert off == pytest.approx((0.02 * n_v + 0.25 * 0.05 * n_r) / (n_v + 0.25 * n_r), rel=1e-5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        csf_reference(chi, mask, csf=w * 3)


def test_csf_weights_refuse_t2star_and_echo_spans_in_ms():
    """T2* (s) given as R2* made every voxel CSF (weight 1); a span in ms passed as seconds."""
    from qsmflow import reference

    mask = np.ones((6, 6, 6), bool)
    with pytest.raises(ValueError, match="is it T2"):
        reference.csf_weights(np.full((6, 6, 6), 0.04), mask, (1, 1, 1))
    with pytest.raises(ValueError, match="in milliseconds"):
        reference.csf_weights(np.full((6, 6, 6), 25.0), mask, (1, 1, 1), echo_span_s=24.0)
    w = reference.csf_weights(np.full((6, 6, 6), 25.0), mask, (1, 1, 1), echo_span_s=0.024)
    assert not w.any()  # tissue R2*, no CSF (and too little of it for a reference)
