"""`pull`: download a model from a registry or Hugging Face, with progress bars."""

from __future__ import annotations

import typer

from ollamacli.cli.app import app
from ollamacli.cli.output import progress_display
from ollamacli.cli.wiring import pull_service, push_service


@app.command()
def pull(
    model: str = typer.Argument(
        ..., help="Model to pull, e.g. llama3.2 or hf.co/user/repo:Q4_K_M."
    ),
    insecure: bool = typer.Option(False, "--insecure", help="Use an insecure registry (http)."),
) -> None:
    """Pull a model from a registry."""
    from ollamacli.names import ModelName

    name = ModelName.parse(model)  # refuse a bad name before any network traffic
    with progress_display() as progress:
        pull_service().pull(name, progress, insecure=insecure)


@app.command()
def push(
    model: str = typer.Argument(
        ..., help="Model to push, named for its registry: <host>/<namespace>/<model>:<tag>."
    ),
    insecure: bool = typer.Option(False, "--insecure", help="Use an insecure registry (http)."),
) -> None:
    """Push a model to a registry."""
    from ollamacli.names import ModelName

    name = ModelName.parse(model)
    with progress_display() as progress:
        push_service().push(name, progress, insecure=insecure)
