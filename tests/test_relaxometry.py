"""R2* fits: exact on noise-free data, unbiased above the noise floor, gradient correction."""

import numpy as np
import pytest

from qsmflow._shared.constants import T2STAR_CAP_S
from qsmflow import relaxometry
from qsmflow.relaxometry import gradient_dephasing, loglinear_r2star, t2star_from_r2star

# noise-free mono-exponential data: float32 input limits the relative error to ~1e-6
EXACT_RTOL = 1e-4


@pytest.mark.parametrize("method", ["loglinear", "arlo", "nlls"])
@pytest.mark.parametrize("te", [[0.003, 0.008, 0.015, 0.024, 0.031], [0.004, 0.010, 0.016, 0.022, 0.028],
                                list(np.arange(1, 25) * 0.0025)])
def test_noise_free_recovered_exactly(method, te):
    """Every method, equal and unequal echo spacing, 5 and 24 echoes."""
    rng = np.random.default_rng(3)
    shape = (5, 6, 7)
    r2 = rng.uniform(5, 80, shape)
    s0 = rng.uniform(100, 1000, shape)
    te = np.asarray(te)
    mag = (s0[..., None] * np.exp(-r2[..., None] * te)).astype(np.float32)
    r2_est, s0_est = relaxometry.METHODS[method].func(mag, te)
    np.testing.assert_allclose(r2_est, r2, rtol=EXACT_RTOL)
    np.testing.assert_allclose(s0_est, s0, rtol=EXACT_RTOL)


def _rician(signal, sigma, rng):
    return np.abs(signal + rng.normal(0, sigma, signal.shape) + 1j * rng.normal(0, sigma, signal.shape))


def test_noise_floor_truncation_removes_rician_bias():
    """Echoes sunk in the noise floor flatten the decay; leaving them out restores R2*."""
    rng = np.random.default_rng(0)
    te = np.arange(1, 13) * 0.005  # to 60 ms: R2* 60/s ends at SNR ≈ 1
    r2 = 60.0
    mag = _rician(np.broadcast_to(40.0 * np.exp(-r2 * te), (20, 20, 20, te.size)), 1.0, rng)
    plain = {name: np.median(relaxometry.METHODS[name].func(mag, te)[0]) for name in ("loglinear", "arlo", "nlls")}
    assert min(plain.values()) < 0.985 * r2  # the floor flattens the decay (measured 0.98-0.99)
    for name in plain:
        floor, _ = relaxometry.METHODS[name].func(mag, te, noise_sigma=1.0)
        assert abs(np.median(floor) / r2 - 1) < 0.01, name


def test_nlls_unbiased_at_moderate_snr():
    rng = np.random.default_rng(1)
    te = np.array([0.004, 0.010, 0.016, 0.022, 0.028])
    mag = _rician(np.broadcast_to(100.0 * np.exp(-25.0 * te), (20, 20, 20, te.size)), 1.0, rng)
    for name in ("loglinear", "arlo", "nlls"):
        est, _ = relaxometry.METHODS[name].func(mag, te, noise_sigma=1.0)
        assert abs(np.median(est) / 25.0 - 1) < 0.01, name


def test_gradient_correction_removes_slice_dephasing():
    """Across a box slice profile a linear field multiplies the signal by |sinc(Δf·TE)|; dividing it out
    restores R2*."""
    shape, te, n = (12, 10, 6), np.arange(1, 13) * 0.0025, 64
    g = np.linspace(0, 60, shape[1])[None, :, None] * np.ones(shape)  # Hz per voxel along x
    x = np.arange(shape[0])[:, None, None] * np.ones(shape)
    field = (x - 5) * g  # at x = 5 the field varies along x only
    sub = (np.arange(n) + 0.5) / n - 0.5
    mag = 100 * np.exp(-20 * te) * np.abs(np.exp(2j * np.pi * g[..., None, None] * sub[:, None] * te).mean(axis=3))
    dep = gradient_dephasing(field, te, np.ones(shape, bool), slice_axis=0)
    raw, _ = loglinear_r2star(mag, te)
    corr, _ = loglinear_r2star(mag, te, dephasing=dep)
    assert raw[5, -1, 3] > 60  # 60 Hz across the voxel triples the apparent R2*
    np.testing.assert_allclose(corr[5, :, 3], 20.0, rtol=2e-3)


