"""The command group, its shared options and parsing helpers, and the user-error wrapper."""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import logging
import math
import re
import sys
from pathlib import Path

import click

from .. import __version__, kernels

log = logging.getLogger("qsmflow")

_USER_ERRORS = (ValueError, TypeError, OSError)


@contextlib.contextmanager
def _logging_to_stderr(verbose: bool, quiet: bool):
    """Route the package's log to stderr for one command, then restore the caller's logging.

    Restoring matters when a command runs inside a Python process (tests, notebooks, ``bids`` workers):
    the handler holds the stderr of the moment, and ``propagate=False`` would hide later records.
    """
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    pkg, nib = logging.getLogger("qsmflow"), logging.getLogger("nibabel")
    saved = (pkg.handlers[:], pkg.level, pkg.propagate, nib.level)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_without_python_hints)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S") if verbose
                         else logging.Formatter("qsmflow: %(message)s"))
    pkg.handlers[:] = [handler]
    pkg.setLevel(level)
    pkg.propagate = False
    # nibabel reports header fix-ups (e.g. qfac) at INFO on its own handler; keep them out of the way
    nib.setLevel(logging.DEBUG if verbose else logging.ERROR)
    try:
        yield
    finally:
        handler.flush()
        pkg.handlers[:], pkg.propagate = saved[0], saved[2]
        pkg.setLevel(saved[1])
        nib.setLevel(saved[3])


# The hints for Python callers in messages: "(phase_scale= in Python)", "(force=True in Python)",
# "(medi() / tv() in Python)", "...; echo_times= in Python)". They are not for the command
# line, where the option renaming below would make them read "--echo-times= in Python".
_PY_HINT = re.compile(r"\s*\((?:[^();,]|\(\))*\bin Python\)")
_PY_HINT_TAIL = re.compile(r"[;,]\s*(?:[^();]|\(\))*\bin Python(?=\))")


def _drop_python_hints(msg: str) -> str:
    return _PY_HINT_TAIL.sub("", _PY_HINT.sub("", msg))


def _without_python_hints(record: logging.LogRecord) -> bool:
    """A log filter of the command line's handler: the record's message without the hints for
    Python callers (see ``_PY_HINT``)."""
    text = record.getMessage()
    if "in Python" in text:
        record.msg, record.args = _drop_python_hints(text), ()
    return True


