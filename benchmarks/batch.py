"""Throughput of `qsmflow bids`: 4 runs with --jobs 1 and --jobs 2.

A BIDS dataset of 4 subjects, each the 1.5 mm benchmark head (107x128x107, 5 echoes, two
seeds), processed by the command line from scratch into a fresh derivatives folder per
setting. Reported: wall time, runs per hour, and the speed-up of --jobs 2.

    python benchmarks/batch.py      # ~4 min
"""

from __future__ import annotations

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
        for jobs in (1, 2):
            out = tmp / f"out{jobs}"
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "qsmflow", "bids", str(root), "--out", str(out),
                                  "--jobs", str(jobs), "-q"], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if res.returncode != 0:
                raise SystemExit(res.stdout + res.stderr)
            base = base or wall
            rows.append([str(jobs), f"{wall:.1f}", f"{4 * 3600 / wall:.0f}", f"{base / wall:.2f}"])
            print(" | ".join(rows[-1]), flush=True)
        print()
        print(table(["--jobs", "wall time s (4 runs)", "runs per hour", "speed-up"], rows,
                    "qsmflow bids, 4 runs of the 1.5 mm head, 2 cores"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
