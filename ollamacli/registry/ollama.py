"""Client for Ollama's registry protocol (docker-registry-v2 style): manifests, blob URLs, tokens.

`GET /v2/<namespace>/<model>/manifests/<tag>` with Ollama's Accept header, then
`GET /v2/<namespace>/<model>/blobs/<digest>` (which may redirect to a CDN). `https` unless the
pull is insecure. A 401 carrying `WWW-Authenticate: Bearer realm=...,service=...,scope=...` is
answered anonymously: `GET <realm>?service=...&scope=...` returns `{"token": ...}` and the
request is sent again with `Authorization: Bearer <token>` (docker token auth; Ollama also
signs the token request with the user's ed25519 key, which anonymous pulls do not need).
"""

from __future__ import annotations

import base64
import platform
import re
import secrets
import sys
import threading
import time
from collections.abc import Generator

import httpx

from ollamacli import __version__
from ollamacli.errors import ManifestNotFoundError, RegistryError
from ollamacli.names import ModelName
from ollamacli.registry.policy import TransferOptions, retryable_status, with_retries
from ollamacli.store.blobs import Digest
from ollamacli.store.manifests import MANIFEST_MEDIA_TYPE

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
MANIFEST_ATTEMPTS = 3
"""Manifest requests are retried less than blob parts: a wrong address should fail fast."""


def user_agent() -> str:
    """`ollamacli/<version> (<arch> <os>) Python/<version>`, shaped like Ollama's."""
    python = ".".join(str(part) for part in sys.version_info[:3])
    system = platform.system().lower()
    return f"ollamacli/{__version__} ({platform.machine()} {system}) Python/{python}"


def parse_challenge(header: str) -> dict[str, str] | None:
    """The parameters of a `Bearer` challenge (`realm`, `service`, `scope`), or None."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params = dict(_CHALLENGE_PARAM.findall(rest))
    return params if params.get("realm", "").startswith(("http://", "https://")) else None


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


class RegistryAuth(httpx.Auth):
    """Answers anonymous Bearer-token challenges; sends the token to the registry only.

    Blob requests redirected to a CDN (another origin) never carry the token.
    """

    def __init__(self, base_url: str) -> None:
        self._origin = _origin(httpx.URL(base_url))
        self._token: str | None = None
        self._lock = threading.Lock()

    def headers_for(self, url: str) -> dict[str, str]:
        """The Authorization header for a URL of the registry itself (none for a CDN)."""
        with self._lock:
            token = self._token
        if token and _origin(httpx.URL(url)) == self._origin:
            return {"Authorization": f"Bearer {token}"}
        return {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the token; on a 401 challenge, fetch a token and send the request again."""
        ours = _origin(request.url) == self._origin
        request.headers.update(self.headers_for(str(request.url)))
        response = yield request
        if not ours or response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None:
            return
        token_response = yield _token_request(challenge)
        token_response.read()
        token = _read_token(token_response)
        with self._lock:
            self._token = token
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


def _token_request(challenge: dict[str, str]) -> httpx.Request:
    nonce = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
    params = {
        key: value for key, value in challenge.items() if key in ("service", "scope") and value
    }
    params |= {"ts": str(int(time.time())), "nonce": nonce}
    return httpx.Request("GET", challenge["realm"], params=params)


def _read_token(response: httpx.Response) -> str:
    if response.status_code == 200:
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if isinstance(token, str) and token:
            return token
    raise RegistryError(
        "unauthorized: access denied",
        url=str(response.url),
        status=response.status_code,
        hint="the registry refused an anonymous token; this model may need an account",
    )


class _LazyTransport(httpx.BaseTransport):
    """A transport built on its first request.

    httpx loads the system's CA certificates when a transport is made (about 30 ms here), which
    a pull from a plain-http registry (`--insecure`) never needs.
    """

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._transport: httpx.HTTPTransport | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            if self._transport is None:
                self._transport = httpx.HTTPTransport(limits=self._limits)
            transport = self._transport
        return transport.handle_request(request)

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()


def new_client(options: TransferOptions, auth: httpx.Auth | None = None) -> httpx.Client:
    """An HTTP client with ollamacli's User-Agent, timeouts and enough pooled connections."""
    limits = httpx.Limits(max_connections=options.connections + 4)
    return httpx.Client(
        auth=auth,
        headers={"User-Agent": user_agent()},
        timeout=options.timeout(),
        transport=_LazyTransport(limits),
        # Plain http needs no TLS settings, so it gets a transport without certificates.
        mounts={"http://": httpx.HTTPTransport(limits=limits, verify=False)},
    )


class OllamaRegistry:
    """One model's repository on an Ollama-style registry."""

    def __init__(
        self,
        client: httpx.Client,
        name: ModelName,
        *,
        insecure: bool = False,
        options: TransferOptions | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.options = options or TransferOptions()
        self.base_url = f"{'http' if insecure else 'https'}://{name.host}"

    @property
    def manifest_url(self) -> str:
        return (
            f"{self.base_url}/v2/{self.name.namespace}/{self.name.model}/manifests/{self.name.tag}"
        )

    def blob_url(self, digest: Digest) -> str:
        return f"{self.base_url}/v2/{self.name.namespace}/{self.name.model}/blobs/{digest}"

    def fetch_manifest(self) -> bytes:
        """The manifest's bytes, exactly as served.

        Raises `ManifestNotFoundError` for a 404, `RegistryError` for other refusals and
        `DownloadError` when the registry cannot be reached after retries.
        """
        url = self.manifest_url

        def get() -> httpx.Response:
            response = self.client.get(url, headers={"Accept": MANIFEST_MEDIA_TYPE})
            retryable_status(response)
            return response

        response = with_retries(
            get, self.options, what="pull model manifest", url=url, attempts=MANIFEST_ATTEMPTS
        )
        status = response.status_code
        if status == 404:
            raise ManifestNotFoundError(
                "pull model manifest: file does not exist",
                url=url,
                status=status,
                hint=f"check the name '{self.name.short}' (and its tag) on {self.name.host}",
            )
        if status == 401:
            raise RegistryError("pull model manifest: unauthorized: access denied", url=url)
        if status >= 400:
            raise RegistryError(
                f"pull model manifest: {status}: {response.text.strip()[:200]}",
                url=url,
                status=status,
            )
        return response.content
