"""Three-pool complex fit: exact on noise-free data, refuses too few echoes."""

import numpy as np
import pytest

from conftest import run_cli

from qsmflow import mwf


def _three_pool(n, te, rng):
    frac = rng.uniform(0.05, 0.2, n)
    t = te[None]
    f_bg, phi0 = rng.uniform(-30, 30, n), rng.uniform(-3, 3, n)
    s = (frac[:, None] * np.exp(-t / rng.uniform(0.008, 0.012, n)[:, None] + 2j * np.pi * rng.uniform(3, 10, n)[:, None] * t)
         + 0.6 * (1 - frac)[:, None] * np.exp(-t / rng.uniform(0.055, 0.07, n)[:, None])
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
                              signal_smoothing_mm=0, map_smoothing_mm=0)
    err = maps["mwf"].ravel() - frac
    assert np.mean(np.abs(err)) < 0.005
    assert np.median(maps["residual"]) < 1e-3
    assert np.all((maps["t2star_my"] >= 0.003) & (maps["t2star_my"] <= 0.025))


def test_too_few_echoes_refused():
    te = 0.002 + 0.002 * np.arange(8)
    with pytest.raises(ValueError, match="at least 12 echoes"):
        mwf.three_pool_mwf(np.ones((3, 3, 3, 8)), np.zeros((3, 3, 3, 8)), te, mask=np.ones((3, 3, 3), bool))


def _wm_volume(shape, te, rng, snr, ramp=0.06):
    """White matter whose MWF ramps 12 ± ``ramp`` along x, a smooth background field and phase
    offset, pools as in Nam et al. 2015 (T2* 10 / 64 / 48 ms, myelin +5 Hz); noise at SNR
    ``snr`` relative to the first echo."""
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    frac = 0.12 + ramp * x
    f_bg = 15 * x + 10 * y ** 2 - 8 * z
    phi0 = 0.8 * y - 0.5
    t = te[None, None, None]
    s = (frac[..., None] * np.exp(-t / 0.010 + 2j * np.pi * 5 * t)
         + (1 - frac)[..., None] * (0.6 * np.exp(-t / 0.064) + 0.4 * np.exp(-t / 0.048)))
    s = s * np.exp(1j * (2 * np.pi * f_bg[..., None] * t + phi0[..., None]))
    sigma = np.abs(s[..., 0]).mean() / snr
    s = s + sigma * (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape))
    return s, frac, f_bg


def test_regularised_fit_beats_voxelwise_at_snr_200():
    """The two-step regularised fit keeps the voxel error under 2 pp at SNR 200, where the
    plain voxel-by-voxel fit is several times worse; a smooth MWF ramp is followed."""
    rng = np.random.default_rng(3)
    te = 0.002 + 0.002 * np.arange(24)
    s, frac, _ = _wm_volume((16, 12, 10), te, rng, snr=200)
    mask = np.ones(frac.shape, bool)
    reg = mwf.three_pool_mwf(np.abs(s), np.angle(s), te, mask=mask, voxel_size=(2, 2, 2))["mwf"]
    # without smoothing each voxel is fitted on its own (the same values whatever else the mask
    # holds): the plain fit on every third row and column along y and z, all along the ramp
    sample = np.zeros(frac.shape, bool)
    sample[:, ::3, ::3] = True
    vox = mwf.three_pool_mwf(np.abs(s), np.angle(s), te, mask=sample, voxel_size=(2, 2, 2),
                             signal_smoothing_mm=0, map_smoothing_mm=0)["mwf"]
    err_reg = np.mean(np.abs(reg - frac))
    assert err_reg < 0.02, err_reg
    err_vox, err_reg_sample = np.mean(np.abs(vox - frac)[sample]), np.mean(np.abs(reg - frac)[sample])
    assert err_vox > 2 * err_reg_sample, (err_vox, err_reg_sample)
    # the ramp survives: the slope along x within 20 %
    slope = np.polyfit(np.linspace(-1, 1, 16), reg.mean(axis=(1, 2)), 1)[0]
    assert abs(slope - 0.06) < 0.012, slope


