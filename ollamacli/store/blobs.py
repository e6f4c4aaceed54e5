"""Content-addressed blobs: `blobs/sha256-<hex>`, written atomically and verified by sha256.

A blob only ever appears under its final name after its bytes were hashed and matched. Writers
stream into a temporary file in the same folder, then rename it into place, so a crash, a full
disk or Ctrl-C leaves at worst a stray temporary file, never a wrong blob. Writes happen under a
writer lease (see `store.writers`), so the next create, pull or rm can tell such a stray file,
or a blob whose manifest was never written, from the files of a writer still at work.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, NewType

from ollamacli.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    InvalidRequestError,
)
from ollamacli.gguffile import open_regular
from ollamacli.store import writers
from ollamacli.store.failures import os_errors
from ollamacli.store.writers import WriterLease

Digest = NewType("Digest", str)
"""Always `sha256:<64 lowercase hex>`."""

_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")
CHUNK = 1 << 20
PARTIAL_SUFFIX = "-partial"
LOCK_NAME = ".ollamacli.lock"
WRITE_FAILED = "cannot write to the model store"

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes handled so far."""


def parse_digest(text: str) -> Digest:
    """Validate `sha256:<hex>` (or the file-name form `sha256-<hex>`)."""
    match = _DIGEST.fullmatch(text.strip())
    if not match:
        raise InvalidRequestError(f"invalid digest format: {text!r}")
    return Digest(f"sha256:{match.group(1).lower()}")


def digest_filename(digest: Digest) -> str:
    """The one conversion from `sha256:<hex>` to the on-disk name `sha256-<hex>`."""
    return digest.replace(":", "-", 1)


def sha256_bytes(data: bytes) -> Digest:
    """The digest of some bytes."""
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


def sha256_file(path: Path, progress: ProgressCallback | None = None) -> Digest:
    """Hash a file in chunks."""
    hasher = hashlib.sha256()
    done = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
            done += len(chunk)
            if progress:
                progress(done)
    return Digest("sha256:" + hasher.hexdigest())


