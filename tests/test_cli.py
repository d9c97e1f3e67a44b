"""Command line: every user mistake is one line on stderr, exit code 1, and no output files."""

import logging
from pathlib import Path

import click
import nibabel as nib
import numpy as np
import pytest

from conftest import printed_accuracy, run_cli

SHAPE = (12, 13, 14)


def _nii(path, data):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4)), str(path))
    return str(path)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "in"
    d.mkdir()
    return {
        "mag4": _nii(d / "sub-01_part-mag_MEGRE.nii.gz", rng.uniform(1, 2, SHAPE + (3,))),
        "pha4": _nii(d / "sub-01_part-phase_MEGRE.nii.gz", rng.uniform(-3.14, 3.14, SHAPE + (3,))),
        "pha4_other": _nii(d / "other_phase.nii.gz", rng.uniform(-3.14, 3.14, (12, 13, 15, 3))),
        "pha3": _nii(d / "phase3d.nii.gz", rng.uniform(-3.14, 3.14, SHAPE)),
        "out": tmp_path / "out",
    }


_run = run_cli


OK_TE = ["--echo-times", "0.004,0.008,0.012", "--field-strength", "3"]


@pytest.mark.parametrize(
    "case, match",
    [
        ("shape", "magnitude has shape (12, 13, 14) but phase has shape (12, 13, 15)"),
        ("te_count", "2 echo times for 3 echoes"),
        ("te_ms", "look like milliseconds"),
        ("no_field", "pass --field-strength"),
        ("phase3d", "magnitude has 3 echo(es) but phase has 1"),
        ("missing", "file not found"),
        ("truncated", "cannot read"),
        ("bad_te_text", "--echo-times must be comma-separated numbers"),
        ("no_phase_option", "Missing option '--phase'"),
    ],
)
def test_run_user_errors(files, capsys, tmp_path, case, match):
    mag, pha, extra = files["mag4"], files["pha4"], OK_TE
    if case == "shape":
        pha = files["pha4_other"]
    elif case == "te_count":
        extra = ["--echo-times", "0.004,0.008", "--field-strength", "3"]
    elif case == "te_ms":
        extra = ["--echo-times", "4,8,12", "--field-strength", "3"]
    elif case == "no_field":
        extra = ["--echo-times", "0.004,0.008,0.012"]
    elif case == "phase3d":
        pha = files["pha3"]
    elif case == "missing":
        mag = str(tmp_path / "nope.nii.gz")
    elif case == "truncated":
        bad = tmp_path / "cut.nii.gz"
        bad.write_bytes(Path(files["mag4"]).read_bytes()[:300])
        mag = str(bad)
    elif case == "bad_te_text":
        extra = ["--echo-times", "4ms,8ms", "--field-strength", "3"]
    argv = ["run", "--mag", mag, "-o", str(files["out"])] + extra
    if case != "no_phase_option":
        argv += ["--phase", pha]
    code, out, err = _run(argv, capsys)
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("qsmflow: error")]
    assert len(lines) == 1 and match in lines[0], err
    assert "in Python" not in lines[0]  # the hints for Python callers are not the command line's
    assert "Traceback" not in err
    assert not files["out"].exists()


