"""`serve --ray`: the same API from a Ray Serve application, on one machine or a Ray cluster.

Two deployments. `ModelServer` replicas each run the whole API app in-process, with their own
scheduler and engine, on the shared model store (`OLLAMA_MODELS` that every node can read).
`Ingress` takes HTTP from Serve's proxy, reads the request's `model` and forwards the raw request
through a `DeploymentHandle` with `multiplexed_model_id=model`: Serve's model multiplexing sends
it to a replica that already holds that model. The response streams back chunk by chunk; a
replica that dies mid-request fails only its own requests, with an error in the API's shape, and
Serve starts a new one. `/api/ps` and `/metrics` answer for every replica: each replica publishes
its loaded models and metric families to a `Board` actor every second (and after each request),
and the replica that takes such a request adds the others' latest reports to its own.

The only module that imports Ray; the CLI imports it only for `serve --ray`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ray
from ray import serve
from ray.exceptions import GetTimeoutError, RayActorError, RayError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ollamacli import __version__
from ollamacli.config import Settings
from ollamacli.errors import ClusterError, OllamaCliError
from ollamacli.names import ModelName
from ollamacli.server.app import bind, create_app, snapshot, startup_warnings
from ollamacli.server.peers import Snapshot
from ollamacli.server.relay import (
    Headers,
    RawRequest,
    ResponsePart,
    ResponseStart,
    call_app,
    failure_chunk,
    failure_response,
    relayed_headers,
    routed_model,
)
from ollamacli.server.requestlog import REQUEST_ID_HEADER

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle

    from ollamacli.service import Services

logger = logging.getLogger(__name__)

APP_NAME = "ollamacli"
# A request naming this header gets `<replica id> pid=<pid>` back in it (which replica served it:
# for operators and the tests; off by default, so responses stay those of plain `serve`).
REPLICA_HEADER = b"x-ollamacli-replica"
_RETRIES = 2  # a request a dead replica never started goes to another one, this many times
BOARD_NAME = "ollamacli-board"
_PUBLISH_S = 1.0  # a replica reports its models and metrics this often (and after each request)
_STALE_S = 15.0  # a replica silent this long is gone (killed): its report is dropped
_ASK_S = 5.0  # how long a replica waits for the board before answering for itself alone
REPLICA_FAILED = "model server replica stopped while serving this request; try again"
_NO_REPLICA = "no model server replica is available; try again"
# How the deployments' processes run (benchmarks/bench_ray.py measured the first two).
# Serve runs user code on a second event loop (and the router on a third): two cross-thread
# hand-offs per streamed chunk; our code never blocks its loop (the engine runs in threads), so
# both run on the replica's own loop. Ray starts workers at nice 15, below its daemons; these
# are the server, at normal priority like plain `serve` (on a busy machine nice 15 starved the
# decode: a single stream ran at ~0.8x of plain `serve`, ~0.9-1.0x without). And the router
# asks a replica for its queue length before sending it a request, giving up after 0.1 s and
# trying a replica without the model; on a busy machine that moved models around, and loading
# a model elsewhere costs far more than waiting a little longer for the answer.
_REPLICA_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_worker_niceness": "0",
    "RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S": "1.0",
}


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """How `serve --ray` runs: replica count (None: autoscaled) and the cluster to join."""

    replicas: int | None = 1
    max_replicas: int = 4
    address: str | None = None  # None: start a local Ray instance

    def deployment_options(self, settings: Settings) -> dict[str, object]:
        """Serve options of the model-server deployment."""
        scaling: dict[str, object]
        if self.replicas is None:
            # Serve autoscales on ongoing requests (running + queued) per replica.
            scaling = {
                "autoscaling_config": {
                    "min_replicas": 1,
                    "max_replicas": self.max_replicas,
                    "target_ongoing_requests": settings.num_parallel,
                    "upscale_delay_s": 5,
                    "downscale_delay_s": 120,
                }
            }
        else:
            scaling = {"num_replicas": self.replicas}
        return {
            **scaling,
            # A few more than run at once, so a replica's scheduler queues no more than that and
            # Serve spreads (or autoscales) the rest.
            "max_ongoing_requests": 2 * settings.num_parallel + 2,
            "ray_actor_options": {"num_cpus": 1, "runtime_env": {"env_vars": _REPLICA_ENV}},
            "health_check_period_s": 2,
            "graceful_shutdown_timeout_s": 10,
        }


class Board:
    """A Ray actor holding each replica's latest `Snapshot`, for `/api/ps` and `/metrics`."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[float, Snapshot]] = {}

    def publish(self, report: Snapshot) -> None:
        """A replica's report (the board's clock times it: nodes' clocks may differ)."""
        self.latest[report.server] = (time.monotonic(), report)

    def forget(self, server: str) -> None:
        """A replica that stops."""
        self.latest.pop(server, None)

    def others(self, server: str) -> list[Snapshot]:
        """Every other live replica's latest report."""
        now = time.monotonic()
        for gone in [name for name, (at, _) in self.latest.items() if now - at > _STALE_S]:
            del self.latest[gone]
        return [report for name, (_, report) in self.latest.items() if name != server]


