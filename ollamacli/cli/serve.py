"""Server commands: serve, ps, stop."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import typer

from ollamacli.cli.app import app
from ollamacli.cli.output import format_table, human_bytes, human_time
from ollamacli.cli.wiring import services, settings

if TYPE_CHECKING:
    from ollamacli.client import RunningModel


def _configure_logging(debug: bool, log_format: str) -> None:
    """Log lines on stderr (journald under a service manager): plain text, or JSON objects."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from ollamacli.server.requestlog import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


@app.command()
def serve() -> None:
    """Start ollamacli (address from OLLAMA_HOST, default 127.0.0.1:11434)."""
    from ollamacli.server.app import bind
    from ollamacli.server.app import serve as run_server

    config = settings()
    _configure_logging(config.debug, config.log_format)
    sock = bind(config.host)  # fail fast, before loading anything, when the port is taken
    run_server(services(config), sock)


def _processor(model: RunningModel) -> str:
    if model.size_vram <= 0 or model.size <= 0:
        return "100% CPU"
    if model.size_vram >= model.size:
        return "100% GPU"
    gpu = round(100 * model.size_vram / model.size)
    return f"{100 - gpu}%/{gpu}% CPU/GPU"


def _until(model: RunningModel) -> str:
    if model.expires_at <= time.time():
        return "Stopping..."
    return human_time(model.expires_at)


@app.command()
def ps() -> None:
    """List running models."""
    from ollamacli.client import Client

    with Client(settings()) as client:
        models = client.ps()
    rows = [
        [
            m.name,
            m.digest[:12],
            human_bytes(m.size),
            _processor(m),
            str(m.context_length),
            _until(m),
        ]
        for m in models
    ]
    headers = ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    sys.stdout.write(format_table(headers, rows))


@app.command()
def stop(model: str = typer.Argument(..., help="Model to stop.")) -> None:
    """Stop a running model."""
    from ollamacli.client import Client

    with Client(settings()) as client:
        client.stop(model)
