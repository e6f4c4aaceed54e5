"""`/metrics`, the request log and X-Request-ID, on the fake engine (fast)."""

from __future__ import annotations

import json
import logging
import time

import pytest

from ollamacli.server.requestlog import JsonFormatter, request_id_from
from tests.fakes import FakeFactory
from tests.server.conftest import LiveServer
from tests.server.metricstext import value

ACCESS = "ollamacli.server.access"


def _logged(caplog: pytest.LogCaptureFixture, path: str) -> logging.LogRecord:
    """The one request line for `path` (the server writes it just after the response ends)."""
    deadline = time.monotonic() + 10
    while True:
        found = [r for r in caplog.records if r.name == ACCESS and f'"{path}"' in r.getMessage()]
        if found or time.monotonic() > deadline:
            (record,) = found
            return record
        time.sleep(0.01)


def _chat(live: LiveServer, **extra: object) -> dict[str, object]:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello there"}], **extra}
    with live.client() as client:
        response = client.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _scrape(live: LiveServer, **headers: str) -> str:
    with live.client(headers=headers) as client:
        response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def test_metrics_count_a_chat_by_route_status_model_and_tokens(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("one ", "two ", "three")
    answer = _chat(live)
    text = _scrape(live)
    chat = {"method": "POST", "route": "/api/chat", "status": "200"}
    assert value(text, "ollamacli_http_requests_total", **chat) == 1
    assert (
        value(text, "ollamacli_prompt_tokens_total", model="tiny:latest")
        == answer["prompt_eval_count"]
    )
    assert value(text, "ollamacli_generation_tokens_total", model="tiny:latest") == 3
    assert value(text, "ollamacli_time_to_first_token_seconds_count", model="tiny:latest") == 1
    assert value(text, "ollamacli_time_per_output_token_seconds_count", model="tiny:latest") == 1
    assert value(text, "ollamacli_model_load_duration_seconds_count", model="tiny:latest") == 1
    assert value(text, "ollamacli_models_loaded") == 1
    assert value(text, "ollamacli_model_memory_bytes", model="tiny:latest") > 0
    assert value(text, "ollamacli_model_requests_in_flight", model="tiny:latest") == 0
    assert value(text, "ollamacli_model_requests_queued", model="tiny:latest") == 0
    assert value(text, "ollamacli_http_requests_in_flight") == 1  # the scrape itself
    assert value(text, "ollamacli_errors_total", kind="ModelNotFoundError") == 0


def test_metrics_count_the_prompt_tokens_of_embedding_requests(live: LiveServer) -> None:
    with live.client() as client:
        embed = client.post("/api/embed", json={"model": "tiny", "input": ["one two", "three"]})
        legacy = client.post("/api/embeddings", json={"model": "tiny", "prompt": "four five"})
        openai = client.post("/v1/embeddings", json={"model": "tiny", "input": "six"})
        missing = client.post("/api/embed", json={"model": "nope", "input": "x"})
    assert [embed.status_code, legacy.status_code, openai.status_code] == [200, 200, 200]
    assert missing.status_code == 404
    counted = embed.json()["prompt_eval_count"] + openai.json()["usage"]["prompt_tokens"]
    text = _scrape(live)
    tokens = value(text, "ollamacli_prompt_tokens_total", model="tiny:latest")
    # the legacy route reports no count, but its prompt was evaluated all the same
    assert tokens > counted > 0
    assert value(text, "ollamacli_generation_tokens_total", model="tiny:latest") == 0
    assert value(text, "ollamacli_time_per_output_token_seconds_count", model="tiny:latest") == 0
    assert 'model="nope' not in text


def test_metrics_label_routes_by_template_and_count_errors_by_kind(live: LiveServer) -> None:
    digest = "sha256:" + "0" * 64
    with live.client() as client:
        assert client.head(f"/api/blobs/{digest}").status_code == 404
        assert client.get("/no/such/path/123").status_code == 404
        missing = client.post("/api/chat", json={"model": "nope", "messages": []})
        assert missing.status_code == 404
    text = _scrape(live)
    blob = {"method": "HEAD", "route": "/api/blobs/{digest}", "status": "404"}
    assert value(text, "ollamacli_http_requests_total", **blob) == 1
    assert (
        value(text, "ollamacli_http_requests_total", method="GET", route="unmatched", status="404")
        == 1
    )
    assert digest not in text
    assert "/no/such" not in text
    assert value(text, "ollamacli_errors_total", kind="ModelNotFoundError") == 1
    assert value(text, "ollamacli_errors_total", kind="BlobNotFoundError") == 1
    assert value(text, "ollamacli_errors_total", kind="not_found") == 1
    assert 'model="nope' not in text  # a model that does not exist never becomes a label


def test_metrics_need_the_api_key_when_one_is_set(make_server) -> None:
    with make_server(FakeFactory(), api_key="s3cret") as live:
        with live.client() as client:
            refused = client.get("/metrics")
        assert refused.status_code == 401
        assert "ollamacli_" not in refused.text
        text = _scrape(live, Authorization="Bearer s3cret")
    assert value(text, "ollamacli_errors_total", kind="unauthorized") == 1


def test_request_id_is_echoed_or_generated(live: LiveServer) -> None:
    with live.client() as client:
        echoed = client.get("/api/version", headers={"X-Request-ID": "trace-42.a:b"})
        generated = client.get("/api/version")
        unsafe = client.get("/api/version", headers={"X-Request-ID": 'bad id"<x>'})
        too_long = client.get("/api/version", headers={"X-Request-ID": "x" * 129})
    assert echoed.headers["x-request-id"] == "trace-42.a:b"
    for response in (generated, unsafe, too_long):
        assert len(response.headers["x-request-id"]) == 32
    assert generated.headers["x-request-id"] != unsafe.headers["x-request-id"]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("abc", True), ("a" * 128, True), ("a" * 129, False), ("-x", False), ("a\nb", False)],
    ids=["short", "max", "too-long", "leading-dash", "newline"],
)
def test_request_id_from_accepts_only_bounded_tokens(sent: str, kept: bool) -> None:
    assert (request_id_from(sent) == sent) is kept


