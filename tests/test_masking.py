"""Magnitude brain mask on a synthetic head: brain kept, skull and scalp out."""

import numpy as np
import pytest
from conftest import ellipsoid

from scipy import ndimage

from qsmflow.masking import dilate, distance_to_outside, erode, magnitude_mask

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
    # radii under a millimetre count: at 0.5 mm voxels, 0.5 mm takes or adds one layer
    cube = np.zeros((10, 10, 10), bool)
    cube[2:8, 2:8, 2:8] = True
    assert np.array_equal(erode(cube, 0.5, (0.5, 0.5, 0.5)), np.pad(np.ones((4, 4, 4), bool), 3))
    # faces (0.5 mm away) and edges (0.71 mm) come in, corners (0.87 mm) stay out
    assert dilate(cube, 0.8, (0.5, 0.5, 0.5)).sum() == 6**3 + 6 * 6**2 + 12 * 6


@pytest.mark.parametrize("touch_edge", [False, True])
def test_distances_on_the_bounding_box_equal_the_whole_volume(touch_edge):
    """The box-cropped distance transform against brute force: for every mask voxel, the
    distance in mm to the nearest voxel outside the mask, searched over the whole volume
    (the volume's edge not counting as outside); dilation against the distance to the
    nearest mask voxel. A blob of random shape, anisotropic voxels, odd sizes."""
    rng = np.random.default_rng(3)
    shape, vs = (23, 18, 13), np.array([0.9, 1.3, 2.1])
    mask = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5) > 0.05
    if not touch_edge:
        mask[:3], mask[-4:], mask[:, :2], mask[:, -3:], mask[..., :2], mask[..., -2:] = (False,) * 6
    assert mask.any() and (~mask).any() and (mask[0].any() or mask[-1].any()) == touch_edge
    coords = np.indices(shape).reshape(3, -1).T * vs
    inside, outside = coords[mask.ravel()], coords[~mask.ravel()]
    nearest_out = np.sqrt(((inside[:, None, :] - outside[None, :, :]) ** 2).sum(-1)).min(1)
    d = distance_to_outside(mask, vs)
    np.testing.assert_allclose(d[mask], nearest_out, rtol=1e-9)
    assert not d[~mask].any()
    np.testing.assert_array_equal(erode(mask, 2.0, vs)[mask], nearest_out > 2.0)
    nearest_in = np.sqrt(((outside[:, None, :] - inside[None, :, :]) ** 2).sum(-1)).min(1)
    for radius in (1.0, 1.2, 2.5):  # a ball of up to 2 voxels per axis as a structuring element; beyond, distances
        grown = dilate(mask, radius, vs)
        assert grown[mask].all()
        np.testing.assert_array_equal(grown[~mask], nearest_in <= radius, err_msg=str(radius))


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
    # a depth map given (a caller peeling again) is the depth: a wrong one moves the peel
    from qsmflow.masking import distance_to_outside
    depth = distance_to_outside(mask, vs)
    assert np.array_equal(reliable_field_mask(mask, noise, vs, factor=3.0, depth_mm=6.0, depth=depth), kept)
    assert np.array_equal(reliable_field_mask(mask, noise, vs, factor=3.0, depth_mm=6.0, depth=depth + 10), mask)


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

    mask = np.zeros((102, 102, 27), bool)
    inner = np.zeros(250_000, bool)
    inner[: int(round(litres * 100_000))] = True
    mask[1:-1, 1:-1, 1:-1] = inner.reshape(100, 100, 25)  # touching no face of the volume: a whole head
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        check_volume(mask, (2.0, 2.0, 2.5))
    assert (text in caplog.text) if text else not caplog.text


def test_a_mask_the_field_of_view_cuts_is_named_by_its_faces_and_not_warned_about_as_small(caplog):
    """A slab's mask reaches two faces with most of its section (a cylinder along k: every
    slice the same); a brainstem cut at the bottom of a whole head reaches one with a small
    share of its largest section (1/16 here), which is no slab, and the small volume is warned
    about as before."""
    import logging

    from qsmflow.masking import check_volume, faces_cutting

    ij = np.sum(np.square(np.mgrid[:40, :40] - 19.5), axis=0)
    slab = np.repeat((ij < 18**2)[:, :, None], 12, axis=2)
    assert faces_cutting(slab) == ["k = 0", "k = 11"]
    head = np.zeros((40, 40, 30), bool)
    head[..., 8:28] = (ij < 16**2)[:, :, None]
    head[..., :8] = (ij < 4**2)[:, :, None]  # a brainstem of 1/16 the brain's section, cut by the bottom face
    assert faces_cutting(head) == []
    head[..., :8] = (ij < 8**2)[:, :, None]  # 1/4 of it: a cut brain
    assert faces_cutting(head) == ["k = 0"]
    with caplog.at_level(logging.INFO, logger="qsmflow"):
        check_volume(slab, (1.0, 1.0, 1.0))
    assert "the field of view cuts the brain (at k = 0 and k = 11): the mask holds the 0.01 L of it inside" \
        in caplog.text and "WARNING" not in caplog.text


