"""QC report: how long writing it adds to a run, on the 1 mm benchmark head.

Runs the default chain on the 1 mm head (160x192x160, 5 echoes, SNR 100), writes its outputs,
then times ``report.write_report`` (reading the maps back, drawing every figure, encoding the
PNGs) three times, against the run's own time.

    python benchmarks/report.py     # ~2 min
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from _bench import table
from qsmflow import io, phantom, pipeline
from qsmflow.workflows import report


def main():
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    rows = []
    for name, kw in {"1 mm axial": {}, "1 mm oblique 20°": dict(b0_direction=phantom.oblique_direction(20))}.items():
        head = phantom.simulate_head((160, 192, 160), (1.0,) * 3, seed=0, snr=100.0, **kw)
        with tempfile.TemporaryDirectory() as tmp:
            phantom.write_phantom_dataset(tmp, head)
            paths = phantom.phantom_paths(tmp, n_echoes=len(head.echo_times))
            data = io.load_gre(paths["mag"], paths["phase"])
            t0 = time.perf_counter()
            result = pipeline.run(data)
            pipeline.write_outputs(result, data, Path(tmp) / "out")
            t_run = time.perf_counter() - t0
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                path = report.write_report(Path(tmp) / "out", data.prefix)
                times.append(time.perf_counter() - t0)
            size = path.stat().st_size / 1e6
        rows.append([name, f"{t_run:.1f}", f"{min(times):.2f}", f"{max(times):.2f}", f"{size:.1f}",
                     f"{100 * min(times) / t_run:.1f}"])
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(table(["head", "run + write s", "report s (best)", "report s (worst)", "report MB", "% of the run"], rows,
                "QC report time on the 1 mm head"))


if __name__ == "__main__":
    main()
