"""`qsmflow demo`: simulate a small head, reconstruct it through the files, print the accuracy."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from .. import io, phantom
from ..phantom import metrics
from . import report as report_mod
from .chain import run
from .subject import process_subject

log = logging.getLogger(__name__)

# 1.5 mm voxels over the standard 160x192x160 mm field of view: simulation and
# reconstruction take ~35 s on 2 cores, on the same head the benchmarks use at 1 mm.
DEMO_SHAPE = (107, 128, 107)
DEMO_VOXEL_MM = (1.5, 1.5, 1.5)


def run_demo(out=None, *, force: bool = False, shape=DEMO_SHAPE, voxel_size=DEMO_VOXEL_MM) -> str:
    """Simulate, write, reload, reconstruct and evaluate; returns the printed report.

    With ``out`` the simulated dataset stays in ``out/data`` and the results in
    ``out/qsmflow``; without it everything happens in a temporary folder.
    """
    t0 = time.perf_counter()
    keep = out is not None
    root = Path(out) if keep else Path(tempfile.mkdtemp(prefix="qsmflow-demo-"))
    if keep:  # refuse a folder that cannot be written, or outputs to be overwritten, before simulating
        with io.OutputSet(root, force=force) as outset:
            outset.check(["data/dataset_description.json", "qsmflow/sub-phantom_Chimap.nii.gz"])
    try:
        log.info("simulating a %s head at %s mm", "x".join(map(str, shape)), "x".join(map(str, voxel_size)))
        head = phantom.simulate_head(shape, voxel_size)
        data_dir = root / "data"
        phantom.write_phantom_dataset(data_dir, head, force=force)
        paths = phantom.phantom_paths(data_dir, n_echoes=len(head.echo_times))
        data = io.load_gre(paths["mag"], paths["phase"])
        if keep:
            result, _ = process_subject(data, root / "qsmflow", force=force)
            qc = root / "qsmflow" / f"{data.prefix}{report_mod.REPORT_SUFFIX}"
        else:
            result = run(data)
        report = metrics.format_report(metrics.evaluate(result, head))
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    where = f"\nresults in {root / 'qsmflow'}, QC report {qc}" if keep else \
        "\nthe maps were made in a temporary folder and removed; run qsmflow demo OUT to keep them and the QC report"
    return (f"qsmflow demo: simulated head {'x'.join(map(str, shape))} at {voxel_size[0]:g} mm, "
            f"{len(head.echo_times)} echoes, 3 T, SNR 100\n(errors against the phantom's ground truth; see the README)\n\n{report}\n\n"
            f"total time {time.perf_counter() - t0:.1f} s{where}")
