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
