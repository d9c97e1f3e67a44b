"""Weighted multi-echo field fit: exact on noise-free data, honest noise map."""

import numpy as np
import pytest

from qsmflow.fieldmap import weighted_linear_fit


def _linear_phase(field_hz, phi0, te):
    return phi0[..., None] + 2 * np.pi * field_hz[..., None] * np.asarray(te)


def test_noise_free_exact_with_unequal_spacing():
    rng = np.random.default_rng(1)
    shape = (6, 7, 8)
    f = rng.uniform(-100, 100, shape)
    phi0 = rng.uniform(-2, 2, shape)
    te = [0.003, 0.0075, 0.014, 0.025]  # unequal spacing
    mag = rng.uniform(0.5, 1.0, shape + (4,))
    est, noise = weighted_linear_fit(_linear_phase(f, phi0, te), mag, te)
    np.testing.assert_allclose(est, f, atol=1e-3)
    assert np.all(noise >= 0)


def test_noise_map_matches_empirical_spread():
    rng = np.random.default_rng(2)
    shape = (30, 30, 30)
    te = np.array([0.004, 0.010, 0.016, 0.022, 0.028])
    s0, r2, sigma = 1.0, 25.0, 0.05
    mag_true = s0 * np.exp(-r2 * te)
    f_true = 5.0  # max phase 0.9 rad: no wraps
    sig = mag_true * np.exp(1j * 2 * np.pi * f_true * te)
    noisy = sig + sigma * (rng.standard_normal(shape + (5,)) + 1j * rng.standard_normal(shape + (5,)))
    # phases are small here (no wraps): angle is the unwrapped phase
    est, noise = weighted_linear_fit(np.angle(noisy), np.abs(noisy), te)
    empirical = est.std()
    assert abs(est.mean() - f_true) < 3 * empirical / np.sqrt(est.size) + 0.05
    # predicted std from the fit agrees with the observed spread within 15 %
    assert np.median(noise) == pytest.approx(empirical, rel=0.15)


def test_single_echo():
    shape = (10, 10, 10)
    f = np.full(shape, 12.0)
    mag = np.ones(shape + (1,))
    mag[:2] = 0.001  # a little "background" for the noise estimate
    mask = np.pad(np.ones((6, 10, 10), bool), ((4, 0), (0, 0), (0, 0)))
    est, noise = weighted_linear_fit(_linear_phase(f, np.zeros(shape), [0.01]), mag, [0.01], mask=mask)
    np.testing.assert_allclose(est[mask], 12.0, rtol=1e-5)
    assert np.all(est[~mask] == 0) and np.all(noise[mask] > 0) and np.all(np.isfinite(noise))


def test_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        weighted_linear_fit(np.zeros((4, 4, 4, 3)), np.ones((4, 4, 4, 2)), [0.01, 0.02, 0.03])
    with pytest.raises(ValueError, match="echo"):
        weighted_linear_fit(np.zeros((4, 4, 4, 3)), np.ones((4, 4, 4, 3)), [0.01, 0.02])


# ---------------------------------------------------------------- complex fit, phase difference

from conftest import ellipsoid, grid_mm  # noqa: E402

from qsmflow.fieldmap import complex_fit, phasediff_fieldmap  # noqa: E402


def test_complex_fit_exact_and_blind_to_2pi_errors():
    rng = np.random.default_rng(5)
    shape = (12, 12, 12)
    f = rng.uniform(-60, 60, shape)
    phi0 = rng.uniform(-1, 1, shape)
    te = np.array([0.003, 0.007, 0.015, 0.019, 0.030])  # unequal spacing
    mag = np.exp(-25 * te) * np.ones(shape + (5,))
    phase = _linear_phase(f, phi0, te)
    est, _ = complex_fit(phase, mag, te)
    np.testing.assert_allclose(est, f, atol=1e-4)
    broken = phase.copy()
    broken[:6, ..., 4] += 2 * np.pi  # an unwrapping error in the last echo of half the voxels
    wls, _ = weighted_linear_fit(broken, mag, te)
    cpx, _ = complex_fit(broken, mag, te)
    assert np.abs(wls - f)[:6].min() > 1.0  # the linear fit is pulled off
    np.testing.assert_allclose(cpx, f, atol=1e-3)


def test_complex_fit_noise_map():
    rng = np.random.default_rng(6)
    shape = (30, 30, 30)
    te = np.array([0.004, 0.010, 0.016, 0.022, 0.028])
    mag_true = np.exp(-25.0 * te)
    sig = mag_true * np.exp(1j * 2 * np.pi * 5.0 * te)
    noisy = sig + 0.05 * (rng.standard_normal(shape + (5,)) + 1j * rng.standard_normal(shape + (5,)))
    est, noise = complex_fit(np.angle(noisy), np.abs(noisy), te)
    assert np.median(noise) == pytest.approx(est.std(), rel=0.15)


