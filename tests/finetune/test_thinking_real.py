"""A real model that thinks: SmolLM2-135M fine-tuned here (the project's own pipeline) on rows
whose answers carry a reasoning trace, under a Qwen-3-style template that opens `<think>` in
the prompt. Then `run --think`, `--hidethinking`, /api/chat with think true/false, streaming,
the `ollama` client's thinking calls, the trace on /v1/chat/completions, /v1/responses and
/v1/messages, a JSON-schema `format` after the trace, and Ollama's qwen3.5 renderer,
asserting properties that hold on any CPU."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import ollama
import pytest

from ollamacli.config import Settings
from ollamacli.service import build_services
from ollamacli.service.models import CreateSpec
from tests.server.conftest import LiveServer, serve_in_thread

DATA = Path(__file__).resolve().parents[1] / "data" / "thinking.jsonl"
THINK_TEMPLATE = """\
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Thinking }}<think>
{{ .Thinking }}
</think>

{{ end }}{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ if $.Think }}<think>
{{ else }}<think>

</think>

{{ end }}{{ end }}
{{- end }}"""
"""Qwen 3 thinking style: with thinking on, the prompt ends inside an opened `<think>`."""

# The first test also trains (fixture setup counts towards its timeout), as the acceptance test.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.finetune,
    pytest.mark.llama,
    pytest.mark.timeout(1800),
]

QUESTION = "What is 2+3?"
GREEDY = {"temperature": 0, "num_predict": 48}
TAGS = ("<think>", "</think>")


@pytest.fixture(scope="module")
def trained(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """`thinker`: SmolLM2 fine-tuned for six steps on the traced rows (about 1.5 minutes on two
    shared cores), and `thinker-greedy`, the same with greedy sampling and a short answer."""
    from ollamacli.finetune.pipeline import FinetuneRequest, finetune
    from ollamacli.finetune.trainer import TrainingConfig

    root = tmp_path_factory.mktemp("thinker")
    settings = Settings(data_dir=root, models_dir=root / "models")
    services = build_services(settings)
    services.models.ensure("smollm2:135m")
    base = CreateSpec(from_model="smollm2:135m", template=THINK_TEMPLATE)
    services.models.create("smolthink", base)
    request = FinetuneRequest(
        name="thinker", base="smolthink", data=DATA, training=TrainingConfig(max_steps=6)
    )
    finetune(request, services.models)
    greedy = CreateSpec(from_model="thinker", parameters={"temperature": 0, "num_predict": 48})
    services.models.create("thinker-greedy", greedy)
    return settings


@pytest.fixture(scope="module")
def served(trained: Settings) -> Iterator[LiveServer]:
    with serve_in_thread(build_services(trained)) as live:
        yield live
        live.services.scheduler.close()


def assert_separated(thinking: str | None, content: str) -> None:
    """The trace is there, and neither part carries a tag."""
    assert thinking, "no trace"
    assert thinking.strip()
    for tag in TAGS:
        assert tag not in thinking
        assert tag not in content


def test_run_think_shows_the_trace_and_hidethinking_hides_it(cli, trained, monkeypatch):
    monkeypatch.setenv("OLLAMA_MODELS", str(trained.models))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    shown = cli("run", "thinker-greedy", "--think", QUESTION)
    assert shown.code == 0, shown.err
    assert shown.out.startswith("Thinking...\n")
    trace, done, answer = shown.out.removeprefix("Thinking...\n").partition("...done thinking.\n\n")
    assert done, shown.out
    assert_separated(trace, answer)
    assert answer.strip()
    hidden = cli("run", "thinker-greedy", "--hidethinking", QUESTION)
    piped = cli("run", "thinker-greedy", QUESTION)  # stdout is not a terminal: no trace
    for result in (hidden, piped):
        assert result.code == 0, result.err
        assert "Thinking..." not in result.out
        assert not any(tag in result.out for tag in TAGS)
    assert hidden.out == piped.out == answer


def test_api_chat_think_true_false_and_streamed(served: LiveServer):
    ask = {"model": "thinker", "messages": [{"role": "user", "content": QUESTION}]}
    with served.client(timeout=170) as client:
        on = client.post("/api/chat", json={**ask, "think": True, "options": GREEDY}).json()
        off = client.post("/api/chat", json={**ask, "think": False, "options": GREEDY}).json()
        default = client.post("/api/chat", json={**ask, "options": GREEDY}).json()
        stream = client.post("/api/chat", json={**ask, "stream": True, "options": GREEDY})
    assert_separated(on["message"].get("thinking"), on["message"]["content"])
    assert on["message"]["content"].strip()
    assert default["message"] == on["message"]  # a thinking model thinks unless told not to
    assert "thinking" not in off["message"]
    assert off["message"]["content"].strip()
    assert not off["message"]["content"].lstrip().startswith("<think>")
    chunks = [json.loads(line)["message"] for line in stream.text.splitlines()]
    kinds = [
        "thinking" if m.get("thinking") else "content"
        for m in chunks
        if m.get("thinking") or m["content"]
    ]
    assert kinds[0] == "thinking"
    assert "content" in kinds
    assert kinds == sorted(kinds, key=lambda kind: kind == "content")  # trace first, then answer
    assert "".join(m.get("thinking", "") for m in chunks) == on["message"]["thinking"]
    assert "".join(m["content"] for m in chunks) == on["message"]["content"]


def test_the_ollama_client_thinking_calls(served: LiveServer):
    with ollama.Client(host=served.url, timeout=170) as client:
        messages = [{"role": "user", "content": QUESTION}]
        chat = client.chat("thinker", messages=messages, think=True, options=GREEDY)
        generate = client.generate("thinker", QUESTION, think=True, options=GREEDY)
        parts = list(
            client.chat("thinker", messages=messages, think=True, stream=True, options=GREEDY)
        )
        refused = pytest.raises(ollama.ResponseError, match="does not support thinking")
        with refused:
            client.chat("smollm2:135m", messages=messages, think=True)
    assert_separated(chat.message.thinking, chat.message.content or "")
    assert_separated(generate.thinking, generate.response)
    assert "".join(p.message.thinking or "" for p in parts) == chat.message.thinking
    assert "".join(p.message.content or "" for p in parts) == chat.message.content


def test_openai_reasoning_on_the_trained_model(served: LiveServer):
    body = {
        "model": "thinker",
        "messages": [{"role": "user", "content": QUESTION}],
        "reasoning_effort": "low",
        "temperature": 0,
        "max_tokens": 48,
    }
    with served.client(timeout=170) as client:
        answer = client.post("/v1/chat/completions", json=body).json()
    message = answer["choices"][0]["message"]
    assert_separated(message.get("reasoning"), message["content"])


def test_responses_and_messages_carry_the_trained_models_trace(served: LiveServer):
    ask = [{"role": "user", "content": QUESTION}]
    with served.client(timeout=170) as client:
        response = client.post(
            "/v1/responses",
            json={
                "model": "thinker",
                "input": ask,
                "reasoning": {"effort": "low"},
                "temperature": 0,
                "max_output_tokens": 48,
            },
        ).json()
        message = client.post(
            "/v1/messages",
            json={
                "model": "thinker",
                "messages": ask,
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "temperature": 0,
                "max_tokens": 48,
            },
        ).json()
    reasoning, *rest = response["output"]
    assert reasoning["type"] == "reasoning"
    answer = "".join(part["text"] for item in rest for part in item.get("content", []))
    assert_separated(reasoning["summary"][0]["text"], answer)
    thinking, *blocks = message["content"]
    assert thinking["type"] == "thinking"
    assert_separated(thinking["thinking"], "".join(b.get("text", "") for b in blocks))


ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
}


def test_a_schema_format_constrains_the_answer_after_the_trace(served: LiveServer):
    """`format` with `think`: the model reasons freely, and only the answer after the closing
    tag is held to the schema (chat, streamed chat, generate)."""
    options = {"temperature": 0, "num_predict": 96}
    ask = {"model": "thinker", "think": True, "format": ANSWER_SCHEMA, "options": options}
    messages = [{"role": "user", "content": QUESTION}]
    with served.client(timeout=170) as client:
        chat = client.post("/api/chat", json={**ask, "messages": messages}).json()
        stream = client.post("/api/chat", json={**ask, "messages": messages, "stream": True})
        generate = client.post("/api/generate", json={**ask, "prompt": QUESTION}).json()
    chunks = [json.loads(line)["message"] for line in stream.text.splitlines()]
    answers = [
        (chat["message"].get("thinking"), chat["message"]["content"]),
        ("".join(m.get("thinking", "") for m in chunks), "".join(m["content"] for m in chunks)),
        (generate.get("thinking"), generate["response"]),
    ]
    for thinking, content in answers:
        assert_separated(thinking, content)
        jsonschema.validate(json.loads(content), ANSWER_SCHEMA)


def test_the_qwen35_renderer_on_the_trained_model(served: LiveServer):
    """RENDERER qwen3.5 and PARSER qwen3.5 on the trained model: Ollama's renderer writes the
    same prompt as the model's Qwen-3-style template, so it thinks, and the trace comes apart."""
    spec = CreateSpec(from_model="thinker", renderer="qwen3.5", parser="qwen3.5")
    served.services.models.create("thinker-r", spec)
    ask = {"model": "thinker-r", "messages": [{"role": "user", "content": QUESTION}]}
    with served.client(timeout=170) as client:
        on = client.post("/api/chat", json={**ask, "think": True, "options": GREEDY}).json()
        off = client.post("/api/chat", json={**ask, "think": False, "options": GREEDY}).json()
    assert_separated(on["message"].get("thinking"), on["message"]["content"])
    assert "thinking" not in off["message"]
    assert off["message"]["content"].strip()


def test_show_lists_thinking_for_the_trained_model(served: LiveServer):
    with served.client() as client:
        show = client.post("/api/show", json={"model": "thinker"}).json()
        base = client.post("/api/show", json={"model": "smollm2:135m"}).json()
    assert "thinking" in show["capabilities"]
    assert "thinking" not in base["capabilities"]