class _BoardPeers:
    """The other replicas, as a replica's app sees them (`server.peers.Peers`)."""

    def __init__(self, board: ray.actor.ActorHandle, name: str) -> None:
        self.board = board
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def snapshots(self) -> list[Snapshot]:
        try:
            reports: list[Snapshot] = await asyncio.wait_for(
                self.board.others.remote(self._name), _ASK_S
            )
        except (RayError, TimeoutError) as exc:
            logger.warning("the other replicas' reports are unavailable: %s", exc)
            return []
        return reports


class _Publisher:
    """A replica's thread that sends its report to the board every `_PUBLISH_S` seconds and
    soon after each request, so another replica's `/api/ps` sees a model once it is loaded."""

    def __init__(self, board: ray.actor.ActorHandle, report: Callable[[], Snapshot]) -> None:
        self.board = board
        self.report = report
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ollamacli-report", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                ray.get(self.board.publish.remote(self.report()), timeout=_ASK_S)
            except (RayError, GetTimeoutError, OllamaCliError, OSError) as exc:
                logger.debug("report to the board failed: %s", exc)
            self.wake.wait(_PUBLISH_S)
            self.wake.clear()

    def stop(self, server: str) -> None:
        self.stopping.set()
        self.wake.set()
        with contextlib.suppress(RayError):
            self.board.forget.remote(server)


def _board() -> ray.actor.ActorHandle | None:
    """The driver's board, or None (a replica then answers `/api/ps` for itself alone)."""
    try:
        return ray.get_actor(BOARD_NAME, namespace=APP_NAME)
    except ValueError:
        return None


class ModelServer:
    """A replica: the API app with its own services, answering relayed requests."""

    def __init__(self, prepare: Callable[[], Services], max_models: int) -> None:
        self.services = prepare()
        context = serve.get_replica_context()
        self.name = context.replica_id.unique_id
        self.replica = f"{self.name} pid={os.getpid()}".encode()
        board = _board()
        peers = None if board is None else _BoardPeers(board, self.name)
        self.app = create_app(self.services, peers)
        self.services.scheduler.start()  # what the app's lifespan does under uvicorn
        self.publisher: _Publisher | None = None
        if board is not None:
            self.publisher = _Publisher(board, lambda: snapshot(self.app, self.name))

        async def resident(model: str) -> str:
            # The scheduler loads the model on its first request (with that request's options);
            # this only tells Serve which models this replica holds, so it routes by them.
            return model

        self.resident = serve.multiplexed(max_num_models_per_replica=max_models)(resident)

    async def handle(self, request: RawRequest) -> AsyncIterator[ResponsePart]:
        """Answer one request: its `ResponseStart`, then its body's chunks."""
        model = serve.get_multiplexed_model_id()
        if model and await asyncio.to_thread(self._in_store, model):
            await self.resident(model)
        tagged = any(key.lower() == REPLICA_HEADER for key, _ in request.headers)
        try:
            async for part in call_app(self.app, request):
                if tagged and isinstance(part, ResponseStart):
                    headers = (*part.headers, (REPLICA_HEADER, self.replica))
                    part = ResponseStart(part.status, headers)
                yield part
        finally:
            if self.publisher is not None:
                self.publisher.wake.set()  # a model may have loaded or unloaded: report it

    def _in_store(self, model: str) -> bool:
        """Whether the model exists: a name that does not is never routed by (its 404 comes
        from any replica, and it takes no place among a replica's models)."""
        try:
            self.services.store.resolve(ModelName.parse(model))
        except OllamaCliError:
            return False
        return True

    def __del__(self) -> None:
        """Serve stops the replica: cancel its generations, unload its models."""
        if self.publisher is not None:
            self.publisher.stop(self.name)
        self.app.state.active.cancel_all()
        self.services.scheduler.close()


class _Relay(Response):
    """The ingress's response: the replica's status, headers and body chunks, sent as they
    come; a replica that dies is retried before anything was sent, reported after."""

    def __init__(self, servers: DeploymentHandle, request: RawRequest) -> None:
        super().__init__()
        self.servers = servers
        self.request = request

    def _stream(self) -> AsyncIterator[ResponsePart]:
        model = routed_model(self.request)
        options: dict[str, object] = {"stream": True}
        if model is not None:
            options["multiplexed_model_id"] = model
        generator: AsyncIterator[ResponsePart] = self.servers.options(**options).handle.remote(
            self.request
        )
        return generator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = self.request.path
        start: ResponseStart | None = None
        for attempt in range(_RETRIES + 1):
            try:
                async for part in self._stream():
                    if isinstance(part, ResponseStart):
                        start = part
                        await send(_start_message(part.status, relayed_headers(part.headers)))
                    else:
                        await send({"type": "http.response.body", "body": part, "more_body": True})
                break
            except RayActorError as exc:
                logger.warning("%s %s: replica failed: %s", self.request.method, path, exc)
                if start is None and attempt < _RETRIES:
                    await asyncio.sleep(0.5)
                    continue
                await self._fail(send, start, REPLICA_FAILED)
                return
            except Exception as exc:  # noqa: BLE001  (Serve's own errors, e.g. no replica: answer, never hang)
                logger.error("%s %s: %s", self.request.method, path, exc)
                await self._fail(send, start, REPLICA_FAILED if start else _NO_REPLICA)
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _fail(self, send: Send, start: ResponseStart | None, message: str) -> None:
        if start is None:
            start, body = failure_response(self.request.path, message)
            await send(_start_message(start.status, start.headers))
        else:
            body = failure_chunk(self.request.path, start, message)
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _start_message(status: int, headers: Headers) -> dict[str, object]:
    return {"type": "http.response.start", "status": status, "headers": list(headers)}


