"""One structured log line per request, and the per-request record that metrics read.

`RequestLog` is the outermost middleware. For every HTTP request it opens a `RequestRecord`
(kept in a context variable, so the exception handlers and the streaming code of the same
request can add to it), honours or creates an `X-Request-ID` and returns it on the response,
and at the end writes one line on the `ollamacli.server.access` logger and hands the record to
the metrics. The text line keeps Ollama's `[GIN]` layout and appends `key=value` fields; with
`OLLAMACLI_LOG_FORMAT=json` `JsonFormatter` writes each log record as one JSON object.

Request bodies appear in the log only with `OLLAMA_DEBUG_LOG_REQUESTS` (they hold prompts).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ollamacli.engine.base import TextChunk
from ollamacli.errors import OllamaCliError
from ollamacli.server.errors import message_for
from ollamacli.service.chat import ChatDone, ToolCallsChunk

access_logger = logging.getLogger("ollamacli.server.access")

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}")
_BODY_LIMIT = 1 << 20  # the `model` field is read from bodies up to this size
_LOGGED_BODY_LIMIT = 64 << 10
_ERROR_BODY_LIMIT = 8 << 10
_STATUS_KINDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    499: "client_closed",
    503: "unavailable",
}


@dataclass
class RequestRecord:
    """What one request did, filled in as it runs."""

    request_id: str
    method: str
    path: str
    client: str
    started: float = field(default_factory=time.perf_counter)
    route: str = ""
    status: int = 0
    model: str | None = None
    body: bytes = b""
    body_complete: bool = True
    prompt_eval_count: int = 0
    eval_count: int = 0
    load_duration_ns: int = 0
    prompt_eval_duration_ns: int = 0
    eval_duration_ns: int = 0
    first_token_s: float | None = None  # seconds from the start of the request
    generated: bool = False  # a generation finished (so `model` named a real model)
    duration_s: float = 0.0
    error: str | None = None
    error_kind: str | None = None

    @property
    def failed(self) -> bool:
        """An error response, or an error sent after a stream had started."""
        return self.status >= 400 or self.error_kind is not None

    def kind_of_error(self) -> str:
        """A bounded label for the error: the exception class, or the status's name."""
        if self.error_kind is not None:
            return self.error_kind
        if self.status >= 500:
            return "internal"
        return _STATUS_KINDS.get(self.status, f"http_{self.status}")

    def fields(self, *, with_body: bool = False) -> dict[str, object]:
        """The log line's fields (JSON-ready)."""
        data: dict[str, object] = {
            "request_id": self.request_id,
            "method": self.method,
            "route": self.route,
            "path": self.path,
            "status": self.status,
            "model": self.model,
            "client": self.client,
            "duration_ms": _ms(self.duration_s * 1e9),
            "prompt_eval_count": self.prompt_eval_count,
            "eval_count": self.eval_count,
            "load_duration_ms": _ms(self.load_duration_ns),
            "prompt_eval_duration_ms": _ms(self.prompt_eval_duration_ns),
            "eval_duration_ms": _ms(self.eval_duration_ns),
            "time_to_first_token_ms": (
                None if self.first_token_s is None else _ms(self.first_token_s * 1e9)
            ),
            "error": self.error,
        }
        if with_body:
            data["body"] = self.body[:_LOGGED_BODY_LIMIT].decode("utf-8", "replace")
        return data


def _ms(nanoseconds: float) -> float:
    return round(nanoseconds / 1e6, 3)


_current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "ollamacli_request", default=None
)


def current() -> RequestRecord | None:
    """The record of the request being handled (None outside a request)."""
    return _current.get()


def note_error(exc: BaseException) -> None:
    """Remember why the current request failed (kind = exception class, message as sent)."""
    record = _current.get()
    if record is None:
        return
    if isinstance(exc, OllamaCliError):
        record.error_kind = type(exc).__name__
        record.error = message_for(exc)
    elif isinstance(exc, Exception):
        record.error_kind = "internal"
        record.error = str(exc) or type(exc).__name__


def note_embedding(prompt_eval_count: int, load_duration_ns: int) -> None:
    """Note a finished embedding request: its prompt tokens count like a generation's."""
    record = _current.get()
    if record is None:
        return
    record.generated = True
    record.prompt_eval_count += prompt_eval_count
    record.load_duration_ns += load_duration_ns


