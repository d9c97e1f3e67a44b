"""How close to the phantom's truth any χ map at the acquired resolution can come.

The phantom's truth is the partial-volume (box) average of χ over each voxel, but a
Cartesian scan sees the head through the sinc point-spread function of its k-space
window: thin veins, cortex and nuclei edges are blurred and ring in the data, whatever
the reconstruction. This script draws the head (seed 1, as the matrix) on the
simulation's fine grid, keeps the brain's χ only (so the ±9 ppm steps at air and bone do
not ring into it), brings it to the output grid by the same k-space cropping the signal
gets, and scores that "χ as the scan resolves it" against the truth with the matrix's
χ NRMSE (over the true brain mask, and 3 voxels inside it), overall and per tissue class.
A reconstruction without a super-resolving prior cannot do much better than this floor.

    python benchmarks/resolution_floor.py            # 1 mm, 2 mm, 2x2x3 mm
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from _bench import table
from qsmflow import phantom
from qsmflow.phantom import metrics
from qsmflow.phantom.geometry import HeadModel
from qsmflow.phantom.signal import block_mean, kspace_downsample, voxel_axes
from qsmflow.phantom.tissue import tissue_properties

FOV_MM = (160.0, 192.0, 160.0)
CLASSES = {"white matter": ("wm",), "cortical grey matter": ("gm",), "deep grey": ("caudate", "putamen", "thalamus"),
           "iron-rich": ("globus_pallidus", "red_nucleus", "substantia_nigra", "dentate"), "veins": ("vein",)}


def floor(voxel, oversample: int = 2, seed: int = 1) -> list:
    vs = np.asarray(voxel, float)
    shape = tuple(int(round(f / v)) for f, v in zip(FOV_MM, vs))
    model = HeadModel(np.random.SeedSequence(seed).spawn(3)[0], lesions=False)
    fine_shape, fine_vs = tuple(n * oversample for n in shape), vs / oversample
    axes = voxel_axes(fine_shape, fine_vs)
    model.prepare(fine_vs)
    chi, _, _, brain, _ = tissue_properties(model.paint(axes, fine_vs), model, axes, phantom.TISSUES)
    mask = block_mean(brain, oversample) >= 0.5
    truth = block_mean(chi, oversample)
    resolved = kspace_downsample(np.where(brain, chi, 0).astype(np.complex64), oversample).real
    del chi, brain
    inner = ndimage.binary_erosion(mask, iterations=3)
    out = model.paint(voxel_axes(shape, vs), vs)
    labels = out.labels.astype(np.int16)
    labels[out.vessel_cover >= 128] = out.vessel_type[out.vessel_cover >= 128]
    names = {v: k for k, v in phantom.LABEL_NAMES.items()}
    row = [" x ".join(f"{v:g}" for v in vs) + " mm", f"{metrics.nrmse(resolved, truth, mask):.1f}",
           f"{metrics.nrmse(resolved, truth, inner):.1f}"]
    for tissues in CLASSES.values():
        sel = inner & np.isin(labels, [names[t] for t in tissues])
        row.append(f"{metrics.nrmse(resolved, truth, sel):.1f}" if sel.sum() >= 20 else "-")
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxel", nargs="*", default=["1", "2", "2,2,3"], help="voxel sizes, e.g. 1 or 2,2,3 (mm)")
    args = ap.parse_args()
    rows = []
    for v in args.voxel:
        parts = [float(x) for x in v.split(",")]
        rows.append(floor(parts * 3 if len(parts) == 1 else parts))
        print(" | ".join(rows[-1]), flush=True)
    print(table(["voxel", "χ NRMSE % (brain)", "3 voxels inside"] + [f"{c} %" for c in CLASSES], rows))


if __name__ == "__main__":
    main()
