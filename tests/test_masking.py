"""Magnitude brain mask on a synthetic head: brain kept, skull and scalp out."""

import numpy as np
import pytest
from conftest import ellipsoid

from qsmflow.masking import dilate, erode, magnitude_mask

SHAPE, VS = (64, 72, 56), (2.0, 2.0, 2.5)


def _head(seed=0):
    rng = np.random.default_rng(seed)
    brain = ellipsoid(SHAPE, VS, (55, 65, 50))
    csf = ellipsoid(SHAPE, VS, (58, 68, 53)) & ~brain
    skull = ellipsoid(SHAPE, VS, (63, 73, 58)) & ~brain & ~csf
    scalp = ellipsoid(SHAPE, VS, (68, 78, 63)) & ~ellipsoid(SHAPE, VS, (63, 73, 58))
    m0 = np.zeros(SHAPE)
    m0[brain] = 0.8
    m0[csf] = 1.0
    m0[skull] = 0.03
    m0[scalp] = 0.9
    # dark deep-grey "nucleus" and vein inside the brain: must not become holes
    m0[ellipsoid(SHAPE, VS, (8, 8, 8), (12, 5, 0))] = 0.2
    te = np.array([0.004, 0.012, 0.020])
    r2 = np.where(skull, 300.0, 20.0)
    sig = m0[..., None] * np.exp(-r2[..., None] * te)
    noisy = np.abs(sig + 0.01 * (rng.standard_normal(sig.shape) + 1j * rng.standard_normal(sig.shape)))
    return noisy.astype(np.float32), brain, brain | csf


def test_mask_covers_brain_and_excludes_scalp():
    mag, brain, intracranial = _head()
    mask = magnitude_mask(mag, VS)
    coverage = (mask & brain).sum() / brain.sum()
    outside = (mask & ~intracranial).sum() / mask.sum()
    assert coverage > 0.97, coverage  # measured 1.000
    assert outside < 0.01, outside  # measured 0.0: skull and scalp out


def test_valid_voxels_respected():
    mag, _, _ = _head()
    valid = np.ones(SHAPE, bool)
    valid[30:34] = False
    mask = magnitude_mask(mag, VS, valid=valid)
    assert not mask[30:34].any()


def test_erode_and_dilate_are_round_in_mm():
    point = np.zeros((21, 21, 11), bool)
    point[10, 10, 5] = True
    b = dilate(point, 4.0, (1.0, 1.0, 2.0))
    assert b[6, 10, 5] and b[10, 10, 3] and not b[10, 10, 2] and not b[7, 7, 5]
    # eroding the dilated ball by the same radius gives back the point
    assert np.array_equal(erode(b, 4.0, (1.0, 1.0, 2.0)), point)


def test_errors():
    with pytest.raises(ValueError, match="zero everywhere"):
        magnitude_mask(np.zeros((8, 8, 8)), (1, 1, 1))


def test_reliability_peel_removes_the_noisy_edge_and_keeps_deep_veins():
    """Unreliable field (noise 5x the median) at the mask's edge goes; the same noise in a vein
    10 mm deep stays, and so does a reliable edge."""
    from qsmflow.masking import reliable_field_mask

    shape, vs = (40, 40, 40), (1.0, 1.0, 1.0)
    mask = ellipsoid(shape, vs, (18, 18, 18))
    noise = np.ones(shape, np.float32)
    x, y, z = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij")
    edge = mask & (x > 14.5)  # a cap of the sphere, up to 3.5 mm deep
    vein = (np.abs(x) <= 1) & (np.abs(y) <= 1) & (np.abs(z) <= 6)  # at the centre, 12 mm from the edge
    noise[edge] = 5.0
    noise[vein] = 5.0
    kept = reliable_field_mask(mask, noise, vs, factor=3.0, depth_mm=6.0)
    assert not (kept & edge).any()
    assert kept[vein].all()
    # the cap and one voxel around it (its partial volume) go, nothing else
    assert np.array_equal(mask & ~kept, dilate(edge, 1.0, vs) & mask)
    # unknown noise (no background to measure it): the mask is kept whole
    assert np.array_equal(reliable_field_mask(mask, np.full(shape, np.nan, np.float32), vs), mask)


