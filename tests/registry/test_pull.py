"""PullService against a real local registry: statuses, caching, verification, faults, preflight."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from ollamacli.config import Settings
from ollamacli.errors import (
    DigestMismatchError,
    DiskFullError,
    DownloadError,
    InvalidRequestError,
    ManifestNotFoundError,
    ModelfileError,
    UnsupportedModelError,
)
from ollamacli.names import ModelName
from ollamacli.service.models import ModelService
from ollamacli.service.pull import PullService
from ollamacli.store import Manifest, Store
from tests.factories import make_tiny_gguf
from tests.registry.conftest import FAST, Events
from tests.servers.registry import RegistryServer, running_registry


def _blob_files(store: Store) -> list[str]:
    root = store.root / "blobs"
    return (
        sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock"))
        if root.is_dir()
        else []
    )


def _assert_store_verifies(store: Store) -> None:
    """Every manifest's blobs exist and hash to their names; nothing partial is left."""
    entries = store.entries()
    assert entries
    for entry in entries:
        for digest in entry.manifest.digests:
            assert store.blobs.verify(digest), digest
    assert not [name for name in _blob_files(store) if "partial" in name]


def test_pull_fresh_model_emits_ollama_statuses_and_stores_manifest_verbatim(
    registry: RegistryServer, pulls: PullService, store: Store, big_gguf: Path, events: Events
):
    raw = registry.app.add_model(
        "tiny:latest", big_gguf, template="{{ .Prompt }}", params={"temperature": 0.5}
    )
    manifest = Manifest.parse(raw)

    name = pulls.pull(registry.name("tiny"), events, insecure=True)

    pulling = [f"pulling {d.split(':')[1][:12]}" for d in manifest.digests]
    assert events.statuses == [
        "pulling manifest",
        *pulling,
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    model_events = [e for e in events if e.digest == manifest.layers[0].digest]
    assert model_events[-1].completed == model_events[-1].total == big_gguf.stat().st_size
    assert len(model_events) > 1  # progress arrived while downloading, not only at the end
    done = [e.completed or 0 for e in model_events]
    assert done == sorted(done)
    assert store.manifests.get(name).raw == raw
    resolved = store.resolve(name)
    assert resolved.template == "{{ .Prompt }}"
    assert resolved.parameters == {"temperature": 0.5}
    assert resolved.model_path.read_bytes() == big_gguf.read_bytes()
    _assert_store_verifies(store)


def test_pull_stores_under_host_namespace_model_tag(
    registry: RegistryServer, pulls: PullService, store: Store, tiny_gguf: Path
):
    registry.app.add_model("someone/tiny:v1", tiny_gguf)
    pulls.pull(registry.name("someone/tiny:v1"), insecure=True)
    path = store.root / "manifests" / registry.host / "someone" / "tiny" / "v1"
    assert path.is_file()


def test_pull_skips_layers_already_in_store(
    registry: RegistryServer, pulls: PullService, big_gguf: Path, events: Events
):
    raw = registry.app.add_model("tiny", big_gguf, template="t")
    pulls.pull(registry.name("tiny"), insecure=True)
    registry.app.served.clear()

    pulls.pull(registry.name("tiny"), events, insecure=True)

    assert sum(registry.app.served.values()) == 0
    for digest in Manifest.parse(raw).digests:
        layer_events = [e for e in events if e.digest == digest]
        assert len(layer_events) == 1
        assert layer_events[0].completed == layer_events[0].total


def test_repull_of_changed_tag_removes_unused_layers(
    registry: RegistryServer, pulls: PullService, store: Store, tiny_gguf: Path, events: Events
):
    first = Manifest.parse(registry.app.add_model("tiny", tiny_gguf, template="old template"))
    pulls.pull(registry.name("tiny"), insecure=True)
    second = Manifest.parse(registry.app.add_model("tiny", tiny_gguf, template="new template"))

    pulls.pull(registry.name("tiny"), events, insecure=True)

    assert events.statuses[-3:] == ["writing manifest", "removing unused layers", "success"]
    old_template = first.find("application/vnd.ollama.image.template")[0].digest
    assert not store.blobs.exists(old_template)
    for digest in second.digests:
        assert store.blobs.exists(digest)


def test_repull_with_noprune_keeps_the_old_layers(
    registry: RegistryServer, store: Store, settings: Settings, tiny_gguf: Path, events: Events
):
    pulls = PullService(store, replace(settings, noprune=True), options=FAST)
    first = Manifest.parse(registry.app.add_model("tiny", tiny_gguf, template="old template"))
    pulls.pull(registry.name("tiny"), insecure=True)
    registry.app.add_model("tiny", tiny_gguf, template="new template")

    pulls.pull(registry.name("tiny"), events, insecure=True)

    assert events.statuses[-2:] == ["writing manifest", "success"]
    old_template = first.find("application/vnd.ollama.image.template")[0].digest
    assert store.blobs.verify(old_template)


def test_pull_unknown_model_is_manifest_not_found(registry: RegistryServer, pulls: PullService):
    with pytest.raises(ManifestNotFoundError) as caught:
        pulls.pull(registry.name("nothere"), insecure=True)
    assert str(caught.value) == "pull model manifest: file does not exist"


def test_pull_wrong_digest_removes_bad_data_and_writes_no_manifest(
    registry: RegistryServer, pulls: PullService, store: Store, big_gguf: Path
):
    raw = registry.app.add_model("tiny", big_gguf)
    model = Manifest.parse(raw).layers[0].digest
    registry.app.faults.corrupt.add(model)

    with pytest.raises(DigestMismatchError) as caught:
        pulls.pull(registry.name("tiny"), insecure=True)

    assert str(caught.value).startswith(
        f"digest mismatch, file must be downloaded again: want {model}, got sha256:"
    )
    assert not store.blobs.exists(model)
    assert not [name for name in _blob_files(store) if model.split(":")[1] in name]
    assert store.entries() == []
    registry.app.faults.corrupt.clear()
    pulls.pull(registry.name("tiny"), insecure=True)  # downloads again from scratch
    _assert_store_verifies(store)


def test_pull_survives_server_ignoring_range(
    registry: RegistryServer, pulls: PullService, store: Store, big_gguf: Path
):
    model = Manifest.parse(registry.app.add_model("tiny", big_gguf)).layers[0].digest
    registry.app.faults.ignore_range = True

    pulls.pull(registry.name("tiny"), insecure=True)

    _assert_store_verifies(store)
    gets = [r for r in registry.app.requests if r.path.endswith(model)]
    assert len(gets) == 3  # two Range probes answered 200, then one stream of the whole blob


def test_pull_retries_500s_then_succeeds(
    registry: RegistryServer, pulls: PullService, store: Store, big_gguf: Path
):
    registry.app.add_model("tiny", big_gguf)
    registry.app.faults.manifest_500 = 2
    registry.app.faults.fail_500 = 3

    pulls.pull(registry.name("tiny"), insecure=True)

    _assert_store_verifies(store)
    statuses = [r for r in registry.app.requests if "/manifests/" in r.path]
    assert len(statuses) == 3


@pytest.mark.parametrize(
    "fault",
    [{"drop_after": 10_000, "drops": 5}, {"stall": 2.0, "stalls": 2}],
    ids=["dropped-connections", "stalled-bodies"],
)
def test_pull_retries_broken_bodies_and_succeeds(
    registry: RegistryServer,
    pulls: PullService,
    store: Store,
    big_gguf: Path,
    fault: dict[str, float],
):
    model = Manifest.parse(registry.app.add_model("tiny", big_gguf)).layers[0].digest
    for key, value in fault.items():
        setattr(registry.app.faults, key, value)  # stalls last longer than FAST.stall_timeout

    pulls.pull(registry.name("tiny"), insecure=True)

    _assert_store_verifies(store)
    parts = len(range(0, big_gguf.stat().st_size, FAST.part_size(big_gguf.stat().st_size)))
    gets = [r for r in registry.app.requests if r.path.endswith(model)]
    assert len(gets) > parts + 2  # two probes, each part once, and the retries


def test_pull_gives_up_with_one_clear_error(
    registry: RegistryServer, pulls: PullService, store: Store, big_gguf: Path
):
    registry.app.add_model("tiny", big_gguf)
    registry.app.faults.refuse = True

    with pytest.raises(DownloadError) as caught:
        pulls.pull(registry.name("tiny"), insecure=True)

    assert "500" in str(caught.value)
    assert caught.value.hint
    assert store.entries() == []


def test_pull_resumes_from_saved_parts_without_refetching_them(
    registry: RegistryServer, pulls: PullService, store: Store, big_gguf: Path
):
    raw = registry.app.add_model("tiny", big_gguf)
    model = Manifest.parse(raw).layers[0].digest
    size = big_gguf.stat().st_size
    registry.app.faults.drop_after, registry.app.faults.drops = 20_000, 1_000
    failing = PullService(store, pulls.settings, options=replace(FAST, retries=0))
    with pytest.raises(DownloadError):
        failing.pull(registry.name("tiny"), insecure=True)
    saved = _saved_bytes(store, model)
    assert 0 < saved < size
    registry.app.faults.drops = 0
    registry.app.served.clear()

    pulls.pull(registry.name("tiny"), insecure=True)

    assert registry.app.served[model] == size - saved + 2  # + two 1-byte Range probes
    _assert_store_verifies(store)


def _saved_bytes(store: Store, digest: str) -> int:
    prefix = "sha256-" + digest.split(":")[1] + "-partial-"
    total = 0
    for path in (store.root / "blobs").iterdir():
        if path.name.startswith(prefix):
            total += json.loads(path.read_bytes())["Completed"]
    return total


def test_pull_answers_token_challenge_and_keeps_token_off_the_cdn(
    tmp_path: Path, pulls: PullService, store: Store, big_gguf: Path
):
    with running_registry(tmp_path / "authreg", token=True, redirect=True) as registry:
        registry.app.add_model("tiny", big_gguf)
        pulls.pull(registry.name("tiny"), insecure=True)
        requests = list(registry.app.requests)
        issued = registry.app.tokens_issued

    assert issued
    assert issued[0]["scope"] == "repository:library/tiny:pull"
    assert issued[0]["service"] == "test-registry"
    cdn = [r for r in requests if r.path.startswith("/cdn/")]
    assert cdn
    assert all("authorization" not in r.headers for r in cdn)
    ranged = [
        r
        for r in cdn
        if r.headers.get("range", "").startswith("bytes=") and r.headers["range"] != "bytes=0-0"
    ]
    assert len(ranged) > 1  # parallel parts went straight to the CDN
    _assert_store_verifies(store)


def test_pull_refuses_plain_http_name_without_insecure(pulls: PullService):
    with pytest.raises(InvalidRequestError, match="insecure protocol http"):
        pulls.pull("http://127.0.0.1:9/library/tiny")


def test_pull_refuses_unsupported_architecture_before_writing_manifest(
    registry: RegistryServer, pulls: PullService, store: Store, tmp_path: Path
):
    odd = make_tiny_gguf(tmp_path / "odd.gguf", arch="notanarch")
    registry.app.add_model("odd", odd)

    with pytest.raises(UnsupportedModelError) as caught:
        pulls.pull(registry.name("odd"), insecure=True)

    assert str(caught.value) == 'architecture "notanarch" is not supported by this engine'
    assert store.entries() == []
    assert _blob_files(store) == []


def test_pull_refuses_when_disk_cannot_hold_the_blobs(
    registry: RegistryServer, store: Store, settings: Settings, big_gguf: Path
):
    registry.app.add_model("tiny", big_gguf)
    pulls = PullService(store, settings, options=FAST, free_space=lambda _: 1000)

    with pytest.raises(DiskFullError, match="not enough disk space"):
        pulls.pull(registry.name("tiny"), insecure=True)

    assert store.entries() == []
    assert sum(registry.app.served.values()) == 0


@pytest.mark.parametrize(
    "capacity", [300_000, 1_002_000], ids=["during-first-blob", "during-second-blob"]
)
def test_pull_disk_full_mid_download_leaves_store_unchanged(
    registry: RegistryServer,
    pulls: PullService,
    store: Store,
    big_gguf: Path,
    monkeypatch: pytest.MonkeyPatch,
    capacity: int,
):
    registry.app.add_model("tiny", big_gguf, template="T" * 5000)
    real_pwrite = os.pwrite
    written = 0

    def pwrite(fd: int, data: bytes, offset: int) -> int:  # a disk that fills up
        nonlocal written
        written += len(data)
        if written > capacity:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    with pytest.raises(DiskFullError):
        pulls.pull(registry.name("tiny"), insecure=True)
    monkeypatch.undo()

    assert store.entries() == []
    assert _blob_files(store) == []


def test_model_service_ensure_pulls_missing_model_through_fetcher(
    registry: RegistryServer, pulls: PullService, store: Store, tiny_gguf: Path, events: Events
):
    registry.app.add_model("tiny", tiny_gguf, template="{{ .Prompt }}")
    models = ModelService(store, fetcher=pulls.fetcher(insecure=True))

    resolved = models.ensure(ModelName.parse(registry.name("tiny")), events)

    assert resolved.template == "{{ .Prompt }}"
    assert events.statuses[0] == "pulling manifest"
    assert events.statuses[-1] == "success"


def test_two_pulls_of_one_model_at_once_download_it_once(
    registry: RegistryServer, pulls: PullService, store: Store, big_gguf: Path
):
    from concurrent.futures import ThreadPoolExecutor

    model = Manifest.parse(registry.app.add_model("tiny", big_gguf)).layers[0].digest
    registry.app.faults.rate = 2_000_000  # slow enough for the two pulls to overlap

    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(pulls.pull, registry.name("tiny"), insecure=True) for _ in range(2)]
        names = [run.result(timeout=60) for run in runs]

    assert names[0] == names[1]
    assert registry.app.served[model] == big_gguf.stat().st_size + 2  # once, plus two probes
    _assert_store_verifies(store)


def test_pull_refuses_a_renderer_or_parser_it_cannot_honour(
    registry: RegistryServer, pulls: PullService, store: Store, tiny_gguf: Path, events: Events
):
    config = {"model_format": "gguf", "model_family": "qwen35", "file_type": "F32"}
    registry.app.add_model(
        "known:latest", tiny_gguf, config={**config, "renderer": "qwen3.5", "parser": "qwen3.5"}
    )
    registry.app.add_model("future:latest", tiny_gguf, config={**config, "parser": "qwen9-magic"})
    known = pulls.pull(registry.name("known"), events, insecure=True)
    assert store.resolve(known).config["parser"] == "qwen3.5"
    with pytest.raises(ModelfileError, match='unknown PARSER "qwen9-magic"'):
        pulls.pull(registry.name("future"), events, insecure=True)
    assert [e.name.model for e in store.entries()] == ["known"]
