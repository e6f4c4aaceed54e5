"""Downloads in progress on disk: `blobs/sha256-<hex>-partial` and its part files.

The data file is sparse and has the blob's final size; bytes land at their offsets. Each part's
progress is kept next to it in `sha256-<hex>-partial-<N>`, in Ollama's JSON format
`{"N","Offset","Size","Completed"}`, replaced atomically (temp file + rename), so a crash at any
moment leaves either the old or the new state and never claims bytes that were not written.
A finished download enters `blobs/sha256-<hex>` only through `commit_download`, which hashes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from ollamacli.errors import DigestMismatchError, StoreError
from ollamacli.store.blobs import BlobStore, Digest


@dataclass(slots=True)
class Part:
    """One byte range of a blob and how much of it is on disk."""

    n: int
    offset: int
    size: int
    completed: int = 0

    @property
    def done(self) -> bool:
        return self.completed >= self.size

    @property
    def start(self) -> int:
        """The first byte still missing."""
        return self.offset + self.completed

    @property
    def end(self) -> int:
        """The last byte of the part (inclusive, as in a Range header)."""
        return self.offset + self.size - 1

    def to_json(self) -> bytes:
        """Ollama's part file format."""
        body = {"N": self.n, "Offset": self.offset, "Size": self.size, "Completed": self.completed}
        return json.dumps(body).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Part | None:
        """Parse a part file; None when it is unreadable or inconsistent."""
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(body, dict):
            return None
        values = [body.get(key) for key in ("N", "Offset", "Size", "Completed")]
        numbers = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
        if len(numbers) != len(values):
            return None
        n, offset, size, completed = numbers
        if completed > size:
            return None
        return cls(n, offset, size, completed)


def plan_parts(total: int, part_size: int) -> list[Part]:
    """Split `total` bytes into consecutive parts of `part_size` (the last one shorter)."""
    return [
        Part(n, offset, min(part_size, total - offset))
        for n, offset in enumerate(range(0, total, max(1, part_size)))
    ]


def store_error(exc: OSError, path: Path) -> StoreError:
    """The store error for a failed write (`DiskFullError` when the disk is full); the path
    goes into the hint only."""
    return StoreError.from_os_error(
        exc, "cannot write a download into the model store", where=str(path)
    )


class PartialDownload:
    """A blob being downloaded: `sha256-<hex>-partial` plus its `-partial-<N>` part files."""

    def __init__(self, blobs: BlobStore, digest: Digest, total: int = 0) -> None:
        self.path = blobs.partial_path(digest)
        self.total = total

    def part_path(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}-{n}")

    def part_files(self) -> list[Path]:
        prefix = self.path.name + "-"
        if not self.path.parent.is_dir():
            return []
        return [
            entry
            for entry in self.path.parent.iterdir()
            if entry.name.startswith(prefix) and entry.name[len(prefix) :].isdigit()
        ]

    def load(self, part_size: int) -> list[Part]:
        """The saved parts when they describe this blob, else a fresh plan (old state dropped)."""
        parts = self._read_parts()
        if parts is None:
            parts = self.reset(plan_parts(self.total, part_size))
        return parts

    def _read_parts(self) -> list[Part] | None:
        if not self.path.is_file() or self.path.stat().st_size != self.total:
            return None
        parts = [Part.from_json(path.read_bytes()) for path in self.part_files()]
        if not parts or any(part is None for part in parts):
            return None
        ordered = sorted((p for p in parts if p is not None), key=lambda p: p.offset)
        position = 0
        for index, part in enumerate(ordered):
            if part.offset != position or part.n != index or part.size == 0:
                return None
            position += part.size
        return ordered if position == self.total else None

    def reset(self, parts: list[Part]) -> list[Part]:
        """Start over with these parts: a sparse data file of the right size, fresh part files."""
        self.finish()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.path.open("wb") as handle:
                handle.truncate(self.total)
        except OSError as exc:
            raise store_error(exc, self.path) from exc
        for part in parts:
            self.save(part)
        return parts

    def save(self, part: Part) -> None:
        """Record a part's progress atomically (a crash leaves the old or the new state)."""
        path = self.part_path(part.n)
        temp = path.with_name(f".{path.name}.tmp")
        try:
            temp.write_bytes(part.to_json())
            temp.replace(path)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise store_error(exc, path) from exc

    def finish(self) -> None:
        """Remove the part files (the data file stays, to be committed)."""
        for path in self.part_files():
            path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove everything: data and part files."""
        self.finish()
        self.path.unlink(missing_ok=True)


@contextmanager
def blob_lock(blobs: BlobStore, digest: Digest) -> Iterator[None]:
    """Hold the download lock of one blob, so two pulls never write the same partial file."""
    blobs.root.mkdir(parents=True, exist_ok=True)
    partial = blobs.partial_path(digest)
    path = partial.with_name(partial.name + ".lock")
    with FileLock(str(path)):
        yield
        if blobs.exists(digest):
            path.unlink(missing_ok=True)


class PrefixHasher:
    """Hashes a blob while it downloads, so that no second pass over the file is needed.

    A thread follows the contiguous run of written bytes from offset 0 (parts only grow, and
    `Completed` counts written bytes), reading them back from the page cache. Ollama re-reads
    the whole blob after the download instead, which for multi-GB models is the long wait at
    "verifying sha256 digest".
    """

    def __init__(self, fd: int, parts: list[Part], total: int, *, chunk: int = 4 << 20) -> None:
        self._fd = fd
        self._parts = sorted(parts, key=lambda part: part.offset)
        self._total = total
        self._chunk = chunk
        self._sha = hashlib.sha256()
        self._position = 0
        self._failed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="ollamacli-hash", daemon=True)

    def __enter__(self) -> PrefixHasher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _written(self) -> int:
        end = 0
        for part in self._parts:
            end = part.offset + part.completed
            if not part.done:
                break
        return end

    def _catch_up(self) -> None:
        end = self._written()
        while self._position < end and not self._failed:
            try:
                data = os.pread(self._fd, min(self._chunk, end - self._position), self._position)
            except OSError:
                self._failed = True
                return
            if not data:
                self._failed = True
                return
            self._sha.update(data)
            self._position += len(data)

    def _follow(self) -> None:
        while not self._stop.wait(0.05):
            self._catch_up()

    def digest(self) -> Digest | None:
        """The blob's digest once every byte is written (call after leaving the `with`)."""
        self._catch_up()
        if self._failed or self._position != self._total:
            return None
        return Digest("sha256:" + self._sha.hexdigest())


def commit_download(blobs: BlobStore, digest: Digest, hashed: Digest | None = None) -> Path:
    """Verify a finished partial file against its digest and move it into the store.

    `hashed` is the digest computed while downloading (`PrefixHasher`); without it the file is
    hashed now. Raises `DigestMismatchError` (after deleting the bad data) when they differ.
    The blob enters the store through `BlobStore.commit`, so the pull's writer lease records it.
    """
    state = PartialDownload(blobs, digest)
    try:
        path = blobs.commit(state.path, digest, hashed)
    except DigestMismatchError:
        state.discard()
        raise
    state.finish()
    return path