def test_phasediff_fieldmap():
    shape, vs = (40, 40, 30), (2.0, 2.0, 2.5)
    x, y, z = grid_mm(shape, vs)
    field = 0.25 * x * x - 0.2 * y * y + 3.0 * z + 20  # Hz: up to ~400 Hz, wraps at 203 Hz
    dte = 0.00246
    pd = np.angle(np.exp(1j * 2 * np.pi * field * dte)).astype(np.float32)
    mask = ellipsoid(shape, vs, (35, 35, 30))
    assert np.abs(2 * np.pi * field * dte)[mask].max() > np.pi  # it wraps
    est = phasediff_fieldmap(pd, np.ones(shape, np.float32), dte, vs, mask=mask)
    np.testing.assert_allclose(est[mask], field[mask], atol=1e-2)
    with pytest.raises(ValueError, match="milliseconds"):
        phasediff_fieldmap(pd, np.ones(shape, np.float32), 2.46, vs, mask=mask)


# ---------------------------------------------------------------- the line through the origin


def _noisy(shape, te, phi0, f=5.0, sigma=0.05, seed=7):
    rng = np.random.default_rng(seed)
    te = np.asarray(te)
    sig = np.exp(-25.0 * te) * np.exp(1j * (phi0[..., None] + 2 * np.pi * f * te))
    return sig + sigma * (rng.standard_normal(shape + (te.size,)) + 1j * rng.standard_normal(shape + (te.size,)))


@pytest.mark.parametrize("fit", [weighted_linear_fit, complex_fit])
@pytest.mark.parametrize("te", [(0.004, 0.010, 0.016, 0.022, 0.028), (0.0023, 0.0046)])
def test_origin_fit_cuts_the_noise_by_the_variance_ratio(fit, te):
    """With the offset removed, SD(f through the origin) / SD(f free) = sqrt(Σw(t-t̄)² / Σw t²)
    (literal: 0.49 for 5 echoes 4-28 ms, 0.32 for 2.3/4.6 ms at R2* 25/s)."""
    shape = (30, 30, 30)
    noisy = _noisy(shape, te, np.zeros(shape))
    mag = np.abs(noisy)
    rng = np.random.default_rng(0)
    mag[:3] = 0.05 * np.abs(rng.standard_normal(mag[:3].shape) + 1j * rng.standard_normal(mag[:3].shape))  # air
    mask = np.zeros(shape, bool)
    mask[3:] = True
    free, sd_free = fit(np.angle(noisy), mag, te, mask=mask, intercept="fit")
    zero, sd_zero = fit(np.angle(noisy), mag, te, mask=mask, intercept="zero")
    t = np.asarray(te)
    w = np.exp(-50.0 * t)
    expected = np.sqrt(np.sum(w * (t - np.sum(w * t) / w.sum()) ** 2) / np.sum(w * t * t))
    assert zero[mask].std() / free[mask].std() == pytest.approx(expected, rel=0.08)
    # the noise maps predict the spreads
    assert np.median(sd_zero[mask]) == pytest.approx(zero[mask].std(), rel=0.1)
    assert np.median(sd_free[mask]) == pytest.approx(free[mask].std(), rel=0.1)
    assert abs(zero[mask].mean() - 5.0) < 0.05


@pytest.mark.parametrize("fit", [weighted_linear_fit, complex_fit])
def test_auto_intercept_keeps_the_free_line_where_the_offset_remains(fit):
    """Half the voxels keep a 1.5 rad offset (its removal failed there): forced through the origin
    their field would be off by ~8 Hz; 'auto' fits the free line there and stays unbiased."""
    shape = (20, 20, 20)
    te = (0.004, 0.010, 0.016, 0.022, 0.028)
    phi0 = np.zeros(shape)
    phi0[:10] = 1.5
    noisy = _noisy(shape, te, phi0, sigma=0.01)
    zero, _ = fit(np.angle(noisy), np.abs(noisy), te, intercept="zero")
    auto, sd = fit(np.angle(noisy), np.abs(noisy), te, intercept="auto")
    assert np.abs(zero[:10] - 5.0).mean() > 5.0
    assert abs(auto[:10].mean() - 5.0) < 0.05 and abs(auto[10:].mean() - 5.0) < 0.05
    # where the offset was removed the noise is the origin fit's, where not the free line's
    assert np.median(sd[10:]) < 0.6 * np.median(sd[:10])
    with pytest.raises(ValueError, match="intercept"):
        fit(np.angle(noisy), np.abs(noisy), te, intercept="none")