def test_reliability_peel_takes_a_sinus_at_the_edge_when_r2star_is_resolved():
    """A venous-blood R2* (45/s at 3 T) tube along the edge (a dural sinus) goes; the same R2*
    in a deep vein stays; with R2* too noisy to resolve 40/s the sinus stays too."""
    from qsmflow.masking import reliable_field_mask

    shape, vs = (40, 40, 40), (1.0, 1.0, 1.0)
    mask = ellipsoid(shape, vs, (18, 18, 18))
    x, y, z = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij")
    sinus = mask & (x**2 + (z - 16) ** 2 < 3.0**2)  # along y, at the top edge
    vein = (np.abs(x) <= 1) & (np.abs(z) <= 1) & (np.abs(y) <= 8)  # through the centre
    r2 = np.full(shape, 20.0, np.float32)
    r2[sinus | vein] = 45.0
    noise = np.ones(shape, np.float32)
    kept = reliable_field_mask(mask, noise, vs, r2star=r2, r2star_noise=2.0, field_strength=3.0)
    assert not (kept & sinus).any() and kept[vein].all()
    assert np.array_equal(mask & ~kept, dilate(sinus, 1.0, vs) & mask)
    # at 7 T the venous limit is 93/s: 45/s is tissue there
    assert np.array_equal(reliable_field_mask(mask, noise, vs, r2star=r2, r2star_noise=2.0, field_strength=7.0), mask)
    # two short echoes: R2* noise 22/s cannot resolve 40/s, so R2* is not used
    assert np.array_equal(reliable_field_mask(mask, noise, vs, r2star=r2, r2star_noise=22.0), mask)


def test_threshold_mask_cuts_a_bridge_from_brain_to_scalp():
    """A bright tissue bridge through the skull (optic nerve, brainstem to neck) joins the brain to
    bright tissue outside it in the thresholded head; the erosion step must cut it (with no
    erosion the outside tissue comes in)."""
    mag, brain, intracranial = _head()
    x, y, z = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * d for n, d in zip(SHAPE, VS)], indexing="ij")
    bridge = (np.hypot(x, y) <= 5.0) & (z > 0) & ~brain  # 10 mm wide, from the brain out through the skull
    neck = (np.abs(x) < 30) & (np.abs(y) < 30) & (z > 58)  # a block of bright tissue beyond the skull
    bright = 0.7 * np.exp(-20.0 * np.array([0.004, 0.012, 0.020]))
    mag[bridge | neck] = bright
    outside = ~intracranial & ~bridge
    mask = magnitude_mask(mag, VS)
    assert (mask & brain).sum() / brain.sum() > 0.97
    assert (mask & outside).sum() / mask.sum() < 0.01, "the bridge was not cut"
    uncut = magnitude_mask(mag, VS, erode_mm=0)  # the check can fail: without erosion the block is in
    assert (uncut & outside).sum() / uncut.sum() > 0.03  # measured 3.7 %


@pytest.mark.parametrize("litres, text", [
    (2.0, "the brain mask holds 2.00 L, more than an adult brain (0.9-1.9 L): it may take in eyes, muscle or neck, "
          "and χ there is meaningless; look at the mask and pass --mask if it is wrong"),
    (0.5, "the brain mask holds 0.50 L, less than an adult brain (0.9-1.9 L): fine if the field of view cuts the "
          "brain (a slab) or for a child, otherwise brain is missing; look at the mask and pass --mask if it is wrong"),
    (0.9, None), (1.9, None), (1.4, None),
])
def test_mask_volume_warning_words_and_limits(litres, text, caplog):
    """The whole-head mask's volume against 0.9-1.9 L (2 x 2 x 2.5 mm voxels, 10 µL each): the limits
    themselves pass."""
    import logging

    from qsmflow.masking import check_volume

    mask = np.zeros(250_000, bool)
    mask[: int(round(litres * 100_000))] = True
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        check_volume(mask.reshape(100, 100, 25), (2.0, 2.0, 2.5))
    assert (text in caplog.text) if text else not caplog.text
