"""BET on the matrix's slabs at their faces, with and without dividing out the excitation's fall-off.

A slab-selective 3D scan's signal falls toward the slab's faces with the flip angle
(``matrix.slab_profile``). For each slab row this prints the share of the true brain the
BET mask covers in the first and last slices and over the slab, and the mask's share
outside the brain, once as qsmflow runs (the fall-off divided out, every face that cuts the
head extended) and once with the faces left as they are (``bet._face_rolloff`` an identity,
only the faces the first surface leaves by extended, as at stop 46). It draws the 64 mm
slab's lowest slices with both masks to ``figures/slab_faces.png``.

    python benchmarks/slab_faces.py        # ~1 min
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import matrix
from qsmflow import masking
from qsmflow.masking import bet

ROWS = ("axial slab 64 mm, 1 mm", "axial slab 80 mm, 1x1x2 mm", "slab 64 mm tilted 20°, 1 mm",
        "slab 64 mm tilted 35°, 1x1x1.4 mm")
FIGURE = Path(__file__).with_name("figures") / "slab_faces.png"


def masks(head):
    """The BET mask as qsmflow makes it, and as it was made before the fall-off was handled."""
    now = masking.bet_brain_mask(head.magnitude, head.voxel_size)
    saved = bet._face_rolloff, bet._bright_faces
    try:
        # stop 46: no fall-off divided out, only the faces the first surface left by extended
        bet._face_rolloff, bet._bright_faces = (lambda img, vs, faces: img), (lambda img: [(False, False)] * 3)
        before = masking.bet_brain_mask(head.magnitude, head.voxel_size)
    finally:
        bet._face_rolloff, bet._bright_faces = saved
    return now, before


def cover(mask, brain, k):
    return float((mask[:, :, k] & brain[:, :, k]).sum() / max(brain[:, :, k].sum(), 1))


def main():
    print("| row | mask | brain covered, first / second / last slice % | over the slab % | mask outside the brain % |")
    print("|---|---|---|---|---|")
    for name in ROWS:
        head = matrix.simulate(matrix.spec(name))
        brain = head.brain_mask
        now, before = masks(head)
        for label, m in (("faces left as they are (stop 46)", before), ("fall-off divided out", now)):
            print(f"| {name} | {label} | {100 * cover(m, brain, 0):.1f} / {100 * cover(m, brain, 1):.1f} / "
                  f"{100 * cover(m, brain, -1):.1f} | {100 * (m & brain).sum() / brain.sum():.1f} | "
                  f"{100 * (m & ~brain).sum() / m.sum():.1f} |", flush=True)
        if name == ROWS[0]:
            draw(head, now, before)


def draw(head, now, before):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mag = np.sqrt((head.magnitude ** 2).sum(-1))
    ks = (0, 1, 3, 8)
    fig, axes = plt.subplots(1, len(ks), figsize=(3.2 * len(ks), 3.9))
    for ax, k in zip(axes, ks):
        ax.imshow(mag[:, :, k].T, cmap="gray", origin="lower", vmin=0, vmax=np.percentile(mag, 99.5))
        ax.contour(head.brain_mask[:, :, k].T, [0.5], colors="yellow", linewidths=0.8)
        ax.contour(before[:, :, k].T, [0.5], colors="red", linewidths=0.8)
        ax.contour(now[:, :, k].T, [0.5], colors="lime", linewidths=0.8)
        ax.set_title(f"slice {k} ({matrix.slab_profile(mag.shape[2], head.voxel_size[2], 64.0)[k]:.2f} of the signal)",
                     fontsize=9)
        ax.axis("off")
    fig.suptitle("64 mm slab, lowest slices: true brain (yellow), BET before (red) and after (green) "
                 "the fall-off is divided out", fontsize=9)
    fig.tight_layout()
    FIGURE.parent.mkdir(exist_ok=True)
    fig.savefig(FIGURE, dpi=80)
    print(f"\nfigure: {FIGURE}")


if __name__ == "__main__":
    main()
