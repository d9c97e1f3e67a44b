"""Dipole inversion: every method on the benchmark head, from the true and from the estimated local field.

The 1 mm benchmark head (160x192x160, 5 echoes 4-28 ms, 3 T) is simulated with a
calcification (χ −0.5 ppm) and a haemorrhage (+1.0 ppm) in white matter, in three variants
(axial SNR 100, 20° oblique SNR 100, axial SNR 40). The default chain gives the local field,
its mask, the field noise and R2*; then every inversion runs on the same input.

1. From the TRUE local field (axial): each method, with sweeps of the weight for TV and MEDI;
   no noise map, so nothing is automatic here.
2. End to end (each variant): each method with its automatic weight, and a sweep of fixed
   weights for the default (MEDI+0) to check where the automatic choice lands.
3. Lesions (axial, default): χ inside each lesion and the error in a shell around it
   against the error in the brain; a figure in benchmarks/figures/inversion_lesions.png.
4. The default inversion on a 160x200x176 head: time and peak RSS.

Reported: χ NRMSE and HFEN (%) inside the local mask ∩ true brain, deep-grey slope, time.

    python benchmarks/inversion.py            # ~25 min
    python benchmarks/inversion.py --quick    # 2 mm heads, no sweeps, no timing head
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from pathlib import Path

import numpy as np

from _bench import PeakMemory, table
from qsmflow import io, phantom, pipeline
from qsmflow.phantom import metrics
from qsmflow._shared.constants import GAMMA_BAR_HZ_PER_T

VARIANTS = {
    "axial SNR100": dict(snr=100.0),
    "oblique 20° SNR100": dict(snr=100.0, b0_direction=tuple(phantom.oblique_direction(20.0))),
    "axial SNR40": dict(snr=40.0),
}
METHODS = ["tkd", "l2", "ilsqr", "tv", "medi"]
SWEEP = (2e-5, 4e-5, 8e-5, 1.6e-4, 3.2e-4)
WEIGHT = {"tv": "alpha", "medi": "alpha", "l2": "lam"}


def prepare(kw, shape, vs):
    """Simulated head and the default chain's local field, mask, noise (ppm), magnitude, R2*."""
    head = phantom.simulate_head(shape, vs, seed=1, lesions=True, **kw)
    data = io.GreInput.from_arrays(head.magnitude, head.phase, head.echo_times, head.field_strength,
                                   affine=head.affine, b0_direction=head.b0_direction, prefix="bench")
    r = pipeline.run(data, pipeline.Options(inversion="tkd"))
    hz = GAMMA_BAR_HZ_PER_T * head.field_strength * 1e-6
    ctx = dict(noise_ppm=r.field_noise_hz / hz,
               magnitude=np.sqrt(np.sum(head.magnitude.astype(np.float32) ** 2, axis=-1)),
               phase_scale=2 * np.pi * hz * float(np.mean(head.echo_times)), r2star=r.r2star)
    return head, r, ctx


def invert(name, local, mask, head, ctx, weight=None, noise=True):
    """χ by one method through the pipeline's inversion + reference step; (χ, seconds, info)."""
    so = {"inversion": {WEIGHT[name]: weight}} if weight is not None else {}
    opt = pipeline.Options(inversion=name, stage_options=so)
    res = pipeline.QSMResult(mask=mask)
    kw = dict(ctx, noise_ppm=ctx["noise_ppm"] if noise else None)
    t0 = time.perf_counter()
    chi, *_ = pipeline.inversion_and_reference(local, mask, head.voxel_size, head.b0_direction, opt, res,
                                                 lambda stage: contextlib.nullcontext(), **kw)
    return chi, time.perf_counter() - t0, res.parameters["inversion"]


def row(variant, source, name, chi, head, ev, t, info):
    s = metrics.chi_scores(chi, head, ev)
    w = info.get("alpha", info.get("lam_mm2", info.get("threshold")))
    return [variant, source, name, f"{w:.3g}" if w is not None else "", f"{s['chi_nrmse']:.1f}",
            f"{s['chi_hfen']:.1f}", f"{s['deep_grey_slope']:.2f}", f"{t:.1f}"]


def lesion_rows(chi, head, ev, label):
    out = []
    names = {v: k for k, v in head.label_names.items()}
    err_brain = np.sqrt(np.mean(((chi - chi[ev].mean()) - (head.chi - head.chi[ev].mean()))[ev] ** 2))
    for lesion in ("calcification", "haemorrhage"):
        inside = head.labels == names[lesion]
        if not inside.any():
            continue
        from scipy import ndimage

        dist = ndimage.distance_transform_edt(~inside, sampling=head.voxel_size)
        radius = (3 * inside.sum() * np.prod(head.voxel_size) / (4 * np.pi)) ** (1 / 3)
        shell = (dist > 1.0) & (dist <= 2 * radius) & ev
        ref = chi[ev].mean() - head.chi[ev].mean()
        err = (chi - head.chi - ref)[shell]
        out.append([label, lesion, f"{np.mean(head.chi[inside]):+.3f}", f"{np.mean(chi[inside] - ref):+.3f}",
                    f"{np.sqrt(np.mean(err ** 2)):.3f}", f"{err_brain:.3f}"])
    return out


