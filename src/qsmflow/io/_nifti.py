"""One NIfTI file: its data, voxel size and B0 direction from the affine, its JSON sidecar,
its BIDS entities."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np

from .._shared import checks as _checks


def _load_image(path) -> nib.Nifti1Image:
    p = Path(path)
    if not p.exists():
        raise ValueError(f"file not found: {p}")
    if p.is_dir():
        hint = _dicom_hint(p)
        raise ValueError(f"{p} is a folder of DICOM files, not NIfTI: {hint}" if hint else
                         f"{p} is a folder, not a NIfTI file")
    try:
        img = nib.load(str(p))
    except Exception as exc:  # nibabel raises many types for bad files
        if _is_dicom(p):
            raise ValueError(f"{p} is a DICOM file, not NIfTI: {_dicom_hint(p.parent)}") from exc
        raise ValueError(f"cannot read {p} as NIfTI ({type(exc).__name__}: {exc}); is the file complete?") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ValueError(f"{p} is not a NIfTI image ({type(img).__name__})")
    return img


def _is_dicom(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(132)[128:132] == b"DICM"


def _dicom_hint(folder: Path) -> str:
    """What to do with a folder of DICOM (a few files looked at), or '' when it holds none."""
    files = [f for f in sorted(folder.iterdir())[:20] if f.is_file()] if folder.is_dir() else []
    if any(_is_dicom(f) for f in files):
        return (f"run it with qsmflow run --dicom {folder}, or convert it with qsmflow dicom {folder} BIDS_DIR "
                "--subject ID")
    return ""


def _read_data(img, path, dtype=np.float64) -> np.ndarray:
    try:
        return np.asarray(img.dataobj, dtype=dtype)
    except Exception as exc:
        raise ValueError(f"cannot read the voxels of {path} ({type(exc).__name__}: {exc}); is the file truncated?") from exc


def voxel_size_from_affine(affine) -> np.ndarray:
    """Voxel size (mm): the lengths of the affine's first three columns."""
    return np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)


# Voxel sides (mm) outside which a header is taken to be in other units: a header written in
# metres gives 0.0005-0.005 "mm", and no MRI of a head or brain (human or animal) has voxels
# below 20 µm or above 20 mm. Every size in mm enters χ through the dipole kernel's geometry
# and every distance (masks, filters), so a wrong unit is a silent wrong answer.
VOXEL_MM_RANGE = (0.02, 20.0)


def check_voxel_size(affine, path) -> np.ndarray:
    """The voxel size (mm) of ``affine``, refused when no head scan can have it (a header in
    metres, or a broken affine), naming ``path``."""
    vs = voxel_size_from_affine(affine)
    lo, hi = VOXEL_MM_RANGE
    if not np.all((vs >= lo) & (vs <= hi)):
        sizes = " x ".join(f"{v:.3g}" for v in vs)
        hint = " (a header in metres? then x 1000)" if np.all(vs < lo) else ""
        raise ValueError(f"{path}: the header gives voxels of {sizes} mm{hint}, outside the {lo:g}-{hi:g} mm of any "
                         "head scan; fix the NIfTI header's voxel size (pixdim and the qform/sform affine), "
                         "e.g. by converting the DICOM again")
    return vs


# Axes of the voxel grid further than this from perpendicular (degrees) are reported: a
# sheared grid's voxel sizes and B0 direction, read from the affine's columns, are approximate,
# and every stage takes the voxels as rectangular boxes.
SHEAR_DEG = 1.0


def shear_warning(affine) -> str | None:
    """A warning when the affine's axes are not perpendicular (a sheared grid), else None."""
    cols = np.asarray(affine, float)[:3, :3]
    unit = cols / np.maximum(np.linalg.norm(cols, axis=0), 1e-12)
    cos = unit.T @ unit
    worst = float(np.degrees(np.arcsin(min(1.0, np.max(np.abs(cos[np.triu_indices(3, 1)]))))))
    if worst <= SHEAR_DEG:
        return None
    return (f"the voxel grid is sheared: its axes are up to {worst:.1f} degrees from perpendicular (a gantry tilt or "
            "a resampling), while qsmflow takes voxels to be rectangular boxes; voxel sizes and the B0 direction "
            "read from the header are then approximate. Reconstruct or resample the scan on a rectangular grid")


def b0_direction_from_affine(affine) -> np.ndarray:
    """B0 direction in voxel axes: ``R.T @ (0, 0, 1)`` with ``R`` the affine's rotation.

    World +z (the scanner bore in NIfTI's scanner-based RAS frame) is the B0 axis.
    """
    return superior_from_affine(affine)


def superior_from_affine(affine) -> np.ndarray:
    """The head's superior direction in voxel axes: world +z of NIfTI's RAS+ frame, ``R.T @ (0, 0, 1)``.

    The same axis as :func:`b0_direction_from_affine` reads (for a patient lying head first
    in the bore), but an anatomical direction: it stays the head's top whatever sign or
    direction a user gives B0 (``--b0-direction``), to which the dipole kernel is blind.
    """
    a = np.asarray(affine, float)[:3, :3]
    vs = voxel_size_from_affine(affine)
    if np.any(vs == 0):
        raise ValueError("the affine has a zero-length axis; the file's header is broken")
    rot = a / vs
    return _checks.b0_direction(rot.T @ np.array([0.0, 0.0, 1.0]))


def read_sidecar(nifti_path) -> dict:
    """The JSON sidecar beside a NIfTI file (``x.nii[.gz]`` -> ``x.json``), or ``{}``."""
    p = Path(nifti_path)
    name = re.sub(r"\.nii(\.gz)?$", "", p.name)
    js = p.with_name(name + ".json")
    if not js.exists():
        return {}
    try:
        with open(js, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the sidecar {js}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"the sidecar {js} does not hold a JSON object")
    return data


_ENTITY = re.compile(r"(?:^|_)([a-zA-Z0-9]+)-([a-zA-Z0-9]+)")


def bids_entities(path) -> dict:
    """BIDS ``key-value`` entities of a file name (``sub-01_echo-2_part-phase_MEGRE``)."""
    name = re.sub(r"\.nii(\.gz)?$", "", Path(path).name)
    return {k: v for k, v in _ENTITY.findall(name)}


def bids_prefix(path) -> str:
    """Output prefix from a file name: its entities without ``echo``/``part``, or the stem.

    ``sub-01_ses-1_echo-1_part-mag_MEGRE.nii.gz`` -> ``sub-01_ses-1``; a non-BIDS
    name such as ``Mag.nii`` -> ``Mag``.
    """
    name = re.sub(r"\.nii(\.gz)?$", "", Path(path).name)
    ents = [(k, v) for k, v in _ENTITY.findall(name) if k not in ("echo", "part")]
    if ents:
        return "_".join(f"{k}-{v}" for k, v in ents)
    return name or "qsmflow"
