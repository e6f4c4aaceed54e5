"""The relay `serve --ray` runs requests through (server/relay.py), without Ray: a request carried
to the app in-process answers the bytes a real uvicorn server answers, chunk by chunk."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable

import pytest

from ollamacli.server.app import create_app
from ollamacli.server.relay import (
    RawRequest,
    ResponsePart,
    ResponseStart,
    call_app,
    failure_chunk,
    failure_response,
    relayed_headers,
    routed_model,
)
from ollamacli.service import Services
from tests.fakes import FakeFactory
from tests.server.conftest import LiveServer

# uvicorn's own headers: the date, and `server` (the test server keeps uvicorn's default).
VOLATILE = {b"date", b"server"}


def _raw(method: str, path: str, body: object = None, **headers: str) -> RawRequest:
    data = b"" if body is None else json.dumps(body).encode()
    sent = [(b"host", b"127.0.0.1:11434")]
    sent += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    if data:
        sent += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    return RawRequest(
        method=method,
        path=path,
        raw_path=path.encode(),
        query_string=b"",
        headers=tuple(sent),
        body=data,
        client=("127.0.0.1", 50000),
        server=("127.0.0.1", 11434),
    )


def _relay(services: Services, request: RawRequest) -> list[ResponsePart]:
    async def collect() -> list[ResponsePart]:
        return [part async for part in call_app(create_app(services), request)]

    return asyncio.run(collect())


def test_a_relayed_request_answers_what_the_live_server_answers(live: LiveServer) -> None:
    request = _raw("GET", "/api/tags", x_request_id="same-id-1")
    parts = _relay(live.services, request)
    start, *chunks = parts
    assert isinstance(start, ResponseStart)
    with live.client() as client:
        direct = client.get("/api/tags", headers={"X-Request-ID": "same-id-1"})
    assert start.status == direct.status_code
    assert b"".join(c for c in chunks if isinstance(c, bytes)) == direct.content
    relayed = [(k, v) for k, v in start.headers if k not in VOLATILE]
    served = [(k, v) for k, v in direct.headers.raw if k.lower() not in VOLATILE]
    assert relayed == served


def test_a_streamed_chat_comes_back_in_chunks_of_whole_ndjson_lines(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.delay = 0.05  # a token every 50 ms: each line is sent as it comes
    fake_factory.enqueue("one ", "two ", "three")
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    start, *chunks = _relay(live.services, _raw("POST", "/api/chat", body))
    assert isinstance(start, ResponseStart)
    assert start.status == 200, chunks
    assert start.header(b"content-type") == b"application/x-ndjson", chunks
    assert len(chunks) >= 3  # not one batch: the last token and the final line may share one
    assert all(isinstance(c, bytes) and c.endswith(b"\n") for c in chunks)
    text = b"".join(c for c in chunks if isinstance(c, bytes))
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["message"]["content"] for line in lines] == ["one ", "two ", "three", ""]
    assert lines[-1]["done"] is True


def test_closing_the_relay_early_cancels_the_generation(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.delay = 0.01  # 20 s for the whole answer, unless cancelled
    fake_factory.enqueue(*(f"w{i} " for i in range(2000)))
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    async def first_two() -> list[ResponsePart]:
        parts = call_app(create_app(live.services), _raw("POST", "/api/chat", body))
        taken = [await anext(parts), await anext(parts)]
        await parts.aclose()  # type: ignore[attr-defined]  # an async generator
        return taken

    start, chunk = asyncio.run(first_two())
    assert isinstance(start, ResponseStart)
    assert json.loads(chunk)["done"] is False  # type: ignore[arg-type]  # bytes
    deadline = time.monotonic() + 5
    while live.services.scheduler.ps()[0].busy:  # the generation stops, the lease comes back
        assert time.monotonic() < deadline, "the generation went on after the relay closed"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("method", "path", "body", "model"),
    [
        ("POST", "/api/chat", {"model": "llama3.2"}, "llama3.2:latest"),
        ("POST", "/api/generate", {"model": "m:7b", "prompt": "x"}, "m:7b"),
        ("POST", "/v1/chat/completions", {"model": "m"}, "m:latest"),
        ("POST", "/v1/messages", {"model": "m"}, "m:latest"),
        ("POST", "/api/embed", {"model": "e"}, "e:latest"),
        ("POST", "/api/show", {"model": "m"}, None),
        ("GET", "/api/tags", None, None),
        ("POST", "/api/chat", {"messages": []}, None),
        ("POST", "/api/chat", ["not", "an", "object"], None),
        ("POST", "/api/chat", {"model": "bad name!"}, "bad name!"),
    ],
    ids=[
        "chat",
        "generate-tag",
        "openai",
        "anthropic",
        "embed",
        "show-any",
        "tags-any",
        "no-model",
        "not-object",
        "invalid-name-kept",
    ],
)
def test_only_requests_that_load_a_model_are_routed_by_it(
    method: str, path: str, body: object, model: str | None
) -> None:
    assert routed_model(_raw(method, path, body)) == model


def test_routed_model_ignores_a_body_that_is_not_json() -> None:
    request = dataclasses.replace(_raw("POST", "/api/chat"), body=b"{nope")
    assert routed_model(request) is None


def test_relayed_headers_leave_the_request_id_to_serves_proxy() -> None:
    headers = ((b"content-type", b"application/json"), (b"x-request-id", b"abc"))
    assert relayed_headers(headers) == ((b"content-type", b"application/json"),)


@pytest.mark.parametrize(
    ("path", "check"),
    [
        ("/api/chat", lambda body: body == {"error": "gone"}),
        ("/v1/chat/completions", lambda body: body["error"]["message"] == "gone"),
        ("/v1/messages", lambda body: body["error"]["message"] == "gone"),
    ],
    ids=["ollama", "openai", "anthropic"],
)
def test_a_failure_before_the_stream_is_a_json_error_in_the_apis_shape(
    path: str, check: Callable[[dict[str, object]], bool]
) -> None:
    start, body = failure_response(path, "gone")
    assert start.status == 500
    assert start.header(b"content-length") == str(len(body)).encode()
    assert check(json.loads(body))


def test_a_failure_mid_stream_ends_the_stream_in_its_own_format() -> None:
    ndjson = ResponseStart(200, ((b"content-type", b"application/x-ndjson"),))
    sse = ResponseStart(200, ((b"content-type", b"text/event-stream; charset=utf-8"),))
    plain = ResponseStart(200, ((b"content-type", b"application/json"),))
    assert failure_chunk("/api/chat", ndjson, "gone") == b'{"error":"gone"}\n'
    event = failure_chunk("/v1/chat/completions", sse, "gone")
    assert json.loads(event.removeprefix(b"data: "))["error"]["message"] == "gone"
    assert failure_chunk("/v1/messages", sse, "gone").startswith(b"event: error\n")
    assert failure_chunk("/v1/responses", sse, "gone").startswith(b"event: error\n")
    assert failure_chunk("/api/chat", plain, "gone") == b""


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_serve_refuses_a_replica_count_that_is_not_a_positive_number_or_auto(cli, value) -> None:
    result = cli("serve", "--ray", "--replicas", value)
    assert result.code == 2
    assert "is not a positive number or 'auto'" in result.err
