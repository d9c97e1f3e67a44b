"""One command per pipeline stage: mask, unwrap, fieldmap, bgremove, r2star, invert."""

from __future__ import annotations

import sys

import click

from ._common import (
    _check_ppm_range,
    _command,
    _expand,
    _Files,
    _floats,
    _in_ppm,
    _input_options,
    _load,
    _mask_method_option,
    _minip_option,
    _no_chi_sd_option,
    _regularisation_option,
    _regularisation_options,
    _set_slice_axis,
    _slice_axis_option,
    _stage_command,
    _stage_options,
    cli,
    log,
)


@cli.command("mask")
@click.option("--mag", "mag", multiple=True, required=True, metavar="NIFTI", cls=_Files,
              help="Magnitude: one 4D file, or one 3D file per echo (repeat the option or use a glob).")
@_mask_method_option
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--prefix", help="Output file prefix (default: from the inputs' BIDS entities).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@_command
def mask_cmd(mag, mask_method, out, prefix, force):
    """Brain mask from the magnitude: <prefix>_mask.nii.gz in OUT."""
    from .. import io, pipeline

    data = io.load_magnitude(_expand(mag, "--mag"), prefix=prefix)
    _stage_command("mask", data, pipeline.Options(mask=mask_method), None, out, force)


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
    from .. import pipeline

    data = _load(mag, phase, echo_times, field_strength, phase_scale, b0_direction, prefix)
    options = pipeline.Options(phase_offset=phase_offset, unwrap=unwrap, phase_sign=int(phase_sign))
    _stage_command("unwrap", data, options, mask_path, out, force)


@cli.command("fieldmap")
@click.option("--mag", "mag", multiple=True, required=True, metavar="NIFTI", cls=_Files,
              help="Magnitude (with --phase: every echo; with --phasediff: a magnitude of the field map).")
@click.option("--phase", "phase", multiple=True, metavar="NIFTI", cls=_Files, help="Multi-echo phase (one 4D or one per echo).")
@click.option("--phasediff", metavar="NIFTI", help="Phase difference of a dual-echo field map instead of --phase.")
@click.option("--delta-te", type=float, metavar="SECONDS",
              help="TE2 - TE1 of --phasediff (default: EchoTime1/EchoTime2 of its sidecar).")
@click.option("--echo-times", metavar="T1,T2,...", help="Echo times in SECONDS of --phase (default: sidecars).")
@click.option("--field-strength", type=float, metavar="TESLA", help="B0 in tesla (default: sidecars).")
@click.option("--phase-scale", type=float, metavar="FACTOR", help="Force the factor converting phase to radians.")
@click.option("--phase-sign", type=click.Choice(["1", "-1"]), default="1", show_default=True,
              help="-1 flips the phase for scanners whose phase runs the other way.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--mask", "mask_path", metavar="NIFTI", help="Brain mask (default: computed from the magnitude).")
@click.option("--prefix", help="Output file prefix (default: from the inputs' BIDS entities).")
@_stage_options(["phase_offset", "unwrap", "field_fit"])
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@_command
def fieldmap_cmd(mag, phase, phasediff, delta_te, echo_times, field_strength, phase_scale, phase_sign, out,
                 mask_path, prefix, phase_offset, unwrap, field_fit, force):
    """Total field map (Hz) and its noise from multi-echo phase, or a B0 map from a phase difference."""
    from .. import io, pipeline

    if bool(phase) == bool(phasediff):
        raise ValueError("give either --phase (multi-echo) or --phasediff (dual-echo field map)")
    if phasediff:
        data = io.load_phasediff(phasediff, _expand(mag, "--mag")[:1], delta_te=delta_te, phase_scale=phase_scale,
                                 prefix=prefix)
        with io.OutputSet(out, force=force) as outset:
            outset.check(pipeline.output_names(data.prefix, 1, "field_fit", mask_given=bool(mask_path)))
        mask = None
        if mask_path:
            mask = io.load_mask(mask_path, name="--mask", shape=data.phasediff.shape, affine=data.affine)
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
    from .. import io, pipeline

    fmap = io.load_map(field_path, name="--field", prefix=prefix)
    mask = io.load_mask(mask_path, name="--mask", shape=fmap.data.shape, affine=fmap.affine)
    noise = io.load_volume(noise_path, name="--noise", shape=fmap.data.shape, affine=fmap.affine) if noise_path \
        else None
    scale = _in_ppm(fmap, unit, field_strength, "--field")
    unit = "ppm" if scale == 1.0 else "hz"
    _check_ppm_range(fmap.data * scale, mask, "--field", 20.0, "a brain's total field (a few ppm)")
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
@click.option("--mag", "mag", multiple=True, required=True, metavar="NIFTI", cls=_Files,
              help="Magnitude: one 4D file, or one 3D file per echo (repeat the option or use a glob).")
@click.option("--phase", "phase", multiple=True, metavar="NIFTI", cls=_Files,
              help="Phase of the same echoes, for --mwf (radians, or scanner integers, rescaled).")
@click.option("--phase-scale", type=float, metavar="FACTOR",
              help="Force the factor converting stored phase to radians (default: detected, logged).")
@click.option("--echo-times", metavar="T1,T2,...", help="Echo times in SECONDS (default: EchoTime from the sidecars).")
@click.option("--mask", "mask_path", metavar="NIFTI", help="Brain mask (default: computed from the magnitude).")
@click.option("--fieldmap", "fieldmap_path", metavar="NIFTI",
              help="Field map in Hz (qsmflow fieldmap's _fieldmap) for --gradient-correction.")
@click.option("--gradient-correction", "--r2star-gradient-correction", "gradient_correction", is_flag=True,
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
    from .. import io, pipeline

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
    mask = io.load_mask(mask_path, name="--mask", shape=shape, affine=data.affine) if mask_path else None
    mwf_mask = io.load_mask(mwf_mask_path, name="--mwf-mask", shape=shape, affine=data.affine) \
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
        outset.check(pipeline.output_names(data.prefix, data.n_echoes, "r2star",
                                           optional=["MWFmap"] if mwf else (), mask_given=bool(mask_path)))
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
@click.option("--r2star", "r2star_path", metavar="NIFTI",
              help="R2* map (1/s): finds CSF for MEDI+0 and the reference; its sidecar from qsmflow r2star or run "
                   "gives the echo times and R2* noise that decide where R2* can tell CSF.")
@click.option("--field-strength", type=float, metavar="TESLA", help="B0 (T) (default: sidecar).")
@click.option("--echo-time", type=float, metavar="SECONDS",
              help="Mean echo time in seconds, for MEDI's nonlinear data term (default: the magnitude's sidecar).")
@click.option("--b0-direction", metavar="X,Y,Z", help="B0 direction in voxel axes (default: from the affine).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--prefix", help="Output file prefix (default: from the local field's BIDS entities).")
@_stage_options(["inversion", "reference"])
@_regularisation_option
@_no_chi_sd_option
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@_command
def invert_cmd(local_path, mask_path, unit, noise_path, noise_unit, mag_path, r2star_path, field_strength, echo_time,
               b0_direction, out, prefix, inversion, reference, regularisation, no_chi_sd, force):
    """χ (ppm) from a local field and its mask: <prefix>_Chimap (and _label-CSF_probseg) in OUT."""
    import numpy as np

    from .. import io, pipeline
    from .._shared import checks as _checks

    local = io.load_map(local_path, name="--local", prefix=prefix)
    shape, affine = local.data.shape, local.affine
    mask = io.load_mask(mask_path, name="--mask", shape=shape, affine=affine)
    b0_known = field_strength if field_strength is not None else local.sidecar.get("MagneticFieldStrength")
    scale = _in_ppm(local, unit, b0_known, "--local")
    _check_ppm_range(local.data * scale, mask, "--local", 2.0, "a brain's local field (about ±0.1 ppm)")
    noise = None
    if noise_path:
        nmap = io.load_map(noise_path, name="--noise")
        _checks.same_shape("--noise", nmap.data, "--local", local.data)
        noise = nmap.data * _in_ppm(nmap, noise_unit, b0_known, "--noise")
    magnitude, mag_te = None, None
    if mag_path:
        mag = io.load_map(mag_path, name="--magnitude", echoes=True)
        if mag.data.shape[:3] != tuple(shape):
            raise ValueError(f"--magnitude has shape {mag.data.shape[:3]} but --local has {tuple(shape)}; "
                             "use the same grid")
        magnitude, mag_te = mag.data, mag.sidecar.get("EchoTime")
    r2star = r2star_noise = echo_span = None
    if r2star_path:
        from ..workflows.relaxation import r2star_reliability

        r2star = io.load_volume(r2star_path, name="--r2star", shape=shape, affine=affine)
        r2star_noise, echo_span = r2star_reliability(io.read_sidecar(r2star_path), shape)
    te = echo_time if echo_time is not None else mag_te
    auto = inversion == "auto"
    inversion = pipeline.resolve_local_inversion(inversion)  # as pipeline.invert_run resolves it
    named = "the default inversion (MEDI+0)" if auto else f"--inversion {inversion}"
    if inversion in ("medi", "tfi"):
        if magnitude is None:
            raise ValueError(f"{named} needs --magnitude (for its edge mask); or use --inversion tv")
        if te is None or b0_known is None:
            raise ValueError(f"{named} needs the echo time and B0 for its data term; pass "
                             "--echo-time (s) and --field-strength (T)")
        if float(np.max(te)) > 1:
            raise ValueError(f"--echo-time {te} looks like milliseconds; give seconds (e.g. 0.02)")
    direction = _floats(b0_direction, "--b0-direction", 3) if b0_direction else io.b0_direction_from_affine(affine)
    if auto:
        log.info("inversion 'auto' on a local field: MEDI+0 (total field inversion needs the total field: "
                 "qsmflow run --inversion tfi)")
    options = pipeline.Options(inversion=inversion, reference=reference, chi_sd=not no_chi_sd and noise is not None,
                               stage_options=_regularisation_options(inversion, regularisation))
    with io.OutputSet(out, force=force) as outset:
        outset.check(pipeline.output_names(local.prefix, 2 if r2star is not None else 1, "inversion",
                                           optional=pipeline.optional_outputs(options)))
    result = pipeline.invert_run(local.data * scale, mask, local.voxel_size, direction, options=options,
                                 noise_ppm=noise, magnitude=magnitude, r2star=r2star, r2star_noise=r2star_noise,
                                 echo_span_s=echo_span,
                                 echo_time=te if inversion in ("medi", "tfi") else None, field_strength=b0_known)
    local.provenance.update({"ppm_per_input_unit": scale, "b0_direction": list(map(float, direction))})
    written = pipeline.write_outputs(result, local, out, force=force, command_line=sys.argv, until="inversion")
    log.info("wrote %d files to %s", len(written), out)


@cli.command("swi")
@_input_options
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--mask", "mask_path", metavar="NIFTI", help="Brain mask (default: computed from the magnitude).")
@click.option("--prefix", help="Output file prefix (default: from the inputs' BIDS entities).")
@click.option("--swi-method", type=click.Choice(["clear", "homodyne"]), default="clear", show_default=True,
              help="clear: multi-echo, on the fitted field (CLEAR-SWI style); homodyne: one echo's phase, "
                   "high-pass filtered (Haacke 2004).")
@click.option("--echo", type=click.IntRange(min=1), help="Echo for --swi-method homodyne (default: the middle one).")
@_minip_option
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@_command
def swi_cmd(mag, phase, echo_times, field_strength, phase_scale, b0_direction, phase_sign, out, mask_path, prefix,
            swi_method, echo, minip_slab, force):
    """SWI and its minimum-intensity projection: <prefix>_swi, _minIP and _mask in OUT."""
    from .. import io, pipeline

    data = _load(mag, phase, echo_times, field_strength, phase_scale, b0_direction, prefix)
    if echo is not None and swi_method != "homodyne":
        raise ValueError(f"--echo {echo} is for --swi-method homodyne (the default, clear, combines every echo)")
    if echo is not None and echo > data.n_echoes:
        raise ValueError(f"--echo {echo}: there are only {data.n_echoes} echoes; give 1 to {data.n_echoes}")
    with io.OutputSet(out, force=force) as outset:
        outset.check(pipeline.output_names(data.prefix, data.n_echoes, "swi", optional=["swi", "minIP"],
                                           mask_given=bool(mask_path)))
    mask = None
    if mask_path:
        mask = io.load_mask(mask_path, name="--mask", shape=data.magnitude.shape[:3], affine=data.affine)
    options = pipeline.Options(phase_sign=int(phase_sign), minip_slab_mm=minip_slab)
    result = pipeline.swi_run(data, options, mask=mask, method=swi_method, echo=None if echo is None else echo - 1)
    written = pipeline.write_outputs(result, data, out, force=force, command_line=sys.argv, until="swi")
    log.info("wrote %d files to %s", len(written), out)
