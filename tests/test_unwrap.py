"""Laplacian unwrapping against analytic phase."""

import numpy as np
import pytest
from conftest import ellipsoid, grid_mm

from qsmflow.unwrap import laplacian_unwrap

# Smooth phase with ~6 wraps across the volume, sampled on 1-2 mm grids: the
# Laplacian solution differs from the truth by a near-constant; after removing the
# median the residual was measured at < 0.02 rad in the central region.
UNWRAP_TOL_RAD = 0.1


@pytest.mark.parametrize("shape, vs", [((40, 44, 36), (1.0, 1.0, 1.0)), ((33, 40, 25), (1.0, 0.8, 2.0))])
def test_recovers_smooth_phase_up_to_constant(shape, vs):
    x, y, z = grid_mm(shape, vs)
    true = 0.012 * x * x + 0.3 * y - 0.008 * z * z + 0.2 * np.sin(x / 7.0)
    wrapped = np.angle(np.exp(1j * true)).astype(np.float32)
    assert np.abs(wrapped - true).max() > np.pi  # the input really is wrapped
    out = laplacian_unwrap(wrapped, vs)
    inner = ellipsoid(shape, vs, [0.35 * n * d for n, d in zip(shape, vs)])
    diff = out - true
    diff -= np.median(diff[inner])
    assert np.abs(diff[inner]).max() < UNWRAP_TOL_RAD


def test_multi_echo_shape_and_dtype():
    ph = np.random.default_rng(0).uniform(-np.pi, np.pi, (8, 9, 10, 3)).astype(np.float32)
    out = laplacian_unwrap(ph, (1, 1, 1))
    assert out.shape == ph.shape and out.dtype == np.float32
    ph_copy = ph.copy()
    laplacian_unwrap(ph, (1, 1, 1))
    np.testing.assert_array_equal(ph, ph_copy)  # input not mutated


def test_bad_input():
    with pytest.raises(ValueError, match="phase"):
        laplacian_unwrap(np.zeros((8, 8)), (1, 1, 1))
    with pytest.raises(ValueError, match="voxel_size"):
        laplacian_unwrap(np.zeros((8, 8, 8)), (1, 1))


# ---------------------------------------------------------------- best-path unwrapping

from qsmflow.unwrap import bestpath_unwrap, correct_echo_offsets  # noqa: E402


@pytest.mark.parametrize("shape, vs", [((40, 44, 36), (1.0, 1.0, 1.0)), ((33, 40, 25), (1.0, 0.8, 2.0))])
def test_bestpath_is_congruent_and_exact_on_smooth_phase(shape, vs):
    x, y, z = grid_mm(shape, vs)
    true = 0.012 * x * x + 0.3 * y - 0.008 * z * z + 0.2 * np.sin(x / 7.0)
    wrapped = np.angle(np.exp(1j * true)).astype(np.float32)
    mask = ellipsoid(shape, vs, [0.45 * n * d for n, d in zip(shape, vs)])
    out = bestpath_unwrap(wrapped, vs, mask=mask)
    k = (out - wrapped)[mask] / (2 * np.pi)
    np.testing.assert_allclose(k, np.round(k), atol=1e-4)  # congruent: whole turns only
    diff = (out - true)[mask]
    np.testing.assert_allclose(diff, diff[0], atol=1e-4)  # exact up to one global 2π multiple
    assert np.all(out[~mask] == 0)


def test_echo_offsets_are_aligned():
    rng = np.random.default_rng(4)
    shape, te = (20, 22, 18), np.array([0.004, 0.010, 0.016, 0.022])
    x, y, z = grid_mm(shape, (1, 1, 1))
    field = 8.0 * np.sin(x / 9.0) + 0.5 * y
    phi0 = 0.7 + 0.05 * z
    phase = phi0[..., None] + 2 * np.pi * field[..., None] * te
    shifted = phase + 2 * np.pi * np.array([0, 1, -2, 3])  # per-echo global offsets
    mask = ellipsoid(shape, (1, 1, 1), (8, 9, 7))
    fixed = correct_echo_offsets(shifted.astype(np.float32), te, mask)
    np.testing.assert_allclose(fixed[mask], phase[mask], atol=1e-4)
    noisy = shifted + rng.normal(0, 0.3, shifted.shape)
    fixed = correct_echo_offsets(noisy.astype(np.float32), te, mask)
    assert np.abs(np.median((fixed - phase)[mask], axis=0)).max() < 0.1


