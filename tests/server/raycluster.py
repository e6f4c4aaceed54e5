"""A real `ollamacli serve --ray` process on a local Ray instance, for the cluster tests."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ollamacli.config import Settings
from ollamacli.parameters import OptionValue
from ollamacli.service import build_services
from ollamacli.service.models import CreateSpec
from tests.server.conftest import free_port
from tests.server.metricstext import samples

# Every cluster test: the real model, slow, and only where Ray is installed (the `cluster` extra).
MARKS = [
    pytest.mark.llama,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ollamacli[cluster]"),
]
BASE = "smollm2:135m"
SECOND = "second:latest"
REPLICA = "X-Ollamacli-Replica"
# A JSON array of at least 60 integers: the grammar forbids an early end, so the answer runs
# exactly num_predict tokens, whatever the model's greedy words on this CPU.
LONG = {"type": "array", "items": {"type": "integer"}, "minItems": 60}


@dataclass
class Cluster:
    url: str
    process: subprocess.Popen[str]
    log: Path

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)


def make_store(root: Path) -> Settings:
    """A store with the bundled model and a second name for it (other settings)."""
    settings = Settings(data_dir=root / "data", models_dir=root / "models")
    services = build_services(settings)
    services.models.ensure(BASE)
    parameters: dict[str, OptionValue] = {"temperature": 0.0, "num_ctx": 1024, "seed": 7}
    services.models.create(SECOND, CreateSpec(from_model=BASE, parameters=parameters))
    return settings


@contextmanager
def running_cluster(
    store: Settings, *flags: str, env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """`serve --ray FLAGS` on the store, from its first answer until SIGTERM at the end."""
    port = free_port()
    root = store.data_dir.parent
    cleared = ("OLLAMA", "OLLAMACLI", "HF_", "RAY_")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(cleared)}
    environment |= {
        "HOME": str(root),
        "OLLAMACLI_HOME": str(store.data_dir),
        "OLLAMA_MODELS": str(store.models),
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        **(env or {}),
    }
    log = root / "serve.log"
    command = [sys.executable, "-m", "ollamacli", "serve", "--ray", *flags]
    with log.open("w") as sink:
        process = subprocess.Popen(
            command, env=environment, stdout=sink, stderr=subprocess.STDOUT, text=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve --ray did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield Cluster(url, process, log)
    finally:
        process.send_signal(signal.SIGTERM)  # the driver deletes the app and stops Ray
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/", trust_env=False, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def generate_body(model: str, num_predict: int, **extra: object) -> dict[str, object]:
    """An /api/generate body whose answer runs exactly `num_predict` tokens."""
    return {
        "model": model,
        "prompt": "List some numbers.",
        "format": LONG,
        "options": {"num_predict": num_predict, "temperature": 0, "seed": 1},
        **extra,
    }


def replica_of(response: httpx.Response) -> tuple[str, int]:
    """(replica id, pid) of the replica that answered (asked with the `REPLICA` header)."""
    replica, pid = response.headers[REPLICA].split(" pid=")
    return replica, int(pid)


def replicas_in(text: str) -> set[str]:
    """The `replica` label values of a `/metrics` scrape."""
    return {dict(labels)["replica"] for _, labels in samples(text) if "replica" in dict(labels)}
