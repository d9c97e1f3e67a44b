"""A real anatomy for the benchmarks: the Zubal head, scanned by the phantom's forward model.

Every other benchmark head is drawn by :func:`qsmflow.phantom.simulate_head` (procedural
anatomy, one seed per head). This one is the Zubal head (``../shared/data/zubal``): a
segmentation of one adult's MRI into 57 structures (cortex by lobe, white matter, ventricles,
caudate, putamen, pallidus, thalamus, cerebellum, brainstem, superior sagittal sinus, skull,
scalp fat and muscle, eyes and optic nerves, sinuses, mouth, tongue, jaw, teeth), drawn by
other people for other purposes, so it holds none of the shapes qsmflow was tuned on.

Its structures get the phantom's tissue values (:data:`qsmflow.phantom.TISSUES`: χ, R2*, M0,
T1) and textures, and go through the phantom's own forward model: the dipole field of the
whole head (air +9.4 ppm away from tissue; the head outside the field of view, and a neck
continued 60 mm below the segmentation's last slice, on the segmentation's grid), a 2nd-order
shim over the brain, the phase offset, fat's spectrum, T1 saturation of a spoiled GRE, echoes
formed on a grid twice (``oversample``) finer than the output and k-space cropped to it, the
32-channel receive profile and complex noise. What the segmentation lacks, it lacks here:
veins other than the superior sagittal sinus and the segmentation's "blood pool" and venous
part of its "sinuses" label, substantia nigra, red and dentate nuclei, cerebellar white
matter (its cerebellum is one structure: cerebellar grey matter here). The skull's diploë is
not segmented: skull more than 1.5 mm from its surfaces is given the phantom's marrow.

The brain mask. The segmentation's brain mask (cerebrum, cerebellum, brainstem, CSF and
ventricles, the sinuses) reaches the skull's inner table, with no dura or CSF layer between
(the procedural head has both), and in places (the orbits' roof, the sinuses) touches fat,
muscle, eye or air directly. The truth's brain mask, the region χ is scored on and whose
sources make the true local field, is the voxels at least half inside it that hold no tissue
from outside the skull's inner table (bone, marrow, air, fat, muscle, eye, nerve), as on the
procedural heads (none of whose brain voxels holds bone): a voxel half bone has a true χ of
-1.1 ppm that no GRE can see (bone gives no signal), and at 2 mm about a hundred such voxels
carried 79 % of the χ error.

Voxel size. The file is 384×384×192 voxels said to be 1 mm, the original 256×256×128 grid
upsampled 1.5×; taken as 1 mm the brain mask holds 3.2 L and the cerebrum is 249 mm long.
Zubal et al. built the head from an MRI of 1.1×1.1×1.4 mm voxels; at 1.1/1.5 × 1.1/1.5 ×
1.4/1.5 mm the brain mask holds 1.63 L and the cerebrum measures 132 × 183 × 120 mm (left-
right, front-back, top to the temporal lobes' base), an adult's. Those are the sizes used.

    python benchmarks/matrix.py --variants "Zubal head, 1 mm" "Zubal head, 2 mm"
    python benchmarks/mask.py --heads "Zubal head, 1 mm"

References
----------
Zubal IG, Harrell CR, Smith EO, Rattner Z, Gindi G, Hoffer PB. Computerized
three-dimensional segmented human anatomy. Med Phys 1994;21:299-302. doi:10.1118/1.597290

Biondetti E, Karsa A, Grussu F, et al. Multi-echo quantitative susceptibility mapping: how to
combine echoes for accuracy and precision at 3 Tesla. Magn Reson Med 2022;88:2101-2116.
doi:10.1002/mrm.29365 (the phantom's use for QSM; its tissue groups)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
from scipy import ndimage

from qsmflow._shared import units
from qsmflow.phantom import LABEL_NAMES, TISSUES, HeadPhantom, r2star_at_field
from qsmflow.phantom import labels as L
from qsmflow.phantom import simulate as sim
from qsmflow.phantom.fields import dipole_fields, remove_shim
from qsmflow.phantom.model import FAT_FRACTION
from qsmflow.phantom.signal import PhaseOffset, affine, block_mean, receive_profile, upsample, voxel_axes, wrap
from qsmflow.phantom.tissue import tissue_properties

logger = logging.getLogger(__name__)
F32 = np.float32

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "zubal"
#: The segmentation's voxel (mm): the original 1.1 × 1.1 × 1.4 mm upsampled 1.5× (see above).
NATIVE_MM = np.array([1.1, 1.1, 1.4]) / 1.5
#: Field of view (mm; left-right, front-back, bottom-top) around the brain: the face's front
#: and the neck below the foramen magnum fall outside it, as in a whole-brain scan; the vertex's
#: scalp (12 mm above the brain) and the ears inside it.
FOV_MM = (192.0, 224.0, 168.0)
NECK_MM = 60.0  # the neck continued below the segmentation's last slice (its field reaches the brainstem)
DIPLOE_MM = 1.5  # skull deeper than this from both of its surfaces is marrow

# Zubal structure → phantom tissue (the groups of Biondetti et al.'s scripts; their "brain -
# other" split here: spinal cord, pons and medulla are brainstem, the falx is dura)
_ZUBAL = {
    L.AIR: (0, 15),  # outside, pharynx (the airway); label 104 outside the brain mask below
    L.SOFT: (1, 9, 30, 72, 74, 78, 82, 100),  # skin, muscle, cartilage, parotid, lacrimal, tongue, septum, turbinates
    L.CSF: (2, 75),  # CSF, spinal canal
    L.BRAINSTEM: (3, 85, 91),  # spinal cord, medulla, pons
    L.BONE: (4, 5, 70, 71, 76, 81, 102, 125),  # skull, spine, dens, jaw, palate, mandible horn, zygoma, teeth
    L.FAT: (22, 98),
    L.SINUS: (23, 84),  # blood pool, superior sagittal sinus; label 104 inside the brain mask below
    L.WM: (26, 83, 107, 108, 111),  # fornix, white matter, internal capsule, septum pellucidum, corpus callosum
    L.CB_GM: (77,),
    L.GM: (89, 95, 96, 97, 99, 103, 112, 114, 117, 118, 124),  # lobes, hippocampus, pituitary, uncus, insula, amygdala
    L.VENTRICLE: (92, 115, 122, 123),
    L.CAUDATE: (101,),
    L.PUTAMEN: (105,),
    L.PALLIDUS: (120,),
    L.THALAMUS: (109,),
    L.NERVE: (106,),
    L.EYE: (110, 116, 119, 121),  # eyeball, its front, eye, lens
    L.DURA: (113,),  # falx
}
_SINUSES_MOUTH = 104
# tissue outside the skull's inner table: none of it in a voxel of the truth's brain mask
_EXTRACRANIAL = (L.AIR, L.SOFT, L.BONE, L.MARROW, L.FAT, L.EYE, L.NERVE)


def available() -> bool:
    return (DATA / "zubal_phantom_1iso.nii.gz").is_file() and (DATA / "zubalPhantom_brainMask_1iso.nii.gz").is_file()


def native_labels() -> tuple[np.ndarray, np.ndarray]:
    """The segmentation as phantom tissue labels (uint8) and its brain mask, on the native grid
    with the neck continued below it (replicating its lowest head slice)."""
    z = np.asarray(nib.load(DATA / "zubal_phantom_1iso.nii.gz").dataobj).astype(np.int16)
    brain = np.asarray(nib.load(DATA / "zubalPhantom_brainMask_1iso.nii.gz").dataobj) > 0
    lut = np.full(max(int(z.max()), 125) + 1, 255, np.uint8)
    for ours, theirs in _ZUBAL.items():
        lut[list(theirs)] = ours
    lut[_SINUSES_MOUTH] = L.AIR
    lab = lut[z]
    # the label's venous part (the lateral and straight sinuses) lies mostly inside the brain
    # mask: each connected piece mostly inside it is sinus, whole, the rest air
    pieces, n = ndimage.label(z == _SINUSES_MOUTH)
    inside = ndimage.mean(brain, pieces, np.arange(1, n + 1))
    lab[np.isin(pieces, 1 + np.flatnonzero(inside > 0.5))] = L.SINUS
    if (lab == 255).any():
        raise SystemExit(f"Zubal labels without a tissue: {sorted(set(z[lab == 255].tolist()))}")
    # diploë: skull deeper than DIPLOE_MM from tissue on both sides
    skull = lab == L.BONE
    depth = ndimage.distance_transform_edt(skull, sampling=NATIVE_MM)
    lab[skull & (depth > DIPLOE_MM)] = L.MARROW
    # the neck: the lowest slice holding head tissue, continued downwards
    z_lo = int(np.flatnonzero((lab != L.AIR).any(axis=(0, 1)))[0])
    n_neck = int(round(NECK_MM / NATIVE_MM[2]))
    lab = np.concatenate([np.repeat(lab[:, :, z_lo:z_lo + 1], n_neck, axis=2), lab[:, :, z_lo:]], axis=2)
    brain = np.concatenate([np.repeat(brain[:, :, z_lo:z_lo + 1], n_neck, axis=2), brain[:, :, z_lo:]], axis=2)
    return lab, brain


def _fov_origin(brain: np.ndarray) -> np.ndarray:
    """Native-grid position (mm) of the FOV's low corner: centred on the brain in x and y, its
    top 16 mm above the brain's."""
    idx = [np.flatnonzero(brain.any(axis=tuple(a for a in range(3) if a != i))) for i in range(3)]
    lo = np.array([i[0] for i in idx]) * NATIVE_MM
    hi = (np.array([i[-1] for i in idx]) + 1) * NATIVE_MM
    centre = (lo + hi) / 2
    return np.array([centre[0] - FOV_MM[0] / 2, centre[1] - FOV_MM[1] / 2, hi[2] + 16.0 - FOV_MM[2]])


