"""`ollamacli serve --ray --replicas auto` on a local Ray instance and the real bundled model:
Serve's autoscaler starts a second model-server replica when requests queue on the first.

A module of its own: its Ray instance starts after test_cluster_llama.py's has stopped.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ollamacli.config import Settings
from tests.server.raycluster import (
    BASE,
    MARKS,
    REPLICA,
    Cluster,
    generate_body,
    make_store,
    replica_of,
    replicas_in,
    running_cluster,
)

pytestmark = MARKS


@pytest.fixture(scope="module")
def autoscaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    store: Settings = make_store(tmp_path_factory.mktemp("autoscale"))
    # one request at a time per replica: Serve aims at 1 ongoing request per replica
    flags = ("--replicas", "auto", "--max-replicas", "2")
    with running_cluster(store, *flags, env={"OLLAMA_NUM_PARALLEL": "1"}) as running:
        yield running


def test_queued_requests_make_serve_start_a_second_replica(autoscaled: Cluster) -> None:
    with autoscaled.client() as client:
        alone = {replica_of(client.get("/api/version", headers={REPLICA: "1"}))[0]}
        time.sleep(1.5)  # every replica has reported to the board by now
        assert replicas_in(client.get("/metrics").text) == alone  # --replicas auto starts with one
    finished: list[dict[str, Any]] = []
    stop = threading.Event()

    def ask() -> None:
        # each answer runs 300 tokens; with one at a time per replica the others wait
        while not stop.is_set():
            with autoscaled.client() as client:
                response = client.post("/api/generate", json=generate_body(BASE, 300, stream=False))
            assert response.status_code == 200, response.text
            finished.append(json.loads(response.text))

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    seen = set(alone)
    deadline = time.monotonic() + 90
    try:
        with autoscaled.client() as client:
            while len(seen) < 2:  # Serve scales up after 5 s above its target, then starts one
                assert time.monotonic() < deadline, "no second replica after 90 s of queueing"
                seen.add(replica_of(client.get("/api/version", headers={REPLICA: "1"}))[0])
                time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
    # /metrics shows both replicas (the new one reports within a second of starting)
    with autoscaled.client() as client:
        time.sleep(1.5)
        # (a first replica missing here died, and Serve's replacement looked like a second)
        reporting = replicas_in(client.get("/metrics").text)
        assert reporting == seen, autoscaled.log.read_text()[-4000:]
    # every request answered in full while the deployment grew
    assert finished
    assert all(body["done"] is True and body["eval_count"] == 300 for body in finished)
