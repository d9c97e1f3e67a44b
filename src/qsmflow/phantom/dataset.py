"""A simulated head written as a BIDS MEGRE dataset with its ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import OutputSet

__all__ = ["phantom_paths", "write_phantom_dataset"]

_PHANTOM_SUBJECT = "phantom"


def phantom_paths(root, subject: str = _PHANTOM_SUBJECT, n_echoes: int = 1) -> dict:
    """Where :func:`write_phantom_dataset` puts the raw echoes and the truth maps."""
    root = Path(root)
    anat = root / f"sub-{subject}" / "anat"
    truth = root / "derivatives" / "truth" / f"sub-{subject}" / "anat"
    return {
        "mag": [anat / f"sub-{subject}_echo-{e + 1}_part-mag_MEGRE.nii.gz" for e in range(n_echoes)],
        "phase": [anat / f"sub-{subject}_echo-{e + 1}_part-phase_MEGRE.nii.gz" for e in range(n_echoes)],
        "truth": truth,
    }


def _integer_phase(phase: np.ndarray) -> np.ndarray:
    """Phase (rad, [-π, π)) as Siemens-style int16 in -4096..4095."""
    q = np.round(np.asarray(phase, np.float64) * (4096 / np.pi))
    return np.clip(q, -4096, 4095).astype(np.int16)


def write_phantom_dataset(root, head, *, integer_phase: bool = False, subject: str = _PHANTOM_SUBJECT,
                          force: bool = False) -> list[Path]:
    """Write a simulated head as a BIDS MEGRE dataset plus its ground truth.

    Raw echoes go to ``sub-<subject>/anat/sub-<subject>_echo-<n>_part-{mag,phase}_MEGRE.nii.gz``
    with sidecars (EchoTime, EchoNumber, MagneticFieldStrength); the truth (χ ppm,
    R2* 1/s, brain mask, labels, total field Hz, local field ppm) goes to
    ``derivatives/truth/sub-<subject>/anat``.
    """
    root = Path(root)
    n_e = head.magnitude.shape[3]
    paths = phantom_paths(root, subject, n_e)
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    written = []
    with OutputSet(root, force=force) as out:
        written.append(out.json("dataset_description.json", {
            "Name": "qsmflow simulated head", "BIDSVersion": "1.9.0", "DatasetType": "raw",
            "GeneratedBy": [{"Name": "qsmflow simulate"}]}))
        for e in range(n_e):
            common = {"EchoTime": float(head.echo_times[e]), "EchoNumber": e + 1,
                      "MagneticFieldStrength": float(head.field_strength), "Manufacturer": "qsmflow phantom",
                      "MRAcquisitionType": "3D" if head.slice_axis is None else "2D"}
            if head.slice_axis is not None:
                common["SliceEncodingDirection"] = "ijk"[head.slice_axis]
            written.append(out.nifti(rel(paths["mag"][e]), head.magnitude[..., e], head.affine))
            written.append(out.json(rel(paths["mag"][e]).replace(".nii.gz", ".json"), {**common, "ImageType": ["M"]}))
            ph = _integer_phase(head.phase[..., e]) if integer_phase else head.phase[..., e]
            written.append(out.nifti(rel(paths["phase"][e]), ph, head.affine,
                                     dtype=np.int16 if integer_phase else np.float32))
            written.append(out.json(rel(paths["phase"][e]).replace(".nii.gz", ".json"), {**common, "ImageType": ["P"]}))
        t = rel(paths["truth"])
        pre = f"{t}/sub-{subject}"
        truth = {
            "Chimap": (head.chi, "ppm"), "R2starmap": (head.r2star, "1/s"), "localfield": (head.local_field_ppm, "ppm"),
            "fieldmap": (head.total_field_hz, "Hz"),
        }
        for suffix, (arr, units) in truth.items():
            written.append(out.nifti(f"{pre}_{suffix}.nii.gz", arr, head.affine))
            written.append(out.json(f"{pre}_{suffix}.json", {"Units": units}))
        written.append(out.nifti(f"{pre}_mask.nii.gz", head.brain_mask, head.affine))
        written.append(out.nifti(f"{pre}_dseg.nii.gz", head.labels, head.affine, dtype=np.int16))
        tsv = "index\tname\n" + "".join(f"{k}\t{v}\n" for k, v in sorted(head.label_names.items()))
        written.append(out.text(f"{pre}_dseg.tsv", tsv))
        written.append(out.json(f"{rel(paths['truth'].parents[2])}/dataset_description.json", {
            "Name": "qsmflow phantom ground truth", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "qsmflow simulate"}],
            "B0Direction": [float(v) for v in head.b0_direction], "NoiseSigma": float(head.noise_sigma)}))
    return written
