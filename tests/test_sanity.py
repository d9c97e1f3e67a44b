"""Inputs that would give a silent wrong answer are refused; suspicious ones are warned about."""

import json
import logging

import nibabel as nib
import numpy as np
import pytest
from conftest import ellipsoid, run_cli

from qsmflow import masking, pipeline
from qsmflow.workflows import sanity
from qsmflow.io import GreInput

SHAPE, VS = (40, 44, 36), (4.0, 4.0, 4.0)
TE = (0.004, 0.012, 0.020)


def _head(field_hz=None):
    """A bright ellipsoid in air decaying at R2* = 25/s; phase from a smooth field (Hz)."""
    rng = np.random.default_rng(1)
    head = ellipsoid(SHAPE, VS, (60, 70, 55))
    x = np.linspace(-1, 1, SHAPE[0])[:, None, None]
    field = 20 * x * np.ones(SHAPE) if field_hz is None else field_hz
    te = np.array(TE)
    sig = head[..., None] * np.exp(-25 * te) * np.exp(2j * np.pi * field[..., None] * te)
    sig = sig + 0.01 * (rng.standard_normal(sig.shape) + 1j * rng.standard_normal(sig.shape))
    return np.abs(sig).astype(np.float32), np.angle(sig).astype(np.float32)


def _cli(argv, capsys):
    """Exit code and the error line(s) the command printed."""
    code, _, err = run_cli(argv, capsys)
    assert "Traceback" not in err
    return code, "".join(line + "\n" for line in err.splitlines() if line.startswith("qsmflow: error"))


def test_reversed_echoes_are_refused():
    mag, pha = _head()
    data = GreInput.from_arrays(mag[..., ::-1], pha[..., ::-1], TE, 3.0, voxel_size=VS)
    with pytest.raises(ValueError, match="magnitude rises with echo time .* echoes are out of order"):
        pipeline.run(data)
    with pytest.raises(ValueError, match="out of order"):
        pipeline.r2star_run(data)


def test_shuffled_echoes_are_refused():
    mag, pha = _head()
    order = [0, 2, 1]
    with pytest.raises(ValueError, match="out of order"):
        sanity.check_echo_order(mag[..., order], TE, sanity.tissue(mag))


@pytest.mark.parametrize("part, echo, value", [("magnitude", 1, 0.0), ("phase", 2, 0.0), ("phase", 1, -np.pi)])
def test_an_empty_echo_is_named_not_taken_for_echo_order(part, echo, value):
    """One echo exported empty (zero everywhere; Siemens' integer phase of an empty echo reads
    -π): its magnitude's median would "rise" after it, or its phase break the phase's linearity
    in TE, and the user be told to re-sort files that are in order (or, for a phase at -π with
    two short echoes, get a wrong field without a word). The echo is named instead; R2*
    (magnitude alone) too."""
    mag, pha = _head()
    (mag if part == "magnitude" else pha)[..., echo] = value
    data = GreInput.from_arrays(mag, pha, TE, 3.0, voxel_size=VS)
    words = (f"^the {part} of echo {echo + 1} is {value:.4g} in every voxel: an empty or failed export of that "
             "echo; export it again$")
    with pytest.raises(ValueError, match=words):
        pipeline.run(data)
    if part == "magnitude":
        with pytest.raises(ValueError, match=words):
            pipeline.r2star_run(data)
    else:
        pipeline.r2star_run(data)  # R2* does not read the phase


def test_a_magnitude_of_one_value_is_refused():
    mag, pha = _head()
    data = GreInput.from_arrays(np.ones_like(mag), pha, TE, 3.0, voxel_size=VS)
    with pytest.raises(ValueError, match="^the magnitude is 1 in every voxel of every echo: it is not a magnitude"):
        pipeline.run(data)


def test_decaying_echoes_pass():
    mag, _ = _head()
    sanity.check_echo_order(mag, TE, sanity.tissue(mag))  # no error