def test_unknown_fft_library_is_refused_before_any_work(files, capsys, monkeypatch):
    monkeypatch.setenv("QSMFLOW_FFT", "mkl")
    code, _, err = _run(["run", "--mag", files["mag4"], "--phase", files["pha4"], "-o", str(files["out"])] + OK_TE,
                        capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip() == ("qsmflow: error: QSMFLOW_FFT='mkl' is not an FFT library qsmflow knows: set it to one "
                           "of auto, pyfftw, scipy, or unset it")
    assert not files["out"].exists()


def test_existing_outputs_need_force(files, capsys):
    files["out"].mkdir()
    existing = files["out"] / "sub-01_Chimap.nii.gz"
    existing.write_bytes(b"old")
    code, _, err = _run(["run", "--mag", files["mag4"], "--phase", files["pha4"], "-o", str(files["out"])] + OK_TE,
                        capsys)
    assert code == 1 and "pass --force" in err
    assert sorted(p.name for p in files["out"].iterdir()) == ["sub-01_Chimap.nii.gz"]
    assert existing.read_bytes() == b"old"


def test_simulate_argument_errors(tmp_path, capsys):
    code, _, err = _run(["simulate", str(tmp_path / "s"), "--oblique", "20", "--b0-direction", "0,0,1"], capsys)
    assert code == 1 and "not both" in err
    code, _, err = _run(["simulate", str(tmp_path / "s"), "--matrix", "10,10"], capsys)
    assert code == 1 and "--matrix needs 3" in err
    assert not (tmp_path / "s").exists()


def test_help_and_version(capsys):
    code, out, _ = _run(["--help"], capsys)
    assert code == 0 and "qsmflow" in out and "run" in out and "demo" in out
    code, out, _ = _run(["--version"], capsys)
    assert code == 0 and "0.1.0" in out


# ---------------------------------------------------------------- through files

import json  # noqa: E402

from conftest import shared_data  # noqa: E402


@pytest.mark.xdist_group("demo_head")  # the demo's 5 mm head: one painting of it (see conftest.py)
def test_simulate_then_run_with_integer_phase(tmp_path, capsys, monkeypatch):
    data = tmp_path / "bids"
    # a 5 mm head (32x38x32): the input's reading is tested here, not the head
    code, _, err = _run(["simulate", str(data), "--matrix", "32,38,32", "--voxel-size", "5,5,5", "--integer-phase",
                         "--oblique", "15", "-q"], capsys)
    assert code == 0, err
    # into the same folder again: refused at once, before the simulation runs
    from qsmflow import phantom

    def no_simulation(*_, **__):
        raise AssertionError("simulated before checking the output folder")

    monkeypatch.setattr(phantom, "simulate_head", no_simulation)
    code, _, err = _run(["simulate", str(data), "--matrix", "32,38,32", "--voxel-size", "5,5,5"], capsys)
    assert code == 1 and "exists" in err and "--force" in err, err
    monkeypatch.undo()
    anat = data / "sub-phantom" / "anat"
    ph = nib.load(str(anat / "sub-phantom_echo-1_part-phase_MEGRE.nii.gz"))
    assert ph.get_data_dtype() == np.int16
    assert (data / "derivatives" / "truth" / "sub-phantom" / "anat" / "sub-phantom_Chimap.nii.gz").exists()
    out = tmp_path / "out"
    code, _, err = _run(["run", "--mag", str(anat / "sub-phantom_echo-*_part-mag_MEGRE.nii.gz"),
                         "--phase", str(anat / "sub-phantom_echo-*_part-phase_MEGRE.nii.gz"), "-o", str(out),
                         "--inversion", "tkd", "--mask-method", "threshold"], capsys)  # the input is tested here
    assert code == 0, err
    prov = json.loads((out / "sub-phantom_provenance.json").read_text())
    assert prov["input"]["phase_scaling"]["rule"].startswith("integers -4096..4095")
    assert prov["input"]["b0_angle_to_slice_axis_deg"] == pytest.approx(15, abs=0.01)
    assert prov["input"]["echo_times_source"] == "sidecar EchoTime"
    assert "B0 direction" in err and "15.0 deg" in err  # logged
    # a second run refuses to overwrite, --force replaces
    code, _, err = _run(["run", "--mag", str(anat / "sub-phantom_echo-*_part-mag_MEGRE.nii.gz"),
                         "--phase", str(anat / "sub-phantom_echo-*_part-phase_MEGRE.nii.gz"), "-o", str(out)], capsys)
    assert code == 1 and "--force" in err
    code, _, _ = _run(["run", "--mag", str(anat / "sub-phantom_echo-*_part-mag_MEGRE.nii.gz"),
                       "--phase", str(anat / "sub-phantom_echo-*_part-phase_MEGRE.nii.gz"), "-o", str(out),
                       "--force", "-q", "--inversion", "tkd", "--mask-method", "threshold", "--no-chi-sd",
                       "--no-report"], capsys)  # fast
    assert code == 0
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_run_on_real_romeo_data(tmp_path, capsys):
    d = shared_data("romeo_small")
    out = tmp_path / "romeo"
    code, _, err = _run(["run", "--mag", str(d / "Mag.nii"), "--phase", str(d / "Phase.nii"),
                         "--echo-times", "0.004,0.008,0.012", "--field-strength", "3", "-o", str(out),
                         "--inversion", "tkd", "--no-chi-sd"], capsys)  # the mask and R2* are checked, not χ
    assert code == 0, err
    assert "scaled by its maximum" in err and "crop inside the head" in err
    prov = json.loads((out / "Mag_provenance.json").read_text())
    assert any("crop inside the head" in w for w in prov["warnings"])
    r2 = nib.load(str(out / "Mag_R2starmap.nii.gz")).get_fdata()
    mask = nib.load(str(out / "Mag_mask.nii.gz")).get_fdata() > 0
    assert mask.mean() > 0.9
    assert 5 < np.median(r2[mask]) < 60  # in-vivo brain R2* at 3 T


def test_run_single_echo_philips_says_no_r2star(tmp_path, capsys):
    """The first echo of the real Philips head alone: χ, but no R2*/T2*, and it says so."""
    d = shared_data("philips_head") / "nifti"
    out = tmp_path / "si"
    code, _, err = _run(["run", "--mag", str(d / "sub-01_echo-1_part-mag_MEGRE.nii"),
                         "--phase", str(d / "sub-01_echo-1_part-phase_MEGRE.nii"), "-o", str(out), "--no-chi-sd", "--inversion", "tkd",
                         "--mask-method", "threshold"], capsys)  # the maps made from one echo are checked, not the mask
    assert code == 0, err
    assert "no R2*/T2* map" in err
    assert (out / "sub-01_Chimap.nii.gz").exists()
    assert not (out / "sub-01_R2starmap.nii.gz").exists()


@pytest.mark.xdist_group("demo_head")
def test_demo_small_keeps_data_results_and_report(capsys, monkeypatch, tmp_path):
    from qsmflow.workflows import demo

    monkeypatch.setattr(demo.run_demo, "__kwdefaults__",
                        {"force": False, "shape": (32, 38, 32), "voxel_size": (5.0, 5.0, 5.0)})
    code, out, err = _run(["demo", str(tmp_path / "d"), "-q"], capsys)
    assert code == 0, err
    assert "simulated head 32x38x32 at 5 mm" in out  # the small head, not the full demo
    # the accuracy it prints: at 5 mm partial volumes keep the χ NRMSE high (85 % measured),
    # but the deep-grey contrast, the mask and R2* must hold (a wrong sign or B0 flips the slope)
    acc = printed_accuracy(out)
    assert acc["mask_dice"] > 0.9 and acc["chi_nrmse"] < 95 and acc["r2star_max_error_pct"] < 40
    assert 0.85 <= acc["deep_grey_slope"] <= 1.15
    report = tmp_path / "d" / "qsmflow" / "sub-phantom_report.html"
    assert report.exists() and str(report) in out
    assert (tmp_path / "d" / "data" / "sub-phantom" / "anat").is_dir()


@pytest.mark.xdist_group("demo_head")
def test_demo_without_out_says_where_the_maps_went(capsys, monkeypatch):
    from qsmflow.workflows import demo

    # the small demo head (only the message is checked), on the worker of the tests that paint it
    monkeypatch.setattr(demo.run_demo, "__kwdefaults__",
                        {"force": False, "shape": (32, 38, 32), "voxel_size": (5.0, 5.0, 5.0)})
    from qsmflow import pipeline

    real = demo.run  # nor the maps: the fastest chain (threshold mask, TKD, no χ SD)
    monkeypatch.setattr(demo, "run", lambda data: real(data, pipeline.Options(mask="threshold", inversion="tkd",
                                                                              chi_sd=False)))
    code, out, err = _run(["demo", "-q"], capsys)
    assert code == 0, err
    assert "temporary folder and removed; run qsmflow demo OUT to keep them" in out


def test_mask_of_wrong_shape(files, capsys, tmp_path):
    bad = _nii(tmp_path / "mask.nii.gz", np.ones((5, 5, 5)))
    code, _, err = _run(["run", "--mag", files["mag4"], "--phase", files["pha4"], "-o", str(files["out"]),
                         "--mask", bad] + OK_TE, capsys)
    assert code == 1 and "--mask" in err and "shape (5, 5, 5)" in err
    assert not files["out"].exists()



def test_prefix_with_folders_is_refused(files, capsys, tmp_path):
    """--prefix ../x would write every map outside the output folder: refused before any work."""
    for prefix in ("../escape", "a/b"):
        code, _, err = _run(["run", "--mag", files["mag4"], "--phase", files["pha4"], "-o", str(files["out"]),
                             "--prefix", prefix, "-q"] + OK_TE, capsys)
        assert code == 1 and "must be a file-name prefix without folders" in err, err
        assert len(err.strip().splitlines()) == 1 and not files["out"].exists()
    assert not list(files["out"].parent.glob("escape_*"))

def test_mask_that_is_an_image_or_empty_is_refused(files, capsys, tmp_path, caplog):
    """An image given as --mask (a magnitude: every voxel above 0.5 would be 'brain') and an
    empty mask are refused in one line, before any work; a probability map is cut at 0.5."""
    shape = nib.load(files["mag4"]).shape[:3]
    aff = nib.load(files["mag4"]).affine
    for values, word in ((np.full(shape, 250.0), "from 250 to 250, so it is not a mask"),
                         (np.zeros(shape), "is empty")):
        bad = str(tmp_path / "mask.nii.gz")
        nib.save(nib.Nifti1Image(values.astype(np.float32), aff), bad)
        code, _, err = _run(["run", "--mag", files["mag4"], "--phase", files["pha4"], "-o", str(files["out"]),
                             "--mask", bad, "-q"] + OK_TE, capsys)
        assert code == 1 and word in err and len(err.strip().splitlines()) == 1, err
        assert not files["out"].exists()
    from qsmflow import io

    prob = np.zeros(shape, np.float32)
    prob[1, 1, 1], prob[2, 2, 2] = 0.4, 0.7
    nib.save(nib.Nifti1Image(prob, aff), str(tmp_path / "prob.nii.gz"))
    with caplog.at_level(logging.WARNING, logger="qsmflow"):
        got = io.load_mask(tmp_path / "prob.nii.gz")
    assert got.dtype == bool and got.sum() == 1 and got[2, 2, 2]
    assert "holds 2 voxels between 0 and 1 (a probability map?): those above 0.5 are taken as brain" in caplog.text
    binary = np.where(prob > 0, 255, 0).astype(np.uint8)  # a 0/255 mask from an image editor: binary
    nib.save(nib.Nifti1Image(binary, aff), str(tmp_path / "b.nii.gz"))
    assert io.load_mask(tmp_path / "b.nii.gz").sum() == 2
    labels = binary.astype(np.float32)
    labels[3, 3, 3] = 2  # 0, 2 and 255: labels, not a mask
    nib.save(nib.Nifti1Image(labels, aff), str(tmp_path / "l.nii.gz"))
    with pytest.raises(ValueError, match="label map"):
        io.load_mask(tmp_path / "l.nii.gz")


# ---------------------------------------------------------------- stage commands


def test_mask_unwrap_fieldmap_commands_on_romeo(tmp_path, capsys):
    d = shared_data("romeo_small")
    common = ["--echo-times", "0.004,0.008,0.012", "--field-strength", "3"]
    code, _, err = _run(["mask", "--mag", str(d / "Mag.nii"), "-o", str(tmp_path / "m")], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "Mag_citations-mask.txt", "Mag_mask.json", "Mag_mask.nii.gz", "Mag_provenance-mask.json"]
    # the next stages into the same folder, given that mask: nothing to overwrite (the mask is not
    # written back), each stage's provenance kept
    given = tmp_path / "m" / "Mag_mask.nii.gz"
    before = given.read_bytes()
    for stage in ("unwrap", "fieldmap"):
        code, _, err = _run([stage, "--mag", str(d / "Mag.nii"), "--phase", str(d / "Phase.nii"), "--mask", str(given),
                             "-o", str(tmp_path / "m"), "-q"] + common, capsys)
        assert code == 0, err
    assert given.read_bytes() == before
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert [n for n in names if "provenance" in n] == [
        "Mag_provenance-fieldmap.json", "Mag_provenance-mask.json", "Mag_provenance-unwrap.json"]
    assert json.loads((tmp_path / "m" / "Mag_provenance-fieldmap.json").read_text())["parameters"]["methods"][
        "mask"] == "given"
    for method in ("romeo", "bestpath"):
        out = tmp_path / f"u_{method}"
        code, _, err = _run(["unwrap", "--mag", str(d / "Mag.nii"), "--phase", str(d / "Phase.nii"), "-o", str(out),
                             "--unwrap", method] + common, capsys)
        assert code == 0, err
        unw = nib.load(str(out / "Mag_unwrapped.nii.gz")).get_fdata()
        off = nib.load(str(out / "Mag_phaseoffset.nii.gz")).get_fdata()
        mask = nib.load(str(out / "Mag_mask.nii.gz")).get_fdata() > 0
        raw = nib.load(str(d / "Phase.nii")).get_fdata() * 855  # the file's scale, as detected
        k = (unw + off[..., None] - raw) / (2 * np.pi)
        np.testing.assert_allclose(k[mask], np.round(k[mask]), atol=2e-3)  # congruent with the input
    code, _, err = _run(["fieldmap", "--mag", str(d / "Mag.nii"), "--phase", str(d / "Phase.nii"),
                         "-o", str(tmp_path / "f")] + common, capsys)
    assert code == 0, err
    f = nib.load(str(tmp_path / "f" / "Mag_fieldmap.nii.gz")).get_fdata()
    assert np.abs(f).max() < 500  # Hz at 3 T
    assert (tmp_path / "f" / "Mag_fieldnoise.nii.gz").exists()


def test_fieldmap_from_siemens_phasediff(tmp_path, capsys):
    d = shared_data("siemens_fieldmap")
    out = tmp_path / "fm"
    code, _, err = _run(["fieldmap", "--phasediff", str(d / "Si_3_gre_field_magph_e2_ph.nii"),
                         "--mag", str(d / "Si_2_gre_field_magph_e1.nii"), "-o", str(out)], capsys)
    assert code == 0, err
    f = nib.load(str(out / "Si_3_gre_field_magph_e2_ph_fieldmap.nii.gz")).get_fdata()
    mask = nib.load(str(out / "Si_3_gre_field_magph_e2_ph_mask.nii.gz")).get_fdata() > 0
    assert -300 < f[mask].min() and f[mask].max() < 300  # a shimmed 3 T head: tens of Hz
    # no jumps: neighbouring voxels differ by far less than one wrap (1/ΔTE = 407 Hz)
    for ax in range(3):
        both = np.logical_and(np.take(mask, range(1, mask.shape[ax]), ax), np.take(mask, range(mask.shape[ax] - 1), ax))
        step = np.abs(np.diff(f, axis=ax))[both]
        assert step.max() < 0.5 / 0.00246
    prov = json.loads((out / "Si_3_gre_field_magph_e2_ph_provenance-fieldmap.json").read_text())
    assert prov["input"]["delta_te_source"] == "sidecar EchoTime1/EchoTime2"
    assert prov["input"]["delta_te_s"] == pytest.approx(0.00246)
    side = json.loads((out / "Si_3_gre_field_magph_e2_ph_fieldmap.json").read_text())
    assert side["Units"] == "Hz"


def test_run_refuses_siemens_phasediff_as_echo_phase(tmp_path, capsys):
    """Real Siemens field map: its phase difference given to run as one echo's phase
    (TE 7.65 ms) would give a field 2.46/7.65 of the truth, silently; refused, nothing written."""
    d = shared_data("siemens_fieldmap")
    out = tmp_path / "run"
    code, _, err = _run(["run", "--mag", str(d / "Si_2_gre_field_magph_e2.nii"), "--phase",
                         str(d / "Si_3_gre_field_magph_e2_ph.nii"), "-o", str(out)], capsys)
    assert code == 1 and "phase difference" in err and "--phasediff" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_fieldmap_argument_errors(files, capsys, tmp_path):
    code, _, err = _run(["fieldmap", "--mag", files["mag4"], "-o", str(files["out"])], capsys)
    assert code == 1 and "--phase" in err and "--phasediff" in err
    pd = _nii(tmp_path / "pd.nii.gz", np.random.default_rng(0).uniform(-3, 3, SHAPE))
    code, _, err = _run(["fieldmap", "--mag", files["mag4"], "--phasediff", pd, "-o", str(files["out"])], capsys)
    assert code == 1 and "--delta-te" in err
    code, _, err = _run(["fieldmap", "--mag", files["mag4"], "--phasediff", pd, "--delta-te", "2.46",
                         "-o", str(files["out"])], capsys)
    assert code == 1 and "seconds" in err
    assert not files["out"].exists()


@pytest.mark.xdist_group("demo_head")  # simulated_bids' head (see conftest.py)
def test_fieldmap_then_bgremove_chain(tmp_path, capsys, simulated_bids):
    data = simulated_bids
    anat = data / "sub-phantom" / "anat"
    mags = str(anat / "sub-phantom_echo-*_part-mag_MEGRE.nii.gz")
    phases = str(anat / "sub-phantom_echo-*_part-phase_MEGRE.nii.gz")
    fm = tmp_path / "fm"
    # the simulated head's true mask (the commands' own masks are test_pipeline's and test_bet's)
    mask = str(data / "derivatives" / "truth" / "sub-phantom" / "anat" / "sub-phantom_mask.nii.gz")
    code, _, err = _run(["fieldmap", "--mag", mags, "--phase", phases, "--mask", mask, "-o", str(fm), "-q"], capsys)
    assert code == 0, err
    side = json.loads((fm / "sub-phantom_fieldmap.json").read_text())
    assert side["Units"] == "Hz" and side["MagneticFieldStrength"] == 3.0
    bg = tmp_path / "bg"
    code, _, err = _run(["bgremove", "--field", str(fm / "sub-phantom_fieldmap.nii.gz"),
                         "--mask", mask, "-o", str(bg)], capsys)
    assert code == 0, err
    assert "PDF for 5x5x5 mm voxels" in err  # auto picks by voxel size
    local = nib.load(str(bg / "sub-phantom_localfield.nii.gz")).get_fdata()
    inside = nib.load(mask).get_fdata() > 0
    # ppm, not Hz (x128 at 3 T): measured median 0.0035, 99th percentile 0.025 on the true mask
    # (0.0037 and 0.026 on the 4 mm head)
    assert 0.002 < np.median(np.abs(local[inside])) < 0.05
    assert np.percentile(np.abs(local[inside]), 99) < 0.5
    prov = json.loads((bg / "sub-phantom_provenance-bgremove.json").read_text())
    assert prov["parameters"]["methods"]["bgremove"] == "pdf"
    assert prov["input"]["unit"] == "hz"
    # a field without a unit in its sidecar is refused, so is a mask on another grid
    bare = tmp_path / "bare_fieldmap.nii.gz"
    bare.write_bytes((fm / "sub-phantom_fieldmap.nii.gz").read_bytes())
    code, _, err = _run(["bgremove", "--field", str(bare), "--mask", mask,
                         "-o", str(tmp_path / "x")], capsys)
    assert code == 1 and "--unit" in err
    small = _nii(tmp_path / "m.nii.gz", np.ones((5, 5, 5)))
    code, _, err = _run(["bgremove", "--field", str(bare), "--mask", small, "--unit", "ppm",
                         "-o", str(tmp_path / "x")], capsys)
    assert code == 1 and "shape" in err
    # a field in Hz declared ppm reads as tens of ppm, which no brain has: refused, naming the fix
    code, _, err = _run(["bgremove", "--field", str(bare), "--mask", mask, "--unit",
                         "ppm", "-o", str(tmp_path / "x"), "-q"], capsys)
    assert code == 1 and "is it in Hz? Pass --unit hz" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_invert_command(tmp_path, capsys):
    """qsmflow invert on a local field written as NIfTI: χ out; MEDI without a magnitude is refused."""
    from conftest import ellipsoid

    from qsmflow import kernels

    shape, vs = (40, 44, 36), (2.0, 2.0, 2.0)
    aff = np.diag(list(vs) + [1.0])
    mask = ellipsoid(shape, vs, (30, 34, 26))
    chi = np.where(mask, 0.0, 0)
    chi[ellipsoid(shape, vs, (6, 6, 6), (8, 0, 0))] = 0.2
    local = np.where(mask, kernels.forward_field(chi.astype(np.float32), vs, (0, 0, 1)), 0)
    d = tmp_path / "in"
    d.mkdir()
    nib.save(nib.Nifti1Image(local.astype(np.float32), aff), str(d / "sub-01_localfield.nii.gz"))
    (d / "sub-01_localfield.json").write_text(json.dumps({"Units": "ppm", "MagneticFieldStrength": 3.0}))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), aff), str(d / "sub-01_localmask.nii.gz"))
    args = ["invert", "--local", str(d / "sub-01_localfield.nii.gz"), "--mask", str(d / "sub-01_localmask.nii.gz")]
    out = tmp_path / "out"
    code, _, err = _run(args + ["--inversion", "tv", "--reference", "mean", "--regularisation", "1e-4",
                                "-o", str(out), "-q"], capsys)
    assert code == 0, err
    est = nib.load(str(out / "sub-01_Chimap.nii.gz")).get_fdata()
    blob = ellipsoid(shape, vs, (4, 4, 4), (8, 0, 0))
    assert est[blob].mean() - est[mask & ~blob].mean() > 0.15  # the source is found, in ppm
    prov = json.loads((out / "sub-01_provenance-invert.json").read_text())
    assert prov["parameters"]["inversion"]["alpha"] == pytest.approx(1e-4)
    # MEDI needs a magnitude; a weight for TKD is meaningless; the echo time in ms is refused
    for extra, word in [(["--inversion", "medi"], "--magnitude"), (["--inversion", "tfi"], "--inversion tfi needs"),
                        (["--inversion", "tkd", "--regularisation", "0.1"], "no regularisation"),
                        (["--inversion", "tv", "--regularisation", "-1"], "positive"),
                        (["--inversion", "tv", "--regularisation", "inf"], "positive number"),
                        (["--inversion", "tv", "--regularisation", "nan"], "positive number")]:
        code, _, err = _run(args + extra + ["-o", str(tmp_path / "bad")], capsys)
        assert code == 1 and word in err and len(err.strip().splitlines()) == 1, err
    mag = _nii(d / "mag.nii.gz", np.where(mask, 1.0, 0.1))
    code, _, err = _run(args + ["--inversion", "medi", "--magnitude", mag, "--echo-time", "20",
                                "-o", str(tmp_path / "bad")], capsys)
    assert code == 1 and "milliseconds" in err
    assert not (tmp_path / "bad").exists()
    # with a noise map, MEDI also writes the uncertainty of χ (0 outside the mask, positive inside)
    noise = _nii(d / "noise.nii.gz", np.where(mask, 0.5, 0))  # Hz
    # (a weight given: the map is tested here, the automatic weight's search in test_inversion)
    code, _, err = _run(args + ["--inversion", "medi", "--magnitude", mag, "--echo-time", "0.02", "--noise", noise,
                                "--noise-unit", "hz", "--regularisation", "1e-3", "-o", str(tmp_path / "sd"), "-q"],
                        capsys)
    assert code == 0, err
    sd = nib.load(str(tmp_path / "sd" / "sub-01_desc-sd_Chimap.nii.gz")).get_fdata()
    assert np.all(sd[~mask] == 0) and np.all(sd[mask] > 0) and np.median(sd[mask]) < 0.05
    # a magnitude per echo (4D) is combined as the root sum of squares: the same χ as that
    # combination, computed here, given as 3D
    echoes = np.stack([np.where(mask, 1.0, 0.1) * e for e in (1.0, 0.6, 0.3)], axis=-1)
    runs = {}
    for name, img in (("4d", echoes), ("3d", np.sqrt(np.sum(echoes ** 2, axis=-1)))):
        code, _, err = _run(args + ["--inversion", "medi", "--magnitude", _nii(d / f"mag{name}.nii.gz", img),
                                    "--echo-time", "0.02", "--regularisation", "1e-3", "-o", str(tmp_path / name),
                                    "-q"], capsys)
        assert code == 0, err
        runs[name] = nib.load(str(tmp_path / name / "sub-01_Chimap.nii.gz")).get_fdata()
    np.testing.assert_array_equal(runs["4d"], runs["3d"])
    # the default ('auto') on a local field is MEDI+0 (TFI needs the total field): it asks for
    # what MEDI needs and then runs
    code, _, err = _run(args + ["-o", str(tmp_path / "bad")], capsys)
    assert code == 1 and "--magnitude" in err and len(err.strip().splitlines()) == 1, err
    code, _, err = _run(args + ["--magnitude", mag, "--echo-time", "0.02", "--regularisation", "1e-3",
                                "-o", str(tmp_path / "auto"), "-q"], capsys)
    assert code == 0, err
    prov = json.loads((tmp_path / "auto" / "sub-01_provenance-invert.json").read_text())
    assert prov["parameters"]["methods"]["inversion"] == "medi"