def test_thermal_noise_leaves_out_the_model_error():
    """Phase that does not grow linearly with TE (a fixed per-voxel curvature: model error)
    inflates the fit's pooled noise; the thermal part, from the air's Rayleigh noise, must
    match the spread of the field over repeated noise draws with the same model error, and
    the formula σ/(2π·sqrt(Σ|S|²TE²)) written here."""
    from qsmflow.fieldmap import background_sigma, thermal_noise

    rng = np.random.default_rng(5)
    shape, sigma = (24, 24, 24), 0.02
    te = np.array([0.004, 0.010, 0.016, 0.022, 0.028])
    mask = np.zeros(shape, bool)
    mask[4:20, 4:20, 4:20] = True
    curvature = np.where(mask, rng.normal(0, 600.0, shape), 0)  # rad/s², fixed: not noise
    true = mask[..., None] * np.exp(1j * (2 * np.pi * 3.0 * te + curvature[..., None] * (te - 0.016) ** 2))
    fields = []
    for _ in range(12):
        noisy = true + sigma * (rng.standard_normal(shape + (5,)) + 1j * rng.standard_normal(shape + (5,)))
        est, noise = weighted_linear_fit(np.angle(noisy), np.abs(noisy), te, mask=mask, intercept="zero")
        fields.append(est)
    observed = np.median(np.std(fields, axis=0)[mask])
    thermal, ratio = thermal_noise(noise, np.abs(noisy), te, mask, background_sigma(np.abs(noisy[..., 0]), mask))
    assert np.median(noise[mask]) > 1.5 * observed  # the pooled noise holds the model error
    assert ratio < 0.7
    assert np.median(thermal[mask]) == pytest.approx(observed, rel=0.15)
    formula = sigma / (2 * np.pi * np.sqrt(np.sum(te**2)))  # |S| = 1
    assert np.median(thermal[mask]) == pytest.approx(formula, rel=0.1)
    # unknown air noise, or air noise above the pooled one: the map is left as it is
    same, one = thermal_noise(noise, np.abs(noisy), te, mask, float("nan"))
    assert one == 1.0 and np.array_equal(same, noise)
    same, one = thermal_noise(noise, np.abs(noisy), te, mask, 10.0)
    assert one == 1.0 and np.array_equal(same, noise)