class BlobStore:
    """The `blobs/` folder of a model store."""

    def __init__(self, root: Path) -> None:
        self.root = root / "blobs"
        self.lock_path = root / LOCK_NAME

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock (changes to the set of manifests, blobs entering or leaving).

        Not re-entrant: a second `locked()` in the same thread would wait for itself.
        """
        from filelock import FileLock  # imported here: `list` never locks, and starts faster

        with os_errors("cannot lock the model store", where=self.lock_path.parent):
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.lock_path)):
            yield

    @contextmanager
    def lease(self) -> Iterator[WriterLease]:
        """The current operation's writer lease, or one just for the block."""
        held = writers.current(self.root)
        if held is not None:
            yield held
            return
        with os_errors(WRITE_FAILED, where=self.root):
            lease = writers.acquire(self.root)
        try:
            yield lease
        finally:
            lease.release()

    def path(self, digest: Digest) -> Path:
        """Where a blob lives (whether or not it exists)."""
        return self.root / digest_filename(digest)

    def partial_path(self, digest: Digest) -> Path:
        """Where an in-progress download of a blob is kept between attempts."""
        return self.root / (digest_filename(digest) + PARTIAL_SUFFIX)

    def exists(self, digest: Digest) -> bool:
        """True when the blob is present under its final name."""
        return self.path(digest).is_file()

    def require(self, digest: Digest) -> Path:
        """The blob's path; raises `BlobNotFoundError` when it is missing."""
        path = self.path(digest)
        if not path.is_file():
            raise BlobNotFoundError(digest)
        return path

    def size(self, digest: Digest) -> int:
        """The blob's size in bytes."""
        return self.require(digest).stat().st_size

    def read_bytes(self, digest: Digest) -> bytes:
        """A small blob's content (template, system, params...)."""
        path = self.require(digest)
        with os_errors("cannot read from the model store", where=path):
            return path.read_bytes()

    def write_bytes(self, data: bytes) -> Digest:
        """Store some bytes; returns their digest. Identical content is stored once."""
        digest = sha256_bytes(data)
        if not self.rely(digest):
            self._write_chunks([data], digest)
        return digest

    def rely(self, digest: Digest) -> bool:
        """Note that the current writer uses an existing blob (so cleanup and rm spare it until
        the writer's manifest is written); False when the blob is not there."""
        with self.lease() as lease, self.locked():
            if not self.path(digest).is_file():
                return False
            lease.record(digest, made=False)
        return True

    def import_file(
        self, source: Path, progress: ProgressCallback | None = None
    ) -> tuple[Digest, bool]:
        """Copy a file into the store, hashing as it copies; returns (digest, newly created).

        Only a regular file is read (a named pipe would block forever)."""
        with os_errors(f"cannot read {source}"):
            handle = open_regular(source)
        with handle:
            return self._write_chunks(_chunks(handle), None, progress=progress)

    def add_stream(
        self,
        chunks: Iterable[bytes],
        *,
        expected: Digest | None = None,
        progress: ProgressCallback | None = None,
    ) -> Digest:
        """Store a stream of bytes; with `expected`, refuse (and discard) content that differs."""
        return self._write_chunks(chunks, expected, progress=progress)[0]

    def commit(self, temp: Path, expected: Digest, hashed: Digest | None = None) -> Path:
        """Verify a finished temporary or partial file and move it into place.

        `hashed` is the file's digest when the caller computed it while writing; without it the
        file is hashed now. A mismatch deletes the file and raises `DigestMismatchError`.
        """
        with os_errors(WRITE_FAILED, where=self.root):
            actual = hashed or sha256_file(temp)
            if actual != expected:
                temp.unlink(missing_ok=True)
                raise DigestMismatchError(expected, actual)
            self.place(temp, expected)
        return self.path(expected)

    def place(self, temp: Path, digest: Digest) -> bool:
        """Move a verified file in under its digest; True when the blob is new.

        Under the store lock, the digest is first recorded in the writer's lease, so there is
        no moment when a blob is in place that neither a manifest nor a lease accounts for.
        """
        with self.lease() as lease, self.locked():
            final = self.path(digest)
            created = not final.is_file()
            lease.record(digest, made=created)
            if created:
                temp.replace(final)
                final.chmod(0o644)
            else:
                temp.unlink(missing_ok=True)
        return created

    def verify(self, digest: Digest) -> bool:
        """Re-hash a stored blob and compare with its name."""
        path = self.require(digest)
        with os_errors("cannot read from the model store", where=path):
            return sha256_file(path) == digest

    def delete(self, digest: Digest) -> None:
        """Remove a blob (and any leftover partial download of it)."""
        with os_errors("cannot remove from the model store", where=self.root):
            self.path(digest).unlink(missing_ok=True)
            self.partial_path(digest).unlink(missing_ok=True)

    def digests(self) -> Iterator[Digest]:
        """Every complete blob in the store."""
        with os_errors("cannot list the model store", where=self.root):
            entries = list(self.root.iterdir()) if self.root.is_dir() else []
        for entry in entries:
            match = _DIGEST.fullmatch(entry.name)
            if match and entry.is_file():
                yield Digest(f"sha256:{match.group(1).lower()}")

    def _write_chunks(
        self,
        chunks: Iterable[bytes],
        expected: Digest | None,
        progress: ProgressCallback | None = None,
    ) -> tuple[Digest, bool]:
        with self.lease() as lease:
            temp = lease.temp_path()
            try:
                with os_errors(WRITE_FAILED, where=self.root):
                    actual = _write_file(temp, chunks, progress)
                if expected is not None and actual != expected:
                    raise DigestMismatchError(
                        expected,
                        actual,
                        message=f'digest mismatch, expected "{expected}", got "{actual}"',
                    )
                with os_errors(WRITE_FAILED, where=self.root):
                    return actual, self.place(temp, actual)
            finally:
                with contextlib.suppress(OSError):
                    temp.unlink(missing_ok=True)


def _write_file(path: Path, chunks: Iterable[bytes], progress: ProgressCallback | None) -> Digest:
    """Write the chunks to a new file, hashing them; returns their digest."""
    hasher = hashlib.sha256()
    done = 0
    with path.open("xb") as out:
        for chunk in chunks:
            out.write(chunk)
            hasher.update(chunk)
            done += len(chunk)
            if progress:
                progress(done)
        out.flush()
        os.fsync(out.fileno())
    return Digest("sha256:" + hasher.hexdigest())


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk
