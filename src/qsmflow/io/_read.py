"""Loading and checking multi-echo GRE NIfTI files (with their JSON sidecars)."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .._shared import checks as _checks
from .._shared.constants import AFFINE_TOLERANCE_MM
from ._nifti import _load_image, _read_data, b0_direction_from_affine, bids_entities, bids_prefix, read_sidecar
from ._nifti import check_voxel_size, shear_warning, voxel_size_from_affine
from ._phase import _RADIAN_SLACK, scale_phase
from ._sidecars import (_check_not_phasediff, _check_not_swapped, _echo_times_from_sidecars, _resolve_b0_direction,
                        _resolve_echo_times, _resolve_field_strength, _slice_axis)

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
        if affine is None:
            vs = _checks.voxel_size(voxel_size if voxel_size is not None else (1.0, 1.0, 1.0))
            affine = np.diag([*vs, 1.0])
        affine = np.asarray(affine, float)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise ValueError(f"affine must be a finite 4x4 matrix (NIfTI's voxel-to-world), got shape {affine.shape}")
        vs = check_voxel_size(affine, "the affine")
        if voxel_size is not None and not np.allclose(_checks.voxel_size(voxel_size), vs, rtol=1e-3):
            raise ValueError(f"voxel_size {list(map(float, voxel_size))} disagrees with the affine's "
                             f"{[round(float(v), 4) for v in vs]} mm; give one of them")
        mag, pha = mag.copy(), pha.copy()  # the caller's arrays stay as given
        warnings: list[str] = []
        finite, _ = _zero_nonfinite(mag, pha, warnings)
        _warn_shear(affine, warnings)
        if np.max(np.abs(pha)) > np.pi * (1 + _RADIAN_SLACK):
            raise ValueError("phase must be in radians within [-pi, pi]; scale it first (see io.scale_phase)")
        b0_dir = _checks.b0_direction(b0_direction) if b0_direction is not None else b0_direction_from_affine(affine)
        return cls(magnitude=mag, phase=pha,
                   echo_times=te, field_strength=b0, affine=affine, voxel_size=vs, b0_direction=b0_dir,
                   finite=finite, prefix=prefix, warnings=warnings,
                   provenance={"inputs": "arrays", "echo_times_s": te.tolist(), "field_strength_T": b0,
                               "b0_direction": b0_dir.tolist(), "voxel_size_mm": vs.tolist()})


def _echo_number(path, sidecar) -> int | None:
    ent = bids_entities(path).get("echo")
    if ent is not None and ent.isdigit():
        return int(ent)
    num = sidecar.get("EchoNumber")
    if isinstance(num, (int, float)) and not isinstance(num, bool):
        return int(num)
    return None


#: Added to the order's source when sorting moved the files from the order given.
REORDERED = ", files reordered"


def _order_by_echo(kind: str, paths: list[Path], sidecars: list[dict]) -> tuple[list[int], str]:
    """Indices that sort per-echo files by echo number (else by their sidecars' EchoTime), and
    where the order came from (with ``REORDERED`` when it is not the order given)."""
    nums = [_echo_number(p, s) for p, s in zip(paths, sidecars)]
    order, src = list(range(len(paths))), "order given"
    if len(paths) > 1 and any(n is None for n in nums):
        # no echo numbers, but every sidecar gives one echo time: the echoes' order is theirs
        tes = [s.get("EchoTime") for s in sidecars]
        if all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in tes) and len(set(tes)) == len(tes):
            order, src = sorted(range(len(paths)), key=lambda i: tes[i]), "sidecar EchoTime (no echo numbers)"
    elif len(paths) > 1:
        if len(set(nums)) != len(nums):
            raise ValueError(f"the {kind} files repeat echo numbers {nums}; give each echo once")
        order, src = sorted(range(len(paths)), key=lambda i: nums[i]), "echo numbers (BIDS echo-N / EchoNumber)"
    return order, src + (REORDERED if order != sorted(order) else "")


def _check_same_ordering(mag_order: str, pha_order: str, pha_files: int, mag_files: int) -> None:
    """Refuse per-echo files of which one part was put in echo order (by echo numbers or echo
    times) and the other, several files with neither, kept in the order given: the pairs of
    magnitude and phase would be of different echoes (a 4D file's echoes are in echo order)."""
    for moved, kept, a, b, n_kept in (("magnitude", "phase", mag_order, pha_order, pha_files),
                                      ("phase", "magnitude", pha_order, mag_order, mag_files)):
        if a.endswith(REORDERED) and b == "order given" and n_kept > 1:
            raise ValueError(f"the {moved} files were put in echo order by their {a[:-len(REORDERED)]}, but the {kept} "
                             f"files carry no echo numbers or echo times, so they cannot be paired with them: give "
                             f"both in echo order with BIDS echo-N names, or sidecars (EchoNumber or EchoTime) for both")


def _stack(kind: str, paths: Sequence, dtype=np.float64) -> tuple[np.ndarray, np.ndarray, list[dict], list[Path], str,
                                                                  np.dtype]:
    """Load one 4D or several 3D files as (X, Y, Z, E) in ``dtype``; returns data, affine, sidecars,
    paths, order, the files' dtype."""
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
    check_voxel_size(ref.affine, paths[0])
    for p, img in zip(paths, imgs):
        shp = img.shape
        if len(shp) < 3 or (len(shp) >= 3 and 1 in shp[:3]):
            raise ValueError(
                f"{p} has shape {shp}: qsmflow needs 3D volumes (at least 2 voxels along x, y and z); "
                "2D single-slice data cannot be processed"
            )
        # (X, Y, Z, 1, echoes): echoes along NIfTI's fifth dimension, as some converters write them
        echoes_in_5th = len(paths) == 1 and len(shp) == 5 and shp[3] == 1
        if len(shp) > 4 and any(s != 1 for s in shp[4:]) and not echoes_in_5th:
            raise ValueError(f"{p} has shape {shp}: expected a 3D volume, a 4D echo series (X, Y, Z, echoes) or "
                             "(X, Y, Z, 1, echoes); give one of those")
        if len(paths) > 1 and len(shp) > 3 and shp[3] != 1:
            raise ValueError(f"{p} is 4D (shape {shp}) but several {kind} files were given; give one 4D file or one 3D file per echo")
        if shp[:3] != ref.shape[:3]:
            raise ValueError(f"{kind} files differ in shape: {paths[0]} has {ref.shape[:3]} but {p} has {shp[:3]}")
        if not np.allclose(img.affine, ref.affine, atol=AFFINE_TOLERANCE_MM):
            raise ValueError(f"{kind} files are on different grids: the affines of {paths[0]} and {p} differ")
    if len(imgs) == 1:
        d = _read_data(imgs[0], paths[0], dtype)
        data = d.reshape(d.shape[:3] + (-1,))
    else:  # 3D files: each decompressed into its echo of one series, side by side (zlib releases the GIL)
        data = np.empty(ref.shape[:3] + (len(imgs),), dtype)

        def read(e):
            data[..., e] = _read_data(imgs[e], paths[e], dtype).reshape(ref.shape[:3])

        with ThreadPoolExecutor(max_workers=max(1, min(len(imgs), 4, os.cpu_count() or 1))) as pool:
            list(pool.map(read, range(len(imgs))))
    return data, np.asarray(ref.affine, float), sidecars, paths, order_src, ref.get_data_dtype()


def series_shape(paths) -> tuple[int, int, int, int]:
    """(X, Y, Z, echoes) of one 4D file or several 3D files, from the headers alone (no voxels read)."""
    shapes = [tuple(_load_image(p).shape) for p in paths]
    n_e = sum(int(np.prod(s[3:])) if len(s) > 3 else 1 for s in shapes)
    x, y, z = (tuple(shapes[0]) + (1, 1, 1))[:3]
    return x, y, z, n_e


def _warn_shear(affine, warnings: list) -> None:
    """Log and keep the sheared grid's warning (see :func:`shear_warning`), if any."""
    msg = shear_warning(affine)
    if msg:
        log.warning(msg)
        warnings.append(msg)


# Negative magnitudes down to this fraction of the magnitude's 99th percentile are a noise floor
# shifted below zero (denoising, a scanner's or converter's offset) and are set to 0 with a
# warning; deeper ones (a real or imaginary image, a phase, reach the positive values' size)
# are refused.
NEGATIVE_FLOOR = 0.05


def _finite_magnitude(mag: np.ndarray, finite: np.ndarray, warnings: list | None = None) -> None:
    """Refuse magnitudes that cannot be one; set a small negative noise floor to 0 (in place),
    with a warning (kept in ``warnings`` when given)."""
    if not finite.any():
        raise ValueError("every voxel holds NaN/Inf; the input is empty")
    values = mag if finite.all() else mag[finite]  # no copy of the whole series when every voxel is finite
    lowest = float(values.min())
    if lowest >= 0:
        if not values.max() > 0:
            raise ValueError("magnitude is zero everywhere")
        return
    top = float(np.percentile(values.reshape(-1)[::101], 99))  # a prime stride: every echo sampled
    n_neg = int(np.count_nonzero(values < 0))
    share = n_neg / values.size
    if lowest < -NEGATIVE_FLOOR * max(top, 0.0):
        raise ValueError(f"the magnitude has negative values ({n_neg} voxels, {100 * share:.2g} %, down to "
                         f"{lowest:.4g} against a 99th percentile of {top:.4g}): is it a real or imaginary image, or "
                         "a phase given as --mag (magnitude and phase swapped)? give the magnitude images")
    msg = (f"{n_neg} magnitude values ({100 * share:.2g} %) are negative, down to {lowest:.3g} "
           f"({100 * -lowest / top:.2g} % of the magnitude's 99th percentile): a noise floor shifted below zero (by "
           "denoising or an offset); they were set to 0")
    log.warning(msg)
    if warnings is not None:
        warnings.append(msg)
    np.maximum(mag, 0, out=mag)


def _check_pair(mag, pha, affine, p_affine, mag_sc, pha_sc) -> None:
    """Refuse magnitude and phase series that cannot be one acquisition: other shapes, echo
    counts or grids, swapped sidecars, or sidecars giving other echo times."""
    if mag.shape[:3] != pha.shape[:3]:
        raise ValueError(f"magnitude has shape {mag.shape[:3]} but phase has shape {pha.shape[:3]}")
    if mag.shape[3] != pha.shape[3]:
        raise ValueError(
            f"magnitude has {mag.shape[3]} echo(es) but phase has {pha.shape[3]}; give the same echoes for both"
        )
    if not np.allclose(affine, p_affine, atol=AFFINE_TOLERANCE_MM):
        raise ValueError("magnitude and phase are on different grids: their affines differ")
    _check_not_swapped(mag_sc, pha_sc)
    mag_te = _echo_times_from_sidecars(mag_sc, mag.shape[3])
    pha_te = _echo_times_from_sidecars(pha_sc, mag.shape[3])
    if mag_te is not None and pha_te is not None and not np.allclose(mag_te, pha_te, rtol=1e-3, atol=1e-6):
        raise ValueError(f"the magnitude sidecars give EchoTime {mag_te} but the phase sidecars give {pha_te}; "
                         "are they from the same acquisition?")


def _zero_nonfinite(mag, pha, warnings: list) -> tuple[np.ndarray, int]:
    """Set voxels holding NaN/Inf in any echo to 0 in both series (in place), with a warning;
    refuse a magnitude with no usable voxel. Returns (finite mask, count of bad voxels)."""
    finite = np.all(np.isfinite(mag), axis=3) & np.all(np.isfinite(pha), axis=3)
    n_bad = int((~finite).sum())
    if n_bad:
        msg = f"{n_bad} voxel(s) hold NaN/Inf in the magnitude or phase; they were set to 0 and kept out of the mask"
        log.warning(msg)
        warnings.append(msg)
        mag[~finite] = 0
        pha[~finite] = 0
    _finite_magnitude(mag, finite, warnings)
    return finite, n_bad


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
    # magnitude in float32, as it is kept; phase in float64 for the exact scaling of scanner integers
    mag, affine, mag_sc, mag_paths, mag_order, _ = _stack("magnitude", magnitude, np.float32)
    pha, p_affine, pha_sc, pha_paths, pha_order, pha_dtype = _stack("phase", phase)
    _check_same_ordering(mag_order, pha_order, len(pha_paths), len(mag_paths))
    warnings: list[str] = []
    _check_not_phasediff(pha_paths, pha_sc)
    _check_pair(mag, pha, affine, p_affine, mag_sc, pha_sc)
    n_echoes = mag.shape[3]
    te, te_src = _resolve_echo_times(echo_times, mag_sc, pha_sc, n_echoes, warnings)
    b0, b0_src = _resolve_field_strength(field_strength, mag_sc + pha_sc, required=require_field_strength)
    slice_axis, slice_src = _slice_axis(mag_sc + pha_sc)

    finite, n_bad = _zero_nonfinite(mag, pha, warnings)

    on_disk_integer = np.issubdtype(pha_dtype, np.integer)
    if finite.all():  # the usual case: the whole series at once, no gather and scatter
        phase_rad, rule = scale_phase(pha, on_disk_integer=on_disk_integer, phase_scale=phase_scale, overwrite=True)
    else:
        radians, rule = scale_phase(pha[finite], on_disk_integer=on_disk_integer, phase_scale=phase_scale,
                                    overwrite=True)
        phase_rad = np.zeros(pha.shape, np.float32)
        phase_rad[finite] = radians
        del radians
    del pha
    log.info("phase units: %s (range %.6g..%.6g)", rule["rule"], *rule["range"])
    if "warning" in rule:
        warnings.append(rule["warning"])

    vs = voxel_size_from_affine(affine)
    b0_dir, b0_dir_src, angle = _resolve_b0_direction(b0_direction, affine)
    _warn_shear(affine, warnings)

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
        magnitude=mag,  # read as float32
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
    mag, affine, mag_sc, mag_paths, mag_order, _ = _stack("magnitude", magnitude, np.float32)
    warnings: list[str] = []
    te, te_src = _resolve_echo_times(echo_times, mag_sc, [], mag.shape[3], warnings, required=False)
    b0, b0_src = _resolve_field_strength(field_strength, mag_sc, required=False)
    slice_axis, slice_src = _slice_axis(mag_sc)
    finite = np.all(np.isfinite(mag), axis=3)
    mag[~finite] = 0
    _finite_magnitude(mag, finite, warnings)
    vs = voxel_size_from_affine(affine)
    _warn_shear(affine, warnings)
    provenance = {"inputs": {"magnitude": [str(p) for p in mag_paths]}, "echo_order": mag_order,
                  "echo_times_s": None if te is None else te.tolist(), "echo_times_source": te_src,
                  "field_strength_T": b0, "field_strength_source": b0_src, "voxel_size_mm": vs.tolist(),
                  "shape": list(mag.shape), "slice_axis": slice_axis, "slice_axis_source": slice_src}
    return GreInput(magnitude=mag, phase=None, echo_times=te, field_strength=b0, affine=affine,
                    voxel_size=vs, b0_direction=b0_direction_from_affine(affine), finite=finite,
                    prefix=prefix or bids_prefix(mag_paths[0]), provenance=provenance, warnings=warnings,
                    slice_axis=slice_axis)