def test_invert_csf_weights_follow_the_r2star_sidecar(tmp_path, capsys):
    """qsmflow invert --r2star weights CSF only where the R2* map's sidecar says its R2* can tell
    CSF: echoes spanning >= 10 ms and R2* noise below the ramp's 4/s; a map without those
    figures is used as given, with a warning."""
    from conftest import ellipsoid

    shape, vs = (30, 32, 28), (2.0, 2.0, 2.0)
    aff = np.diag(list(vs) + [1.0])
    mask = ellipsoid(shape, vs, (24, 26, 22))
    d = tmp_path / "in"
    d.mkdir()
    nib.save(nib.Nifti1Image(np.where(mask, 0.01, 0).astype(np.float32), aff), str(d / "sub-01_localfield.nii.gz"))
    (d / "sub-01_localfield.json").write_text(json.dumps({"Units": "ppm", "MagneticFieldStrength": 3.0}))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), aff), str(d / "sub-01_localmask.nii.gz"))
    r2 = np.where(mask, 20.0, 0.0)
    csf = np.zeros(shape, bool)
    csf[12:18, 13:19, 11:17] = True  # 216 voxels of 8 mm3: 1.7 mL
    r2[csf] = 2.0
    r2path = str(d / "sub-01_R2starmap.nii.gz")
    nib.save(nib.Nifti1Image(r2.astype(np.float32), aff), r2path)
    mag = _nii(d / "mag.nii.gz", np.where(mask, 1.0, 0.1))
    args = ["invert", "--local", str(d / "sub-01_localfield.nii.gz"), "--mask", str(d / "sub-01_localmask.nii.gz"),
            "--inversion", "medi", "--magnitude", mag, "--echo-time", "0.015", "--regularisation", "1e-3",
            "--r2star", r2path]
    five = [0.004, 0.010, 0.016, 0.022, 0.028]
    cases = {"reliable": (five, 0.5, 216), "short echoes": ([0.0023, 0.0046], 0.5, 0),
             "noisy R2*": (five, 6.0, 0), "no sidecar": (None, None, 216)}
    for name, (te, sd, n_csf) in cases.items():
        side = d / "sub-01_R2starmap.json"
        side.unlink(missing_ok=True)
        if te is not None:
            side.write_text(json.dumps({"Units": "1/s", "Parameters": {"r2star": {"echo_times_s": te,
                                                                                  "noise_sd_per_s": sd}}}))
        out = tmp_path / name.replace(" ", "_")
        code, _, err = _run(args + ["-o", str(out)], capsys)
        assert code == 0, err
        weights = out / "sub-01_label-CSF_probseg.nii.gz"
        got = int(np.sum(nib.load(str(weights)).get_fdata() > 0.5)) if weights.exists() else 0
        assert got == n_csf, (name, got)
        prov = json.loads((out / "sub-01_provenance-invert.json").read_text())
        assert prov["parameters"]["methods"]["reference"] == ("csf" if n_csf else "mean"), name
        assert ("was not made by qsmflow" in err) == (name == "no sidecar"), (name, err)