def _medians(*levels):
    """A 4-echo series of uniform tissue with the given median per echo (no noise)."""
    return np.stack([np.full((6, 6, 6), v, np.float32) for v in levels], axis=3), np.ones((6, 6, 6), bool)


def test_echo_order_each_criterion_alone():
    """Two criteria, each at its own tolerance: the last echo above the first by more than 1 %
    (here 1.4 %, no step above 0.6 %), or any echo above the one before by more than 2 % (here
    2.5 %, the last below the first). Noise-sized rises (0.5 % over the series, 1.5 % in one
    step) pass; the error gives the medians and the echo times in ms."""
    te = (0.004, 0.012, 0.020, 0.028)
    mag, region = _medians(100.0, 100.6, 101.0, 101.4)
    with pytest.raises(ValueError, match=r"100, 100.6, 101, 101.4 at TE 4, 12, 20, 28 ms.*, and echo times in "
                                         r"the same order$"):
        sanity.check_echo_order(mag, te, region)
    with pytest.raises(ValueError, match=r"100, 100.6, 101, 101.4 in the order given\).*fix the order\)$"):
        sanity.check_echo_order(mag, None, region)  # a magnitude alone (the mask stage): no echo times to name
    sanity.check_echo_order(mag, te, np.zeros_like(region))  # no tissue found: nothing to judge, no error
    with pytest.raises(ValueError, match="out of order"):  # magnitudes scaled to 0-1 as some converters do
        sanity.check_echo_order(mag * 1e-3, te, region)
    mag2, region = _medians(90.0, 100.0, 0.0, 0.0)  # two echoes (a clinical protocol), last one first
    with pytest.raises(ValueError, match="out of order"):
        sanity.check_echo_order(mag2[..., :2], te[:2], region)
    mag, region = _medians(100.0, 102.5, 90.0, 80.0)
    with pytest.raises(ValueError, match="out of order"):
        sanity.check_echo_order(mag, te, region)
    mag, region = _medians(100.0, 100.2, 100.3, 100.5)
    sanity.check_echo_order(mag, te, region)
    mag, region = _medians(100.0, 101.5, 95.0, 90.0)
    sanity.check_echo_order(mag, te, region)


def test_reversed_per_echo_files_through_the_cli(tmp_path, capsys):
    """Per-echo files without BIDS names or sidecars, given last echo first: exit 1, nothing written."""
    mag, pha = _head()
    args = []
    for e in (2, 1, 0):
        for part, vol in (("mag", mag), ("phase", pha)):
            p = tmp_path / f"{part}{e}.nii.gz"
            nib.save(nib.Nifti1Image(vol[..., e], np.diag([*VS, 1.0])), str(p))
            args += [f"--{part}", str(p)]
    out = tmp_path / "out"
    code, err = _cli(["run", *args, "--echo-times", "0.004,0.012,0.020", "--field-strength", "3", "-o", str(out)],
                     capsys)
    assert code == 1
    assert err.count("\n") == 1 and "echoes are out of order" in err and "echo 1 first" in err
    assert not out.exists() or not any(out.iterdir())
    # the mask alone too (BET's surface also moves on the last echo), without echo times
    mag_args = [a for flag, path in zip(args[::2], args[1::2]) if flag == "--mag" for a in (flag, path)]
    code, err = _cli(["mask", *mag_args, "-o", str(out)], capsys)
    assert code == 1, err
    assert err.count("\n") == 1 and "echoes are out of order" in err and "in the order given" in err, err
    assert not out.exists() or not any(out.iterdir())


