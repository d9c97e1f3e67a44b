"""The DICOM command: a scanner's DICOM folder to a BIDS folder."""

from __future__ import annotations

import click

from ._common import _command, cli, log


def _describe(outcome) -> str:
    series = ", ".join(str(s) for s in outcome.series)
    what = f"series {series} ({outcome.description})"
    if outcome.kind == "skipped":
        return f"{what}: skipped, {outcome.reason}"
    images = [p.name for p in outcome.files if p.name.endswith(".nii.gz")]
    if outcome.kind == "MEGRE":
        made = f"{sum('_part-mag_' in n for n in images)} echoes, magnitude and phase"
    else:
        made = ", ".join(n.split("_")[-1].removesuffix(".nii.gz") for n in images)
    return f"{what}: {outcome.kind} ({made}) in {outcome.files[0].parent}"


@cli.command("dicom")
@click.argument("dicom_dir", type=click.Path(file_okay=False))
@click.argument("bids_dir", type=click.Path(file_okay=False))
@click.option("--subject", required=True, metavar="ID", help="Subject label (01 or sub-01).")
@click.option("--session", metavar="ID", help="Session label (1 or ses-1).")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@_command
def dicom_cmd(dicom_dir, bids_dir, subject, session, force):
    """Convert a DICOM folder (dcm2niix) and sort it into BIDS_DIR.

    \b
    Multi-echo GRE (magnitude + phase, or real + imaginary) becomes
    sub-<ID>/anat/sub-<ID>_echo-<n>_part-{mag,phase}_MEGRE.nii.gz, phase in radians;
    a dual-echo field map becomes fmap/ magnitude1, magnitude2 and phasediff.
    Every series is listed with what it became or why it was skipped.

    \b
    Example:
      qsmflow dicom scans/patient01 bids/ --subject 01 && qsmflow bids bids/
    """
    from .. import io

    outcomes = io.convert_dicom(dicom_dir, bids_dir, subject=subject, session=session, force=force)
    for o in outcomes:
        click.echo(_describe(o))
    used = sum(o.kind != "skipped" for o in outcomes)
    log.info("%d of %d acquisitions converted into %s", used, len(outcomes), bids_dir)
