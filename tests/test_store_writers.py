"""Writer leases: cleanup removes what dead writers left, never what a live writer holds."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from ollamacli.errors import DiskFullError, InvalidModelNameError, StoreError
from ollamacli.names import ModelName
from ollamacli.store import Digest, Layer, Manifest, Store
from ollamacli.store import writers as leases
from ollamacli.store.blobs import sha256_bytes
from ollamacli.store.failures import os_errors
from ollamacli.store.manifests import CONFIG_MEDIA_TYPE, MEDIA_MODEL


def _commit(store: Store, name: str, model: Digest) -> None:
    config = store.blobs.write_bytes(b"{}")
    manifest = Manifest(
        config=Layer(CONFIG_MEDIA_TYPE, config, 2),
        layers=(Layer(MEDIA_MODEL, model, store.blobs.size(model)),),
    )
    store.commit(ModelName.parse(name), manifest.to_bytes())


def _dead_writer(store: Store, made: list[bytes], temp: bytes = b"") -> list[Digest]:
    """Run a writer in a child process that dies by SIGKILL after moving blobs in (and, with
    `temp`, while writing a temporary file)."""
    script = f"""
import os, signal, sys
from pathlib import Path
from ollamacli.store import Store
store = Store(Path({str(store.root)!r}))
with store.writing():
    for data in {made!r}:
        store.blobs.write_bytes(data)
    if {temp!r}:
        from ollamacli.store import writers
        writers.current(store.blobs.root).temp_path().write_bytes({temp!r})
    os.kill(os.getpid(), signal.SIGKILL)
"""
    process = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True)
    assert process.returncode == -9, process.stderr.decode()
    return [sha256_bytes(data) for data in made]


def _dot_files(store: Store) -> list[str]:
    return sorted(p.name for p in store.blobs.root.iterdir() if p.name.startswith("."))


def test_cleanup_removes_a_dead_writers_temp_files_and_unreferenced_blobs(store: Store):
    kept = store.blobs.write_bytes(b"a model's weights")
    _commit(store, "m", kept)
    dead = _dead_writer(store, [b"orphan", b"a model's weights"], temp=b"half a copy")
    assert len(_dot_files(store)) == 2  # its lease and its temporary file
    assert all(store.blobs.exists(d) for d in dead)

    removed = store.cleanup()

    assert {p.name for p in removed} >= {store.blobs.path(dead[0]).name}
    assert not store.blobs.exists(dead[0])
    assert store.blobs.exists(kept)  # it found that blob there: not its to remove
    assert _dot_files(store) == []


def test_cleanup_spares_what_a_live_writer_made_or_relies_on(store: Store):
    dead = _dead_writer(store, [b"shared", b"orphan"])
    with store.writing():
        lease = leases.current(store.blobs.root)
        assert lease is not None
        relied = store.blobs.write_bytes(b"shared")  # there already: recorded as relied on
        made = store.blobs.write_bytes(b"mine")
        temp = lease.temp_path()
        temp.write_bytes(b"in progress")

        store.cleanup()

        assert store.blobs.exists(relied)
        assert store.blobs.exists(made)
        assert temp.exists()
        assert not store.blobs.exists(dead[1])
        temp.unlink()
    assert _dot_files(store) == []


def test_a_failed_writer_removes_the_blobs_it_made_and_only_those(store: Store):
    shared = store.blobs.write_bytes(b"a model's weights")
    _commit(store, "m", shared)

    def chunks() -> Iterator[bytes]:
        yield b"the next layer"
        raise OSError(errno.ENOSPC, "No space left on device")

    made = sha256_bytes(b"a 98 MB blob, written before the disk filled up")

    def operation() -> None:
        with store.writing():
            store.blobs.write_bytes(b"a 98 MB blob, written before the disk filled up")
            store.blobs.write_bytes(b"a model's weights")
            store.blobs.add_stream(chunks())

    with pytest.raises(DiskFullError):
        operation()

    assert not store.blobs.exists(made)
    assert store.blobs.exists(shared)
    assert _dot_files(store) == []


def test_rm_spares_a_blob_a_live_create_relies_on(store: Store):
    weights = store.blobs.write_bytes(b"weights")
    _commit(store, "old", weights)
    with store.writing():
        assert store.blobs.write_bytes(b"weights") == weights  # a create reusing the layer
        store.delete(ModelName.parse("old"))
        assert store.blobs.exists(weights)
        _commit(store, "new", weights)
    assert [e.name.model for e in store.entries()] == ["new"]


def test_prune_never_removes_a_download_whose_lock_is_held(store: Store):
    store.blobs.root.mkdir(parents=True)
    partial = store.blobs.partial_path(sha256_bytes(b"slow"))
    files = [partial, partial.with_name(partial.name + "-0")]
    for path in files:
        path.write_bytes(b"x")
    old = time.time() - 7200
    lock = partial.with_name(partial.name + ".lock")
    with FileLock(str(lock)):
        for path in files:
            os.utime(path, (old, old))
        os.utime(lock, (old, old))
        assert store.prune() == []
    assert set(store.prune()) == {*files, lock}


def test_a_dead_downloads_part_state_temp_file_is_removed(store: Store):
    store.blobs.root.mkdir(parents=True)
    partial = store.blobs.partial_path(sha256_bytes(b"blob"))
    state = partial.with_name(f".{partial.name}-0.tmp")
    state.write_bytes(b'{"N": 0')
    assert store.cleanup(prune=False) == [state]


def test_a_temporary_file_of_no_known_writer_waits_for_the_grace_period(store: Store):
    store.blobs.root.mkdir(parents=True)
    legacy = store.blobs.root / ".tmp-0123456789abcdef"
    legacy.write_bytes(b"from an older version")
    assert store.cleanup() == []
    old = time.time() - 7200
    os.utime(legacy, (old, old))
    assert store.cleanup() == [legacy]


def test_a_name_too_long_for_the_file_system_is_an_invalid_name():
    def write() -> None:
        with os_errors("cannot write a manifest", where="/models", name="m:latest"):
            raise OSError(errno.ENAMETOOLONG, "File name too long", "/models/x")

    with pytest.raises(InvalidModelNameError, match="too long for the file system"):
        write()


def test_store_os_errors_keep_paths_out_of_the_message(tmp_path: Path):
    def write() -> None:
        with os_errors("cannot write to the model store", where=tmp_path):
            raise OSError(errno.EACCES, "Permission denied", str(tmp_path / "blobs"))

    with pytest.raises(StoreError) as caught:
        write()
    assert caught.value.message == "cannot write to the model store: permission denied"
    assert caught.value.hint is not None
    assert str(tmp_path) in caught.value.hint
