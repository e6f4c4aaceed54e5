"""Resumable downloads: part planning, on-disk part state, and the Downloader over real HTTP."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from ollamacli.errors import DigestMismatchError, DownloadError
from ollamacli.registry.ollama import new_client
from ollamacli.registry.partial import (
    Part,
    PartialDownload,
    PrefixHasher,
    commit_download,
    plan_parts,
)
from ollamacli.registry.policy import TransferOptions
from ollamacli.registry.transfer import Downloader
from ollamacli.store import Store, parse_digest
from ollamacli.store.blobs import sha256_bytes
from tests.registry.conftest import FAST
from tests.servers.registry import RegistryServer


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (1, 8_000_000),
        (200_000_000, 12_500_000),
        (800_000_000, 50_000_000),
        (40_000_000_000, 100_000_000),
    ],
    ids=["tiny", "200MB", "800MB", "40GB"],
)
def test_part_size_is_a_sixteenth_clamped_to_8_and_100_mb(total, expected):
    assert TransferOptions().part_size(total) == expected


def test_plan_parts_covers_every_byte_once():
    parts = plan_parts(10, 4)
    assert [(p.n, p.offset, p.size) for p in parts] == [(0, 0, 4), (1, 4, 4), (2, 8, 2)]
    assert plan_parts(0, 4) == []


def test_part_json_is_ollamas_format_and_round_trips():
    part = Part(3, 300, 100, 42)
    assert json.loads(part.to_json()) == {"N": 3, "Offset": 300, "Size": 100, "Completed": 42}
    assert Part.from_json(part.to_json()) == part
    assert Part.from_json(b'{"N": 0, "Offset": 0, "Size": 5, "Completed": 9}') is None
    assert Part.from_json(b"not json") is None
    assert Part.from_json(b'{"N": 0, "Offset": 0, "Size": true, "Completed": 0}') is None


def test_partial_download_reloads_saved_parts(store: Store):
    digest = sha256_bytes(b"x" * 10)
    state = PartialDownload(store.blobs, digest, 10)
    parts = state.load(4)
    parts[1].completed = 3
    state.save(parts[1])

    again = PartialDownload(store.blobs, digest, 10).load(4)

    assert [(p.offset, p.size, p.completed) for p in again] == [(0, 4, 0), (4, 4, 3), (8, 2, 0)]
    assert state.path.stat().st_size == 10
    assert sorted(p.name for p in state.part_files()) == [
        state.path.name + "-0",
        state.path.name + "-1",
        state.path.name + "-2",
    ]


@pytest.mark.parametrize(
    "damage",
    ["missing-part", "bad-json", "wrong-size-data", "gap"],
)
def test_partial_download_starts_over_when_state_is_inconsistent(store: Store, damage: str):
    digest = sha256_bytes(b"y" * 10)
    state = PartialDownload(store.blobs, digest, 10)
    parts = state.load(4)
    for part in parts:
        part.completed = part.size
        state.save(part)
    if damage == "missing-part":
        state.part_path(1).unlink()
    elif damage == "bad-json":
        state.part_path(2).write_text("{")
    elif damage == "wrong-size-data":
        state.path.write_bytes(b"short")
    else:
        state.part_path(1).write_bytes(Part(1, 5, 4, 4).to_json())

    fresh = PartialDownload(store.blobs, digest, 10).load(4)

    assert all(part.completed == 0 for part in fresh)


def test_commit_download_rejects_wrong_bytes_and_removes_them(store: Store):
    digest = sha256_bytes(b"right")
    state = PartialDownload(store.blobs, digest, 5)
    state.load(5)
    state.path.write_bytes(b"wrong")

    with pytest.raises(DigestMismatchError) as caught:
        commit_download(store.blobs, digest)

    assert caught.value.expected == digest
    assert caught.value.actual == sha256_bytes(b"wrong")
    assert not state.path.exists()
    assert state.part_files() == []
    assert not store.blobs.exists(digest)


def _download(registry: RegistryServer, store: Store, data: bytes, options=FAST) -> list[int]:
    served, size = registry.app.add_blob(data)
    digest = parse_digest(served)
    seen: list[int] = []
    with new_client(options) as client:
        Downloader(client, store.blobs, options).download(
            registry.blob_url(digest), digest, size, seen.append
        )
    commit_download(store.blobs, digest)
    assert store.blobs.read_bytes(digest) == data
    return seen


def test_downloader_fetches_parts_in_parallel_ranges(registry: RegistryServer, store: Store):
    data = os.urandom(500_000)
    seen = _download(registry, store, data)
    ranges = [r.headers["range"] for r in registry.app.requests if "range" in r.headers]
    assert ranges[:2] == ["bytes=0-0", "bytes=0-0"]  # the probes (httpx, then http.client)
    assert len(ranges) == 2 + len(plan_parts(len(data), FAST.part_size(len(data))))
    assert seen[0] == 0
    assert seen[-1] == len(data)


def test_downloader_restarts_as_one_stream_when_parts_get_whole_files(
    registry: RegistryServer, store: Store
):
    registry.app.faults.range_probe_only = True  # the probe says yes, the parts get 200
    _download(registry, store, os.urandom(300_000))


def test_downloader_small_blob_is_one_request(registry: RegistryServer, store: Store):
    _download(registry, store, b"small blob")
    assert len(registry.app.requests) == 1


def test_downloader_gives_up_after_retries_with_download_error(
    registry: RegistryServer, store: Store
):
    registry.app.faults.refuse = True
    options = replace(FAST, retries=2)
    with pytest.raises(DownloadError) as caught:
        _download(registry, store, os.urandom(300_000), options)
    assert "500" in str(caught.value)
    assert len(registry.app.requests) == 3  # the probe, retried twice


def test_downloader_reports_404_without_retrying(registry: RegistryServer, store: Store):
    digest = sha256_bytes(b"nowhere")
    with new_client(FAST) as client, pytest.raises(DownloadError, match="404"):
        Downloader(client, store.blobs, FAST).download(
            registry.blob_url(digest), digest, 7, lambda _: None
        )
    assert len(registry.app.requests) == 1


def test_downloader_resumes_only_missing_bytes(
    registry: RegistryServer, store: Store, tmp_path: Path
):
    data = os.urandom(400_000)
    served, size = registry.app.add_blob(data)
    digest = parse_digest(served)
    state = PartialDownload(store.blobs, digest, size)
    parts = state.load(FAST.part_size(size))
    with state.path.open("r+b") as handle:  # as if an earlier pull got the first two parts
        for part in parts[:2]:
            handle.seek(part.offset)
            handle.write(data[part.offset : part.offset + part.size])
            part.completed = part.size
            state.save(part)
    already = sum(p.size for p in parts[:2])

    with new_client(FAST) as client:
        Downloader(client, store.blobs, FAST).download(
            registry.blob_url(digest), digest, size, lambda _: None
        )
    commit_download(store.blobs, digest)

    assert registry.app.served[digest] == size - already + 2  # + two 1-byte probes
    assert store.blobs.read_bytes(digest) == data


def test_downloader_uses_httpx_for_parts_when_only_a_proxy_reaches_the_server(
    registry: RegistryServer, store: Store
):
    data = os.urandom(300_000)
    served, size = registry.app.add_blob(data)
    digest = parse_digest(served)
    with socket.socket() as sock:  # a port nothing listens on: only the proxy gets through
        sock.bind(("127.0.0.1", 0))
        unreachable = f"http://127.0.0.1:{sock.getsockname()[1]}/v2/library/tiny/blobs/{digest}"

    with httpx.Client(proxy=registry.url, timeout=FAST.timeout()) as client:
        Downloader(client, store.blobs, FAST).download(unreachable, digest, size, lambda _: None)
    commit_download(store.blobs, digest)

    assert store.blobs.read_bytes(digest) == data
    parts = [r for r in registry.app.requests if r.headers.get("range", "bytes=0-0") != "bytes=0-0"]
    assert len(parts) == len(plan_parts(size, FAST.part_size(size)))


def test_prefix_hasher_follows_written_parts_in_any_order(store: Store):
    data = os.urandom(10_000)
    digest = sha256_bytes(data)
    state = PartialDownload(store.blobs, digest, len(data))
    parts = state.load(3_000)
    fd = os.open(state.path, os.O_RDWR)
    try:
        with PrefixHasher(fd, parts, len(data), chunk=1_000) as hasher:
            for part in reversed(parts):  # the last part first: nothing to hash until part 0
                os.pwrite(fd, data[part.offset : part.offset + part.size], part.offset)
                part.completed = part.size
        assert hasher.digest() == digest
        parts[1].completed = 10  # a part not finished: no digest
        with PrefixHasher(fd, parts, len(data)) as unfinished:
            pass
        assert unfinished.digest() is None
    finally:
        os.close(fd)


@pytest.mark.parametrize("correct", [True, False], ids=["intact", "damaged"])
def test_download_finished_by_an_earlier_run_is_hashed_at_commit(
    registry: RegistryServer, store: Store, correct: bool
):
    data = os.urandom(200_000)
    served, size = registry.app.add_blob(data)
    digest = parse_digest(served)
    state = PartialDownload(store.blobs, digest, size)
    for part in state.load(FAST.part_size(size)):
        part.completed = part.size
        state.save(part)
    state.path.write_bytes(data if correct else data[::-1])

    with new_client(FAST) as client:
        done = Downloader(client, store.blobs, FAST).download(
            registry.blob_url(digest), digest, size, lambda _: None
        )

    assert done.sha256 is None  # nothing was downloaded, so nothing was hashed on the way
    assert registry.app.requests == []
    if correct:
        assert commit_download(store.blobs, digest, done.sha256).read_bytes() == data
    else:
        with pytest.raises(DigestMismatchError):
            commit_download(store.blobs, digest, done.sha256)
        assert not state.path.exists()
