"""Field mapping and masking: accuracy per method on the benchmark head and on real data.

For the benchmark head (1 mm, 160x192x160, 5 echoes 4-28 ms, 3 T; axial and 20° oblique,
SNR 100 and 40, plus a noise-free axial head that shows the acquisition's own floor):

- mask: % of the true brain covered, % of the mask in skull/scalp/eyes/air;
- total-field error: RMS of the demeaned error (true brain ∩ mask) over the RMS of the true
  local field, against the block-averaged true field. The noise-free head gives the floor that
  no method can go below: the scanner samples the complex signal through a sinc PSF (k-space
  cropping), whose phase differs from the block-averaged field near sharp sub-voxel structure;
- 2π errors: voxels whose unwrapped phase of some echo is off by a whole turn from the
  true phase (after one global turn per echo), summed over echoes;
- time and peak RSS of phase-offset removal + unwrapping + fit.

Real data: ``../shared/data/romeo_small`` (3 echoes; congruence with the input and the count
of neighbouring voxel pairs whose unwrapped phase jumps by more than π, per echo) and
``../shared/data/siemens_fieldmap`` (B0 map from the phase difference: min/median/max and
jumps). Finally the default field mapping on a 160x200x176x5 head for the time budget.

    python benchmarks/fieldmap.py                # everything (~10 min)
    python benchmarks/fieldmap.py --quick        # 2 mm heads, no timing head
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _bench import PeakMemory, StageMeter, table
from qsmflow import io, phantom, pipeline
from qsmflow.phantom import metrics

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

METHODS = {
    "mcpc3ds + romeo + complex (default)": dict(phase_offset="mcpc3ds", unwrap="romeo", field_fit="complex"),
    "mcpc3ds + romeo + wls": dict(phase_offset="mcpc3ds", unwrap="romeo", field_fit="wls"),
    "bestpath per echo + wls": dict(phase_offset="none", unwrap="bestpath", field_fit="wls"),
    "laplacian + wls": dict(phase_offset="none", unwrap="laplacian", field_fit="wls"),
}
VARIANTS = {
    "axial SNR100": dict(snr=100.0),
    "axial SNR40": dict(snr=40.0),
    "oblique 20° SNR100": dict(snr=100.0, b0_direction=tuple(phantom.oblique_direction(20.0))),
    "oblique 20° SNR40": dict(snr=40.0, b0_direction=tuple(phantom.oblique_direction(20.0))),
    "axial noise-free (floor)": dict(snr=np.inf),
}
FIELD_STAGES = ("phase_offset", "unwrap", "field_fit")


def wrap_errors(result, head) -> int:
    """Voxels × echoes whose unwrapped phase is off by whole turns from the truth."""
    m = result.mask & head.brain_mask
    total = 0
    for e, te in enumerate(head.echo_times):
        true = head.phase_offset + 2 * np.pi * head.total_field_hz * te
        d = (result.unwrapped_phase[..., e] + result.phase_offset - true)[m]
        k = np.round((d - np.median(d)) / (2 * np.pi))
        total += int(np.count_nonzero(k))
    return total


def neighbour_jumps(vol: np.ndarray, mask: np.ndarray, step: float) -> int:
    """Pairs of face neighbours inside ``mask`` whose values differ by more than ``step``."""
    n = 0
    for ax in range(3):
        a = np.take(vol, range(1, vol.shape[ax]), ax) - np.take(vol, range(vol.shape[ax] - 1), ax)
        both = np.take(mask, range(1, mask.shape[ax]), ax) & np.take(mask, range(mask.shape[ax] - 1), ax)
        n += int(np.count_nonzero(np.abs(a[both]) > step))
    return n


def phantom_rows(shape, vs, mem):
    rows = []
    for vname, kw in VARIANTS.items():
        head = phantom.simulate_head(shape, vs, seed=1, **kw)
        data = io.GreInput.from_arrays(head.magnitude, head.phase, head.echo_times, head.field_strength,
                                       affine=head.affine, prefix="bench")
        mask = None
        for mname, opts in METHODS.items():
            meter = StageMeter(mem)
            r = pipeline.run(data, pipeline.Options(**opts), mask=mask, until="field_fit", progress=meter)
            mask = r.mask  # the same mask for every method
            sc = metrics.evaluate_field(r, head)
            t = sum(meter.rows[s][0] for s in FIELD_STAGES)
            gb = max(meter.rows[s][1] for s in FIELD_STAGES)
            wraps = "n/a (not congruent)" if opts["unwrap"] == "laplacian" else wrap_errors(r, head)
            rows.append([vname, mname, f"{100 * sc['mask_coverage']:.1f}", f"{100 * sc['mask_outside']:.2f}",
                         f"{sc['total_field_error_pct']:.1f}", wraps, f"{t:.1f}", f"{gb:.2f}"])
            print(" | ".join(map(str, rows[-1])), flush=True)
    return rows


def romeo_small_rows():
    d = DATA / "romeo_small"
    if not d.exists():
        return [["romeo_small not available", "", "", "", ""]]
    data = io.load_gre(d / "Mag.nii", d / "Phase.nii", echo_times=[0.004, 0.008, 0.012], field_strength=3.0)
    rows = []
    for mname, opts in METHODS.items():
        r = pipeline.run(data, pipeline.Options(**opts), until="field_fit")
        m = r.mask
        k = (r.unwrapped_phase + r.phase_offset[..., None] - data.phase) / (2 * np.pi)
        congruent = float(np.abs(k - np.round(k))[m].max())
        jumps = [neighbour_jumps(r.unwrapped_phase[..., e], m, np.pi) for e in range(data.n_echoes)]
        # a jump is suspect unless the previous echo shows the same step, scaled by echo time
        te = data.echo_times
        bad = [0] + [neighbour_jumps(r.unwrapped_phase[..., e] - r.unwrapped_phase[..., e - 1] * te[e] / te[e - 1],
                                     m, np.pi) for e in range(1, data.n_echoes)]
        rows.append([mname, f"{congruent:.1e}", " / ".join(map(str, jumps)), " / ".join(map(str, bad)),
                     f"{np.percentile(r.total_field_hz[m], 1):.1f} / {np.median(r.total_field_hz[m]):.1f} / "
                     f"{np.percentile(r.total_field_hz[m], 99):.1f}"])
    return rows


def siemens_rows():
    d = DATA / "siemens_fieldmap"
    if not d.exists():
        return [["siemens_fieldmap not available", "", ""]]
    data = io.load_phasediff(d / "Si_3_gre_field_magph_e2_ph.nii", d / "Si_2_gre_field_magph_e1.nii")
    r = pipeline.phasediff_run(data)
    f = r.total_field_hz[r.mask]
    jumps = neighbour_jumps(r.total_field_hz, r.mask, 0.5 / data.delta_te)
    return [[f"{f.min():.1f} / {np.median(f):.1f} / {f.max():.1f}", str(jumps), f"{r.mask.sum()}"]]


def timing_rows(mem):
    head = phantom.simulate_head((160, 200, 176), (1.0, 1.0, 1.0), seed=2)
    data = io.GreInput.from_arrays(head.magnitude, head.phase, head.echo_times, head.field_strength,
                                   affine=head.affine)
    meter = StageMeter(mem)
    pipeline.run(data, until="field_fit", progress=meter)
    rows = [[s, f"{meter.rows[s][0]:.1f}", f"{meter.rows[s][1]:.2f}"] for s in ("mask",) + FIELD_STAGES]
    rows.append(["field mapping (offset + unwrap + fit)", f"{sum(meter.rows[s][0] for s in FIELD_STAGES):.1f}",
                 f"{max(meter.rows[s][1] for s in FIELD_STAGES):.2f}"])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 mm heads and no timing head")
    args = ap.parse_args()
    vox = 2.0 if args.quick else 1.0
    shape = tuple(int(round(n / vox)) for n in (160, 192, 160))
    np.seterr(all="ignore")
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        ph = phantom_rows(shape, (vox,) * 3, mem)
        print()
        print(table(["variant", "method", "brain covered %", "mask in skull/scalp/air %", "total-field err %",
                     "2π errors (voxel×echo)", "time s", "peak RSS GB"], ph,
                    f"Benchmark head {'x'.join(map(str, shape))} at {vox:g} mm"))
        print()
        print(table(["method", "congruence (max |k - round k|)", "jumps > π per echo",
                     "jumps not explained by the previous echo", "field Hz p1 / median / p99"],
                    romeo_small_rows(), "romeo_small (real, 3 echoes, 0.47x0.47x1 mm)"))
        print()
        print(table(["B0 Hz min / median / max", "jumps > half a wrap", "mask voxels"], siemens_rows(),
                    "siemens_fieldmap (real dual-echo phase difference, ΔTE 2.46 ms)"))
        if not args.quick:
            print()
            print(table(["stage", "time s", "peak RSS GB"], timing_rows(mem),
                        "Default field mapping, 160x200x176x5 echoes at 1 mm, 2 cores"))
        print(f"\n(total benchmark time {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
