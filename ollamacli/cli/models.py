"""Model commands: create, show, list, cp, rm."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ollamacli.cli.app import app
from ollamacli.cli.output import format_table, human_bytes, human_time, progress_display
from ollamacli.cli.wiring import model_service
from ollamacli.errors import InvalidRequestError, ModelfileError


@app.command()
def create(
    model: str = typer.Argument(..., help="Name of the new model."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Modelfile (default ./Modelfile)."),
    quantize: str | None = typer.Option(
        None, "--quantize", "-q", help="Quantize an F16/F32 model to this type (e.g. q4_K_M)."
    ),
) -> None:
    """Create a model from a Modelfile."""
    from ollamacli.engine.quantize import parse_quantize_type
    from ollamacli.modelfile import parse
    from ollamacli.names import ModelName
    from ollamacli.service.models import CreateSpec

    ModelName.parse(model)  # refuse a bad name before reading anything
    if quantize:
        parse_quantize_type(quantize)  # and an unknown type
    path = file or Path("Modelfile")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ModelfileError(
            "file not found", path=str(path), hint="pass the Modelfile with -f PATH"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelfileError(f"cannot read: {exc}", path=str(path)) from exc
    modelfile = parse(text, path=str(path))
    spec = CreateSpec.from_modelfile(modelfile, path.resolve().parent, source=str(path))
    spec = spec.with_quantize(quantize)
    with progress_display() as progress:
        model_service().create(model, spec, progress)


@app.command()
def show(
    model: str = typer.Argument(..., help="Model to describe."),
    license: bool = typer.Option(False, "--license", help="Show license of a model."),
    modelfile: bool = typer.Option(False, "--modelfile", help="Show Modelfile of a model."),
    parameters: bool = typer.Option(False, "--parameters", help="Show parameters of a model."),
    template: bool = typer.Option(False, "--template", help="Show template of a model."),
    system: bool = typer.Option(False, "--system", help="Show system message of a model."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show detailed model information."),
) -> None:
    """Show information for a model."""
    from ollamacli.cli.showing import print_info, print_parameters
    from ollamacli.names import ModelName
    from ollamacli.service.show import describe

    if sum((license, modelfile, parameters, template, system)) > 1:
        raise InvalidRequestError(
            "only one of '--license', '--modelfile', '--parameters', '--system', "
            "or '--template' can be specified"
        )
    info = describe(model_service().store, ModelName.parse(model), verbose=verbose)
    if license:
        typer.echo(info.license)
    elif modelfile:
        typer.echo(info.modelfile_text(), nl=False)
    elif parameters:
        print_parameters(info.parameters)
    elif template:
        sys.stdout.write(info.template)
    elif system:
        sys.stdout.write(info.system)
    else:
        print_info(info, verbose=verbose)


@app.command("list")
def list_(
    prefix: str | None = typer.Argument(None, help="Only models whose name starts with this."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """List models."""
    import json

    from ollamacli.config import Settings
    from ollamacli.store import Store

    entries = Store(Settings.from_env().models).entries()
    if prefix:
        entries = [e for e in entries if e.name.short.lower().startswith(prefix.lower())]
    if json_output:
        rows = [
            {
                "name": e.name.short,
                "id": e.digest[:12],
                "digest": e.digest,
                "size": e.manifest.size,
                "modified_at": e.modified.isoformat(),
            }
            for e in entries
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = [
        [e.name.short, e.digest[:12], human_bytes(e.manifest.size), human_time(e.modified)]
        for e in entries
    ]
    sys.stdout.write(format_table(["NAME", "ID", "SIZE", "MODIFIED"], table))


app.command("ls", hidden=True)(list_)


@app.command()
def cp(
    source: str = typer.Argument(..., help="Existing model."),
    destination: str = typer.Argument(..., help="New name."),
) -> None:
    """Copy a model."""
    model_service().copy(source, destination)
    typer.echo(f"copied '{source}' to '{destination}'")


@app.command()
def rm(models: list[str] = typer.Argument(..., help="Models to remove.")) -> None:
    """Remove one or more models."""
    from ollamacli.names import ModelName

    for name in models:
        ModelName.parse(name)
    service = model_service()
    for name in models:
        service.delete(name)
        typer.echo(f"deleted '{name}'")
