"""qsmflow bids: discovery, derivatives, resuming after a kill, failures, and a real Dask LocalCluster."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import run_cli

from qsmflow import phantom, pipeline
from qsmflow.workflows import batch

# one xdist worker for the module: the dataset is simulated once (--dist loadgroup)
pytestmark = pytest.mark.xdist_group("batch")

ECHOES = (0.004, 0.008, 0.012)
SUBJECTS, SESSIONS = ("01", "02", "03"), ("1", "2")


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """3 subjects x 2 sessions of a small simulated head (5 mm, 3 echoes), plus files to be skipped."""
    src = tmp_path_factory.mktemp("src")
    # no oversampling: the batch machinery is tested here, on any head (the inverse crime is irrelevant)
    head = phantom.simulate_head((32, 38, 32), (5.0,) * 3, seed=0, echo_times=ECHOES, oversample=1)
    phantom.write_phantom_dataset(src, head)
    anat_src = src / "sub-phantom" / "anat"
    root = tmp_path_factory.mktemp("bids")
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    for sub in SUBJECTS:
        for ses in SESSIONS:
            anat = root / f"sub-{sub}" / f"ses-{ses}" / "anat"
            anat.mkdir(parents=True)
            for f in anat_src.iterdir():
                shutil.copy(f, anat / f.name.replace("sub-phantom", f"sub-{sub}_ses-{ses}"))
    extra = root / "sub-01" / "ses-1" / "anat"
    shutil.copy(anat_src / "sub-phantom_echo-1_part-mag_MEGRE.nii.gz", extra / "sub-01_ses-1_T1w.nii.gz")
    shutil.copy(anat_src / "sub-phantom_echo-1_part-mag_MEGRE.nii.gz",
                extra / "sub-01_ses-1_acq-mag_echo-1_part-mag_T2starw.nii.gz")
    return root


def _copy(dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    return root


def test_a_series_missing_an_echo_file_fails_the_batch(dataset, tmp_path, capsys):
    """A series whose phase lacks one echo's file cannot be paired: listed with its reason as a
    magnitude-only scan is, but unlike one it is a broken dataset, so the batch does not end
    with exit code 0 (a subject's maps would be missing without a sign to a script)."""
    from qsmflow.workflows import bids

    root = _copy(dataset, tmp_path)
    (root / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_echo-3_part-phase_MEGRE.nii.gz").unlink()
    runs, skipped = batch.discover(root, participants=["01"], sessions=["1"])
    assert runs == [] and bids.broken_series(skipped) == [("sub-01/ses-1/anat/sub-01_ses-1_MEGRE",
                                                            "3 magnitude but 2 phase files")]
    assert ("sub-01/ses-1/anat/sub-01_ses-1_acq-mag_T2starw", "no part-phase files") in skipped  # not broken
    code, _, err = run_cli(["bids", str(root), "--participant-label", "01", "--session-label", "1"], capsys)
    words = "1 series could not be paired (sub-01/ses-1/anat/sub-01_ses-1_MEGRE: 3 magnitude but 2 phase files)"
    assert code == 1 and words in err, err


def test_a_complete_run_made_with_other_settings_is_not_passed_for_done(dataset, tmp_path):
    """A rerun with other options (an inversion, a B0, --swi) found the old run complete and
    skipped it, exit 0, the maps still the old options'. The completion mark records the
    settings; a rerun with others fails that run, naming them and --force; the same settings
    skip it; a mark from before the settings were recorded still counts as complete."""
    import json as _json

    from qsmflow.pipeline import Options

    root = _copy(dataset, tmp_path)
    runs, _ = batch.discover(root, participants=["01"], sessions=["1"])
    spec = runs[0]
    out = tmp_path / "out"
    first = batch.BatchConfig(out_root=str(out), options=Options(inversion="tkd"))
    mark = out / spec.subdir / f".{spec.prefix}_complete.json"
    mark.parent.mkdir(parents=True)
    mark.write_text(_json.dumps({"seconds": 1.0, "files": [], "settings": batch._settings(first)}))
    assert [st.status for st in batch.run_batch([spec], first)] == ["skipped"]
    again = batch.BatchConfig(out_root=str(out), options=Options(inversion="tv", swi=True), field_strength=7.0)
    status = batch.run_batch([spec], again)[0]
    assert status.status == "failed" and "made with other settings (field_strength, inversion, swi)" in status.message
    assert "pass --force" in status.message
    mark.write_text(_json.dumps({"seconds": 1.0, "files": []}))
    assert batch.run_batch([spec], again)[0].status == "skipped"


def test_a_run_without_a_session_beside_sessions_is_found(dataset, tmp_path):
    """sub-01/anat/ next to sub-01/ses-*/anat/ (one scan converted without a session, others
    with): its run was left out of the batch without a word; it is found, and left out only
    when sessions are asked for."""
    root = _copy(dataset, tmp_path)
    src = root / "sub-01" / "ses-1" / "anat"
    plain = root / "sub-01" / "anat"
    plain.mkdir()
    for f in src.glob("sub-01_ses-1_echo-*"):
        shutil.copy(f, plain / f.name.replace("sub-01_ses-1_", "sub-01_"))
    runs, _ = batch.discover(root, participants=["01"])
    assert sorted(r.prefix for r in runs) == ["sub-01", "sub-01_ses-1", "sub-01_ses-2"]
    assert [r.subdir for r in runs if r.prefix == "sub-01"] == ["sub-01/anat"]
    runs, _ = batch.discover(root, participants=["01"], sessions=["1"])
    assert [r.prefix for r in runs] == ["sub-01_ses-1"]


def test_discover_finds_every_run_and_says_what_it_skipped(dataset):
    runs, skipped = batch.discover(dataset)
    assert [r.prefix for r in runs] == [f"sub-{s}_ses-{t}" for s in SUBJECTS for t in SESSIONS]
    r = runs[0]
    assert r.subdir == "sub-01/ses-1/anat" and r.suffix == "MEGRE"
    assert [Path(p).name for p in r.magnitude] == [f"sub-01_ses-1_echo-{e}_part-mag_MEGRE.nii.gz" for e in (1, 2, 3)]
    assert skipped == [("sub-01/ses-1/anat/sub-01_ses-1_acq-mag_T2starw", "no part-phase files")]
    runs, _ = batch.discover(dataset, participants=["sub-02", "03"], sessions=["2"])
    assert [r.prefix for r in runs] == ["sub-02_ses-2", "sub-03_ses-2"]
    with pytest.raises(ValueError, match="07 not in"):
        batch.discover(dataset, participants=["07"])
    with pytest.raises(ValueError, match="no sub-"):
        batch.discover(dataset / "sub-01")


def test_files_are_grouped_by_folder_not_by_name(dataset, tmp_path, capsys):
    """sub-01 files lying in sub-02/ses-1/anat are neither merged with sub-01's run nor run as
    sub-02: they are listed as misplaced, and both real runs are found as before."""
    root = _copy(dataset, tmp_path)
    src, dst = root / "sub-01" / "ses-1" / "anat", root / "sub-02" / "ses-1" / "anat"
    for f in src.glob("sub-01_ses-1_echo-1_part-*_MEGRE.nii.gz"):
        shutil.copy(f, dst / f.name)
    runs, skipped = batch.discover(root)
    assert [r.prefix for r in runs] == [f"sub-{s}_ses-{t}" for s in SUBJECTS for t in SESSIONS]
    sub02 = next(r for r in runs if r.prefix == "sub-02_ses-1")
    assert all("/sub-02/" in p for p in sub02.magnitude + sub02.phase) and len(sub02.magnitude) == 3
    misplaced = [(what, why) for what, why in skipped if what.startswith("sub-02/ses-1/anat/sub-01")]
    assert len(misplaced) == 2 and all(why == "its name says sub-01 but it lies in the sub-02 folder"
                                       for _, why in misplaced)
    code, out, err = run_cli(["bids", str(root), "--dry-run"], capsys)  # both the misplaced files and the series
    assert code == 0, err                                                # without phase are listed
    assert out.count("not run, its name says sub-01") == 2 and "acq-mag_T2starw: not run, no part-phase" in out


def _marks(out):
    return sorted(out.glob("sub-*/ses-*/anat/.*_complete.json"))


def test_killed_batch_resumes_and_a_bad_run_fails_alone(dataset, tmp_path, capsys):
    root = _copy(dataset, tmp_path)
    bad = root / "sub-03" / "ses-2" / "anat" / "sub-03_ses-2_echo-2_part-phase_MEGRE.nii.gz"
    bad.write_bytes(bad.read_bytes()[:2000])  # a truncated download
    out = root / "derivatives" / "qsmflow"

    # first batch, killed once three runs are complete
    proc = subprocess.Popen([sys.executable, "-m", "qsmflow", "bids", str(root), "-q", "--inversion", "tkd",
                             "--mask-method", "threshold"],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(_marks(out)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    first = {m.name[1:].replace("_complete.json", "") for m in _marks(out)}
    assert 3 <= len(first) < 6

    # the rerun completes only what is missing; the truncated run fails alone, with its log (the
    # rerun in this process, its two jobs in processes of their own; the program ran above)
    code, stdout, err = run_cli(["bids", str(root), "--jobs", "2", "-q", "--inversion", "tkd", "--mask-method",
                                 "threshold"], capsys)
    assert code == 1, err
    lines = {ln.split()[0]: ln for ln in stdout.splitlines() if ln.startswith("sub-") and "not run" not in ln}
    assert len(lines) == 6
    # the series found but not run is in the summary too, with its reason
    assert "sub-01/ses-1/anat/sub-01_ses-1_acq-mag_T2starw  not run" in stdout and "no part-phase" in stdout
    n = {k: sum(ln.split()[1] == k for ln in lines.values()) for k in ("done", "skipped")}
    assert stdout.strip().splitlines()[-1].startswith(
        f"{n['done']} done, {n['skipped']} skipped as complete, 1 failed, 1 series not run in")
    for prefix, line in lines.items():
        expected = "failed" if prefix == "sub-03_ses-2" else "skipped" if prefix in first else "done"
        assert line.split()[1] == expected, line
    assert "truncated" in lines["sub-03_ses-2"]
    log = out / "sub-03" / "ses-2" / "anat" / "sub-03_ses-2_error.log"
    assert "truncated" in log.read_text() and "Traceback" in log.read_text()
    assert len(_marks(out)) == 5 and not list(out.rglob("*.tmp-*"))
    for prefix in lines:
        sub, ses = prefix.split("_")
        chi = out / sub / ses / "anat" / f"{prefix}_Chimap.nii.gz"
        assert chi.exists() == (prefix != "sub-03_ses-2")
        if chi.exists():
            side = json.loads(chi.with_name(f"{prefix}_Chimap.json").read_text())
            assert side["Units"] == "ppm" and side["Methods"]["inversion"] and "Parameters" in side
    # the dataset index links every finished run's QC report and shows the failure with its log
    index = (out / "index.html").read_text()
    links = [ln.split('"')[1] for ln in index.split("<a href=")[1:]]
    reports = [ln for ln in links if ln.endswith("_report.html")]
    assert len(reports) == 5 and all((out / r).exists() for r in reports)
    assert "sub-03/ses-2/anat/sub-03_ses-2_error.log" in links
    assert index.count('class="failed"') == 1 and "truncated" in index
    assert "sub-01_ses-1_acq-mag_T2starw" in index and "no part-phase files" in index and "1 not run" in index
    # qsmflow report rebuilds the reports and the index from the derivative alone (in this
    # process: the command line's own entry point ran as a program above)
    (out / "index.html").unlink()
    code, _, err = run_cli(["report", str(out), "-q"], capsys)
    assert code == 0, err
    index = (out / "index.html").read_text()
    assert index.count("_report.html") == 5 and index.count('class="failed"') == 1 and "truncated" in index
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "qsmflow"

    # a third run has nothing left to do but the broken run; with other options than the runs
    # were made with, each complete run would fail instead, naming them
    code, stdout, err = run_cli(["bids", str(root), "--dry-run", "--inversion", "tkd", "--mask-method", "threshold"],
                                capsys)
    assert code == 0 and stdout.count("would be skipped") == 5, err
    code, stdout, err = run_cli(["bids", str(root), "--dry-run"], capsys)
    assert code == 0 and stdout.count("complete with other settings (inversion, mask): would fail") == 5, err


def _maps(out):
    return {p.relative_to(out): np.asarray(nib.load(str(p)).dataobj) for p in sorted(out.rglob("*.nii.gz"))}


@pytest.fixture
def restored_environ():
    """Dask's nannies write MALLOC_TRIM_THRESHOLD_ and thread limits into this process's
    environment; later subprocesses would inherit them (glibc then maps and unmaps every
    large array: the CLI runs twice as slowly)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_local_cluster_gives_the_local_outputs(dataset, tmp_path, restored_environ):
    distributed = pytest.importorskip("distributed")
    runs, _ = batch.discover(dataset, participants=["01", "02"], sessions=["1"])
    fast = pipeline.Options(inversion="tkd", mask="threshold")  # the batch machinery is tested here
    local = batch.BatchConfig(out_root=str(tmp_path / "local"), options=fast)
    assert [s.status for s in batch.run_batch(runs, local)] == ["done", "done"]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        remote = batch.BatchConfig(out_root=str(tmp_path / "dask"), options=fast)
        statuses = batch.run_batch(runs, remote, scheduler=cluster.scheduler_address)
        assert [s.status for s in statuses] == ["done", "done"], [s.message for s in statuses]
        again = batch.run_batch(runs, remote, scheduler=cluster.scheduler_address)
        assert [s.status for s in again] == ["skipped", "skipped"]
    a, b = _maps(tmp_path / "local"), _maps(tmp_path / "dask")
    assert a.keys() == b.keys() and len(a) >= 2 * 8
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=str(name))


def test_scheduler_unreachable_is_one_line(dataset, tmp_path, capsys, monkeypatch):
    from qsmflow import cli

    monkeypatch.setattr(batch, "DASK_CONNECT_TIMEOUT_S", 1)
    with pytest.raises(SystemExit) as exc:
        cli.main(["bids", str(dataset), "--out", str(tmp_path / "o"), "--participant-label", "01",
                  "--session-label", "1", "--scheduler", "tcp://127.0.0.1:9", "-q"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "skipped" not in ln]
    assert exc.value.code == 1 and len(err) == 1 and "cannot reach the Dask scheduler" in err[0], err
    assert not (tmp_path / "o").exists()


def test_bids_apps_call_form(dataset, tmp_path, capsys):
    """qsmflow bids BIDS_DIR OUTPUT_DIR participant --participant-label 02 03: the BIDS Apps
    call, labels several after one flag; only the participant level exists."""
    out = tmp_path / "derivs"
    code, stdout, err = run_cli([str(a) for a in ("bids", dataset, out, "participant", "--participant-label", "02",
                                                  "sub-03", "--session-label", "2", "--dry-run")], capsys)
    assert code == 0, err
    listed = [ln.split()[0] for ln in stdout.splitlines() if ln.startswith("sub-") and "not run" not in ln]
    assert listed == ["sub-02/ses-2/anat/sub-02_ses-2", "sub-03/ses-2/anat/sub-03_ses-2"]
    assert f"outputs would go to {out}" in stdout
    code, _, err = run_cli(["bids", str(dataset), str(out), "group"], capsys)
    assert code == 1 and "only the 'participant' level" in err
    code, _, err = run_cli(["bids", str(dataset), str(out), "participant", "--out", str(tmp_path / "other")], capsys)
    assert code == 1 and "differ" in err


def test_a_failed_run_names_the_fix_bids_offers(tmp_path):
    """qsmflow bids has no --echo-times: a run without EchoTime is told to fix its sidecars (the
    loader's own message, translated)."""
    from qsmflow import io
    from qsmflow.workflows import batch

    vol = np.ones((4, 4, 4, 2), np.float32)
    for part in ("mag", "phase"):
        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / f"sub-01_part-{part}_MEGRE.nii.gz"))
    with pytest.raises(ValueError) as err:
        io.load_gre([str(tmp_path / "sub-01_part-mag_MEGRE.nii.gz")], [str(tmp_path / "sub-01_part-phase_MEGRE.nii.gz")],
                    field_strength=3)
    assert "--echo-times" in str(err.value)
    out = batch._bids_words(str(err.value))
    assert "--echo-times" not in out and out.endswith("add EchoTime (in seconds) to the run's JSON sidecars, as BIDS "
                                                      "requires")
    assert batch._bids_words("the brain mask is empty") == "the brain mask is empty"
