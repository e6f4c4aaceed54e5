"""Blocking work on a thread, its results on the event loop, and NDJSON / SSE responses.

A generation runs on its own thread (llama.cpp blocks for every token), so the event loop keeps
answering `/`, `/api/tags` and `/api/ps` while models write. `ThreadPump` carries the thread's
items to the loop and watches the connection: when the client goes away it fires the
request's `CancelToken`, and the engine stops at its next token. `EventStream` is the
streaming response: it starts sending once the first item is known (so errors found before
that still get a proper status code) and turns a later error into a last error line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, Protocol, TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ollamacli.engine.base import CancelToken
from ollamacli.errors import OllamaCliError, RequestCancelledError
from ollamacli.progress import ProgressEvent, ProgressSink
from ollamacli.server import requestlog

logger = logging.getLogger(__name__)

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


class _End:
    """Marks the end of a pump's items."""


_END = _End()


def json_line(data: dict[str, object]) -> bytes:
    """One compact NDJSON line, as Go's encoder writes it."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def sse_event(data: dict[str, object] | str, event: str | None = None) -> bytes:
    """One server-sent event carrying JSON (or the literal `[DONE]`), named when `event` is
    given (the Responses and Messages APIs name theirs after the payload's `type`)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


class Rendering(Protocol[T_contra]):
    """How one request's items go out: streamed one by one, or as one whole JSON object."""

    @property
    def media_type(self) -> str:
        """The streamed body's content type."""
        ...

    def encode(self, item: T_contra) -> Iterator[bytes]:
        """The streamed bytes for one item (nothing, or several events)."""
        ...

    def error(self, exc: Exception) -> bytes:
        """The last bytes of a stream that failed after it started."""
        ...

    def trailer(self) -> bytes:
        """What ends a stream that finished (b"" for nothing)."""
        ...

    def whole(self, items: Sequence[T_contra]) -> dict[str, object]:
        """The non-streamed answer, from every item."""
        ...


class ActiveRequests:
    """The cancel tokens of every running generation, so shutdown can stop them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[int, CancelToken] = {}  # by id(): tokens compare by value

    def add(self, token: CancelToken) -> None:
        with self._lock:
            self._tokens[id(token)] = token

    def discard(self, token: CancelToken) -> None:
        with self._lock:
            self._tokens.pop(id(token), None)

    def cancel_all(self) -> None:
        """Ask every running generation to stop (called on SIGINT/SIGTERM)."""
        with self._lock:
            for token in self._tokens.values():
                token.cancel()

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)


Work = Callable[[Callable[[T], None], CancelToken], None]
"""Blocking work: calls `emit(item)` for each result and may watch the CancelToken."""


def iterate(produce: Callable[[CancelToken], Iterable[T]]) -> Work[T]:
    """Work that emits everything an iterator yields."""

    def work(emit: Callable[[T], None], cancel: CancelToken) -> None:
        for item in produce(cancel):
            emit(item)

    return work


def with_progress(run: Callable[[ProgressSink], object]) -> Work[ProgressEvent]:
    """Work that emits the progress events of a long operation (create, pull).

    Once the client is gone the next progress report raises, which aborts the operation the
    way Ollama's request context does.
    """

    def work(emit: Callable[[ProgressEvent], None], cancel: CancelToken) -> None:
        def sink(event: ProgressEvent) -> None:
            if cancel.cancelled:
                raise RequestCancelledError()
            emit(event)

        run(sink)

    return work


class ThreadPump(Generic[T]):
    """Runs blocking work on its own thread and hands what it emits to the event loop."""

    def __init__(self, work: Work[T], receive: Receive, active: ActiveRequests) -> None:
        self.cancel = CancelToken()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[T | BaseException | _End] = asyncio.Queue()
        self._active = active
        self._done = False
        self._error: BaseException | None = None
        active.add(self.cancel)
        self._thread = threading.Thread(
            target=self._run, args=(work,), name="ollamacli-request", daemon=True
        )
        self._thread.start()
        self._watcher = asyncio.ensure_future(self._watch(receive))

    def _run(self, work: Work[T]) -> None:
        try:
            work(self._deliver, self.cancel)
        except Exception as exc:  # noqa: BLE001  (handed to the loop, which reports it)
            self._deliver(exc)
        finally:
            self._active.discard(self.cancel)
            self._deliver(_END)

    def _deliver(self, item: T | BaseException | _End) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server is stopping
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def _watch(self, receive: Receive) -> None:
        """Cancel the work when the client disconnects (the body was already read)."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.cancel.cancel()
                return

    async def next_batch(self) -> list[T]:
        """The next items (at least one), or [] at the end; re-raises the thread's error.

        Items that arrived before an error are returned first; the error comes next call.
        The request's record (log line, metrics) sees every batch and the error.
        """
        try:
            items = await self._next_batch()
        except BaseException as exc:
            requestlog.note_error(exc)
            raise
        requestlog.observe(items)
        return items

    async def _next_batch(self) -> list[T]:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._done:
            return []
        items: list[T] = []
        item = await self._queue.get()
        while True:
            if isinstance(item, (_End, BaseException)):
                self._done = True
                self.stop_watching()
                if isinstance(item, BaseException):
                    if not items:
                        raise item
                    self._error = item
                return items
            items.append(item)
            if self._queue.empty():
                return items
            item = self._queue.get_nowait()

    async def collect(self) -> list[T]:
        """Every item until the end."""
        items: list[T] = []
        while batch := await self.next_batch():
            items.extend(batch)
        return items

    def stop_watching(self) -> None:
        """Stop listening for the disconnect (the response is finished)."""
        self._watcher.cancel()

    def abort(self) -> None:
        """Give up: stop the work and stop listening."""
        self.cancel.cancel()
        self.stop_watching()


class EventStream(Response, Generic[T]):
    """A streaming response fed by a ThreadPump: the rendering's bytes per item, then its
    trailer (or its error, when the work fails after the stream started)."""

    def __init__(self, pump: ThreadPump[T], first: list[T], rendering: Rendering[T]) -> None:
        super().__init__(status_code=200, media_type=rendering.media_type)
        # Response.__init__ declares "content-length: 0" for an empty body; this one streams.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.pump = pump
        self.first = first
        self.rendering = rendering

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        try:
            await self._send_items(send)
        finally:
            self.pump.abort()  # no-op when the work already finished
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_items(self, send: Send) -> None:
        batch = self.first
        while batch:
            body = b"".join(chunk for item in batch for chunk in self.rendering.encode(item))
            if body:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            try:
                batch = await self.pump.next_batch()
            except Exception as exc:
                if not isinstance(exc, OllamaCliError):
                    logger.exception("error while streaming a response")
                error = self.rendering.error(exc)
                await send({"type": "http.response.body", "body": error, "more_body": True})
                return
        trailer = self.rendering.trailer()
        if trailer:
            await send({"type": "http.response.body", "body": trailer, "more_body": True})