def test_r2star_command(tmp_path, capsys):
    te = np.array([0.004, 0.010, 0.016, 0.022, 0.028])
    r2 = np.full((10, 11, 12), 25.0)
    r2[3:6] = 40.0
    mag = 100 * np.exp(-r2[..., None] * te)
    d = tmp_path / "in"
    d.mkdir()
    m = _nii(d / "sub-02_part-mag_MEGRE.nii.gz", mag)
    mask = _nii(d / "mask.nii.gz", np.ones(r2.shape))
    out = tmp_path / "out"
    for method in ("loglinear", "arlo", "nlls"):
        code, _, err = _run(["r2star", "--mag", m, "--echo-times", ",".join(map(str, te)), "--mask", mask,
                             "--r2star", method, "-o", str(out), "--force", "-q"], capsys)
        assert code == 0, err
        est = nib.load(str(out / "sub-02_R2starmap.nii.gz")).get_fdata()
        np.testing.assert_allclose(est, r2, rtol=1e-4)
        t2 = nib.load(str(out / "sub-02_T2starmap.nii.gz")).get_fdata()
        np.testing.assert_allclose(t2, 1 / r2, rtol=1e-4)
    assert (out / "sub-02_R2starfit.nii.gz").exists() and (out / "sub-02_S0map.nii.gz").exists()
    # the sidecar records what a later `qsmflow invert --r2star` needs to trust R2* for CSF
    side = json.loads((out / "sub-02_R2starmap.json").read_text())["Parameters"]["r2star"]
    assert side["echo_times_s"] == pytest.approx(list(te)) and side["ringing_taper"] is None
    # two echoes 2.3 ms apart: fitted to ringing-damped magnitudes, which a uniform decay (nothing
    # to ring) leaves exact, and the sidecar says so
    short = np.array([0.0023, 0.0046])
    m2 = _nii(d / "sub-03_part-mag_MEGRE.nii.gz", 100 * np.exp(-25.0 * short) * np.ones(r2.shape + (1,)))
    code, _, err = _run(["r2star", "--mag", m2, "--echo-times", "0.0023,0.0046", "--mask", mask, "-o", str(out),
                         "--force", "-q"], capsys)
    assert code == 0, err
    np.testing.assert_allclose(nib.load(str(out / "sub-03_R2starmap.nii.gz")).get_fdata(), 25.0, rtol=1e-3)
    assert json.loads((out / "sub-03_R2starmap.json").read_text())["Parameters"]["r2star"]["ringing_taper"] == 0.6
    # the step between 25 and 40/s (slabs 3-5 along x) is blurred by the taper, with short echoes only
    for name, times in (("sub-04", short), ("sub-05", te)):
        mk = _nii(d / f"{name}_part-mag_MEGRE.nii.gz", 100 * np.exp(-r2[..., None] * times))
        code, _, err = _run(["r2star", "--mag", mk, "--echo-times", ",".join(map(str, times)), "--mask", mask,
                             "-o", str(out), "--force", "-q"], capsys)
        assert code == 0, err
        step = np.abs(nib.load(str(out / f"{name}_R2starmap.nii.gz")).get_fdata() - r2)[2:7].max()
        assert (step > 0.5) == (name == "sub-04"), (name, step)
    for extra, word in [(["--gradient-correction"], "--fieldmap"), (["--echo-times", "4,10,16,22,28"], "seconds")]:
        args = ["r2star", "--mag", m, "-o", str(tmp_path / "bad")]
        if "--echo-times" not in extra:
            args += ["--echo-times", ",".join(map(str, te))]
        code, _, err = _run(args + extra, capsys)
        assert code == 1 and word in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "bad").exists()


