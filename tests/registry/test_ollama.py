"""The Ollama registry client: URLs, Accept header, token challenges and manifest errors."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest

from ollamacli.errors import DownloadError, ManifestNotFoundError, RegistryError
from ollamacli.names import ModelName
from ollamacli.registry.ollama import (
    OllamaRegistry,
    RegistryAuth,
    _LazyTransport,
    new_client,
    parse_challenge,
    user_agent,
)
from ollamacli.store.blobs import sha256_bytes
from tests.registry.conftest import FAST
from tests.servers.registry import RegistryServer, running_registry


def _registry(client, name: str, *, insecure: bool = True) -> OllamaRegistry:
    return OllamaRegistry(client, ModelName.parse(name), insecure=insecure, options=FAST)


def test_urls_follow_the_v2_layout():
    with new_client(FAST) as client:
        secure = _registry(client, "example.com:5000/team/model:v2", insecure=False)
        plain = _registry(client, "example.com:5000/team/model:v2")
    digest = sha256_bytes(b"x")
    assert secure.manifest_url == "https://example.com:5000/v2/team/model/manifests/v2"
    assert plain.blob_url(digest) == f"http://example.com:5000/v2/team/model/blobs/{digest}"
    assert _registry(client, "llama3.2").base_url == "http://registry.ollama.ai"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://r.io/token",service="r.io",scope="repository:a/b:pull"',
            {"realm": "https://r.io/token", "service": "r.io", "scope": "repository:a/b:pull"},
        ),
        ('bearer realm="http://h/t"', {"realm": "http://h/t"}),
        ('Basic realm="x"', None),
        ('Bearer realm="file:///etc/passwd"', None),
        ("", None),
    ],
    ids=["full", "lowercase-scheme", "basic", "not-http-realm", "empty"],
)
def test_parse_challenge(header, expected):
    assert parse_challenge(header) == expected


def test_manifest_is_fetched_with_ollamas_accept_header_and_user_agent(
    registry: RegistryServer, tiny_gguf: Path
):
    raw = registry.app.add_model("tiny:latest", tiny_gguf)
    with new_client(FAST) as client:
        assert _registry(client, registry.name("tiny")).fetch_manifest() == raw
    request = registry.app.requests[0]
    assert request.headers["accept"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert request.headers["user-agent"] == user_agent()
    assert user_agent().startswith("ollamacli/")


def test_manifest_lookup_ignores_letter_case_like_ollama(registry: RegistryServer, tiny_gguf: Path):
    raw = registry.app.add_model("Tiny:Latest", tiny_gguf)
    with new_client(FAST) as client:
        assert _registry(client, registry.name("tiny:latest")).fetch_manifest() == raw


def test_missing_manifest_raises_ollamas_message(registry: RegistryServer):
    with new_client(FAST) as client, pytest.raises(ManifestNotFoundError) as caught:
        _registry(client, registry.name("missing")).fetch_manifest()
    assert str(caught.value) == "pull model manifest: file does not exist"
    assert caught.value.status == 404


def test_token_challenge_is_answered_once_and_token_reused(tmp_path: Path, tiny_gguf: Path):
    with running_registry(tmp_path / "r", token=True) as registry:
        registry.app.add_model("tiny", tiny_gguf)
        auth = RegistryAuth(registry.url)
        with new_client(FAST, auth) as client:
            manifest = _registry(client, registry.name("tiny")).fetch_manifest()
            again = _registry(client, registry.name("tiny")).fetch_manifest()
        assert manifest == again
        assert len(registry.app.tokens_issued) == 1
        token = registry.app.tokens_issued[0]
        assert set(token) == {"service", "scope", "ts", "nonce"}
        assert auth.headers_for(registry.url + "/v2/x") == {
            "Authorization": "Bearer token-repository-library-tiny-pull"
        }
        assert auth.headers_for("http://cdn.example/blob") == {}


def test_refused_token_is_unauthorized(tmp_path: Path, tiny_gguf: Path):
    with running_registry(tmp_path / "r", token=True) as registry:
        registry.app.add_model("tiny", tiny_gguf)
        registry.app.refuse_tokens = True
        with (
            new_client(FAST, RegistryAuth(registry.url)) as client,
            pytest.raises(RegistryError, match="unauthorized: access denied"),
        ):
            _registry(client, registry.name("tiny")).fetch_manifest()


def test_unreachable_registry_fails_after_retries_with_one_message():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = replace(FAST, connect_timeout=2.0)
    with new_client(options) as client, pytest.raises(DownloadError) as caught:
        _registry(client, f"127.0.0.1:{port}/library/tiny").fetch_manifest()
    assert str(caught.value).startswith("pull model manifest: ConnectError")
    assert caught.value.hint


def test_plain_http_pull_never_builds_the_tls_transport(registry: RegistryServer, tiny_gguf: Path):
    raw = registry.app.add_model("tiny:latest", tiny_gguf)
    with new_client(FAST) as client:
        tls = client._transport  # the https (and default) transport, built on first use
        assert isinstance(tls, _LazyTransport)
        assert _registry(client, registry.name("tiny")).fetch_manifest() == raw
        assert tls._transport is None
        with pytest.raises(DownloadError):
            # Nothing listens there; the request still needs, and so builds, the TLS transport.
            OllamaRegistry(
                client, ModelName.parse(f"127.0.0.1:{_closed_port()}/library/tiny"), options=FAST
            ).fetch_manifest()
        assert tls._transport is not None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
