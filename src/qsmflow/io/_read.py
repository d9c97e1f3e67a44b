"""Loading and checking multi-echo GRE NIfTI files (with their JSON sidecars)."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

from .._shared import checks as _checks
from .._shared.constants import AFFINE_TOLERANCE_MM
from ._phase import _RADIAN_SLACK, scale_phase

log = logging.getLogger("qsmflow.io")


@dataclass
class GreInput:
    """A loaded multi-echo GRE acquisition, checked and in the project's units."""

    magnitude: np.ndarray  # (X, Y, Z, E) float32
    phase: np.ndarray  # (X, Y, Z, E) float32, radians in [-pi, pi)
    echo_times: np.ndarray  # (E,) seconds
    field_strength: float  # tesla
    affine: np.ndarray  # (4, 4)
    voxel_size: np.ndarray  # (3,) mm
    b0_direction: np.ndarray  # (3,) unit, voxel axes
    finite: np.ndarray  # (X, Y, Z) bool, False where any input voxel was NaN/Inf
    prefix: str  # output file prefix from the BIDS entities of the inputs
    provenance: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    slice_axis: int | None = None  # voxel axis of the slices of a 2D acquisition; None for 3D

    @property
    def n_echoes(self) -> int:
        return self.magnitude.shape[3]

    def override_slice_axis(self, choice: str, source: str) -> None:
        """Set the acquisition geometry from an option: ``"i"``/``"j"``/``"k"`` (2D slices) or ``"3d"``."""
        if choice not in ("i", "j", "k", "3d"):
            raise ValueError(f"{source} must be i, j, k or 3d, got {choice!r}")
        self.slice_axis = None if choice == "3d" else "ijk".index(choice)
        self.provenance["slice_axis"], self.provenance["slice_axis_source"] = self.slice_axis, source

    @classmethod
    def from_arrays(cls, magnitude, phase, echo_times, field_strength, *, affine=None, voxel_size=None,
                    b0_direction=None, prefix: str = "qsmflow") -> "GreInput":
        """Build a checked input from numpy arrays (phase in radians), for use from Python.

        Give ``affine`` (B0 direction and voxel size are read from it) or
        ``voxel_size`` (mm; B0 then defaults to the third axis).
        """
        mag = np.asarray(magnitude, np.float32)
        pha = np.asarray(phase, np.float32)
        if mag.ndim == 3:
            mag, pha = mag[..., None], pha[..., None] if pha.ndim == 3 else pha
        _checks.as_volume("magnitude", mag, ndim=4)
        _checks.as_volume("phase", pha, ndim=4)
        _checks.same_shape("magnitude", mag, "phase", pha)
        te = _checks.echo_times(echo_times, mag.shape[3])
        b0 = _checks.field_strength(field_strength)
        finite = np.all(np.isfinite(mag), axis=3) & np.all(np.isfinite(pha), axis=3)
        if np.nanmax(np.abs(pha)) > np.pi * (1 + _RADIAN_SLACK):
            raise ValueError("phase must be in radians within [-pi, pi]; scale it first (see io.scale_phase)")
        if affine is None:
            vs = _checks.voxel_size(voxel_size if voxel_size is not None else (1.0, 1.0, 1.0))
            affine = np.diag([*vs, 1.0])
        affine = np.asarray(affine, float)
        vs = voxel_size_from_affine(affine)
        b0_dir = _checks.b0_direction(b0_direction) if b0_direction is not None else b0_direction_from_affine(affine)
        return cls(magnitude=np.where(finite[..., None], mag, 0), phase=np.where(finite[..., None], pha, 0),
                   echo_times=te, field_strength=b0, affine=affine, voxel_size=vs, b0_direction=b0_dir,
                   finite=finite, prefix=prefix,
                   provenance={"inputs": "arrays", "echo_times_s": te.tolist(), "field_strength_T": b0,
                               "b0_direction": b0_dir.tolist(), "voxel_size_mm": vs.tolist()})


