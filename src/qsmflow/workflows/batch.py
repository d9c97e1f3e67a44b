"""A BIDS dataset through the pipeline: one job per run, locally or on a Dask cluster.

:func:`discover` (from :mod:`.bids`) finds every ``sub-*/[ses-*/]anat/*_part-{mag,phase}_<suffix>``
series and says what it skipped and why. :func:`process_run` runs one of
them into ``<out>/sub-*/[ses-*/]anat/`` and marks it complete last, atomically; a failure
leaves its own ``<prefix>_error.log`` and a status, never an exception. :func:`run_batch`
skips complete runs and sends the rest to local worker processes (capped by memory,
threads shared out) or, given a scheduler address, to an existing Dask cluster.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import traceback
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from .. import __version__, io
from .._shared import allocator
from ..kernels import THREADS_ENV
from .bids import SUFFIXES, RunSpec, discover
from .options import Options
from .outputs import read_provenance
from .subject import process_subject

log = logging.getLogger(__name__)

__all__ = ["SUFFIXES", "BatchConfig", "RunSpec", "RunStatus", "discover", "estimate_memory", "process_run",
           "run_batch", "write_dataset_description"]

# Peak memory of one run, bytes = base + voxels * (per voxel + per voxel and echo): measured
# 252 MB at 80x96x80x5 and 476 MB at 107x128x107x5 (qsmflow run, /usr/bin/time), i.e. about
# 90 MB + 260 B per voxel; since freed memory is kept for reuse (_shared/allocator.py) the
# 1 mm head (160x192x160x5) peaks at 1.84 GB instead of 1.45 (x1.27). These constants give
# 2.9 GB there: a 1.6x margin.
_MEM_BASE = 200e6
_MEM_PER_VOXEL = 300.0
_MEM_PER_VOXEL_ECHO = 50.0
# share of the available memory the jobs may plan to use
_MEM_SHARE = 0.8

#: Seconds to wait for a Dask scheduler before giving up.
DASK_CONNECT_TIMEOUT_S = 15

_THREAD_ENVS = (THREADS_ENV, "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class RunStatus:
    """What became of one run: ``done``, ``skipped`` (already complete) or ``failed``."""

    prefix: str
    status: str
    seconds: float = 0.0
    message: str = ""
    error_log: str | None = None


@dataclass
class BatchConfig:
    """Everything a job needs besides its run (picklable, sent to every worker)."""

    out_root: str
    options: Options = field(default_factory=Options)
    field_strength: float | None = None
    phase_scale: float | None = None
    b0_direction: tuple | None = None
    slice_axis: str | None = None  # "i"/"j"/"k"/"3d" overrides the sidecars
    force: bool = False
    threads: int | None = None  # FFT/BLAS threads per job; None: leave as is
    report: bool = True  # write each run's HTML QC report
    command_line: list = field(default_factory=list)


# ----------------------------------------------------------------------------- discovery


def _mark_path(out_root, spec: RunSpec) -> Path:
    return Path(out_root) / spec.subdir / f".{spec.prefix}_complete.json"


def _settings(config: "BatchConfig") -> dict:
    """What a run's maps depend on besides its files: the options and the overrides, as JSON
    values (written into the completion mark, compared on a rerun)."""
    chosen = {"options": dataclasses.asdict(config.options), "field_strength": config.field_strength,
              "phase_scale": config.phase_scale, "b0_direction": config.b0_direction,
              "slice_axis": config.slice_axis, "report": config.report}
    return json.loads(json.dumps(chosen, default=str, sort_keys=True))


def changed_settings(out_root, spec: RunSpec, config: "BatchConfig") -> list[str]:
    """The settings (option names) a complete run's mark records other than ``config``'s: a
    rerun with other options must not pass for done (empty for marks written before the
    settings were recorded)."""
    try:
        recorded = json.loads(_mark_path(out_root, spec).read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    now = _settings(config)
    diff = [k for k in now if k != "options" and recorded.get(k) != now[k]]
    old, new = recorded.get("options", {}), now["options"]
    return diff + [k for k in new if old.get(k) != new[k]]


def _skip_or_refuse(config: "BatchConfig", spec: RunSpec) -> RunStatus:
    """The status of a complete run: skipped, or failed when it was made with other settings."""
    diff = changed_settings(config.out_root, spec, config)
    if diff:
        return RunStatus(spec.prefix, "failed", 0.0, f"complete, but made with other settings ({', '.join(diff)}); "
                                                     "pass --force to make its maps again with these")
    return RunStatus(spec.prefix, "skipped", 0.0, "complete")


def is_complete(out_root, spec: RunSpec) -> bool:
    """True when the run's completion mark exists and every file it lists is there."""
    mark = _mark_path(out_root, spec)
    try:
        files = json.loads(mark.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all((mark.parent / f).exists() for f in files)


def _atomic_text(path: Path, text: str) -> None:
    with io.OutputSet(path.parent, force=True) as out:
        out.text(path.name, text)


def recorded_runs(out_root) -> list[tuple[str, RunStatus]]:
    """The runs a derivative folder holds, from what :func:`process_run` left there.

    A run with a ``_provenance.json`` is done (its time from the completion mark, else
    the provenance's timings); an ``_error.log`` without outputs is a failure, with the
    log's error line. Returns (subdir relative to ``out_root``, status) pairs, sorted.
    """
    root = Path(out_root)
    runs = {}
    for prov in sorted(root.rglob("*_provenance.json")):
        prefix = prov.name[: -len("_provenance.json")]
        try:
            seconds = float(json.loads((prov.parent / f".{prefix}_complete.json").read_text())["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            try:
                seconds = sum(read_provenance(prov).get("timings_s", {}).values())
            except ValueError as exc:  # one run's broken record does not hide the others
                runs[prov.parent / prefix] = RunStatus(prefix, "failed", 0.0, str(exc), str(prov))
                continue
        runs[prov.parent / prefix] = RunStatus(prefix, "done", seconds)
    for log_path in sorted(root.rglob("*_error.log")):
        prefix = log_path.name[: -len("_error.log")]
        if log_path.parent / prefix not in runs:
            lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
            msg = next((ln[len("error: "):] for ln in lines if ln.startswith("error: ")), "failed")
            runs[log_path.parent / prefix] = RunStatus(prefix, "failed", 0.0, msg, str(log_path))
    return [(key.parent.relative_to(root).as_posix(), st) for key, st in sorted(runs.items())]


def process_run(spec: RunSpec, config: BatchConfig) -> RunStatus:
    """Run the pipeline on one acquisition; never raises for a failed run (see the status)."""
    t0 = time.perf_counter()
    # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which maps and unmaps
    # every array over 128 kB at each use (a run took twice as long); set glibc's thresholds
    # as the command line does
    allocator.keep_freed_memory()
    out_dir = Path(config.out_root) / spec.subdir
    if not config.force and is_complete(config.out_root, spec):
        return _skip_or_refuse(config, spec)
    if config.threads:
        for name in _THREAD_ENVS:
            os.environ[name] = str(config.threads)
    err_log = out_dir / f"{spec.prefix}_error.log"
    for stale in out_dir.glob(f".{spec.prefix}_*.tmp-*"):  # left by a killed run
        stale.unlink(missing_ok=True)
    try:
        data = io.load_gre(list(spec.magnitude), list(spec.phase), field_strength=config.field_strength,
                           phase_scale=config.phase_scale, b0_direction=config.b0_direction, prefix=spec.prefix)
        if config.slice_axis is not None:
            data.override_slice_axis(config.slice_axis, "--slice-axis")
        _, written = process_subject(data, out_dir, config.options, force=True, command_line=config.command_line,
                                     extra_provenance={"bids_run": spec.prefix}, report=config.report)
        seconds = time.perf_counter() - t0
        err_log.unlink(missing_ok=True)
        _atomic_text(_mark_path(config.out_root, spec), io.strict_json(
            {"qsmflow_version": __version__, "seconds": round(seconds, 2), "files": sorted(p.name for p in written),
             "settings": _settings(config)}))
        return RunStatus(spec.prefix, "done", seconds)
    except Exception as exc:  # one bad run must not stop the batch
        seconds = time.perf_counter() - t0
        text = str(exc).strip()
        msg = _bids_words(text.splitlines()[0]) if text else type(exc).__name__
        if not isinstance(exc, (ValueError, TypeError, OSError)):
            msg = f"internal error: {type(exc).__name__}: {msg}"
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            _atomic_text(err_log, f"qsmflow {__version__}: {spec.prefix} failed after {seconds:.1f} s\n"
                         f"error: {msg}\n\nmagnitude: {list(spec.magnitude)}\nphase: {list(spec.phase)}\n\n"
                         + "".join(traceback.format_exception(exc)))
            where = str(err_log)
        except OSError:
            where = None
        return RunStatus(spec.prefix, "failed", seconds, msg, where)


def _bids_words(msg: str) -> str:
    """A loading error's fix in the words of ``qsmflow bids``: it has no --echo-times (a
    dataset's echo times are in its sidecars)."""
    return msg.replace(io.ECHO_TIMES_FIX, "add EchoTime (in seconds) to the run's JSON sidecars, as BIDS requires")


# ----------------------------------------------------------------------------- many runs


def estimate_memory(spec: RunSpec) -> float:
    """Peak memory (bytes) one run is planned with, from its image headers."""
    x, y, z, n_e = io.series_shape(spec.magnitude)
    return _MEM_BASE + x * y * z * (_MEM_PER_VOXEL + _MEM_PER_VOXEL_ECHO * n_e)


def _available_memory() -> float:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def plan_jobs(specs: list[RunSpec], jobs: int) -> int:
    """Jobs to run at once: at most ``jobs``, the run count, and what the memory holds."""
    if not specs:
        return 1
    try:
        need = max(estimate_memory(s) for s in specs)
    except ValueError:  # an unreadable header: that run will fail with its own message
        need = _MEM_BASE
    fit = max(1, int(_MEM_SHARE * _available_memory() // need))
    n = max(1, min(jobs, len(specs), fit))
    if n < min(jobs, len(specs)):
        log.warning("--jobs %d lowered to %d: each run needs up to %.1f GB and %.1f GB of memory is available",
                    jobs, n, need / 1e9, _available_memory() / 1e9)
    return n


def write_dataset_description(out_root, bids_dir) -> None:
    """The derivative dataset's ``dataset_description.json`` (BIDS), written atomically."""
    desc = {"Name": "qsmflow outputs", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "qsmflow", "Version": __version__,
                             "CodeURL": "https://pypi.org/project/qsmflow/"}],
            "SourceDatasets": [{"URL": Path(bids_dir).resolve().as_uri()}]}
    with io.OutputSet(out_root, force=True) as out:
        out.json("dataset_description.json", desc)


def run_batch(specs: list[RunSpec], config: BatchConfig, *, jobs: int = 1, scheduler: str | None = None,
              on_result=None) -> list[RunStatus]:
    """Process ``specs``: complete runs skipped, the rest in ``jobs`` local processes or on a Dask cluster.

    ``on_result(status)`` is called in this process as each run ends. Returns the
    statuses in the order of ``specs``.
    """
    results: dict[str, RunStatus] = {}

    def finished(status: RunStatus) -> None:
        results[status.prefix] = status
        if on_result is not None:
            on_result(status)

    todo = []
    for spec in specs:
        if not config.force and is_complete(config.out_root, spec):
            finished(_skip_or_refuse(config, spec))
        else:
            todo.append(spec)
    if todo and scheduler:
        _run_dask(todo, config, scheduler, finished)
    elif todo:
        _run_local(todo, config, plan_jobs(todo, jobs), finished)
    return [results[s.prefix] for s in specs]


def _run_local(todo, config: BatchConfig, n_jobs: int, finished) -> None:
    if n_jobs == 1:
        for spec in todo:
            finished(process_run(spec, config))
        return
    cores = os.cpu_count() or 1
    per_job = max(1, cores // n_jobs)
    log.info("%d runs on %d worker processes, %d thread(s) each", len(todo), n_jobs, per_job)
    config = BatchConfig(**{**config.__dict__, "threads": config.threads or per_job})
    saved = {k: os.environ.get(k) for k in _THREAD_ENVS}
    os.environ.update({k: str(config.threads) for k in _THREAD_ENVS})  # inherited by the spawned workers
    try:
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(process_run, spec, config): spec for spec in todo}
            for fut in as_completed(futures):
                spec = futures[fut]
                try:
                    finished(fut.result())
                except BrokenProcessPool:
                    finished(RunStatus(spec.prefix, "failed", 0.0, "its worker process died (out of memory?)"))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_dask(todo, config: BatchConfig, address: str, finished) -> None:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise ValueError("--scheduler needs Dask's distributed scheduler: pip install 'qsmflow[dask]'") from None
    try:
        client = Client(address, timeout=f"{DASK_CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    with client:
        log.info("%d runs sent to the Dask cluster at %s (%d workers)", len(todo), address,
                 len(client.scheduler_info().get("workers", {})))
        futures = [client.submit(process_run, spec, config, key=f"qsmflow-{spec.prefix}-{uuid.uuid4().hex[:6]}",
                                 pure=False) for spec in todo]
        by_key = {f.key: spec for f, spec in zip(futures, todo)}
        for fut in dask_completed(futures):
            try:
                finished(fut.result())
            except Exception as exc:  # the worker itself was lost
                finished(RunStatus(by_key[fut.key].prefix, "failed", 0.0, f"Dask task failed: {exc}"))