def test_background_sigma_reads_the_air_beyond_the_ringing():
    """A bright head seen through a k-space window rings into the air next to it (Gibbs);
    at SNR 100 that ringing is as strong as the noise near the head, so the whole
    background's magnitude overestimates σ. The estimate must come from the far air:
    within 10 % of the σ added here, and a field of view without air must not pretend."""
    from qsmflow.fieldmap import background_sigma

    rng = np.random.default_rng(7)
    n, f = 64, 2  # a 2x finer grid, as the phantom's: the ringing is 1.45 sigma's worth in the air (1.38 at 4x)
    x, y, z = np.meshgrid(*[np.arange(n * f) - n * f / 2 + 0.5] * 3, indexing="ij")
    r = np.sqrt((x / 1.1) ** 2 + y**2 + (z / 0.9) ** 2) / f  # output voxels
    fine = np.where(r < 22, 1.0, 0.0) + np.where((r >= 20) & (r < 22), 2.0, 0.0)  # bright scalp rim
    k = np.fft.fftn(fine)
    keep = np.r_[0 : n // 2, n * f - n // 2 : n * f]
    img = np.fft.ifftn(k[np.ix_(keep, keep, keep)]) / f**3  # central k-space: the scanner's image
    brain = np.zeros((n, n, n), bool)
    c = np.arange(n) - n / 2 + 0.5
    cx, cy, cz = np.meshgrid(c, c, c, indexing="ij")
    brain[np.sqrt((cx / 1.1) ** 2 + cy**2 + (cz / 0.9) ** 2) < 16] = True
    sigma = float(np.abs(img[brain]).mean() / 100)
    mag = np.abs(img + sigma * (rng.standard_normal(img.shape) + 1j * rng.standard_normal(img.shape)))
    whole = mag[~brain & (mag > 0)]
    naive = np.percentile(whole, 25) / np.sqrt(-2 * np.log(0.75))
    assert naive > 1.3 * sigma  # the ringing matters here
    assert background_sigma(mag, brain) == pytest.approx(sigma, rel=0.1)
    # a field of view inside the head: no air, no far-air estimate (the background is tissue)
    crop = (slice(14, 50),) * 3
    assert not background_sigma(mag[crop], brain[crop]) < 1.3 * sigma


def test_two_echo_noise_map_adds_the_field_model_error():
    """With two echoes no residual measures the model error: given the voxel size, the noise
    map adds 1.3 % of the brain's magnitude per mm of voxel edge to the image noise (in
    quadrature); without it, the image noise alone, σ/(2π·|S|·sqrt(ΣTE²)) through the origin."""
    rng = np.random.default_rng(11)
    shape, sigma = (40, 40, 40), 0.01
    te = np.array([0.0023, 0.0046])
    mask = np.zeros(shape, bool)
    mask[10:30, 10:30, 10:30] = True
    sig = mask[..., None] * np.exp(1j * 2 * np.pi * 4.0 * te)
    noisy = sig + sigma * (rng.standard_normal(shape + (2,)) + 1j * rng.standard_normal(shape + (2,)))
    ph, mag = np.angle(noisy), np.abs(noisy)
    _, plain = weighted_linear_fit(ph, mag, te, mask=mask, intercept="zero")
    _, raised = weighted_linear_fit(ph, mag, te, mask=mask, intercept="zero", voxel_size=(2.0, 2.0, 3.0))
    unit = 2 * np.pi * np.sqrt(np.sum(te**2))  # |S| = 1
    assert np.median(plain[mask]) == pytest.approx(sigma / unit, rel=0.12)
    edge = 12.0 ** (1 / 3)
    assert np.median(raised[mask]) == pytest.approx(np.hypot(sigma, 0.013 * edge) / unit, rel=0.12)


@pytest.mark.parametrize("fit", [weighted_linear_fit, complex_fit])
def test_few_echo_noise_map_takes_the_given_image_noise(fit):
    """A field of view inside the head has no air to read σ from (the noise map would be NaN);
    the caller's σ of the whole image is used instead: σ/(2π·|S|·sqrt(ΣTE²)) through the
    origin, twice σ twice the map, NaN kept as unknown, a negative σ refused by name."""
    rng = np.random.default_rng(5)
    te = np.array([0.0023, 0.0046])
    ph, mag, _ = _air_and_block((24, 24, 24), 1.0, (1.0, 1.0), 0.01, rng, block=(slice(None),) * 3)
    everywhere = np.ones(ph.shape[:3], bool)
    _, unknown = fit(ph, mag, te, mask=everywhere, intercept="zero")
    assert np.all(np.isnan(unknown))
    unit = 2 * np.pi * np.sqrt(np.sum(te**2))
    _, given = fit(ph, mag, te, mask=everywhere, intercept="zero", noise_sigma=0.02)
    assert np.median(given) == pytest.approx(0.02 / unit, rel=0.03)
    _, doubled = fit(ph, mag, te, mask=everywhere, intercept="zero", noise_sigma=0.04)
    assert np.allclose(doubled, 2 * given, rtol=1e-5)
    _, nan = fit(ph, mag, te, mask=everywhere, intercept="zero", noise_sigma=float("nan"))
    assert np.all(np.isnan(nan))
    with pytest.raises(ValueError, match="noise_sigma must be positive"):
        fit(ph, mag, te, mask=everywhere, intercept="zero", noise_sigma=-1.0)


@pytest.mark.parametrize("z, expect_free", [(2.0, False), (4.0, True)])
def test_auto_intercept_decides_by_region_not_by_voxel(z, expect_free):
    """A residual offset of z standard errors of the intercept everywhere: a per-voxel 3-SE
    rule would switch a random 16 % (z = 2) or 84 % (z = 4) of the voxels between the two
    lines, and with them their field, from one noise draw to the next. Decided on the
    neighbourhood's mean z², every voxel takes the same line: through the origin when the
    offset is within 3 SE on average, the free line when beyond."""
    shape, sigma = (16, 16, 16), 0.02
    te = np.array([0.004, 0.010, 0.016, 0.022, 0.028])
    se_a = sigma * np.sqrt(1 / te.size + te.mean() ** 2 / np.sum((te - te.mean()) ** 2))  # |S| = 1
    rng = np.random.default_rng(3)
    noisy = np.exp(1j * (z * se_a + 2 * np.pi * 5.0 * te)) * np.ones(shape + (1,))
    noisy = noisy + sigma * (rng.standard_normal(noisy.shape) + 1j * rng.standard_normal(noisy.shape))
    _, sd = weighted_linear_fit(np.angle(noisy), np.abs(noisy), te, intercept="auto")
    sd_zero = sigma / (2 * np.pi * np.sqrt(np.sum(te**2)))
    sd_free = sigma / (2 * np.pi * np.sqrt(np.sum((te - te.mean()) ** 2)))
    free = np.abs(sd - sd_free) < np.abs(sd - sd_zero)
    inner = (slice(1, -1),) * 3  # the volume's faces see fewer neighbours
    assert free[inner].mean() > 0.98 if expect_free else free[inner].mean() < 0.02


def _air_and_block(shape, brain_value, te_decay, sigma, rng, block=(slice(10, 30),) * 3):
    """A block of tissue (magnitude ``brain_value`` at the first echo, times ``te_decay`` per later
    echo) in air, complex Gaussian noise σ: the phase, magnitude and mask of a small scan."""
    mask = np.zeros(shape, bool)
    mask[block] = True
    amp = brain_value * np.asarray(te_decay, float)
    sig = mask[..., None] * amp * np.exp(1j * 2 * np.pi * 4.0 * np.arange(len(amp)) * 0.0023)
    noisy = sig + sigma * (rng.standard_normal(sig.shape) + 1j * rng.standard_normal(sig.shape))
    return np.angle(noisy), np.abs(noisy), mask


@pytest.mark.parametrize("fit", [weighted_linear_fit, complex_fit])
@pytest.mark.parametrize("te, decay", [((0.0023, 0.0046), (1.0, 0.6)), ((0.0023,), (1.0,))])
def test_few_echo_noise_map_formula(te, decay, fit, caplog):
    """One or two echoes, magnitude 2 decaying to 1.2: noise = hypot(σ, 0.013·edge·2) over
    2π·sqrt(Σ|S_n|²TE_n²) through the origin (one echo: over 2π·|S|·TE), edge the voxels'
    geometric mean size; the log names the added level."""
    import logging

    rng = np.random.default_rng(2)
    te = np.array(te)
    sigma, vs = 0.01, (2.0, 2.0, 3.0)
    ph, mag, mask = _air_and_block((48, 48, 48), 2.0, decay, sigma, rng)
    with caplog.at_level(logging.INFO, logger="qsmflow"):
        _, noise = fit(ph, mag, te, mask=mask, intercept="zero", voxel_size=vs)
    edge = 12.0 ** (1 / 3)
    s = np.hypot(sigma, 0.013 * edge * 2.0)
    want = s / (2 * np.pi * np.sqrt(np.sum((2.0 * np.asarray(decay)) ** 2 * te**2)))
    assert np.median(noise[mask]) == pytest.approx(want, rel=0.03)
    assert f"field fit over {te.size} echo(es)" in caplog.text
    assert "(0.0298 of the brain's magnitude at 2.3 mm voxels) to the image noise 0.00" in caplog.text


@pytest.mark.parametrize("fit", [weighted_linear_fit, complex_fit])
@pytest.mark.parametrize("te, slope_hz", [((0.022,), 15.0), ((0.0023, 0.0046), 60.0)])
def test_one_echo_noise_map_rises_where_the_field_changes_fast(te, slope_hz, fit):
    """Where the field changes by Δf across a voxel the phase stops growing linearly with echo
    time (five-echo fits' residuals show it): one echo raises its noise map's variance there by
    1 + (ψ/1.5 rad)⁴, ψ = 2π·Δf·TE, at most 50x; two echoes keep the uniform level. A block
    whose field ramps by ``slope_hz`` per voxel along x in one half and is flat in the other."""
    te = np.array(te)
    shape, sigma = (40, 40, 40), 0.01
    mask = np.zeros(shape, bool)
    mask[8:32, 8:32, 8:32] = True
    x = np.arange(shape[0])[:, None, None] * np.ones(shape)
    field = np.where(x < 20, 0.0, slope_hz * (x - 20))  # Hz
    ph = 2 * np.pi * field[..., None] * te  # unwrapped, noise-free: the map is the model alone
    mag = mask[..., None] * np.ones(te.size)
    _, noise = fit(ph, mag, te, mask=mask, intercept="zero", voxel_size=(1.0, 1.0, 1.0), noise_sigma=sigma)
    flat, ramp = noise[12:18, 12:28, 12:28], noise[23:30, 12:28, 12:28]
    psi = 2 * np.pi * slope_hz * te.max()
    factor = np.sqrt(min(1 + (psi / 1.5) ** 4, 50.0)) if te.size == 1 else 1.0
    assert 1.5 < np.sqrt(1 + (psi / 1.5) ** 4) < 3  # the regime the five-echo fits were calibrated on
    assert np.allclose(flat, np.median(flat), rtol=1e-4)
    assert np.median(ramp) == pytest.approx(factor * np.median(flat), rel=1e-3)
    # the flat level itself: hypot(σ, 1.3 % of |S| per mm) through the origin
    assert np.median(flat) == pytest.approx(np.hypot(sigma, 0.013) / (2 * np.pi * np.sqrt(np.sum(te**2))), rel=1e-3)


@pytest.mark.parametrize("fit", [weighted_linear_fit, complex_fit])
@pytest.mark.parametrize("slopes_hz, factor", [((10.0, 10.0), 1.97), ((60.0, 0.0), np.sqrt(50.0))])
def test_one_echo_noise_factor_takes_the_fields_change_over_every_axis_and_is_capped(slopes_hz, factor, fit):
    """ψ is the length of the field's change across the voxel over all axes: a field changing
    by 10 Hz per voxel along x and y at 22 ms has ψ = 2π·14.1 Hz·22 ms = 1.95 rad, a noise SD
    sqrt(1 + (1.95/1.5)⁴) = 1.97x the flat region's (one axis alone would give 1.31x); a
    steep 60 Hz per voxel (ψ = 8.3 rad) hits the cap, sqrt(50) = 7.07x."""
    te = np.array([0.022])
    shape = (40, 40, 40)
    mask = np.zeros(shape, bool)
    mask[8:32, 8:32, 8:32] = True
    x, y, _ = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    field = np.where(x < 20, 0.0, slopes_hz[0] * (x - 20) + slopes_hz[1] * y)  # Hz
    ph = 2 * np.pi * field[..., None] * te
    mag = mask[..., None] * np.ones(1)
    _, noise = fit(ph, mag, te, mask=mask, intercept="zero", voxel_size=(1.0, 1.0, 1.0), noise_sigma=0.01)
    flat, ramp = noise[12:18, 12:28, 12:28], noise[23:30, 12:28, 12:28]
    assert np.median(ramp) == pytest.approx(factor * np.median(flat), rel=2e-3)


def test_background_sigma_is_the_rayleigh_quartile(caplog):
    """Far air only, 25th percentile of Rayleigh(σ) = σ·sqrt(-2 ln 0.75): within 1 % on a large
    background (the 26th percentile would read 2.3 % high). Little air: the whole background, said
    in the log; none: NaN, with a warning."""
    import logging

    from qsmflow.fieldmap import background_sigma

    rng = np.random.default_rng(4)
    shape, sigma = (96, 96, 96), 0.02
    mask = np.zeros(shape, bool)
    mask[36:60, 36:60, 36:60] = True
    mag = np.abs(np.where(mask, 1.0, 0.0) + sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)))
    assert background_sigma(mag, mask) == pytest.approx(sigma, rel=0.01)
    small = (slice(35, 61),) * 3  # 26³ around a 24³ head: too little air for the far-air rule
    with caplog.at_level(logging.INFO, logger="qsmflow"):
        assert background_sigma(mag[small], mask[small]) == pytest.approx(sigma, rel=0.05)
    assert "little air around the head: the image noise level is taken from all the background" in caplog.text
    caplog.clear()
    inner = (slice(38, 58),) * 3
    with caplog.at_level(logging.INFO, logger="qsmflow"):
        assert np.isnan(background_sigma(mag[inner], mask[inner]))
    assert "too little background (air) to estimate the image noise level; it is unknown (NaN)" in caplog.text
    assert "exactly 0" not in caplog.text  # Rayleigh noise is never exactly 0
    # a background masked to 0 beyond a shell round the head (as some scanners and converters
    # store it): what is left of the air is no longer the noise's distribution, and the log says so
    caplog.clear()
    zeroed = mag.copy()
    zeroed[(np.abs(np.indices(shape) - 48) > 20).any(axis=0)] = 0
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        background_sigma(zeroed, mask)
    assert "of the air around the head is exactly 0" in caplog.text


