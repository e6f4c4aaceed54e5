"""Writer leases: how cleanup tells a live writer's files from a dead writer's leftovers.

Every operation that adds blobs (create, pull, a blob upload) holds a lease for as long as it
runs: a file `blobs/.writer-<id>` on which it keeps an exclusive `flock`. Its temporary files
are named `.tmp-<id>-<random>`, and before a blob it adds appears under its final name, the
blob's digest is appended to the lease file (`+ <digest>` for a blob it made, `= <digest>` for
one it found already there and relies on). The kernel drops the `flock` when the process dies,
however it dies (kill -9, the OOM killer), so a lease file that can be locked belongs to a dead
writer: its temporary files and the blobs it made that no manifest references are leftovers.

A writer that ends normally truncates and removes its lease; one that fails first removes the
blobs it made that no manifest references (the catalog does that, see `Store.writing`).

The lock is taken on a file created with O_EXCL, and both sides re-check after locking that
the path still names the locked file, so a cleaner that catches a lease between its creation
and its locking only removes an empty file, and the writer then takes a fresh one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

TEMP_PREFIX = ".tmp-"
WRITER_PREFIX = ".writer-"
_LINE = re.compile(r"([+=]) (sha256:[0-9a-f]{64})")
_current: ContextVar[WriterLease | None] = ContextVar("ollamacli_writer_lease", default=None)


@dataclass(slots=True)
class WriterLease:
    """A live writer's lease (held by this process)."""

    folder: Path
    id: str
    fd: int
    made: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.folder / f"{WRITER_PREFIX}{self.id}"

    def temp_path(self) -> Path:
        """A fresh temporary file name that cleanup leaves alone while this lease lives."""
        return self.folder / f"{TEMP_PREFIX}{self.id}-{os.urandom(6).hex()}"

    def record(self, digest: str, *, made: bool) -> None:
        """Note a blob this writer is adding (`made`) or relying on, before it is in place."""
        os.write(self.fd, f"{'+' if made else '='} {digest}\n".encode())
        if made:
            self.made.append(digest)

    def release(self) -> None:
        """End the lease: empty the file first, so a cleaner that opened it reads nothing."""
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
            self.path.unlink(missing_ok=True)
        os.close(self.fd)


def acquire(folder: Path) -> WriterLease:
    """Take a new lease in `folder` (the blobs folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        lease_id = os.urandom(8).hex()
        path = folder / f"{WRITER_PREFIX}{lease_id}"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(path, flags, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while a cleaner holds the new, empty file
        if _names(fd, path):
            return WriterLease(folder, lease_id, fd)
        os.close(fd)  # a cleaner removed it before we locked it: take another


def current(folder: Path) -> WriterLease | None:
    """The lease this thread's operation holds on `folder`, if any."""
    lease = _current.get()
    return lease if lease is not None and lease.folder == folder else None


@contextlib.contextmanager
def holding(lease: WriterLease) -> Iterator[None]:
    """Make `lease` the current one for blob writes in this context."""
    token = _current.set(lease)
    try:
        yield
    finally:
        _current.reset(token)


@dataclass(frozen=True, slots=True)
class DeadWriter:
    """A lease whose writer is gone, locked by the cleaner until `close`."""

    path: Path
    fd: int
    made: tuple[str, ...]

    @property
    def id(self) -> str:
        return self.path.name[len(WRITER_PREFIX) :]

    def close(self) -> None:
        """Remove the lease file and let go of it."""
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        os.close(self.fd)


def lease_id(name: str) -> str | None:
    """The lease a temporary file belongs to (`.tmp-<id>-<random>`), or None."""
    if not name.startswith(TEMP_PREFIX):
        return None
    head, sep, _ = name[len(TEMP_PREFIX) :].partition("-")
    return head if sep and head else None


def survey(folder: Path) -> tuple[list[DeadWriter], set[str], set[str]]:
    """Dead leases (locked, for the caller to clean and close), live lease ids, and the digests
    live writers have recorded (which cleanup must spare)."""
    dead: list[DeadWriter] = []
    live: set[str] = set()
    spared: set[str] = set()
    for path in folder.glob(f"{WRITER_PREFIX}*"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # removed meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            live.add(path.name[len(WRITER_PREFIX) :])
            spared.update(_digests(_read(fd)))
            os.close(fd)
            continue
        if not _names(fd, path):
            os.close(fd)
            continue
        made = tuple(d for kind, d in _entries(_read(fd)) if kind == "+")
        dead.append(DeadWriter(path, fd, made))
    return dead, live, spared


def recorded(folder: Path) -> set[str]:
    """The digests live writers have recorded (blobs they made or rely on)."""
    found: set[str] = set()
    for path in folder.glob(f"{WRITER_PREFIX}*"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            found.update(_digests(_read(fd)))
        finally:
            os.close(fd)
    return found


def is_locked(path: Path) -> bool:
    """True when some process holds a `flock` on the file (e.g. a download's `FileLock`)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we took
    return False


def _names(fd: int, path: Path) -> bool:
    """True when `path` still names the open file `fd`."""
    try:
        here, there = os.fstat(fd), path.stat()
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read(fd: int) -> str:
    data = b""
    while chunk := os.pread(fd, 1 << 16, len(data)):
        data += chunk
    return data.decode("ascii", errors="replace")


def _entries(text: str) -> Iterator[tuple[str, str]]:
    """(`+` or `=`, digest) per complete line; a line cut short by a crash is skipped."""
    for line in text.splitlines():
        match = _LINE.fullmatch(line)
        if match:
            yield match.group(1), match.group(2)


def _digests(text: str) -> set[str]:
    return {digest for _, digest in _entries(text)}
