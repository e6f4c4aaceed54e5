"""Concurrency on a live server: parallel streams, disconnects, queue limit, keep-alive expiry."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx

from ollamacli.client import parse_time
from ollamacli.engine.base import CancelToken, GenerationEvent, LoadConfig, SamplingConfig
from tests.fakes import FakeEngine, FakeFactory


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def stream_chat(url: str, prompt: str, out: dict[str, list[dict[str, object]]]) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": prompt}], "stream": True}
    with (
        httpx.Client(base_url=url, timeout=60, trust_env=False) as client,
        client.stream("POST", "/api/chat", json=body) as response,
    ):
        out[prompt] = [json.loads(line) for line in response.iter_lines() if line]


def test_eight_concurrent_streaming_clients_each_get_a_whole_answer(make_server) -> None:
    factory = FakeFactory(delay=0.005)
    for n in range(8):
        factory.enqueue(*(f"s{n}w{i} " for i in range(20)))
    results: dict[str, list[dict[str, object]]] = {}
    with make_server(factory) as live:
        threads = [
            threading.Thread(target=stream_chat, args=(live.url, f"q{n}", results))
            for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert len(results) == 8
    scripts = set()
    for lines in results.values():
        assert all("error" not in line for line in lines)
        assert lines[-1]["done"] is True
        words = [line["message"]["content"] for line in lines[:-1]]  # type: ignore[index]  # JSON
        script = words[0].split("w")[0]
        assert words == [f"{script}w{i} " for i in range(20)]  # whole and not interleaved
        scripts.add(script)
    assert len(scripts) == 8


def test_health_tags_and_ps_answer_while_a_model_writes(make_server) -> None:
    factory = FakeFactory(delay=0.05)
    factory.enqueue(*(f"w{i} " for i in range(100)))  # about five seconds of writing
    with make_server(factory) as live, live.client() as client:
        body = {"model": "tiny", "prompt": "long", "stream": True}
        with client.stream("POST", "/api/generate", json=body) as response:
            lines = response.iter_lines()
            assert json.loads(next(lines))["done"] is False
            with live.client() as other:
                assert other.get("/").text == "Ollama is running"
                assert other.get("/api/tags").status_code == 200
                (running,) = other.get("/api/ps").json()["models"]
            assert json.loads(next(lines))["done"] is False  # still writing
        assert running["name"] == "tiny:latest"


class CountingEngine(FakeEngine):
    """Counts the tokens it produced and notes whether a cancel stopped it."""

    produced = 0
    stopped_by_cancel = False

    def generate(
        self, prompt: str | list[int], sampling: SamplingConfig, cancel: CancelToken | None = None
    ) -> Iterator[GenerationEvent]:
        for event in super().generate(prompt, sampling, cancel):
            if hasattr(event, "text"):
                self.produced += 1
            yield event
        self.stopped_by_cancel = cancel is not None and cancel.cancelled


class CountingFactory(FakeFactory):
    def load(self, config: LoadConfig) -> CountingEngine:
        engine = CountingEngine(config, self.script, delay=self.delay)
        self.loaded.append(engine)
        return engine


def test_a_client_that_disconnects_stops_its_generation(make_server) -> None:
    factory = CountingFactory(delay=0.02)
    factory.enqueue(*(f"w{i} " for i in range(500)))  # ten seconds if nobody stops it
    with make_server(factory) as live:
        with live.client() as client:
            body = {"model": "tiny", "prompt": "go", "stream": True}
            with client.stream("POST", "/api/generate", json=body) as response:
                lines = response.iter_lines()
                for _ in range(3):
                    next(lines)
        engine = factory.loaded[0]
        wait_until(lambda: live.services.scheduler.ps()[0].busy == 0)
    assert isinstance(engine, CountingEngine)
    assert engine.stopped_by_cancel
    assert engine.produced < 100


def test_queue_full_answers_503_with_ollamas_message(make_server) -> None:
    factory = FakeFactory(delay=0.05)
    factory.enqueue(*(f"w{i} " for i in range(60)))
    with make_server(factory, max_queue=1, num_parallel=1) as live:  # one answer at a time
        first: dict[str, list[dict[str, object]]] = {}
        running = threading.Thread(target=stream_chat, args=(live.url, "first", first))
        running.start()
        wait_until(lambda: bool(live.services.scheduler.ps()))
        queued: dict[str, list[dict[str, object]]] = {}
        waiting = threading.Thread(target=stream_chat, args=(live.url, "second", queued))
        waiting.start()
        wait_until(lambda: live.services.scheduler.pending() == 1)
        with live.client() as client:
            refused = client.post(
                "/api/chat", json={"model": "tiny", "messages": [{"role": "user", "content": "x"}]}
            )
        running.join(30)
        waiting.join(30)
    assert refused.status_code == 503
    assert refused.json() == {
        "error": "server busy, please try again.  maximum pending requests exceeded"
    }
    assert first["first"][-1]["done"] is True
    assert queued["second"][-1]["done"] is True


def test_keep_alive_expiry_unloads_without_another_request(make_server) -> None:
    factory = FakeFactory()
    with make_server(factory) as live, live.client() as client:
        client.post("/api/generate", json={"model": "tiny", "prompt": "x", "keep_alive": "1s"})
        engine = factory.loaded[0]
        assert not engine.closed
        wait_until(lambda: engine.closed)  # the reaper, not a request, unloaded it
        assert client.get("/api/ps").json() == {"models": []}


def test_keep_alive_zero_unloads_after_the_answer(make_server) -> None:
    factory = FakeFactory()
    with make_server(factory) as live, live.client() as client:
        answer = client.post(
            "/api/chat",
            json={"model": "tiny", "messages": [{"role": "user", "content": "x"}], "keep_alive": 0},
        ).json()
        assert answer["message"]["content"] == "ok"
        assert client.get("/api/ps").json() == {"models": []}
    assert factory.loaded[0].closed


def test_default_keep_alive_comes_from_settings(make_server) -> None:
    with make_server(FakeFactory(), keep_alive=7200.0) as live, live.client() as client:
        client.post("/api/generate", json={"model": "tiny"})
        (model,) = client.get("/api/ps").json()["models"]
    assert 7000 < parse_time(str(model["expires_at"])) - time.time() <= 7200


def test_a_queued_request_whose_client_leaves_gives_up_its_place(make_server) -> None:
    factory = FakeFactory(delay=0.05)
    factory.enqueue(*(f"w{i} " for i in range(80)))  # about four seconds
    with make_server(factory, num_parallel=1) as live:  # one answer at a time
        first: dict[str, list[dict[str, object]]] = {}
        running = threading.Thread(target=stream_chat, args=(live.url, "first", first))
        running.start()
        scheduler = live.services.scheduler
        wait_until(lambda: bool(scheduler.ps()))
        body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "x"}]})
        request = (
            "POST /api/chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        )
        with socket.create_connection(("127.0.0.1", live.port)) as raw:
            raw.sendall(request.encode())
            wait_until(lambda: scheduler.pending() == 1)
        wait_until(lambda: scheduler.pending() == 0)
        assert running.is_alive()  # it left the queue before the first answer finished
        running.join(30)
    assert first["first"][-1]["done"] is True