def test_background_sigma_reads_the_air_farthest_in_mm():
    """The scalp's ringing dies off over physical distance, so on anisotropic voxels the far air
    must be far in mm. Head 24x24x12 voxels of 1x1x4 mm: the air above and below it reaches 56 mm,
    beside it 20-28 mm. Ringing 6σ·exp(-d/15 mm) on top of Rayleigh noise: read in mm the estimate
    is within 5 % of σ; read in voxels (the corners beside the head look farthest) it is >10 % high."""
    from scipy import ndimage

    from qsmflow.fieldmap import background_sigma

    rng = np.random.default_rng(7)
    vs, shape, sigma = np.array([1.0, 1.0, 4.0]), (64, 64, 40), 0.02
    head = np.zeros(shape, bool)
    head[20:44, 20:44, 14:26] = True
    d_mm = ndimage.distance_transform_edt(~head, sampling=vs)
    signal = np.where(head, 1.0, 6 * sigma * np.exp(-d_mm / 15.0))
    mag = np.abs(signal + sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)))
    assert background_sigma(mag, head, vs) == pytest.approx(sigma, rel=0.05)
    assert background_sigma(mag, head) > 1.1 * sigma


def test_far_air_distance_on_the_coarse_grid_is_close_to_the_exact_one():
    """The distance map behind the far-air rule, measured on every second voxel along the fine
    axes (1 mm here, not the 2 mm one), is within one coarse voxel diagonal of the exact
    Euclidean distance in mm (0.6 mm RMS), and picks nearly the same farthest fifth of the air
    (97 %), on a head that is not symmetric along any axis."""
    from scipy import ndimage

    from qsmflow.fieldmap.noise import _distance_from

    vs = np.array([1.0, 1.0, 2.0])
    x, y, z = np.meshgrid(np.arange(61), np.arange(50), np.arange(33), indexing="ij")
    head = ((x - 25) / 14.0) ** 2 + ((y - 21) / 11.0) ** 2 + ((z - 13) / 6.0) ** 2 < 1
    exact = ndimage.distance_transform_edt(~head, sampling=vs)
    coarse = _distance_from(head, vs)
    assert coarse.shape == head.shape
    assert np.abs(coarse - exact).max() <= np.sqrt(2**2 + 2**2) + 1e-9
    assert np.sqrt(np.mean((coarse - exact) ** 2)) < 1.0  # mm
    air = ~head
    far_exact = exact[air] >= np.quantile(exact[air], 0.8)
    far_coarse = coarse[air] >= np.quantile(coarse[air], 0.8)
    assert (far_exact & far_coarse).sum() > 0.95 * far_exact.sum()  # the same far air, nearly