def test_echo_times_in_tenths_of_seconds_are_refused(tmp_path, capsys):
    mag, pha = _head()
    p, q = tmp_path / "m.nii.gz", tmp_path / "p.nii.gz"
    nib.save(nib.Nifti1Image(mag, np.diag([*VS, 1.0])), str(p))
    nib.save(nib.Nifti1Image(pha, np.diag([*VS, 1.0])), str(q))
    out = tmp_path / "out"
    code, err = _cli(["run", "--mag", str(p), "--phase", str(q), "--echo-times", "0.5,0.8,0.9",
                      "--field-strength", "3", "-o", str(out)], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "[0.5, 0.8, 0.9] s are longer than any gradient echo" in err
    assert not out.exists() or not any(out.iterdir())


def test_echo_times_disagreeing_with_the_sidecars_are_refused(tmp_path, capsys):
    mag, pha = _head()
    for name, vol in (("sub-01_part-mag_MEGRE", mag), ("sub-01_part-phase_MEGRE", pha)):
        nib.save(nib.Nifti1Image(vol, np.diag([*VS, 1.0])), str(tmp_path / f"{name}.nii.gz"))
        (tmp_path / f"{name}.json").write_text(json.dumps({"EchoTime": list(TE), "MagneticFieldStrength": 3}))
    out = tmp_path / "out"
    code, err = _cli(["run", "--mag", str(tmp_path / "sub-01_part-mag_MEGRE.nii.gz"),
                      "--phase", str(tmp_path / "sub-01_part-phase_MEGRE.nii.gz"), "--echo-times", "0.005,0.010,0.015",
                      "-o", str(out)], capsys)
    assert code == 1 and "differ from the sidecars' EchoTime" in err and err.count("\n") == 1
    # so is a field strength other than the sidecars' (χ scales with 1/B0); the same one is fine
    code, err = _cli(["run", "--mag", str(tmp_path / "sub-01_part-mag_MEGRE.nii.gz"),
                      "--phase", str(tmp_path / "sub-01_part-phase_MEGRE.nii.gz"), "--field-strength", "1.5",
                      "-o", str(out)], capsys)
    assert code == 1 and "--field-strength 1.5 T differs from the sidecars' MagneticFieldStrength (3 T)" in err
    assert err.count("\n") == 1 and (not out.exists() or not any(out.iterdir()))
    from qsmflow.io._sidecars import _resolve_field_strength

    assert _resolve_field_strength(2.89, [{"MagneticFieldStrength": 3}]) == (2.89, "--field-strength")


def test_static_phase_is_warned_about(caplog):
    mag, pha = _head()
    same = np.repeat(pha[..., :1], 3, axis=3)
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        sanity.check_phase_evolves(same, sanity.tissue(mag))
    assert "phase does not change between echoes 1 and 2" in caplog.text
    caplog.clear()
    last_twice = pha.copy()
    last_twice[..., 2] = pha[..., 1]  # the second echo's file given again as the third
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        sanity.check_phase_evolves(last_twice, sanity.tissue(mag))
    assert "phase does not change between echoes 2 and 3" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="qsmflow"):  # two echoes, the same file twice
        sanity.check_phase_evolves(same[..., :2], sanity.tissue(mag))
    assert "between echoes 1 and 2" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        sanity.check_phase_evolves(pha, sanity.tissue(mag))
        sanity.check_phase_evolves(same, np.zeros(SHAPE, bool))  # no tissue found: nothing to judge
    assert caplog.text == ""


TE5 = (0.004, 0.010, 0.016, 0.022, 0.028)


def _five_echoes(bipolar_rad=0.0, curvature=0.0, echo_times=TE5):
    """Echoes (5 evenly spaced unless ``echo_times`` says otherwise) of the ellipsoid head: a smooth
    field (20 Hz across x, 15 Hz across z), a bipolar readout's offset alternating
    ±``bipolar_rad``·y between echoes, and a phase ``curvature``·TE² (rad) that no field gives;
    noise 1 % of the first echo."""
    rng = np.random.default_rng(2)
    head = ellipsoid(SHAPE, VS, (60, 70, 55))
    x = np.linspace(-1, 1, SHAPE[0])[:, None, None]
    y = np.linspace(-1, 1, SHAPE[1])[None, :, None]
    z = np.linspace(-1, 1, SHAPE[2])[None, None, :]
    te = np.array(echo_times)
    field = (20 * x + 15 * z) * np.ones(SHAPE)
    phase = (2 * np.pi * field[..., None] * te + bipolar_rad * y[..., None] * (-1.0) ** np.arange(te.size)
             + curvature * te**2)
    sig = head[..., None] * np.exp(-25 * te) * np.exp(1j * phase)
    sig = sig + 0.01 * (rng.standard_normal(sig.shape) + 1j * rng.standard_normal(sig.shape))
    return np.abs(sig).astype(np.float32), np.angle(sig).astype(np.float32)


