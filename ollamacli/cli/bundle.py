"""`export` and `import`: move a model between machines as one file (or through a pipe)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ollamacli.cli.app import app
from ollamacli.cli.output import human_bytes
from ollamacli.cli.wiring import settings
from ollamacli.errors import InvalidRequestError

if TYPE_CHECKING:
    from ollamacli.service.bundle import BundleService


def _service() -> BundleService:
    from ollamacli.service.bundle import BundleService
    from ollamacli.store import Store

    config = settings()
    return BundleService(Store(config.models), prune=not config.noprune)


@app.command("export")
def export(
    model: str = typer.Argument(..., help="Model to export."),
    file: str | None = typer.Argument(None, help="Where to write ('-' for standard output)."),
    output: str | None = typer.Option(None, "--output", "-o", help="Same as FILE."),
) -> None:
    """Write a model and its blobs to one tar file (OCI image layout)."""
    target = output or file
    if target is None:
        raise InvalidRequestError(
            "no output file", hint="give -o FILE, or '-' to write to standard output"
        )
    if target == "-":
        if sys.stdout.isatty():
            raise InvalidRequestError(
                "refusing to write a tar file to a terminal", hint="redirect or pipe the output"
            )
        summary = _service().export_stream(model, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        summary = _service().export_file(model, Path(target))
    sys.stderr.write(
        f"exported {summary.names[0].short} ({summary.blobs} blobs, {human_bytes(summary.size)})\n"
    )


@app.command("import")
def import_(
    file: str = typer.Argument(..., help="Export file to read ('-' for standard input)."),
) -> None:
    """Store the model(s) of an export file, after checking every blob's digest."""
    service = _service()
    if file == "-":
        summary = service.import_stream(sys.stdin.buffer)
    else:
        summary = service.import_file(Path(file))
    for name in summary.names:
        sys.stdout.write(f"imported {name.short}\n")
