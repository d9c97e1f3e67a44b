"""Brain mask of the real Philips head (../shared/data/philips_head): volume, time and a figure.

The head (3 T, 3 mm, two echoes 2.3/4.6 ms) has eyes, sinuses, face and neck in the field of
view. Prints the mask's volume for the default BET mask and the threshold mask, and writes
``benchmarks/figures/philips_mask.png``: each mask over the first-echo magnitude in a
mid-sagittal, a coronal and three axial slices (orbits, skull base, lowest brain slices).

    python benchmarks/philips_mask.py
"""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw

from _bench import save_grid
from qsmflow import masking

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "philips_head" / "nifti"
OUT = Path(__file__).with_name("figures") / "philips_mask.png"
SCALE = 4


def _tile(img, mask, axis, index, title):
    sl = np.take(img, index, axis=axis).astype(float)
    m = np.take(mask, index, axis=axis)
    g = np.clip(sl / np.percentile(img, 99.5), 0, 1) * 255
    rgb = np.stack([g, g, g], -1)
    rgb[m] = rgb[m] * [0.55, 0.55, 0.55] + [110, 0, 0]
    rgb = np.rot90(rgb).astype(np.uint8)  # first axis left-right, second up
    tile = Image.fromarray(rgb).resize((rgb.shape[1] * SCALE, rgb.shape[0] * SCALE), Image.NEAREST)
    canvas = Image.new("RGB", (tile.width, tile.height + 18), "white")
    canvas.paste(tile, (0, 18))
    ImageDraw.Draw(canvas).text((2, 2), title, fill="black")
    return canvas


def main():
    if not DATA.exists():
        raise SystemExit(f"sample data not found: {DATA}")
    mag = np.stack([nib.load(DATA / f"sub-01_echo-{e}_part-mag_MEGRE.nii").get_fdata() for e in (1, 2)], -1)
    mag = mag.astype(np.float32)
    vs = (3.0, 3.0, 3.0)
    rows = []
    for name, func in (("bet (default)", masking.bet_brain_mask), ("threshold", masking.magnitude_mask)):
        t0 = time.perf_counter()
        mask = func(mag, vs)
        dt = time.perf_counter() - t0
        litres = mask.sum() * np.prod(vs) / 1e6
        low = int(np.nonzero(mask.any(axis=(0, 1)))[0].min())
        print(f"{name}: {litres:.2f} L in {dt:.1f} s; lowest slice {low}")
        tiles = [_tile(mag[..., 0], mask, 0, 40, f"{name}: {litres:.2f} L, mid-sagittal"),
                 _tile(mag[..., 0], mask, 1, 56, "coronal through the globes"),
                 _tile(mag[..., 0], mask, 2, 14, "axial z=14: orbits"),
                 _tile(mag[..., 0], mask, 2, 9, "axial z=9: skull base"),
                 _tile(mag[..., 0], mask, 2, max(low, 4), f"axial z={max(low, 4)}: lowest brain")]
        rows.append(tiles)
    save_grid(rows, OUT)


if __name__ == "__main__":
    main()