def lesion_figure(head, chis, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no lesion figure)")
        return
    names = {v: k for k, v in head.label_names.items()}
    fig, axes = plt.subplots(2, 1 + len(chis), figsize=(3 * (1 + len(chis)), 6))
    for i, lesion in enumerate(("calcification", "haemorrhage")):
        z = int(np.round(np.mean(np.nonzero(head.labels == names[lesion])[2])))
        for j, (title, img) in enumerate([("truth", head.chi)] + list(chis.items())):
            ax = axes[i, j]
            ax.imshow(np.rot90(np.where(head.brain_mask, img, 0)[:, :, z]), cmap="gray", vmin=-0.3, vmax=0.5)
            ax.set_title(f"{title}: {lesion}", fontsize=8)
            ax.axis("off")
    fig.suptitle("χ (ppm, window −0.3…0.5), axial slice through each lesion")
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 mm heads, no sweeps, no timing head")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    vox = 2.0 if args.quick else 1.0
    shape = tuple(int(round(n / vox)) for n in (160, 192, 160))
    np.seterr(all="ignore")
    header = ["variant", "local field", "method", "weight", "χ NRMSE %", "χ HFEN %", "deep-grey slope", "time s"]
    rows, les = [], []
    with PeakMemory() as mem:
        for vname, kw in VARIANTS.items():
            head, r, ctx = prepare(kw, shape, (vox,) * 3)
            mask = r.eroded_mask
            ev = mask & head.brain_mask
            if vname == "axial SNR100":
                true_local = np.where(mask, head.local_field_ppm, 0).astype(np.float32)
                for name in METHODS:
                    weights = [None] if name not in ("tv", "medi") or args.quick else SWEEP[:4]
                    for w in weights:
                        chi, t, info = invert(name, true_local, mask, head, ctx, w, noise=False)
                        rows.append(row(vname, "true", name, chi, head, ev, t, info))
                        print(" | ".join(rows[-1]), flush=True)
            chis = {}
            for name in METHODS:
                chi, t, info = invert(name, r.local_field_ppm, mask, head, ctx)
                chis[name] = chi
                rows.append(row(vname, "estimated", name + " (auto)" if name in ("tv", "medi") else name, chi,
                                head, ev, t, info))
                print(" | ".join(rows[-1]), flush=True)
            if not args.quick:
                for w in SWEEP:
                    chi, t, info = invert("medi", r.local_field_ppm, mask, head, ctx, w)
                    rows.append(row(vname, "estimated", "medi (fixed)", chi, head, ev, t, info))
                    print(" | ".join(rows[-1]), flush=True)
            if vname == "axial SNR100":
                les += lesion_rows(chis["medi"], head, ev, "MEDI+0 (default)")
                les += lesion_rows(chis["l2"], head, ev, "closed-form L2")
                les += lesion_rows(chis["tkd"], head, ev, "TKD")
                name = "inversion_lesions_quick.png" if args.quick else "inversion_lesions.png"
                lesion_figure(head, {"MEDI+0": chis["medi"], "L2": chis["l2"], "TKD": chis["tkd"]},
                              Path(__file__).parent / "figures" / name)
            del head, r, ctx, chis
        print()
        print(table(header, rows, f"Dipole inversion, benchmark head {'x'.join(map(str, shape))} at {vox:g} mm"))
        print()
        print(table(["method", "lesion", "true χ ppm", "estimated χ ppm", "error RMS in shell ppm",
                     "error RMS in brain ppm"], les, "Lesions (axial SNR 100; shell: 1 mm to 2 radii outside)"))
        if not args.quick:
            head, r, ctx = prepare({"snr": 100.0}, (160, 200, 176), (1.0, 1.0, 1.0))
            mem.mark()
            chi, t, info = invert("medi", r.local_field_ppm, r.eroded_mask, head, ctx)
            print()
            print(f"default inversion (MEDI+0, auto) on 160x200x176: {t:.1f} s, peak RSS "
                  f"{mem.peak() / 2**30:.2f} GB, alpha {info['alpha']:.3g}, "
                  f"{info['gauss_newton_steps']} Gauss-Newton steps")


if __name__ == "__main__":
    main()