def _load_image(path) -> nib.Nifti1Image:
    p = Path(path)
    if not p.exists():
        raise ValueError(f"file not found: {p}")
    if p.is_dir():
        raise ValueError(f"{p} is a folder, not a NIfTI file")
    try:
        img = nib.load(str(p))
    except Exception as exc:  # nibabel raises many types for bad files
        raise ValueError(f"cannot read {p} as NIfTI ({type(exc).__name__}: {exc}); is the file complete?") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ValueError(f"{p} is not a NIfTI image ({type(img).__name__})")
    return img


def _read_data(img, path) -> np.ndarray:
    try:
        return np.asarray(img.dataobj, dtype=np.float64)
    except Exception as exc:
        raise ValueError(f"cannot read the voxels of {path} ({type(exc).__name__}: {exc}); is the file truncated?") from exc


def voxel_size_from_affine(affine) -> np.ndarray:
    """Voxel size (mm): the lengths of the affine's first three columns."""
    return np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)


def b0_direction_from_affine(affine) -> np.ndarray:
    """B0 direction in voxel axes: ``R.T @ (0, 0, 1)`` with ``R`` the affine's rotation.

    World +z (the scanner bore in NIfTI's scanner-based RAS frame) is the B0 axis.
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


def _echo_number(path, sidecar) -> int | None:
    ent = bids_entities(path).get("echo")
    if ent is not None and ent.isdigit():
        return int(ent)
    num = sidecar.get("EchoNumber")
    if isinstance(num, (int, float)) and not isinstance(num, bool):
        return int(num)
    return None


def _order_by_echo(kind: str, paths: list[Path], sidecars: list[dict]) -> tuple[list[int], str]:
    """Indices that sort per-echo files by echo number, and where the order came from."""
    nums = [_echo_number(p, s) for p, s in zip(paths, sidecars)]
    if len(paths) == 1 or any(n is None for n in nums):
        return list(range(len(paths))), "order given"
    if len(set(nums)) != len(nums):
        raise ValueError(f"the {kind} files repeat echo numbers {nums}; give each echo once")
    return sorted(range(len(paths)), key=lambda i: nums[i]), "echo numbers (BIDS echo-N / EchoNumber)"


def _stack(kind: str, paths: Sequence) -> tuple[np.ndarray, np.ndarray, list[dict], list[Path], str, np.dtype]:
    """Load one 4D or several 3D files as (X, Y, Z, E); returns data, affine, sidecars, paths, order, dtype."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError(f"no {kind} file given; pass --{'mag' if kind == 'magnitude' else 'phase'}")
    imgs = [_load_image(p) for p in paths]
    sidecars = [read_sidecar(p) for p in paths]
    order, order_src = _order_by_echo(kind, paths, sidecars)
    imgs = [imgs[i] for i in order]
    sidecars = [sidecars[i] for i in order]
    paths = [paths[i] for i in order]
    ref = imgs[0]
    for p, img in zip(paths, imgs):
        shp = img.shape
        if len(shp) < 3 or (len(shp) >= 3 and 1 in shp[:3]):
            raise ValueError(
                f"{p} has shape {shp}: qsmflow needs 3D volumes (at least 2 voxels along x, y and z); "
                "2D single-slice data cannot be processed"
            )
        if len(shp) > 4 and any(s != 1 for s in shp[4:]):
            raise ValueError(f"{p} has shape {shp}: expected a 3D volume or a 4D echo series")
        if len(paths) > 1 and len(shp) > 3 and shp[3] != 1:
            raise ValueError(f"{p} is 4D (shape {shp}) but several {kind} files were given; give one 4D file or one 3D file per echo")
        if shp[:3] != ref.shape[:3]:
            raise ValueError(f"{kind} files differ in shape: {paths[0]} has {ref.shape[:3]} but {p} has {shp[:3]}")
        if not np.allclose(img.affine, ref.affine, atol=AFFINE_TOLERANCE_MM):
            raise ValueError(f"{kind} files are on different grids: the affines of {paths[0]} and {p} differ")
    vols = []
    for p, img in zip(paths, imgs):
        d = _read_data(img, p)
        d = d.reshape(d.shape[:3] + (-1,))
        vols.append(d)
    data = np.concatenate(vols, axis=3) if len(vols) > 1 else vols[0]
    dtype = ref.get_data_dtype()
    return data, np.asarray(ref.affine, float), sidecars, paths, order_src, dtype


