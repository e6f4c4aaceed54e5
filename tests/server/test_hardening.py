"""No request may crash, stall or 500 the server (issue 17, the request side), on FakeEngines.

Each case was found by an outside probe: lone UTF-16 surrogates in any text field (500), huge
bodies read whole, keep_alive beyond Go's duration range (every later /api/ps answered 500),
template loops that rendered on after the client left, server file paths in error bodies, and
/api/create accepting message roles a Modelfile refuses.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from ollamacli.config import DEFAULT_MAX_BODY_SIZE, MAX_DURATION, Settings, parse_duration
from ollamacli.engine.base import Engine, LoadConfig
from ollamacli.errors import InvalidRequestError, ModelLoadError
from ollamacli.server.render import FOREVER
from ollamacli.server.schemas import decode_json
from tests.fakes import FakeFactory
from tests.server.conftest import LiveServer

LONE = "\\ud800"  # as a JSON escape: an unpaired high surrogate
MODEL = '"model":"tiny"'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"a\\ud800b"', "a\ufffdb"),
        ('"\\udc00"', "\ufffd"),
        ('"\\ud83d\\ude00"', "\U0001f600"),  # a real pair stays one character
        ('{"\\ud800": ["x", {"y": "\\udfff"}]}', {"\ufffd": ["x", {"y": "\ufffd"}]}),
        ('"\\\\ud800"', "\\ud800"),  # an escaped backslash, not an escape
    ],
)
def test_decode_json_replaces_lone_surrogates_as_go_does(raw: str, expected: object) -> None:
    assert decode_json(raw.encode()) == expected


def test_decode_json_replaces_invalid_utf8_and_survives_deep_values() -> None:
    assert decode_json(b'"a\xffb"') == "a\ufffdb"
    deep = "[" * 500 + '"\\ud800"' + "]" * 500
    value = decode_json(deep.encode())
    for _ in range(500):
        assert isinstance(value, list)
        value = value[0]
    assert value == "\ufffd"


SURROGATE_BODIES = [
    ("/api/chat", f'{{{MODEL},"messages":[{{"role":"user","content":"{LONE}"}}]}}'),
    ("/api/chat", f'{{{MODEL},"messages":[{{"role":"{LONE}","content":"x"}}]}}'),
    ("/api/chat", f'{{{MODEL},"messages":[{{"role":"user","content":"x","images":["{LONE}"]}}]}}'),
    (
        "/api/chat",
        f'{{{MODEL},"messages":[{{"role":"user","content":"x"}}],'
        f'"tools":[{{"type":"function","function":{{"name":"{LONE}","parameters":{{}}}}}}]}}',
    ),
    ("/api/chat", f'{{{MODEL},"messages":[],"keep_alive":"{LONE}"}}'),
    ("/api/generate", f'{{{MODEL},"prompt":"{LONE}"}}'),
    ("/api/generate", f'{{{MODEL},"prompt":"x","system":"{LONE}"}}'),
    ("/api/generate", f'{{{MODEL},"prompt":"x","template":"{{{{ .Prompt }}}}{LONE}"}}'),
    ("/api/generate", f'{{{MODEL},"prompt":"x","format":"{LONE}"}}'),
    ("/api/generate", f'{{{MODEL},"prompt":"x","options":{{"stop":["{LONE}"]}}}}'),
    ("/api/generate", f'{{{MODEL},"prompt":"x","options":{{"{LONE}":1}}}}'),
    ("/api/generate", f'{{"model":"{LONE}","prompt":"x"}}'),
    ("/api/embed", f'{{{MODEL},"input":["{LONE}"]}}'),
    ("/api/embeddings", f'{{{MODEL},"prompt":"{LONE}"}}'),
    ("/api/show", f'{{"model":"{LONE}"}}'),
    ("/api/pull", f'{{"model":"{LONE}"}}'),
    ("/api/copy", f'{{"source":"tiny","destination":"{LONE}"}}'),
    ("/api/create", f'{{"model":"x","from":"tiny","system":"{LONE}","template":"{LONE}"}}'),
    (
        "/api/create",
        f'{{"model":"x","from":"tiny","messages":[{{"role":"user","content":"{LONE}"}}]}}',
    ),
    ("/api/create", f'{{"model":"x","modelfile":"FROM tiny\\nSYSTEM {LONE}"}}'),
    ("/v1/chat/completions", f'{{{MODEL},"messages":[{{"role":"user","content":"{LONE}"}}]}}'),
    (
        "/v1/chat/completions",
        f'{{{MODEL},"messages":[{{"role":"assistant","content":"","tool_calls":[{{"id":"1",'
        f'"type":"function","function":{{"name":"f","arguments":"{{\\"a\\":\\"\\\\ud800\\"}}"}}}}]}},'
        f'{{"role":"user","content":"x"}}]}}',
    ),
    ("/v1/completions", f'{{{MODEL},"prompt":"{LONE}"}}'),
    ("/v1/embeddings", f'{{{MODEL},"input":"{LONE}"}}'),
]


@pytest.mark.parametrize(("path", "raw"), SURROGATE_BODIES)
def test_lone_surrogates_never_make_a_500(live: LiveServer, path: str, raw: str) -> None:
    with live.client() as client:
        response = client.post(
            path, content=raw.encode(), headers={"content-type": "application/json"}
        )
        alive = client.get("/api/version")
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"] if path.startswith("/v1/") else error, str)
    assert alive.status_code == 200


def test_lone_surrogates_reach_the_model_as_replacement_characters(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    raw = f'{{{MODEL},"messages":[{{"role":"user","content":"a{LONE}b"}}]}}'
    with live.client() as client:
        response = client.post("/api/chat", content=raw.encode())
    assert response.status_code == 200
    prompt = fake_factory.loaded[-1].prompts[-1]
    assert isinstance(prompt, str)
    assert "a\ufffdb" in prompt


def test_request_bodies_over_the_limit_get_413(make_server: Callable[..., object]) -> None:
    big = {"model": "tiny", "prompt": "x" * 5000}
    digest = "sha256:" + hashlib.sha256(b"b" * 5000).hexdigest()

    def chunks() -> Iterator[bytes]:
        yield b'{"model":"tiny","prompt":"'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    with make_server(FakeFactory(), max_body_size=1000) as live, live.client() as client:  # type: ignore[attr-defined]
        ollama = client.post("/api/generate", json=big)
        openai = client.post("/v1/completions", json=big)
        chunked = client.post("/api/generate", content=chunks())
        small = client.post("/api/generate", json={"model": "tiny", "prompt": "hi"})
        blob = client.post(f"/api/blobs/{digest}", content=b"b" * 5000)
    assert ollama.status_code == 413
    assert ollama.json() == {"error": "request body too large: the limit is 1000 bytes"}
    assert openai.status_code == 413
    assert openai.json()["error"]["type"] == "invalid_request_error"
    assert chunked.status_code == 413
    assert "request body too large" in chunked.json()["error"]
    assert small.status_code == 200
    assert blob.status_code == 201  # uploads stream to disk: no limit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, DEFAULT_MAX_BODY_SIZE),
        ("1048576", 1 << 20),
        ("64k", 64 << 10),
        ("32MiB", 32 << 20),
        ("1g", 1 << 30),
        ("0", 0),
        ("lots", DEFAULT_MAX_BODY_SIZE),
    ],
)
def test_the_body_limit_comes_from_the_environment(value: str | None, expected: int) -> None:
    env = {} if value is None else {"OLLAMACLI_MAX_BODY_SIZE": value}
    assert Settings.from_env({"OLLAMACLI_HOME": "/tmp/x", **env}).max_body_size == expected


def test_keep_alive_beyond_gos_range_is_forever_and_ps_keeps_working(live: LiveServer) -> None:
    with live.client() as client:
        huge = client.post(
            "/api/generate", json={"model": "tiny", "prompt": "x", "keep_alive": 1e308}
        )
        ps = client.get("/api/ps")
        overflow = client.post(
            "/api/generate", json={"model": "tiny", "prompt": "x", "keep_alive": "9999999999999h"}
        )
        again = client.get("/api/ps")
    assert huge.status_code == 200
    assert ps.status_code == 200
    assert ps.json()["models"][0]["expires_at"] == FOREVER
    assert overflow.status_code == 400  # as Go's time.ParseDuration: out of range
    assert "invalid duration" in overflow.json()["error"]
    assert again.status_code == 200


def test_durations_are_forever_or_within_gos_range() -> None:
    assert parse_duration(1e308) == float("inf")
    assert parse_duration(MAX_DURATION + 1) == float("inf")
    assert parse_duration("2562047h") == 2562047 * 3600.0
    with pytest.raises(InvalidRequestError):
        parse_duration("2562048h")


@pytest.mark.parametrize("role", ["tool", "User", "developer", ""])
def test_create_refuses_message_roles_a_modelfile_refuses(live: LiveServer, role: str) -> None:
    body = {"model": "x", "from": "tiny", "messages": [{"role": role, "content": "hi"}]}
    with live.client() as client:
        response = client.post("/api/create", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "error": f'message role must be one of "system", "user", or "assistant" (got "{role}")'
    }


class _BrokenFactory:
    def load(self, config: LoadConfig) -> Engine:
        raise ModelLoadError(
            f"unable to load model {config.model_path}: bad magic", path=str(config.model_path)
        )


def test_error_bodies_do_not_show_server_paths(make_server: Callable[..., object]) -> None:
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    with make_server(_BrokenFactory()) as live, live.client() as client:  # type: ignore[attr-defined]
        ollama = client.post("/api/chat", json=chat)
        streamed = client.post("/api/chat", json={**chat, "stream": True})
        openai = client.post("/v1/chat/completions", json=chat)
    assert ollama.status_code == 500
    message = ollama.json()["error"]
    assert message.startswith("unable to load model sha256-")
    assert message.endswith(": bad magic")
    for response in (ollama, streamed, openai):
        assert "/" not in response.text.replace("\\/", ""), response.text
    assert openai.json()["error"]["message"] == message


@pytest.mark.parametrize(
    "template",
    ["{{ range 100000000 }}{{ end }}", "{% for i in range(10**9) %}x{% endfor %}"],
    ids=["go", "jinja"],
)
def test_runaway_request_templates_are_a_quick_400(live: LiveServer, template: str) -> None:
    started = time.monotonic()
    with live.client() as client:
        response = client.post(
            "/api/generate", json={"model": "tiny", "prompt": "x", "template": template}
        )
    assert response.status_code == 400
    assert "template error" in response.json()["error"]
    assert time.monotonic() - started < 5


def test_a_client_leaving_stops_its_template_rendering(live: LiveServer) -> None:
    """The model is lent to one request at a time: the next one is served only once the
    abandoned rendering (about 10 s of nested loops) has stopped."""
    slow = "{{ range 3000 }}{{ range 3000 }}{{ end }}{{ end }}{{ .Prompt }}"

    def leave_early() -> None:
        with pytest.raises(httpx.TimeoutException), live.client(timeout=0.5) as client:
            client.post("/api/generate", json={"model": "tiny", "prompt": "x", "template": slow})

    thread = threading.Thread(target=leave_early)
    thread.start()
    thread.join()
    started = time.monotonic()
    with live.client() as client:
        response = client.post("/api/generate", json={"model": "tiny", "prompt": "next"})
    assert response.status_code == 200
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    "raw",
    [
        '\ufeff{"a": "\\ud800"}'.encode(),
        '{"a": "\\ud800"}'.encode("utf-16"),
        b'{"a": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 is invalid UTF-8
    ],
    ids=["utf-8-bom", "utf-16", "encoded-surrogate"],
)
def test_decode_json_reads_the_encodings_python_reads(raw: bytes) -> None:
    value = decode_json(raw)
    assert isinstance(value, dict)
    assert set(value["a"]) == {"\ufffd"}
