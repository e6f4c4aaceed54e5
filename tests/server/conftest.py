"""A real uvicorn server on a free loopback port, running the app in a thread."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
import uvicorn

from ollamacli.config import Settings
from ollamacli.engine.base import EngineFactory
from ollamacli.server.app import create_app
from ollamacli.server.peers import Peers
from ollamacli.service import Services, build_services
from ollamacli.service.models import CreateSpec, Fetcher
from tests.factories import make_tiny_gguf
from tests.fakes import FakeFactory


@dataclass
class LiveServer:
    """A running server and what it serves."""

    url: str
    port: int
    services: Services

    def client(self, *, timeout: float = 60, headers: dict[str, str] | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False, headers=headers)


@contextmanager
def serve_in_thread(services: Services, peers: Peers | None = None) -> Iterator[LiveServer]:
    """Run the app on 127.0.0.1:<free port> until the block ends (lifespan included)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(services, peers),
        log_config=None,
        access_log=False,
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "server thread died"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", port=port, services=services)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def add_tiny_model(services: Services, tmp_path: Path, name: str = "tiny") -> None:
    """A small real GGUF in the store under `name` (FakeEngine never reads its weights)."""
    path = make_tiny_gguf(tmp_path / f"{name}.gguf")
    services.models.create(name, CreateSpec(from_file=path))


@pytest.fixture
def make_server(settings: Settings, tmp_path: Path) -> Callable[..., object]:
    """Build a live server: `with make_server(factory, max_queue=1) as live: ...`."""

    @contextmanager
    def make(
        factory: EngineFactory | None = None, *, fetcher: Fetcher | None = None, **changes: object
    ) -> Iterator[LiveServer]:
        config = settings.with_changes(**changes) if changes else settings
        services = build_services(config, factory or FakeFactory(), fetcher=fetcher)
        add_tiny_model(services, tmp_path)
        with serve_in_thread(services) as live:
            yield live

    return make


@pytest.fixture
def live(make_server: Callable[..., object], fake_factory: FakeFactory) -> Iterator[LiveServer]:
    """A live server on FakeEngines with the model `tiny` in its store."""
    with make_server(fake_factory) as server:  # type: ignore[attr-defined]  # a context manager
        yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_serve(
    env: dict[str, str], port: int, *, log: Path | None = None
) -> subprocess.Popen[str]:
    """`ollamacli serve` in a child process, once it answers; its output goes to pipes, or to
    the file `log` (for a long-lived server whose pipes nobody drains)."""
    command = [sys.executable, "-m", "ollamacli", "serve"]
    if log is None:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    else:
        with log.open("w") as sink:  # the child keeps its own copy of the file
            process = subprocess.Popen(
                command, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True
            )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", trust_env=False).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"serve did not start: {log.read_text() if log is not None else err}")
        time.sleep(0.1)


@pytest.fixture
def client(live: LiveServer) -> Iterator[ollama.Client]:
    """The official `ollama` Python client, pointed at `live`."""
    with ollama.Client(host=live.url) as client:
        yield client


@pytest.fixture
def oai(live: LiveServer) -> Iterator[openai.OpenAI]:
    """The official `openai` client, pointed at `live`'s /v1."""
    with openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def ndjson_lines(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON objects of an NDJSON response, one a line."""
    return [json.loads(line) for line in response.text.splitlines() if line]


def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON data of an OpenAI-style event stream, which must end with `[DONE]`."""
    events = [line.removeprefix("data: ") for line in response.text.splitlines() if line]
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]


def named_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """The (event name, JSON data) of every server-sent event of a streamed response; each
    event's name must be the `type` of its data (the Responses and Messages APIs' rule)."""
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        head, data = block.split("\n")
        name = head.removeprefix("event: ")
        payload = json.loads(data.removeprefix("data: "))
        assert payload["type"] == name
        events.append((name, payload))
    return events