def series_shape(paths) -> tuple[int, int, int, int]:
    """(X, Y, Z, echoes) of one 4D file or several 3D files, from the headers alone (no voxels read)."""
    shapes = [tuple(_load_image(p).shape) for p in paths]
    n_e = sum(int(np.prod(s[3:])) if len(s) > 3 else 1 for s in shapes)
    x, y, z = (tuple(shapes[0]) + (1, 1, 1))[:3]
    return x, y, z, n_e


def _echo_times_from_sidecars(sidecars: list[dict], n_echoes: int) -> list[float] | None:
    tes = []
    for sc in sidecars:
        te = sc.get("EchoTime")
        if te is None:
            return None
        tes.extend(te if isinstance(te, list) else [te])
    if len(tes) != n_echoes:
        return None
    return tes


def _image_kind(sidecar: dict) -> str | None:
    """'M' or 'P' from a sidecar's ImageType (dcm2niix: [..., 'M', ...] or [..., 'PHASE'])."""
    kinds = {str(t).upper() for t in sidecar.get("ImageType", []) or []}
    if kinds & {"P", "PHASE"}:
        return "P"
    if kinds & {"M", "MAGNITUDE"}:
        return "M"
    return None


def _check_not_swapped(mag_sc: list[dict], pha_sc: list[dict]) -> None:
    """Refuse magnitude files whose sidecar says phase, and phase files whose sidecar says magnitude."""
    if any(_image_kind(sc) == "P" for sc in mag_sc):
        raise ValueError("a --mag file's sidecar says ImageType PHASE; are --mag and --phase swapped?")
    if any(_image_kind(sc) == "M" for sc in pha_sc):
        raise ValueError("a --phase file's sidecar says ImageType MAGNITUDE; are --mag and --phase swapped?")


def _resolve_echo_times(echo_times, mag_sc, pha_sc, n_echoes, warnings, *, required=True):
    """Echo times (s) from the option or the sidecars, and where they came from."""
    sc_te = _echo_times_from_sidecars(mag_sc, n_echoes) or _echo_times_from_sidecars(pha_sc, n_echoes)
    if echo_times is not None:
        te = _checks.echo_times(echo_times, n_echoes)
        if sc_te is not None and not np.allclose(sc_te, te, rtol=1e-2):
            raise ValueError(f"--echo-times {te.tolist()} differ from the sidecars' EchoTime {sc_te}: one of them is "
                             "wrong; leave out --echo-times to use the sidecars, or correct it")
        return te, "--echo-times"
    if sc_te is None:
        if not required:
            return None, "missing"
        raise ValueError(
            f"echo times are missing: no EchoTime for all {n_echoes} echo(es) in the JSON sidecars; "
            "pass --echo-times (comma-separated, in seconds)"
        )
    try:
        return _checks.echo_times(sc_te, n_echoes), "sidecar EchoTime"
    except ValueError as exc:
        raise ValueError(f"sidecar EchoTime: {exc}") from None


def _resolve_field_strength(field_strength, sidecars, *, required=True):
    """B0 (T) from the option or the sidecars, and where it came from."""
    if field_strength is not None:
        return _checks.field_strength(field_strength), "--field-strength"
    vals = [sc.get("MagneticFieldStrength") for sc in sidecars if sc.get("MagneticFieldStrength") is not None]
    if not vals:
        if not required:
            return None, "missing"
        raise ValueError("field strength is missing: no MagneticFieldStrength in the JSON sidecars; "
                         "pass --field-strength (tesla)")
    try:
        return _checks.field_strength(vals[0]), "sidecar MagneticFieldStrength"
    except ValueError as exc:
        raise ValueError(f"sidecar MagneticFieldStrength: {exc}") from None


