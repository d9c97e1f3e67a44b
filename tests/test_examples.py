"""The examples keep working."""

import runpy
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import printed_accuracy

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# the head simulated here (32x38x32, 5 mm, seed 0) is the small demo's and simulated_bids': in one
# xdist group with their tests, it reuses the anatomy painted for the first (phantom.simulate._PAINTED)
@pytest.mark.xdist_group("demo_head")
def test_python_example_prints_its_accuracy(capsys):
    mod = runpy.run_path(str(EXAMPLES / "simulate_and_reconstruct.py"), run_name="example")
    scores = mod["main"](5.0)  # a 32x38x32 head: the example's code path, in seconds
    printed = printed_accuracy(capsys.readouterr().out)
    for key, value in printed.items():  # what it prints is what it measured
        assert value == pytest.approx(scores[key], abs=0.006 if key == "mask_dice" else 0.06), key
    # at 5 mm the partial-volume floor keeps the χ NRMSE high (85 % measured); the deep-grey
    # contrast and the mask must still be right: a wrong sign or B0 gives a negative slope
    assert printed["mask_dice"] > 0.9 and printed["chi_nrmse"] < 95
    assert 0.85 <= printed["deep_grey_slope"] <= 1.15 and printed["r2star_max_error_pct"] < 40


@pytest.mark.xdist_group("demo_head")
@pytest.mark.skipif(shutil.which("qsmflow") is None or shutil.which("bash") is None, reason="needs the installed CLI")
def test_shell_example_processes_a_simulated_subject(tmp_path, simulated_bids):
    subprocess.run(["bash", str(EXAMPLES / "run_subject.sh"), str(simulated_bids), "phantom", str(tmp_path / "out")],
                   check=True, capture_output=True)
    assert (tmp_path / "out" / "sub-phantom_Chimap.nii.gz").exists()
