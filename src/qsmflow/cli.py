"""Command line: the only module that imports click.

User mistakes become a one-line ``qsmflow: error: ...`` and exit code 1, with no
traceback unless ``--verbose``.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import logging
import sys
import time
from pathlib import Path

import click

from . import __version__

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


def _command(func):
    """Add --verbose/--quiet and turn user errors into one line and exit code 1."""

    @click.option("-v", "--verbose", is_flag=True, help="Debug logging; show tracebacks.")
    @click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
    @functools.wraps(func)
    def wrapper(*args, verbose=False, quiet=False, **kwargs):
        try:
            with _logging_to_stderr(verbose, quiet):
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
            click.echo(f"qsmflow: error: {msg}", err=True)
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
    out: list[str] = []
    for p in paths:
        if any(c in p for c in "*?["):
            hits = sorted(glob.glob(p))
            if not hits:
                raise ValueError(f"{option} {p!r} matches no file")
            out.extend(hits)
        else:
            out.append(p)
    return out


# ----------------------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="qsmflow")
def cli():
    """qsmflow: QSM (χ, ppm) and R2*/T2* maps from multi-echo GRE NIfTI files.

    Start with `qsmflow demo`; process your own data with `qsmflow run`.
    """


def _input_options(func):
    options = [
        click.option("--mag", "mag", multiple=True, required=True, metavar="NIFTI",
                     help="Magnitude: one 4D file, or one 3D file per echo (repeat the option or use a glob)."),
        click.option("--phase", "phase", multiple=True, required=True, metavar="NIFTI",
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
    from . import io

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
    from . import pipeline

    helps = {"phase_offset": "Removal of the echo-independent phase offset.", "unwrap": "Phase unwrapping.",
             "field_fit": "Multi-echo field fit.",
             "bgremove": "Background field removal (auto: LBV for voxels up to 1.25 mm, else RESHARP).",
             "inversion": "Dipole inversion (medi: MEDI+0 with the CSF term when R2* finds CSF).",
             "reference": "Zero of χ: csf (CSF found from R2*; whole-brain mean if none) or mean.",
             "r2star": "R2* fit: log-linear (S²-weighted), ARLO (closed form) or NLLS (Levenberg-Marquardt)."}

    def deco(func):
        for stage in reversed(stages):
            names = sorted(pipeline.STAGES[stage]) + (["auto"] if stage == "bgremove" else [])
            func = click.option(f"--{stage.replace('_', '-')}", stage, type=click.Choice(names, case_sensitive=False),
                                default=getattr(pipeline.Options, stage), show_default=True,
                                help=helps.get(stage))(func)
        return func

    return deco


# the regularisation weight's keyword per inversion method
_REG_PARAM = {"tv": "alpha", "medi": "alpha", "l2": "lam"}


def _regularisation_option(func):
    return click.option(
        "--regularisation", default="auto", show_default=True, metavar="auto|WEIGHT",
        help="Inversion weight: auto (tv/medi: discrepancy principle with the field-noise map, a fixed value "
             "without one; l2: its fixed 0.02 mm²) or a number (alpha, ppm·mm, for tv/medi; lambda, mm², for l2).")(func)


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
    if not weight > 0:
        raise ValueError(f"--regularisation must be positive, got {value!r}")
    return {"inversion": {_REG_PARAM[inversion]: weight}}


def _in_ppm(fmap, unit: str, field_strength, option: str) -> float:
    """Factor taking the map ``fmap`` (``io.MapInput``) from ``unit`` (auto: its sidecar's Units) to ppm."""
    from . import _checks
    from .constants import GAMMA_BAR_HZ_PER_T

    if unit == "auto":
        units = str(fmap.sidecar.get("Units", "")).strip().lower()
        if units not in ("hz", "ppm"):
            flag = "--noise-unit" if option == "--noise" else "--unit"
            raise ValueError(f"the unit of {option} is unknown (no Units in its sidecar); pass {flag} hz or ppm")
        unit = units
    if unit == "ppm":
        return 1.0
    b0 = field_strength if field_strength is not None else fmap.sidecar.get("MagneticFieldStrength")
    if b0 is None:
        raise ValueError(f"{option} is in Hz and B0 is unknown; pass --field-strength (tesla)")
    return 1.0 / (GAMMA_BAR_HZ_PER_T * _checks.field_strength(b0) * 1e-6)


def _stage_command(until, data, options, mask_path, out, force):
    """Run the chain up to ``until`` and write that stage's outputs."""
    from . import io, pipeline

    with io.OutputSet(out, force=force) as outset:
        outset.check(pipeline.output_names(data.prefix, data.n_echoes, until))
    mask = None
    if mask_path:
        mask = io.load_volume(mask_path, name="--mask", shape=data.magnitude.shape[:3], affine=data.affine) > 0.5
    result = pipeline.run(data, options, mask=mask, until=until)
    written = pipeline.write_outputs(result, data, out, force=force, command_line=sys.argv, until=until)
    log.info("wrote %d files to %s", len(written), out)


def _processing_options(func):
    """The chain's method choices shared by ``run`` and ``bids`` (see :func:`_options_from`)."""
    options = [
        _stage_options(["phase_offset", "unwrap", "field_fit", "bgremove", "inversion", "reference"]),
        click.option("--bg-polynomial", type=click.IntRange(0, 4), default=0, show_default=True,
                     help="Also remove a polynomial of this order from the local field (0: off)."),
        _regularisation_option,
        _stage_options(["r2star"]),
        click.option("--r2star-gradient-correction", is_flag=True,
                     help="Divide out the signal lost to macroscopic field gradients before the R2* fit: "
                          "through-slice dephasing of 2D data, echoes shifted out of k-space (see --slice-axis)."),
        _slice_axis_option,
    ]
    for opt in reversed(options):
        func = opt(func)
    return func


def _options_from(phase_sign, kw: dict):
    """pipeline.Options from the keyword arguments of :func:`_processing_options` (slice_axis left in ``kw``)."""
    from . import pipeline

    return pipeline.Options(phase_offset=kw["phase_offset"], unwrap=kw["unwrap"], field_fit=kw["field_fit"],
                            bgremove=kw["bgremove"], inversion=kw["inversion"], reference=kw["reference"],
                            phase_sign=int(phase_sign), bg_polynomial=kw["bg_polynomial"], r2star=kw["r2star"],
                            r2star_gradient_correction=kw["r2star_gradient_correction"],
                            stage_options=_regularisation_options(kw["inversion"], kw["regularisation"]))


@cli.command()
@_input_options
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--mask", "mask_path", metavar="NIFTI", help="Brain mask to use (default: computed from the magnitude).")
@click.option("--prefix", help="Output file prefix (default: from the inputs' BIDS entities).")
@_processing_options
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@_command
def run(mag, phase, echo_times, field_strength, phase_scale, b0_direction, phase_sign, out, mask_path, prefix,
        force, **processing):
    """Process one subject: χ, R2*, T2*, S0, mask, field maps into OUT.

    \b
    Example:
      qsmflow run --mag sub-01_echo-*_part-mag_MEGRE.nii.gz \\
                  --phase sub-01_echo-*_part-phase_MEGRE.nii.gz -o out/
    """
    from . import io, pipeline

    t0 = time.perf_counter()
    options = _options_from(phase_sign, processing)
    data = _load(mag, phase, echo_times, field_strength, phase_scale, b0_direction, prefix)
    _set_slice_axis(data, processing["slice_axis"])
    with io.OutputSet(out, force=force) as outset:
        outset.check(pipeline.output_names(data.prefix, data.n_echoes))
    mask = None
    if mask_path:
        mask = io.load_volume(mask_path, name="--mask", shape=data.magnitude.shape[:3], affine=data.affine) > 0.5
    result = pipeline.run(data, options, mask=mask)
    written = pipeline.write_outputs(result, data, out, force=force, command_line=sys.argv)
    log.info("wrote %d files to %s in %.1f s", len(written), out, time.perf_counter() - t0)
    if data.n_echoes < 2:
        log.warning("single-echo data: no R2*/T2* maps were written")


@cli.command("bids")
@click.argument("bids_dir", type=click.Path(file_okay=False))
@click.option("--out", "out", type=click.Path(file_okay=False),
              help="Derivatives folder (default: BIDS_DIR/derivatives/qsmflow).")
@click.option("--participant-label", multiple=True, metavar="LABEL",
              help="Only these subjects (01 or sub-01; repeat the option or separate by commas).")
@click.option("--session-label", multiple=True, metavar="LABEL", help="Only these sessions (1 or ses-1).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs processed at once on this machine (lowered if the memory would not hold them).")
@click.option("--scheduler", metavar="ADDRESS",
              help="Send every run to this Dask scheduler (tcp://host:port) instead; needs qsmflow[dask].")
@click.option("--dry-run", is_flag=True, help="List what would be processed and skipped, and stop.")
@click.option("--field-strength", type=float, metavar="TESLA",
              help="B0 in tesla for runs whose sidecars lack MagneticFieldStrength.")
@click.option("--phase-scale", type=float, metavar="FACTOR",
              help="Force the factor converting stored phase to radians (default: detected per run).")
@click.option("--b0-direction", metavar="X,Y,Z", help="B0 direction in voxel axes (default: each run's affine).")
@click.option("--phase-sign", type=click.Choice(["1", "-1"]), default="1", show_default=True,
              help="-1 flips the phase for scanners whose phase runs the other way.")
@_processing_options
@click.option("--force", is_flag=True, help="Process complete runs again.")
@_command
def bids_cmd(bids_dir, out, participant_label, session_label, jobs, scheduler, dry_run, field_strength, phase_scale,
             b0_direction, phase_sign, force, **processing):
    """Every multi-echo GRE run of a BIDS dataset, as BIDS derivatives; resumes where it stopped.

    Finds sub-*/[ses-*/]anat/*_part-{mag,phase}_{MEGRE,GRE,T2starw} series (echo times and B0
    from their sidecars) and writes each run's maps under OUT/sub-*/[ses-*/]anat/ with the
    input's entities (sub-01_ses-1_run-1_Chimap.nii.gz, ...). A run whose outputs are complete
    is skipped; a failed run leaves <prefix>_error.log and the batch goes on. Exit code 1 if any
    run failed.

    \b
    Example:
      qsmflow bids /data/study --jobs 2
      qsmflow bids /data/study --scheduler tcp://10.0.0.5:8786
    """
    from . import batch

    options = _options_from(phase_sign, processing)
    out = out or str(Path(bids_dir) / "derivatives" / "qsmflow")
    runs, skipped = batch.discover(bids_dir, participant_label, session_label)
    for what, why in skipped:
        log.warning("skipped %s: %s", what, why)
    if not runs:
        raise ValueError(f"no multi-echo GRE runs (part-mag and part-phase {'/'.join(batch.SUFFIXES)}) found in "
                         f"{bids_dir}")
    config = batch.BatchConfig(out_root=out, options=options, field_strength=field_strength, phase_scale=phase_scale,
                               b0_direction=_floats(b0_direction, "--b0-direction", 3),
                               slice_axis=processing["slice_axis"], force=force, command_line=sys.argv)
    if dry_run:
        for spec in runs:
            state = "complete, would be skipped" if not force and batch.is_complete(out, spec) else "to process"
            click.echo(f"{spec.subdir}/{spec.prefix} ({spec.suffix}, {len(spec.magnitude)} magnitude file(s)): "
                       f"{state}")
        click.echo(f"{len(runs)} run(s) found, {len(skipped)} series skipped; outputs would go to {out}")
        return
    t0 = time.perf_counter()
    described = []

    def on_result(status):
        if status.status == "done" and not described:  # written with the first outputs, so never alone
            batch.write_dataset_description(out, bids_dir)
            described.append(True)
        bar.update(1, status)

    with click.progressbar(length=len(runs), label="qsmflow bids", file=sys.stderr, hidden=not sys.stderr.isatty(),
                           item_show_func=lambda st: st and f"{st.prefix} {st.status}") as bar:
        statuses = batch.run_batch(runs, config, jobs=jobs, scheduler=scheduler, on_result=on_result)
    width = max(len(st.prefix) for st in statuses)
    click.echo(f"{'run':<{width}}  status   time s  message")
    for st in statuses:
        note = st.message + (f" (see {st.error_log})" if st.error_log else "")
        click.echo(f"{st.prefix:<{width}}  {st.status:<7}  {st.seconds:6.1f}  {note}".rstrip())
    counts = {k: sum(st.status == k for st in statuses) for k in ("done", "skipped", "failed")}
    click.echo(f"{counts['done']} done, {counts['skipped']} skipped (complete), {counts['failed']} failed in "
               f"{time.perf_counter() - t0:.1f} s; outputs in {out}")
    if counts["failed"]:
        sys.exit(1)


@cli.command("mask")
@click.option("--mag", "mag", multiple=True, required=True, metavar="NIFTI",
              help="Magnitude: one 4D file, or one 3D file per echo (repeat the option or use a glob).")
@click.option("--echo-times", metavar="T1,T2,...", help="Echo times in seconds (default: sidecars); with B0 they "
              "let large surface veins be left out.")
@click.option("--field-strength", type=float, metavar="TESLA", help="B0 in tesla (default: sidecars).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--prefix", help="Output file prefix (default: from the inputs' BIDS entities).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@_command
def mask_cmd(mag, echo_times, field_strength, out, prefix, force):
    """Brain mask from the magnitude: <prefix>_mask.nii.gz in OUT."""
    from . import io, pipeline

    data = io.load_magnitude(_expand(mag, "--mag"), echo_times=_floats(echo_times, "--echo-times"),
                             field_strength=field_strength, prefix=prefix)
    _stage_command("mask", data, pipeline.Options(), None, out, force)


@cli.command("unwrap")
@_input_options
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--mask", "mask_path", metavar="NIFTI", help="Brain mask (default: computed from the magnitude).")
@click.option("--prefix", help="Output file prefix (default: from the inputs' BIDS entities).")
@_stage_options(["phase_offset", "unwrap"])
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@_command
def unwrap_cmd(mag, phase, echo_times, field_strength, phase_scale, b0_direction, phase_sign, out, mask_path, prefix,
               phase_offset, unwrap, force):
    """Unwrapped phase of every echo (rad, phase offset removed), the offset and the mask into OUT."""
    from . import pipeline

    data = _load(mag, phase, echo_times, field_strength, phase_scale, b0_direction, prefix)
    options = pipeline.Options(phase_offset=phase_offset, unwrap=unwrap, phase_sign=int(phase_sign))
    _stage_command("unwrap", data, options, mask_path, out, force)


@cli.command("fieldmap")
@click.option("--mag", "mag", multiple=True, required=True, metavar="NIFTI",
              help="Magnitude (with --phase: every echo; with --phasediff: a magnitude of the field map).")
@click.option("--phase", "phase", multiple=True, metavar="NIFTI", help="Multi-echo phase (one 4D or one per echo).")
@click.option("--phasediff", metavar="NIFTI", help="Phase difference of a dual-echo field map instead of --phase.")
@click.option("--delta-te", type=float, metavar="SECONDS",
              help="TE2 - TE1 of --phasediff (default: EchoTime1/EchoTime2 of its sidecar).")
@click.option("--echo-times", metavar="T1,T2,...", help="Echo times in SECONDS of --phase (default: sidecars).")
@click.option("--field-strength", type=float, metavar="TESLA", help="B0 in tesla (default: sidecars).")
@click.option("--phase-scale", type=float, metavar="FACTOR", help="Force the factor converting phase to radians.")
@click.option("--phase-sign", type=click.Choice(["1", "-1"]), default="1", show_default=True)
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--mask", "mask_path", metavar="NIFTI", help="Brain mask (default: computed from the magnitude).")
@click.option("--prefix", help="Output file prefix (default: from the inputs' BIDS entities).")
@_stage_options(["phase_offset", "unwrap", "field_fit"])
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@_command
def fieldmap_cmd(mag, phase, phasediff, delta_te, echo_times, field_strength, phase_scale, phase_sign, out,
                 mask_path, prefix, phase_offset, unwrap, field_fit, force):
    """Total field map (Hz) and its noise from multi-echo phase, or a B0 map from a phase difference."""
    from . import io, pipeline

    if bool(phase) == bool(phasediff):
        raise ValueError("give either --phase (multi-echo) or --phasediff (dual-echo field map)")
    if phasediff:
        data = io.load_phasediff(phasediff, _expand(mag, "--mag")[:1], delta_te=delta_te, phase_scale=phase_scale,
                                 prefix=prefix)
        with io.OutputSet(out, force=force) as outset:
            outset.check(pipeline.output_names(data.prefix, 1, "field_fit"))
        mask = None
        if mask_path:
            mask = io.load_volume(mask_path, name="--mask", shape=data.phasediff.shape, affine=data.affine) > 0.5
        result = pipeline.phasediff_run(data, mask=mask)
        written = pipeline.write_outputs(result, data, out, force=force, command_line=sys.argv, until="field_fit")
        log.info("wrote %d files to %s", len(written), out)
        return
    data = _load(mag, phase, echo_times, field_strength, phase_scale, None, prefix)
    options = pipeline.Options(phase_offset=phase_offset, unwrap=unwrap, field_fit=field_fit,
                               phase_sign=int(phase_sign))
    _stage_command("field_fit", data, options, mask_path, out, force)


@cli.command("bgremove")
@click.option("--field", "field_path", required=True, metavar="NIFTI",
              help="Total field map: Hz (qsmflow fieldmap, BIDS fieldmap) or ppm, see --unit.")
@click.option("--mask", "mask_path", required=True, metavar="NIFTI", help="Brain mask.")
@click.option("--unit", type=click.Choice(["auto", "hz", "ppm"]), default="auto", show_default=True,
              help="Unit of --field; auto reads the sidecar's Units.")
@click.option("--field-strength", type=float, metavar="TESLA", help="B0 (T), to convert Hz to ppm (default: sidecar).")
@click.option("--noise", "noise_path", metavar="NIFTI", help="Standard deviation of the field (weights for PDF).")
@click.option("--b0-direction", metavar="X,Y,Z", help="B0 direction in voxel axes (default: from the affine).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--prefix", help="Output file prefix (default: from the field file's BIDS entities).")
@_stage_options(["bgremove"])
@click.option("--bg-polynomial", type=click.IntRange(0, 4), default=0, show_default=True,
              help="Also remove a polynomial of this order from the local field (0: off).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@_command
def bgremove_cmd(field_path, mask_path, unit, field_strength, noise_path, b0_direction, out, prefix, bgremove,
                 bg_polynomial, force):
    """Local field (ppm) from a total field map and a mask: <prefix>_localfield and _localmask in OUT."""
    from . import io, pipeline

    fmap = io.load_map(field_path, name="--field", prefix=prefix)
    mask = io.load_volume(mask_path, name="--mask", shape=fmap.data.shape, affine=fmap.affine) > 0.5
    noise = io.load_volume(noise_path, name="--noise", shape=fmap.data.shape, affine=fmap.affine) if noise_path \
        else None
    scale = _in_ppm(fmap, unit, field_strength, "--field")
    unit = "ppm" if scale == 1.0 else "hz"
    direction = _floats(b0_direction, "--b0-direction", 3) if b0_direction else io.b0_direction_from_affine(fmap.affine)
    with io.OutputSet(out, force=force) as outset:
        outset.check(pipeline.output_names(fmap.prefix, 1, "bgremove"))
    options = pipeline.Options(bgremove=bgremove, bg_polynomial=bg_polynomial)
    result = pipeline.bgremove_run(fmap.data * scale, mask, fmap.voxel_size, direction, noise=noise,
                                   options=options)
    fmap.provenance.update({"unit": unit, "ppm_per_input_unit": scale, "b0_direction": list(map(float, direction))})
    written = pipeline.write_outputs(result, fmap, out, force=force, command_line=sys.argv, until="bgremove")
    log.info("wrote %d files to %s", len(written), out)


@cli.command("r2star")
@click.option("--mag", "mag", multiple=True, required=True, metavar="NIFTI",
              help="Magnitude: one 4D file, or one 3D file per echo (repeat the option or use a glob).")
@click.option("--phase", "phase", multiple=True, metavar="NIFTI",
              help="Phase of the same echoes, for --mwf (radians, or scanner integers, rescaled).")
@click.option("--phase-scale", type=float, metavar="FACTOR",
              help="Force the factor converting stored phase to radians (default: detected, logged).")
@click.option("--echo-times", metavar="T1,T2,...", help="Echo times in SECONDS (default: EchoTime from the sidecars).")
@click.option("--mask", "mask_path", metavar="NIFTI", help="Brain mask (default: computed from the magnitude).")
@click.option("--fieldmap", "fieldmap_path", metavar="NIFTI",
              help="Field map in Hz (qsmflow fieldmap's _fieldmap) for --gradient-correction.")
@click.option("--gradient-correction", is_flag=True,
              help="Divide out the signal lost to macroscopic field gradients: through-slice dephasing of 2D "
                   "data, echoes shifted out of k-space (see --slice-axis; needs --fieldmap).")
@click.option("--mwf", is_flag=True,
              help="Also the myelin water fraction (_MWFmap) by a three-pool complex fit: needs --phase and "
                   "at least 12 closely spaced echoes; smooth, about 9 mm FWHM.")
@click.option("--mwf-mask", "mwf_mask_path", metavar="NIFTI",
              help="Where to fit the MWF, e.g. a white-matter mask (default: the brain mask).")
@_slice_axis_option
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--prefix", help="Output file prefix (default: from the inputs' BIDS entities).")
@_stage_options(["r2star"])
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@_command
def r2star_cmd(mag, phase, phase_scale, echo_times, mask_path, fieldmap_path, gradient_correction, mwf,
               mwf_mask_path, slice_axis, out, prefix, r2star, force):
    """R2* (1/s), T2* (s), S0 and the fit residual from multi-echo magnitude into OUT; with
    --mwf --phase, the myelin water fraction too."""
    from . import io, pipeline

    if mwf and not phase:
        raise ValueError("--mwf fits the complex signal; give the phase of the same echoes with --phase")
    if phase and not mwf:
        raise ValueError("--phase is only used by --mwf; add --mwf or leave out --phase")
    if mwf_mask_path and not mwf:
        raise ValueError("--mwf-mask is only used by --mwf; add --mwf or leave out --mwf-mask")
    if gradient_correction and not fieldmap_path:
        raise ValueError("--gradient-correction needs --fieldmap (a field map in Hz, e.g. from qsmflow fieldmap)")
    te = _floats(echo_times, "--echo-times")
    if phase:
        data = io.load_gre(_expand(mag, "--mag"), _expand(phase, "--phase"), echo_times=te, phase_scale=phase_scale,
                           prefix=prefix, require_field_strength=False)
    else:
        data = io.load_magnitude(_expand(mag, "--mag"), echo_times=te, prefix=prefix)
    if data.echo_times is None:
        raise ValueError("the echo times are unknown (no EchoTime in the sidecars); pass --echo-times in seconds")
    _set_slice_axis(data, slice_axis)
    shape = data.magnitude.shape[:3]
    mask = io.load_volume(mask_path, name="--mask", shape=shape, affine=data.affine) > 0.5 if mask_path else None
    mwf_mask = io.load_volume(mwf_mask_path, name="--mwf-mask", shape=shape, affine=data.affine) > 0.5 \
        if mwf_mask_path else None
    field = None
    if fieldmap_path:
        field = io.load_volume(fieldmap_path, name="--fieldmap", shape=shape, affine=data.affine)
        units = str(io.read_sidecar(fieldmap_path).get("Units", "")).strip().lower()
        if units and units != "hz":
            raise ValueError(f"--fieldmap must be in Hz; its sidecar says {units!r}")
        if not units:
            log.warning("--fieldmap has no Units in its sidecar; taken to be Hz")
    with io.OutputSet(out, force=force) as outset:
        outset.check(pipeline.output_names(data.prefix, data.n_echoes, "r2star", mwf=mwf))
    options = pipeline.Options(r2star=r2star, r2star_gradient_correction=gradient_correction)
    result = pipeline.r2star_run(data, options, mask=mask, field_hz=field, mwf=mwf, mwf_mask=mwf_mask)
    written = pipeline.write_outputs(result, data, out, force=force, command_line=sys.argv, until="r2star")
    log.info("wrote %d files to %s", len(written), out)


@cli.command("invert")
@click.option("--local", "local_path", required=True, metavar="NIFTI",
              help="Local field (qsmflow bgremove's _localfield, ppm; or Hz, see --unit).")
@click.option("--mask", "mask_path", required=True, metavar="NIFTI",
              help="Where the local field is valid (qsmflow's _localmask).")
@click.option("--unit", type=click.Choice(["auto", "hz", "ppm"]), default="auto", show_default=True,
              help="Unit of --local; auto reads the sidecar's Units.")
@click.option("--noise", "noise_path", metavar="NIFTI",
              help="Standard deviation of the field (_fieldnoise, Hz or ppm by its sidecar): data weights and "
                   "the automatic regularisation.")
@click.option("--noise-unit", type=click.Choice(["auto", "hz", "ppm"]), default="auto", show_default=True,
              help="Unit of --noise; auto reads its sidecar's Units.")
@click.option("--magnitude", "mag_path", metavar="NIFTI", help="Magnitude (3D, or 4D combined over echoes): MEDI's edges.")
@click.option("--r2star", "r2star_path", metavar="NIFTI", help="R2* map (1/s): finds CSF for MEDI+0 and the reference.")
@click.option("--field-strength", type=float, metavar="TESLA", help="B0 (T) (default: sidecar).")
@click.option("--echo-time", type=float, metavar="SECONDS",
              help="Mean echo time in seconds, for MEDI's nonlinear data term (default: the magnitude's sidecar).")
@click.option("--b0-direction", metavar="X,Y,Z", help="B0 direction in voxel axes (default: from the affine).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--prefix", help="Output file prefix (default: from the local field's BIDS entities).")
@_stage_options(["inversion", "reference"])
@_regularisation_option
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@_command
def invert_cmd(local_path, mask_path, unit, noise_path, noise_unit, mag_path, r2star_path, field_strength, echo_time,
               b0_direction, out, prefix, inversion, reference, regularisation, force):
    """χ (ppm) from a local field and its mask: <prefix>_Chimap (and _csfmask) in OUT."""
    import numpy as np

    from . import _checks, io, pipeline
    from .constants import GAMMA_BAR_HZ_PER_T

    local = io.load_map(local_path, name="--local", prefix=prefix)
    shape, affine = local.data.shape, local.affine
    mask = io.load_volume(mask_path, name="--mask", shape=shape, affine=affine) > 0.5
    b0_known = field_strength if field_strength is not None else local.sidecar.get("MagneticFieldStrength")
    scale = _in_ppm(local, unit, b0_known, "--local")
    noise = None
    if noise_path:
        nmap = io.load_map(noise_path, name="--noise")
        _checks.same_shape("--noise", nmap.data, "--local", local.data)
        noise = nmap.data * _in_ppm(nmap, noise_unit, b0_known, "--noise")
    magnitude, mag_te = None, None
    if mag_path:
        mag = io.load_map(mag_path, name="--magnitude")
        data = np.asarray(mag.data, np.float32)
        if data.shape[:3] != tuple(shape):
            raise ValueError(f"--magnitude has shape {data.shape[:3]} but --local has {tuple(shape)}; use the same grid")
        magnitude = np.sqrt(np.sum(data ** 2, axis=-1)) if data.ndim == 4 else data
        mag_te = mag.sidecar.get("EchoTime")
    r2star = io.load_volume(r2star_path, name="--r2star", shape=shape, affine=affine) if r2star_path else None
    phase_scale = None
    if inversion == "medi":
        if magnitude is None:
            raise ValueError("--inversion medi needs --magnitude (for its edge mask); or use --inversion tv")
        te = echo_time if echo_time is not None else mag_te
        b0 = b0_known
        if te is None or b0 is None:
            raise ValueError("--inversion medi needs the echo time and B0 for its nonlinear data term; pass "
                             "--echo-time (s) and --field-strength (T)")
        te = float(np.mean(te))
        if te > 1:
            raise ValueError(f"--echo-time {te} looks like milliseconds; give seconds (e.g. 0.02)")
        phase_scale = 2 * np.pi * GAMMA_BAR_HZ_PER_T * _checks.field_strength(b0) * 1e-6 * te
    direction = _floats(b0_direction, "--b0-direction", 3) if b0_direction else io.b0_direction_from_affine(affine)
    with io.OutputSet(out, force=force) as outset:
        outset.check(pipeline.output_names(local.prefix, 2 if r2star is not None else 1, "inversion"))
    options = pipeline.Options(inversion=inversion, reference=reference,
                               stage_options=_regularisation_options(inversion, regularisation))
    result = pipeline.invert_run(local.data * scale, mask, local.voxel_size, direction, options=options,
                                 noise_ppm=noise, magnitude=magnitude, phase_scale=phase_scale, r2star=r2star)
    local.provenance.update({"ppm_per_input_unit": scale, "b0_direction": list(map(float, direction))})
    written = pipeline.write_outputs(result, local, out, force=force, command_line=sys.argv, until="inversion")
    log.info("wrote %d files to %s", len(written), out)


@cli.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--matrix", default="160,192,160", show_default=True, metavar="X,Y,Z")
@click.option("--voxel-size", default="1,1,1", show_default=True, metavar="X,Y,Z", help="mm")
@click.option("--echo-times", default="0.004,0.010,0.016,0.022,0.028", show_default=True, metavar="T1,...",
              help="seconds")
@click.option("--field-strength", type=float, default=3.0, show_default=True, metavar="TESLA")
@click.option("--b0-direction", metavar="X,Y,Z", help="B0 in voxel axes (default: along z).")
@click.option("--oblique", type=float, metavar="DEG", help="Tilt the slab by DEG about the x axis.")
@click.option("--snr", type=float, default=100.0, show_default=True, help="First-echo brain mean / noise sigma.")
@click.option("--integer-phase", is_flag=True, help="Write phase as int16 -4096..4095 like Siemens.")
@click.option("--lesions", is_flag=True, help="Add a calcification and a haemorrhage.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@_command
def simulate(out, matrix, voxel_size, echo_times, field_strength, b0_direction, oblique, snr, integer_phase,
             lesions, seed, force):
    """Write a simulated head as a BIDS MEGRE dataset, with its ground truth in derivatives/truth."""
    if b0_direction and oblique is not None:
        raise ValueError("give --b0-direction or --oblique, not both")
    shape = tuple(int(v) for v in _floats(matrix, "--matrix", 3))
    from . import io, phantom

    direction = _floats(b0_direction, "--b0-direction", 3) if b0_direction else (
        phantom.oblique_direction(oblique) if oblique is not None else (0.0, 0.0, 1.0))
    head = phantom.simulate_head(shape, _floats(voxel_size, "--voxel-size", 3),
                                 echo_times=_floats(echo_times, "--echo-times"), field_strength=field_strength,
                                 b0_direction=direction, snr=snr, seed=seed, lesions=lesions)
    paths = io.write_phantom_dataset(out, head, integer_phase=integer_phase, force=force)
    log.info("wrote %d files to %s", len(paths), out)


@cli.command()
@click.argument("out", required=False, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite existing files in OUT.")
@_command
def demo(out, force):
    """Simulate a small head, reconstruct it and print the accuracy.

    With OUT, the simulated dataset and the reconstruction are kept there.
    """
    from . import demo as demo_mod

    report = demo_mod.run_demo(out, force=force)
    click.echo(report)


def main(argv=None) -> None:
    """Console entry point: click's usage errors also become one line and exit code 1."""
    try:
        code = cli.main(args=argv, prog_name="qsmflow", standalone_mode=False)
    except click.exceptions.UsageError as exc:
        hint = f" (see qsmflow {exc.ctx.info_name if exc.ctx and exc.ctx.parent else ''} --help)".replace("  ", " ")
        click.echo(f"qsmflow: error: {exc.format_message()}{hint}", err=True)
        sys.exit(1)
    except click.exceptions.ClickException as exc:
        click.echo(f"qsmflow: error: {exc.format_message()}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("qsmflow: aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
