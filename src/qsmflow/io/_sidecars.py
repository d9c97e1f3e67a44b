"""Acquisition parameters from the command line or the JSON sidecars, checked against each
other: echo times, field strength, B0 direction, 2D slice axis."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from .._shared import checks as _checks
from .._shared import units
from ._nifti import b0_direction_from_affine

log = logging.getLogger("qsmflow.io")

#: The fix a missing echo time is given in; ``qsmflow bids``, which has no ``--echo-times``,
#: replaces it with its own (:func:`qsmflow.workflows.batch._bids_words`).
ECHO_TIMES_FIX = "pass --echo-times (comma-separated, in seconds; echo_times= in Python)"


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


def _is_phasediff(sidecar: dict) -> bool:
    """A dual-echo field map's phase difference, by its sidecar (BIDS: EchoTime1 and EchoTime2)."""
    return "EchoTime1" in sidecar and "EchoTime2" in sidecar


def _check_not_phasediff(pha_paths, pha_sc: list[dict]) -> None:
    """Refuse a dual-echo field map's phase difference given as the phase of an echo: its
    phase grew over TE2 - TE1, not over the one EchoTime its sidecar also gives, so the
    field would come out scaled by (TE2 - TE1)/TE (BIDS: ``EchoTime1``/``EchoTime2``, or
    the ``_phasediff`` suffix)."""
    for path, sc in zip(pha_paths, pha_sc):
        name = Path(path).name
        if _is_phasediff(sc):
            why = "its sidecar gives EchoTime1 and EchoTime2"
        elif re.search(r"_phasediff\.nii(\.gz)?$", name):
            why = "BIDS suffix _phasediff"
        else:
            continue
        raise ValueError(f"{name} is the phase difference of a dual-echo field map ({why}), not the phase of an "
                         "echo, and QSM needs the phase of every echo; for a B0 map in Hz use: qsmflow fieldmap "
                         f"--mag MAGNITUDE --phasediff {name}")


def _resolve_echo_times(echo_times, mag_sc, pha_sc, n_echoes, warnings, *, required=True):
    """Echo times (s) from the option or the sidecars, and where they came from."""
    sc_te = _echo_times_from_sidecars(mag_sc, n_echoes) or _echo_times_from_sidecars(pha_sc, n_echoes)
    if echo_times is not None:
        te = _checks.echo_times(echo_times, n_echoes)
        if sc_te is not None and not np.allclose(sc_te, te, rtol=1e-2):
            raise ValueError(f"--echo-times {te.tolist()} differ from the sidecars' EchoTime {sc_te}: one of them is "
                             "wrong; leave out --echo-times (echo_times= in Python) to use the sidecars, or correct it")
        return te, "--echo-times"
    if sc_te is None:
        if not required:
            return None, "missing"
        without = sum(sc.get("EchoTime") is None for sc in mag_sc) if mag_sc else n_echoes
        which = (f"{without} of the {len(mag_sc)} magnitude sidecars {'gives' if without == 1 else 'give'} no "
                 "EchoTime" if 0 < without < len(mag_sc)
                 else f"no EchoTime for all {n_echoes} echo(es) in the JSON sidecars")
        raise ValueError(f"echo times are missing: {which}; " + ECHO_TIMES_FIX)
    try:
        return _checks.echo_times(sc_te, n_echoes), "sidecar EchoTime"
    except (TypeError, ValueError) as exc:
        # the check names the Python argument; here the values came from the files
        words = str(exc).replace("echo_times must be", "must be", 1)
        raise ValueError(f"the sidecars' EchoTime {words}; BIDS sidecars give seconds: correct them, or pass "
                         "--echo-times (in seconds; echo_times= in Python)") from None


# B0 that the sidecars' ImagingFrequency (MHz, the scanner's proton frequency) implies may
# differ from the field strength used by this fraction: a "3 T" Siemens magnet runs at 2.89 T
# (123.2 MHz, 3.6 % below), while a field strength of another magnet class (1.5 for 3 T) is off
# by 50 % or more. χ scales with 1/B0, so a wrong one is a silent error of the whole map.
IMAGING_FREQUENCY_TOLERANCE = 0.1


def _imaging_frequency_b0(sidecars) -> tuple[float, float] | None:
    """(MHz, T) of the sidecars' ImagingFrequency, the first readable one that implies a field
    within the checked range for protons; None without one."""
    for sc in sidecars:
        try:
            mhz = float(sc.get("ImagingFrequency"))
        except (TypeError, ValueError):
            continue
        b0 = mhz / units.hz_per_ppm(1.0)  # Hz per ppm at 1 T = MHz per T (γ̄ of protons)
        if 0.05 <= b0 <= 21.2:
            return mhz, b0
    return None


def _check_imaging_frequency(b0: float, src: str, sidecars) -> None:
    """Refuse a field strength that the scanner's own proton frequency contradicts."""
    freq = _imaging_frequency_b0(sidecars)
    if freq is None or abs(b0 - freq[1]) <= IMAGING_FREQUENCY_TOLERANCE * freq[1]:
        return
    fix = ("correct --field-strength, or the sidecars if they are wrong" if src == "--field-strength" else
           "pass --field-strength (field_strength= in Python) with the scanner's field, or correct the sidecars")
    raise ValueError(f"the field strength {b0:g} T ({src}) disagrees with the sidecars' ImagingFrequency "
                     f"{freq[0]:.4g} MHz, the proton frequency of a {freq[1]:.2f} T magnet; χ scales with 1/B0, so "
                     f"one of them is wrong: {fix}")


def _resolve_field_strength(field_strength, sidecars, *, required=True):
    """B0 (T) from the option or the sidecars, and where it came from; checked against the
    sidecars' ImagingFrequency when they give one (:data:`IMAGING_FREQUENCY_TOLERANCE`)."""
    b0, src = _field_strength(field_strength, sidecars, required=required)
    if b0 is not None and required:  # where B0 is optional (R2*), it is not what the run needs
        _check_imaging_frequency(b0, src, sidecars)
    return b0, src


def _field_strength(field_strength, sidecars, *, required=True):
    """B0 (T) from the option or the sidecars' MagneticFieldStrength, and where it came from."""
    vals = [sc.get("MagneticFieldStrength") for sc in sidecars if sc.get("MagneticFieldStrength") is not None]
    if field_strength is not None:
        b0 = _checks.field_strength(field_strength)
        try:
            given = sorted({round(float(v), 3) for v in vals})
        except (TypeError, ValueError):
            given = []  # an unreadable sidecar value: the option decides
        # χ scales with 1/B0: a wrong B0 is a silent error of the whole map's scale
        if given and not any(np.isclose(b0, v, rtol=0.05) for v in given):
            raise ValueError(f"--field-strength {b0:g} T differs from the sidecars' MagneticFieldStrength "
                             f"({', '.join(f'{v:g}' for v in given)} T): one of them is wrong; leave out "
                             "--field-strength (field_strength= in Python) to use the sidecars, or correct it")
        return b0, "--field-strength"
    if not vals:
        if not required:
            return None, "missing"
        raise ValueError("field strength is missing: no MagneticFieldStrength in the JSON sidecars; "
                         "pass --field-strength (tesla; field_strength= in Python)")
    try:
        return _checks.field_strength(vals[0]), "sidecar MagneticFieldStrength"
    except (TypeError, ValueError):
        raise ValueError(f"the sidecars' MagneticFieldStrength {vals[0]!r} is not a field in tesla (a number, e.g. 3): "
                         "correct it, or pass --field-strength (tesla; field_strength= in Python)") from None


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