# ---------------------------------------------------------------- ROMEO-style unwrapping

from qsmflow.unwrap import romeo_unwrap, temporal_unwrap  # noqa: E402


@pytest.mark.parametrize("shape, vs", [((40, 44, 36), (1.0, 1.0, 1.0)), ((33, 40, 25), (1.0, 0.8, 2.0))])
def test_romeo_3d_is_congruent_and_exact(shape, vs):
    x, y, z = grid_mm(shape, vs)
    true = 0.012 * x * x + 0.3 * y - 0.008 * z * z + 0.2 * np.sin(x / 7.0)
    wrapped = np.angle(np.exp(1j * true)).astype(np.float32)
    mask = ellipsoid(shape, vs, [0.45 * n * d for n, d in zip(shape, vs)])
    mag = np.exp(-(x * x + y * y) / 800.0).astype(np.float32)
    out = romeo_unwrap(wrapped, vs, mask=mask, magnitude=mag)
    k = (out - wrapped)[mask] / (2 * np.pi)
    np.testing.assert_allclose(k, np.round(k), atol=1e-4)
    diff = (out - true)[mask]
    np.testing.assert_allclose(diff, diff[0], atol=1e-4)
    assert abs(np.median(out[mask])) <= np.pi  # global turn centred


def test_romeo_separate_components_each_unwrapped():
    shape, vs = (40, 30, 20), (1.0, 1.0, 1.0)
    x, y, z = grid_mm(shape, vs)
    true = 0.4 * x + 0.1 * y
    wrapped = np.angle(np.exp(1j * true)).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[2:15, 5:25, 5:15] = True
    mask[22:38, 5:25, 5:15] = True
    out = romeo_unwrap(wrapped, vs, mask=mask)
    for part in (slice(2, 15), slice(22, 38)):
        d = (out - true)[part][mask[part]]
        np.testing.assert_allclose(d, d[0], atol=1e-4)


def _steep_field_echoes():
    """A field with a steep bump: late echoes alias spatially (> π per voxel), echo 1 does not."""
    shape, vs = (48, 48, 24), (1.0, 1.0, 1.0)
    x, y, z = grid_mm(shape, vs)
    field = 300.0 * np.exp(-((x - 6) ** 2 + y * y + z * z) / 30.0) + 2.0 * x  # Hz
    te = np.array([0.002, 0.008, 0.014, 0.020])
    true = 2 * np.pi * field[..., None] * te
    wrapped = np.angle(np.exp(1j * true)).astype(np.float32)
    mask = ellipsoid(shape, vs, (20, 20, 10))
    return vs, te, true, wrapped, mask


def test_temporal_unwrapping_where_space_fails():
    vs, te, true, wrapped, mask = _steep_field_echoes()
    steps = np.abs(np.diff(true[..., -1], axis=0))[mask[1:] & mask[:-1]]
    assert steps.max() > np.pi  # the last echo cannot be unwrapped in space
    out = romeo_unwrap(wrapped, vs, mask=mask, echo_times=te)
    np.testing.assert_allclose(out[mask], true[mask], atol=1e-3)
    # per-echo spatial unwrapping (best path) does leave 2π errors in the last echo
    per_echo = bestpath_unwrap(wrapped, vs, mask=mask, echo_times=te)
    d = (per_echo[..., -1] - true[..., -1])[mask]
    assert np.abs(d - np.median(d)).max() > np.pi


def test_temporal_unwrap_uses_nearest_echoes_first():
    te = np.array([0.004, 0.008, 0.012])
    field = np.full((4, 4, 4), 70.0)
    true = 2 * np.pi * field[..., None] * te
    wrapped = np.angle(np.exp(1j * true)).astype(np.float32)
    out = temporal_unwrap(wrapped, true[..., 1].astype(np.float32), 1, te, mask=np.ones((4, 4, 4), bool))
    np.testing.assert_allclose(out, true, atol=1e-4)


def test_romeo_bad_template():
    with pytest.raises(ValueError, match="template"):
        romeo_unwrap(np.zeros((6, 6, 6, 2), np.float32), (1, 1, 1), echo_times=[0.01, 0.02], template=5)