def test_command_restores_logging(files, capsys):
    """A command run in-process leaves the caller's logging as it found it (no handler on a closed stream)."""
    import logging

    pkg = logging.getLogger("qsmflow")
    before = (pkg.handlers[:], pkg.level, pkg.propagate)
    code, _, err = _run(["r2star", "--mag", files["mag4"], "--echo-times", "4,8,12", "-o", str(files["out"])],
                        capsys)
    assert code == 1 and "error" in err
    assert (pkg.handlers[:], pkg.level, pkg.propagate) == before


def test_r2star_gradient_correction_follows_the_slice_axis(tmp_path, capsys):
    """Through-slice dephasing of 2D data is divided out along --slice-axis; a 3D reading leaves it."""
    import json

    te = np.array([0.004, 0.010, 0.016, 0.022, 0.028])
    shape, g = (8, 9, 10), 15.0  # Hz per voxel along k: |g·TE| stays below the echo-shift limit 1/2
    field = np.broadcast_to(g * np.arange(shape[2], dtype=float), shape)
    mag = 100 * np.exp(-25.0 * te) * np.abs(np.sinc(g * te))
    d = tmp_path / "in"
    d.mkdir()
    m = _nii(d / "sub-03_part-mag_MEGRE.nii.gz", np.broadcast_to(mag, shape + (5,)))
    f = _nii(d / "sub-03_fieldmap.nii.gz", field)
    (d / "sub-03_fieldmap.json").write_text(json.dumps({"Units": "Hz"}))
    base = ["r2star", "--mag", m, "--echo-times", ",".join(map(str, te)), "--mask", _nii(d / "m.nii.gz",
            np.ones(shape)), "--fieldmap", f, "--gradient-correction", "--force", "-q"]
    est = {}
    for axis in ("k", "3d"):
        code, _, err = _run(base + ["--slice-axis", axis, "-o", str(tmp_path / axis)], capsys)
        assert code == 0, err
        est[axis] = nib.load(str(tmp_path / axis / "sub-03_R2starmap.nii.gz")).get_fdata()
    np.testing.assert_allclose(est["k"], 25.0, rtol=1e-3)
    assert np.median(est["3d"]) > 30  # the sinc PSF model sees no loss below the limit, so nothing is corrected


