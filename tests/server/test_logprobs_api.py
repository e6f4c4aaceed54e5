"""Logprobs over HTTP (scripted engines): Ollama's `logprobs`/`top_logprobs` on /api/chat and
/api/generate, OpenAI's `choices[].logprobs.content` on /v1/chat/completions and the legacy
`logprobs` object on /v1/completions, streamed and whole, through the official clients too.

The fake engine gives its i-th piece the logprob -(i + 1)/8 and, as alternatives, the piece
itself then `~1`, `~2` ... one nat less likely each (tests/fakes.py `fake_logprob`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ollama
import openai
import pytest

from ollamacli.service.models import CreateSpec
from tests.factories import WEATHER_TOOL, make_tiny_gguf
from tests.fakes import FakeFactory
from tests.server.conftest import LiveServer, ndjson_lines, sse_events
from tests.service.test_thinking_service import OPENS

ASK = [{"role": "user", "content": "Why?"}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def ollama_entry(token: str, index: int, top: int = 0) -> dict[str, Any]:
    """An entry of Ollama's `logprobs` as the fake engine scripts it."""
    logprob = -(index + 1) / 8
    entry: dict[str, Any] = {"token": token, "logprob": logprob, "bytes": list(token.encode())}
    alternatives = [(token, logprob)] + [(f"~{k}", logprob - k) for k in range(1, top)]
    if top:
        entry["top_logprobs"] = [
            {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alternatives[:top]
        ]
    return entry


def openai_entry(token: str, index: int, top: int = 0) -> dict[str, Any]:
    """The same entry in OpenAI's shape: `bytes` and `top_logprobs` always there."""
    return {"top_logprobs": [], **ollama_entry(token, index, top)}


def test_api_chat_logprobs_whole_and_streamed(live: LiveServer, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("Blue", " light")
    fake_factory.enqueue("Blue", " light")
    body = {"model": "tiny", "messages": ASK, "logprobs": True, "top_logprobs": 2}
    with live.client() as client:
        whole = client.post("/api/chat", json=body).json()
        streamed = ndjson_lines(client.post("/api/chat", json={**body, "stream": True}))
    expected = [ollama_entry("Blue", 0, 2), ollama_entry(" light", 1, 2)]
    assert whole["message"]["content"] == "Blue light"
    assert whole["logprobs"] == expected
    assert whole["logprobs"][0] == {
        "token": "Blue",
        "logprob": -0.125,
        "bytes": [66, 108, 117, 101],
        "top_logprobs": [
            {"token": "Blue", "logprob": -0.125, "bytes": [66, 108, 117, 101]},
            {"token": "~1", "logprob": -1.125, "bytes": [126, 49]},
        ],
    }
    assert [line["message"]["content"] for line in streamed] == ["Blue", " light", ""]
    assert [line.get("logprobs") for line in streamed] == [expected[:1], expected[1:], None]
    assert fake_factory.loaded[0].samplings[-1].top_logprobs == 2


def test_api_generate_logprobs_without_alternatives(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("4", "!")
    fake_factory.enqueue("4", "!")
    body = {"model": "tiny", "prompt": "2+2=", "logprobs": True}
    with live.client() as client:
        whole = client.post("/api/generate", json=body).json()
        streamed = ndjson_lines(client.post("/api/generate", json={**body, "stream": True}))
    expected = [ollama_entry("4", 0), ollama_entry("!", 1)]
    assert whole["response"] == "4!"
    assert whole["logprobs"] == expected  # no `top_logprobs` key: none were asked for
    assert len(whole["logprobs"]) == whole["eval_count"]
    assert [line.get("logprobs") for line in streamed] == [expected[:1], expected[1:], None]


def test_no_logprobs_unless_asked_and_top_logprobs_alone_asks_for_none(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("a")
    fake_factory.enqueue("a")
    fake_factory.enqueue("a")
    with live.client() as client:
        plain = client.post("/api/chat", json={"model": "tiny", "messages": ASK}).json()
        alone = client.post(
            "/api/chat", json={"model": "tiny", "messages": ASK, "top_logprobs": 5}
        ).json()
        completion = client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": ASK, "top_logprobs": 5}
        ).json()
    assert "logprobs" not in plain
    assert "logprobs" not in alone
    assert "logprobs" not in completion["choices"][0]
    assert not any(s.logprobs for s in fake_factory.loaded[0].samplings)


@pytest.mark.parametrize("top", [-1, 21])
def test_top_logprobs_out_of_range_is_ollama_s_400(live: LiveServer, top: int) -> None:
    message = "top_logprobs must be between 0 and 20"
    with live.client() as client:
        chat = client.post(
            "/api/chat",
            json={"model": "tiny", "messages": ASK, "logprobs": True, "top_logprobs": top},
        )
        generate = client.post(
            "/api/generate", json={"model": "tiny", "prompt": "Hi", "top_logprobs": top}
        )
        openai_chat = client.post(
            "/v1/chat/completions",
            json={"model": "tiny", "messages": ASK, "logprobs": True, "top_logprobs": top},
        )
    assert (chat.status_code, chat.json()) == (400, {"error": message})
    assert (generate.status_code, generate.json()) == (400, {"error": message})
    assert openai_chat.status_code == 400
    assert openai_chat.json()["error"]["message"] == message


def test_thinking_tokens_logprobs_ride_on_the_trace(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    gguf = make_tiny_gguf(tmp_path / "thinker.gguf")
    live.services.models.create("thinker", CreateSpec(from_file=gguf, template=OPENS))
    pieces = ("I should", " answer.</think>", "\n\nBecause.")
    fake_factory.enqueue(*pieces)
    fake_factory.enqueue(*pieces)
    body = {"model": "thinker", "messages": ASK, "think": True, "logprobs": True}
    with live.client() as client:
        whole = client.post("/api/chat", json=body).json()
        streamed = ndjson_lines(client.post("/api/chat", json={**body, "stream": True}))
    expected = [ollama_entry(piece, i) for i, piece in enumerate(pieces)]
    assert whole["message"]["thinking"] == "I should answer."
    assert whole["logprobs"] == expected  # as Ollama: the trace's tokens are reported too
    assert [(line["message"], line.get("logprobs")) for line in streamed[:3]] == [
        ({"role": "assistant", "content": "", "thinking": "I should"}, expected[:1]),
        ({"role": "assistant", "content": "", "thinking": " answer."}, expected[1:2]),
        ({"role": "assistant", "content": "Because."}, expected[2:]),
    ]


def test_tokens_held_back_by_the_tool_call_parser_still_stream_their_logprobs(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    pieces = ("<tool_call>", CALL.removeprefix("<tool_call>"))
    fake_factory.enqueue(*pieces)
    fake_factory.enqueue(*pieces)
    body = {"model": "tiny", "messages": ASK, "tools": [WEATHER_TOOL], "logprobs": True}
    with live.client() as client:
        whole = client.post("/api/chat", json=body).json()
        streamed = ndjson_lines(client.post("/api/chat", json={**body, "stream": True}))
    expected = [ollama_entry(piece, i) for i, piece in enumerate(pieces)]
    assert whole["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert whole["logprobs"] == expected
    first = streamed[0]
    assert first["message"] == {"role": "assistant", "content": ""}  # the parser holds it
    assert first["logprobs"] == expected[:1]  # but its token's logprob goes out (Ollama)
    assert [e for line in streamed for e in line.get("logprobs", [])] == expected
    assert sum("tool_calls" in line["message"] for line in streamed) == 1


def test_openai_chat_logprobs_whole_and_streamed(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("Blue", " light")
    fake_factory.enqueue("Blue", " light")
    body = {"model": "tiny", "messages": ASK, "logprobs": True, "top_logprobs": 2}
    with live.client() as client:
        whole = client.post("/v1/chat/completions", json=body).json()
        events = sse_events(client.post("/v1/chat/completions", json={**body, "stream": True}))
    expected = [openai_entry("Blue", 0, 2), openai_entry(" light", 1, 2)]
    (choice,) = whole["choices"]
    assert choice["message"]["content"] == "Blue light"
    assert choice["logprobs"] == {"content": expected}
    choices = [event["choices"][0] for event in events]
    assert [c["delta"].get("content") for c in choices] == ["Blue", " light", ""]
    assert [c["logprobs"] for c in choices] == [
        {"content": expected[:1]},
        {"content": expected[1:]},
        None,  # the finish chunk, as OpenAI sends it
    ]


def test_openai_chat_logprobs_without_alternatives_keep_openai_s_keys(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("ok")
    with live.client() as client:
        whole = client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": ASK, "logprobs": True}
        ).json()
    assert whole["choices"][0]["logprobs"] == {
        "content": [{"token": "ok", "logprob": -0.125, "bytes": [111, 107], "top_logprobs": []}]
    }


def test_openai_completions_legacy_logprobs(live: LiveServer, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("Blue", " light")
    fake_factory.enqueue("Blue", " light")
    fake_factory.enqueue("Blue", " light")
    body = {"model": "tiny", "prompt": "Sky?", "logprobs": 2}
    with live.client() as client:
        whole = client.post("/v1/completions", json=body).json()
        events = sse_events(client.post("/v1/completions", json={**body, "stream": True}))
        none = client.post("/v1/completions", json={**body, "logprobs": 0}).json()
    assert whole["choices"][0]["text"] == "Blue light"
    assert whole["choices"][0]["logprobs"] == {
        "tokens": ["Blue", " light"],
        "token_logprobs": [-0.125, -0.25],
        "top_logprobs": [{"Blue": -0.125, "~1": -1.125}, {" light": -0.25, "~1": -1.25}],
        "text_offset": [0, 4],
    }
    streamed = [event["choices"][0]["logprobs"] for event in events]
    assert streamed == [
        {
            "tokens": ["Blue"],
            "token_logprobs": [-0.125],
            "top_logprobs": [{"Blue": -0.125, "~1": -1.125}],
            "text_offset": [0],
        },
        {
            "tokens": [" light"],
            "token_logprobs": [-0.25],
            "top_logprobs": [{" light": -0.25, "~1": -1.25}],
            "text_offset": [4],  # counted from the start of the answer, across chunks
        },
        None,
    ]
    assert none["choices"][0]["logprobs"] is None  # 0 asks for none, as Ollama maps it
    assert fake_factory.loaded[0].samplings[-1].logprobs is False


def test_openai_completions_logprobs_over_twenty_is_a_400(live: LiveServer) -> None:
    with live.client() as client:
        response = client.post(
            "/v1/completions", json={"model": "tiny", "prompt": "Hi", "logprobs": 21}
        )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "top_logprobs must be between 0 and 20"


def test_ollama_client_logprobs(client: ollama.Client, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("Blue", " light")
    fake_factory.enqueue("Blue", " light")
    response = client.chat(model="tiny", messages=ASK, logprobs=True, top_logprobs=3)
    assert response.logprobs is not None
    assert [lp.token for lp in response.logprobs] == ["Blue", " light"]
    assert [t.token for t in response.logprobs[1].top_logprobs or ()] == [" light", "~1", "~2"]
    parts = list(client.generate(model="tiny", prompt="Sky?", logprobs=True, stream=True))
    assert [lp.logprob for p in parts for lp in p.logprobs or ()] == [-0.125, -0.25]


def test_openai_client_logprobs(oai: openai.OpenAI, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("Blue", " light")
    fake_factory.enqueue("Blue", " light")
    fake_factory.enqueue("Blue", " light")
    whole = oai.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Why?"}], logprobs=True, top_logprobs=3
    )
    logprobs = whole.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    assert [(t.token, t.logprob, t.bytes) for t in logprobs.content] == [
        ("Blue", -0.125, [66, 108, 117, 101]),
        (" light", -0.25, [32, 108, 105, 103, 104, 116]),
    ]
    assert [t.token for t in logprobs.content[0].top_logprobs] == ["Blue", "~1", "~2"]
    stream = oai.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Why?"}],
        logprobs=True,
        stream=True,
    )
    tokens = [
        t.token
        for chunk in stream
        if chunk.choices and chunk.choices[0].logprobs
        for t in chunk.choices[0].logprobs.content or ()
    ]
    assert tokens == ["Blue", " light"]
    legacy = oai.completions.create(model="tiny", prompt="Sky?", logprobs=1)
    assert legacy.choices[0].logprobs is not None
    assert legacy.choices[0].logprobs.tokens == ["Blue", " light"]
    assert legacy.choices[0].logprobs.top_logprobs == [{"Blue": -0.125}, {" light": -0.25}]
