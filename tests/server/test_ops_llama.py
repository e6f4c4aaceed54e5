"""`/metrics` and the request log on the real bundled SmolLM2: counters move by what the answers
say, and `serve` (with an API key) writes one parseable JSON line per request with
OLLAMACLI_LOG_FORMAT=json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ollamacli.config import Settings
from ollamacli.names import ModelName
from ollamacli.service import build_services
from tests.server.conftest import LiveServer, free_port, serve_in_thread
from tests.server.metricstext import value

pytestmark = [pytest.mark.llama, pytest.mark.slow]

MODEL = "smollm2:135m"
SHORT = {"num_predict": 6, "temperature": 0}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "options": SHORT}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("ops")
    services = build_services(Settings(data_dir=root, models_dir=root / "models"))
    services.models.ensure(MODEL)
    with serve_in_thread(services) as live:
        yield live


def _scrape(client: httpx.Client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.text


def _streamed(client: httpx.Client) -> tuple[int, dict[str, Any]]:
    chunks, last = 0, {}
    with client.stream("POST", "/api/chat", json={**CHAT, "stream": True}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            last = json.loads(line)
            chunks += not last.get("done")
    return chunks, last


def test_a_chat_moves_the_counters_by_its_own_statistics(real: LiveServer) -> None:
    labels = {"model": MODEL}
    chat = {"method": "POST", "route": "/api/chat", "status": "200"}
    with real.client(timeout=170) as client:
        before = _scrape(client)
        answer: dict[str, Any] = client.post("/api/chat", json=CHAT).json()
        chunks, streamed = _streamed(client)
        after = _scrape(client)

    def delta(name: str, **wanted: str) -> float:
        return value(after, name, **wanted) - value(before, name, **wanted)

    prompt_tokens = answer["prompt_eval_count"] + streamed["prompt_eval_count"]
    eval_tokens = answer["eval_count"] + streamed["eval_count"]
    assert 0 < answer["eval_count"] <= 6
    assert chunks >= 1
    assert delta("ollamacli_http_requests_total", **chat) == 2
    assert delta("ollamacli_prompt_tokens_total", **labels) == prompt_tokens
    assert delta("ollamacli_generation_tokens_total", **labels) == eval_tokens
    assert delta("ollamacli_time_to_first_token_seconds_count", **labels) == 2
    assert delta("ollamacli_time_per_output_token_seconds_count", **labels) == 2
    assert delta("ollamacli_http_request_duration_seconds_count", route="/api/chat") == 2
    ttft = delta("ollamacli_time_to_first_token_seconds_sum", **labels)
    assert 0 < ttft < (answer["total_duration"] + streamed["total_duration"]) / 1e9
    tpot = delta("ollamacli_time_per_output_token_seconds_sum", **labels)
    expected = answer["eval_duration"] / answer["eval_count"] / 1e9
    expected += streamed["eval_duration"] / streamed["eval_count"] / 1e9
    assert tpot == pytest.approx(expected, rel=1e-6)
    # the model was loaded once in this module, by the first chat
    assert value(after, "ollamacli_model_load_duration_seconds_count", **labels) == 1
    assert value(after, "ollamacli_models_loaded") == 1
    size = real.services.store.resolve(ModelName.parse(MODEL)).size  # as `ps` reports it
    assert value(after, "ollamacli_model_memory_bytes", **labels) == size
    assert value(after, "ollamacli_model_requests_in_flight", **labels) == 0
    assert value(after, "ollamacli_errors_total", kind="ModelNotFoundError") == 0


def _start_keyed(env: dict[str, str], url: str, key: dict[str, str]) -> subprocess.Popen[str]:
    """`ollamacli serve` in a subprocess, once it answers (with the key) on `url`."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ollamacli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=key, trust_env=False).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"serve did not start: {process.communicate()[1]}")


def test_serve_writes_one_json_line_per_request(cli, settings: Settings) -> None:
    assert cli("pull", MODEL).code == 0
    port = free_port()
    env = {
        **os.environ,
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMACLI_LOG_FORMAT": "json",
        "OLLAMACLI_API_KEY": "k3y",
    }
    url, key = f"http://127.0.0.1:{port}", {"Authorization": "Bearer k3y"}
    process = _start_keyed(env, url, key)
    try:
        refused = httpx.get(f"{url}/metrics", trust_env=False)
        with httpx.Client(base_url=url, timeout=170, trust_env=False, headers=key) as c:
            ok = c.post("/api/chat", json=CHAT, headers={"X-Request-ID": "req-ok-1"})
            missing = c.post("/api/chat", json={**CHAT, "model": "nope"})
            scraped = _scrape(c)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert refused.status_code == 401
    assert "ollamacli_" not in refused.text
    assert ok.status_code == 200
    assert missing.status_code == 404
    tokens = value(scraped, "ollamacli_generation_tokens_total", model=MODEL)
    assert tokens == ok.json()["eval_count"]
    assert value(scraped, "ollamacli_errors_total", kind="unauthorized") == 1
    assert value(scraped, "ollamacli_errors_total", kind="ModelNotFoundError") == 1
    assert ok.headers["x-request-id"] == "req-ok-1"
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # all JSON
    requests = {line["request_id"]: line for line in lines if line["msg"] == "request"}
    line = requests["req-ok-1"]
    answer = ok.json()
    assert line["level"] == "info"
    assert line["logger"] == "ollamacli.server.access"
    assert (line["method"], line["route"], line["path"]) == ("POST", "/api/chat", "/api/chat")
    assert (line["status"], line["model"], line["client"]) == (200, MODEL, "127.0.0.1")
    assert line["prompt_eval_count"] == answer["prompt_eval_count"]
    assert line["eval_count"] == answer["eval_count"]
    assert line["load_duration_ms"] > 0
    assert line["eval_duration_ms"] == pytest.approx(answer["eval_duration"] / 1e6, abs=0.01)
    assert 0 < line["time_to_first_token_ms"] < line["duration_ms"]
    assert line["error"] is None
    assert "body" not in line
    assert line["time"].endswith("+00:00")
    failed = requests[missing.headers["x-request-id"]]
    assert failed["status"] == 404
    assert failed["model"] == "nope"
    assert failed["error"] == missing.json()["error"]
