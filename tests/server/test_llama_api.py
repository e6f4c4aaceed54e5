"""The API on the real bundled SmolLM2 through llama.cpp: the seed's example, clients, streaming."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from ollamacli.config import Settings
from ollamacli.service import build_services
from ollamacli.service.models import CreateSpec
from tests.server.conftest import LiveServer, free_port, serve_in_thread, start_serve

pytestmark = [pytest.mark.llama, pytest.mark.slow]

MODEL = "smollm2:135m"
SHORT = {"num_predict": 12, "temperature": 0}

# The seed document's example, verbatim except for the port.
SEED_EXAMPLE = """\
import requests
import json

# 设置 API 端点
url = "http://localhost:{port}/api/chat"

# 定义请求数据
data = {{
    "model": "llama2",
    "messages": [
        {{"role": "user", "content": "Why is the sky blue?"}}
    ]
}}

# 发送 POST 请求
response = requests.post(url, headers={{"Content-Type": "application/json"}}, data=json.dumps(data))

# 检查响应状态码
if response.status_code == 200:
    # 解析并打印响应内容
    response_data = response.json()
    print(response_data['message']['content'])
else:
    print(f"Error: {{response.status_code}}")
"""


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server on the real engine for this module, with smollm2 and a `llama2` alias."""
    root = tmp_path_factory.mktemp("real")
    services = build_services(Settings(data_dir=root, models_dir=root / "models"))
    services.models.ensure(MODEL)
    # The seed asks for "llama2": give that name to SmolLM2, with short answers for CPU tests.
    services.models.create(
        "llama2", CreateSpec(from_model=MODEL, parameters={"num_predict": 48, "temperature": 0})
    )
    with serve_in_thread(services) as live:
        yield live


def test_seed_python_example_prints_an_answer(real: LiveServer, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(SEED_EXAMPLE.format(port=real.port), encoding="utf-8")
    env = {**os.environ, "NO_PROXY": "*"}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=170, env=env
    )
    assert result.returncode == 0, result.stderr
    answer = result.stdout.strip()
    assert answer
    assert not answer.startswith("Error:")


def test_stream_true_streams_ndjson_from_the_model(real: LiveServer) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello."}],
        "stream": True,
        "options": SHORT,
    }
    with real.client(timeout=170) as client:
        response = client.post("/api/chat", json=body)
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) >= 3
    assert all(line["done"] is False for line in lines[:-1])
    final = lines[-1]
    assert final["done"] is True
    assert final["done_reason"] in ("stop", "length")
    assert 0 < final["eval_count"] <= 12
    assert final["prompt_eval_count"] > 5
    assert final["eval_duration"] > 0
    text = "".join(line["message"]["content"] for line in lines)
    assert text.strip()


def test_ollama_client_on_the_real_model(real: LiveServer) -> None:
    with ollama.Client(host=real.url, timeout=170) as client:
        chat = client.chat(
            model=MODEL, messages=[{"role": "user", "content": "What is 2+2?"}], options=SHORT
        )
        parts = list(
            client.generate(model=MODEL, prompt="Count: 1, 2, 3,", options=SHORT, stream=True)
        )
        shown = client.show(MODEL)
        running = client.ps().models
    assert chat.message.content
    assert chat.eval_count
    assert "".join(p.response or "" for p in parts).strip()
    assert parts[-1].context
    assert shown.modelinfo is not None
    assert shown.modelinfo["llama.context_length"] == 8192
    assert shown.capabilities is not None
    assert "completion" in shown.capabilities
    assert [m.model for m in running] == [MODEL]
    assert running[0].context_length == 4096


def test_openai_client_on_the_real_model(real: LiveServer) -> None:
    with openai.OpenAI(base_url=f"{real.url}/v1", api_key="x", max_retries=0, timeout=170) as oai:
        completion = oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi!"}], max_tokens=10, temperature=0
        )
        chunks = list(
            oai.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Hi!"}],
                max_tokens=10,
                temperature=0,
                stream=True,
            )
        )
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= 10
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == completion.choices[0].message.content  # temperature 0: same answer


def test_disconnect_stops_the_real_generation(real: LiveServer) -> None:
    body = {"model": MODEL, "prompt": "Tell a very long story.", "stream": True}
    body["options"] = {"num_predict": 4000}
    scheduler = real.services.scheduler
    with real.client(timeout=170) as client:
        with client.stream("POST", "/api/generate", json=body) as response:
            lines = response.iter_lines()
            for _ in range(3):
                assert json.loads(next(lines))["done"] is False
        deadline = time.monotonic() + 60
        while any(info.busy for info in scheduler.ps()):
            assert time.monotonic() < deadline, "generation kept running after the disconnect"
            time.sleep(0.05)
        after = client.post(
            "/api/generate", json={"model": MODEL, "prompt": "Hi", "options": SHORT}
        )
    assert after.status_code == 200
    assert after.json()["done"] is True


def test_concurrent_streams_on_the_real_model(real: LiveServer) -> None:
    results: list[list[dict[str, object]]] = []

    def one(prompt: str) -> None:
        body = {"model": MODEL, "prompt": prompt, "stream": True, "options": SHORT}
        with httpx.Client(base_url=real.url, timeout=170, trust_env=False) as client:
            response = client.post("/api/generate", json=body)
            results.append([json.loads(line) for line in response.text.splitlines()])

    threads = [threading.Thread(target=one, args=(f"Name a color #{n}.",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(170)
    assert len(results) == 4
    for lines in results:
        assert lines[-1]["done"] is True
        assert all("error" not in line for line in lines)


def test_keep_alive_zero_unloads_the_real_model(real: LiveServer) -> None:
    with real.client(timeout=170) as client:
        client.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"})
        assert [m["name"] for m in client.get("/api/ps").json()["models"]] == [MODEL]
        unloaded = client.post("/api/generate", json={"model": MODEL, "keep_alive": 0}).json()
        assert unloaded["done_reason"] == "unload"
        assert client.get("/api/ps").json() == {"models": []}


def test_sigterm_during_generation_stops_serve_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(tmp_path / "models"),
        "OLLAMACLI_HOME": str(tmp_path / "data"),
    }
    process = start_serve(env, port)
    lines: list[dict[str, object]] = []
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=170, trust_env=False
        ) as client:
            pulled = client.post("/api/pull", json={"model": MODEL})
            assert pulled.json() == {"status": "success"}
            body = {"model": MODEL, "prompt": "Tell a very long story.", "stream": True}
            body["options"] = {"num_predict": 4000}
            with client.stream("POST", "/api/generate", json=body) as response:
                for line in response.iter_lines():
                    lines.append(json.loads(line))
                    if len(lines) == 3:
                        process.send_signal(signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert len(lines) < 1000  # the generation was cut short, not run to its end
    assert "unloaded smollm2:135m" in err