def _cli_words(msg: str) -> str:
    """An error raised deep in qsmflow names Python parameters (``echo_times``); on the command
    line the user typed the option (``--echo-times``): name that instead. Only names with an
    underscore are replaced (no one types those; plain words such as 'mask' stay)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return msg
    msg = _drop_python_hints(msg)
    for param in ctx.command.params:
        longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        if param.name and "_" in param.name and longs:
            msg = re.sub(rf"(?<![\w-]){re.escape(param.name)}(?!\w)", longs[0], msg)
    return msg


def _command(func):
    """Add --verbose/--quiet and turn user errors into one line and exit code 1."""

    @click.option("-v", "--verbose", is_flag=True, help="Debug logging; show tracebacks.")
    @click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
    @functools.wraps(func)
    def wrapper(*args, verbose=False, quiet=False, **kwargs):
        try:
            with _logging_to_stderr(verbose, quiet):
                kernels.fft_library()  # an unknown $QSMFLOW_FFT is refused before any work
                return func(*args, **kwargs)
        except click.exceptions.ClickException:
            raise
        except MemoryError:
            if verbose:
                raise
            click.echo("qsmflow: error: out of memory; crop the data or use a machine with more RAM", err=True)
            sys.exit(1)
        except _USER_ERRORS as exc:
            if verbose:
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                where = f" writing {exc.filename}" if exc.filename else ""
                msg = f"no space left on the disk{where}; free some space there, then run the command again"
            click.echo(f"qsmflow: error: {_cli_words(msg)}", err=True)
            sys.exit(1)
        except Exception as exc:  # a bug: still one line, but say how to see more
            if verbose:
                raise
            click.echo(f"qsmflow: internal error: {type(exc).__name__}: {exc} (rerun with --verbose for the "
                       "traceback and report it)", err=True)
            sys.exit(1)

    return wrapper


# ----------------------------------------------------------------------------- parsing helpers


_slice_axis_option = click.option(
    "--slice-axis", type=click.Choice(["i", "j", "k", "3d"]),
    help="Acquisition geometry for the R2* gradient correction: the voxel axis along which a 2D multi-slice scan "
         "stacks its slices, or 3d (default: the sidecars' MRAcquisitionType and SliceEncodingDirection, else 3d).")


def _set_slice_axis(data, choice: str | None) -> None:
    """Apply --slice-axis over what the sidecars said, and say which geometry the R2* correction assumes."""
    if choice is not None:
        data.override_slice_axis(choice, "--slice-axis")
    log.debug("acquisition: %s (%s)", "3D" if data.slice_axis is None else f"2D, slices along {'ijk'[data.slice_axis]}",
              data.provenance.get("slice_axis_source", "default"))


def _floats(text: str | None, name: str, count: int | None = None) -> list[float] | None:
    if text is None:
        return None
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers, got {text!r}") from None
    if count is not None and len(vals) != count:
        raise ValueError(f"{name} needs {count} comma-separated numbers, got {text!r}")
    return vals


def _expand(paths: tuple[str, ...], option: str) -> list[str]:
    """The files of a file option, globs expanded. JSON sidecars that a glob (quoted, or
    expanded by the shell) caught with the images are dropped: each image's sidecar is read
    next to it anyway."""
    out: list[str] = []
    for p in paths:
        if any(c in p for c in "*?["):
            hits = sorted(glob.glob(p))
            if not hits:
                raise ValueError(f"{option} {p!r} matches no file")
            out.extend(hits)
        else:
            out.append(p)
    sidecars = [p for p in out if p.lower().endswith(".json")]
    if sidecars and len(sidecars) == len(out):
        raise ValueError(f"{option} gives only JSON sidecars ({Path(sidecars[0]).name}, ...); give the NIfTI images "
                         "(.nii or .nii.gz): their sidecars are read next to them")
    if sidecars:
        log.info("%s: %d JSON sidecar(s) matched with the images left out (each image's sidecar is read next to it)",
                 option, len(sidecars))
    return [p for p in out if not p.lower().endswith(".json")]


# ----------------------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="qsmflow")
def cli():
    """qsmflow: QSM (χ, ppm) and R2*/T2* maps from multi-echo GRE NIfTI files.

    Start with `qsmflow demo`; process your own data with `qsmflow run`.
    """


class _Files(click.Option):
    """A file option that takes one or more files after one flag, as an unquoted shell glob
    expands (``--mag sub-01_echo-*_mag.nii`` becomes ``--mag e1.nii e2.nii e3.nii``); the flag
    may also be repeated. Values are taken up to the next word starting with ``-``."""

    def add_to_parser(self, parser, ctx):
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            opt = parser._long_opt.get(name) or parser._short_opt.get(name)
            if opt is None:  # pragma: no cover  (click always registers the option's names)
                continue
            take = opt.process

            def process(value, state, take=take):
                take(value, state)
                while state.rargs and self._more(state.rargs[0]):
                    take(state.rargs.pop(0), state)

            opt.process = process

    @staticmethod
    def _more(word: str) -> bool:
        return not word.startswith("-")


class _Labels(_Files):
    """A label option that takes one or more BIDS labels after one flag, as BIDS Apps do
    (``--participant-label 01 02``); it stops at anything that is not a label (a path)."""

    @staticmethod
    def _more(word: str) -> bool:
        return re.fullmatch(r"((sub|ses)-)?[A-Za-z0-9]+(,((sub|ses)-)?[A-Za-z0-9]+)*", word) is not None


def _input_options(func=None, *, required: bool = True):
    """--mag, --phase and the acquisition options; ``required=False`` where another input
    (``run --dicom``) can take the place of --mag/--phase."""
    if func is None:
        return functools.partial(_input_options, required=required)
    options = [
        click.option("--mag", "mag", multiple=True, required=required, metavar="NIFTI", cls=_Files,
                     help="Magnitude: one 4D file, or one 3D file per echo (repeat the option or use a glob)."),
        click.option("--phase", "phase", multiple=True, required=required, metavar="NIFTI", cls=_Files,
                     help="Phase: one 4D file, or one 3D file per echo. Radians, or scanner integers (rescaled)."),
        click.option("--echo-times", metavar="T1,T2,...",
                     help="Echo times in SECONDS, comma-separated (default: EchoTime from the JSON sidecars)."),
        click.option("--field-strength", type=float, metavar="TESLA",
                     help="B0 in tesla (default: MagneticFieldStrength from the sidecars)."),
        click.option("--phase-scale", type=float, metavar="FACTOR",
                     help="Force the factor converting stored phase to radians (default: detected, logged)."),
        click.option("--b0-direction", metavar="X,Y,Z",
                     help="B0 direction in voxel axes (default: from the affine)."),
        click.option("--phase-sign", type=click.Choice(["1", "-1"]), default="1", show_default=True,
                     help="-1 flips the phase for scanners whose phase runs the other way."),
    ]
    for opt in reversed(options):
        func = opt(func)
    return func


def _load(mag, phase, echo_times, field_strength, phase_scale, b0_direction, prefix=None):
    from .. import io

    return io.load_gre(
        _expand(mag, "--mag"),
        _expand(phase, "--phase"),
        echo_times=_floats(echo_times, "--echo-times"),
        field_strength=field_strength,
        phase_scale=phase_scale,
        b0_direction=_floats(b0_direction, "--b0-direction", 3),
        prefix=prefix,
    )


def _stage_options(stages):
    """--<stage> choice options for the given pipeline stages (defaults: the chain's)."""
    from .. import pipeline

    helps = {"phase_offset": "Removal of the echo-independent phase offset.", "unwrap": "Phase unwrapping.",
             "field_fit": "Multi-echo field fit.",
             "bgremove": "Background field removal (auto: LBV for voxels up to 1.5 mm, else PDF; not used by tfi).",
             "inversion": "Dipole inversion (auto: medi for voxels up to 1.5 mm, else tfi; medi: MEDI+0 "
                          "with the CSF term when R2* finds CSF; tfi: total field inversion, no background "
                          "removal, 5-10x slower).",
             "reference": "Zero of χ: csf (CSF found from R2*; whole-brain mean if none) or mean.",
             "r2star": "R2* fit: log-linear (S²-weighted), ARLO (closed form) or NLLS (Levenberg-Marquardt)."}

    def deco(func):
        for stage in reversed(stages):
            names = sorted(pipeline.STAGES[stage]) + (["auto"] if stage in ("bgremove", "inversion") else [])
            func = click.option(f"--{stage.replace('_', '-')}", stage, type=click.Choice(names, case_sensitive=False),
                                default=getattr(pipeline.Options, stage), show_default=True,
                                help=helps.get(stage))(func)
        return func

    return deco


# the regularisation weight's keyword per inversion method
_REG_PARAM = {"tv": "alpha", "medi": "alpha", "tfi": "alpha", "auto": "alpha", "l2": "lam"}


def _regularisation_option(func):
    return click.option(
        "--regularisation", default="auto", show_default=True, metavar="auto|WEIGHT",
        help="Inversion weight: auto (tv/medi: discrepancy principle with the field-noise map, tfi: its "
             "starting rule, a fixed value without one; l2: its fixed 0.02 mm²) or a number (alpha, ppm·mm, "
             "for tv/medi/tfi; lambda, mm², for l2).")(func)


def _regularisation_options(inversion: str, value: str) -> dict:
    """stage_options for the inversion's weight (``--regularisation``)."""
    text = str(value).strip().lower()
    if inversion not in _REG_PARAM:
        if text != "auto":
            raise ValueError(f"--inversion {inversion} has no regularisation weight; drop --regularisation")
        return {}
    if text == "auto":  # tv/medi choose by default; l2 keeps its fixed default (no automatic choice)
        return {}
    try:
        weight = float(text)
    except ValueError:
        raise ValueError(f"--regularisation must be 'auto' or a number, got {value!r}") from None
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"--regularisation must be a positive number (or auto), got {value!r}")
    return {"inversion": {_REG_PARAM[inversion]: weight}}