# --- the parts of the masks, each with an answer worked out here -----------------------------


def test_distance_to_outside_counts_the_volume_faces_only_when_asked():
    """A block filling the volume along k (1 x 1 x 2 mm voxels), 8 voxels across in i and j:
    its centre column is 4 voxels (4 mm) from the outside in i and j; with the faces counted
    as outside, its voxels on a face are one voxel (2 mm) from the layer beyond."""
    mask = np.zeros((12, 12, 6), bool)
    mask[2:10, 2:10, :] = True
    vs = (1.0, 1.0, 2.0)
    assert distance_to_outside(mask, vs)[5, 5, 0] == pytest.approx(4.0)
    edge = distance_to_outside(mask, vs, volume_edge=True)
    assert edge[5, 5, 0] == pytest.approx(2.0) and edge[5, 5, 5] == pytest.approx(2.0)
    assert edge[5, 5, 2] == pytest.approx(4.0)  # 3 voxels (6 mm) from either face, 4 mm from the sides
    inside = np.zeros((12, 12, 8), bool)
    inside[2:10, 2:10, 1:7] = True  # touching no face: the same either way
    assert np.array_equal(distance_to_outside(inside, vs), distance_to_outside(inside, vs, volume_edge=True))


def test_distance_to_outside_answers_again_from_the_mask_not_from_the_last_call():
    """The last answer is kept: a changed voxel, voxel size or face rule gives the new
    distances, and changing the returned array does not change the next answer."""
    mask = np.zeros((12, 12, 12), bool)
    mask[2:10, 2:10, 2:10] = True  # 8 voxels across: the centre voxels 4 voxels from the outside
    first = distance_to_outside(mask, (1.0, 1.0, 1.0))
    assert first[5, 5, 5] == pytest.approx(4.0)
    first[...] = -1.0
    assert distance_to_outside(mask, (1.0, 1.0, 1.0))[5, 5, 5] == pytest.approx(4.0)
    assert distance_to_outside(mask, (2.0, 2.0, 2.0))[5, 5, 5] == pytest.approx(8.0)
    holed = mask.copy()
    holed[5, 5, 3] = False  # an outside voxel 2 voxels below the centre
    assert distance_to_outside(holed, (2.0, 2.0, 2.0))[5, 5, 5] == pytest.approx(4.0)
    touching = mask.copy()
    touching[2:10, 2:10, :] = True  # through the k faces: counted as outside only when asked
    assert distance_to_outside(touching, (1.0, 1.0, 1.0))[5, 5, 0] == pytest.approx(4.0)
    assert distance_to_outside(touching, (1.0, 1.0, 1.0), volume_edge=True)[5, 5, 0] == pytest.approx(1.0)



def test_shrink_removes_one_face_layer_then_erodes_the_rest_in_mm():
    """A cuboid of 20 voxels a side: 1 mm at 1 mm voxels removes one layer; 3 mm removes one
    layer, then voxels within 2 mm of the outside (so 3 layers); along 2 mm voxels the same
    3 mm removes 2 layers (the first, then the one 2 mm from the outside); shrinking a mask to
    nothing gives it back."""
    from qsmflow.masking import _shrink

    cube = np.zeros((24, 24, 24), bool)
    cube[2:22, 2:22, 2:22] = True
    vs = np.array([1.0, 1.0, 1.0])
    assert _shrink(cube, 0.0, vs) is cube
    one = np.zeros_like(cube)
    one[3:21, 3:21, 3:21] = True
    assert np.array_equal(_shrink(cube, 1.0, vs), one)
    three = np.zeros_like(cube)
    three[5:19, 5:19, 5:19] = True
    assert np.array_equal(_shrink(cube, 3.0, vs), three)
    aniso = np.zeros_like(cube)
    aniso[5:19, 5:19, 4:20] = True
    assert np.array_equal(_shrink(cube, 3.0, np.array([1.0, 1.0, 2.0])), aniso)
    tiny = np.zeros_like(cube)
    tiny[5:7, 5:7, 5:7] = True
    assert np.array_equal(_shrink(tiny, 3.0, vs), tiny)


