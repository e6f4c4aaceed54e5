"""The blob store and manifests: Ollama's layout, atomic writes, verification, garbage collection."""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamacli.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    DiskFullError,
    ModelNotFoundError,
    StoreError,
)
from ollamacli.names import ModelName
from ollamacli.store import Layer, Manifest, Store, parse_digest
from ollamacli.store.blobs import sha256_bytes
from ollamacli.store.manifests import CONFIG_MEDIA_TYPE, MEDIA_MODEL


def _model(store: Store, content: bytes = b"weights") -> Manifest:
    model = store.blobs.write_bytes(content)
    config = store.blobs.write_bytes(b'{"model_format":"gguf"}')
    return Manifest(
        config=Layer(CONFIG_MEDIA_TYPE, config, store.blobs.size(config)),
        layers=(Layer(MEDIA_MODEL, model, store.blobs.size(model)),),
    )


def test_blob_path_uses_ollama_layout(store):
    digest = store.blobs.write_bytes(b"hello")
    assert store.blobs.path(digest).name == "sha256-" + digest.split(":")[1]
    assert store.blobs.path(digest).parent == store.root / "blobs"
    assert store.blobs.read_bytes(digest) == b"hello"


def test_blob_stream_with_wrong_digest_is_refused_and_discarded(store):
    expected = sha256_bytes(b"right")
    with pytest.raises(DigestMismatchError):
        store.blobs.add_stream([b"wrong"], expected=expected)
    assert not store.blobs.exists(expected)
    assert [p.name for p in store.blobs.root.iterdir()] == []


def test_blob_disk_full_leaves_nothing(store, monkeypatch):
    def full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def chunks() -> Iterator[bytes]:
        yield b"partial data"
        full()

    with pytest.raises(DiskFullError, match="no space left"):
        store.blobs.add_stream(chunks())
    assert list(store.blobs.root.iterdir()) == []


def test_digest_parse_accepts_both_forms():
    hexa = "a" * 64
    assert (
        parse_digest(f"sha256-{hexa}") == parse_digest(f"sha256:{hexa.upper()}") == f"sha256:{hexa}"
    )
    with pytest.raises(ValueError, match="invalid digest format"):
        parse_digest("sha256:xyz")


def test_manifest_round_trips_ollama_json(store):
    manifest = _model(store)
    body = json.loads(manifest.to_bytes())
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert body["layers"][0]["mediaType"] == "application/vnd.ollama.image.model"
    assert Manifest.parse(manifest.to_bytes()) == manifest


def test_commit_writes_manifest_path_and_lists(store):
    name = ModelName.parse("mario")
    store.commit(name, _model(store).to_bytes())
    path = store.root / "manifests/registry.ollama.ai/library/mario/latest"
    assert path.is_file()
    assert [e.name.short for e in store.entries()] == ["mario:latest"]
    assert store.resolve(ModelName.parse("MARIO:Latest")).model_path.read_bytes() == b"weights"


def test_commit_refuses_manifest_with_missing_blob(store):
    manifest = _model(store)
    store.blobs.delete(manifest.layers[0].digest)
    with pytest.raises(BlobNotFoundError):
        store.commit(ModelName.parse("x"), manifest.to_bytes())
    assert store.entries() == []


def test_delete_removes_only_unreferenced_blobs(store):
    shared = _model(store, b"shared")
    store.commit(ModelName.parse("a"), shared.to_bytes())
    store.copy(ModelName.parse("a"), ModelName.parse("b"))
    assert store.delete(ModelName.parse("a")) == []
    assert store.blobs.exists(shared.layers[0].digest)
    removed = store.delete(ModelName.parse("b"))
    assert set(removed) == set(shared.digests)
    assert list(store.blobs.digests()) == []
    assert not (store.root / "manifests" / "registry.ollama.ai").exists()


def test_overwriting_a_tag_removes_old_unused_layers(store):
    name = ModelName.parse("m")
    first = _model(store, b"one")
    store.commit(name, first.to_bytes())
    second = _model(store, b"two")
    removed = store.commit(name, second.to_bytes())
    assert removed == [first.layers[0].digest]
    assert not store.blobs.exists(first.layers[0].digest)


def test_overwriting_a_tag_without_prune_keeps_old_layers(store):
    name = ModelName.parse("m")
    first = _model(store, b"one")
    store.commit(name, first.to_bytes())
    second = _model(store, b"two")
    assert store.commit(name, second.to_bytes(), prune=False) == []
    assert store.blobs.verify(first.layers[0].digest)
    assert store.resolve(name).model_path == store.blobs.path(second.layers[0].digest)


def test_prune_removes_an_abandoned_download_whole_and_keeps_a_recent_one(store):
    store.blobs.root.mkdir(parents=True)
    old = time.time() - 7200

    def download(digest: str) -> list[Path]:
        data = store.blobs.partial_path(parse_digest(digest))
        files = [data, *(data.with_name(f"{data.name}-{n}") for n in range(2))]
        files.append(data.with_name(data.name + ".lock"))
        for path in files:
            path.write_bytes(b"x")
            os.utime(path, (old, old))
        return files

    abandoned = download(sha256_bytes(b"abandoned"))
    recent = download(sha256_bytes(b"recent"))
    os.utime(recent[1], None)  # one part file saved just now: the download is still going

    removed = store.prune()

    assert sorted(removed) == sorted(abandoned)
    assert not any(path.exists() for path in abandoned)
    assert all(path.exists() for path in recent)


def test_missing_model_is_not_found(store):
    with pytest.raises(ModelNotFoundError, match="model 'nope:latest' not found"):
        store.resolve(ModelName.parse("nope"))


def test_malformed_manifest_is_a_store_error():
    with pytest.raises(StoreError, match="malformed manifest"):
        Manifest.parse(b'{"schemaVersion": 1}')


def test_prune_removes_old_unreferenced_and_temp_files(store):
    keep = _model(store, b"keep")
    store.commit(ModelName.parse("k"), keep.to_bytes())
    orphan = store.blobs.write_bytes(b"orphan")
    temp = store.blobs.root / ".tmp-0123abcd"  # no lease names it: only the grace period counts
    temp.write_bytes(b"junk")
    old = time.time() - 7200
    for path in (store.blobs.path(orphan), temp, *(store.blobs.path(d) for d in keep.digests)):
        os.utime(path, (old, old))
    removed = store.prune()
    assert {p.name for p in removed} == {store.blobs.path(orphan).name, temp.name}
    assert all(store.blobs.exists(d) for d in keep.digests)
