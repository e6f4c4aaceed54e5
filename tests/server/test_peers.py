"""`/api/ps` and `/metrics` for a whole deployment (`serve --ray`): a server adds its peers'
latest reports to its own view. Peers here are plain objects; the Ray board that carries the
reports between replicas is tested in test_cluster_llama.py."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families

from ollamacli.config import Settings
from ollamacli.server.app import create_app, snapshot
from ollamacli.server.peers import Snapshot, families_of, merged_metrics, merged_models
from ollamacli.service import build_services
from tests.fakes import FakeFactory
from tests.server.conftest import add_tiny_model, serve_in_thread
from tests.server.metricstext import samples, value


class _Peers:
    """Other servers that reported these snapshots."""

    def __init__(self, name: str, reports: list[Snapshot]) -> None:
        self._name = name
        self.reports = reports

    @property
    def name(self) -> str:
        return self._name

    async def snapshots(self) -> list[Snapshot]:
        return self.reports


def _model(name: str) -> dict[str, object]:
    return {"name": name, "model": name, "size": 1, "expires_at": "2026-11-30T00:00:00Z"}


def _registry(tokens: float, seconds: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter("ollamacli_generation_tokens", "Tokens.", ["model"], registry=registry)
    counter.labels("m").inc(tokens)
    histogram = Histogram(
        "ollamacli_ttft_seconds", "TTFT.", ["model"], buckets=(0.5, 1), registry=registry
    )
    histogram.labels("m").observe(seconds)
    return registry


def test_the_deployments_ps_lists_each_model_once_own_entries_first() -> None:
    own = [_model("a:latest")]
    peers = [
        Snapshot("r2", (_model("c:latest"), _model("a:latest")), ()),
        Snapshot("r1", (_model("b:latest"),), ()),
    ]
    merged = merged_models(own, peers)
    assert [m["name"] for m in merged] == ["a:latest", "b:latest", "c:latest"]
    assert merged[0] is own[0]  # a model on this server and a peer: this server's row


def test_the_deployments_metrics_label_each_servers_series_with_its_replica() -> None:
    own = Snapshot("r1", (), families_of(_registry(3, 0.2)))
    other = Snapshot("r2", (), families_of(_registry(5, 0.7)))
    text = merged_metrics(own, [other]).decode()
    # one HELP and TYPE per family, whatever the number of servers
    assert text.count("# TYPE ollamacli_generation_tokens_total counter") == 1
    assert text.count("# TYPE ollamacli_ttft_seconds histogram") == 1
    assert value(text, "ollamacli_generation_tokens_total", model="m", replica="r1") == 3
    assert value(text, "ollamacli_generation_tokens_total", model="m", replica="r2") == 5
    assert value(text, "ollamacli_ttft_seconds_bucket", model="m", replica="r1", le="0.5") == 1
    assert value(text, "ollamacli_ttft_seconds_bucket", model="m", replica="r2", le="0.5") == 0
    assert value(text, "ollamacli_ttft_seconds_sum", model="m", replica="r2") == 0.7
    # every sample carries a replica, and nothing else changed: the parser reads it back whole
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {f.type for f in families.values()} >= {"counter", "histogram"}
    assert all("replica" in s.labels for f in families.values() for s in f.samples)


def test_a_server_with_peers_answers_ps_and_metrics_for_all_of_them(
    settings: Settings, tmp_path: Path
) -> None:
    services = build_services(settings, FakeFactory())
    add_tiny_model(services, tmp_path)
    peer = Snapshot("r2", (_model("elsewhere:latest"),), families_of(_registry(7, 0.1)))
    with serve_in_thread(services, _Peers("r1", [peer])) as live, live.client() as client:
        assert client.post("/api/generate", json={"model": "tiny", "prompt": "hi"}).is_success
        ps = client.get("/api/ps").json()["models"]
        text = client.get("/metrics").text
    assert [m["name"] for m in ps] == ["tiny:latest", "elsewhere:latest"]
    assert value(text, "ollamacli_generation_tokens_total", model="m", replica="r2") == 7
    assert value(text, "ollamacli_generation_tokens_total", model="tiny:latest", replica="r1") > 0
    assert value(text, "ollamacli_models_loaded", replica="r1") == 1


def test_a_servers_report_is_its_own_ps_and_metrics(settings: Settings, tmp_path: Path) -> None:
    services = build_services(settings, FakeFactory())
    add_tiny_model(services, tmp_path)
    with serve_in_thread(services) as live, live.client() as client:
        assert client.post("/api/generate", json={"model": "tiny", "prompt": "hi"}).is_success
        ps = client.get("/api/ps").json()["models"]
        report = snapshot(create_app(services), "r1")
    assert report.server == "r1"
    # (the expiry moves when the generation hands its instance back, just after its answer)
    timeless = [{k: v for k, v in m.items() if k != "expires_at"} for m in (*report.models, *ps)]
    assert timeless[:1] == timeless[1:]
    loaded = next(f for f in report.families if f.name == "ollamacli_models_loaded")
    assert loaded.samples == (("ollamacli_models_loaded", (), 1.0),)


def test_a_server_alone_has_no_replica_label(settings: Settings, tmp_path: Path) -> None:
    services = build_services(settings, FakeFactory())
    add_tiny_model(services, tmp_path)
    with serve_in_thread(services) as live, live.client() as client:
        assert client.post("/api/generate", json={"model": "tiny", "prompt": "hi"}).is_success
        text = client.get("/metrics").text
    assert not any("replica" in dict(labels) for _, labels in samples(text))
