"""The QSM and R2* chain: one function composing the stages, one writing the outputs."""

from __future__ import annotations

import logging
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, _checks, bgremove, fieldmap, inversion, kernels, masking, reference, relaxometry, unwrap
from .constants import GAMMA_BAR_HZ_PER_T
from .io import GreInput, OutputSet
from .registry import choose

log = logging.getLogger(__name__)

__all__ = ["Options", "QSMResult", "output_names", "run", "write_outputs"]

STAGES = {
    "mask": masking.METHODS,
    "unwrap": unwrap.METHODS,
    "field_fit": fieldmap.METHODS,
    "bgremove": bgremove.METHODS,
    "inversion": inversion.METHODS,
    "reference": reference.METHODS,
    "r2star": relaxometry.METHODS,
}

# Voxels kept around the mask when the volume is cropped for the computation.
_CROP_MARGIN = 8

_KERNEL_CITATION = (
    "Marques JP, Bowtell R. Application of a Fourier-based method for rapid calculation of field "
    "inhomogeneity due to spatial variation of magnetic susceptibility. Concepts Magn Reson B "
    "2005;25B:65-78. doi:10.1002/cmr.b.20034"
)


@dataclass
class Options:
    """Which method each stage uses, and keyword options per stage."""

    mask: str = "magnitude"
    unwrap: str = "bestpath"
    field_fit: str = "wls"
    bgremove: str = "vsharp"
    inversion: str = "l2"
    reference: str = "mean"
    r2star: str = "loglinear"
    phase_sign: int = 1
    stage_options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.phase_sign not in (1, -1):
            raise ValueError(f"phase_sign must be 1 or -1, got {self.phase_sign}")
        for stage, methods in STAGES.items():
            choose(methods, getattr(self, stage), stage)
        unknown = set(self.stage_options) - set(STAGES)
        if unknown:
            raise ValueError(f"stage_options has unknown stages {sorted(unknown)}; stages are {sorted(STAGES)}")


@dataclass
class QSMResult:
    """Every intermediate of a run, on the input grid."""

    mask: np.ndarray
    total_field_hz: np.ndarray
    field_noise_hz: np.ndarray
    local_field_ppm: np.ndarray
    eroded_mask: np.ndarray
    chi: np.ndarray
    r2star: np.ndarray | None
    t2star: np.ndarray | None
    s0: np.ndarray | None
    timings: dict
    parameters: dict
    citations: list
    warnings: list


class _Timer:
    def __init__(self, timings: dict, stage: str, progress=None):
        self.timings, self.stage, self.progress = timings, stage, progress

    def __enter__(self):
        log.info("%s ...", self.stage)
        if self.progress:
            self.progress(self.stage, "start")
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        dt = time.perf_counter() - self.t0
        self.timings[self.stage] = round(dt, 3)
        if exc[0] is None:
            log.info("%s done in %.1f s", self.stage, dt)
            if self.progress:
                self.progress(self.stage, "end")


def _uncrop(arr: np.ndarray, box, shape, dtype=None) -> np.ndarray:
    out = np.zeros(shape, dtype or arr.dtype)
    out[box] = arr
    return out


def run(data: GreInput, options: Options | None = None, *, mask: np.ndarray | None = None,
        progress=None) -> QSMResult:
    """Run the whole chain on a loaded acquisition.

    Parameters
    ----------
    data : GreInput
        From :func:`qsmflow.io.load_gre`.
    options : Options
        Methods and their options (defaults: the package's default chain).
    mask : ndarray of bool, optional
        Brain mask to use instead of computing one.
    progress : callable, optional
        Called as ``progress(stage, "start" | "end")`` around each stage.

    Returns
    -------
    QSMResult
    """
    collector = _WarningCollector()
    logging.getLogger("qsmflow").addHandler(collector)
    try:
        result = _run(data, options or Options(), mask, progress)
    finally:
        logging.getLogger("qsmflow").removeHandler(collector)
    result.warnings.extend(w for w in collector.messages if w not in result.warnings)
    return result


