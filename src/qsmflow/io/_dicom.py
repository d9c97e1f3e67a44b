"""DICOM to BIDS: convert with dcm2niix, then sort what it wrote into a BIDS folder.

dcm2niix (Rorden's converter, shipped as a binary by its PyPI package) decodes the DICOM,
classic (one file per slice) or enhanced (multi-frame) alike, and writes one NIfTI and
one JSON sidecar per image series, echo and part. This module only sorts its output:

- multi-echo gradient echo, magnitude + phase (Philips: one series; Siemens: a magnitude
  and a phase series of the same protocol) -> ``anat/..._echo-N_part-{mag,phase}_MEGRE``;
- real + imaginary images (GE, some Siemens and Philips) -> magnitude and phase;
- a dual-echo field map (two magnitudes and a phase difference whose sidecar gives
  EchoTime1/EchoTime2) -> ``fmap/..._magnitude1``, ``_magnitude2``, ``_phasediff``;
- anything else (localisers, derived images, magnitude without phase) is skipped, with
  the reason.

Phase is written in radians. Vendor conventions, as dcm2niix applies them: Philips phase
arrives in radians (its rescale slope and intercept map the stored integers to ±π);
Siemens phase arrives as scanner integers -4096..4094 and is scaled here by π/4096 (the
rule of :func:`qsmflow.io.scale_phase`); GE real/imaginary pairs become
``atan2(imaginary, real)``. The phase difference of a field map keeps its stored units
(``qsmflow fieldmap --phasediff`` scales it). Every vendor's phase sign is kept as stored.

References
----------
Li X, Morgan PS, Ashburner J, Smith J, Rorden C. The first step for neuroimaging data
analysis: DICOM to NIfTI conversion. J Neurosci Methods 2016;264:47-56.
doi:10.1016/j.jneumeth.2016.03.001
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ._nifti import _is_dicom
from ._phase import scale_phase
from ._write import OutputSet

log = logging.getLogger(__name__)

_LOCALISER = re.compile(r"loc|survey|scout|aahead|calibration", re.I)
_LABEL = re.compile(r"^[A-Za-z0-9]+$")


@dataclass
class _Image:
    """One NIfTI file dcm2niix wrote, with its sidecar."""

    path: Path
    sidecar: dict
    part: str  # mag, phase, real, imag
    echo: int
    series: int
    shape: tuple

    @property
    def protocol(self) -> str:
        return str(self.sidecar.get("ProtocolName") or self.sidecar.get("SeriesDescription") or "")


@dataclass
class SeriesOutcome:
    """What became of one acquisition: the files written (empty when skipped) and why."""

    series: list
    description: str
    kind: str  # "MEGRE", "fieldmap" or "skipped"
    reason: str = ""
    files: list = field(default_factory=list)


def find_dicom(folder) -> list[Path]:
    """Files under ``folder`` that carry the DICOM Part 10 marker ("DICM" at byte 128)."""
    return [path for path in sorted(Path(folder).rglob("*")) if path.is_file() and _is_dicom(path)]


def _dcm2niix(dicom_dir: Path, out: Path) -> None:
    """Run the dcm2niix binary of the ``dcm2niix`` package: gzipped NIfTI, BIDS sidecars."""
    import dcm2niix

    done = subprocess.run([dcm2niix.bin, "-z", "y", "-b", "y", "-ba", "y", "-f", "%s_%d", "-o", str(out),
                           str(dicom_dir)], capture_output=True, text=True)
    for line in done.stdout.splitlines():
        log.debug("dcm2niix: %s", line)
    if done.returncode != 0 and not any(out.glob("*.nii.gz")):
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ValueError(f"dcm2niix could not convert {dicom_dir}: {last[0]}")
    _mark_incomplete(done.stdout, out)


# What dcm2niix says, before writing a volume, when its slices are not a whole, evenly spaced
# stack: the volume it writes then has the wrong geometry (a missing slice's gap stored as the
# usual spacing) with no sign of it in the NIfTI.
_INCOMPLETE = re.compile(r"images may be missing|missing images|interslice distance varies", re.I)
_CONVERTED = re.compile(r"^Convert \d+ DICOM as (.+?) \(")
# dcm2niix gives up on a volume it cannot stack ("Unable to equalize slice distances") or
# resolves the spacing itself ("Slice re-ordering resolved inter-slice distance variability"):
# the messages before either are not about the next volume written.
_GAVE_UP = re.compile(r"unable to equalize|resolved inter-?slice distance", re.I)
#: The sidecar key that carries dcm2niix's words about an incomplete volume to :func:`_images`.
INCOMPLETE_KEY = "QsmflowIncompleteSeries"


def _mark_incomplete(stdout: str, out: Path) -> None:
    """Write dcm2niix's messages about missing or unevenly spaced slices into the sidecar of
    the volume they precede (key ``INCOMPLETE_KEY``)."""
    problems: list[str] = []
    for line in stdout.splitlines():
        line = line.strip()
        if _GAVE_UP.search(line):  # the messages were about a volume not written, or no longer hold
            problems = []
            continue
        if _INCOMPLETE.search(line):
            problems.append(line.removeprefix("Warning: "))
            continue
        written = _CONVERTED.match(line)
        if written is None:
            continue
        if problems:
            sidecar = Path(written.group(1) + ".json")
            if sidecar.exists():
                sc = json.loads(sidecar.read_text())
                sc[INCOMPLETE_KEY] = list(dict.fromkeys(problems))
                sidecar.write_text(json.dumps(sc, indent=2))
        problems = []


def _part(path: Path, sidecar: dict) -> str:
    image_type = [str(t).upper() for t in sidecar.get("ImageType", [])]
    stem = path.name.split(".")[0]
    if stem.endswith("_real") or "REAL" in image_type:
        return "real"
    if stem.endswith("_imaginary") or "IMAGINARY" in image_type:
        return "imag"
    if stem.endswith("_ph") or "P" in image_type or "PHASE" in image_type:
        return "phase"
    return "mag"


def _images(conv: Path) -> tuple[list[_Image], list[SeriesOutcome]]:
    """The converted images worth sorting, and the series skipped outright."""
    images, skipped = [], []
    # a series with one incomplete volume is dropped whole: its other volumes would make an
    # acquisition short of that echo or part, processed without a word
    sidecars = [json.loads(js.read_text()) for js in conv.glob("*.json")]
    incomplete = {int(sc.get("SeriesNumber", 0)) for sc in sidecars if sc.get(INCOMPLETE_KEY)}
    for js in sorted(conv.glob("*.json")):
        nii = next((n for n in (js.with_suffix(".nii.gz"), js.with_suffix(".nii")) if n.exists()), None)
        if nii is None:
            continue
        sc = json.loads(js.read_text())
        series = int(sc.get("SeriesNumber", 0))
        desc = str(sc.get("SeriesDescription", js.stem))
        image_type = [str(t).upper() for t in sc.get("ImageType", [])]
        shape = nib.load(str(nii)).shape
        if series in incomplete:  # one outcome per series, however many of its volumes are incomplete
            if sc.get(INCOMPLETE_KEY) and not any(o.series == [series] and o.reason.startswith("incomplete")
                                                  for o in skipped):
                skipped.append(SeriesOutcome([series], desc, "skipped", "incomplete: its slices are not a whole, "
                                             f"evenly spaced stack (dcm2niix: \"{sc[INCOMPLETE_KEY][0].rstrip('.')}\"); "
                                             "export the whole series from the scanner or PACS again"))
        elif "DERIVED" in image_type:
            skipped.append(SeriesOutcome([series], desc, "skipped", "a derived image (made by the scanner)"))
        elif _LOCALISER.search(desc) or "LOCALIZER" in image_type:
            skipped.append(SeriesOutcome([series], desc, "skipped", "a localiser"))
        elif len(shape) > 3 and shape[3] > 1:
            skipped.append(SeriesOutcome([series], desc, "skipped", f"{shape[3]} volumes in one file (not one echo)"))
        else:
            images.append(_Image(nii, sc, _part(nii, sc), int(sc.get("EchoNumber", 1)), series, tuple(shape[:3])))
    return images, skipped


def _acquisitions(images: list[_Image]) -> list[list[_Image]]:
    """Images grouped into acquisitions: same protocol and grid; a repeated (part, echo)
    starts a new acquisition (series in order), so repeated scans stay apart."""
    groups: dict = {}
    for im in sorted(images, key=lambda i: (i.series, i.echo)):
        groups.setdefault((im.protocol, im.shape), []).append(im)
    out = []
    for members in groups.values():
        current: list[_Image] = []
        for im in members:
            if any(o.part == im.part and o.echo == im.echo for o in current):
                out.append(current)
                current = []
            current.append(im)
        out.append(current)
    return sorted(out, key=lambda acq: min(i.series for i in acq))


def _classify(acq: list[_Image]) -> tuple[str, str]:
    """("MEGRE" | "fieldmap" | "skipped", reason)."""
    parts = {p: sorted(i.echo for i in acq if i.part == p) for p in ("mag", "phase", "real", "imag")}
    phases = [i for i in acq if i.part == "phase"]
    if len(phases) == 1 and "EchoTime1" in phases[0].sidecar and "EchoTime2" in phases[0].sidecar \
            and 1 <= len(parts["mag"]) <= 2:
        return "fieldmap", ""
    complex_pair = parts["real"] and parts["real"] == parts["imag"]
    if not (parts["mag"] and parts["mag"] == parts["phase"]) and not complex_pair:
        if parts["mag"] and not parts["phase"] and not parts["real"]:
            return "skipped", ("magnitude only, no phase: QSM needs the phase (for R2* alone, convert with dcm2niix "
                               "and use qsmflow r2star)")
        return "skipped", f"no matching magnitude and phase per echo (parts found: " \
                          f"{', '.join(f'{p} echoes {e}' for p, e in parts.items() if e)})"
    if any("EchoTime" not in i.sidecar for i in acq):
        return "skipped", "the DICOM gives no echo time (EchoTime missing from the sidecar)"
    return "MEGRE", ""


def _phase_radians(im: _Image):
    """(radians or None when the file holds radians already, the scaling rule)."""
    img = nib.load(str(im.path))
    data = np.asarray(img.dataobj, dtype=np.float64)
    finite = np.isfinite(data)
    on_disk_integer = np.issubdtype(img.get_data_dtype(), np.integer) and img.dataobj.slope in (1, None) \
        and img.dataobj.inter in (0, None)
    radians, rule = scale_phase(data[finite], on_disk_integer=bool(on_disk_integer))
    if rule["rule"] == "radians, kept":
        return None, rule
    out = np.zeros(data.shape, np.float32)
    out[finite] = radians
    return out, rule


def _write_megre(out: OutputSet, acq, base: str, outcome: SeriesOutcome) -> None:
    by = {(i.part, i.echo): i for i in acq}
    echoes = sorted({i.echo for i in acq})
    for n, echo in enumerate(echoes, start=1):
        stem = f"{base}_echo-{n}"
        if ("real", echo) in by:
            re_im, im_im = by[("real", echo)], by[("imag", echo)]
            re_img = nib.load(str(re_im.path))
            z = np.asarray(re_img.dataobj, np.float64) + 1j * np.asarray(nib.load(str(im_im.path)).dataobj, np.float64)
            sc = dict(re_im.sidecar, EchoNumber=n)
            outcome.files += [out.nifti(f"{stem}_part-mag_MEGRE.nii.gz", np.abs(z), re_img.affine),
                              out.json(f"{stem}_part-mag_MEGRE.json", sc),
                              out.nifti(f"{stem}_part-phase_MEGRE.nii.gz", np.angle(z), re_img.affine),
                              out.json(f"{stem}_part-phase_MEGRE.json",
                                       dict(sc, Units="rad", PhaseFrom="atan2(imaginary, real)"))]
            continue
        mag, pha = by[("mag", echo)], by[("phase", echo)]
        outcome.files += [out.copy(f"{stem}_part-mag_MEGRE.nii.gz", mag.path),
                          out.json(f"{stem}_part-mag_MEGRE.json", dict(mag.sidecar, EchoNumber=n))]
        radians, rule = _phase_radians(pha)
        sc = dict(pha.sidecar, EchoNumber=n, Units="rad")
        if radians is None:
            outcome.files.append(out.copy(f"{stem}_part-phase_MEGRE.nii.gz", pha.path))
        else:
            sc["PhaseScaling"] = rule["rule"]
            outcome.files.append(out.nifti(f"{stem}_part-phase_MEGRE.nii.gz", radians, nib.load(str(pha.path)).affine))
        outcome.files.append(out.json(f"{stem}_part-phase_MEGRE.json", sc))


def _write_fieldmap(out: OutputSet, acq, base: str, outcome: SeriesOutcome) -> None:
    mags = sorted((i for i in acq if i.part == "mag"), key=lambda i: i.echo)
    phase = next(i for i in acq if i.part == "phase")
    for n, m in enumerate(mags, start=1):
        outcome.files += [out.copy(f"{base}_magnitude{n}.nii.gz", m.path), out.json(f"{base}_magnitude{n}.json",
                                                                                     m.sidecar)]
    outcome.files += [out.copy(f"{base}_phasediff.nii.gz", phase.path),
                      out.json(f"{base}_phasediff.json", phase.sidecar)]


def _label(kind: str, value) -> str:
    value = str(value).removeprefix(f"{kind}-")
    if not _LABEL.match(value):
        raise ValueError(f"--{'subject' if kind == 'sub' else 'session'} {value!r} must be letters and digits only "
                         "(a BIDS label), e.g. 01")
    return value


def convert_dicom(dicom_dir, bids_dir, *, subject, session=None, force: bool = False) -> list[SeriesOutcome]:
    """Convert a folder of DICOM into a BIDS folder for one subject (and session).

    Returns what became of every acquisition found (written or skipped, with the reason).
    Nothing is written unless at least one acquisition can be used; existing files are
    refused unless ``force``.
    """
    dicom_dir = Path(dicom_dir)
    if not dicom_dir.is_dir():
        raise ValueError(f"DICOM folder {dicom_dir} does not exist or is not a folder")
    sub = _label("sub", subject)
    ses = _label("ses", session) if session else None
    if not find_dicom(dicom_dir):
        raise ValueError(f"no DICOM files in {dicom_dir} (none carries the DICOM marker); give the folder of the "
                         "scanner's DICOM export")
    with tempfile.TemporaryDirectory(prefix="qsmflow-dcm2niix-") as tmp:
        _dcm2niix(dicom_dir, Path(tmp))
        return sort_converted(tmp, bids_dir, subject=sub, session=ses, force=force)


def sort_converted(converted_dir, bids_dir, *, subject, session=None, force: bool = False) -> list[SeriesOutcome]:
    """Sort a folder of dcm2niix output (NIfTI + JSON sidecars) into BIDS; see :func:`convert_dicom`."""
    sub = _label("sub", subject)
    ses = _label("ses", session) if session else None
    prefix = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
    folder = f"sub-{sub}" + (f"/ses-{ses}" if ses else "")
    images, outcomes = _images(Path(converted_dir))
    acqs = [(a, *_classify(a)) for a in _acquisitions(images)]
    count = {k: sum(kind == k for _, kind, _ in acqs) for k in ("MEGRE", "fieldmap")}
    runs = {"MEGRE": 0, "fieldmap": 0}
    with OutputSet(bids_dir, force=force) as out:
        for acq, kind, reason in acqs:
            outcome = SeriesOutcome(sorted({i.series for i in acq}), acq[0].protocol, kind, reason)
            outcomes.append(outcome)
            if kind == "skipped":
                continue
            runs[kind] += 1
            run = f"_run-{runs[kind]}" if count[kind] > 1 else ""
            if kind == "MEGRE":
                _write_megre(out, acq, f"{folder}/anat/{prefix}{run}", outcome)
            else:
                _write_fieldmap(out, acq, f"{folder}/fmap/{prefix}{run}", outcome)
        if not any(count.values()):
            seen = "; ".join(f"series {o.series} ({o.description}): {o.reason}" for o in outcomes) or "none"
            raise ValueError(f"no multi-echo GRE with phase and no field map among the converted series: {seen}")
        if not (Path(bids_dir) / "dataset_description.json").exists():
            out.json("dataset_description.json", {"Name": "converted by qsmflow dicom", "BIDSVersion": "1.9.0",
                                                  "GeneratedBy": [{"Name": "dcm2niix"}, {"Name": "qsmflow"}]})
    return sorted(outcomes, key=lambda o: o.series)
