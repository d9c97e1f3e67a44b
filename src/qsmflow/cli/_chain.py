"""The commands that chain the whole pipeline: run, bids, simulate, demo."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import click

from ._common import (
    _Labels,
    _command,
    _floats,
    _input_options,
    _load,
    _options_from,
    _processing_options,
    _set_slice_axis,
    cli,
    log,
)


@cli.command()
@_input_options(required=False)
@click.option("--dicom", "dicom_dir", metavar="FOLDER", type=click.Path(file_okay=False),
              help="A scanner's DICOM folder instead of --mag/--phase (converted as by qsmflow dicom).")
@click.option("--dicom-out", is_flag=True,
              help="With --dicom: also write χ (and SWI/minIP when made) as DICOM series of the source study in "
                   "OUT/dicom/, for a PACS viewer.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--mask", "mask_path", metavar="NIFTI", help="Brain mask to use (default: computed from the magnitude).")
@click.option("--prefix", help="Output file prefix (default: from the inputs' BIDS entities).")
@_processing_options
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@_command
def run(mag, phase, dicom_dir, dicom_out, echo_times, field_strength, phase_scale, b0_direction, phase_sign, out,
        mask_path, prefix, force, **processing):
    """Process one subject: χ, R2*, T2*, S0, mask, field maps into OUT.

    \b
    Example:
      qsmflow run --mag sub-01_echo-*_part-mag_MEGRE.nii.gz \\
                  --phase sub-01_echo-*_part-phase_MEGRE.nii.gz -o out/
      qsmflow run --dicom scans/patient01 -o out/
    """
    import tempfile

    from .. import io

    if dicom_out and dicom_dir is None:
        raise click.UsageError("--dicom-out needs --dicom (the source study the DICOM maps belong to)")
    with io.OutputSet(out, force=True) as outset:  # an unwritable -o fails now, before any conversion or reading
        outset.check([])
    with tempfile.TemporaryDirectory(prefix="qsmflow-dicom-") as tmp:
        series = None
        if dicom_dir is not None:
            mag, phase, series = _from_dicom(dicom_dir, mag, phase, tmp)
        elif not mag or not phase:
            hint = "; for R2*/T2* from the magnitude alone use qsmflow r2star" if mag else ""
            raise click.UsageError(f"Missing option '{'--mag' if not mag else '--phase'}' (or give --dicom FOLDER)"
                                   f"{hint}")
        try:
            data = _run(mag, phase, echo_times, field_strength, phase_scale, b0_direction, phase_sign, out, mask_path,
                        prefix, force, processing, dicom_out=dicom_out)
        except ValueError as exc:  # a converted file's path means nothing to the user: name the series
            if series is None or tmp not in str(exc):
                raise
            raise ValueError(re.sub(re.escape(tmp) + r"/\S+?\.nii\.gz", f"series {series} of {dicom_dir}",
                                    str(exc))) from None
    if dicom_out:
        files = io.export_dicom(out, data.prefix, io.dicom_source(dicom_dir, series), 1000 * series, force=force)
        log.info("wrote %d DICOM files to %s", len(files), Path(out) / "dicom")


def _from_dicom(dicom_dir, mag, phase, tmp):
    """The magnitude and phase files of the one multi-echo GRE in a DICOM folder, converted into ``tmp``."""
    from .. import io

    if mag or phase:
        raise click.UsageError("give either --dicom or --mag/--phase, not both")
    label = "".join(c for c in Path(dicom_dir).resolve().name if c.isalnum()) or "dicom"
    outcomes = io.convert_dicom(dicom_dir, tmp, subject=label)
    runs = [o for o in outcomes if o.kind == "MEGRE"]
    if len(runs) != 1:
        found = "; ".join(f"series {o.series} ({o.description}): {o.reason or o.kind}" for o in outcomes)
        raise ValueError(f"--dicom {dicom_dir} holds {len(runs)} multi-echo GRE acquisitions, not one ({found}); "
                         "convert it with qsmflow dicom and run the one you want")
    files = sorted(str(p) for p in runs[0].files if p.name.endswith(".nii.gz"))
    log.info("--dicom: series %s (%s) converted", runs[0].series, runs[0].description)
    mag = tuple(f for f in files if "_part-mag_" in f)
    return mag, tuple(f for f in files if "_part-phase_" in f), runs[0].series[0]


def _run(mag, phase, echo_times, field_strength, phase_scale, b0_direction, phase_sign, out, mask_path, prefix, force,
         processing, *, dicom_out: bool = False):
    from .. import io
    from ..workflows.subject import check_outputs, process_subject

    t0 = time.perf_counter()
    options = _options_from(phase_sign, processing)
    data = _load(mag, phase, echo_times, field_strength, phase_scale, b0_direction, prefix)
    _set_slice_axis(data, processing["slice_axis"])
    check_outputs(data, out, options, force=force)
    if dicom_out:
        with io.OutputSet(out, force=force) as outset:
            outset.check([f"dicom/{data.prefix}_{name}/IM_0001.dcm" for name, *_ in io.DICOM_MAPS])
    mask = None
    if mask_path:
        mask = io.load_mask(mask_path, name="--mask", shape=data.magnitude.shape[:3], affine=data.affine)
    _, written = process_subject(data, out, options, mask=mask, force=force, command_line=sys.argv,
                                 report=not processing["no_report"])
    log.info("wrote %d files to %s in %.1f s", len(written), out, time.perf_counter() - t0)
    return data


@cli.command("bids")
@click.argument("bids_dir", type=click.Path(file_okay=False))
@click.argument("output_dir", required=False, type=click.Path(file_okay=False))
@click.argument("analysis_level", required=False, metavar="[participant]")
@click.option("--out", "out", type=click.Path(file_okay=False),
              help="Derivatives folder (default: OUTPUT_DIR, else BIDS_DIR/derivatives/qsmflow).")
@click.option("--participant-label", multiple=True, metavar="LABEL", cls=_Labels,
              help="Only these subjects (01 or sub-01; several after one flag, commas, or the option repeated).")
@click.option("--session-label", multiple=True, metavar="LABEL", cls=_Labels,
              help="Only these sessions (1 or ses-1).")
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
def bids_cmd(bids_dir, output_dir, analysis_level, out, participant_label, session_label, jobs, scheduler, dry_run,
             field_strength, phase_scale, b0_direction, phase_sign, force, **processing):
    """Every multi-echo GRE run of a BIDS dataset, as BIDS derivatives; resumes where it stopped.

    Finds sub-*/[ses-*/]anat/*_part-{mag,phase}_{MEGRE,GRE,T2starw} series (echo times and B0
    from their sidecars) and writes each run's maps under OUT/sub-*/[ses-*/]anat/ with the
    input's entities (sub-01_ses-1_run-1_Chimap.nii.gz, ...). A run whose outputs are complete
    is skipped; a failed run leaves <prefix>_error.log and the batch goes on. Exit code 1 if any
    run failed or a series could not be paired (an echo's magnitude or phase file missing).

    \b
    The BIDS Apps call form works too: qsmflow bids BIDS_DIR OUTPUT_DIR participant
    [--participant-label 01 02 ...] (only the participant level exists).

    \b
    Example:
      qsmflow bids /data/study --jobs 2
      qsmflow bids /data/study /data/study/derivatives/qsmflow participant --participant-label 01 02
      qsmflow bids /data/study --scheduler tcp://10.0.0.5:8786
    """
    from .. import io
    from ..workflows import batch
    from ..workflows import bids as bids_discovery

    if analysis_level not in (None, "participant"):
        raise click.UsageError(f"analysis level {analysis_level!r}: qsmflow has only the 'participant' level "
                               "(each run is processed on its own)")
    if output_dir and out and Path(output_dir) != Path(out):
        raise click.UsageError(f"OUTPUT_DIR {output_dir} and --out {out} differ; give one of them")
    options = _options_from(phase_sign, processing)
    out = out or output_dir or str(Path(bids_dir) / "derivatives" / "qsmflow")
    if not dry_run:
        with io.OutputSet(out, force=True) as outset:  # a folder that cannot be written is refused now
            outset.check([])
    runs, skipped = batch.discover(bids_dir, participant_label, session_label)
    for what, why in skipped:
        log.warning("skipped %s: %s", what, why)
    if not runs:
        unpaired = bids_discovery.broken_series(skipped)
        raise ValueError(f"no multi-echo GRE runs (part-mag and part-phase {'/'.join(batch.SUFFIXES)}) found in "
                         f"{bids_dir}" + (f"; {len(unpaired)} series could not be paired ({unpaired[0][0]}: "
                                          f"{unpaired[0][1]}): fix its files" if unpaired else ""))
    config = batch.BatchConfig(out_root=out, options=options, field_strength=field_strength, phase_scale=phase_scale,
                               b0_direction=_floats(b0_direction, "--b0-direction", 3),
                               slice_axis=processing["slice_axis"], force=force, command_line=sys.argv,
                               report=not processing["no_report"])
    if dry_run:
        for spec in runs:
            state = "to process"
            if not force and batch.is_complete(out, spec):
                diff = batch.changed_settings(out, spec, config)
                state = (f"complete with other settings ({', '.join(diff)}): would fail, pass --force to redo it"
                         if diff else "complete, would be skipped")
            click.echo(f"{spec.subdir}/{spec.prefix} ({spec.suffix}, {len(spec.magnitude)} magnitude file(s)): "
                       f"{state}")
        for what, why in skipped:
            click.echo(f"{what}: not run, {why}")
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
    if not processing["no_report"]:
        from ..workflows import report

        index = report.write_index(out, [(spec.subdir, st) for spec, st in zip(runs, statuses)], skipped=skipped)
        log.info("dataset QC index: %s", index)
    width = max([len(st.prefix) for st in statuses] + [len(what) for what, _ in skipped])
    click.echo(f"{'run':<{width}}  status   time s  message")
    for st in statuses:
        note = st.message + (f" (see {st.error_log})" if st.error_log else "")
        click.echo(f"{st.prefix:<{width}}  {st.status:<7}  {st.seconds:6.1f}  {note}".rstrip())
    for what, why in skipped:
        click.echo(f"{what:<{width}}  not run  {'':>6}  {why}")
    counts = {k: sum(st.status == k for st in statuses) for k in ("done", "skipped", "failed")}
    click.echo(f"{counts['done']} done, {counts['skipped']} skipped as complete, {counts['failed']} failed, "
               f"{len(skipped)} series not run in {time.perf_counter() - t0:.1f} s; outputs in {out}")
    broken = bids_discovery.broken_series(skipped)
    if broken:
        click.echo(f"{len(broken)} series could not be paired (an echo's file missing or misnamed): fix them and "
                   "run qsmflow bids again (the runs done are kept)", err=True)
    if counts["failed"] or broken:
        sys.exit(1)


@cli.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--matrix", default="160,192,160", show_default=True, metavar="X,Y,Z",
              help="Voxels per axis (the field of view is matrix x voxel size).")
@click.option("--voxel-size", default="1,1,1", show_default=True, metavar="X,Y,Z", help="mm")
@click.option("--echo-times", default="0.004,0.010,0.016,0.022,0.028", show_default=True, metavar="T1,...",
              help="seconds")
@click.option("--field-strength", type=float, default=3.0, show_default=True, metavar="TESLA", help="B0 in tesla.")
@click.option("--b0-direction", metavar="X,Y,Z", help="B0 in voxel axes (default: along z).")
@click.option("--oblique", type=float, metavar="DEG", help="Tilt the slab by DEG about the x axis.")
@click.option("--snr", type=float, default=100.0, show_default=True, help="First-echo brain mean / noise sigma.")
@click.option("--integer-phase", is_flag=True, help="Write phase as int16 -4096..4095 like Siemens.")
@click.option("--lesions", is_flag=True, help="Add a calcification and a haemorrhage.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed of the head (its anatomy, phase offset and noise).")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@_command
def simulate(out, matrix, voxel_size, echo_times, field_strength, b0_direction, oblique, snr, integer_phase,
             lesions, seed, force):
    """Write a simulated head as a BIDS MEGRE dataset, with its ground truth in derivatives/truth."""
    if b0_direction and oblique is not None:
        raise ValueError("give --b0-direction or --oblique, not both")
    shape = tuple(int(v) for v in _floats(matrix, "--matrix", 3))
    from .. import phantom

    from ..io import OutputSet

    direction = _floats(b0_direction, "--b0-direction", 3) if b0_direction else (
        phantom.oblique_direction(oblique) if oblique is not None else (0.0, 0.0, 1.0))
    paths = phantom.phantom_paths(out, n_echoes=len(_floats(echo_times, "--echo-times")))
    with OutputSet(out, force=force) as outset:  # before the simulation, which takes a while
        outset.check(["dataset_description.json"] + [p.relative_to(out).as_posix() for p in paths["mag"] + paths["phase"]])
    head = phantom.simulate_head(shape, _floats(voxel_size, "--voxel-size", 3),
                                 echo_times=_floats(echo_times, "--echo-times"), field_strength=field_strength,
                                 b0_direction=direction, snr=snr, seed=seed, lesions=lesions)
    paths = phantom.write_phantom_dataset(out, head, integer_phase=integer_phase, force=force)
    log.info("wrote %d files to %s", len(paths), out)


@cli.command()
@click.argument("out", required=False, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite existing files in OUT.")
@_command
def demo(out, force):
    """Simulate a small head, reconstruct it and print the accuracy.

    With OUT, the simulated dataset and the reconstruction are kept there.
    """
    from ..workflows import demo as demo_mod

    report = demo_mod.run_demo(out, force=force)
    click.echo(report)


@cli.command("report")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--prefix", help="Only this run (default: every run found under OUT_DIR).")
@_command
def report_cmd(out_dir, prefix):
    """(Re)write the HTML QC report of every run in OUT_DIR (a run's output folder or a bids
    derivative, searched recursively), and the dataset index of a bids derivative."""
    from ..workflows import batch, report

    root = Path(out_dir)
    if not root.is_dir():
        raise ValueError(f"{out_dir} is not a folder; give a qsmflow run's output folder or a bids derivative")
    runs = batch.recorded_runs(root)
    done = [(subdir, st) for subdir, st in runs if st.status == "done" and prefix in (None, st.prefix)]
    broken = [st for _, st in runs if st.status == "failed" and str(st.error_log).endswith("_provenance.json")
              and prefix in (None, st.prefix)]
    if not done and broken:  # a record that cannot be read: say which, not "no outputs"
        raise ValueError(broken[0].message)
    if not done:
        what = f"{prefix}_provenance.json" if prefix else "*_provenance.json"
        raise ValueError(f"no qsmflow outputs ({what}) under {out_dir}; run qsmflow run or bids first")
    for subdir, st in done:
        click.echo(str(report.write_report(root / subdir, st.prefix)))
    if (root / "dataset_description.json").exists() and not prefix:
        click.echo(str(report.write_index(root, runs)))