def test_phase_out_of_echo_order_is_refused(caplog):
    """Phase files swapped between two echoes (magnitudes in order) broke the linear evolution the
    field fit assumes: on the 3 mm benchmark head χ NRMSE went from 51 % to 99-1284 % with exit
    code 0 and only a misleading "echoes too short" warning."""
    mag, pha = _five_echoes(bipolar_rad=1.0)
    region = sanity.tissue(mag)
    # in order: linear, the bipolar offsets (±1 rad across y) cancel
    assert sanity.check_phase_is_linear_in_te(pha, TE5, region) < 0.05
    for order in ([1, 0, 2, 3, 4], [0, 2, 1, 3, 4], [0, 1, 3, 2, 4], [0, 1, 2, 4, 3]):
        with pytest.raises(ValueError, match=r"^the phase does not advance linearly with echo time: over echoes "
                                             r"\d-\d .* not in the same echo order as the echo times"):
            sanity.check_phase_is_linear_in_te(pha[..., order], TE5, region)
    # every echo reversed stays linear (the magnitude and χ sign checks see that); 3 echoes: no check
    assert sanity.check_phase_is_linear_in_te(pha[..., ::-1], TE5, region) < 0.05
    assert np.isnan(sanity.check_phase_is_linear_in_te(pha[..., :3], TE5[:3], region))
    # a curvature κ·TE² departs by κ(TE4² - TE3² - TE2² + TE1²) = 4κΔTE² = 0.2 rad: warned about
    mag, pha = _five_echoes(curvature=0.2 / (4 * 0.006**2))
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        level = sanity.check_phase_is_linear_in_te(pha, TE5, sanity.tissue(mag))
    assert level == pytest.approx(0.2, abs=0.02)
    assert "departs from linear evolution with echo time over echoes" in caplog.text


def test_phase_linearity_with_four_unevenly_spaced_echoes():
    """Four echoes at 3, 5, 9 and 17 ms (steps 2, 4, 8 ms): linear phase departs by
    (φ4 - φ3) - (8/2)(φ2 - φ1) = 0, which the ratio of the first and last steps, not of
    neighbouring ones, gives; the smallest echo count the check takes, whose one window is
    echoes 1-4."""
    te = (0.003, 0.005, 0.009, 0.017)
    mag, pha = _five_echoes(echo_times=te)  # a field under 250 Hz: the first 2 ms step does not wrap
    region = sanity.tissue(mag)
    assert sanity.check_phase_is_linear_in_te(pha, te, region) < 0.05
    with pytest.raises(ValueError, match=r"over echoes 1-4 it departs .*: give the phase files echo 1 first, in "
                                         r"the magnitudes' order \(BIDS echo-N names or sidecars with EchoNumber"):
        sanity.check_phase_is_linear_in_te(pha[..., [0, 2, 1, 3]], te, region)


def test_run_refuses_phase_out_of_echo_order_before_writing(tmp_path, capsys):
    mag, pha = _five_echoes()
    for name, arr in (("mag", mag), ("pha", pha[..., [0, 1, 3, 2, 4]])):
        nib.save(nib.Nifti1Image(arr, np.diag([*VS, 1.0])), tmp_path / f"{name}.nii.gz")
    out = tmp_path / "out"
    code, err = _cli(["run", "--mag", str(tmp_path / "mag.nii.gz"), "--phase", str(tmp_path / "pha.nii.gz"),
                      "--echo-times", ",".join(str(t) for t in TE5), "--field-strength", "3", "-o", str(out)], capsys)
    assert code == 1 and "the phase does not advance linearly with echo time" in err and err.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())