def _in_ppm(fmap, unit: str, field_strength, option: str) -> float:
    """Factor taking the map ``fmap`` (``io.MapInput``) from ``unit`` (auto: its sidecar's Units) to ppm."""
    from .._shared import checks as _checks
    from .._shared.units import hz_per_ppm

    if unit == "auto":
        unit = str(fmap.sidecar.get("Units", "")).strip().lower()
        if unit not in ("hz", "ppm"):
            flag = "--noise-unit" if option == "--noise" else "--unit"
            raise ValueError(f"the unit of {option} is unknown (no Units in its sidecar); pass {flag} hz or ppm")
    if unit == "ppm":
        return 1.0
    b0 = field_strength if field_strength is not None else fmap.sidecar.get("MagneticFieldStrength")
    if b0 is None:
        raise ValueError(f"{option} is in Hz and B0 is unknown; pass --field-strength (tesla)")
    return 1.0 / hz_per_ppm(_checks.field_strength(b0))


def _check_ppm_range(field_ppm, mask, option: str, limit_ppm: float, what: str) -> None:
    """Refuse a field map whose values in ``mask``, read as ppm, lie far beyond ``what`` can
    hold (``limit_ppm`` at the 99th percentile of |field|): a map in Hz taken for ppm."""
    import numpy as np

    values = np.abs(np.asarray(field_ppm)[mask])
    top = float(np.percentile(values, 99)) if values.size else 0.0
    if top > limit_ppm:
        raise ValueError(f"{option} reaches {top:.3g} ppm (99th percentile of its "
                         f"magnitude in the mask), far beyond {what} (< {limit_ppm:g} ppm): is it in Hz? "
                         "Pass --unit hz (with --field-strength if its sidecar lacks it)")