class _WarningCollector(logging.Handler):
    """Keeps the warnings the stages log, for the provenance file."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _run(data: GreInput, opt: Options, mask, progress) -> QSMResult:
    timings: dict = {}
    warnings = list(data.warnings)
    shape = data.magnitude.shape[:3]
    vs, te = data.voxel_size, data.echo_times
    so = opt.stage_options
    used = {stage: choose(methods, getattr(opt, stage), stage) for stage, methods in STAGES.items()}

    with _Timer(timings, "mask", progress):
        if mask is not None:
            brain = _checks.as_mask("mask", mask, shape) & data.finite
            mask_source = "given"
        else:
            brain = used["mask"].func(data.magnitude, vs, valid=data.finite, echo_times=te,
                                      field_strength=data.field_strength, **so.get("mask", {}))
            mask_source = opt.mask
        if brain.sum() < 27:
            raise ValueError(f"the brain mask holds only {int(brain.sum())} voxels; check the mask or the magnitude")

    if data.n_echoes == 1:
        log.warning("single-echo data: the field comes from one echo (phase offset assumed 0) and no "
                    "R2*/T2* map is made")
    box = kernels.bounding_box(brain, _CROP_MARGIN)
    m = brain[box]
    mag = data.magnitude[box]
    pha = data.phase[box] * np.float32(opt.phase_sign)

    with _Timer(timings, "unwrap", progress):
        unwrapped = used["unwrap"].func(pha, vs, mask=m, echo_times=te, **so.get("unwrap", {}))
    with _Timer(timings, "field_fit", progress):
        f_hz, noise_hz = used["field_fit"].func(unwrapped, mag, te, mask=m, **so.get("field_fit", {}))
        del unwrapped
    hz_per_ppm = GAMMA_BAR_HZ_PER_T * data.field_strength * 1e-6
    with _Timer(timings, "bgremove", progress):
        local_c, eroded_c = used["bgremove"].func(np.where(m, f_hz / hz_per_ppm, 0), m, vs, **so.get("bgremove", {}))
    with _Timer(timings, "inversion", progress):
        chi_c = used["inversion"].func(local_c, eroded_c, vs, data.b0_direction, **so.get("inversion", {}))
    with _Timer(timings, "reference", progress):
        chi_c, ref_offset = used["reference"].func(chi_c, eroded_c, **so.get("reference", {}))

    r2 = t2 = s0 = None
    if data.n_echoes >= 2:
        with _Timer(timings, "r2star", progress):
            r2_c, s0_c = used["r2star"].func(mag, te, mask=m, **so.get("r2star", {}))
            r2 = _uncrop(r2_c, box, shape)
            s0 = _uncrop(s0_c, box, shape)
            t2 = relaxometry.t2star_from_r2star(r2, brain)

    citations = [_KERNEL_CITATION]
    for stage, meth in used.items():
        if stage == "mask" and mask is not None:
            continue
        if stage == "r2star" and r2 is None:
            continue
        citations.extend(c for c in meth.citations if c not in citations)
    parameters = {
        "methods": {stage: (mask_source if stage == "mask" else meth.name) for stage, meth in used.items()},
        "stage_options": so,
        "phase_sign": opt.phase_sign,
        "reference_offset_ppm": ref_offset,
        "hz_per_ppm": hz_per_ppm,
        "crop_box": [[s.start, s.stop] for s in box],
    }
    return QSMResult(
        mask=brain,
        total_field_hz=_uncrop(np.where(m, f_hz, 0), box, shape, np.float32),
        field_noise_hz=_uncrop(np.where(m, noise_hz, 0), box, shape, np.float32),
        local_field_ppm=_uncrop(local_c, box, shape, np.float32),
        eroded_mask=_uncrop(eroded_c, box, shape, bool),
        chi=_uncrop(chi_c, box, shape, np.float32),
        r2star=r2,
        t2star=t2,
        s0=s0,
        timings=timings,
        parameters=parameters,
        citations=citations,
        warnings=warnings,
    )


# name suffix -> (result attribute, units, description)
_MAPS = {
    "Chimap": ("chi", "ppm", "magnetic susceptibility relative to the reference region"),
    "R2starmap": ("r2star", "1/s", "effective transverse relaxation rate R2*"),
    "T2starmap": ("t2star", "s", "effective transverse relaxation time T2* = 1/R2*"),
    "S0map": ("s0", "arbitrary", "signal extrapolated to TE = 0"),
    "mask": ("mask", "", "brain mask"),
    "fieldmap": ("total_field_hz", "Hz", "total field offset from the multi-echo fit"),
    "fieldnoise": ("field_noise_hz", "Hz", "standard deviation of the field estimate"),
    "localfield": ("local_field_ppm", "ppm", "local field after background removal"),
}


def output_names(prefix: str, n_echoes: int) -> list[str]:
    """Every file ``write_outputs`` writes, to check before any work."""
    names = []
    for suffix, (attr, _, _) in _MAPS.items():
        if n_echoes < 2 and attr in ("r2star", "t2star", "s0"):
            continue
        names += [f"{prefix}_{suffix}.nii.gz", f"{prefix}_{suffix}.json"]
    return names + [f"{prefix}_provenance.json", f"{prefix}_citations.txt"]


def write_outputs(
    result: QSMResult,
    data: GreInput,
    out_dir,
    *,
    force: bool = False,
    command_line: list | None = None,
    extra_provenance: dict | None = None,
) -> list[Path]:
    """Write the maps (NIfTI + JSON sidecar), provenance and citations, atomically."""
    import nibabel
    import scipy
    import skimage

    prefix = data.prefix
    written = []
    with OutputSet(out_dir, force=force) as out:
        out.check(output_names(prefix, data.n_echoes))
        for suffix, (attr, units, desc) in _MAPS.items():
            arr = getattr(result, attr)
            if arr is None:
                continue
            written.append(out.nifti(f"{prefix}_{suffix}.nii.gz", arr, data.affine, description=f"qsmflow {suffix}"))
            sidecar = {"Units": units, "Description": desc, "GeneratedBy": f"qsmflow {__version__}"}
            if attr in ("chi", "local_field_ppm", "total_field_hz", "field_noise_hz"):
                sidecar["Methods"] = result.parameters["methods"]
            written.append(out.json(f"{prefix}_{suffix}.json", sidecar))
        provenance = {
            "qsmflow_version": __version__,
            "versions": {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "nibabel": nibabel.__version__,
                "scikit-image": skimage.__version__,
            },
            "command_line": command_line if command_line is not None else sys.argv,
            "input": data.provenance,
            "parameters": result.parameters,
            "timings_s": result.timings,
            "warnings": result.warnings,
        }
        if extra_provenance:
            provenance.update(extra_provenance)
        written.append(out.json(f"{prefix}_provenance.json", provenance))
        text = "qsmflow " + __version__ + " used these methods; please cite them:\n\n"
        text += "\n\n".join(f"[{i + 1}] {c}" for i, c in enumerate(result.citations)) + "\n"
        written.append(out.text(f"{prefix}_citations.txt", text))
    return written
