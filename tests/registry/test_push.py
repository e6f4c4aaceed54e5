"""Push to a real local registry: statuses, what the registry holds, and a pull that gets it back."""

from __future__ import annotations

import json
from pathlib import Path

from ollamacli.cli.output import human_bytes
from ollamacli.config import Settings
from ollamacli.names import ModelName
from ollamacli.service import build_services
from ollamacli.service.models import CreateSpec, ModelService
from ollamacli.service.pull import PullService
from ollamacli.service.push import PushService
from ollamacli.store import Manifest, Store
from tests.fakes import FakeFactory
from tests.registry.conftest import FAST, Events
from tests.server.conftest import serve_in_thread
from tests.servers.registry import RegistryServer, running_registry


def _local_model(store: Store, name: str, gguf: Path) -> Manifest:
    ModelService(store).create(name, CreateSpec(from_file=gguf, system="You are Tiny."))
    return store.manifests.get(ModelName.parse(name)).manifest


def _uploads(registry: RegistryServer) -> list[str]:
    return [r.method for r in registry.app.requests if r.method in ("POST", "PATCH")]


def test_push_cli_uploads_blobs_then_the_manifest_and_a_pull_gets_it_back(
    cli, registry: RegistryServer, store: Store, tiny_gguf: Path, tmp_path: Path
):
    name = registry.name("team/tiny:v1")
    manifest = _local_model(store, name, tiny_gguf)

    result = cli("push", "--insecure", name)

    assert result.code == 0, result
    layers = [
        f"pushing {layer.digest.split(':')[1][:12]} 100% {human_bytes(layer.size)}"
        for layer in (*manifest.layers, manifest.config)
    ]
    assert result.err.splitlines() == [
        "retrieving manifest",
        *layers,
        "pushing manifest",
        "success",
    ]
    raw = store.manifests.get(ModelName.parse(name)).raw
    assert registry.app.manifests[("team", "tiny", "v1")] == raw
    for layer in (*manifest.layers, manifest.config):
        assert (
            registry.app.blobs[layer.digest].read_bytes()
            == store.blobs.require(layer.digest).read_bytes()
        )

    other = Store(tmp_path / "other")
    PullService(other, Settings(models_dir=tmp_path / "other"), options=FAST).pull(
        name, insecure=True
    )
    assert other.manifests.get(ModelName.parse(name)).raw == raw
    assert other.resolve(ModelName.parse(name)).system == "You are Tiny."


def test_push_sends_only_what_the_registry_lacks_in_chunks(
    registry: RegistryServer, store: Store, settings: Settings, big_gguf: Path, events: Events
):
    name = registry.name("big")
    manifest = _local_model(store, name, big_gguf)
    pushes = PushService(store, settings, options=FAST, chunk_size=300_000)

    pushes.push(name, events, insecure=True)

    model = manifest.layers[0]
    patches = [r for r in registry.app.requests if r.method == "PATCH"]
    assert len(patches) >= model.size // 300_000  # the 1 MB model went in several chunks
    done = [e.completed or 0 for e in events if e.digest == model.digest]
    assert done == sorted(done)
    assert done[-1] == model.size
    assert registry.app.blobs[model.digest].read_bytes() == big_gguf.read_bytes()

    registry.app.requests.clear()
    events.clear()
    pushes.push(name, events, insecure=True)
    assert _uploads(registry) == []  # every blob was there: HEADs and the manifest only
    assert [e.status for e in events][-2:] == ["pushing manifest", "success"]


def test_push_of_an_unknown_model_fails_before_any_request(cli, registry: RegistryServer):
    result = cli("push", "--insecure", registry.name("nothere"))
    assert result.code == 1
    missing = registry.name("nothere")
    assert result.err.splitlines() == [
        "retrieving manifest",
        f"Error: model '{missing}' not found",
        f"name a local model for its registry first: 'ollamacli cp MODEL {missing}'",
    ]
    assert registry.app.requests == []


def test_push_over_the_api_streams_the_same_statuses(
    settings: Settings, registry: RegistryServer, tiny_gguf: Path
):
    services = build_services(settings, FakeFactory())
    name = registry.name("tiny")
    _local_model(services.store, name, tiny_gguf)
    with serve_in_thread(services) as live, live.client() as client:
        response = client.post("/api/push", json={"model": name, "insecure": True})
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "success"}
        body = {"model": name, "insecure": True, "stream": True}
        streamed = client.post("/api/push", json=body)
        statuses = [json.loads(line)["status"] for line in streamed.text.splitlines() if line]
        assert statuses[0] == "retrieving manifest"
        assert statuses[-2:] == ["pushing manifest", "success"]
        missing = client.post("/api/push", json={"model": registry.name("nothere")})
        assert missing.status_code == 404
    assert ("library", "tiny", "latest") in registry.app.manifests


def test_push_answers_the_registrys_token_challenge(
    store: Store, settings: Settings, tiny_gguf: Path, tmp_path: Path
):
    with running_registry(tmp_path / "registry", token=True) as registry:
        name = registry.name("tiny")
        _local_model(store, name, tiny_gguf)
        PushService(store, settings, options=FAST).push(name, insecure=True)
        assert registry.app.tokens_issued  # the first request was challenged, then answered
        assert ("library", "tiny", "latest") in registry.app.manifests
        put = [r for r in registry.app.requests if r.method == "PUT" and "/manifests/" in r.path]
        assert put[-1].headers["authorization"].startswith("Bearer token-")