def _stage_command(until, data, options, mask_path, out, force):
    """Run the chain up to ``until`` and write that stage's outputs."""
    from .. import io, pipeline

    with io.OutputSet(out, force=force) as outset:
        outset.check(pipeline.output_names(data.prefix, data.n_echoes, until, mask_given=bool(mask_path)))
    mask = None
    if mask_path:
        mask = io.load_mask(mask_path, name="--mask", shape=data.magnitude.shape[:3], affine=data.affine)
    result = pipeline.run(data, options, mask=mask, until=until)
    written = pipeline.write_outputs(result, data, out, force=force, command_line=sys.argv, until=until)
    log.info("wrote %d files to %s", len(written), out)


_minip_option = click.option(
    "--minip-slab", type=click.FloatRange(min=0, min_open=True), default=16.0, show_default=True, metavar="MM",
    help="Thickness of the minIP slab in mm (rounded to an odd number of slices).")


_MASK_METHOD_HELP = ("Brain mask from the magnitude when --mask is not given: bet (deformable surface; whole heads) "
                     "or threshold (Otsu, erosion, largest component). A crop inside the head gets every voxel with "
                     "signal either way.")


def _mask_method_option(func):
    return click.option("--mask-method", type=click.Choice(["bet", "threshold"], case_sensitive=False), default="bet",
                        show_default=True, help=_MASK_METHOD_HELP)(func)


_no_chi_sd_option = click.option(
    "--no-chi-sd", is_flag=True,
    help="Do not write <prefix>_desc-sd_Chimap, the standard deviation of chi caused by the field noise "
         "(made with --inversion medi or tfi; it costs about a quarter of a MEDI inversion).")


def _processing_options(func):
    """The chain's method choices shared by ``run`` and ``bids`` (see :func:`_options_from`)."""
    options = [
        _mask_method_option,
        _stage_options(["phase_offset", "unwrap", "field_fit", "bgremove", "inversion", "reference"]),
        click.option("--bg-polynomial", type=click.IntRange(0, 4), default=0, show_default=True,
                     help="Also remove a polynomial of this order from the local field (0: off)."),
        click.option("--lbv-refine/--no-lbv-refine", default=True, show_default=True,
                     help="After LBV with MEDI: add back the tissue field LBV took for background (from the "
                          "field chi makes on the region's edge) and invert again from chi (10-20 s more at 1 mm)."),
        _regularisation_option,
        _stage_options(["r2star"]),
        click.option("--r2star-gradient-correction", "--gradient-correction", "r2star_gradient_correction",
                     is_flag=True,
                     help="Divide out the signal lost to macroscopic field gradients before the R2* fit: "
                          "through-slice dephasing of 2D data, echoes shifted out of k-space (see --slice-axis)."),
        _slice_axis_option,
        click.option("--swi", is_flag=True, help="Also write SWI and its minimum-intensity projection (_swi, _minIP)."),
        _minip_option,
        _no_chi_sd_option,
        click.option("--no-report", is_flag=True, help="Do not write the HTML QC report (<prefix>_report.html)."),
    ]
    for opt in reversed(options):
        func = opt(func)
    return func


def _options_from(phase_sign, kw: dict):
    """pipeline.Options from the keyword arguments of :func:`_processing_options` (slice_axis left in ``kw``)."""
    from .. import pipeline

    return pipeline.Options(mask=kw["mask_method"], phase_offset=kw["phase_offset"], unwrap=kw["unwrap"], field_fit=kw["field_fit"],
                            bgremove=kw["bgremove"], inversion=kw["inversion"], reference=kw["reference"],
                            phase_sign=int(phase_sign), bg_polynomial=kw["bg_polynomial"], lbv_refine=kw["lbv_refine"],
                            r2star=kw["r2star"],
                            r2star_gradient_correction=kw["r2star_gradient_correction"], swi=kw["swi"],
                            minip_slab_mm=kw["minip_slab"], chi_sd=not kw["no_chi_sd"],
                            stage_options=_regularisation_options(kw["inversion"], kw["regularisation"]))