def test_bestpath_aligns_echoes_that_land_on_different_turns():
    """A 30 Hz mean field: the late echoes' phase passes π, so each echo, unwrapped on its own, lands
    on its own global multiple of 2π; with the echo times they are put back on one line."""
    shape, vs = (24, 26, 20), (1.0, 1.0, 1.0)
    te = np.array([0.004, 0.010, 0.016, 0.022, 0.028])
    x, y, z = grid_mm(shape, vs)
    field = 30.0 + 6.0 * np.sin(x / 6.0) + 0.2 * y  # Hz
    true = 2 * np.pi * field[..., None] * te
    wrapped = np.angle(np.exp(1j * true)).astype(np.float32)
    mask = ellipsoid(shape, vs, (10, 11, 8))
    separate = bestpath_unwrap(wrapped, vs, mask=mask)
    turns = np.round(np.median((separate - true)[mask], axis=0) / (2 * np.pi))
    assert len(set(turns)) > 1, "the test data must put the echoes on different turns"
    aligned = bestpath_unwrap(wrapped, vs, mask=mask, echo_times=te)
    np.testing.assert_allclose(aligned[mask], true[mask], atol=1e-3)


@pytest.mark.parametrize("template", [0, 2, 3])
def test_romeo_template_echo_any_position(template):
    """Spatial unwrapping of the template echo, the others in time from it: the result is the true
    phase whichever echo is the template (the last one pairs with the echo before it)."""
    vs, te, true, wrapped, mask = _steep_field_echoes()
    mag = np.exp(-40.0 * te) * np.ones(wrapped.shape[:3] + (1,), np.float32)
    out = romeo_unwrap(wrapped, vs, mask=mask, magnitude=mag.astype(np.float32), echo_times=te, template=template)
    if template == 0:
        np.testing.assert_allclose(out[mask], true[mask], atol=1e-3)
    else:  # a later template may alias in space (> π per voxel); still congruent, and echo 1 exact up to a turn
        k = (out - wrapped)[mask] / (2 * np.pi)
        np.testing.assert_allclose(k, np.round(k), atol=1e-3)
    with pytest.raises(ValueError, match="template must be an echo index between 0 and 3, got 4"):
        romeo_unwrap(wrapped, vs, mask=mask, echo_times=te, template=4)


def test_romeo_4d_without_echo_times_unwraps_each_echo_in_space():
    shape, vs = (24, 26, 20), (1.0, 1.0, 1.0)
    x, y, z = grid_mm(shape, vs)
    true = np.stack([0.3 * x + 0.05 * y * y, -0.2 * y + 0.01 * z * z], axis=3)
    wrapped = np.angle(np.exp(1j * true)).astype(np.float32)
    mask = ellipsoid(shape, vs, (10, 11, 8))
    mag = np.ones(shape + (2,), np.float32)
    out = romeo_unwrap(wrapped, vs, mask=mask, magnitude=mag)
    assert out.shape == shape + (2,)
    for e in range(2):
        np.testing.assert_array_equal(out[..., e], romeo_unwrap(wrapped[..., e], vs, mask=mask, magnitude=mag[..., e]))
        d = (out[..., e] - true[..., e])[mask]
        np.testing.assert_allclose(d, d[0], atol=1e-4)
    with pytest.raises(ValueError, match=r"phase.*magnitude"):
        romeo_unwrap(wrapped, vs, mask=mask, magnitude=mag[:5])
    with pytest.raises(ValueError, match="^mask"):
        romeo_unwrap(wrapped, vs, mask=mask[:5])