def test_fourier_encoded_voxel_keeps_its_signal_below_the_echo_shift_limit():
    """A Fourier-encoded voxel (sinc PSF) loses nothing to a linear gradient until the echo leaves the
    sampled k-space at |Δf·TE| = 1/2; the 3D factor is 1 below that limit and 0 beyond."""
    n, f = 32, 8
    te = np.array([0.005, 0.010, 0.020, 0.030])
    x = (np.arange(n * f) + 0.5) / f  # fine positions in voxels
    for df in (10.0, 30.0):  # Hz per voxel: 10 stays below the limit at 30 ms, 30 crosses it after 16.7 ms
        fine = np.exp(2j * np.pi * df * x[:, None] * te[None, :])
        k = np.fft.fft(fine, axis=0)
        keep = np.r_[0:n // 2, n * f - n // 2:n * f]
        img = np.abs(np.fft.ifft(k[keep], axis=0)) / f  # what a Cartesian encoding of n samples images
        sampled = np.abs(img[n // 4:3 * n // 4]).mean(axis=0)  # away from the FOV edge
        field = np.broadcast_to((np.arange(n) * df)[:, None, None], (n, 3, 3))
        dep = gradient_dephasing(field, te, np.ones((n, 3, 3), bool))[n // 2, 1, 1]
        below = df * te < 0.5
        np.testing.assert_allclose(sampled[below], 1.0, atol=0.02)
        assert np.all(sampled[~below] < 0.1)
        np.testing.assert_array_equal(dep, below.astype(np.float32))
    with pytest.raises(ValueError, match="slice_axis"):
        gradient_dephasing(field, te, np.ones((n, 3, 3), bool), slice_axis=3)


def test_fit_residual_is_small_for_the_model_and_large_off_it():
    te = np.array([0.004, 0.010, 0.016, 0.022, 0.028])
    mag = np.ones((3, 3, 3, 5)) * np.exp(-20 * te)
    mag[0] = 0.5 * np.exp(-200 * te) + 0.5 * np.exp(-10 * te)  # two compartments
    mask = np.ones((3, 3, 3), bool)
    r2, s0 = loglinear_r2star(mag, te)
    fit = relaxometry.fit_residual(mag, te, r2, s0, mask)
    assert fit[1:].max() < 1e-5 and fit[0].min() > 0.02


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
    with pytest.raises(ValueError, match="3 echoes"):
        relaxometry.arlo_r2star(np.ones((4, 4, 4, 2)), [0.01, 0.02])
    with pytest.raises(ValueError, match="increasing"):
        loglinear_r2star(np.ones((4, 4, 4, 3)), [0.01, 0.03, 0.02])


def test_t2star_rule():
    r2 = np.array([[[0.0, -1.0, 1.0, 20.0]]])
    t2 = t2star_from_r2star(r2)
    np.testing.assert_allclose(t2.ravel(), [T2STAR_CAP_S, T2STAR_CAP_S, T2STAR_CAP_S, 0.05], rtol=1e-6)


def test_r2star_noise_matches_the_spread_over_noise_draws():
    """The typical SD of R2* from noise, σ/sqrt(Σ|S_n|²(TE_n - T̄)²) with T̄ the |S|²-weighted mean
    echo time, predicts the spread of the log-linear fit over noise draws (and is NaN when the
    noise is unknown or there is one echo)."""
    rng = np.random.default_rng(12)
    te = np.array([0.004, 0.010, 0.016, 0.022, 0.028])
    shape, sigma = (12, 12, 12), 0.01
    s = np.exp(-30.0 * te) * np.ones(shape + (1,))  # |S| from 0.89 down to 0.43
    mask = np.ones(shape, bool)
    w = s[0, 0, 0] ** 2
    tbar = np.sum(w * te) / np.sum(w)
    formula = sigma / np.sqrt(np.sum(w * (te - tbar) ** 2))
    predicted = relaxometry.r2star_noise(s, te, sigma, mask)
    assert predicted == pytest.approx(formula, rel=1e-9)
    fits = [loglinear_r2star(np.abs(s + sigma * (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape))),
                             te, mask=mask)[0] for _ in range(30)]
    observed = np.median(np.std(fits, axis=0))
    assert predicted == pytest.approx(observed, rel=0.1)
    assert np.isnan(relaxometry.r2star_noise(s, te, float("nan"), mask))
    assert np.isnan(relaxometry.r2star_noise(s[..., :1], te[:1], sigma, mask))


@pytest.mark.parametrize("fit", [relaxometry.loglinear_r2star, relaxometry.arlo_r2star, relaxometry.nlls_r2star])
def test_r2star_fit_errors_name_the_argument(fit):
    te = np.array([0.004, 0.010, 0.016, 0.022])
    mag = np.exp(-25.0 * te) * np.ones((5, 5, 5, 1))
    with pytest.raises(ValueError, match="^magnitude"):
        fit(mag[..., 0], te)
    with pytest.raises(ValueError, match="^mask"):
        fit(mag, te, mask=np.ones((4, 5, 5), bool))
    with pytest.raises(ValueError, match="^noise_sigma"):
        fit(mag, te, noise_sigma=-0.01)
    with pytest.raises(ValueError, match="echo_times must be strictly increasing"):
        fit(mag, np.array([0.004, 0.010, 0.010, 0.022]))
    with pytest.raises(ValueError, match="^dephasing"):
        fit(mag, te, dephasing=np.ones((5, 5, 5)))
    with pytest.raises(ValueError, match="dephasing.*magnitude"):
        fit(mag, te, dephasing=np.ones((5, 5, 4, 4)))


def test_r2star_maps_are_clipped_to_physical_values():
    """Signal that grows with TE gives 0 (not a negative R2*), a decay faster than the cap gives
    the cap (1000/s), outside the mask R2* and S0 are 0, and the fit residual is relative."""
    from qsmflow._shared.constants import R2STAR_CAP_PER_S

    te = np.array([0.002, 0.004, 0.006])
    r2 = np.array([25.0, -20.0, 2000.0, 25.0]).reshape(4, 1, 1)
    mag = 2.0 * np.exp(-r2[..., None] * te) * np.ones((4, 3, 3, 1))
    mask = np.ones((4, 3, 3), bool)
    mask[3] = False
    out, s0 = loglinear_r2star(mag, te, mask=mask)
    assert R2STAR_CAP_PER_S == 1000.0
    np.testing.assert_allclose(out[0], 25.0, rtol=1e-6)
    assert np.all(out[1] == 0) and np.all(out[2] == 1000.0) and np.all(out[3] == 0) and np.all(s0[3] == 0)
    np.testing.assert_allclose(s0[0], 2.0, rtol=1e-6)
    res = relaxometry.fit_residual(mag, te, out, s0, mask)
    assert np.all(res[0] < 1e-6) and np.all(res[3] == 0)
    bumped = mag.copy()
    bumped[0, ..., 1] *= 1.1  # one echo 10 % high: RMS of the misfit over the RMS signal
    res = relaxometry.fit_residual(bumped, te, out, s0, mask)
    s = bumped[0, 0, 0]
    model = 2.0 * np.exp(-25.0 * te)
    assert res[0, 0, 0] == pytest.approx(np.sqrt(np.mean((s - model) ** 2)) / np.sqrt(np.mean(s**2)), rel=1e-5)
    with pytest.raises(ValueError, match="^mask"):
        relaxometry.fit_residual(mag, te, out, s0, mask[:2])
    with pytest.raises(ValueError, match="^magnitude"):
        relaxometry.fit_residual(mag[..., 0], te, out, s0, mask)


def test_nlls_reaches_the_least_squares_optimum():
    """On noisy decays (where the log-linear start is off) the Levenberg-Marquardt fit ends where
    an independent solver (scipy's least_squares on S0·exp(-R2*·TE)) does, to 0.01 /s."""
    from scipy.optimize import least_squares

    rng = np.random.default_rng(5)
    te = np.array([0.003, 0.008, 0.013, 0.018, 0.023, 0.028, 0.033])
    r2_true = np.linspace(15.0, 90.0, 24).reshape(2, 3, 4)
    s = 1.5 * np.exp(-r2_true[..., None] * te)
    noisy = np.abs(s + 0.06 * (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape)))
    r2, s0 = relaxometry.nlls_r2star(noisy, te)
    start = loglinear_r2star(noisy, te)[0]
    moved = 0
    for idx in np.ndindex(r2.shape):
        y = noisy[idx]
        ref = least_squares(lambda p: p[0] * np.exp(-p[1] * te) - y, x0=[y[0], 30.0], xtol=1e-12, ftol=1e-12).x
        assert r2[idx] == pytest.approx(ref[1], abs=0.01) and s0[idx] == pytest.approx(ref[0], rel=1e-4)
        moved += abs(start[idx] - ref[1]) > 0.05
    assert moved > 12  # the optimum is not the (reweighted) log-linear fit: measured 19 of 24 voxels


def test_t2star_from_r2star_literals():
    from qsmflow._shared.constants import T2STAR_CAP_S

    r2 = np.array([[[20.0, 50.0, 0.0, -5.0, 1.0 / T2STAR_CAP_S, 2.0 / T2STAR_CAP_S]]])
    mask = np.array([[[True, False, True, True, True, True]]])
    t2 = t2star_from_r2star(r2, mask)
    np.testing.assert_allclose(t2, [[[0.05, 0.0, T2STAR_CAP_S, T2STAR_CAP_S, T2STAR_CAP_S, T2STAR_CAP_S / 2]]])
    assert t2.dtype == np.float32
    np.testing.assert_allclose(t2star_from_r2star(r2)[0, 0, 1], 0.02)  # no mask: everywhere


def test_gradient_dephasing_uses_one_sided_differences_at_the_mask_edge(caplog):
    """A field rising 4 Hz per voxel across the slices inside a box, wild values outside it: the spread at
    the box's edge voxels is the inside gradient (one-sided), as in its middle; slice axis 1 is
    allowed; the log gives the median spread."""
    import logging

    shape = (12, 10, 8)
    te = np.array([0.005, 0.010, 0.020])
    y = np.arange(shape[1])[None, :, None] * np.ones(shape)
    mask = np.zeros(shape, bool)
    mask[3:9, 2:8, 2:6] = True
    field = np.where(mask, 4.0 * y, 1000.0 * np.cos(7 * y))
    with caplog.at_level(logging.INFO, logger="qsmflow"):
        dep = gradient_dephasing(field, te, mask, slice_axis=1)
    inside = dep[mask]
    np.testing.assert_allclose(inside, np.abs(np.sinc(4.0 * te))[None].repeat(len(inside), 0), rtol=1e-6)
    assert np.all(dep[~mask] == 1.0)
    assert "macroscopic dephasing (2D, slices along axis 1): median field spread 4.00 Hz/voxel in the mask" \
        in caplog.text
    with pytest.raises(ValueError, match="^field_hz"):
        gradient_dephasing(field[0], te, mask)
    with pytest.raises(ValueError, match="^mask"):
        gradient_dephasing(field, te, mask[:3])


@pytest.mark.parametrize("te, spacing", [((0.004, 0.008, 0.012, 0.016), "equal"), ((0.004, 0.008, 0.014, 0.022), "unequal")])
def test_arlo_says_how_its_echoes_are_spaced(te, spacing, caplog):
    import logging

    te = np.array(te)
    mag = np.exp(-30.0 * te) * np.ones((3, 4, 5, 1))
    with caplog.at_level(logging.INFO, logger="qsmflow"):
        r2, s0 = relaxometry.arlo_r2star(mag, te)
    np.testing.assert_allclose(r2, 30.0, rtol=2e-3)
    np.testing.assert_allclose(s0, 1.0, rtol=2e-3)
    assert f"ARLO R2* over 4 echoes ({spacing} spacing) in 60 voxels" in caplog.text


@pytest.mark.parametrize("fit, name", [(loglinear_r2star, "log-linear R2*"), (relaxometry.arlo_r2star, "ARLO"),
                                       (relaxometry.nlls_r2star, "NLLS R2*")])
def test_echoes_at_the_noise_floor_are_counted_and_left_out(fit, name, caplog):
    """σ = 0.01: echoes at or below 3σ (the last two of five here) are not used, and the log says
    what share of the data that is; the fit of the rest is unchanged by them."""
    import logging

    te = np.array([0.005, 0.010, 0.015, 0.020, 0.025])
    mag = np.array([1.0, 0.5, 0.25, 0.03, 0.02]) * np.ones((2, 3, 4, 1))
    with caplog.at_level(logging.INFO, logger="qsmflow"):
        r2, _ = fit(mag, te, noise_sigma=0.01)
    assert f"{name}: 40.0% of voxel x echo values below the noise floor or dephased, not used" in caplog.text
    kept = np.sqrt(np.array([1.0, 0.5, 0.25]) ** 2 - 2 * 0.01**2)  # the Rician floor's 2σ² removed
    np.testing.assert_allclose(r2, -np.polyfit(te[:3], np.log(kept), 1)[0], rtol=0.02)
    if fit is loglinear_r2star:
        assert "log-linear R2* over 5 echoes in 24 voxels" in caplog.text


@pytest.mark.parametrize("fit", ["loglinear_r2star", "arlo_r2star", "nlls_r2star"])
def test_a_late_echo_stored_as_zero_is_left_out_not_the_voxel(fit):
    """Integer magnitudes of a fast decay (150/s, a vein) round the last echo to 0: the fit
    uses the echoes with signal and finds 150/s (the voxel was dropped, R2* = 0 like CSF)."""
    from qsmflow import relaxometry

    te = np.arange(1, 9) * 0.005
    mag = np.broadcast_to(np.round(200 * np.exp(-150.0 * te)), (4, 4, 4, 8)).astype(np.float32)
    assert mag[0, 0, 0, -1] == 0
    for sigma in (None, 1.0):
        out = getattr(relaxometry, fit)(mag, te, mask=np.ones((4, 4, 4), bool), noise_sigma=sigma)
        r2 = out[0] if isinstance(out, tuple) else out
        np.testing.assert_allclose(r2, 150.0, rtol=0.02)


def test_r2star_noise_checks_echo_times_and_shapes():
    """Echo times in ms (the SD came out 1000x too small) and masks of another grid are named."""
    from qsmflow import relaxometry

    mag = np.ones((4, 4, 4, 3), np.float32)
    with pytest.raises(ValueError, match="milliseconds"):
        relaxometry.r2star_noise(mag, [4, 8, 12], 1.0, np.ones((4, 4, 4), bool))
    with pytest.raises(ValueError, match="mask has shape"):
        relaxometry.r2star_noise(mag, [0.004, 0.008, 0.012], 1.0, np.ones((3, 4, 4), bool))
    with pytest.raises(ValueError, match="mask has shape"):
        relaxometry.t2star_from_r2star(np.ones((4, 4, 4)), np.ones((3, 4, 4), bool))
    with pytest.raises(ValueError, match="3D"):
        relaxometry.t2star_from_r2star(mag)


def test_tukey_taper_literal_values():
    """The taper over numpy's frequency order: flat to 1 - share of Nyquist, half a cosine to 0."""
    from qsmflow.relaxometry import _tukey_taper

    # |f| / Nyquist for n = 8: 0, .25, .5, .75, 1, .75, .5, .25; share 0.5 tapers above 0.5
    np.testing.assert_allclose(_tukey_taper(8, 0.5), [1, 1, 1, 0.5, 0, 0.5, 1, 1], atol=1e-12)
    np.testing.assert_allclose(_tukey_taper(8, 0.0), np.ones(8))
    np.testing.assert_allclose(_tukey_taper(4, 1.0), [1, 0.5, 0, 0.5], atol=1e-12)  # a Hann window


def _disc_behind_fat(te, n=96, up=4):
    """A brain disc (R2* 20/s) inside a bright fat ring (S0 3x the brain's, R2* 60/s, -434 Hz
    off water as at 3 T), drawn on a 4x finer grid and its k-space cut to the centre n x n, as a
    scanner samples it: each echo's magnitude (4 identical slices) and the radius in voxels."""
    m = n * up
    y, x = np.meshgrid(np.arange(m) - m / 2 + 0.5, np.arange(m) - m / 2 + 0.5, indexing="ij")
    r = np.hypot(x, y) / up
    brain, fat = r < 30, (r >= 33) & (r < 37)
    echoes = []
    for t in te:
        s = np.where(brain, np.exp(-20 * t), 0) + np.where(fat, 3 * np.exp(-60 * t - 2j * np.pi * 434 * t), 0)
        k = np.fft.fftshift(np.fft.fft2(s))[m // 2 - n // 2:m // 2 + n // 2, m // 2 - n // 2:m // 2 + n // 2]
        echoes.append(np.abs(np.fft.ifft2(np.fft.ifftshift(k))) / up**2)
    mag = np.repeat(np.stack(echoes, -1)[:, :, None, :], 4, axis=2).astype(np.float32)
    c = np.arange(n) - n / 2 + 0.5
    return mag, np.hypot(*np.meshgrid(c, c, indexing="ij"))


def test_ringing_suppression_restores_r2star_from_two_short_echoes():
    """The k-space cut-off rings inside the brain, differently at each echo (the fat ring
    decays and precesses): two echoes 2.3 ms apart read the brain's R2* of 20/s with an RMS
    error of 0.65/s (up to 3.4/s) from the raw magnitudes, 0.017/s from the tapered ones."""
    te = np.array([0.0023, 0.0046])
    mag, r = _disc_behind_fat(te)
    inner = np.repeat((r < 26)[:, :, None], 4, axis=2)
    errors = []
    for m in (mag, relaxometry.suppress_ringing(mag, slice_axis=2)):
        r2, _ = loglinear_r2star(m, te, mask=inner)
        errors.append(np.sqrt(np.mean((r2[inner] - 20.0) ** 2)))
    assert errors[0] > 0.3 and errors[1] < errors[0] / 10, errors


def test_ringing_suppression_leaves_the_slice_axis_and_the_mean_alone():
    rng = np.random.default_rng(2)
    along_z = rng.uniform(1, 2, (1, 1, 16, 2)).astype(np.float32) * np.ones((12, 10, 1, 1), np.float32)
    np.testing.assert_allclose(relaxometry.suppress_ringing(along_z, slice_axis=2), along_z, rtol=1e-5)
    smoothed = relaxometry.suppress_ringing(along_z)
    assert np.abs(smoothed - along_z).max() > 0.05  # filtered along z when it is Fourier-encoded
    np.testing.assert_allclose(smoothed.mean(axis=(0, 1, 2)), along_z.mean(axis=(0, 1, 2)), rtol=1e-5)
    with pytest.raises(ValueError, match="share"):
        relaxometry.suppress_ringing(along_z, share=1.5)
    with pytest.raises(ValueError, match="slice_axis"):
        relaxometry.suppress_ringing(along_z, slice_axis=-1)
    with pytest.raises(ValueError, match="NaN"):
        relaxometry.suppress_ringing(np.where(along_z > 1.5, np.nan, along_z))


def test_chain_tapers_r2star_only_for_short_echo_spans():
    from qsmflow.workflows.relaxation import ringing_filtered

    assert ringing_filtered([0.0023, 0.0046]) and ringing_filtered([0.002, 0.005, 0.008])
    assert not ringing_filtered([0.004, 0.010, 0.016, 0.022, 0.028]) and not ringing_filtered([0.003, 0.014])
    assert not ringing_filtered([0.022])


def test_tapered_r2star_noise_map_matches_the_spread_it_has():
    """The taper lowers white noise by its window's RMS (0.49 at a share of 0.6 on three axes,
    0.63 on two, measured on noise here), and the chain's R2* noise map follows it: on a uniform
    decay with σ = 1 and two echoes 2.3 ms apart the tapered R2*'s spread and the map's median
    agree within 20 % (measured 11.1/s and 11.1/s; 22.4/s from the untapered σ)."""
    from qsmflow.workflows.options import Options
    from qsmflow.workflows.relaxation import r2star_noise_sigma, relaxation_maps

    rng = np.random.default_rng(7)
    noise = rng.standard_normal((40, 40, 40, 1)).astype(np.float32)
    for axis, expected in ((None, 0.494), (2, 0.625)):
        measured = relaxometry.suppress_ringing(noise + 5, slice_axis=axis).std() / noise.std()
        factor = relaxometry.ringing_noise_factor((40, 40, 40), slice_axis=axis)
        assert factor == pytest.approx(expected, abs=0.01) and measured == pytest.approx(factor, rel=0.05)
    te = np.array([0.0023, 0.0046])
    shape = (48, 48, 48)
    signal = 30 * np.exp(-25 * te)
    mag = np.abs(signal + rng.standard_normal(shape + (2,)) + 1j * rng.standard_normal(shape + (2,))).astype(np.float32)
    mask = np.ones(shape, bool)
    r2, _, _ = relaxation_maps(mag, te, mask, Options(), noise_sigma=1.0)
    spread = r2[8:-8, 8:-8, 8:-8].std()
    mapped = np.median(relaxometry.r2star_noise_map(mag, te, r2star_noise_sigma(1.0, te, shape), mask))
    assert mapped == pytest.approx(spread, rel=0.2), (mapped, spread)
