"""SWI vein contrast on the benchmark head: magnitude, homodyne SWI, CLEAR-style multi-echo SWI, minIP.

The head phantom (default 1 mm, 160x192x160, 3 T, 5 echoes 4-28 ms) is simulated without noise;
complex Gaussian noise for SNR 100 (mean first-echo brain magnitude / σ, as ``simulate_head``
does) is added here, so every image is computed twice, from the noisy and the noise-free data,
and its noise is measured as the difference. The field map for the multi-echo SWI comes from
the default chain (``pipeline.run(..., until="field_fit")``) on each, with the noisy run's mask.

Regions (inside the chain's mask and the brain mask): vein = voxels labelled ``vein`` (at least
half covered by a vein; the dural sinuses are outside the brain mask); surround = the other
voxels within 3 mm of a vein voxel. Reported per image:

- contrast = mean(vein) / mean(surround) (1 = invisible, 0 = black veins);
- CNR = (mean(surround) - mean(vein)) / σ, σ the SD of (noisy - noise-free) over both regions;
- time of the SWI step (the field-map chain's time is listed once).

minIP: sliding minimum over 16 mm along z, scored on the same voxels (surrounding tissue in a
minIP also takes the minimum of its slab, so contrasts are lower than a vein seen end-on).

    python benchmarks/swi.py                 # 1 mm axial (~2 min on 2 cores)
    python benchmarks/swi.py --oblique       # also a 20° oblique slab (~4 min)
    python benchmarks/swi.py --voxel 2       # 2 mm quick look
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
from scipy import ndimage

from _bench import table
from qsmflow import phantom, pipeline, swi
from qsmflow.io import GreInput

SURROUND_MM = 3.0
SLAB_MM = 16.0


def regions(head, mask):
    names = {v: k for k, v in head.label_names.items()}
    inside = mask & head.brain_mask
    vein = inside & (head.labels == names["vein"])
    dist = ndimage.distance_transform_edt(~vein, sampling=head.voxel_size)
    surround = inside & ~vein & (dist <= SURROUND_MM) & (head.labels != names["sinus"])
    return vein, surround


def score(noisy, clean, vein, surround):
    v, s = noisy[vein].mean(), noisy[surround].mean()
    both = vein | surround
    sigma = float(np.std((noisy - clean)[both]))
    return v / s, (s - v) / sigma


def images(mag, phase, te, field, mask, vs, timings):
    """Every image of the comparison for one dataset (noisy or noise-free)."""
    mid = len(te) // 2
    out = {
        "magnitude, echo 1": mag[..., 0],
        f"magnitude, echo {mid + 1} ({1e3 * te[mid]:.0f} ms)": mag[..., mid],
        "magnitude, RSS of all echoes": np.sqrt(np.sum(mag.astype(np.float64) ** 2, axis=3)).astype(np.float32),
    }
    runs = {
        f"homodyne SWI, echo {mid + 1}, 8 mm": lambda: swi.homodyne_swi(
            mag[..., mid], phase[..., mid], mask=mask, voxel_size=vs)[0],
        f"homodyne SWI, echo {mid + 1}, 16 mm": lambda: swi.homodyne_swi(
            mag[..., mid], phase[..., mid], mask=mask, voxel_size=vs, filter_mm=16.0)[0],
        f"CLEAR-style SWI, TE_eff {1e3 * te.mean():.0f} ms": lambda: swi.clear_swi(
            mag, field, te, mask=mask, voxel_size=vs)[0],
        f"CLEAR-style SWI, TE_eff {1e3 * te[-1]:.0f} ms": lambda: swi.clear_swi(
            mag, field, te, mask=mask, voxel_size=vs, effective_te=te[-1])[0],
    }
    for name, run in runs.items():
        t0 = time.perf_counter()
        out[name] = run()
        timings.setdefault(name, []).append(time.perf_counter() - t0)
    for name in list(out):
        t0 = time.perf_counter()
        out[f"minIP {SLAB_MM:g} mm of {name}"] = swi.min_intensity_projection(out[name], vs, slab_mm=SLAB_MM)
        timings.setdefault("minIP", []).append(time.perf_counter() - t0)
    return out


def run_variant(label, b0_direction, args, rows):
    vs = (args.voxel,) * 3
    shape = tuple(int(round(n / args.voxel)) for n in (160, 192, 160))
    t0 = time.perf_counter()
    head = phantom.simulate_head(shape, vs, seed=1, snr=np.inf, b0_direction=b0_direction)
    t_sim = time.perf_counter() - t0
    clean = head.magnitude * np.exp(1j * head.phase)
    sigma = float(np.abs(clean[..., 0][head.brain_mask]).mean() / args.snr)
    rng = np.random.default_rng(7)
    noisy = clean + sigma * (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape))
    sets, mask, t_field = {}, None, 0.0
    timings: dict[str, list[float]] = {}
    for kind, sig in (("noisy", noisy), ("clean", clean)):
        mag, phase = np.abs(sig).astype(np.float32), np.angle(sig).astype(np.float32)
        data = GreInput.from_arrays(mag, phase, head.echo_times, head.field_strength, affine=head.affine,
                                    b0_direction=head.b0_direction, prefix="bench")
        t0 = time.perf_counter()
        res = pipeline.run(data, mask=mask, until="field_fit")
        t_field = t_field or time.perf_counter() - t0
        mask = res.mask if mask is None else mask
        sets[kind] = images(mag, phase, head.echo_times, res.total_field_hz, mask, vs, timings)
    vein, surround = regions(head, mask)
    print(f"{label}: simulated in {t_sim:.0f} s, field map (default chain) {t_field:.1f} s; "
          f"{int(vein.sum())} vein and {int(surround.sum())} surrounding voxels")
    for name in sets["noisy"]:
        contrast, cnr = score(sets["noisy"][name], sets["clean"][name], vein, surround)
        key = "minIP" if name.startswith("minIP") else name
        t = f"{np.mean(timings[key]):.2f}" if key in timings else "-"
        rows.append([label, name, f"{contrast:.3f}", f"{cnr:.1f}", t])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxel", type=float, default=1.0, help="voxel size (mm); the FOV stays 160x192x160 mm")
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument("--oblique", action="store_true", help="also a 20° oblique slab")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    rows = []
    run_variant(f"axial {args.voxel:g} mm", (0.0, 0.0, 1.0), args, rows)
    if args.oblique:
        run_variant(f"oblique 20° {args.voxel:g} mm", tuple(phantom.oblique_direction(20.0)), args, rows)
    print(table(["head", "image", "vein / surround", "CNR", "time (s)"], rows,
                title=f"SWI vein contrast, SNR {args.snr:g}, surround ≤ {SURROUND_MM:g} mm"))


if __name__ == "__main__":
    main()