def test_romeo_edge_quality_is_the_product_of_its_terms():
    """Edge quality (Dymerska et al. 2021), each term written here: phase coherence 1 - |Δφ|/π,
    phase-gradient coherence max(0, 1 - |Δφ1 - Δφ2·TE1/TE2|), magnitude coherence (min/max)²,
    and the magnitude level (0.5 + 0.5·min(1, min/(M/2)))·(0.5 + 0.5·min(1, (M/2)/max)), M the
    mask's largest magnitude; 0 where an end of the edge is outside the mask."""
    from qsmflow.unwrap.romeo import edge_weights

    rng = np.random.default_rng(0)
    shape = (5, 4, 3)
    ratio = 0.4
    p1 = rng.uniform(-1.0, 1.0, shape)
    p2 = np.angle(np.exp(1j * (p1 / ratio + rng.normal(0, 0.3, shape))))  # the later echo: ~2.5x the phase
    mag = rng.uniform(0.1, 2.0, shape)
    mask = np.ones(shape, bool)
    mask[4, 3, 2] = False
    w = edge_weights(p1, mask, magnitude=mag, phase2=p2, te_ratio=ratio)
    big = mag[mask].max()

    def wrap(x):
        return (x + np.pi) % (2 * np.pi) - np.pi

    for axis, (a, b) in enumerate([((1, 2, 0), (2, 2, 0)), ((3, 0, 1), (3, 1, 1)), ((0, 3, 0), (0, 3, 1))]):
        d1, d2 = wrap(p1[b] - p1[a]), wrap(p2[b] - p2[a])
        lo, hi = min(mag[a], mag[b]), max(mag[a], mag[b])
        want = ((1 - abs(d1) / np.pi) * max(0.0, 1 - abs(d1 - d2 * ratio)) * (lo / hi) ** 2
                * (0.5 + 0.5 * min(1.0, lo / (big / 2))) * (0.5 + 0.5 * min(1.0, (big / 2) / hi)))
        assert w[axis].dtype == np.float32 and w[axis].shape[axis] == shape[axis] - 1
        assert want > 0.01 and w[axis][a] == pytest.approx(want, rel=1e-5), axis
    assert w[0][3, 3, 2] == 0 and w[2][4, 3, 1] == 0  # edges into the masked-out voxel
    plain = edge_weights(p1, mask)  # phase alone: the phase coherence
    assert plain[1][3, 0, 1] == pytest.approx(1 - abs(wrap(p1[3, 1, 1] - p1[3, 0, 1])) / np.pi, rel=1e-5)


def test_echo_offsets_follow_the_line_of_the_earlier_echoes(caplog):
    """A 45 Hz field: the phase grows by 2.7 rad between echoes, so each later echo's turn can only
    be found from the line through the echoes before it (its slope and mean); the log names
    each correction."""
    import logging

    shape, te = (10, 12, 8), np.array([0.004, 0.010, 0.016, 0.022, 0.028])
    x, y, z = grid_mm(shape, (1, 1, 1))
    field = 45.0 + 3.0 * np.sin(x / 4.0)
    phase = 0.3 + 2 * np.pi * field[..., None] * te
    shifted = phase + 2 * np.pi * np.array([0, -1, 2, -2, 1])
    mask = ellipsoid(shape, (1, 1, 1), (4, 5, 3))
    with caplog.at_level(logging.INFO, logger="qsmflow"):
        fixed = correct_echo_offsets(shifted.astype(np.float32), te, mask)
    turns = np.round(np.median((fixed - phase)[mask], axis=0) / (2 * np.pi))
    assert np.all(turns == turns[0])  # one line through all echoes (echo 1's own turn stays)
    np.testing.assert_allclose((fixed - phase)[mask], 2 * np.pi * turns[0], atol=1e-3)
    assert "echo 3: removed a global offset of +2 x 2pi" in caplog.text
    assert "echo 4: removed a global offset of -2 x 2pi" in caplog.text
    with pytest.raises(ValueError, match="^unwrapped"):
        correct_echo_offsets(shifted[..., 0], te, mask)
    with pytest.raises(ValueError, match="^mask"):
        correct_echo_offsets(shifted, te, mask[:3])
    with pytest.raises(ValueError, match="echo"):
        correct_echo_offsets(shifted, te[:3], mask)


def test_bestpath_without_mask_and_on_unwrapped_input():
    """No mask: the whole volume, echoes still aligned; input already beyond ±π is wrapped first
    (period 2π), so the result is the same as from the wrapped phase."""
    shape, vs = (16, 14, 12), (1.0, 1.0, 1.0)
    te = np.array([0.004, 0.010])
    x, y, z = grid_mm(shape, vs)
    true = 2 * np.pi * (10.0 + 2.0 * x)[..., None] * te  # up to ±5 rad
    wrapped = np.angle(np.exp(1j * true)).astype(np.float32)
    a = bestpath_unwrap(wrapped, vs, echo_times=te)
    b = bestpath_unwrap(true.astype(np.float32), vs, echo_times=te)
    np.testing.assert_allclose(a, b, atol=1e-4)
    d = a - true
    np.testing.assert_allclose(d, d.flat[0], atol=1e-4)  # one global turn for the whole volume and both echoes
    assert a.dtype == np.float32
    with pytest.raises(ValueError, match="^phase"):
        bestpath_unwrap(np.zeros((4, 4)), vs)
    with pytest.raises(ValueError, match="^mask"):
        bestpath_unwrap(wrapped[..., 0], vs, mask=np.ones((3, 3, 3), bool))


