"""Writing a run's maps, their sidecars, the provenance and the citations.

Each map has a BIDS-like suffix, a unit and a description (``_MAPS``); which maps a run
writes depends on where it stopped (``_WRITTEN``) and on what it was asked for
(``_OPTIONAL``: MWF, SWI).
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__, kernels
from ..io import GreInput, OutputSet

if TYPE_CHECKING:
    from .options import QSMResult

__all__ = ["REPORT_SUFFIX", "output_names", "result_maps", "write_outputs"]


REPORT_SUFFIX = "_report.html"

# name suffix -> (result attribute, units, description)
_MAPS = {
    "Chimap": ("chi", "ppm", "magnetic susceptibility relative to the reference region"),
    "desc-sd_Chimap": ("chi_sd", "ppm", "standard deviation of chi caused by the field noise (linearised noise "
                       "propagation through the inversion; not the bias, nor the chain's edge decisions changing "
                       "between scans, which can double it in the outer 1-2 mm; so not the whole error)"),
    "R2starmap": ("r2star", "1/s", "effective transverse relaxation rate R2*"),
    "T2starmap": ("t2star", "s", "effective transverse relaxation time T2* = 1/R2*"),
    "S0map": ("s0", "arbitrary", "signal extrapolated to TE = 0"),
    "swi": ("swi", "", "susceptibility-weighted image: magnitude times the phase mask to the 4th power"),
    "minIP": ("minip", "", "minimum-intensity projection of the SWI over an axial slab (see Parameters)"),
    "MWFmap": ("mwf", "", "myelin water fraction (0-1) from a spatially regularised three-pool fit"),
    "R2starfit": ("r2star_fit", "", ("RMS residual of the R2* fit over the RMS signal (about 1/SNR where the model "
                                     "holds; 0 with two echoes, which any exponential fits exactly)")),
    "mask": ("mask", "", "brain mask"),
    "fieldmap": ("total_field_hz", "Hz", "total field offset from the multi-echo fit"),
    "fieldnoise": ("field_noise_hz", "Hz", "standard deviation of the field estimate"),
    "localfield": ("local_field_ppm", "ppm", "local field after background removal"),
    "localmask": ("eroded_mask", "", "where the local field is defined (the mask after background removal)"),
    "label-CSF_probseg": ("csf_mask", "", "CSF weight 0-1 from R2* (1 below 4/s, 0 above 8/s): the χ reference "
                          "and the region MEDI+0 holds uniform"),
    "phaseoffset": ("phase_offset", "rad", "echo-independent phase offset removed before unwrapping"),
    "unwrapped": ("unwrapped_phase", "rad", "unwrapped phase of each echo, phase offset removed"),
}
# maps written only when made (--mwf, --swi; the χ SD when the inversion propagates noise)
_OPTIONAL = ("MWFmap", "swi", "minIP", "desc-sd_Chimap")
# which maps each stopping point writes (a whole run leaves out the 4D unwrapped phase)
_WRITTEN = {
    None: ("Chimap", "desc-sd_Chimap", "R2starmap", "T2starmap", "S0map", "R2starfit", "mask", "fieldmap", "fieldnoise", "localfield", "localmask",
           "label-CSF_probseg", "swi", "minIP"),
    "swi": ("swi", "minIP", "mask"),
    "bgremove": ("localfield", "localmask"),
    "inversion": ("Chimap", "desc-sd_Chimap", "label-CSF_probseg"),
    "r2star": ("R2starmap", "T2starmap", "S0map", "R2starfit", "MWFmap", "mask"),
    "mask": ("mask",),
    "unwrap": ("mask", "phaseoffset", "unwrapped"),
    "field_fit": ("mask", "fieldmap", "fieldnoise"),
}


# The command each stage's outputs come from: a single stage names its provenance and citations
# after it, so that the stages of one subject can be run one after the other into one folder.
_STAGE_COMMANDS = {"mask": "mask", "unwrap": "unwrap", "field_fit": "fieldmap", "bgremove": "bgremove",
                   "inversion": "invert", "r2star": "r2star", "swi": "swi"}


def provenance_names(prefix: str, until: str | None = None) -> tuple[str, str]:
    """The provenance JSON and citations file of a run (``<prefix>_provenance.json``) or of a
    single stage (``<prefix>_provenance-<command>.json``, which ``qsmflow report`` and the
    ``bids`` index do not take for a run)."""
    tag = "" if until is None else f"-{_STAGE_COMMANDS[until]}"
    return f"{prefix}_provenance{tag}.json", f"{prefix}_citations{tag}.txt"


def output_names(prefix: str, n_echoes: int, until: str | None = None, *, optional=(),
                 mask_given: bool = False) -> list[str]:
    """Every file ``write_outputs`` writes, to check before any work; the maps only some runs
    make (``_OPTIONAL``) are included when named in ``optional``. A single stage given its mask
    (``mask_given``) does not write it back. A prefix that names a folder (``../x``, ``a/b``)
    is refused: the files would land outside the output folder."""
    if not prefix or prefix in (".", "..") or "/" in prefix or "\\" in prefix:
        raise ValueError(f"the output prefix {prefix!r} must be a file-name prefix without folders "
                         "(e.g. sub-01_ses-1); the folder is given by -o")
    names = []
    for suffix in _written(until, mask_given):
        if n_echoes < 2 and _MAPS[suffix][0] in ("r2star", "t2star", "s0", "r2star_fit", "csf_mask"):
            continue
        if suffix in _OPTIONAL and suffix not in optional:
            continue
        names += [f"{prefix}_{suffix}.nii.gz", f"{prefix}_{suffix}.json"]
    return names + list(provenance_names(prefix, until))


def _written(until: str | None, mask_given: bool) -> tuple:
    """The maps a run stopped after ``until`` writes (a whole run writes its mask even when
    given: the folder then holds everything its maps were made with)."""
    return tuple(s for s in _WRITTEN[until] if not (s == "mask" and mask_given and until is not None))


def result_maps(result: QSMResult, until: str | None = None) -> dict:
    """The maps a run writes, by output suffix (the arrays :func:`write_outputs` saves)."""
    maps = {suffix: getattr(result, _MAPS[suffix][0]) for suffix in _WRITTEN[until]}
    return {k: v for k, v in maps.items() if v is not None}


def write_outputs(
    result: QSMResult,
    data: GreInput,
    out_dir,
    *,
    force: bool = False,
    command_line: list | None = None,
    extra_provenance: dict | None = None,
    until: str | None = None,
) -> list[Path]:
    """Write the maps (NIfTI + JSON sidecar), provenance and citations, atomically.

    ``until`` names the stage the run stopped after (see :func:`run`) and selects the
    maps written. With ``force`` (overwriting an earlier run), the maps of those stages
    that this run did not make (an earlier run's CSF mask, the R2* of a multi-echo run
    before a single-echo one, a χ SD) and the QC report of the earlier maps are deleted,
    so that the folder and its report show this run only.
    """
    import nibabel
    import scipy
    import skimage

    prefix = data.prefix
    n_echoes = getattr(data, "n_echoes", 1)
    mask_given = (result.parameters.get("methods") or {}).get("mask") == "given"
    written = []
    with OutputSet(out_dir, force=force) as out:
        arrays = result_maps(result, until)
        out.check(output_names(prefix, n_echoes, until, optional=[k for k in _OPTIONAL if k in arrays],
                               mask_given=mask_given))
        out.remove([f"{prefix}{REPORT_SUFFIX}"])  # describes the earlier maps; process_subject writes a new one
        for suffix in _written(until, mask_given):
            attr, units, desc = _MAPS[suffix]
            arr = arrays.get(suffix)
            if arr is None:
                out.remove([f"{prefix}_{suffix}.nii.gz", f"{prefix}_{suffix}.json"])
                continue
            written.append(out.nifti(f"{prefix}_{suffix}.nii.gz", arr, data.affine, description=f"qsmflow {suffix}"))
            if suffix == "localfield" and (result.parameters.get("methods") or {}).get("inversion") == "tfi":
                desc = "field of chi inside the region it was fitted on (total field inversion: no background removal)"
            sidecar = {"Units": units, "Description": desc, "GeneratedBy": f"qsmflow {__version__}"}
            if getattr(data, "field_strength", None):
                sidecar["MagneticFieldStrength"] = float(data.field_strength)
            if attr not in ("mask", "eroded_mask"):
                sidecar["Methods"] = result.parameters["methods"]
                sidecar["Parameters"] = {k: v for k, v in result.parameters.items() if k != "methods"}
            written.append(out.json(f"{prefix}_{suffix}.json", sidecar))
        provenance = {
            "qsmflow_version": __version__,
            "versions": {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "nibabel": nibabel.__version__,
                "scikit-image": skimage.__version__,
                "fft": kernels.fft_library(),
            },
            "command_line": command_line if command_line is not None else sys.argv,
            "input": data.provenance,
            "parameters": result.parameters,
            "timings_s": result.timings,
            "warnings": result.warnings,
        }
        if extra_provenance:
            provenance.update(extra_provenance)
        prov_name, cite_name = provenance_names(prefix, until)
        written.append(out.json(prov_name, provenance))
        text = "qsmflow " + __version__ + " used these methods; please cite them:\n\n"
        text += "\n\n".join(f"[{i + 1}] {c}" for i, c in enumerate(result.citations)) + "\n"
        written.append(out.text(cite_name, text))
    return written


def read_provenance(path) -> dict:
    """A run's ``_provenance.json``, or a one-line error naming it when it is not readable JSON
    (a run cut short while writing it, or an edit)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not readable JSON ({exc}): the run that wrote it was cut short or the file was "
                         "edited; run it again with --force (qsmflow run, or qsmflow bids for a dataset)") from None