def _sample(native: np.ndarray, origin, axes) -> np.ndarray:
    """Nearest-neighbour values of a native-grid volume at the points ``origin + axes`` (mm)."""
    ix = [np.clip(np.floor((o + a) / d).astype(int), 0, n - 1)
          for o, a, d, n in zip(origin, axes, NATIVE_MM, native.shape)]
    return native[np.ix_(*ix)]


def _outside_field(lab_native, origin, fov, fine_axes_corner, b0_dir) -> np.ndarray:
    """Field (ppm) on the fine grid of the head outside the FOV, computed on the native grid."""
    chi = np.array([0.0 if k not in LABEL_NAMES else TISSUES[LABEL_NAMES[k]].chi_ppm - TISSUES["air"].chi_ppm
                    for k in range(256)], F32)
    chi[L.AIR] = 0.0
    src = chi[lab_native]
    lo = np.round(origin / NATIVE_MM).astype(int)
    hi = np.round((origin + fov) / NATIVE_MM).astype(int)
    inside = tuple(slice(max(a, 0), max(b, 0)) for a, b in zip(lo, hi))
    src[inside] = 0.0  # those sources are on the fine grid
    field = dipole_fields([src], NATIVE_MM, b0_dir)[0]
    del src
    # trilinear at the fine voxel centres (native voxel centres sit at (i + 0.5) · size)
    coords = [(origin[i] + fine_axes_corner[i]) / NATIVE_MM[i] - 0.5 for i in range(3)]
    out = np.empty(tuple(c.size for c in coords), F32)
    gx, gy = np.meshgrid(coords[0], coords[1], indexing="ij")
    for k, cz in enumerate(coords[2]):
        out[:, :, k] = ndimage.map_coordinates(field, [gx, gy, np.full_like(gx, cz)], order=1, mode="nearest")
    return out