def test_an_unquoted_glob_gives_several_files_after_one_flag(tmp_path, capsys):
    """`--mag sub-01_echo-*_mag.nii` unquoted reaches qsmflow as `--mag e1 e2 e3`: the same R2*
    as the flag repeated (and as the exact 25/s written here); the files end at the next option."""
    te = (0.004, 0.010, 0.016)
    d = tmp_path / "in"
    d.mkdir()
    files = []
    for n, t in enumerate(te, start=1):
        files.append(_nii(d / f"sub-03_echo-{n}_part-mag_MEGRE.nii", np.full((6, 7, 8), 100 * np.exp(-25.0 * t))))
    common = ["--echo-times", ",".join(map(str, te)), "--mask", _nii(d / "mask.nii", np.ones((6, 7, 8))), "-q"]
    code, _, err = run_cli(["r2star", "--mag", *files, *common, "-o", str(tmp_path / "glob")], capsys)
    assert code == 0, err
    repeated = [a for f in files for a in ("--mag", f)]
    code, _, err = run_cli(["r2star", *repeated, *common, "-o", str(tmp_path / "flags")], capsys)
    assert code == 0, err
    a = nib.load(str(tmp_path / "glob" / "sub-03_R2starmap.nii.gz")).get_fdata()
    np.testing.assert_array_equal(a, nib.load(str(tmp_path / "flags" / "sub-03_R2starmap.nii.gz")).get_fdata())
    np.testing.assert_allclose(a, 25.0, rtol=1e-4)
    # a glob that also catches the JSON sidecars (quoted or not) gives the same map: they are
    # left out, and read next to their images; sidecars alone are refused
    for f in files:
        Path(f).with_suffix(".json").write_text(json.dumps({"EchoTime": te[files.index(f)]}))
    quoted = str(d / "sub-03_echo-*_part-mag_MEGRE*")
    code, _, err = run_cli(["r2star", "--mag", quoted, *common, "-o", str(tmp_path / "json")], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(a, nib.load(str(tmp_path / "json" / "sub-03_R2starmap.nii.gz")).get_fdata())
    code, _, err = run_cli(["r2star", "--mag", str(d / "*.json"), *common, "-o", str(tmp_path / "bad")], capsys)
    assert code == 1 and "gives only JSON sidecars" in err and not (tmp_path / "bad").exists()


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(files, tmp_path, capsys):
    """-o under a file (or anywhere the folder cannot be made) fails at once, in one line,
    before the mask is computed or a head simulated; nothing is left behind."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    bad = str(blocker / "out")
    for argv in (["run", "--mag", files["mag4"], "--phase", files["pha4"], *OK_TE, "-o", bad],
                 ["demo", bad], ["bids", str(tmp_path), "--out", bad]):
        code, _, err = _run(argv, capsys)
        assert code == 1 and "cannot write the output folder" in err and "Not a directory" in err, err
        assert "(-o/--out)" in err and len(err.strip().splitlines()) == 1
        assert "mask ..." not in err and "simulating" not in err
    assert blocker.read_text() == "" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "in"]


def test_errors_name_the_option_the_user_typed(files, capsys):
    """An error about echo_times, field_strength, b0_direction or phase_scale names the option
    (--echo-times, ...) on the command line; plain words stay as they are."""
    base = ["run", "--mag", files["mag4"], "--phase", files["pha4"], "-o", str(files["out"])]
    for extra, start in [(["--echo-times", "4,8,12", "--field-strength", "3"], "--echo-times must be in seconds"),
                         (["--echo-times", "0.004,0.008,0.012", "--field-strength", "30"],
                          "--field-strength must be in tesla"),
                         ([*OK_TE, "--b0-direction", "0,0,0"], "--b0-direction must not be the zero vector"),
                         ([*OK_TE, "--phase-scale", "-1"], "--phase-scale must be positive")]:
        code, _, err = _run(base + extra, capsys)
        assert code == 1 and err.strip().splitlines()[-1].startswith(f"qsmflow: error: {start}"), err
    from qsmflow.cli._common import _cli_words

    assert _cli_words("the brain mask is empty") == "the brain mask is empty"  # no command context: unchanged


def test_small_things_a_new_user_trips_over(files, tmp_path, capsys):
    """A magnitude alone points to qsmflow r2star; the gradient correction has one name in both
    commands (the other accepted as an alias); every option has help text."""
    code, _, err = _run(["run", "--mag", files["mag4"], "-o", str(tmp_path / "o")], capsys)
    assert code == 1 and "qsmflow r2star" in err
    code, _, err = _run(["r2star", "--mag", files["mag4"], *OK_TE[:2], "--r2star-gradient-correction", "-o",
                         str(tmp_path / "o")], capsys)
    assert code == 1 and "--gradient-correction needs --fieldmap" in err
    from qsmflow.cli import cli

    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"qsmflow {name} {param.opts[0]} has no help text"


def test_a_full_disk_is_said_in_words(files, capsys, monkeypatch):
    """The disk filling up mid-run: one line naming it, the file and the fix, exit 1 (not the
    operating system's bare '[Errno 28] No space left on device')."""
    import errno

    from qsmflow import io

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/sub-01_Chimap.nii.gz")

    monkeypatch.setattr(io, "load_gre", full)
    code, _, err = _run(["run", "--mag", files["mag4"], "--phase", files["pha4"], "-o", str(files["out"])] + OK_TE,
                        capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "no space left on the disk writing /data/out/sub-01_Chimap.nii.gz; free some space" in err


@pytest.mark.parametrize("message, shown", [
    ("pass --force to overwrite (force=True in Python)", "pass --force to overwrite"),
    ("use --inversion medi / tv (medi() / tv() in Python)", "use --inversion medi / tv"),
    ("pass --echo-times (comma-separated, in seconds; echo_times= in Python)",
     "pass --echo-times (comma-separated, in seconds)"),
    ("pass --phase-scale (phase_scale= in Python) with its factor (1 for radians)",
     "pass --phase-scale with its factor (1 for radians)"),
    ("the mask (a 0/1 image) is empty; give one", "the mask (a 0/1 image) is empty; give one"),
])
def test_the_command_line_drops_the_hints_for_python_callers(message, shown, caplog):
    """Messages name a keyword for Python callers beside the option; on the command line the
    hint reads as a wrong option ('--echo-times= in Python'): errors and warnings drop it, and
    nothing else."""
    import logging

    from qsmflow.cli import _common

    assert _common._drop_python_hints(message) == shown
    record = logging.LogRecord("qsmflow", logging.WARNING, __file__, 1, "%s", (message,), None)
    assert _common._without_python_hints(record) and record.getMessage() == shown