def test_field_noise_above_the_local_field_is_warned_about(caplog):
    mask = np.ones((4, 4, 4), bool)
    hz_per_ppm = 42.577478 * 3  # Hz per ppm at 3 T
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        quiet = sanity.check_field_noise(np.full((4, 4, 4), 0.4 * 0.01 * hz_per_ppm), mask, 3.0, (0.0023, 0.0046))
    assert quiet is False
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        loud = sanity.check_field_noise(np.full((4, 4, 4), 0.9 * 0.01 * hz_per_ppm), mask, 3.0, (0.0023, 0.0046))
    assert loud is True
    assert "median SD 1.15 Hz = 0.0090 ppm" in caplog.text and "2.3, 4.6 ms are too short" in caplog.text


@pytest.mark.parametrize("te, tesla, hz, warned", [
    (0.004, 3.0, 1.989, True),   # 0.05 rad / (2π · 4 ms); half the typical local field at 3 T: 0.639 Hz
    (0.010, 3.0, 0.796, True),
    (0.015, 3.0, 0.531, False),
    (0.022, 3.0, 0.362, False),
    (0.005, 7.0, 1.592, True),   # half the typical local field at 7 T: 1.490 Hz
    (0.008, 7.0, 0.995, False),  # warned about at 3 T, not at 7 T
    (0.019, 7.0, 0.419, False),
])
def test_one_short_echo_is_warned_about(caplog, te, tesla, hz, warned):
    """One echo reads the receive phase offset's rough part (0.05 rad on a real head) as field,
    0.05 / (2π TE) Hz, warned about above half the typical local field, 0.5 · 0.01 ppm ·
    42.577 Hz/ppm/T · B0: from an echo of 12.5 ms down at 3 T, 5.3 ms at 7 T."""
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        assert sanity.check_single_echo_offset(te, tesla) == pytest.approx(hz, abs=1e-3)
    assert ("is too short for QSM" in caplog.text) is warned
    if warned:
        later = {3.0: 13, 7.0: 6}[tesla]  # ms: 0.05 / (2π · 0.5 · 0.01 · 42.577478 · B0), rounded up
        assert f"one echo at {te * 1000:g} ms" in caplog.text and f"as {hz:.2f} Hz of field" in caplog.text
        assert f"An echo of {later} ms or later" in caplog.text


@pytest.mark.parametrize("echo_times, tesla, decay, warned", [
    ((0.0023, 0.0046), 3.0, 1 - np.exp(-0.0023 / 0.066), True),  # the real Philips head's echoes
    ((0.0023, 0.0046), 1.5, 1 - np.exp(-0.0023 / 0.084), True),
    ((0.004, 0.010, 0.016, 0.022, 0.028), 3.0, 1 - np.exp(-0.024 / 0.066), False),
    ((0.003, 0.007, 0.011, 0.015, 0.019), 7.0, 1 - np.exp(-0.016 / 0.0332), False),
    ((0.004, 0.0105), 3.0, 1 - np.exp(-0.0065 / 0.066), True),  # grey matter decays by 9.4 %
    ((0.004, 0.0115), 3.0, 1 - np.exp(-0.0075 / 0.066), False),  # by 10.7 %
])
def test_echoes_spanning_too_little_for_r2star_are_warned_about(caplog, echo_times, tesla, decay, warned):
    # grey matter's T2*: 84.0, 66.0, 33.2 ms at 1.5, 3, 7 T (Peters et al. 2007)
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        assert sanity.check_r2star_span(echo_times, tesla) == pytest.approx(decay, rel=1e-6)
    assert ("R2*/T2* are unreliable" in caplog.text) is warned
    if warned and tesla == 3.0 and echo_times[0] == 0.0023:
        assert "span only 2.3 ms" in caplog.text and "by 3.4 %" in caplog.text and "by 4.3/s" in caplog.text
        assert "spanning 7 ms or more" in caplog.text


