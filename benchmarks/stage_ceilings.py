"""Where the χ error of the benchmark matrix comes from: the chain against its inversion fed better fields.

For each matrix variant (the heads of `matrix.py`, from its cache) the default chain runs
once; then its own inversion (MEDI+0 or TFI, with the weight the chain chose, on the region
the chain chose, with the chain's noise map, magnitude and CSF mask) runs again on

- *true total field*: the phantom's total field (no noise, no field-model error, no unwrapping
  error), through the chain's background removal (LBV or PDF by voxel size; TFI takes the
  total field itself);
- *true local field*: the phantom's local field itself (no background left either).

χ NRMSE (%) and deep-grey slope are scored as in the matrix (demeaned, over the chain's
scored region ∩ the true brain). The gap between the chain and the first column is what
the field map costs (noise, the field model, unwrapping); between the two columns, what background
removal costs (for TFI: fitting the background sources together with the tissue); the last
column is the inversion's own ceiling on this phantom (it still includes the scan's
resolution limit, `resolution_floor.py`).

    python benchmarks/stage_ceilings.py                       # eight rows (~15 min)
    python benchmarks/stage_ceilings.py --variants "1 mm axial" "2 mm"
"""

from __future__ import annotations

import argparse
import dataclasses

import matrix
import numpy as np
from _bench import inversion_inputs, table

from qsmflow import pipeline, relaxometry
from qsmflow._shared import units
from qsmflow.io import GreInput
from qsmflow.phantom import metrics
from qsmflow.workflows import chain, local_field
from qsmflow.workflows.options import QSMResult

ROWS = ("1 mm axial", "oblique 35°, 1x1x1.4 mm", "SNR 20", "1x1x2 mm", "2 mm", "2x2x3 mm",
        "2D multi-slice 2x2x3 mm, 6 echoes 5-30 ms", "2x2x3 mm, 2 echoes 2.3/4.6 ms, SNR 60")


class _NoTimer:
    def __init__(self, *_):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def ceilings(name: str) -> dict:
    head = matrix.simulate(matrix.spec(name))
    data = GreInput.from_arrays(head.magnitude, head.phase, head.echo_times, head.field_strength,
                                affine=head.affine, prefix="ceiling")
    data.slice_axis = head.slice_axis
    opt = pipeline.Options(chi_sd=False)
    res = pipeline.run(data, opt)
    ev = res.eroded_mask & head.brain_mask
    hz = units.hz_per_ppm(head.field_strength)
    inv = res.parameters["methods"]["inversion"]
    out = {"variant": name, "inversion": inv, "chain": metrics.chi_scores(res.chi, head, ev)}
    # the same inversion, weight and region as the chain's; TFI gets its field region's total field
    fixed = dataclasses.replace(opt, inversion=inv, stage_options={"inversion": {"alpha": res.parameters["inversion"]["alpha"]}})
    region = res.eroded_mask
    true_total = np.where(region, head.total_field_hz / hz, 0).astype(np.float32)
    if inv != "tfi":  # the chain's field region (its peel, from the chain's noise and R2*) and background removal
        sigma = res.parameters["r2star"]["noise_sigma"]  # the image noise the chain read, once per run
        r2_sd = float(np.median(relaxometry.r2star_noise_map(head.magnitude, head.echo_times, sigma, res.mask)[res.mask]))
        true_total, kept, bg_region = local_field.background_removal(
            np.where(res.mask, head.total_field_hz / hz, 0).astype(np.float32), res.mask, head.voxel_size,
            head.b0_direction, res.field_noise_hz, opt, r2star=res.r2star, r2star_noise=r2_sd,
            field_strength=head.field_strength)
        if not np.array_equal(kept, region):
            raise RuntimeError("the background removal kept another region than the chain's; not like for like")
    fields = {"true total field": true_total, "true local field": head.local_field_ppm}
    for label, field in fields.items():
        # like the chain, LBV's boundary refinement after the background removal (not on the true local field)
        refine = None if inv == "tfi" or label == "true local field" else local_field.lbv_refinement(
            dataclasses.replace(opt, bgremove=res.parameters["methods"]["bgremove"]), head.voxel_size,
            head.b0_direction, bg_region)
        chi, *_ = chain.inversion_and_reference(
            np.where(region, field, 0).astype(np.float32), region, head.voxel_size, head.b0_direction, fixed,
            QSMResult(mask=res.mask), _NoTimer, r2star=res.r2star,
            refine=refine, **inversion_inputs(res, head.magnitude, head.echo_times, head.field_strength))
        out[label] = metrics.chi_scores(chi, head, ev)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=list(ROWS), choices=list(matrix.VARIANTS))
    args = ap.parse_args()
    body = []
    for name in args.variants:
        r = ceilings(name)
        cells = [f"{r[k]['chi_nrmse']:.1f} / {r[k]['deep_grey_slope']:.2f}"
                 for k in ("chain", "true total field", "true local field")]
        body.append([name, r["inversion"], *cells])
        print(" | ".join(body[-1]), flush=True)
    print(table(["variant", "inversion", "chain", "from the true total field", "from the true local field"], body,
                title="χ NRMSE % / deep-grey slope: the default chain and its inversion from better fields"))


if __name__ == "__main__":
    main()
