"""Throughput of `qsmflow bids`: 4 runs with --jobs 1 and --jobs 2.

A BIDS dataset of 4 subjects, each the 1.5 mm benchmark head (107x128x107, 5 echoes, two
seeds), processed by the command line from scratch into a fresh derivatives folder per
setting. Reported: wall time, runs per hour, and the speed-up of --jobs 2. A third row runs
--jobs 1 on one core (QSMFLOW_THREADS=1): how much one run gains from the second core bounds
what a second job can add (two one-core jobs give at most 2 x that row's throughput).

    python benchmarks/batch.py      # ~4 min
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import table
from qsmflow import phantom


def main():
    tmp = Path(tempfile.mkdtemp(prefix="qsmflow-batch-"))
    try:
        root = tmp / "ds"
        for i, seed in enumerate((1, 2, 1, 2)):
            head = phantom.simulate_head((107, 128, 107), (1.5,) * 3, seed=seed)
            phantom.write_phantom_dataset(tmp / f"src{i}", head, subject=f"{i + 1:02d}")
            shutil.copytree(tmp / f"src{i}" / f"sub-{i + 1:02d}", root / f"sub-{i + 1:02d}")
        rows, base = [], None
        for jobs, threads in ((1, None), (2, None), (1, "1")):
            out = tmp / f"out{jobs}_{threads}"
            env = dict(os.environ)
            for name in ("QSMFLOW_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                env.pop(name, None)
                if threads:
                    env[name] = threads
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "qsmflow", "bids", str(root), "--out", str(out),
                                  "--jobs", str(jobs), "-q"], capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t0
            if res.returncode != 0:
                raise SystemExit(res.stdout + res.stderr)
            base = base or wall
            label = str(jobs) + (" (one core: QSMFLOW_THREADS=1)" if threads else "")
            rows.append([label, f"{wall:.1f}", f"{4 * 3600 / wall:.0f}", f"{base / wall:.2f}"])
            print(" | ".join(rows[-1]), flush=True)
        print()
        print(table(["--jobs", "wall time s (4 runs)", "runs per hour", "speed-up"], rows,
                    "qsmflow bids, 4 runs of the 1.5 mm head, 2 cores"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