def _ball_in_air(scale=1.0, shape=(40, 40, 40), vs=(2.5, 2.5, 2.5), radius=40.0):
    """A bright ball with a soft edge in air (whole-head-like: over 5 % dark voxels)."""
    x, y, z = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * d for n, d in zip(shape, vs)], indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    return (scale * np.clip((radius - r) / 8.0, 0, 1) + 0.002 * scale).astype(np.float32), r


@pytest.mark.parametrize("scale", [0.5, 1000.0])
def test_crop_inside_the_head_keeps_every_voxel_with_signal(scale, caplog):
    """A field of view inside the head (no background): every voxel with signal, whatever the
    intensity scale, the largest piece only, with a warning; zeros (no data) stay out."""
    import logging

    from qsmflow.masking import bet_brain_mask

    rng = np.random.default_rng(2)
    mag = (scale * rng.uniform(0.4, 1.0, (30, 30, 30))).astype(np.float32)
    mag[10:12, 10:12, 10:12] = 0  # missing voxels inside
    mag[:, :, 20] = 0  # a plane of missing data: two pieces, the larger kept
    expected = mag > 0
    expected[:, :, 20:] = False
    for method in (magnitude_mask, bet_brain_mask):
        with caplog.at_level(logging.WARNING, logger="qsmflow"):
            mask = method(mag, (1.0, 1.0, 1.0))
        assert np.array_equal(mask, expected), method.__name__
        assert "field of view looks like a crop inside the head" in caplog.text


def test_whole_head_scale_does_not_make_a_crop():
    """Dark background of 2e-3 of the tissue's brightness at intensities of 1000: a whole
    head, so the mask is the ball, not every voxel with signal."""
    mag, r = _ball_in_air(scale=1000.0)
    mask = magnitude_mask(mag, (2.5, 2.5, 2.5))
    assert not mask[r > 41].any() and mask[r < 30].all()


def test_threshold_mask_arguments_are_named_in_errors():
    mag, _ = _ball_in_air()
    for kwargs, words in [(dict(erode_mm=-1.0), "^erode_mm must be non-negative"),
                          (dict(shrink_mm=-1.0), "^shrink_mm must be non-negative"),
                          (dict(valid=np.ones((4, 4, 4), bool)), "^valid has shape")]:
        with pytest.raises(ValueError, match=words):
            magnitude_mask(mag, (2.5, 2.5, 2.5), **kwargs)
    with pytest.raises(ValueError, match="^magnitude must be 4D"):
        magnitude_mask(np.ones((4, 4, 4, 2, 2), np.float32), (1, 1, 1))
    # zero is allowed for both
    assert magnitude_mask(mag, (2.5, 2.5, 2.5), erode_mm=0.0, shrink_mm=0.0).any()


def test_erosion_larger_than_the_head_falls_back_to_the_thresholded_head(caplog):
    import logging

    mag, r = _ball_in_air()
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        mask = magnitude_mask(mag, (2.5, 2.5, 2.5), erode_mm=80.0, shrink_mm=0.0)
    assert "removed the whole head" in caplog.text
    assert mask[r < 30].all() and not mask[r > 41].any()


def test_bet_brain_mask_passes_valid_threshold_and_shrink_on(monkeypatch):
    from qsmflow.masking import bet, bet_brain_mask

    # what is passed on, not the shading fit: no bias pass (a uniform ball has no shading)
    monkeypatch.setitem(bet.bet_mask.__kwdefaults__, "bias_passes", 0)
    mag, r = _ball_in_air()
    vs = (2.5, 2.5, 2.5)
    valid = np.ones(mag.shape, bool)
    valid[:, :, 8:10] = False
    mask = bet_brain_mask(mag, vs, valid=valid)
    assert not mask[:, :, 8:10].any() and mask[r < 25].sum() > 0.9 * (r < 25).sum()
    hole = r < 6  # missing voxels (NaN in the input) in the middle of the brain stay out of the mask
    mask = bet_brain_mask(np.where(hole, 0, mag), vs, valid=~hole)
    assert not mask[hole].any() and mask[(r > 8) & (r < 25)].all()
    whole = bet_brain_mask(mag, vs)
    assert bet_brain_mask(mag, vs, fractional_threshold=0.3).sum() > whole.sum() > \
        bet_brain_mask(mag, vs, fractional_threshold=0.8).sum()
    # BET's surface is the same as for `whole` (measured the same to the voxel): given here, so
    # that what is checked is the erosion bet_brain_mask applies to it
    monkeypatch.setattr(bet, "bet_mask", lambda *a, **k: whole.copy())
    shrunk = bet_brain_mask(mag, vs, shrink_mm=2.5)  # one voxel layer
    from scipy import ndimage

    assert np.array_equal(shrunk, ndimage.binary_erosion(whole))
    with pytest.raises(ValueError, match="^shrink_mm must be non-negative"):
        bet_brain_mask(mag, vs, shrink_mm=-1)


