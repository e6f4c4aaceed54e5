"""`ollamacli pull` and `run`'s auto-pull as a user runs them, including kill -9 and resume."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ollamacli.cli import wiring
from ollamacli.cli.output import human_bytes
from ollamacli.registry.policy import TransferOptions
from ollamacli.store import Manifest, Store
from tests.e2e.terminal import Terminal, ollamacli_command
from tests.fakes import FakeFactory
from tests.servers.hub import HubServer
from tests.servers.registry import RegistryServer


@pytest.fixture
def no_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Like a script run with </dev/null, as `run` reads piped input."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))


def _verify_store(store: Store) -> None:
    """A full sha256 check of every blob every manifest names; no partial files left."""
    entries = store.entries()
    assert entries
    for entry in entries:
        for digest in entry.manifest.digests:
            assert store.blobs.verify(digest), digest
    leftovers = [
        p.name
        for p in (store.root / "blobs").iterdir()
        if "partial" in p.name or p.name.startswith(".")  # downloads, temp files, leases
    ]
    assert leftovers == []


def test_pull_cli_prints_ollamas_statuses(
    cli, registry: RegistryServer, store: Store, tiny_gguf: Path
):
    manifest = Manifest.parse(registry.app.add_model("tiny", tiny_gguf, template="{{ .Prompt }}"))

    result = cli("pull", "--insecure", registry.name("tiny"))

    assert result.code == 0, result
    assert result.out == ""
    layers = [
        f"pulling {layer.digest.split(':')[1][:12]} 100% {human_bytes(layer.size)}"
        for layer in (*manifest.layers, manifest.config)
    ]
    expected = ["pulling manifest", *layers, "verifying sha256 digest", "writing manifest"]
    assert result.err.splitlines() == [*expected, "success"]
    _verify_store(store)
    listed = cli("list")
    assert f"{registry.host}/library/tiny:latest" in listed.out


def test_pull_cli_unknown_model_prints_ollamas_error(cli, registry: RegistryServer):
    result = cli("pull", "--insecure", registry.name("nothere"))
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0] == "pulling manifest"
    assert lines[1] == "Error: pull model manifest: file does not exist"


def test_pull_cli_rejects_a_bad_name_before_any_request(cli, registry: RegistryServer):
    result = cli("pull", "--insecure", f"{registry.host}/library/bad name")
    assert result.code == 1
    assert result.err.startswith("Error: invalid model name")
    assert registry.app.requests == []


@pytest.mark.usefixtures("no_stdin")
def test_run_pulls_a_missing_model_first(
    cli,
    monkeypatch: pytest.MonkeyPatch,
    fake_factory: FakeFactory,
    hub: HubServer,
    hub_repo: dict[str, Path],
    store: Store,
):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    real_services = wiring.services

    def services(config=None, engine_factory=None):  # the real wiring, a scripted engine
        return real_services(config, fake_factory)

    monkeypatch.setattr(wiring, "services", services)
    fake_factory.enqueue("Hello", " there.")

    result = cli("run", "hf.co/user/Tiny-GGUF", "hi")

    assert result.code == 0, result
    assert result.out == "Hello there.\n\n"
    assert result.err.splitlines()[0] == "pulling manifest"
    assert "success" in result.err.splitlines()
    assert fake_factory.loaded[0].config.model_path.read_bytes() == hub_repo["Q4_K_M"].read_bytes()
    _verify_store(store)


@pytest.mark.usefixtures("no_stdin")
def test_run_insecure_pulls_from_a_plain_http_registry(
    cli,
    monkeypatch: pytest.MonkeyPatch,
    fake_factory: FakeFactory,
    registry: RegistryServer,
    tiny_gguf: Path,
    store: Store,
):
    registry.app.add_model("tiny", tiny_gguf)
    real_services = wiring.services

    def services(config=None, engine_factory=None):
        return real_services(config, fake_factory)

    monkeypatch.setattr(wiring, "services", services)
    fake_factory.enqueue("Hi.")

    result = cli("run", "--insecure", registry.name("tiny"), "hello")

    assert result.code == 0, result
    assert result.out == "Hi.\n\n"
    _verify_store(store)


def test_pull_of_the_bundled_model_imports_it_offline(cli, store: Store, smollm2_path: Path):
    result = cli("pull", "smollm2:135m")

    assert result.code == 0, result
    assert result.err.splitlines()[-1] == "success"
    resolved = store.resolve(store.entries()[0].name)
    assert resolved.model_path.stat().st_size == smollm2_path.stat().st_size
    assert resolved.name.short == "smollm2:135m"


def test_create_from_a_remote_model_pulls_it(
    cli, monkeypatch: pytest.MonkeyPatch, hub: HubServer, hub_repo: dict[str, Path], tmp_path
):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM hf.co/user/Tiny-GGUF:Q8_0\nSYSTEM Be brief.\n")

    result = cli("create", "brief", "-f", str(modelfile))

    assert result.code == 0, result
    assert "pulling manifest" in result.err
    shown = cli("show", "brief", "--system")
    assert shown.out.strip() == "Be brief."


def _saved_bytes(store: Store, digest: str) -> int:
    prefix = "sha256-" + digest.split(":")[1] + "-partial-"
    return sum(
        json.loads(path.read_bytes())["Completed"]
        for path in (store.root / "blobs").iterdir()
        if path.name.startswith(prefix)
    )


def _pull_process(name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ollamacli", "pull", "--insecure", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_pull_killed_mid_download_resumes_and_refetches_at_most_parts_in_flight(
    registry: RegistryServer, store: Store, tiny_gguf: Path, tmp_path: Path, sig: signal.Signals
):
    model_file = tmp_path / "model.gguf"
    model_file.write_bytes(tiny_gguf.read_bytes() + os.urandom(64_000_000))
    size = model_file.stat().st_size
    manifest = Manifest.parse(registry.app.add_model("big", model_file))
    model = manifest.layers[0].digest
    registry.app.faults.rate = 2_000_000  # bytes/s per connection: slow enough to interrupt

    process = _pull_process(registry.name("big"))
    deadline = time.monotonic() + 60
    while registry.app.served[model] < 16_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    registry.app.faults.rate = None
    registry.app.wait_idle()  # responses to the dead client end (and are counted) first
    first_run = registry.app.served[model]

    assert process.returncode == (-9 if sig == signal.SIGKILL else 130), err
    assert store.entries() == []  # no manifest for an incomplete model
    saved = _saved_bytes(store, model)
    assert 0 < saved < size

    registry.app.served.clear()
    again = subprocess.run(
        [sys.executable, "-m", "ollamacli", "pull", "--insecure", registry.name("big")],
        capture_output=True,
        timeout=120,
        check=False,
    )
    second_run = registry.app.served[model]

    assert again.returncode == 0, again.stderr
    assert second_run == size - saved + 2  # exactly the missing ranges (+ two 1-byte probes)
    options = TransferOptions()
    in_flight = options.connections * options.part_size(size)
    refetched = first_run + second_run - size - 4
    assert refetched <= in_flight
    _verify_store(store)


@pytest.mark.llama
@pytest.mark.slow
@pytest.mark.usefixtures("no_stdin")
def test_pulled_smollm2_answers_through_the_real_engine(
    cli, registry: RegistryServer, store: Store, smollm2_path: Path
):
    registry.app.add_model(
        "smollm2:135m",
        smollm2_path,
        params={"temperature": 0, "num_predict": 16},
        config={"model_format": "gguf", "model_family": "llama", "file_type": "Q4_1"},
    )
    name = registry.name("smollm2:135m")

    pulled = cli("pull", "--insecure", name)
    assert pulled.code == 0, pulled
    _verify_store(store)

    answer = cli("run", name, "What is the capital of France? Answer with one word.")
    assert answer.code == 0, answer
    assert "Paris" in answer.out


@pytest.mark.slow
def test_pull_in_a_terminal_draws_bars_in_ollamas_order(
    terminal: Terminal, registry: RegistryServer, store: Store, big_gguf: Path
):
    manifest = Manifest.parse(registry.app.add_model("big", big_gguf, template="{{ .Prompt }}"))
    pull = f"pull --insecure {registry.name('big')}"
    terminal.start(ollamacli_command(pull, OLLAMA_MODELS=str(store.root)))
    terminal.wait_for(r"EXITED=0", timeout=120)

    lines = [line.strip() for line in terminal.screen().splitlines() if line.strip()]
    bars = [f"pulling {digest.split(':')[1][:12]}" for digest in manifest.digests]
    # Each bar ended at 100% on a line of its own, after `pulling manifest` and before the
    # statuses that follow the downloads, as Ollama prints them.
    order = ["pulling manifest", *bars, "verifying sha256 digest", "writing manifest", "success"]
    found = [next(i for i, line in enumerate(lines) if line.startswith(text)) for text in order]
    assert found == sorted(found), lines
    for bar in bars:
        (line,) = [line for line in lines if line.startswith(bar)]
        assert "100%" in line, line
    assert lines[-2:] == ["success", "EXITED=0"]