def simulate_zubal(voxel=(1.0, 1.0, 1.0), *, echo_times=(0.004, 0.010, 0.016, 0.022, 0.028), field_strength=3.0,
                   b0_direction=(0.0, 0.0, 1.0), snr=100.0, seed=1, receive_coils=32, tr_flip=None,
                   oversample=2) -> HeadPhantom:
    """The Zubal head scanned with the given acquisition (3D, axial: its voxel axes are the
    segmentation's), as :func:`qsmflow.phantom.simulate_head` scans the procedural head."""
    t_start = time.perf_counter()
    vs = np.asarray(voxel, float)
    te = np.asarray(echo_times, float)
    b0 = float(field_strength)
    b0_dir = np.asarray(b0_direction, float) / np.linalg.norm(b0_direction)
    shape = tuple(int(round(f / v)) for f, v in zip(FOV_MM, vs))
    fov = np.asarray(shape) * vs
    os_ = int(oversample)
    fine_vs = vs / os_
    fine_shape = tuple(n * os_ for n in shape)
    lab_n, brain_n = native_labels()
    origin = _fov_origin(brain_n)
    corner = [(np.arange(n) + 0.5) * d for n, d in zip(fine_shape, fine_vs)]  # mm from the FOV's corner
    fine_axes = voxel_axes(fine_shape, fine_vs)  # mm from the FOV's centre
    out_axes = voxel_axes(shape, vs)
    head_seq, phase_seq, noise_seq = np.random.SeedSequence(seed).spawn(3)
    saturation = sim._saturation(*(tr_flip or (None, None)), b0, te)

    # 1. anatomy and tissue properties on the fine grid
    painted = SimpleNamespace(labels=_sample(lab_n, origin, corner), brain=_sample(brain_n, origin, corner))
    painted.vessel_cover = np.zeros(painted.labels.shape, np.uint8)
    painted.vessel_type = painted.vessel_cover
    model = SimpleNamespace(texture_seeds=head_seq.spawn(3))
    chi, r2s, m0, brain, air = tissue_properties(painted, model, fine_axes, TISSUES, saturation)
    r2s = r2star_at_field(r2s, b0)
    fraction = np.zeros(256, F32)
    for name, ff in FAT_FRACTION.items():
        fraction[TISSUES[name].label] = ff
    flat = painted.labels.reshape(-1)
    fat_idx = np.flatnonzero(fraction[flat])
    fat = (fat_idx, fraction[flat[fat_idx]])
    foreign = block_mean(np.isin(painted.labels, _EXTRACRANIAL), os_) > 0
    del painted, flat

    # 2-3. fields (the body outside the FOV on the native grid) and the truth on the output grid
    t0 = time.perf_counter()
    brain_mask = (block_mean(brain, os_) >= 0.5) & ~foreign  # see the module's note on the brain mask
    del foreign
    source = np.where(air, F32(0.0), chi - F32(TISSUES["air"].chi_ppm))
    local_src = np.where(upsample(brain_mask, os_), chi, F32(0.0))
    total, local = dipole_fields([source, local_src], fine_vs, b0_dir)
    del source, local_src
    total += _outside_field(lab_n, origin, fov, corner, b0_dir)
    remove_shim(total, brain, fine_axes)
    logger.info("zubal: fields in %.1f s", time.perf_counter() - t0)
    gamma_b0 = units.hz_per_ppm(b0)
    truth = dict(chi=block_mean(chi, os_), r2star=block_mean(r2s, os_), m0=block_mean(m0, os_),
                 total_field_hz=block_mean(total, os_) * F32(gamma_b0), local_field_ppm=block_mean(local, os_))
    del chi, brain, air, local

    # 4. the signal: phase offset, echoes on the fine grid k-space cropped, coils, noise
    phi0 = PhaseOffset(np.random.default_rng(phase_seq), fov)
    signal = sim._echoes(te, phi0(fine_axes), total, gamma_b0, m0, r2s, None, fat, shape, os_, None)
    del total, m0, r2s
    sigma, profile = _coils_and_noise(signal, out_axes, receive_coils, brain_mask, snr, noise_seq)
    labels = _sample(lab_n, origin, [(np.arange(n) + 0.5) * d for n, d in zip(shape, vs)]).astype(np.int16)
    logger.info("zubal: %s at %s mm in %.1f s", shape, vs.tolist(), time.perf_counter() - t_start)
    return HeadPhantom(
        magnitude=np.ascontiguousarray(np.moveaxis(np.abs(signal), 0, -1), dtype=F32),
        phase=np.ascontiguousarray(np.moveaxis(wrap(np.angle(signal)), 0, -1), dtype=F32),
        echo_times=te, field_strength=b0, voxel_size=vs, b0_direction=b0_dir, affine=affine(shape, vs, b0_dir),
        chi=truth["chi"], r2star=truth["r2star"], m0=truth["m0"], labels=labels, brain_mask=brain_mask,
        total_field_hz=truth["total_field_hz"], local_field_ppm=truth["local_field_ppm"],
        phase_offset=phi0(out_axes), noise_sigma=sigma, label_names=dict(LABEL_NAMES), mwf=None, slice_axis=None,
        receive_sensitivity=profile)


