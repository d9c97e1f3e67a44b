"""Single maps in: a dual-echo phase difference, a mask or map volume, a field or noise map
with its unit."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np

from .._shared import checks as _checks
from .._shared.constants import AFFINE_TOLERANCE_MM
from ._nifti import _load_image, _read_data, bids_prefix, check_voxel_size, read_sidecar, voxel_size_from_affine
from ._phase import scale_phase
from ._read import _finite_magnitude, _stack
from ._sidecars import _check_not_swapped, _is_phasediff

log = logging.getLogger("qsmflow.io")



@dataclass
class PhaseDiffInput:
    """A dual-echo field-map acquisition given as a phase difference."""

    phasediff: np.ndarray  # (X, Y, Z) float32, radians in [-pi, pi)
    magnitude: np.ndarray  # (X, Y, Z) float32 (the first magnitude given)
    delta_te: float  # TE2 - TE1, seconds
    affine: np.ndarray
    voxel_size: np.ndarray
    finite: np.ndarray
    prefix: str
    provenance: dict = field(default_factory=dict)


def load_phasediff(phasediff, magnitude, *, delta_te=None, phase_scale: float | None = None,
                   prefix: str | None = None) -> PhaseDiffInput:
    """Load a phase-difference field map (e.g. Siemens ``gre_field_mapping``) and a magnitude.

    ``TE2 - TE1`` comes from ``delta_te`` (s) or the phase-difference sidecar's
    ``EchoTime1``/``EchoTime2`` (else the magnitudes' ``EchoTime``); the phase is
    scaled to radians by the rules of :func:`scale_phase`.
    """
    pd, affine, pd_sc, pd_paths, _, pd_dtype = _stack("phase", phasediff)
    if pd.shape[3] != 1:
        raise ValueError(f"--phasediff must be a single 3D phase-difference image, got {pd.shape[3]} volumes")
    mag, m_affine, mag_sc, _, _, _ = _stack("magnitude", magnitude)
    if mag.shape[:3] != pd.shape[:3]:
        raise ValueError(f"magnitude has shape {mag.shape[:3]} but the phase difference has shape {pd.shape[:3]}")
    if not np.allclose(affine, m_affine, atol=AFFINE_TOLERANCE_MM):
        raise ValueError("magnitude and phase difference are on different grids: their affines differ")
    _check_not_swapped(mag_sc, pd_sc)
    if delta_te is not None:
        dte, src = _checks.positive("--delta-te", delta_te), "--delta-te"
    else:
        sc = pd_sc[0]
        if _is_phasediff(sc):
            dte, src = float(sc["EchoTime2"]) - float(sc["EchoTime1"]), "sidecar EchoTime1/EchoTime2"
        else:
            tes = sorted(float(s["EchoTime"]) for s in mag_sc if "EchoTime" in s)
            if len(tes) < 2:
                raise ValueError("the echo-time difference is missing: no EchoTime1/EchoTime2 in the phase-difference "
                                 "sidecar; pass --delta-te (seconds; delta_te= in Python)")
            dte, src = tes[-1] - tes[0], "magnitude sidecars' EchoTime"
    if dte <= 0 or dte > 0.1:
        raise ValueError(f"the echo-time difference must be in seconds and positive, got {dte}")
    pd, mag = pd[..., 0], mag[..., 0]
    finite = np.isfinite(pd) & np.isfinite(mag)
    pd[~finite] = 0
    mag[~finite] = 0
    _finite_magnitude(mag, finite)
    rad, rule = scale_phase(pd[finite], on_disk_integer=np.issubdtype(pd_dtype, np.integer), phase_scale=phase_scale)
    out = np.zeros(pd.shape, np.float32)
    out[finite] = rad
    log.info("phase-difference units: %s; TE2 - TE1 = %.4g s (%s)", rule["rule"], dte, src)
    provenance = {"inputs": {"phasediff": [str(p) for p in pd_paths]}, "delta_te_s": dte, "delta_te_source": src,
                  "phase_scaling": rule, "voxel_size_mm": voxel_size_from_affine(affine).tolist()}
    return PhaseDiffInput(phasediff=out, magnitude=mag.astype(np.float32), delta_te=dte, affine=affine,
                          voxel_size=voxel_size_from_affine(affine), finite=finite,
                          prefix=prefix or bids_prefix(pd_paths[0]), provenance=provenance)


def load_volume(path, *, name: str = "volume", shape=None, affine=None, echoes: bool = False) -> np.ndarray:
    """Load a 3D NIfTI as float32, optionally checking it matches ``shape``/``affine`` (3D).

    With ``echoes``, a 4D NIfTI (one volume per echo) is accepted too."""
    img = _load_image(path)
    data = _read_data(img, path)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3 and not (echoes and data.ndim == 4):
        raise ValueError(f"{name} {path} must be a 3D volume{' or 4D (echoes)' if echoes else ''}, "
                         f"got shape {data.shape}")
    if shape is not None and data.shape[:3] != tuple(shape):
        raise ValueError(f"{name} {path} has shape {data.shape[:3]} but the data have shape {tuple(shape)}")
    if affine is not None and not np.allclose(img.affine, affine, atol=AFFINE_TOLERANCE_MM):
        raise ValueError(f"{name} {path} is on a different grid from the data: the affines differ")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{name} {path} holds NaN/Inf values")
    return data.astype(np.float32)


def load_mask(path, *, name: str = "--mask", shape=None, affine=None) -> np.ndarray:
    """Load a mask NIfTI (0 outside, 1 inside; a probability map in [0, 1] is cut at 0.5; 0 and
    one other value, as 0/255, is binary) as bool.

    Anything else is refused: an image given as the mask (a magnitude, say) would make every
    voxel above 0.5 "brain", and the chain would then run on the whole field of view."""
    data = load_volume(path, name=name, shape=shape, affine=affine)
    lo, hi = float(data.min()), float(data.max())
    if lo >= -1e-3 and hi > 1 + 1e-3 and np.unique(data).size == 2:  # 0 and one value (0/255, 0/100): binary
        data = (data > 0).astype(np.float32)
    elif lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"{name} {path} holds values from {lo:g} to {hi:g}, so it is not a mask (0 outside the "
                         "brain, 1 inside); is it an image or a label map? Give a 0/1 mask, e.g. a qsmflow "
                         "_mask.nii.gz")
    mask = data > 0.5
    if not mask.any():
        raise ValueError(f"{name} {path} is empty (no voxel above 0.5); give a 0/1 mask with the brain set to 1")
    between = int(np.count_nonzero((data > 1e-3) & (data < 1 - 1e-3)))
    if between:
        log.warning("%s %s holds %d voxels between 0 and 1 (a probability map?): those above 0.5 are taken as brain "
                    "(%d voxels in all)", name, path, between, int(mask.sum()))
    return mask


def load_canonical(path, *, volume: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 3D volume (``volume``-th of a 4D file) in the closest RAS orientation, for display.

    Returns the float32 data and its voxel sizes (mm) along the reoriented axes.
    """
    img = _load_image(path)
    data = _read_data(img, path)
    if data.ndim == 4:
        data = data[..., min(volume, data.shape[3] - 1)]
    if data.ndim != 3:
        raise ValueError(f"{path} must be a 3D or 4D volume, got shape {data.shape}")
    return canonical(data, img.affine)


def canonical(data: np.ndarray, affine) -> tuple[np.ndarray, np.ndarray]:
    """A 3D array on the grid of ``affine`` in the closest RAS orientation (float32), and its
    voxel sizes (mm) along the reoriented axes: :func:`load_canonical` for an array in memory."""
    ornt = nib.orientations.io_orientation(np.asarray(affine, float))
    out = nib.orientations.apply_orientation(np.asarray(data), ornt)
    vs = voxel_size_from_affine(affine)[np.argsort(ornt[:, 0])]
    return np.ascontiguousarray(out, np.float32), vs


@dataclass
class MapInput:
    """A single 3D map (a field map, a mask) with its grid and sidecar."""

    data: np.ndarray  # (X, Y, Z) float32
    affine: np.ndarray
    voxel_size: np.ndarray
    sidecar: dict
    prefix: str
    provenance: dict = field(default_factory=dict)

    @property
    def n_echoes(self) -> int:
        return 1


def load_map(path, *, name: str = "map", prefix: str | None = None, echoes: bool = False) -> MapInput:
    """Load one 3D map (with ``echoes``, also 4D: one volume per echo) with its affine and
    JSON sidecar (for the stage commands)."""
    data = load_volume(path, name=name, echoes=echoes)
    img = _load_image(path)
    affine = np.asarray(img.affine, float)
    return MapInput(data=data, affine=affine, voxel_size=check_voxel_size(affine, path), sidecar=read_sidecar(path),
                    prefix=prefix or bids_prefix(path), provenance={"inputs": {name: str(path)}})
