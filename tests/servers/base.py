"""The plumbing shared by the local test servers: a threaded HTTP/1.1 server on 127.0.0.1 and a
file sender that honours `Range` and can misbehave on purpose (`Faults`).

Everything here is real HTTP over real sockets, so the code under test runs exactly as it does
against a remote registry; only the other end is ours.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
CHUNK = 64 * 1024


@dataclass
class Faults:
    """Misbehaviour injected into file (blob) responses. Counters go down as faults fire."""

    fail_500: int = 0
    """The next N file requests answer 500."""
    drop_after: int | None = None
    """Close the connection after sending this many body bytes of a response..."""
    drops: int = 0
    """...for the next N responses."""
    rate: float | None = None
    """Bytes per second per response (a slow body)."""
    stall: float = 0.0
    """Pause this long after the headers, before any body byte..."""
    stalls: int = 0
    """...for the next N responses."""
    corrupt: set[str] = field(default_factory=set)
    """Digests served with their last byte flipped (a wrong digest)."""
    ignore_range: bool = False
    """Answer 200 with the whole file even when Range is sent."""
    range_probe_only: bool = False
    """Honour Range for a 1-byte probe only, then send whole files (a server changing its mind)."""
    refuse: bool = False
    """Answer every file request with 500 (a registry that is down for good)."""
    manifest_500: int = 0
    """The next N manifest requests answer 500."""


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    port: int


class LocalServer:
    """A `ThreadingHTTPServer` on a free 127.0.0.1 port, served from a daemon thread."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.app = app
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.app = app  # type: ignore[attr-defined]  # read back by _Handler
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients pool connections as with real servers

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):  # a client that went away
            super().handle()

    def _dispatch(self) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            self.server.app.handle(self)  # type: ignore[attr-defined]

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _dispatch


class ServerApp:
    """Base of the registry and hub apps: request log, byte counters and the file sender."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.requests: list[RequestRecord] = []
        self.served: Counter[str] = Counter()
        """Body bytes of files sent, per digest (what a client downloaded, retries included)."""
        self._lock = threading.Lock()
        self.active = 0
        """File bodies being sent right now."""

    def record(self, handler: BaseHTTPRequestHandler) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        port = int(handler.server.server_address[1])  # type: ignore[index]  # an (host, port) pair
        with self._lock:
            self.requests.append(RequestRecord(handler.command, handler.path, headers, port))

    def take_fault(self, name: str) -> bool:
        """Consume one unit of a counted fault; True when it fires."""
        with self._lock:
            left = getattr(self.faults, name)
            if left > 0:
                setattr(self.faults, name, left - 1)
                return True
        return False

    def send_json(
        self, handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", headers.pop("content_type", "application/json"))
        handler.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            handler.send_header(key.replace("_", "-"), value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def send_file(
        self, handler: BaseHTTPRequestHandler, path: Path, digest: str, **headers: str
    ) -> None:
        """Send a file (or the requested byte range of it), applying the faults."""
        if self.faults.refuse or self.take_fault("fail_500"):
            self.send_json(handler, 500, b'{"errors":[{"code":"UNKNOWN"}]}')
            return
        total = path.stat().st_size
        start, end = 0, total - 1
        match = _RANGE.fullmatch(handler.headers.get("Range", "").strip())
        ranged = match is not None and not self.faults.ignore_range
        if ranged and self.faults.range_probe_only and match is not None:
            ranged = match.groups() == ("0", "0")
        if match and ranged:
            first, last = match.groups()
            start = int(first) if first else max(0, total - int(last))
            end = min(int(last), total - 1) if first and last else total - 1
            if start >= total:
                self.send_json(handler, 416, b"", Content_Range=f"bytes */{total}")
                return
        length = max(0, end - start + 1)
        handler.send_response(206 if ranged else 200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(length))
        handler.send_header("Accept-Ranges", "bytes")
        if ranged:
            handler.send_header("Content-Range", f"bytes {start}-{end}/{total}")
        for key, value in headers.items():
            handler.send_header(key.replace("_", "-"), value)
        handler.end_headers()
        if handler.command == "HEAD":
            return
        with self._lock:
            self.active += 1
        try:
            self._send_body(handler, path, digest, start, length, total)
        finally:
            with self._lock:
                self.active -= 1

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no file body is being sent (e.g. to a client that was just killed)."""
        deadline = time.monotonic() + timeout
        while self.active and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not self.active, "the server is still sending"

    def _send_body(
        self,
        handler: BaseHTTPRequestHandler,
        path: Path,
        digest: str,
        start: int,
        length: int,
        total: int,
    ) -> None:
        faults = self.faults
        probe = length <= 1  # a client's `Range: bytes=0-0` probe: faults are for real bodies
        drop = (
            faults.drop_after
            if faults.drop_after is not None and not probe and self.take_fault("drops")
            else None
        )
        stall = faults.stall if faults.stall and not probe and self.take_fault("stalls") else 0.0
        plain = drop is None and not stall and faults.rate is None and digest not in faults.corrupt
        with path.open("rb") as handle:
            if plain:  # the fast path: zero-copy, like a real server (for the benchmark)
                sent = handler.connection.sendfile(handle, start, length)
                self._count(digest, sent)
                return
            self._send_slowly(handler, handle, digest, start, length, total, drop, stall)

    def _send_slowly(
        self,
        handler: BaseHTTPRequestHandler,
        handle: Any,
        digest: str,
        start: int,
        length: int,
        total: int,
        drop: int | None,
        stall: float,
    ) -> None:
        handle.seek(start)
        sent = 0
        if stall:
            handler.wfile.flush()
            time.sleep(stall)
        began = time.monotonic()
        while sent < length:
            chunk = bytearray(handle.read(min(CHUNK, length - sent)))
            if drop is not None and sent + len(chunk) > drop:
                chunk = chunk[: max(0, drop - sent)]
            if digest in self.faults.corrupt and start + sent <= total - 1 < start + sent + len(
                chunk
            ):
                chunk[total - 1 - start - sent] ^= 0xFF
            handler.wfile.write(chunk)
            handler.wfile.flush()
            sent += len(chunk)
            self._count(digest, len(chunk))
            if drop is not None and sent >= drop:
                handler.close_connection = True
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RDWR)
                return
            if self.faults.rate:
                ahead = sent / self.faults.rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)

    def _count(self, digest: str, size: int) -> None:
        with self._lock:
            self.served[digest] += size


def sha256_path(path: Path) -> str:
    """`sha256:<hex>` of a file."""
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def write_blob(folder: Path, data: bytes) -> tuple[str, Path]:
    """Store bytes under their digest in a folder; returns (digest, path)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / digest.replace(":", "-")
    if not path.exists():
        temp = path.with_suffix(f".tmp{os.getpid()}")
        temp.write_bytes(data)
        temp.replace(path)
    return digest, path
