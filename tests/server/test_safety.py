"""Safe defaults: DNS-rebinding guard, CORS, API key, and no request can make the server 500."""

from __future__ import annotations

import json

import ollama
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollamacli.config import HostAddress, Settings
from ollamacli.server.app import startup_warnings
from ollamacli.server.middleware import is_local_host, origin_allowed
from tests.fakes import FakeFactory
from tests.server.conftest import LiveServer


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost:11434", True),
        ("127.0.0.1:11434", True),
        ("[::1]:11434", True),
        ("0.0.0.0", True),
        ("192.168.1.20:11434", True),
        ("app.localhost", True),
        ("printer.local", True),
        ("db.internal:8080", True),
        ("", True),
        ("evil.example", False),
        ("evil.example:11434", False),
        ("8.8.8.8", False),
        ("localhost.evil.example", False),
    ],
)
def test_is_local_host(host: str, allowed: bool) -> None:
    assert is_local_host(host) is allowed


def test_foreign_host_header_is_refused_when_bound_to_loopback(live: LiveServer) -> None:
    with live.client() as client:
        evil = client.get("/api/tags", headers={"Host": "evil.example:11434"})
        local = client.get("/api/tags", headers={"Host": "localhost:11434"})
    assert evil.status_code == 403
    assert "not allowed" in evil.json()["error"]
    assert local.status_code == 200


def test_host_check_is_off_when_bound_to_all_interfaces(make_server) -> None:
    wide = HostAddress(host="0.0.0.0")
    with make_server(FakeFactory(), host=wide) as live, live.client() as client:
        response = client.get("/", headers={"Host": "my-server.example.com"})
    assert response.status_code == 200


def test_default_cors_origins(live: LiveServer) -> None:
    with live.client() as client:
        local = client.get("/api/tags", headers={"Origin": "http://localhost:3000"})
        extension = client.get("/", headers={"Origin": "chrome-extension://abcdef"})
        evil = client.get("/api/tags", headers={"Origin": "https://evil.example"})
        no_origin = client.get("/api/tags")
    assert local.status_code == 200
    assert local.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert extension.status_code == 200
    assert evil.status_code == 403
    assert "access-control-allow-origin" not in no_origin.headers


def test_cors_preflight_and_extra_origins(make_server) -> None:
    extra = ("https://app.example",)
    with make_server(FakeFactory(), origins=extra) as live, live.client() as client:
        preflight = client.options(
            "/api/chat",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        allowed = client.get("/", headers={"Origin": "https://app.example"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "Content-Type" in preflight.headers["access-control-allow-headers"]
    assert allowed.status_code == 200


@pytest.mark.parametrize(
    ("origin", "patterns", "allowed"),
    [
        ("http://localhost:8080", (), True),
        ("https://127.0.0.1", (), True),
        ("vscode-webview://x", (), True),
        ("http://localhost.evil.example", (), False),
        ("https://a.example", ("https://*.example",), True),
        ("https://anything", ("*",), True),
    ],
)
def test_origin_patterns(origin: str, patterns: tuple[str, ...], allowed: bool) -> None:
    from ollamacli.server.middleware import DEFAULT_ORIGINS

    assert origin_allowed(origin, (*DEFAULT_ORIGINS, *patterns)) is allowed


def test_api_key_is_required_when_set(make_server, monkeypatch: pytest.MonkeyPatch) -> None:
    with make_server(FakeFactory(), api_key="s3cret") as live, live.client() as client:
        missing = client.get("/api/tags")
        wrong = client.get("/api/tags", headers={"Authorization": "Bearer nope"})
        right = client.get("/api/tags", headers={"Authorization": "Bearer s3cret"})
        openai_missing = client.get("/v1/models")
        monkeypatch.setenv("OLLAMA_API_KEY", "s3cret")
        with ollama.Client(host=live.url) as keyed:
            listed = keyed.list()
        with openai.OpenAI(base_url=f"{live.url}/v1", api_key="s3cret") as oai:
            models = [m.id for m in oai.models.list()]
        with (
            openai.OpenAI(base_url=f"{live.url}/v1", api_key="bad", max_retries=0) as bad,
            pytest.raises(openai.AuthenticationError),
        ):
            bad.models.list()
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {"error": "unauthorized: missing or wrong API key"}
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert openai_missing.json()["error"]["type"] == "authentication_error"
    assert [m.model for m in listed.models] == ["tiny:latest"]
    assert models == ["tiny:latest"]


@pytest.mark.parametrize(
    ("host", "key", "warns"),
    [("127.0.0.1", None, False), ("0.0.0.0", None, True), ("0.0.0.0", "k", False)],
)
def test_serve_warns_when_exposed_without_a_key(host: str, key: str | None, warns: bool) -> None:
    config = Settings(host=HostAddress(host=host), api_key=key)
    assert bool(startup_warnings(config)) is warns


ROUTES = [
    ("POST", "/api/generate"),
    ("POST", "/api/chat"),
    ("POST", "/api/create"),
    ("POST", "/api/show"),
    ("POST", "/api/copy"),
    ("DELETE", "/api/delete"),
    ("POST", "/api/pull"),
    ("POST", "/api/blobs/sha256:" + "1" * 64),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("GET", "/v1/models/tiny"),
]
FIELDS = [
    "model",
    "name",
    "prompt",
    "messages",
    "stream",
    "options",
    "keep_alive",
    "format",
    "raw",
    "context",
    "system",
    "template",
    "from",
    "files",
    "adapters",
    "parameters",
    "license",
    "modelfile",
    "source",
    "destination",
    "role",
    "content",
    "temperature",
    "max_tokens",
    "stop",
    "think",
    "images",
    "tools",
    "response_format",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["tiny", "tiny:latest", "../x", "", "5m", "-1", "json", "FROM tiny", "user"])
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)
bodies = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6).map(
    lambda body: json.dumps(body).encode()
) | st.binary(max_size=64)


@pytest.mark.slow
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(route=st.sampled_from(ROUTES), body=bodies)
def test_no_request_makes_the_server_answer_500(
    live: LiveServer, route: tuple[str, str], body: bytes
) -> None:
    method, path = route
    with live.client() as client:
        response = client.request(method, path, content=body)
        response.read()
        alive = client.get("/")
    assert response.status_code < 500 or response.status_code == 503, (
        response.status_code,
        response.text,
    )
    assert alive.text == "Ollama is running"
    if response.headers.get("content-type", "").startswith("application/x-ndjson"):
        lines = [json.loads(line) for line in response.text.splitlines() if line]
        assert all("internal server error" not in str(line) for line in lines)


def test_deeply_nested_json_is_a_400(live: LiveServer) -> None:
    body = b'{"model": "tiny", "options": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with live.client() as client:
        response = client.post("/api/generate", content=body)
    assert response.status_code == 400


def test_a_huge_blob_upload_with_the_wrong_digest_is_not_kept(live: LiveServer) -> None:
    data = b"x" * (3 << 20)
    digest = "sha256:" + "2" * 64
    with live.client() as client:
        response = client.post(f"/api/blobs/{digest}", content=data)
    assert response.status_code == 400
    blobs = live.services.store.blobs
    assert not blobs.path(digest).exists()  # type: ignore[arg-type]  # a digest string
    assert not list(blobs.root.glob(".tmp-*"))