@pytest.mark.parametrize("echo_times, warned", [
    ((0.002, 0.005, 0.008), True),  # the matrix's fast protocol: 49 % against 36 % with echoes to 28 ms
    ((0.0023, 0.0046), True),  # the real Philips head's echoes
    ((0.004, 0.0139), True),  # 9.9 ms
    ((0.004, 0.014), False),  # 10 ms: the CSF rule's span, from which the chain finds CSF too
    ((0.004, 0.010, 0.016, 0.022, 0.028), False),
    ((0.022,), False),  # one echo: its own warning (check_single_echo_offset)
])
def test_chi_from_a_short_echo_train_is_warned_about(caplog, echo_times, warned):
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        assert sanity.check_chi_echo_span(echo_times) is warned
    assert ("χ from echoes spanning only" in caplog.text) is warned
    if warned and len(echo_times) == 3:
        assert "spanning only 6 ms (2, 5, 8 ms)" in caplog.text and "Echoes spanning 10 ms or more" in caplog.text


@pytest.mark.parametrize("litres, word", [(0.5, "less than"), (2.5, "more than"), (1.4, None)])
def test_implausible_mask_volume_is_warned_about(caplog, litres, word):
    mask = np.zeros((102, 102, 102), bool)
    inner = mask[1:-1, 1:-1, 1:-1]  # a whole head: the mask touches no face of the volume
    inner.flat[: int(round(litres * 1e6 / 1.5**3))] = True  # 1.5 mm voxels
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        masking.check_volume(mask, (1.5, 1.5, 1.5))
    if word is None:
        assert caplog.text == ""
    else:
        assert f"holds {litres:.2f} L, {word} an adult brain" in caplog.text


def _brain_with_nuclei(chi_nuclei, chi_edge):
    """A 1.5 mm ball brain (radius 45 mm): white matter at R2* 20/s, χ 0 ± 0.01 ppm; eight
    deep nuclei (R2* 45/s, χ ``chi_nuclei``) and a 4 mm rim by the air (R2* 80/s, the highest
    of all, χ ``chi_edge``, as near sinuses)."""
    shape, vs = (68, 68, 68), (1.5, 1.5, 1.5)
    rng = np.random.default_rng(4)
    brain = ellipsoid(shape, vs, (45, 45, 45))
    chi = np.where(brain, rng.normal(0, 0.01, shape), 0)
    r2 = np.where(brain, 20 + rng.normal(0, 2, shape), 0)
    for cx in (-15, 15):
        for cy in (-15, 15):
            for cz in (-12, 12):
                blob = ellipsoid(shape, vs, (5, 5, 5), (cx, cy, cz))
                chi[blob] += chi_nuclei
                r2[blob] = 45
    rim = brain & ~ellipsoid(shape, vs, (41, 41, 41))
    chi[rim] = chi_edge
    r2[rim] = 80
    return chi, r2, brain, vs


