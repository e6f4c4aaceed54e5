"""Fixtures for pull tests: a local registry and Hugging Face endpoint, and a fast PullService."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamacli.config import Settings
from ollamacli.progress import ProgressEvent
from ollamacli.registry.policy import TransferOptions
from ollamacli.service.pull import PullService
from ollamacli.store import Store
from tests.factories import make_tiny_gguf
from tests.servers.hub import HubServer, running_hub
from tests.servers.registry import RegistryServer, running_registry

FAST = TransferOptions(
    min_part_size=64 * 1024,
    backoff=0.01,
    stall_timeout=1.0,
    checkpoint_interval=0.0,
    progress_interval=0.01,
)
"""Small parts (so small blobs still split), quick retries and stall detection."""


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A plain local registry (no token, no redirect)."""
    with running_registry(tmp_path / "registry") as server:
        yield server


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubServer]:
    """A local Hugging Face endpoint."""
    with running_hub(tmp_path / "hub") as server:
        yield server


@pytest.fixture
def hub_repo(hub: HubServer, tmp_path: Path) -> dict[str, Path]:
    """`user/Tiny-GGUF` with two quantisations, a README and a config file."""
    files = {}
    for quant, file_type in (("Q4_K_M", 15), ("Q8_0", 7)):
        path = make_tiny_gguf(tmp_path / f"tiny-{quant}.gguf", file_type=file_type, seed=file_type)
        hub.app.add_file("user/Tiny-GGUF", f"Tiny-{quant}.gguf", path)
        files[quant] = path
    hub.app.add_file("user/Tiny-GGUF", "README.md", b"# Tiny")
    hub.app.add_file("user/Tiny-GGUF", "config.json", json.dumps({"a": 1}).encode() * 100)
    return files


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    """A small but real GGUF (llama architecture)."""
    return make_tiny_gguf(tmp_path / "src" / "tiny.gguf")


@pytest.fixture
def big_gguf(tmp_path: Path, tiny_gguf: Path) -> Path:
    """A GGUF header followed by 1 MB of random bytes: many parts with the FAST options."""
    import os

    path = tmp_path / "src" / "big.gguf"
    path.write_bytes(tiny_gguf.read_bytes() + os.urandom(1_000_000))
    return path


@pytest.fixture
def pulls(store: Store, settings: Settings) -> PullService:
    """A pull service with fast retries, pointed at this test's store."""
    return PullService(store, settings, options=FAST)


class Events(list[ProgressEvent]):
    """A progress sink that keeps every event."""

    def __call__(self, event: ProgressEvent) -> None:
        self.append(event)

    @property
    def statuses(self) -> list[str]:
        """Statuses in order, consecutive repeats collapsed (a download reports many times)."""
        out: list[str] = []
        for event in self:
            if not out or out[-1] != event.status:
                out.append(event.status)
        return out


@pytest.fixture
def events() -> Events:
    return Events()