def test_request_log_line_has_id_model_tokens_and_no_body(
    live: LiveServer, fake_factory: FakeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    fake_factory.enqueue("a ", "b")
    with caplog.at_level(logging.INFO, logger=ACCESS):
        _chat(live, secret="do-not-log-me")
        record = _logged(caplog, "/api/chat")
    line = record.getMessage()
    assert line.startswith("[GIN] ")
    assert "| 200 |" in line
    assert 'POST    "/api/chat"' in line
    assert " model=tiny " in line
    assert line.endswith(" eval_count=2")
    assert "request_id=" in line
    assert "do-not-log-me" not in line
    fields = record.request  # type: ignore[attr-defined]
    assert fields["route"] == "/api/chat"
    assert "body" not in fields


def test_request_bodies_are_logged_only_with_debug_log_requests(
    make_server, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        make_server(FakeFactory(), log_requests=True) as live,
        caplog.at_level(logging.INFO, logger=ACCESS),
    ):
        _chat(live, secret="log-me")
        record = _logged(caplog, "/api/chat")
    assert "log-me" in record.request["body"]  # type: ignore[attr-defined]
    assert "log-me" in record.getMessage()


def test_request_log_notes_a_refused_request_with_its_error(
    live: LiveServer, fake_factory: FakeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    fake_factory.enqueue("a ", "b")
    body = {"model": "tiny", "stream": True, "options": {"num_ctx": "not a number"}}
    with caplog.at_level(logging.INFO, logger=ACCESS), live.client() as client:
        response = client.post("/api/generate", json={**body, "prompt": "hi"})
        record = _logged(caplog, "/api/generate")
    assert response.status_code == 400
    fields = record.request  # type: ignore[attr-defined]
    assert fields["status"] == 400
    assert fields["error"]
    assert fields["model"] == "tiny"


def test_json_formatter_writes_request_fields_at_top_level() -> None:
    record = logging.LogRecord(ACCESS, logging.INFO, __file__, 1, "[GIN] ...", None, None)
    record.request = {"request_id": "r1", "status": 200, "error": None}
    plain = logging.LogRecord("ollamacli.x", logging.WARNING, __file__, 1, "hi %s", ("you",), None)
    formatter = JsonFormatter()
    line = json.loads(formatter.format(record))
    other = json.loads(formatter.format(plain))
    assert line["msg"] == "request"
    assert (line["request_id"], line["status"], line["error"]) == ("r1", 200, None)
    assert line["level"] == "info"
    assert line["time"].endswith("+00:00")
    assert other == {**other, "msg": "hi you", "level": "warning", "logger": "ollamacli.x"}
