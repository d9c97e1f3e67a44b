"""Background field removal: every method on the benchmark head, against the true local field.

For the 1 mm benchmark head (axial and 20° oblique at SNR 100, axial at SNR 40), the total field
comes from the package's own field mapping (default chain) and every background method runs on
the same region: the chain's own, its BET mask without the edge whose field is unreliable (the
field-reliability peel; the whole BET mask holds marrow, sinus walls and scalp, where no
method's local field means anything). Reported per method:

- local-field NRMSE (%), demeaned, inside the method's eroded mask ∩ the true brain;
- the share of the true brain the eroded mask keeps;
- χ NRMSE (%) after the closed-form L2 inversion, for context;
- the same local-field NRMSE from the TRUE total field (the method's own error, without the
  field-mapping error);
- the residual left from a purely harmonic input (the true background field alone), as % of
  its RMS;
- time and peak RSS.

Finally PDF on a 160x200x176 head for the time budget.

    python benchmarks/bgremove.py             # ~8 min
    python benchmarks/bgremove.py --quick     # 2 mm heads
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _bench import PeakMemory, table
from scipy import ndimage

from qsmflow import bgremove, inversion, io, phantom, pipeline
from qsmflow.phantom import metrics
from qsmflow.workflows.options import Options

VARIANTS = {
    "axial SNR100": dict(snr=100.0),
    "oblique 20° SNR100": dict(snr=100.0, b0_direction=tuple(phantom.oblique_direction(20.0))),
    "axial SNR40": dict(snr=40.0),
}
METHODS = ["lbv", "pdf", "vsharp", "resharp", "ismv", "sharp"]


def run_method(name, field_ppm, mask, head, noise, mem, polynomial=0):
    mem.mark()
    t0 = time.perf_counter()
    local, eroded = bgremove.METHODS[name].func(field_ppm, mask, head.voxel_size, head.b0_direction, noise=noise)
    if polynomial:
        local = bgremove.remove_polynomial(local, eroded, head.voxel_size, order=polynomial, noise=noise)
    return local, eroded, time.perf_counter() - t0, mem.peak() / 2**30


def chain_region(data):
    """The default chain's run on ``data`` (no χ uncertainty map) and the region its background
    removal ran on: LBV's interior grown by one voxel (every mask voxel next to an interior one
    is in the region, and region voxels next to none do not enter LBV's solution), or the
    peeled region itself where the chain fits the total field (TFI)."""
    r = pipeline.run(data, Options(chi_sd=False))
    region = r.eroded_mask
    if r.parameters["methods"].get("bgremove") == "lbv":
        region = ndimage.binary_dilation(region) & r.mask
    return r, region


def variant_rows(vname, kw, shape, vs, mem):
    head = phantom.simulate_head(shape, vs, seed=1, **kw)
    data = io.GreInput.from_arrays(head.magnitude, head.phase, head.echo_times, head.field_strength,
                                   affine=head.affine, prefix="bench")
    r, mask = chain_region(data)
    hz = r.parameters["hz_per_ppm"]
    brain = head.brain_mask
    est = np.where(mask, r.total_field_hz / hz, 0)
    true = np.where(mask, head.total_field_hz / hz, 0)
    background = np.where(mask, head.total_field_hz / hz - head.local_field_ppm, 0)
    rows = []
    for name, poly in [(m, 0) for m in METHODS] + [("lbv", 2)]:
        local, eroded, t, gb = run_method(name, est, mask, head, r.field_noise_hz, mem, poly)
        ev = eroded & brain
        chi = inversion.closed_form_l2(local, eroded, head.voxel_size, head.b0_direction)
        own, own_ev, _, _ = run_method(name, true, mask, head, None, mem, poly)
        harm, harm_ev, _, _ = run_method(name, background, mask, head, None, mem, poly)
        resid = 100 * np.std(harm[harm_ev]) / np.std(background[harm_ev])
        label = name + (f" + poly{poly}" if poly else "")
        rows.append([vname, label, f"{metrics.nrmse(local, head.local_field_ppm, ev):.1f}",
                     f"{100 * ev.sum() / brain.sum():.1f}", f"{metrics.nrmse(chi, head.chi, ev):.1f}",
                     f"{metrics.nrmse(own, head.local_field_ppm, own_ev & brain):.1f}", f"{resid:.2f}",
                     f"{t:.1f}", f"{gb:.2f}"])
        print(" | ".join(rows[-1]), flush=True)
    return rows


def pdf_timing(mem):
    head = phantom.simulate_head((160, 200, 176), (1.0, 1.0, 1.0), seed=2)
    data = io.GreInput.from_arrays(head.magnitude, head.phase, head.echo_times, head.field_strength,
                                   affine=head.affine)
    r, region = chain_region(data)
    field = np.where(region, r.total_field_hz / r.parameters["hz_per_ppm"], 0)
    rows = []
    for name in ("pdf", "lbv", "resharp"):
        local, eroded, t, gb = run_method(name, field, region, head, r.field_noise_hz, mem)
        ev = eroded & head.brain_mask
        rows.append([name, f"{t:.1f}", f"{gb:.2f}", f"{metrics.nrmse(local, head.local_field_ppm, ev):.1f}"])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 mm heads, no timing head")
    args = ap.parse_args()
    vox = 2.0 if args.quick else 1.0
    shape = tuple(int(round(n / vox)) for n in (160, 192, 160))
    np.seterr(all="ignore")
    rows = []
    with PeakMemory() as mem:
        for vname, kw in VARIANTS.items():
            rows += variant_rows(vname, kw, shape, (vox,) * 3, mem)
        print()
        print(table(["variant", "method", "local NRMSE %", "brain kept %", "χ NRMSE % (L2)",
                     "local NRMSE % from true total field", "harmonic residual %", "time s", "peak RSS GB"],
                    rows, f"Background removal, benchmark head {'x'.join(map(str, shape))} at {vox:g} mm"))
        if not args.quick:
            print()
            print(table(["method", "time s", "peak RSS GB", "local NRMSE %"], pdf_timing(mem),
                        "160x200x176 head at 1 mm, 2 cores"))


if __name__ == "__main__":
    main()