def observe(items: Iterable[object]) -> None:
    """Note generation progress for the current request (first token, final statistics)."""
    record = _current.get()
    if record is None:
        return
    for item in items:
        if isinstance(item, (TextChunk, ToolCallsChunk)):
            if record.first_token_s is None:
                record.first_token_s = time.perf_counter() - record.started
        elif isinstance(item, ChatDone):
            record.generated = True
            record.prompt_eval_count += item.prompt_eval_count
            record.eval_count += item.eval_count
            record.load_duration_ns += item.load_duration
            record.prompt_eval_duration_ns += item.prompt_eval_duration
            record.eval_duration_ns += item.eval_duration


def request_id_from(value: str | None) -> str:
    """The client's X-Request-ID when it is a sane token, a fresh one otherwise."""
    if value is not None and _REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _route_of(scope: Scope) -> str:
    """The matched route's template (`/api/blobs/{digest}`), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _model_of(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    model = data.get("model") or data.get("name")
    return model[:200] if isinstance(model, str) and model else None


def _error_text(body: bytes) -> str | None:
    """The message of an Ollama (`{"error": "..."}`) or OpenAI error body."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return error if isinstance(error, str) else None


class RequestObserver(Protocol):
    """What the middleware tells about every request (the metrics)."""

    def started(self) -> None: ...

    def finished(self, record: RequestRecord) -> None: ...


class RequestLog:
    """Outermost middleware: request id, one log line, and the record for the observer."""

    def __init__(
        self, app: ASGIApp, *, observer: RequestObserver | None = None, log_bodies: bool = False
    ) -> None:
        self.app = app
        self.observer = observer
        self.log_bodies = log_bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("-", 0)
        record = RequestRecord(
            request_id=request_id_from(_header(scope, REQUEST_ID_HEADER.encode())),
            method=scope["method"],
            path=scope["path"],
            client=str(client[0]),
        )
        token = _current.set(record)
        if self.observer is not None:
            self.observer.started()
        error_body: list[bytes] = []
        finished = False

        def finish() -> None:
            nonlocal finished
            if not finished:
                finished = True
                self._finish(scope, record, b"".join(error_body))

        try:
            await self.app(
                scope,
                self._teeing(receive, record),
                self._recording(send, record, error_body, finish),
            )
        finally:
            _current.reset(token)
            finish()

    def _teeing(self, receive: Receive, record: RequestRecord) -> Receive:
        """Keep (the start of) the body the app reads, for `model` and debug logging."""

        async def tee() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                if len(record.body) + len(chunk) <= _BODY_LIMIT:
                    record.body += chunk
                else:
                    record.body_complete = False
            return message

        return tee

    @staticmethod
    def _recording(
        send: Send, record: RequestRecord, error_body: list[bytes], finish: Callable[[], None]
    ) -> Send:
        """Add X-Request-ID to the response; note the status and an error response's body.

        The line is written and the metrics updated just before the last piece of the
        response goes out, so a client that has its answer also finds it counted.
        """

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.encode(), record.request_id.encode()),
                ]
            elif message["type"] == "http.response.body":
                if record.status >= 400 and sum(map(len, error_body)) < _ERROR_BODY_LIMIT:
                    error_body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    finish()
            await send(message)

        return recording_send

    def _finish(self, scope: Scope, record: RequestRecord, error_body: bytes) -> None:
        record.duration_s = time.perf_counter() - record.started
        record.status = record.status or 500
        record.route = _route_of(scope)
        if record.body and record.body_complete:
            record.model = _model_of(record.body)
        if record.status >= 400 and record.error is None:
            record.error = _error_text(error_body)
        if self.observer is not None:
            self.observer.finished(record)
        fields = record.fields(with_body=self.log_bodies)
        access_logger.info(text_line(record, fields), extra={"request": fields})


def text_line(record: RequestRecord, fields: dict[str, object]) -> str:
    """Ollama's `[GIN]` line, then the other fields as `key=value`."""
    head = "[GIN] {} | {:3d} | {:>12} | {:>15} | {:<7} {}".format(
        datetime.now().strftime("%Y/%m/%d - %H:%M:%S"),
        record.status,
        _duration(record.duration_s),
        record.client,
        record.method,
        json.dumps(record.path),
    )
    shown = ("request_id", "model", "prompt_eval_count", "eval_count", "error", "body")
    extra = [f"{key}={_logfmt(fields[key])}" for key in shown if fields.get(key) not in (None, 0)]
    return " ".join([head, *extra])


def _logfmt(value: object) -> str:
    text = str(value)
    if text and re.fullmatch(r"[A-Za-z0-9._:/+=-]+", text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3f}ms"
    return f"{seconds:.3f}s"


class JsonFormatter(logging.Formatter):
    """Every log record as one JSON object; a request line carries its fields at top level."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        request = getattr(record, "request", None)
        if isinstance(request, dict):
            data["msg"] = "request"
            data.update(request)
        else:
            data["msg"] = record.getMessage()
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)