def test_smoothing_stays_in_the_mask_and_is_in_mm():
    """Next to single-pool water (MWF 0) outside the fit mask, the fit inside does not borrow
    from it; the smoothing widths are millimetres, so coarser voxels keep a ramp sharper."""
    rng = np.random.default_rng(4)
    te = 0.002 + 0.002 * np.arange(24)
    s, frac, _ = _wm_volume((12, 10, 8), te, rng, snr=np.inf, ramp=0.0)
    half = np.zeros(frac.shape, bool)
    half[6:] = True
    t = te[None, None, None]
    s[:6] = np.exp(-t / 0.05) * np.exp(1j * np.angle(s[:6, ..., :1]))
    out = mwf.three_pool_mwf(np.abs(s), np.angle(s), te, mask=half, voxel_size=(1, 1, 1))["mwf"]
    assert np.all(out[~half] == 0)
    assert np.max(np.abs(out[half] - frac[half])) < 0.005
    s, frac, _ = _wm_volume((16, 6, 6), te, rng, snr=np.inf)
    mask = np.ones(frac.shape, bool)
    slopes = [np.polyfit(frac[:, 0, 0], mwf.three_pool_mwf(np.abs(s), np.angle(s), te, mask=mask,
                                                           voxel_size=(v, v, v))["mwf"][:, 3, 3], 1)[0]
              for v in (1.0, 4.0)]
    assert slopes[0] < 0.7 < 0.9 < slopes[1], slopes
    with pytest.raises(ValueError, match="signal_smoothing_mm must be non-negative"):
        mwf.three_pool_mwf(np.abs(s), np.angle(s), te, mask=mask, signal_smoothing_mm=-1)


def _write(path, data):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    return str(path)


def _cli(argv, capsys):
    code, _, err = run_cli(argv, capsys)
    return code, err


def test_r2star_command_writes_the_mwf_and_refuses_what_it_cannot_fit(tmp_path, capsys):
    import nibabel as nib

    rng = np.random.default_rng(5)
    te = 0.002 + 0.002 * np.arange(24)
    s, frac, _ = _wm_volume((14, 12, 10), te, rng, snr=200)
    d = tmp_path / "in"
    d.mkdir()
    mag = _write(d / "sub-03_part-mag_MEGRE.nii.gz", 1000 * np.abs(s))
    pha = _write(d / "sub-03_part-phase_MEGRE.nii.gz", np.angle(s))
    mask = _write(d / "mask.nii.gz", np.ones(frac.shape))
    tes = ",".join(f"{t:.3f}" for t in te)
    out = tmp_path / "out"
    code, err = _cli(["r2star", "--mag", mag, "--phase", pha, "--echo-times", tes, "--mask", mask, "--mwf",
                      "-o", str(out), "-q"], capsys)
    assert code == 0, err
    est = nib.load(str(out / "sub-03_MWFmap.nii.gz")).get_fdata()
    assert np.mean(np.abs(est - frac)) < 0.02
    assert (out / "sub-03_R2starmap.nii.gz").exists() and (out / "sub-03_MWFmap.json").exists()

    few = _write(d / "few_mag.nii.gz", 1000 * np.abs(s[..., :8]))
    few_p = _write(d / "few_phase.nii.gz", np.angle(s[..., :8]))
    few_te = ",".join(f"{t:.3f}" for t in te[:8])
    bad = tmp_path / "bad"
    for argv, word in [(["--mag", few, "--phase", few_p, "--echo-times", few_te, "--mwf"], "at least 12 echoes"),
                       (["--mag", mag, "--echo-times", tes, "--mwf"], "give the phase"),
                       (["--mag", mag, "--phase", pha, "--echo-times", tes], "only used by --mwf")]:
        code, err = _cli(["r2star", *argv, "-o", str(bad), "-q"], capsys)
        assert code == 1 and word in err and len(err.strip().splitlines()) == 1, err
    assert not bad.exists()
