"""Accuracy, runtime and peak memory of the default chain on the benchmark head.

Simulates the head phantom (1 mm, 160x192x160, 5 echoes 4-28 ms, 3 T) in three variants —
axial SNR 100, a 20° oblique slab at SNR 100, and axial SNR 40 — runs `qsmflow.pipeline.run`
on each and prints per-stage metrics against the ground truth plus time and peak RSS per stage.

    python benchmarks/accuracy.py                 # full size (a few minutes)
    python benchmarks/accuracy.py --voxel 2       # 2 mm quick look
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from _bench import PeakMemory, StageMeter, table
from qsmflow import phantom, pipeline
from qsmflow.phantom import metrics
from qsmflow.io import GreInput

VARIANTS = {
    "axial SNR100": dict(snr=100.0, b0_direction=(0.0, 0.0, 1.0)),
    "oblique 20° SNR100": dict(snr=100.0, b0_direction=tuple(phantom.oblique_direction(20.0))),
    "axial SNR40": dict(snr=40.0, b0_direction=(0.0, 0.0, 1.0)),
}


def run_variant(name, kw, shape, vs, options, mem):
    t0 = time.perf_counter()
    mem.mark()
    head = phantom.simulate_head(shape, vs, seed=1, **kw)
    sim = (time.perf_counter() - t0, mem.peak() / 2**30)
    data = GreInput.from_arrays(head.magnitude, head.phase, head.echo_times, head.field_strength,
                                affine=head.affine, b0_direction=head.b0_direction, prefix="bench")
    meter = StageMeter(mem)
    t1 = time.perf_counter()
    result = pipeline.run(data, options, progress=meter)
    total = time.perf_counter() - t1
    scores = metrics.evaluate(result, head)
    return scores, meter.rows, total, sim


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxel", type=float, default=1.0, help="voxel size (mm); the FOV stays 160x192x160 mm")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="subset of: " + ", ".join(VARIANTS))
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    shape = tuple(int(round(n / args.voxel)) for n in (160, 192, 160))
    vs = (args.voxel,) * 3
    options = pipeline.Options()
    acc_rows, stage_rows = [], []
    with PeakMemory() as mem:
        for name in args.variants:
            scores, stages, total, sim = run_variant(name, VARIANTS[name], shape, vs, options, mem)
            acc_rows.append([
                name, f"{scores['mask_dice']:.3f}", f"{100 * scores['mask_coverage']:.1f}",
                f"{100 * scores['mask_outside']:.1f}", f"{scores['total_field_error_pct']:.1f}",
                f"{scores['local_field_nrmse']:.1f}", f"{scores['chi_nrmse']:.1f}", f"{scores['chi_hfen']:.1f}",
                f"{scores['deep_grey_slope']:.2f}", f"{scores.get('r2star_max_error_pct', float('nan')):.1f}",
            ])
            for stage, (t, gb) in stages.items():
                stage_rows.append([name, stage, f"{t:.1f}", f"{gb:.2f}"])
            stage_rows.append([name, "**whole chain**", f"{total:.1f}", f"{max(g for _, g in stages.values()):.2f}"])
            stage_rows.append([name, "(simulation)", f"{sim[0]:.1f}", f"{sim[1]:.2f}"])
            dg = ", ".join(f"{k} {a:+.3f}/{b:+.3f}" for k, (a, b) in scores["deep_grey"].items())
            print(f"{name}: deep-grey chi est/true (ppm): {dg}", flush=True)
            if "r2star_deep_grey" in scores:
                r2 = ", ".join(f"{k} {a:.1f}/{b:.1f}" for k, (a, b) in scores["r2star_deep_grey"].items())
                print(f"{name}: deep-grey R2* est/true (1/s): {r2}", flush=True)
    print()
    print(table(["variant", "mask Dice", "brain covered %", "mask outside brain %", "total-field err %",
                 "local-field NRMSE %", "χ NRMSE %", "χ HFEN %", "deep-grey slope", "R2* deep-grey max err %"],
                acc_rows, f"Accuracy, {'x'.join(map(str, shape))} at {args.voxel:g} mm, methods: "
                          f"{', '.join(f'{k}={getattr(options, k)}' for k in pipeline.STAGES)}"))
    print()
    print(table(["variant", "stage", "time s", "peak RSS GB"], stage_rows, "Time and peak memory per stage (2 cores)"))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