class Ingress:
    """Serve's HTTP entry: reads the request and relays it to a model-server replica."""

    def __init__(self, servers: DeploymentHandle) -> None:
        self.servers = servers

    async def __call__(self, request: Request) -> Response:
        scope = request.scope
        raw = RawRequest(
            method=request.method,
            path=scope["path"],
            raw_path=scope.get("raw_path") or scope["path"].encode(),
            query_string=scope.get("query_string", b""),
            headers=_with_request_id(tuple((bytes(k), bytes(v)) for k, v in scope["headers"])),
            body=await request.body(),
            client=_address(scope.get("client")),
            server=_address(scope.get("server")),
        )
        return _Relay(self.servers, raw)


def _with_request_id(headers: Headers) -> Headers:
    """The request's headers with the id Serve's proxy gave it (and puts on the response), so
    the replica's request log and the response name the same id."""
    if any(key.lower() == REQUEST_ID_HEADER.encode() for key, _ in headers):
        return headers
    # Serve keeps the proxy's id in its request context (private, hence the pinned version).
    request_id = ray.serve.context._get_serve_request_context().request_id
    return (*headers, (REQUEST_ID_HEADER.encode(), request_id.encode())) if request_id else headers


def _address(value: object) -> tuple[str, int] | None:
    """An ASGI (host, port) pair (a list after Serve's serialisation), or None."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return str(value[0]), int(value[1])
    return None


def application(
    prepare: Callable[[], Services], settings: Settings, options: ClusterOptions
) -> serve.Application:
    """The Serve application: an ingress bound to the model-server deployment."""
    servers = serve.deployment(
        ModelServer, name="ModelServer", **options.deployment_options(settings)
    )
    ingress = serve.deployment(
        Ingress,
        name="Ingress",
        num_replicas=1,
        max_ongoing_requests=10_000,  # it only relays; the model servers bound the work
        ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": _REPLICA_ENV}},
    )
    return ingress.bind(servers.bind(prepare, settings.max_loaded_models))


def _connect(settings: Settings, options: ClusterOptions) -> None:
    """Join the cluster, or start a local instance (raises `ClusterError`)."""
    try:
        _init(settings, options)
    except (ConnectionError, RuntimeError, ValueError) as exc:  # what ray.init raises
        raise ClusterError(options.address, str(exc).splitlines()[0] or type(exc).__name__) from exc


def _init(settings: Settings, options: ClusterOptions) -> None:
    if options.address is not None:
        ray.init(address=options.address, namespace=APP_NAME, log_to_driver=True)
        return
    # A local instance: small, no dashboard; logical CPUs enough for every replica.
    cpus = max(os.cpu_count() or 1, (options.replicas or options.max_replicas) + 1)
    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        object_store_memory=128 << 20,
        namespace=APP_NAME,
        logging_level=logging.DEBUG if settings.debug else logging.WARNING,
        # every worker at normal priority, Serve's proxy and controller too (see _REPLICA_ENV)
        _system_config={"worker_niceness": 0},
    )


def run(prepare: Callable[[], Services], settings: Settings, options: ClusterOptions) -> None:
    """Run the API on Ray Serve until SIGINT/SIGTERM (blocks)."""
    for warning in startup_warnings(settings):
        logger.warning(warning)
    if options.address is None:
        bind(settings.host).close()  # fail fast, before starting Ray, when the port is taken
    _connect(settings, options)
    stop = threading.Event()
    handled = (signal.SIGINT, signal.SIGTERM)
    original = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in handled}
    try:
        # the replicas' reports for /api/ps and /metrics; this process owns it, so it ends with it
        # (held until the end: Ray ends an actor that no handle refers to, named or not)
        board = (
            ray.remote(num_cpus=0)(Board)
            .options(name=BOARD_NAME, namespace=APP_NAME, get_if_exists=True)
            .remote()
        )
        serve.start(http_options={"host": settings.host.host, "port": settings.host.port})
        serve.run(
            application(prepare, settings, options), name=APP_NAME, route_prefix="/", blocking=False
        )
        logger.info(
            "Listening on %s:%d (version %s, Ray Serve, %s)",
            settings.host.host,
            settings.host.port,
            __version__,
            "autoscaled replicas" if options.replicas is None else f"{options.replicas} replica(s)",
        )
        while not stop.wait(1):
            pass
        ray.kill(board)
    finally:
        for sig, handler in original.items():
            signal.signal(sig, handler)
        try:
            serve.delete(APP_NAME)
            if options.address is None:
                serve.shutdown()
        finally:
            ray.shutdown()