def _sphere_mask(shape=(40, 40, 40), vs=(1.0, 1.0, 1.0), radius=18.0):
    x, y, z = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * d for n, d in zip(shape, vs)], indexing="ij")
    return x**2 + y**2 + z**2 < radius**2, (x, y, z)


def test_reliability_peel_limits_are_strict_and_scale_free():
    """Noise exactly at 3x the median, or R2* exactly at the venous limit, stays; the noise's
    unit does not matter (0.2x everywhere gives the same peel); factor 0 ignores noise."""
    from qsmflow.masking import reliable_field_mask

    mask, (x, y, z) = _sphere_mask()
    vs = (1.0, 1.0, 1.0)
    edge = mask & (x > 14.5)
    noise = np.ones(mask.shape, np.float32)
    noise[edge] = 3.0
    assert np.array_equal(reliable_field_mask(mask, noise, vs), mask)
    noise[edge] = 3.5
    peeled = reliable_field_mask(mask, noise, vs)
    assert not (peeled & edge).any()
    assert np.array_equal(reliable_field_mask(mask, 0.2 * noise, vs), peeled)
    for depth in (10.0, 2.0):  # factor 0: noise not used, even where every voxel is above 0 x median
        assert np.array_equal(reliable_field_mask(mask, noise, vs, factor=0.0, depth_mm=depth), mask)
    r2 = np.full(mask.shape, 20.0, np.float32)
    r2[edge] = 40.0
    ones = np.ones(mask.shape, np.float32)
    assert np.array_equal(reliable_field_mask(mask, ones, vs, r2star=r2, r2star_noise=2.0), mask)
    r2[edge] = 41.0
    assert np.array_equal(reliable_field_mask(mask, ones, vs, r2star=r2, r2star_noise=2.0), peeled)
    # R2* noise exactly at a quarter of the limit is not good enough to use R2*
    assert np.array_equal(reliable_field_mask(mask, ones, vs, r2star=r2, r2star_noise=10.0), mask)


def test_reliability_peel_defaults_to_3_tesla_and_scales_the_limit_with_b0():
    """Grey matter at 35/s and a sinus at 45/s: at 3 T (the default) only the sinus goes; at
    2.5 T the limit is 33/s, so the grey-matter edge goes too."""
    from qsmflow.masking import reliable_field_mask

    mask, (x, y, z) = _sphere_mask()
    vs = (1.0, 1.0, 1.0)
    sinus = mask & (x**2 + (z - 16) ** 2 < 3.0**2)
    grey = mask & (x < -14.5)
    r2 = np.full(mask.shape, 20.0, np.float32)
    r2[grey] = 35.0
    r2[sinus] = 45.0
    ones = np.ones(mask.shape, np.float32)
    kept = reliable_field_mask(mask, ones, vs, r2star=r2, r2star_noise=2.0)
    assert not (kept & sinus).any() and kept[grey].all()
    # noise and R2* together: both kinds of unreliable edge go
    noisy = mask & (y > 14.5)
    both = reliable_field_mask(mask, np.where(noisy, 5.0, 1.0), vs, r2star=r2, r2star_noise=2.0)
    assert not (both & sinus).any() and not (both & noisy).any() and both[grey].all()
    lower = reliable_field_mask(mask, ones, vs, r2star=r2, r2star_noise=2.0, field_strength=2.5)
    assert not (lower & grey).any() and not (lower & sinus).any()