def _coils_and_noise(signal, out_axes, receive_coils, brain_mask, snr, noise_seq):
    """The phantom's receive array and noise (:func:`qsmflow.phantom.simulate`'s), its helmet
    moved and stretched per axis from the procedural brain's box inside its FOV to this one's,
    so that it sits around this head."""
    if not receive_coils:
        return sim._coils_and_noise(signal, out_axes, 0, brain_mask, snr, noise_seq)
    idx = [np.flatnonzero(brain_mask.any(axis=tuple(a for a in range(3) if a != i))) for i in range(3)]
    step = [a[1] - a[0] for a in out_axes]
    lo = np.array([a[i[0]] - d / 2 for a, i, d in zip(out_axes, idx, step)])
    hi = np.array([a[i[-1]] + d / 2 for a, i, d in zip(out_axes, idx, step)])
    # the procedural brain inside its FOV (1 mm matrix head): box 122 x 149 x 140 mm, centre
    # (0.5, -14.5, 0.3) mm in the helmet's frame; both boxes reach their FOV's bottom face
    stretch = (hi - lo) / np.array([122.0, 149.0, 140.0])
    centre_here = (lo + hi) / 2  # mm from the FOV centre
    axes = [(a - c) / s for a, c, s in zip(out_axes, centre_here, stretch)]
    prof = receive_profile(axes, int(receive_coils), fov_centre=np.array([0.5, -14.5, 0.3]))
    prof /= F32(prof[brain_mask].mean())
    signal *= prof[None]
    sigma, _ = sim._coils_and_noise(signal, out_axes, 0, brain_mask, snr, noise_seq)
    return sigma, prof