def _resolve_b0_direction(b0_direction, affine):
    """B0 in voxel axes (option or affine), its source, and its angle to the slice axis (logged)."""
    if b0_direction is not None:
        b0_dir, src = _checks.b0_direction(b0_direction), "--b0-direction"
    else:
        b0_dir, src = b0_direction_from_affine(affine), "affine"
    angle = float(np.degrees(np.arccos(min(abs(b0_dir[2]), 1.0))))
    log.info("B0 direction in voxel axes (%s): [%.4f, %.4f, %.4f], %.1f deg from the slice axis", src, *b0_dir, angle)
    return b0_dir, src, angle


def _slice_axis(sidecars: list[dict]) -> tuple[int | None, str]:
    """Slice axis of a 2D multi-slice acquisition (None for 3D) from the sidecars, and where it came from."""
    kinds = {str(sc["MRAcquisitionType"]).upper() for sc in sidecars if sc.get("MRAcquisitionType")}
    if len(kinds) > 1:
        raise ValueError(f"the sidecars disagree on MRAcquisitionType ({sorted(kinds)}); are the echoes from one scan?")
    if not kinds:
        return None, "no MRAcquisitionType in the sidecars: taken as 3D"
    if kinds != {"2D"}:
        return None, f"sidecar MRAcquisitionType {kinds.pop()}"
    dirs = {str(sc["SliceEncodingDirection"]).strip("-") for sc in sidecars if sc.get("SliceEncodingDirection")}
    if not dirs:
        return 2, "sidecar MRAcquisitionType 2D without SliceEncodingDirection: slices taken along k"
    if len(dirs) > 1 or not dirs <= {"i", "j", "k"}:
        raise ValueError(f"sidecar SliceEncodingDirection {sorted(dirs)} is not one of i, j, k")
    return "ijk".index(dirs.pop()), "sidecar MRAcquisitionType 2D, SliceEncodingDirection"


def _finite_magnitude(mag: np.ndarray, finite: np.ndarray) -> None:
    """Refuse magnitudes that cannot be one."""
    if finite.sum() == 0:
        raise ValueError("every voxel holds NaN/Inf; the input is empty")
    if mag[finite].min() < 0:
        raise ValueError("magnitude has negative values; is it a real/imaginary image? give the magnitude")
    if not np.any(mag[finite] > 0):
        raise ValueError("magnitude is zero everywhere")


