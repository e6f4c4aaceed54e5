"""The FastAPI application (`create_app`) and the uvicorn server that runs it (`serve`).

Start-up: prune stale blobs (unless OLLAMA_NOPRUNE), start the scheduler's keep-alive reaper,
listen. SIGINT/SIGTERM: cancel running generations, finish the responses, unload every model.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from types import FrameType

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from ollamacli import __version__
from ollamacli.config import HostAddress, Settings
from ollamacli.errors import OllamaCliError, ServeError
from ollamacli.server import (
    embeddings,
    messages,
    metrics,
    ollama_routes,
    openai_routes,
    requestlog,
    responses,
)
from ollamacli.server.errors import error_body, message_for, status_for
from ollamacli.server.middleware import ApiKey, BodyLimit, CatchAll, Cors, HostGuard
from ollamacli.server.peers import Peers, Snapshot, families_of
from ollamacli.server.streaming import ActiveRequests
from ollamacli.service import Services

logger = logging.getLogger(__name__)


def _error(request: Request, message: str, status: int) -> Response:
    return JSONResponse(error_body(request.url.path, message, status), status_code=status)


async def _known_error(request: Request, exc: Exception) -> Response:
    requestlog.note_error(exc)
    status = status_for(exc)
    if status >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc)
    return _error(request, message_for(exc), status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = "404 page not found" if exc.status_code == 404 else str(exc.detail).lower()
    return _error(request, message, exc.status_code)


async def _validation_error(request: Request, exc: Exception) -> Response:
    return _error(request, f"invalid request: {exc}", 400)


def create_app(services: Services, peers: Peers | None = None) -> FastAPI:
    """The API application for these services, with its middleware and error handlers; `peers`
    are the other servers `/api/ps` and `/metrics` answer for too (`serve --ray`'s replicas)."""
    settings = services.settings
    active = ActiveRequests()
    observed = metrics.Metrics(services.scheduler)
    forget_loads = services.scheduler.add_load_listener(observed.model_loaded)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        services.scheduler.start()
        try:
            yield
        finally:
            active.cancel_all()
            forget_loads()
            await run_in_threadpool(services.scheduler.close)

    app = FastAPI(
        title="ollamacli",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.active = active
    app.state.metrics = observed
    app.state.peers = peers
    app.include_router(ollama_routes.router)
    app.include_router(openai_routes.router)
    app.include_router(embeddings.router)
    app.include_router(metrics.router)
    app.include_router(responses.router)
    app.include_router(messages.router)
    app.add_exception_handler(OllamaCliError, _known_error)
    app.add_exception_handler(OSError, _known_error)  # one line, no path (see server.errors)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # add_middleware wraps: the last added is the outermost.
    app.add_middleware(BodyLimit, limit=settings.max_body_size)
    app.add_middleware(ApiKey, key=settings.api_key)
    app.add_middleware(Cors, origins=settings.origins)
    app.add_middleware(HostGuard, enabled=settings.host.is_loopback)
    app.add_middleware(CatchAll)
    app.add_middleware(requestlog.RequestLog, observer=observed, log_bodies=settings.log_requests)
    return app


def snapshot(app: FastAPI, server: str) -> Snapshot:
    """What this app's server tells its peers under `serve --ray`: its loaded models and metric
    families (reads the store: call it off the event loop)."""
    observed = app.state.metrics
    if not isinstance(observed, metrics.Metrics):
        raise TypeError("create the app with create_app(services)")
    models = ollama_routes.loaded_models(app.state.services)
    return Snapshot(server, tuple(models), families_of(observed.registry))


def startup_warnings(settings: Settings) -> list[str]:
    """What `serve` should warn about before it starts listening."""
    warnings = []
    if not settings.host.is_loopback and not settings.api_key:
        warnings.append(
            f"listening on {settings.host.host}:{settings.host.port} without OLLAMACLI_API_KEY: "
            "anyone who can reach this address can use the API and delete models"
        )
    if settings.log_requests:
        warnings.append(
            "OLLAMA_DEBUG_LOG_REQUESTS is set: request bodies (prompts included) are written "
            "to the request log"
        )
    return warnings


def bind(address: HostAddress) -> socket.socket:
    """A listening socket for the address (raises `ServeError`, e.g. when the port is taken)."""
    where = f"{address.host}:{address.port}"
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            address.host or None, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ServeError(where, exc.strerror or str(exc)) from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ServeError(where, exc.strerror or str(exc)) from exc
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server that also stops running generations on SIGINT/SIGTERM."""

    def __init__(self, config: uvicorn.Config, active: ActiveRequests) -> None:
        super().__init__(config)
        self.active = active

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.active.cancel_all()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Handle SIGINT/SIGTERM as a clean stop (exit status 0, as `ollama serve`).

        uvicorn re-raises the captured signal after shutting down, which would end the process
        with -SIGTERM or a KeyboardInterrupt; a finished graceful shutdown is a success here.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def serve(services: Services, sock: socket.socket | None = None) -> None:
    """Run the API server until SIGINT/SIGTERM (blocks)."""
    settings = services.settings
    for warning in startup_warnings(settings):
        logger.warning(warning)
    if not settings.noprune:
        removed = services.store.prune()
        logger.info("pruned %d unused blob(s)", len(removed))
    sock = sock or bind(settings.host)
    app = create_app(services)
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="debug" if settings.debug else "info",
        access_log=False,
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    server = _Server(config, app.state.active)
    logger.info(
        "Listening on %s:%d (version %s)", settings.host.host, settings.host.port, __version__
    )
    server.run(sockets=[sock])