def test_thermal_noise_on_decaying_magnitude_and_its_errors():
    """σ_fit is recovered with each echo's own magnitude: a map made as σ_fit/(2π·sqrt(Σ|S_n|²TE_n²))
    with a magnitude that decays and varies between voxels is scaled by exactly σ/σ_fit."""
    from qsmflow.fieldmap import thermal_noise

    rng = np.random.default_rng(9)
    te = np.array([0.004, 0.012, 0.020])
    mask = np.zeros((10, 10, 10), bool)
    mask[2:8, 2:8, 2:8] = True
    mag = rng.uniform(0.5, 2.0, (10, 10, 10))[..., None] * np.exp(-40.0 * te)
    sigma_fit = 0.05
    noise = np.where(mask, sigma_fit / (2 * np.pi * np.sqrt(np.sum(mag**2 * te**2, axis=3))), 0)
    thermal, ratio = thermal_noise(noise, mag, te, mask, 0.02)
    assert ratio == pytest.approx(0.4, rel=1e-5)
    np.testing.assert_allclose(thermal[mask], 0.4 * noise[mask], rtol=1e-5)
    assert thermal.dtype == np.float32
    with pytest.raises(ValueError, match="magnitude"):
        thermal_noise(noise, mag[..., 0], te, mask, 0.02)
    with pytest.raises(ValueError, match="mask"):
        thermal_noise(noise, mag, te, mask[:5], 0.02)
    with pytest.raises(ValueError, match="echo"):
        thermal_noise(noise, mag, te[:2], mask, 0.02)
    zero = np.zeros_like(noise)  # no usable voxel: nothing to scale
    same, one = thermal_noise(zero, mag, te, mask, 0.02)
    assert one == 1.0 and np.array_equal(same, zero)