# --------------------------------------------------------------------------- the figure

FIGURE = Path(__file__).with_name("figures") / "zubal.png"
_SCALE = 2


def _panel(vol, index, axis, lo, hi, outline=None, title=""):
    from PIL import Image, ImageDraw
    sl = np.rot90(np.take(vol, index, axis=axis).astype(float))
    g = (np.clip((sl - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    rgb = np.stack([g, g, g], -1)
    if outline is not None:
        m = np.rot90(np.take(outline, index, axis=axis))
        edge = m & ~ndimage.binary_erosion(m)
        rgb[edge] = (230, 30, 30)
    tile = Image.fromarray(rgb).resize((rgb.shape[1] * _SCALE, rgb.shape[0] * _SCALE), Image.NEAREST)
    canvas = Image.new("RGB", (tile.width + 4, tile.height + 16), "white")
    canvas.paste(tile, (0, 16))
    ImageDraw.Draw(canvas).text((2, 2), title, fill="black")
    return canvas


def main():
    """Simulate (or read from the matrix's cache) the 1 mm Zubal head, run the default chain
    and write ``benchmarks/figures/zubal.png``: the mask on the first echo, the true χ, the
    chain's χ and their difference, in three planes through the basal ganglia and one through
    the orbits."""
    import argparse

    import matrix
    from _bench import save_grid
    from qsmflow import pipeline
    from qsmflow.io import GreInput
    from qsmflow.phantom import metrics

    ap = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    ap.add_argument("--variant", default="Zubal head, 1 mm", choices=[v for v, s in matrix.VARIANTS.items()
                                                                      if s.get("anatomy") == "zubal"])
    args = ap.parse_args()
    if not available():
        raise SystemExit(f"the Zubal head is not at {DATA}")
    head = matrix.simulate(matrix.spec(args.variant))
    data = GreInput.from_arrays(head.magnitude, head.phase, head.echo_times, head.field_strength,
                                affine=head.affine, prefix="zubal")
    res = pipeline.run(data, pipeline.Options())
    sc = metrics.evaluate(res, head)
    print(f"{args.variant}: χ NRMSE {sc['chi_nrmse']:.1f} %, deep-grey slope {sc['deep_grey_slope']:.2f}, "
          f"mask {res.mask.sum() * np.prod(head.voxel_size) / 1e6:.2f} L (true brain "
          f"{head.brain_mask.sum() * np.prod(head.voxel_size) / 1e6:.2f} L)")
    ev = res.eroded_mask & head.brain_mask
    chi = np.where(ev, res.chi - res.chi[ev].mean(), 0)
    truth = np.where(ev, head.chi - head.chi[ev].mean(), 0)
    mag = head.magnitude[..., 0]
    top = float(np.percentile(mag, 99.5))
    gp = np.argwhere(head.labels == TISSUES["globus_pallidus"].label).mean(0).round().astype(int)
    eye = np.argwhere(head.labels == TISSUES["eye"].label)
    orbit = int(np.median(eye[:, 2])) if len(eye) else gp[2]
    rows = []
    for what, vol, lo, hi, outline in (("first echo, mask (red)", mag, 0, top, res.mask),
                                       ("true chi (ppm, -0.1..0.2)", truth, -0.1, 0.2, None),
                                       ("qsmflow chi", chi, -0.1, 0.2, None),
                                       ("qsmflow - true (-0.1..0.1)", chi - truth, -0.1, 0.1, None)):
        rows.append([_panel(vol, gp[2], 2, lo, hi, outline, f"{what}: axial"),
                     _panel(vol, gp[1], 1, lo, hi, outline, "coronal"),
                     _panel(vol, gp[0], 0, lo, hi, outline, "sagittal"),
                     _panel(vol, orbit, 2, lo, hi, outline, "axial, orbits")])
    save_grid(rows, FIGURE)


if __name__ == "__main__":
    main()
