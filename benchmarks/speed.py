"""Speed and memory of a whole `qsmflow run` on the benchmark head, and how they grow with size.

The benchmark head (seed 1, 5 echoes 4-28 ms, 3 T, SNR 100, 32-channel receive profile) over
the same 160x192x160 mm field of view at 0.5x, 1x and 2x the voxel count of the 1 mm grid
(voxels of 1.26, 1 and 0.79 mm), written as a BIDS dataset (one gzipped NIfTI per echo and
part) and processed by the command line in this process, exactly as a user runs it: reading,
every stage, writing the maps and the QC report. Printed per size: each stage's time (from
the run's provenance), reading + writing + report (the rest of the wall time; split in a
second table into reading, writing the maps, the report, the chain's work outside its timed
stages (input checks, the image noise level, the χ sign check) and the command line's rest),
the wall time and the peak resident memory; then the growth exponent of the wall time between 0.5x
and 2x (time ~ N^k). Throughput of `qsmflow bids` with --jobs 1 and 2 is benchmarks/batch.py.

With ``--fft scipy pyfftw`` each size is run once with each FFT library (``$QSMFLOW_FFT``:
scipy's pocketfft, or FFTW through the optional ``qsmflow[fftw]`` extra), one after the
other on the same dataset, so that they can be compared side by side.

    python benchmarks/speed.py                 # the three sizes (~10 min, 6 GB at 2x)
    python benchmarks/speed.py --scales 1      # the 1 mm head only (~2 min)
    python benchmarks/speed.py --scales 1 --fft scipy pyfftw pyfftw scipy   # FFT libraries, alternated
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from _bench import PeakMemory, table
from qsmflow import cli, io, kernels, phantom
from qsmflow.workflows import report as report_mod
from qsmflow.workflows import subject

FOV_MM = np.array([160.0, 192.0, 160.0])
STAGES = ("mask", "phase_offset", "unwrap", "field_fit", "r2star", "bgremove", "inversion", "chi_sd", "reference")


class _Clock:
    """Wall time of the run's reading, chain, writing and report, by wrapping the functions
    `qsmflow run` calls (restored on exit)."""

    TARGETS = {"read": (io, "load_gre"), "chain": (subject, "run"), "write": (subject, "write_outputs"),
               "report": (report_mod, "write_report")}

    def __enter__(self):
        self.seconds, self._saved = {}, {}
        for part, (module, name) in self.TARGETS.items():
            func = getattr(module, name)
            self._saved[part] = func
            setattr(module, name, self._timed(part, func))
        return self

    def _timed(self, part, func):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - t0
        return timed

    def __exit__(self, *exc):
        for part, (module, name) in self.TARGETS.items():
            setattr(module, name, self._saved[part])
        return False


def simulate(scale: float, tmp: Path) -> tuple[Path, tuple, float, float]:
    vs = 1.0 / scale ** (1 / 3)
    shape = tuple(int(round(n / vs)) for n in FOV_MM)
    t0 = time.perf_counter()
    head = phantom.simulate_head(shape, (vs,) * 3, seed=1)
    src = tmp / f"scale{scale:g}"
    phantom.write_phantom_dataset(src, head)
    return src, shape, vs, time.perf_counter() - t0


def run_size(scale: float, src: Path, shape, vs: float, simulated: float, mem: PeakMemory) -> dict:
    anat, out = src / "sub-phantom" / "anat", src.parent / f"out{scale:g}"
    shutil.rmtree(out, ignore_errors=True)
    argv = ["run", "--mag", str(anat / "sub-phantom_echo-*_part-mag_MEGRE.nii.gz"),
            "--phase", str(anat / "sub-phantom_echo-*_part-phase_MEGRE.nii.gz"), "-o", str(out), "-q"]
    mem.mark()
    t1 = time.perf_counter()
    with _Clock() as clock:
        try:
            cli.main(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise RuntimeError(f"qsmflow run failed with exit code {exc.code}") from None
    wall = time.perf_counter() - t1
    peak = mem.peak() / 2**30
    timings = json.loads((out / "sub-phantom_provenance.json").read_text())["timings_s"]
    return {"scale": scale, "fft": kernels.fft_library(), "voxel_mm": vs, "shape": shape, "voxels": int(np.prod(shape)), "wall_s": wall,
            "peak_gb": peak, "stages": {s: float(timings.get(s, 0.0)) for s in STAGES},
            "io_report_s": wall - sum(float(v) for v in timings.values()), "simulated_s": simulated,
            "parts_s": {"read": clock.seconds.get("read", 0.0), "write": clock.seconds.get("write", 0.0),
                        "report": clock.seconds.get("report", 0.0),
                        "chain, outside the stages": clock.seconds.get("chain", 0.0) - sum(map(float, timings.values())),
                        "command line, rest": wall - sum(clock.seconds.values())}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", nargs="*", type=float, default=[0.5, 1.0, 2.0],
                    help="voxel counts relative to the 1 mm grid")
    ap.add_argument("--fft", nargs="*", choices=kernels.FFT_LIBRARIES[1:], default=[],
                    help="FFT libraries to run each size with, in this order (default: $QSMFLOW_FFT's choice)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="qsmflow-speed-"))
    rows, fft_env = [], os.environ.get(kernels.FFT_ENV)
    try:
        with PeakMemory() as mem:
            for scale in args.scales:
                os.environ[kernels.FFT_ENV] = "scipy"  # the simulation leaves no FFTW plans behind
                src, shape, vs, simulated = simulate(scale, tmp)
                if fft_env is None:
                    os.environ.pop(kernels.FFT_ENV)
                else:
                    os.environ[kernels.FFT_ENV] = fft_env
                for library in args.fft or [None]:
                    if library:
                        os.environ[kernels.FFT_ENV] = library
                    r = run_size(scale, src, shape, vs, simulated, mem)
                    rows.append(r)
                    print(f"{scale:g}x, {r['fft']}: {r['wall_s']:.1f} s, {r['peak_gb']:.2f} GB", flush=True)
                shutil.rmtree(src, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    header = ["voxels", "grid", *STAGES, "read + write + report", "wall s", "peak GB"]
    label = len({r["fft"] for r in rows}) > 1
    body = [[f"{r['scale']:g}x ({r['voxel_mm']:.2f} mm)" + (f", {r['fft'].split()[0]}" if label else ""),
             "x".join(map(str, r["shape"])),
             *[f"{r['stages'][s]:.1f}" for s in STAGES], f"{r['io_report_s']:.1f}", f"**{r['wall_s']:.1f}**",
             f"{r['peak_gb']:.2f}"] for r in rows]
    print(table(header, body, title="qsmflow run, whole command, 2 cores"))
    parts = list(rows[0]["parts_s"]) if rows else []
    print(table(["voxels", *parts], [[f"{r['scale']:g}x" + (f", {r['fft'].split()[0]}" if label else ""),
                                      *[f"{r['parts_s'][k]:.2f}" for k in parts]] for r in rows],
                title="read + write + report, split (s): the chain's own checks and noise level are "
                      "'chain, outside the stages'"))
    by = {r["scale"]: r for r in rows}
    if 0.5 in by and 2.0 in by and not label:
        k = np.log(by[2.0]["wall_s"] / by[0.5]["wall_s"]) / np.log(by[2.0]["voxels"] / by[0.5]["voxels"])
        print(f"\ngrowth exponent of the wall time between 0.5x and 2x the voxels: {k:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
