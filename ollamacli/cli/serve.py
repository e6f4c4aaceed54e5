"""Server commands: serve, ps, stop."""

from __future__ import annotations

import functools
import importlib.util
import sys
import time
from typing import TYPE_CHECKING

import typer

from ollamacli.cli.app import app
from ollamacli.cli.output import format_table, human_bytes, human_time
from ollamacli.cli.wiring import services, settings
from ollamacli.config import Settings
from ollamacli.errors import OptionalDependencyError

if TYPE_CHECKING:
    from ollamacli.client import RunningModel
    from ollamacli.service import Services


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


def _replica_count(value: str) -> int | None:
    """`--replicas`: a positive count, or `auto` (None)."""
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise typer.BadParameter(f"{value!r} is not a positive number or 'auto'")
    return int(value)


def _prepared(config: Settings) -> Services:
    """A Ray replica's services, with the server's logging (runs in the replica's process)."""
    _configure_logging(config.debug, config.log_format)
    return services(config)


@app.command()
def serve(
    ray: bool = typer.Option(
        False, "--ray", help="Serve from a Ray Serve application (needs ollamacli[cluster])."
    ),
    replicas: str = typer.Option(
        "1",
        "--replicas",
        metavar="N|auto",
        help="With --ray: model-server replicas, a number or 'auto'.",
    ),
    max_replicas: int = typer.Option(
        4, "--max-replicas", min=1, help="With --ray --replicas auto: the most replicas."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="With --ray: join this Ray cluster (default: start one here)."
    ),
) -> None:
    """Start ollamacli (address from OLLAMA_HOST, default 127.0.0.1:11434)."""
    config = settings()
    count = _replica_count(replicas) if ray else None  # a bad value fails before any setup
    _configure_logging(config.debug, config.log_format)
    if ray:
        _serve_on_ray(config, count, max_replicas, ray_address)
        return
    from ollamacli.server.app import bind
    from ollamacli.server.app import serve as run_server

    sock = bind(config.host)  # fail fast, before loading anything, when the port is taken
    run_server(services(config), sock)


def _serve_on_ray(
    config: Settings, replicas: int | None, max_replicas: int, address: str | None
) -> None:
    if importlib.util.find_spec("ray") is None:
        raise OptionalDependencyError("serve --ray", extra="cluster")
    from ollamacli.server import cluster

    options = cluster.ClusterOptions(replicas=replicas, max_replicas=max_replicas, address=address)
    cluster.run(functools.partial(_prepared, config), config, options)


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
