"""`serve`, `ps` and `stop` from the command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes import FakeFactory
from tests.server.conftest import free_port, start_serve

NOT_RUNNING = "Error: could not connect to ollamacli server, run 'ollamacli serve' to start it\n"


@pytest.mark.parametrize("args", [("ps",), ("stop", "tiny")], ids=["ps", "stop"])
def test_ps_and_stop_without_a_server(cli, monkeypatch: pytest.MonkeyPatch, args) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    result = cli(*args)
    assert result.code == 1
    assert result.err.startswith(NOT_RUNNING)


def test_ps_and_stop_talk_to_the_running_server(
    cli, make_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    with make_server(FakeFactory()) as live:
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{live.port}")
        with live.client() as client:
            client.post("/api/generate", json={"model": "tiny", "keep_alive": "10m"})
        listing = cli("ps")
        stopped = cli("stop", "tiny")
        after = cli("ps")
        unknown = cli("stop", "ghost")
    header, row = listing.out.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    name, model_id, *rest = row.split("    ")
    assert name == "tiny:latest"
    assert len(model_id) == 12
    assert [cell.strip() for cell in rest if cell.strip()] == [
        "827 B",
        "100% CPU",
        "256",
        "9 minutes from now",
    ]
    assert (stopped.code, stopped.out) == (0, "")
    assert after.out == "NAME    ID    SIZE    PROCESSOR    CONTEXT    UNTIL\n"
    assert unknown.code == 1
    assert unknown.err.startswith('Error: couldn\'t find model "ghost" to stop\n')


def test_ps_sends_the_api_key(cli, make_server, monkeypatch: pytest.MonkeyPatch) -> None:
    with make_server(FakeFactory(), api_key="k3y") as live:
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{live.port}")
        refused = cli("ps")
        monkeypatch.setenv("OLLAMACLI_API_KEY", "k3y")
        allowed = cli("ps")
    assert refused.code == 1
    assert "Error: unauthorized" in refused.err
    assert allowed.code == 0


@pytest.mark.slow
def test_serve_listens_logs_prunes_and_stops_on_sigterm(settings, tmp_path: Path) -> None:
    stale = settings.models / "blobs" / ("sha256-" + "f" * 64)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"nobody uses me")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    port = free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_DEBUG": "1"}
    process = start_serve(env, port)
    try:
        tags = httpx.get(f"http://127.0.0.1:{port}/api/tags", trust_env=False).json()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert tags == {"models": []}
    assert process.returncode == 0
    assert f"Listening on 127.0.0.1:{port}" in err
    assert '"/api/tags"' in err  # the request log line
    assert "[GIN]" in err
    assert "DEBUG" in err
    assert not stale.exists()


@pytest.mark.slow
def test_serve_keeps_blobs_with_noprune_and_reports_a_taken_port(settings) -> None:
    stale = settings.models / "blobs" / ("sha256-" + "e" * 64)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"keep me")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    port = free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_NOPRUNE": "1"}
    first = start_serve(env, port)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "ollamacli", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
    assert stale.exists()
    assert second.returncode == 1
    assert second.stderr.startswith(f"Error: could not listen on 127.0.0.1:{port}:")
    assert first.returncode == 0
