"""Throughput of `qsmflow bids`: a dataset processed with --jobs 1 and --jobs 2.

A BIDS dataset of 8 subjects (``--runs``), each the 1.5 mm benchmark head (107x128x107, 5
echoes, two seeds), processed by the command line from scratch into a fresh derivatives
folder per setting. Reported: wall time, runs per hour, and the speed-up of --jobs 2. A third
row runs --jobs 1 on one core (QSMFLOW_THREADS=1). Two jobs run one thread each, so they give
at most twice that row's throughput; the last line prints that bound as a speed-up over
--jobs 1, 2 x T(--jobs 1) / T(one core): the more one run gains from the second core, the
less a second job can add.

With 4 runs the start of the worker processes and the last round (one run left, one core
idle) weigh on --jobs 2; 8 runs come closer to a cohort's steady state.

    python benchmarks/batch.py      # ~8 min
"""

from __future__ import annotations

import argparse
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8, help="subjects in the dataset (default 8)")
    n_runs = ap.parse_args().runs
    tmp = Path(tempfile.mkdtemp(prefix="qsmflow-batch-"))
    try:
        root = tmp / "ds"
        heads = {seed: phantom.simulate_head((107, 128, 107), (1.5,) * 3, seed=seed) for seed in (1, 2)}
        for i in range(n_runs):
            phantom.write_phantom_dataset(tmp / f"src{i}", heads[1 + i % 2], subject=f"{i + 1:02d}")
            shutil.copytree(tmp / f"src{i}" / f"sub-{i + 1:02d}", root / f"sub-{i + 1:02d}")
        rows, walls, base = [], [], None
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
            walls.append(wall)
            label = str(jobs) + (" (one core: QSMFLOW_THREADS=1)" if threads else "")
            rows.append([label, f"{wall:.1f}", f"{n_runs * 3600 / wall:.0f}", f"{base / wall:.2f}"])
            print(" | ".join(rows[-1]), flush=True)
        print()
        print(table(["--jobs", f"wall time s ({n_runs} runs)", "runs per hour", "speed-up"], rows,
                    f"qsmflow bids, {n_runs} runs of the 1.5 mm head, 2 cores"))
        bound = 2 * walls[0] / walls[2]
        print(f"\nBound on the speed-up of --jobs 2 (two one-core jobs, no contention): 2 x {walls[0]:.1f} / "
              f"{walls[2]:.1f} = {bound:.2f}; reached {walls[0] / walls[1] / bound:.0%} of it")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
