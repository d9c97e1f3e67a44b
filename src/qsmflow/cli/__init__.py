"""Command line: the only package that imports click.

User mistakes become a one-line ``qsmflow: error: ...`` and exit code 1, with no
traceback unless ``--verbose``. ``_common`` holds the group and the shared options,
``_chain`` the whole-pipeline commands (run, bids, ...), ``_stages`` one command per stage,
``_dicom`` the DICOM conversion.
"""

from __future__ import annotations

import sys

import click

from .._shared import allocator
from . import _chain, _dicom, _stages  # noqa: F401  (they register their commands on the group)
from ._common import _logging_to_stderr, cli  # noqa: F401

__all__ = ["cli", "main"]


def main(argv=None) -> None:
    """Console entry point: click's usage errors also become one line and exit code 1."""
    allocator.keep_freed_memory()  # a run's temporaries reuse freed memory (see the module)
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
