"""The examples keep working."""

import runpy
import shutil
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_python_example_runs_fast(capsys):
    mod = runpy.run_path(str(EXAMPLES / "simulate_and_reconstruct.py"), run_name="example")
    scores = mod["main"](fast=True)
    assert "chi NRMSE" in capsys.readouterr().out
    assert scores["mask_dice"] > 0.9 and scores["chi_nrmse"] < 90


@pytest.mark.skipif(shutil.which("qsmflow") is None or shutil.which("bash") is None, reason="needs the installed CLI")
def test_shell_example_processes_a_simulated_subject(tmp_path, simulated_bids):
    subprocess.run(["bash", str(EXAMPLES / "run_subject.sh"), str(simulated_bids), "phantom", str(tmp_path / "out")],
                   check=True, capture_output=True)
    assert (tmp_path / "out" / "sub-phantom_Chimap.nii.gz").exists()
