"""Requests are read as liberally as Ollama reads them (scripted engines).

Ollama decodes bodies with Go's JSON decoder, where `null` leaves a field unset and unknown
fields are dropped, and reads `options` with `Options.FromMap`, which skips `null` values,
converts numbers between integer and float options, and logs and ignores names it does not
know. Client libraries rely on this: LlamaIndex sends every option it knows, unset ones as
`null`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import pytest

from tests.fakes import FakeFactory
from tests.server.conftest import LiveServer

# What llama-index-llms-ollama sends for `Ollama(model=..., temperature=0)`: every option it
# knows, the ones the user did not set as null.
LLAMA_INDEX_OPTIONS = {
    "temperature": 0,
    "num_ctx": None,
    "num_predict": None,
    "top_k": None,
    "top_p": None,
    "seed": None,
    "stop": None,
    "repeat_penalty": None,
    "mirostat": None,
}
USER = {"role": "user", "content": "Hi"}


def _post(live: LiveServer, path: str, body: Mapping[str, object]) -> dict[str, object]:
    with live.client() as client:
        response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
def test_null_options_are_not_set(live: LiveServer, fake_factory: FakeFactory, path: str) -> None:
    fake_factory.enqueue("fine")
    body = {"model": "tiny", "stream": False, "options": LLAMA_INDEX_OPTIONS}
    body.update({"messages": [USER]} if path == "/api/chat" else {"prompt": "Hi"})
    _post(live, path, body)
    (sampling,) = fake_factory.loaded[0].samplings
    assert sampling.temperature == 0.0
    assert (sampling.top_k, sampling.top_p, sampling.num_predict) == (40, 0.9, -1)  # defaults
    assert fake_factory.loaded[0].config.num_ctx == 256  # the server's, not a null


def test_numbers_convert_between_integer_and_float_options(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("a", "b", "c", "d")
    options = {"num_predict": 2.0, "top_k": 7.9, "temperature": 1, "top_p": 0}
    data = _post(live, "/api/generate", {"model": "tiny", "prompt": "x", "options": options})
    assert data["response"] == "ab"
    assert data["done_reason"] == "length"
    (sampling,) = fake_factory.loaded[0].samplings
    assert (sampling.num_predict, sampling.top_k) == (2, 7)
    assert (sampling.temperature, sampling.top_p) == (1.0, 0.0)


def test_unknown_options_are_ignored_and_warned_about_once(
    live: LiveServer, fake_factory: FakeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ollamacli.parameters")
    options = {"temperature": 0.5, "num_gqa": 8, "fancy_sampler_xyz": True}
    for _ in range(2):
        _post(live, "/api/chat", {"model": "tiny", "messages": [USER], "options": options})
    assert [s.temperature for s in fake_factory.loaded[0].samplings] == [0.5, 0.5]
    warned = [r.getMessage() for r in caplog.records if r.name == "ollamacli.parameters"]
    assert sum("num_gqa" in w for w in warned) <= 1  # once per process: maybe an earlier test
    assert sum("fancy_sampler_xyz" in w for w in warned) == 1


def test_wrongly_typed_options_are_still_a_400(live: LiveServer) -> None:
    with live.client() as client:
        response = client.post(
            "/api/chat",
            json={"model": "tiny", "messages": [USER], "options": {"temperature": "hot"}},
        )
    assert response.status_code == 400
    assert response.json() == {"error": 'option "temperature" must be of type float32'}


# Every field of each route's request set to null (model and what the route needs aside).
NULL_BODIES: dict[str, dict[str, object]] = {
    "/api/generate": {
        "model": "tiny",
        "prompt": "Hi",
        **dict.fromkeys(
            [
                "suffix",
                "system",
                "template",
                "context",
                "stream",
                "raw",
                "format",
                "keep_alive",
                "images",
                "options",
                "think",
                "truncate",
                "shift",
                "logprobs",
                "top_logprobs",
            ]
        ),
    },
    "/api/chat": {
        "model": "tiny",
        "messages": [
            {
                "role": "user",
                "content": "Hi",
                "thinking": None,
                "images": None,
                "tool_calls": None,
                "tool_name": None,
                "tool_call_id": None,
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "f", "arguments": None}}],
            },
            {"role": "tool", "content": "42", "tool_name": None},
        ],
        **dict.fromkeys(
            [
                "stream",
                "format",
                "keep_alive",
                "tools",
                "tool_choice",
                "options",
                "think",
                "truncate",
                "shift",
                "logprobs",
                "top_logprobs",
            ]
        ),
    },
    "/api/embed": {
        "model": "tiny",
        "input": "Hi",
        **dict.fromkeys(["keep_alive", "truncate", "dimensions", "options"]),
    },
    "/api/embeddings": {"model": "tiny", "prompt": "Hi", "keep_alive": None, "options": None},
    "/api/show": {"model": "tiny", **dict.fromkeys(["system", "template", "verbose", "options"])},
    "/v1/chat/completions": {
        "model": "tiny",
        "messages": [
            {"role": "user", "content": "Hi", "name": None, "tool_calls": None},
            {"role": "assistant", "content": None, "tool_calls": None, "refusal": None},
            {"role": "user", "content": [{"type": "text", "text": "Go on"}]},
        ],
        **dict.fromkeys(
            [
                "stream",
                "stream_options",
                "max_tokens",
                "max_completion_tokens",
                "seed",
                "stop",
                "temperature",
                "frequency_penalty",
                "presence_penalty",
                "top_p",
                "response_format",
                "tools",
                "tool_choice",
                "reasoning_effort",
                "logprobs",
                "top_logprobs",
                "n",
                "user",
                "parallel_tool_calls",
            ]
        ),
    },
    "/v1/completions": {
        "model": "tiny",
        "prompt": "Hi",
        **dict.fromkeys(
            [
                "frequency_penalty",
                "max_tokens",
                "presence_penalty",
                "seed",
                "stop",
                "stream",
                "stream_options",
                "temperature",
                "top_p",
                "suffix",
                "logprobs",
                "echo",
                "best_of",
            ]
        ),
    },
    "/v1/embeddings": {"model": "tiny", "input": "Hi", "dimensions": None, "encoding_format": None},
}


@pytest.mark.parametrize("path", list(NULL_BODIES))
def test_null_fields_are_not_set_on_every_route(live: LiveServer, path: str) -> None:
    data = _post(live, path, NULL_BODIES[path])
    assert "error" not in data


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate", {"model": "tiny", "prompt": "Hi", "mystery": {"a": [1]}}),
        ("/api/chat", {"model": "tiny", "messages": [{**USER, "extra": 1}], "x_trace": "t"}),
        ("/api/embed", {"model": "tiny", "input": ["Hi"], "encoding": "utf-8"}),
        ("/v1/chat/completions", {"model": "tiny", "messages": [USER], "metadata": {"k": "v"}}),
        ("/v1/completions", {"model": "tiny", "prompt": "Hi", "logit_bias": {"1": 2}}),
        ("/v1/embeddings", {"model": "tiny", "input": "Hi", "user": "me"}),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_unknown_fields_are_ignored(live: LiveServer, path: str, body: dict[str, object]) -> None:
    assert "error" not in _post(live, path, body)


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "JSON_OBJECT "}, "json"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, None),
        ({"type": "something_new"}, None),
        ({"type": None}, None),
    ],
    ids=["text", "case-and-space", "schema-missing", "unknown-type", "null-type"],
)
def test_response_format_is_read_as_ollama_reads_it(
    live: LiveServer,
    fake_factory: FakeFactory,
    response_format: dict[str, object],
    expected: str | None,
) -> None:
    fake_factory.enqueue("{}")
    body = {"model": "tiny", "messages": [USER], "response_format": response_format}
    _post(live, "/v1/chat/completions", body)
    (sampling,) = fake_factory.loaded[0].samplings
    assert (sampling.grammar is not None) == (expected == "json"), json.dumps(response_format)


def test_create_parameters_skip_nulls_and_unknown_names(live: LiveServer) -> None:
    body = {
        "model": "derived",
        "from": "tiny",
        "stream": False,
        "parameters": {"temperature": 0.25, "num_predict": 8.0, "top_k": None, "num_gqa": 8},
    }
    assert _post(live, "/api/create", body) == {"status": "success"}
    shown = _post(live, "/api/show", {"model": "derived"})
    assert (
        shown["parameters"]
        == "temperature                    0.25\nnum_predict                    8"
    )