def test_romeo_magnitude_keeps_the_path_out_of_noise():
    """A steep clean phase (1.5 rad per voxel) around a slab of noise (random phase, 5 % of the
    magnitude), the clean region connected around the slab's end. Phase alone, noisy edges with a
    small step by chance beat the clean ones and the tree crosses the slab: 2π errors in clean
    tissue (1,824 voxels measured). With the magnitude those edges lose and no clean voxel is wrong."""
    rng = np.random.default_rng(1)
    shape = (30, 24, 6)
    x = np.arange(shape[0])[:, None, None] * np.ones(shape)
    y = np.arange(shape[1])[None, :, None] * np.ones(shape)
    true = 1.5 * x + 0.3 * y
    noise = (x >= 12) & (x <= 16) & (y < 16)
    wrapped = np.angle(np.exp(1j * np.where(noise, rng.uniform(-np.pi, np.pi, shape), true))).astype(np.float32)
    mag = np.where(noise, 0.05, 1.0).astype(np.float32)

    def wrong(out):
        d = (out - true)[~noise]
        return int(np.sum(np.abs(d - np.median(d)) > 1))

    assert wrong(romeo_unwrap(wrapped, (1, 1, 1))) > 500  # the case is hard without the magnitude
    assert wrong(romeo_unwrap(wrapped, (1, 1, 1), magnitude=mag)) == 0
    # multi-echo: the template echo is unwrapped in space with its own magnitude
    te = np.array([0.004, 0.008])
    two = np.stack([wrapped, np.angle(np.exp(2j * wrapped))], axis=3).astype(np.float32)
    out = romeo_unwrap(two, (1, 1, 1), magnitude=np.stack([mag, mag], axis=3), echo_times=te)
    assert wrong(out[..., 0]) == 0


@pytest.mark.parametrize("phase_shape, kw, message", [
    ((4, 4), {}, r"^phase must be 4D"),
    ((4, 4, 4), {"mask": np.ones((3, 4, 4), bool)}, r"^mask has shape \(3, 4, 4\)"),
    ((4, 4, 4), {"magnitude": np.ones((4, 4))}, r"^magnitude must be 3D"),
    ((4, 4, 4, 2), {"magnitude": np.ones((4, 4, 4))}, r"^magnitude must be 4D"),
    ((4, 4, 4, 2), {"magnitude": np.ones((3, 4, 4, 2))}, r"^phase has shape \(4, 4, 4, 2\) but magnitude has shape"),
    ((4, 4, 4, 2), {"mask": np.ones((4, 4, 3), bool)}, r"^mask has shape \(4, 4, 3\)"),
])
def test_romeo_errors_name_the_argument(phase_shape, kw, message):
    with pytest.raises(ValueError, match=message):
        romeo_unwrap(np.zeros(phase_shape, np.float32), (1, 1, 1), **kw)


def test_temporal_unwrap_and_romeo_check_their_inputs():
    """Wrong shapes, template index and echo times in ms are named, not raw numpy errors."""
    from qsmflow import unwrap

    phase = np.zeros((6, 6, 6, 3), np.float32)
    mask = np.ones((6, 6, 6), bool)
    te = [0.004, 0.008, 0.012]
    cases = [
        (dict(mask=np.ones((5, 5, 5), bool)), te, 0, "mask has shape"),
        (dict(mask=mask), te, 7, "template must be an echo index from 0 to 2"),
        (dict(mask=mask), [4, 8, 12], 0, "milliseconds"),
        (dict(mask=mask, magnitude=np.ones((6, 6, 6, 2))), te, 0, "magnitude has shape"),
    ]
    for kw, times, template, words in cases:
        with pytest.raises(ValueError, match=words):
            unwrap.temporal_unwrap(phase, phase[..., 0], template, times, **kw)
    with pytest.raises(ValueError, match="magnitude has shape"):
        unwrap.romeo_unwrap(phase[..., 0], (1, 1, 1), magnitude=np.ones((5, 6, 6)))