def load_gre(
    magnitude,
    phase,
    *,
    echo_times=None,
    field_strength=None,
    phase_scale: float | None = None,
    b0_direction=None,
    prefix: str | None = None,
    require_field_strength: bool = True,
) -> GreInput:
    """Load, check and convert a multi-echo GRE magnitude/phase acquisition.

    Parameters
    ----------
    magnitude, phase : path or sequence of paths
        One 4D file each, or one 3D file per echo (sorted by the BIDS ``echo-N``
        entity or the sidecar ``EchoNumber``, else kept in the order given).
    echo_times : sequence of float, optional
        Echo times (s); default: the sidecars' ``EchoTime``.
    field_strength : float, optional
        B0 (T); default: the sidecar ``MagneticFieldStrength``.
    phase_scale : float, optional
        Factor converting the stored phase to radians (overrides detection).
    b0_direction : sequence of 3 float, optional
        B0 in voxel axes (overrides the affine).
    prefix : str, optional
        Output prefix (default: from the magnitude file name's BIDS entities).
    require_field_strength : bool
        False where B0 is not needed (relaxometry): ``field_strength`` may then be None.

    Returns
    -------
    GreInput

    Raises
    ------
    ValueError
        Missing or unreadable files, mismatched shapes/grids/echo counts, echo
        times that are not increasing or look like milliseconds, missing field
        strength, phase whose units cannot be told.
    """
    mag, affine, mag_sc, mag_paths, mag_order, _ = _stack("magnitude", magnitude)
    pha, p_affine, pha_sc, pha_paths, _, pha_dtype = _stack("phase", phase)
    warnings: list[str] = []
    if mag.shape[:3] != pha.shape[:3]:
        raise ValueError(f"magnitude has shape {mag.shape[:3]} but phase has shape {pha.shape[:3]}")
    if mag.shape[3] != pha.shape[3]:
        raise ValueError(
            f"magnitude has {mag.shape[3]} echo(es) but phase has {pha.shape[3]}; give the same echoes for both"
        )
    if not np.allclose(affine, p_affine, atol=AFFINE_TOLERANCE_MM):
        raise ValueError("magnitude and phase are on different grids: their affines differ")
    n_echoes = mag.shape[3]
    _check_not_swapped(mag_sc, pha_sc)
    mag_te = _echo_times_from_sidecars(mag_sc, n_echoes)
    pha_te = _echo_times_from_sidecars(pha_sc, n_echoes)
    if mag_te is not None and pha_te is not None and not np.allclose(mag_te, pha_te, rtol=1e-3, atol=1e-6):
        raise ValueError(f"the magnitude sidecars give EchoTime {mag_te} but the phase sidecars give {pha_te}; "
                         "are they from the same acquisition?")

    te, te_src = _resolve_echo_times(echo_times, mag_sc, pha_sc, n_echoes, warnings)
    b0, b0_src = _resolve_field_strength(field_strength, mag_sc + pha_sc, required=require_field_strength)
    slice_axis, slice_src = _slice_axis(mag_sc + pha_sc)

    # non-finite voxels
    finite = np.all(np.isfinite(mag), axis=3) & np.all(np.isfinite(pha), axis=3)
    n_bad = int((~finite).sum())
    if n_bad:
        msg = f"{n_bad} voxel(s) hold NaN/Inf in the magnitude or phase; they were set to 0 and kept out of the mask"
        log.warning(msg)
        warnings.append(msg)
        mag[~finite] = 0
        pha[~finite] = 0
    _finite_magnitude(mag, finite)

    on_disk_integer = np.issubdtype(pha_dtype, np.integer)
    radians, rule = scale_phase(pha[finite], on_disk_integer=on_disk_integer, phase_scale=phase_scale)
    phase_rad = np.zeros(pha.shape, np.float32)
    phase_rad[finite] = radians
    del pha, radians
    log.info("phase units: %s (range %.6g..%.6g)", rule["rule"], *rule["range"])

    vs = voxel_size_from_affine(affine)
    b0_dir, b0_dir_src, angle = _resolve_b0_direction(b0_direction, affine)

    provenance = {
        "inputs": {"magnitude": [str(p) for p in mag_paths], "phase": [str(p) for p in pha_paths]},
        "echo_order": mag_order,
        "echo_times_s": te.tolist(),
        "echo_times_source": te_src,
        "field_strength_T": b0,
        "field_strength_source": b0_src,
        "phase_scaling": rule,
        "b0_direction": b0_dir.tolist(),
        "b0_direction_source": b0_dir_src,
        "b0_angle_to_slice_axis_deg": angle,
        "voxel_size_mm": vs.tolist(),
        "shape": list(mag.shape),
        "nonfinite_voxels": n_bad,
        "slice_axis": slice_axis,
        "slice_axis_source": slice_src,
    }
    return GreInput(
        magnitude=mag.astype(np.float32),
        phase=phase_rad,
        echo_times=te,
        field_strength=b0,
        affine=affine,
        voxel_size=vs,
        b0_direction=b0_dir,
        finite=finite,
        prefix=prefix or bids_prefix(mag_paths[0]),
        provenance=provenance,
        warnings=warnings,
        slice_axis=slice_axis,
    )


