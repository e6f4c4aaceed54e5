"""Content-addressed blobs: `blobs/sha256-<hex>`, written atomically and verified by sha256.

A blob only ever appears under its final name after its bytes were hashed and matched. Writers
stream into a temporary file in the same folder, then rename it into place, so a crash, a full
disk or Ctrl-C leaves at worst a stray temporary file, never a wrong blob.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NewType

from ollamacli.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    DiskFullError,
    InvalidRequestError,
    StoreError,
)

Digest = NewType("Digest", str)
"""Always `sha256:<64 lowercase hex>`."""

_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")
CHUNK = 1 << 20
TEMP_PREFIX = ".tmp-"
PARTIAL_SUFFIX = "-partial"

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
        return self.require(digest).read_bytes()

    def write_bytes(self, data: bytes) -> Digest:
        """Store some bytes; returns their digest. Identical content is stored once."""
        digest = sha256_bytes(data)
        if not self.exists(digest):
            self._write_chunks([data], digest)
        return digest

    def import_file(
        self, source: Path, progress: ProgressCallback | None = None
    ) -> tuple[Digest, bool]:
        """Copy a file into the store, hashing as it copies; returns (digest, newly created)."""
        try:
            handle = source.open("rb")
        except OSError as exc:
            raise StoreError(f"cannot read {source}: {exc.strerror or exc}") from exc
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

    def commit(self, temp: Path, expected: Digest) -> Path:
        """Verify a finished temporary or partial file and move it into place."""
        actual = sha256_file(temp)
        if actual != expected:
            temp.unlink(missing_ok=True)
            raise DigestMismatchError(expected, actual)
        final = self.path(expected)
        temp.replace(final)
        final.chmod(0o644)
        return final

    def verify(self, digest: Digest) -> bool:
        """Re-hash a stored blob and compare with its name."""
        return sha256_file(self.require(digest)) == digest

    def delete(self, digest: Digest) -> None:
        """Remove a blob (and any leftover partial download of it)."""
        self.path(digest).unlink(missing_ok=True)
        self.partial_path(digest).unlink(missing_ok=True)

    def digests(self) -> Iterator[Digest]:
        """Every complete blob in the store."""
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            match = _DIGEST.fullmatch(entry.name)
            if match and entry.is_file():
                yield Digest(f"sha256:{match.group(1).lower()}")

    def temp_path(self) -> Path:
        """A fresh temporary file name inside the blobs folder (same filesystem as the blobs)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f"{TEMP_PREFIX}{os.urandom(8).hex()}"

    def _write_chunks(
        self,
        chunks: Iterable[bytes],
        expected: Digest | None,
        progress: ProgressCallback | None = None,
    ) -> tuple[Digest, bool]:
        temp = self.temp_path()
        hasher = hashlib.sha256()
        done = 0
        try:
            with temp.open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    hasher.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done)
                out.flush()
                os.fsync(out.fileno())
            actual = Digest("sha256:" + hasher.hexdigest())
            if expected is not None and actual != expected:
                raise DigestMismatchError(
                    expected,
                    actual,
                    message=f'digest mismatch, expected "{expected}", got "{actual}"',
                )
            final = self.path(actual)
            created = not final.exists()
            temp.replace(final)
            final.chmod(0o644)
            return actual, created
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFullError(str(self.root)) from exc
            raise StoreError(f"cannot write into {self.root}: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk
