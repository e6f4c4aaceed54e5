"""`ollamacli serve --ray` on a local Ray instance with 2 model-server replicas and the real
bundled SmolLM2 (under a second name too): routing by model, streaming through the ingress, the
same bytes as plain `serve`, and a replica killed mid-stream.

One Serve application for the whole module (Ray and Serve take ~20 s to start on 2 cores).
Skipped only when Ray is not installed (the `cluster` extra).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest

from ollamacli.config import Settings
from ollamacli.service import build_services
from tests.server.conftest import LiveServer, serve_in_thread
from tests.server.metricstext import value
from tests.server.raycluster import (
    BASE,
    LONG,
    MARKS,
    REPLICA,
    SECOND,
    Cluster,
    generate_body,
    make_store,
    replica_of,
    replicas_in,
    running_cluster,
)

pytestmark = MARKS


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_store(tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="module")
def cluster(store: Settings) -> Iterator[Cluster]:
    with running_cluster(store, "--replicas", "2") as running:
        yield running


@pytest.fixture(scope="module")
def plain(store: Settings) -> Iterator[LiveServer]:
    with serve_in_thread(build_services(store)) as live:
        yield live


def _served_by(cluster: Cluster, model: str) -> tuple[str, int]:
    with cluster.client() as client:
        response = client.post(
            "/api/generate", json=generate_body(model, 2, stream=False), headers={REPLICA: "1"}
        )
    assert response.status_code == 200, response.text
    return replica_of(response)


def test_two_replicas_serve_two_models_concurrently_each_on_its_own_replica(
    cluster: Cluster,
) -> None:
    first = _served_by(cluster, BASE)  # loads BASE on one replica; SECOND then goes to the other
    second = _served_by(cluster, SECOND)
    assert first[0] != second[0]
    results: list[tuple[str, tuple[str, int], dict[str, Any]]] = []

    def ask(model: str) -> None:
        with cluster.client() as client:
            response = client.post(
                "/api/generate", json=generate_body(model, 4, stream=False), headers={REPLICA: "1"}
            )
        assert response.status_code == 200, response.text
        results.append((model, replica_of(response), response.json()))

    threads = [threading.Thread(target=ask, args=(m,)) for m in (BASE, SECOND, BASE, SECOND)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 4
    for model, replica, body in results:
        assert replica == (first if model == BASE else second)  # the model stayed where it loaded
        assert body["done"] is True
        assert body["eval_count"] == 4
    # /api/ps answers for the deployment, whichever replica takes it: both models, once each
    seen: dict[str, list[str]] = {}
    with cluster.client() as client:
        for _ in range(40):  # /api/ps goes to any replica: ask until both answered
            response = client.get("/api/ps", headers={REPLICA: "1"})
            seen[replica_of(response)[0]] = sorted(m["name"] for m in response.json()["models"])
            if len(seen) == 2:
                break
    assert seen == {first[0]: [SECOND, BASE], second[0]: [SECOND, BASE]}
    # as the `ollama` client (and so `ollamacli ps`) reads it
    with ollama.Client(host=cluster.url) as official:
        listed = official.ps().models
    assert sorted(m.model or "" for m in listed) == [SECOND, BASE]
    # /metrics too: each replica's series under its own `replica` label
    with cluster.client() as client:
        text = client.get("/metrics").text
    assert value(text, "ollamacli_models_loaded", replica=first[0]) == 1
    assert value(text, "ollamacli_models_loaded", replica=second[0]) == 1
    assert value(text, "ollamacli_model_memory_bytes", model=BASE, replica=first[0]) > 0
    assert value(text, "ollamacli_model_memory_bytes", model=SECOND, replica=first[0]) == 0
    # 2 + 4 + 4 tokens of BASE, all on its replica (and what other tests asked before, if any)
    assert value(text, "ollamacli_generation_tokens_total", model=BASE, replica=first[0]) >= 10
    assert value(text, "ollamacli_generation_tokens_total", model=BASE, replica=second[0]) == 0


def test_streaming_passes_through_the_ingress_chunk_by_chunk(
    cluster: Cluster, plain: LiveServer
) -> None:
    body = generate_body(BASE, 24, stream=True)
    arrivals: list[tuple[float, dict[str, Any]]] = []
    with (
        cluster.client() as client,
        client.stream("POST", "/api/generate", json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        for line in response.iter_lines():
            arrivals.append((time.monotonic(), json.loads(line)))
    lines = [line for _, line in arrivals]
    assert lines[-1]["done"] is True
    assert lines[-1]["eval_count"] == 24
    assert len(lines) > 10  # one line per token (the tokenizer may merge a few)
    # the first token arrived well before the end: it was streamed, not buffered
    assert arrivals[-1][0] - arrivals[0][0] > 0.1
    with plain.client() as client:
        direct = client.post("/api/generate", json=body)
    expected = [json.loads(line) for line in direct.text.splitlines()]
    assert [list(line) for line in lines[:-1]] == [list(expected[0])] * (len(lines) - 1)
    # the same final fields in the same order (load_duration only where a load happened)
    assert [k for k in lines[-1] if k != "load_duration"] == [
        k for k in expected[-1] if k != "load_duration"
    ]


# Headers uvicorn adds on its own: the date, and Serve's proxy keeps uvicorn's `server` header.
_UVICORN = {"date", "server"}


def _same_bytes(ray: httpx.Response, direct: httpx.Response) -> None:
    assert ray.status_code == direct.status_code
    assert ray.content == direct.content
    theirs = [(k, v) for k, v in direct.headers.multi_items() if k not in _UVICORN]
    ours = [(k, v) for k, v in ray.headers.multi_items() if k not in _UVICORN]
    assert ours == theirs


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/tags", None),
        ("POST", "/api/show", {"model": SECOND}),
        ("HEAD", "/", None),
        ("GET", "/api/version", None),
        ("POST", "/api/chat", {"model": "no-such-model", "messages": []}),
        ("POST", "/v1/chat/completions", {"model": "no-such-model", "messages": []}),
        ("GET", "/no/such/route", None),
    ],
    ids=["tags", "show", "head", "version", "missing-model", "openai-missing", "unknown-route"],
)
def test_the_same_bytes_as_plain_serve(
    cluster: Cluster, plain: LiveServer, method: str, path: str, body: object
) -> None:
    headers = {"X-Request-ID": "compare-1"}
    with cluster.client() as ray, plain.client() as direct:
        one = ray.request(method, path, json=body, headers=headers)
        other = direct.request(method, path, json=body, headers=headers)
    _same_bytes(one, other)


def test_a_constrained_generation_is_the_same_as_plain_serve(
    cluster: Cluster, plain: LiveServer
) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    body = {**generate_body(SECOND, 12, stream=False), "format": schema, "prompt": "Pick a number."}
    with cluster.client() as ray, plain.client() as direct:
        first = ray.post("/api/generate", json=body), direct.post("/api/generate", json=body)
        # asked again, both reuse their whole cached prompt: the statistics agree too
        one, other = ray.post("/api/generate", json=body), direct.post("/api/generate", json=body)
    assert [r.status_code for r in (*first, one, other)] == [200] * 4
    assert first[0].json()["response"] == first[1].json()["response"]
    timing = {"created_at", "total_duration", "load_duration"}
    timing |= {"prompt_eval_duration", "eval_duration"}
    ours, theirs = one.json(), other.json()
    assert list(ours) == list(theirs)  # the same fields in the same order
    assert {k: v for k, v in ours.items() if k not in timing} == {
        k: v for k, v in theirs.items() if k not in timing
    }
    assert one.headers["content-type"] == other.headers["content-type"]


def test_a_client_that_goes_away_stops_its_generation_on_thereplica_of(cluster: Cluster) -> None:
    # at least 400 numbers (>= 800 tokens): half a minute of decoding unless the disconnect
    # stops it; the replica's request log line (relayed to `serve --ray`'s output) is written
    # when the request ends
    body = {**generate_body(BASE, 1500, stream=True), "format": {**LONG, "minItems": 400}}
    headers = {"X-Request-ID": "leaves-early-1"}
    with (
        cluster.client() as client,
        client.stream("POST", "/api/generate", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        assert json.loads(next(lines))["done"] is False
        assert json.loads(next(lines))["done"] is False
        time.sleep(1)
        assert "request_id=leaves-early-1" not in cluster.log.read_text()  # still generating
    closed = time.monotonic()
    while "request_id=leaves-early-1" not in cluster.log.read_text():
        assert time.monotonic() - closed < 10, "the generation went on after the client left"
        time.sleep(0.2)


def test_a_killed_replica_fails_only_its_own_requests_and_ray_replaces_it(
    cluster: Cluster,
) -> None:
    victim = _served_by(cluster, BASE)
    survivor = _served_by(cluster, SECOND)
    assert victim[0] != survivor[0]
    outcomes: dict[str, list[dict[str, Any]]] = {}
    first_line = threading.Event()

    def stream(model: str) -> None:
        lines: list[dict[str, Any]] = []
        body = generate_body(model, 160, stream=True)
        with (
            cluster.client(timeout=60) as client,
            client.stream("POST", "/api/generate", json=body) as response,
        ):
            assert response.status_code == 200
            for line in response.iter_lines():
                lines.append(json.loads(line))
                if model == BASE:
                    first_line.set()
        outcomes[model] = lines

    threads = [threading.Thread(target=stream, args=(m,)) for m in (BASE, SECOND)]
    for thread in threads:
        thread.start()
    assert first_line.wait(60)
    os.kill(victim[1], signal.SIGKILL)
    for thread in threads:
        thread.join(90)
    # the killed replica's stream ends with a clean error line (no hang, no cut-off JSON)
    killed = outcomes[BASE]
    assert killed[-1] == {
        "error": "model server replica stopped while serving this request; try again"
    }
    assert not any(line.get("done") for line in killed)
    # the other replica's stream is whole
    assert outcomes[SECOND][-1]["done"] is True
    assert outcomes[SECOND][-1]["eval_count"] == 160
    # a later request for the same model succeeds, and Serve starts a replica in place of the dead one
    assert _served_by(cluster, BASE)[1] != victim[1]
    deadline = time.monotonic() + 60
    replicas: set[str] = set()
    with cluster.client() as client:
        while len(replicas - {victim[0], survivor[0]}) == 0:
            assert time.monotonic() < deadline, f"no new replica: {replicas}"
            replicas.add(replica_of(client.get("/api/ps", headers={REPLICA: "1"}))[0])
            time.sleep(0.2)
        # the dead replica's report leaves /metrics (a report is dropped after 15 s of silence)
        while victim[0] in replicas_in(text := client.get("/metrics").text):
            assert time.monotonic() < deadline, "the killed replica still reports"
            time.sleep(0.5)
    assert value(text, "ollamacli_models_loaded", replica=survivor[0]) >= 1


_OPTIONS = """
import json
from ollamacli.config import Settings
from ollamacli.server.cluster import ClusterOptions
settings = Settings(num_parallel=3)
fixed = ClusterOptions(replicas=2).deployment_options(settings)
auto = ClusterOptions(replicas=None, max_replicas=5).deployment_options(settings)
print(json.dumps([fixed, auto]))
"""


def test_replica_options_fixed_or_autoscaled_on_ongoing_requests() -> None:
    # in a child process: importing Ray Serve here would stay for the rest of the session
    result = subprocess.run(
        [sys.executable, "-c", _OPTIONS], capture_output=True, text=True, timeout=120, check=True
    )
    fixed, auto = json.loads(result.stdout)
    assert fixed["num_replicas"] == 2
    assert "autoscaling_config" not in fixed
    assert "num_replicas" not in auto
    scaling = auto["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"]) == (1, 5)
    assert scaling["target_ongoing_requests"] == 3  # a replica's share: what runs at once
    assert auto["max_ongoing_requests"] == fixed["max_ongoing_requests"] == 8
    assert fixed["ray_actor_options"]["runtime_env"]["env_vars"]["RAY_worker_niceness"] == "0"
