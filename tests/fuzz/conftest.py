"""One real `ollamacli serve` (and one local registry) shared by every fuzz test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.factories import make_tiny_gguf
from tests.fuzz import harness
from tests.fuzz.harness import FuzzServer
from tests.fuzz.known_issues import KNOWN_ISSUES
from tests.servers.registry import RegistryServer, running_registry


@pytest.fixture(scope="session")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, fuzz_registry: RegistryServer
) -> Iterator[FuzzServer]:
    """`ollamacli serve` on a temporary store with SmolLM2 and its capped aliases (its Hugging
    Face endpoint is the local registry, which answers the Hub's API with 404s)."""
    server = FuzzServer(tmp_path_factory.mktemp("fuzz"), hf_endpoint=fuzz_registry.url)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fuzz_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A local registry with a tiny model, a manifest that is not JSON and one with no layers."""
    root = tmp_path_factory.mktemp("fuzz-registry")
    with running_registry(root) as registry:
        registry.app.add_model("tiny:latest", make_tiny_gguf(root / "tiny.gguf"))
        registry.app.publish("broken:latest", b"{not json")
        registry.app.publish("nolayer:latest", b'{"schemaVersion": 2, "layers": []}')
        yield registry


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many requests the fuzzer sent, and what it still skips (see known_issues.py)."""
    if harness.STATS.requests:
        terminalreporter.write_line(harness.STATS.summary())
        if KNOWN_ISSUES:
            terminalreporter.write_line(f"fuzz: generators off for {sorted(KNOWN_ISSUES)}")