def test_sign_flipped_chi_is_warned_about(caplog):
    """Veins and iron-rich nuclei are paramagnetic: χ below the rest where R2* is highest deep
    in the brain means the phase ran the other way. The rim by the air, where R2* is higher
    still and χ may be anything, is not looked at."""
    chi, r2, brain, vs = _brain_with_nuclei(0.12, -0.3)
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        share = sanity.check_chi_sign(chi, r2, brain, vs)
    assert share > 0.95 and "sign-flipped" not in caplog.text
    chi, r2, brain, vs = _brain_with_nuclei(-0.12, 0.3)
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        share = sanity.check_chi_sign(chi, r2, brain, vs)
    assert share < 0.05
    assert "sign-flipped" in caplog.text and "--phase-sign -1" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        sanity.check_chi_sign(chi, r2, brain, vs, phase_sign=-1)
    assert "--phase-sign 1" in caplog.text
    # depth is measured in mm: veins in a band 10.5-14.5 mm deep (paramagnetic, R2* 60/s) are
    # deep enough, although at 1.5 mm voxels that is only 7-10 voxels
    band = ellipsoid(chi.shape, vs, (34.5, 34.5, 34.5)) & ~ellipsoid(chi.shape, vs, (30.5, 30.5, 30.5))
    chi_b, r2_b = np.where(band, 0.2, chi), np.where(band, 60.0, r2)
    chi_b[(r2 == 45)] = 0.0  # the nuclei made neutral: only the band can tell
    assert sanity.check_chi_sign(chi_b, r2_b, brain, vs) > 0.95
    assert sanity.check_chi_sign(-chi_b, r2_b, brain, vs) < 0.05
    # the top 2 % of the deep voxels, from 1500 deep voxels on (30 at the top): a brain of
    # radius 22 mm at 1.5 mm voxels holds 2,296 deeper than 10 mm, so the top 46 are a
    # nucleus of 32 voxels (R2* 45/s, χ +0.15) and 14 white-matter voxels of highest noisy R2*,
    # about half of them above the median χ
    rng = np.random.default_rng(5)
    mid = ellipsoid(chi.shape, vs, (22, 22, 22))
    nucleus = ellipsoid(chi.shape, vs, (3, 3, 3))
    chi_m = np.where(nucleus, 0.15, np.where(mid, rng.normal(0, 0.01, chi.shape), 0))
    r2_m = np.where(nucleus, 45.0, np.where(mid, 20 + rng.normal(0, 2, chi.shape), 0))
    assert 0.75 < sanity.check_chi_sign(chi_m, r2_m, mid, vs) < 0.95
    # a brain too small to hold 30 deep voxels of highest R2*: no verdict
    small = ellipsoid(chi.shape, vs, (14, 14, 14))
    assert sanity.check_chi_sign(chi, r2, small, vs) is None
    # R2* known to ±2/s: the nuclei (25/s above the median) count; known to ±10/s they could
    # be noise (the top 2 % of noisy white matter, diamagnetic): no verdict
    assert sanity.check_chi_sign(chi, r2, brain, vs, r2star_noise=2.0) < 0.05
    assert sanity.check_chi_sign(chi, r2, brain, vs, r2star_noise=10.0) is None


def test_implausible_chi_is_warned_about(caplog):
    """Brain χ within about ±0.2 ppm: a map with 5 % of the brain beyond ±0.5 ppm is warned about
    (with its figures), one with a single strong vein is not."""
    region = np.ones((20, 20, 20), bool)
    chi = np.random.default_rng(0).normal(0, 0.05, region.shape).astype(np.float32)
    chi[0, 0, :5] = 0.6  # a vein: 5 voxels of 8000
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        assert sanity.check_chi_range(chi, region) == pytest.approx(5 / 8000)
    assert "implausible" not in caplog.text
    chi[1] = -0.8  # 400 more voxels: 5.1 %
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        share = sanity.check_chi_range(chi, region)
    assert share == pytest.approx(405 / 8000)
    assert "χ looks implausible: 5.1 % of the brain is beyond ±0.5 ppm" in caplog.text
    # only the region counts (χ outside it, e.g. a background inversion's sources, is not brain)
    inner = np.zeros_like(region)
    inner[2:18, 2:18, 2:18] = True
    chi[~inner] = 3.0
    chi[1] = 0.0
    assert sanity.check_chi_range(chi, inner) == pytest.approx(0.0)
    chi[5, 5, 5] = np.nan  # a voxel the inversion left undefined does not count either
    assert sanity.check_chi_range(chi, inner) == pytest.approx(0.0)
    assert sanity.check_chi_range(chi, np.zeros_like(region)) == 0.0  # an empty region: nothing beyond


