"""Command line: every user mistake is one line on stderr, exit code 1, and no output files."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from qsmflow import cli

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


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    cap = capsys.readouterr()
    return exc.value.code, cap.out, cap.err


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
    assert "Traceback" not in err
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
