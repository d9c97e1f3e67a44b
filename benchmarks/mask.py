"""The default brain mask (BET) on every head of the benchmark matrix and on the demo head.

Per head, against the phantom's truth: the share of the true brain left out of the mask, the
largest piece of it (mL: a lobe's edge cut off shows here, scattered voxels do not), the
share of the cerebellum left out, the
volume of extracranial tissue inside the mask (soft tissue, fat, bone, marrow, eyes, nerves;
mL) and of the skull's marrow alone (its χ sources inside the mask cost the 1 mm head's χ 8
points), and the mask's time. ``--one-surface`` gives BET's first surface alone (no second
surface on the smoothed image), for comparison.

    python benchmarks/mask.py                 # every matrix head (simulated when not cached) + demo head
    python benchmarks/mask.py --one-surface
    python benchmarks/mask.py --heads "1 mm axial" demo
    python benchmarks/mask.py --pd            # the matrix's proton-density heads (no T1 weighting)
    python benchmarks/mask.py --surface-echoes all   # BET's surface on all echoes alone (before stop 52)
    python benchmarks/mask.py --heads "anatomy 0" "anatomy 1" --bias-passes 2 3   # each head once, BET per value
    python benchmarks/mask.py --heads "anatomy 0 at 2 mm" "anatomy 0 at 1 mm"

``anatomy N`` is the 1 mm axial row's acquisition on the demo's grid (1.5 mm; ``anatomy N at V mm``
on a grid of V mm voxels), T1-weighted as
the matrix's heads (TR = last echo + 7 ms, 15°; cached as they are), drawn with seed N: another brain, skull and vessel tree (the matrix's heads are all
seed 1, the demo head seed 0 without T1 weighting). ``--bias-passes`` runs BET once per value
on each head (simulated once).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

import matrix
import zubal
from _bench import table
from qsmflow import masking, phantom
from qsmflow.masking import bet
from qsmflow.workflows import demo

EXTRACRANIAL = ("soft_tissue", "fat", "bone", "marrow", "eye", "nerve")


def score(mask: np.ndarray, head) -> list:
    brain = head.brain_mask.astype(bool)
    ml = float(np.prod(head.voxel_size)) / 1000
    missed = brain & ~mask
    lab, _ = ndimage.label(missed)
    largest = np.bincount(lab.ravel())[1:].max(initial=0) * ml
    names = {v: k for k, v in head.label_names.items()}
    outside = np.isin(head.labels, [names[t] for t in EXTRACRANIAL])
    cerebellum = brain & np.isin(head.labels, [names["cerebellar_gm"], names["cerebellar_wm"]])
    return [100 * missed.sum() / brain.sum(), largest, (mask & outside).sum() * ml,
            (mask & (head.labels == names["marrow"])).sum() * ml, 100 * (cerebellum & missed).sum() / cerebellum.sum()]


def heads(which, t1=True):
    for name in which:
        if name == "demo":
            yield name, phantom.simulate_head(demo.DEMO_SHAPE, demo.DEMO_VOXEL_MM)
        elif name.startswith("anatomy "):  # the 1 mm head's acquisition on another grid, another seed
            words = name.split()  # "anatomy N" (the demo's grid) or "anatomy N at V mm"
            voxel = (float(words[3]),) * 3 if len(words) == 5 else demo.DEMO_VOXEL_MM
            yield name, matrix.simulate({**matrix.spec("1 mm axial", t1), "voxel": voxel, "seed": int(words[1])})
        else:
            yield name, matrix.simulate(matrix.spec(name, t1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", nargs="*", default=list(matrix.VARIANTS) + ["demo"],
                    help="matrix variants and/or 'demo'")
    ap.add_argument("--one-surface", action="store_true", help="BET's first surface alone")
    ap.add_argument("--surface-echoes", choices=("both", "all", "last"), default="both",
                    help="the image(s) BET's surface moves on (default: both, the union)")
    ap.add_argument("--pd", action="store_true", help="the matrix's proton-density heads (no T1 saturation)")
    ap.add_argument("--bias-passes", nargs="*", type=int, default=[bet.BET_BIAS_PASSES],
                    help=f"BET's shading passes, one run per value (default {bet.BET_BIAS_PASSES})")
    args = ap.parse_args()
    if not zubal.available():
        args.heads = [h for h in args.heads if matrix.VARIANTS.get(h, {}).get("anatomy") != "zubal"]
    real = bet.bet_mask
    rows = []
    for name, head in heads(args.heads, not args.pd):
        for passes in args.bias_passes:
            bet.bet_mask = lambda *a, **k: real(*a, **k, second_surface=not args.one_surface,
                                                surface_echoes=args.surface_echoes, bias_passes=passes)
            t0 = time.perf_counter()
            mask = masking.bet_brain_mask(head.magnitude, head.voxel_size)
            dt = time.perf_counter() - t0
            s = score(mask, head)
            rows.append([name, str(passes), f"{s[0]:.2f}", f"{s[1]:.1f}", f"{s[4]:.1f}", f"{s[2]:.1f}", f"{s[3]:.1f}",
                         f"{dt:.1f}"])
            print(" | ".join(rows[-1]), flush=True)
    bet.bet_mask = real
    print(table(["head", "shading passes", "brain left out %", "largest piece mL", "cerebellum left out %",
                 "extracranial mL", "marrow mL", "time s"], rows,
                "BET mask, " + ("first surface alone" if args.one_surface else "default")
                + f", surface on {args.surface_echoes}, " + ("proton-density" if args.pd else "T1-weighted") + " heads"))


if __name__ == "__main__":
    main()