@pytest.mark.parametrize("fit", [weighted_linear_fit, complex_fit])
def test_pooled_noise_is_unbiased_and_logged(fit, caplog):
    """Pure noise, 5 echoes (3 degrees of freedom per voxel): the pooled σ (the median of the
    residual χ² over the Wilson-Hilferty median 0.794) is the image's σ within 1.5 %, the map
    through the origin is σ/(2π·sqrt(ΣTE²)) for |S| = 1, and the log says what the fit did."""
    import logging

    rng = np.random.default_rng(21)
    shape, sigma = (32, 32, 32), 0.02
    te = np.array([0.004, 0.010, 0.016, 0.022, 0.028])
    noisy = np.exp(1j * 2 * np.pi * 6.0 * te) * np.ones(shape + (1,))
    noisy = noisy + sigma * (rng.standard_normal(noisy.shape) + 1j * rng.standard_normal(noisy.shape))
    with caplog.at_level(logging.INFO, logger="qsmflow"):
        field, noise = fit(np.angle(noisy), np.abs(noisy), te, voxel_size=(1.0, 1.0, 1.0))
    assert np.median(noise) == pytest.approx(sigma / (2 * np.pi * np.sqrt(np.sum(te**2))), rel=0.015)
    assert np.median(field) == pytest.approx(6.0, abs=0.02)
    assert "field fit through the origin (phase offset removed) in 100.0% of voxels, free intercept in the rest" \
        in caplog.text
    name = "weighted linear field fit over 5 echoes" if fit is weighted_linear_fit else "complex field fit over 5 echoes"
    assert f"{name}: " in caplog.text and "complex noise sigma 0.019" in caplog.text  # 0.01985 measured
    if fit is complex_fit:
        assert "Gauss-Newton iterations" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="qsmflow"):
        fit(np.angle(noisy), np.abs(noisy), te, intercept="zero")
    assert "field fit through the origin" not in caplog.text  # said only when it chose


@pytest.mark.parametrize("fit", [weighted_linear_fit, complex_fit])
def test_three_echoes_measure_their_own_noise(fit):
    """Three echoes leave one degree of freedom: the noise comes from the residuals, not from the
    air, and no typical model error is added for the voxel size (that is for one or two echoes)."""
    rng = np.random.default_rng(8)
    shape, sigma = (24, 24, 24), 0.03
    te = np.array([0.004, 0.012, 0.020])
    noisy = np.exp(1j * 2 * np.pi * 6.0 * te) * np.ones(shape + (1,))
    noisy = noisy + sigma * (rng.standard_normal(noisy.shape) + 1j * rng.standard_normal(noisy.shape))
    _, noise = fit(np.angle(noisy), np.abs(noisy), te, intercept="zero", voxel_size=(3.0, 3.0, 3.0))
    assert np.median(noise) == pytest.approx(sigma / (2 * np.pi * np.sqrt(np.sum(te**2))), rel=0.05)


