"""Carrying one HTTP request to an in-process ASGI app and its response back, as plain values.

`serve --ray` (server/cluster.py) runs the API app inside each model-server replica and relays
requests to it from the ingress: a `RawRequest` goes over Ray, the replica answers with a
`ResponseStart` and then the body's chunks as they are sent. Nothing here imports Ray, so the
relay is tested on its own; the app sees exactly the request the ingress received and answers
exactly what plain `serve` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.types import ASGIApp, Message

from ollamacli.errors import InvalidModelNameError
from ollamacli.names import ModelName
from ollamacli.server.errors import anthropic_body, error_body, ollama_body, openai_body
from ollamacli.server.requestlog import REQUEST_ID_HEADER
from ollamacli.server.streaming import json_line, sse_event

Headers = tuple[tuple[bytes, bytes], ...]

# The routes that load a model: routed by their body's `model` to the replicas that hold it.
# Every other route (tags, show, ps, version, pull, create, ...) reads or writes the shared store
# and can go to any replica.
MODEL_ROUTES = frozenset(
    {
        "/api/generate",
        "/api/chat",
        "/api/embed",
        "/api/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
    }
)


@dataclass(frozen=True, slots=True)
class RawRequest:
    """An HTTP request as the ingress received it (body read in full)."""

    method: str
    path: str
    raw_path: bytes
    query_string: bytes
    headers: Headers
    body: bytes
    client: tuple[str, int] | None = None
    server: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class ResponseStart:
    """A response's status line and headers; its body's chunks follow as `bytes`."""

    status: int
    headers: Headers

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (name in lower case)."""
        return next((value for key, value in self.headers if key.lower() == name), None)


ResponsePart = ResponseStart | bytes


def routed_model(request: RawRequest) -> str | None:
    """The model a request needs loaded, as a canonical name (None: any replica can answer)."""
    if request.method != "POST" or request.path not in MODEL_ROUTES:
        return None
    try:
        body = json.loads(request.body)
    except ValueError:
        return None
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(model, str) or not model:
        return None
    try:
        return str(ModelName.parse(model))
    except InvalidModelNameError:
        return model  # the replica answers with the error plain `serve` gives


def relayed_headers(headers: Headers) -> Headers:
    """The app's response headers without X-Request-ID: Ray Serve's proxy adds that header
    itself (the same id: the proxy put it on the request the app echoed), and twice would be
    once too many."""
    return tuple(
        (key, value) for key, value in headers if key.lower() != REQUEST_ID_HEADER.encode()
    )


def _scope(request: RawRequest) -> dict[str, object]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.raw_path,
        "query_string": request.query_string,
        "root_path": "",
        "headers": list(request.headers),
        "client": request.client,
        "server": request.server,
        "state": {},
    }


async def call_app(app: ASGIApp, request: RawRequest) -> AsyncIterator[ResponsePart]:
    """Run the app on one request; yield its `ResponseStart`, then each non-empty body chunk
    as the app sends it. Closing the iterator early (the client went away) cancels the app's
    work, as a disconnect does under uvicorn."""
    messages: asyncio.Queue[Message | None] = asyncio.Queue()
    body_sent = False
    over = asyncio.Event()

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await over.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await messages.put(message)

    async def run() -> None:
        try:
            await app(_scope(request), receive, send)
        finally:
            await messages.put(None)

    task = asyncio.create_task(run())
    complete = False
    try:
        while (message := await messages.get()) is not None:
            part = _part(message)
            if part:
                yield part
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
                break
    finally:
        over.set()
        if not complete:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # the app's last work (the request log line) ends with the request


def _part(message: Message) -> ResponsePart | None:
    """What an ASGI send message carries for the client (None: nothing)."""
    if message["type"] == "http.response.start":
        headers = tuple((bytes(k), bytes(v)) for k, v in message.get("headers", ()))
        return ResponseStart(int(message["status"]), headers)
    if message["type"] == "http.response.body":
        return bytes(message.get("body", b"")) or None
    return None


def failure_response(path: str, message: str, status: int = 500) -> tuple[ResponseStart, bytes]:
    """A whole error response in the API's own shape (Ollama, OpenAI or Anthropic)."""
    data = error_body(path, message, status)
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()  # as JSONResponse
    headers = (
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
    )
    return ResponseStart(status, headers), body


def failure_chunk(path: str, start: ResponseStart, message: str) -> bytes:
    """The last chunk of a stream that broke after it started, in the stream's own format:
    an `{"error": ...}` NDJSON line, or an SSE error event (nothing for other bodies)."""
    content_type = (start.header(b"content-type") or b"").decode("latin-1")
    if content_type.startswith("application/x-ndjson"):
        return json_line(ollama_body(message))
    if not content_type.startswith("text/event-stream"):
        return b""
    if path == "/v1/messages":
        return sse_event(anthropic_body(message, 500), "error")
    if path == "/v1/responses":
        data: dict[str, object] = {"type": "error", "code": "api_error", "message": message}
        data["param"] = None
        return sse_event(data, "error")
    return sse_event(openai_body(message, 500))
