"""Pure ASGI middleware: error catch-all, DNS-rebinding guard, CORS, API key, body limit.

They are plain ASGI wrappers (not Starlette's BaseHTTPMiddleware) so streaming responses and
disconnect detection pass through untouched. Order, outermost first: the request log
(server/requestlog.py), the catch-all, Host check, CORS, API key, body
size limit; so a browser's preflight is
answered before the key is asked for, and every refusal is logged.
"""

from __future__ import annotations

import fnmatch
import hmac
import ipaddress
import json
import logging
import socket
from collections.abc import Iterable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ollamacli.errors import RequestTooLargeError
from ollamacli.server import errors
from ollamacli.server.errors import INTERNAL_ERROR, message_for

logger = logging.getLogger(__name__)

# Ollama's defaults (server/routes.go GenerateRoutes, envconfig.AllowedOrigins).
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0")
DEFAULT_ORIGINS: tuple[str, ...] = (
    *(
        f"{scheme}://{host}{port}"
        for host in _LOCAL_HOSTS
        for scheme in ("http", "https")
        for port in ("", ":*")
    ),
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
    # gin-contrib/cors AllowBrowserExtensions
    "chrome-extension://*",
    "safari-extension://*",
    "moz-extension://*",
    "ms-browser-extension://*",
)
ALLOWED_HEADERS = (
    "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, OpenAI-Beta, "
    "x-stainless-arch, x-stainless-async, x-stainless-custom-poll-interval, "
    "x-stainless-helper-method, x-stainless-lang, x-stainless-os, x-stainless-package-version, "
    "x-stainless-poll-helper, x-stainless-retry-count, x-stainless-runtime, "
    "x-stainless-runtime-version, x-stainless-timeout, "
    # Anthropic's SDK (its browser mode included) for /v1/messages
    "x-api-key, anthropic-version, anthropic-beta, anthropic-dangerous-direct-browser-access"
)
ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal")


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (latin-1 decoded), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def send_json(
    send: Send, status: int, body: dict[str, object], extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """A complete small JSON response."""
    data = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(data)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


def error_body(scope: Scope, message: str, status: int) -> dict[str, object]:
    """The error shape of the API the request is for (Ollama's, OpenAI's, Anthropic's)."""
    return errors.error_body(str(scope.get("path", "")), message, status)


class CatchAll:
    """Turns a bug into a logged 500 `{"error": ...}` and keeps the connection usable.

    It sits inside the access log and outside everything else, so Starlette's outermost
    error middleware never sees the exception and uvicorn does not drop the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            logger.debug("client left during %s %s", scope.get("method"), scope.get("path"))
        except Exception:
            logger.exception("%s %s crashed", scope.get("method"), scope.get("path"))
            if not started:
                await send_json(send, 500, error_body(scope, INTERNAL_ERROR, 500))


def is_local_host(host_header: str) -> bool:
    """Ollama's allowedHostsMiddleware test: loopback/private IPs and local names pass."""
    host = _strip_port(host_header.strip()).lower()
    if not host or host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return address.is_loopback or address.is_private or address.is_unspecified
    if host == socket.gethostname().lower():
        return True
    return host.endswith(_LOCAL_SUFFIXES)


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


class HostGuard:
    """DNS-rebinding protection: when bound to loopback, refuse foreign Host headers (403)."""

    def __init__(self, app: ASGIApp, *, enabled: bool) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.enabled:
            host = header(scope, b"host") or ""
            if not is_local_host(host):
                await send_json(send, 403, error_body(scope, f"host {host!r} is not allowed", 403))
                return
        await self.app(scope, receive, send)


def origin_allowed(origin: str, patterns: Iterable[str]) -> bool:
    """True when an Origin matches one of the allowed patterns (`*` wildcards)."""
    return any(fnmatch.fnmatchcase(origin, pattern) for pattern in patterns)


class Cors:
    """CORS with Ollama's defaults plus OLLAMA_ORIGINS; a disallowed Origin gets 403."""

    def __init__(self, app: ASGIApp, *, origins: Iterable[str]) -> None:
        self.app = app
        self.patterns = (*DEFAULT_ORIGINS, *origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = header(scope, b"origin") if scope["type"] == "http" else None
        if origin is None or _same_origin(scope, origin):
            await self.app(scope, receive, send)
            return
        if not origin_allowed(origin, self.patterns):
            await send_json(send, 403, error_body(scope, f"origin {origin!r} is not allowed", 403))
            return
        cors = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"vary", b"Origin"),
        ]
        if scope["method"] == "OPTIONS" and header(scope, b"access-control-request-method"):
            await _preflight(send, cors)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *cors]
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _same_origin(scope: Scope, origin: str) -> bool:
    host = header(scope, b"host")
    return host is not None and origin in (f"http://{host}", f"https://{host}")


async def _preflight(send: Send, cors: list[tuple[bytes, bytes]]) -> None:
    headers = [
        *cors,
        (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
        (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
        (b"access-control-max-age", b"43200"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class ApiKey:
    """With OLLAMACLI_API_KEY set, every request needs `Authorization: Bearer <key>` (401).

    `x-api-key: <key>` counts the same: it is how Anthropic's clients send their key.
    """

    def __init__(self, app: ASGIApp, *, key: str | None) -> None:
        self.app = app
        self.key = key.encode() if key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.key is not None and not self._authorized(scope):
            await send_json(
                send,
                401,
                error_body(scope, "unauthorized: missing or wrong API key", 401),
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        return any(self._matches(token) for token in _offered_keys(scope))

    def _matches(self, token: str) -> bool:
        assert self.key is not None
        return hmac.compare_digest(token.strip().encode("latin-1", "replace"), self.key)


def _offered_keys(scope: Scope) -> list[str]:
    """The keys a request offers: a Bearer token and/or an `x-api-key` header."""
    keys = []
    scheme, _, token = (header(scope, b"authorization") or "").partition(" ")
    if scheme.lower() == "bearer":
        keys.append(token)
    api_key = header(scope, b"x-api-key")
    if api_key is not None:
        keys.append(api_key)
    return keys


class BodyLimit:
    """Refuses request bodies over `limit` bytes with 413, before they are read whole.

    A declared Content-Length over the limit is answered at once; a chunked body is counted as
    it arrives, and the read that crosses the limit raises `RequestTooLargeError`, which the
    app answers in the route's error shape. Blob uploads stream to disk and are not limited.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or self.limit <= 0 or path.startswith("/api/blobs/"):
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            error = RequestTooLargeError(self.limit)
            await send_json(send, 413, error_body(scope, message_for(error), 413))
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise RequestTooLargeError(self.limit)
            return message

        await self.app(scope, counting_receive, send)