@pytest.mark.parametrize("fit", [weighted_linear_fit, complex_fit])
def test_fit_errors_name_the_argument(fit):
    te = np.array([0.004, 0.010, 0.016])
    ph, mag = np.zeros((6, 6, 6, 3)), np.ones((6, 6, 6, 3))
    with pytest.raises(ValueError, match="^phase"):
        fit(ph[..., 0], mag, te)
    with pytest.raises(ValueError, match="^magnitude"):
        fit(ph, mag[..., 0], te)
    with pytest.raises(ValueError, match=r"phase.*magnitude"):
        fit(ph, mag[:5], te)
    with pytest.raises(ValueError, match="^mask"):
        fit(ph, mag, te, mask=np.ones((5, 6, 6), bool))


def test_phasediff_fieldmap_checks_and_units():
    """Hz = Δφ / (2π ΔTE) with ΔTE in seconds (0.11 s is refused as milliseconds, 0.09 s is not);
    float32 out; errors name the argument."""
    shape, vs = (12, 12, 10), (2.0, 2.0, 2.0)
    pd = np.full(shape, 0.5, np.float32)
    mag = np.ones(shape, np.float32)
    est = phasediff_fieldmap(pd, mag, 0.09, vs)
    assert est.dtype == np.float32
    np.testing.assert_allclose(est, 0.5 / (2 * np.pi * 0.09), rtol=1e-5)
    with pytest.raises(ValueError, match="milliseconds"):
        phasediff_fieldmap(pd, mag, 0.11, vs)
    with pytest.raises(ValueError, match="^delta_te"):
        phasediff_fieldmap(pd, mag, 0.0, vs)
    with pytest.raises(ValueError, match="^phasediff"):
        phasediff_fieldmap(pd[0], mag, 0.002, vs)
    with pytest.raises(ValueError, match="^magnitude"):
        phasediff_fieldmap(pd, mag[0], 0.002, vs)
    with pytest.raises(ValueError, match=r"phasediff.*magnitude"):
        phasediff_fieldmap(pd, mag[:5], 0.002, vs)


def test_redrawn_noise_map_spreads_as_the_maps_of_repeated_scans():
    """A redraw of one scan's field-noise map (what another scan would give) varies as the
    fit's maps of independent scans do. Monte Carlo on complex data: 5 echoes, |S| decaying
    at R2* 25/s, complex noise σ 0.02; a quarter of the voxels break the linear phase model (a
    phase curving with TE², as next to air) so strongly that their residual inflates their
    noise ~3-10x. The relative SD of the map over 24 scans, per voxel, against that of 24
    redraws of the first scan's map: failing voxels (non-central χ² of the residual) and
    clean ones (the magnitude's share, small) alike."""
    from qsmflow.fieldmap import complex_fit, redraw_noise

    rng = np.random.default_rng(7)
    shape, te, sigma = (24, 20, 10), np.array([0.004, 0.010, 0.016, 0.022, 0.028]), 0.02
    mag = 0.6 * np.exp(-25.0 * te) * np.ones(shape + (5,))
    field = rng.uniform(-20, 20, shape)
    failing = np.zeros(shape, bool)
    failing[:6] = True
    curve = np.where(failing, rng.uniform(2.5, 5.0, shape), 0.0)  # rad at the last echo
    phase = 2 * np.pi * field[..., None] * te + curve[..., None] * (te / te[-1]) ** 2
    signal = mag * np.exp(1j * phase)
    mask = np.ones(shape, bool)
    maps, mags = [], []
    for _ in range(24):
        noisy = signal + sigma * (rng.standard_normal(signal.shape) + 1j * rng.standard_normal(signal.shape))
        mags.append(np.abs(noisy))
        maps.append(complex_fit(np.unwrap(np.angle(noisy), axis=-1), mags[-1], te, mask=mask, intercept="zero")[1])
    maps = np.array(maps)
    k = (maps[0] / np.median(maps[0])) ** 2
    assert np.median(k[failing]) > 3 and np.median(k[~failing]) < 1.1  # the regime of the test
    redraws = np.array([redraw_noise(maps[0], mags[0], te, mask, sigma, rng) for _ in range(24)])
    assert redraws.dtype == np.float32 and np.all(redraws > 0)
    observed = np.std(maps / maps.mean(axis=0), axis=0)
    predicted = np.std(redraws / redraws.mean(axis=0), axis=0)
    for region in (failing, ~failing):
        ratio = np.sqrt(np.mean(predicted[region] ** 2) / np.mean(observed[region] ** 2))
        assert 0.75 < ratio < 1.33, ratio
    # unknown σ: the pooled level (image noise and model error) stands in, a larger spread
    more = np.std([redraw_noise(maps[0], mags[0], te, mask, np.nan, rng) for _ in range(8)], axis=0)
    assert np.mean(more[failing]) > np.mean(np.std(redraws[:8], axis=0)[failing])
