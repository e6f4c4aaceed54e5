"""`GET /metrics`: Prometheus metrics of the API server (text exposition format).

Each app has its own `CollectorRegistry`, so several apps in one process (tests) keep separate
counts. Request counters and histograms are updated once per request from its `RequestRecord`;
per-model gauges (loaded models, their size, requests running and waiting) are read from the
scheduler at scrape time, so they can never drift. Label values are bounded: route templates,
not paths; model names only for models that exist (a generation finished, or the scheduler
holds them); error kinds are exception class names or status names.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.responses import Response

from ollamacli.errors import InvalidModelNameError
from ollamacli.names import ModelName
from ollamacli.scheduler import Scheduler
from ollamacli.server.peers import Snapshot, families_of, merged_metrics
from ollamacli.server.requestlog import RequestRecord
from ollamacli.server.state import peers_of

PREFIX = "ollamacli"
# The classic text format every Prometheus understands (our names need no UTF-8 escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 20, 40, 80)
_TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5)
_LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

router = APIRouter()


class _SchedulerCollector(Collector):
    """Per-model gauges read from the scheduler when Prometheus scrapes."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterator[Metric]:
        loaded = self.scheduler.ps()
        queued = self.scheduler.queued()
        count = GaugeMetricFamily(f"{PREFIX}_models_loaded", "Models resident in memory.")
        count.add_metric([], len(loaded))
        memory = GaugeMetricFamily(
            f"{PREFIX}_model_memory_bytes",
            "Size of a loaded model, as `ps` reports it (its weights and other layers).",
            labels=["model"],
        )
        running = GaugeMetricFamily(
            f"{PREFIX}_model_requests_in_flight",
            "Requests holding an instance of the model right now.",
            labels=["model"],
        )
        waiting = GaugeMetricFamily(
            f"{PREFIX}_model_requests_queued",
            "Requests waiting in the scheduler's queue for the model.",
            labels=["model"],
        )
        for info in loaded:
            memory.add_metric([info.name], info.size)
            running.add_metric([info.name], info.busy)
        for name in sorted({*queued, *(info.name for info in loaded)}):
            waiting.add_metric([name], queued.get(name, 0))
        yield from (count, memory, running, waiting)


class Metrics:
    """The server's metrics, in a registry of their own."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response (streams included).",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_http_requests_in_flight",
            "HTTP requests being handled.",
            registry=registry,
        )
        self.prompt_tokens = Counter(
            f"{PREFIX}_prompt_tokens",
            "Prompt tokens evaluated.",
            ["model"],
            registry=registry,
        )
        self.generation_tokens = Counter(
            f"{PREFIX}_generation_tokens",
            "Tokens generated.",
            ["model"],
            registry=registry,
        )
        self.ttft = Histogram(
            f"{PREFIX}_time_to_first_token_seconds",
            "Time from a request's arrival to its first generated token (or tool call).",
            ["model"],
            buckets=_TTFT_BUCKETS,
            registry=registry,
        )
        self.tpot = Histogram(
            f"{PREFIX}_time_per_output_token_seconds",
            "Decode time per generated token (eval_duration / eval_count), one per request.",
            ["model"],
            buckets=_TPOT_BUCKETS,
            registry=registry,
        )
        self.load_seconds = Histogram(
            f"{PREFIX}_model_load_duration_seconds",
            "Time to load a model instance into memory.",
            ["model"],
            buckets=_LOAD_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            f"{PREFIX}_errors",
            "Failed requests by kind (exception class or status name), mid-stream errors included.",
            ["kind"],
            registry=registry,
        )
        registry.register(_SchedulerCollector(scheduler))

    def started(self) -> None:
        """A request arrived."""
        self.in_flight.inc()

    def finished(self, record: RequestRecord) -> None:
        """A request ended: count it, and what it generated."""
        self.in_flight.dec()
        self.requests.labels(record.method, record.route, str(record.status)).inc()
        self.request_seconds.labels(record.route).observe(record.duration_s)
        if record.failed:
            self.errors.labels(record.kind_of_error()).inc()
        model = _model_label(record)
        if model is None:
            return
        self.prompt_tokens.labels(model).inc(record.prompt_eval_count)
        self.generation_tokens.labels(model).inc(record.eval_count)
        if record.first_token_s is not None:
            self.ttft.labels(model).observe(record.first_token_s)
        if record.eval_count > 0:
            self.tpot.labels(model).observe(record.eval_duration_ns / record.eval_count / 1e9)

    def model_loaded(self, name: str, seconds: float) -> None:
        """The scheduler loaded a model instance (called on the loading thread)."""
        self.load_seconds.labels(name).observe(seconds)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)


def _model_label(record: RequestRecord) -> str | None:
    """The model's canonical short name, only once a generation finished (so it exists)."""
    if not record.generated or record.model is None:
        return None
    try:
        return ModelName.parse(record.model).short
    except InvalidModelNameError:
        return None


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus scrape endpoint (behind OLLAMACLI_API_KEY like every route)."""
    registry = request.app.state.metrics
    if not isinstance(registry, Metrics):
        raise TypeError("create the app with create_app(services)")
    others = peers_of(request)
    if others is None:
        return Response(registry.render(), media_type=CONTENT_TYPE)
    # serve --ray: every replica's series, told apart by a `replica` label
    own = Snapshot(others.name, (), families_of(registry.registry))
    return Response(merged_metrics(own, await others.snapshots()), media_type=CONTENT_TYPE)