def test_reliability_peel_reaches_only_from_the_edge_and_only_depth_mm_deep_in_mm():
    """Anisotropic voxels (1 x 1 x 2 mm): a noisy blob 4 mm under the edge that does not touch it
    stays; a noisy column from the top edge goes down to depth_mm (in mm, not voxels)."""
    from scipy import ndimage

    from qsmflow.masking import reliable_field_mask

    vs = (1.0, 1.0, 2.0)
    mask, (x, y, z) = _sphere_mask(shape=(44, 44, 24), vs=vs, radius=20.0)
    noise = np.ones(mask.shape, np.float32)
    blob = (np.hypot(x - 0.5, y - 0.5) < 3) & (np.abs(z + 15) <= 2)  # 4-8 mm over the bottom edge, not touching
    column = mask & (np.hypot(x - 0.5, y - 0.5) < 2) & (z > 0)  # from the top edge to the centre
    noise[blob | column] = 5.0
    depth = 6.0
    kept = reliable_field_mask(mask, noise, vs, depth_mm=depth)
    mm_deep = ndimage.distance_transform_edt(mask, sampling=vs)
    assert mm_deep[blob].min() < depth  # within reach of the peel, but not connected to the edge
    assert kept[blob].all()
    assert not (kept & column & (mm_deep <= depth)).any()
    assert kept[column & (mm_deep > depth + 2.5)].all()  # below the peel and its one-voxel margin


def test_reliability_peel_over_half_the_mask_keeps_it_whole(caplog):
    import logging

    from qsmflow.masking import reliable_field_mask

    mask, (x, y, z) = _sphere_mask()
    noise = np.ones(mask.shape, np.float32)
    noise[mask & (np.abs(x) < 3.5)] = 9.0  # a slab through the middle, from edge to edge: what
    # is left of the mask is two halves, each under half of it
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        kept = reliable_field_mask(mask, noise, (1, 1, 1), depth_mm=40.0)
    assert np.array_equal(kept, mask) and "unreliable over half" in caplog.text


def test_local_region_loses_its_small_cut_off_pieces():
    """Eroding a region leaves single voxels where it was thin; the chain drops pieces under
    1 mL (1,000 voxels at 1 mm, 125 at 2 mm), keeps larger ones (a slab's separate temporal
    pole) and the largest piece whatever its size, and zeroes the local field where it dropped."""
    from qsmflow.workflows.local_field import _drop_islands

    region = np.zeros((40, 40, 40), bool)
    region[2:20, 2:20, 2:20] = True  # 5,832 voxels
    region[30, 30, 30] = True  # a single voxel
    region[25:36, 2:12, 2:12] = True  # 1,100 voxels: over 1 mL at 1 mm, kept
    field = np.ones(region.shape, np.float32)
    local, kept = _drop_islands(field, region, (1.0, 1.0, 1.0))
    assert not kept[30, 30, 30] and kept[10, 10, 10] and kept[30, 5, 5]
    assert kept.sum() == 5832 + 1100 and local[30, 30, 30] == 0 and local[10, 10, 10] == 1
    local, kept = _drop_islands(field, region, (2.0, 2.0, 2.0))  # 1 mL = 125 voxels of 8 µL
    assert kept.sum() == 5832 + 1100
    local, kept = _drop_islands(field, region, (0.5, 0.5, 0.5))  # 8,000 voxels: only the largest stays
    assert kept.sum() == 5832
    one = region & (np.arange(40)[:, None, None] < 21)  # one piece: unchanged, the same array
    assert _drop_islands(field, one, (1.0, 1.0, 1.0))[1] is one


def test_filled_holes_matches_scipy_on_nested_holes_and_masks_at_the_faces():
    """A hollow ball holding an island inside a cavity, a ring of pockets open to a face, a
    pocket reached only along an edge (not through a face), and the empty and full volumes:
    the same voxels as scipy's binary_fill_holes (face connectivity, the volume's faces open)."""
    from qsmflow.masking._components import filled_holes

    shape, vs = (30, 28, 26), (1.0, 1.0, 1.0)
    shell = ellipsoid(shape, vs, (12, 11, 10)) & ~ellipsoid(shape, vs, (8, 7, 6))
    shell |= ellipsoid(shape, vs, (3, 3, 3))  # an island inside the cavity: the cavity is filled around it
    shell[:, :, :3] = True
    shell[5:9, 5:9, 0] = False  # a pocket open to the z = 0 face: outside, stays empty
    shell[20:23, 20:23, 1] = False  # a pocket closed on every side: a hole
    shell[12, 0, 1:3] = False  # a tunnel to the y = 0 face
    rng = np.random.default_rng(0)
    speckled = ellipsoid(shape, vs, (12, 11, 10)) & (rng.random(shape) > 0.3)
    for mask in (shell, speckled, np.zeros(shape, bool), np.ones(shape, bool)):
        expected = ndimage.binary_fill_holes(mask)
        assert np.array_equal(filled_holes(mask), expected)
    assert filled_holes(shell)[0, 0, 0] == shell[0, 0, 0] and filled_holes(shell)[21, 21, 1]
    assert not filled_holes(shell)[6, 6, 0]