def load_magnitude(magnitude, *, echo_times=None, field_strength=None, prefix: str | None = None) -> GreInput:
    """Load magnitude echoes alone (for a brain mask): echo times and B0 are optional here.

    Returns a :class:`GreInput` whose ``phase`` is None; ``echo_times`` and
    ``field_strength`` are None when neither the option nor the sidecars give them.
    """
    mag, affine, mag_sc, mag_paths, mag_order, _ = _stack("magnitude", magnitude)
    warnings: list[str] = []
    te, te_src = _resolve_echo_times(echo_times, mag_sc, [], mag.shape[3], warnings, required=False)
    b0, b0_src = _resolve_field_strength(field_strength, mag_sc, required=False)
    slice_axis, slice_src = _slice_axis(mag_sc)
    finite = np.all(np.isfinite(mag), axis=3)
    mag[~finite] = 0
    _finite_magnitude(mag, finite)
    vs = voxel_size_from_affine(affine)
    provenance = {"inputs": {"magnitude": [str(p) for p in mag_paths]}, "echo_order": mag_order,
                  "echo_times_s": None if te is None else te.tolist(), "echo_times_source": te_src,
                  "field_strength_T": b0, "field_strength_source": b0_src, "voxel_size_mm": vs.tolist(),
                  "shape": list(mag.shape), "slice_axis": slice_axis, "slice_axis_source": slice_src}
    return GreInput(magnitude=mag.astype(np.float32), phase=None, echo_times=te, field_strength=b0, affine=affine,
                    voxel_size=vs, b0_direction=b0_direction_from_affine(affine), finite=finite,
                    prefix=prefix or bids_prefix(mag_paths[0]), provenance=provenance, warnings=warnings,
                    slice_axis=slice_axis)


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
        if "EchoTime1" in sc and "EchoTime2" in sc:
            dte, src = float(sc["EchoTime2"]) - float(sc["EchoTime1"]), "sidecar EchoTime1/EchoTime2"
        else:
            tes = sorted(float(s["EchoTime"]) for s in mag_sc if "EchoTime" in s)
            if len(tes) < 2:
                raise ValueError("the echo-time difference is missing: no EchoTime1/EchoTime2 in the phase-difference "
                                 "sidecar; pass --delta-te (seconds)")
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


def load_volume(path, *, name: str = "volume", shape=None, affine=None) -> np.ndarray:
    """Load a 3D NIfTI as float32, optionally checking it matches ``shape``/``affine``."""
    img = _load_image(path)
    data = _read_data(img, path)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{name} {path} must be a 3D volume, got shape {data.shape}")
    if shape is not None and data.shape != tuple(shape):
        raise ValueError(f"{name} {path} has shape {data.shape} but the data have shape {tuple(shape)}")
    if affine is not None and not np.allclose(img.affine, affine, atol=AFFINE_TOLERANCE_MM):
        raise ValueError(f"{name} {path} is on a different grid from the data: the affines differ")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{name} {path} holds NaN/Inf values")
    return data.astype(np.float32)


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
    ornt = nib.orientations.io_orientation(img.affine)
    out = nib.orientations.apply_orientation(data, ornt)
    vs = voxel_size_from_affine(img.affine)[np.argsort(ornt[:, 0])]
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


def load_map(path, *, name: str = "map", prefix: str | None = None) -> MapInput:
    """Load one 3D map with its affine and JSON sidecar (for the stage commands)."""
    data = load_volume(path, name=name)
    img = _load_image(path)
    affine = np.asarray(img.affine, float)
    return MapInput(data=data, affine=affine, voxel_size=voxel_size_from_affine(affine), sidecar=read_sidecar(path),
                    prefix=prefix or bids_prefix(path), provenance={"inputs": {name: str(path)}})