def test_a_magnitude_given_as_phase_is_refused(tmp_path, capsys):
    """A magnitude image given as --phase, with a --phase-scale that maps it into [-π, π), follows
    the magnitude voxel by voxel: refused in one line naming the mistake; the head's real phase
    (correlation near 0) passes."""
    mag, pha = _head()
    sanity.check_phase_is_not_magnitude(pha, mag, sanity.tissue(mag))  # the real phase: no error
    # a phase of zeros (not exported) has no correlation to compute: left to the static-phase warning
    sanity.check_phase_is_not_magnitude(np.zeros_like(pha), mag, sanity.tissue(mag))
    p, q = tmp_path / "m.nii.gz", tmp_path / "p.nii.gz"
    nib.save(nib.Nifti1Image(mag, np.diag([*VS, 1.0])), str(p))
    nib.save(nib.Nifti1Image(mag, np.diag([*VS, 1.0])), str(q))
    out = tmp_path / "out"
    scale = 3.0 / float(mag.max())
    code, err = _cli(["run", "--mag", str(p), "--phase", str(q), "--phase-scale", str(scale), "--echo-times",
                      ",".join(map(str, TE)), "--field-strength", "3", "-o", str(out)], capsys)
    assert code == 1 and err.count("\n") == 1 and "a magnitude image was given as --phase" in err, err
    assert not out.exists() or not any(out.iterdir())


def test_invert_run_keeps_its_warnings_for_the_provenance():
    """The single-stage runs collect the warnings their stages log, as run does: the χ-range
    warning of an implausible local field reaches result.warnings."""
    from conftest import ellipsoid

    shape, vs = (20, 20, 20), (2.0, 2.0, 2.0)
    mask = ellipsoid(shape, vs, (16, 16, 16))
    local = np.where(mask, np.random.default_rng(0).normal(0, 0.3, shape), 0).astype(np.float32)  # ±0.3 ppm noise
    res = pipeline.invert_run(local, mask, vs, (0, 0, 1), options=pipeline.Options(inversion="tkd", reference="mean"))
    assert any("χ looks implausible" in w for w in res.warnings), res.warnings


def test_tissue_of_a_constant_image():
    """The head's tissue is the magnitude above its Otsu threshold; an image whose nonzero voxels
    are all alike (a synthetic or masked one, here scaled 0-1 as some converters write it) has no
    threshold to find: its nonzero voxels are the tissue."""
    mag = np.zeros((8, 8, 8, 2), np.float32)
    mag[2:6, 2:6, 2:6] = 0.5
    expected = np.zeros((8, 8, 8), bool)
    expected[2:6, 2:6, 2:6] = True
    np.testing.assert_array_equal(sanity.tissue(mag), expected)
    mag[2:4] *= 3  # two levels: the brighter half is above Otsu's threshold
    np.testing.assert_array_equal(sanity.tissue(mag), expected & (np.arange(8) < 4)[:, None, None])



def test_a_total_field_given_as_local_is_warned_about(caplog):
    """A field that still holds the background (a total field given to `invert`) spreads by
    tenths of a ppm where the tissue's own stays within hundredths: said, with the fix; the
    phantom's own local and total fields (literal spreads 0.016 / 0.39 ppm on the benchmark
    head) on either side of the 0.15 ppm line."""
    from conftest import ellipsoid

    shape, vs = (20, 20, 20), (2.0, 2.0, 2.0)
    mask = ellipsoid(shape, vs, (16, 16, 16))
    z = np.linspace(-1, 1, shape[2])[None, None, :] * np.ones(shape)
    rng = np.random.default_rng(0)
    local = np.where(mask, rng.normal(0, 0.012, shape), 0).astype(np.float32)  # 95th percentile of |f| ~0.024
    total = np.where(mask, local + 0.5 * z ** 2 - 0.3 * z, 0).astype(np.float32)  # + a smooth background
    caplog.set_level(logging.WARNING)
    assert sanity.check_field_is_local(local, mask) == pytest.approx(0.0235, abs=0.003)
    assert "spreads like a total field" not in caplog.text
    assert sanity.check_field_is_local(total, mask) > 0.15
    assert "spreads like a total field" in caplog.text and "qsmflow bgremove" in caplog.text
    caplog.clear()
    res = pipeline.invert_run(total, mask, vs, (0, 0, 1), options=pipeline.Options(inversion="tkd", reference="mean"))
    assert any("spreads like a total field" in w for w in res.warnings) and res.parameters["local_field_spread_ppm"] > 0.15
