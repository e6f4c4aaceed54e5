"""A local Ollama-style (docker-registry-v2) registry for tests and benchmarks.

It serves `GET /v2/<ns>/<model>/manifests/<tag>` and `GET|HEAD /v2/<ns>/<model>/blobs/<digest>`
over real HTTP on 127.0.0.1, honours `Range`, can answer an anonymous Bearer-token challenge
(`token=True`), can redirect blob requests to a second listener on another port, the way
registry.ollama.ai redirects to its CDN (`redirect=True`), and injects the faults in
`self.faults` (dropped connections, slow or stalled bodies, wrong bytes, 500s, Range ignored).

Run it by hand as a new user would point ollamacli at it:

    python -m tests.servers.registry --port 5000 --model tiny:latest=path/to/model.gguf
    ollamacli pull --insecure 127.0.0.1:5000/library/tiny:latest
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.servers.base import LocalServer, ServerApp, sha256_path, write_blob

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
MODEL_TYPE = "application/vnd.ollama.image.model"
TEMPLATE_TYPE = "application/vnd.ollama.image.template"
PARAMS_TYPE = "application/vnd.ollama.image.params"
LICENSE_TYPE = "application/vnd.ollama.image.license"

_MANIFEST = re.compile(r"/v2/([^/]+)/([^/]+)/manifests/([^/]+)")
_BLOB = re.compile(r"/v2/([^/]+)/([^/]+)/blobs/(sha256:[0-9a-f]{64})")
_CDN = re.compile(r"/cdn/(sha256:[0-9a-f]{64})")
_UPLOADS = re.compile(r"/v2/([^/]+)/([^/]+)/blobs/uploads/")
_SESSION = re.compile(r"/v2/([^/]+)/([^/]+)/blobs/uploads/([0-9a-f]{32})")


class RegistryApp(ServerApp):
    """The registry's state: manifests, blobs, options and what happened."""

    def __init__(self, root: Path, *, token: bool = False, redirect: bool = False) -> None:
        super().__init__()
        self.root = root
        self.token = token
        self.redirect = redirect
        self.manifests: dict[tuple[str, str, str], bytes] = {}
        self.blobs: dict[str, Path] = {}
        self.tokens_issued: list[dict[str, str]] = []
        self.refuse_tokens = False
        self.registry_port = 0
        self.cdn_port = 0
        self.uploads: dict[str, Path] = {}
        """Open upload sessions (push): their data so far."""

    # -- content -------------------------------------------------------------------------------

    def add_blob(self, data: bytes | Path) -> tuple[str, int]:
        """Serve some bytes (or an existing file, not copied); returns (digest, size)."""
        if isinstance(data, Path):
            digest, path = sha256_path(data), data
        else:
            digest, path = write_blob(self.root / "blobs", data)
        self.blobs[digest] = path
        return digest, path.stat().st_size

    def add_model(
        self,
        name: str,
        model: bytes | Path,
        *,
        template: str | None = None,
        params: dict[str, object] | None = None,
        license: str | None = None,
        config: dict[str, object] | None = None,
    ) -> bytes:
        """Publish `[ns/]model[:tag]` with a model layer and optional extras; returns the manifest."""
        layers = [self._layer(MODEL_TYPE, model)]
        if template is not None:
            layers.append(self._layer(TEMPLATE_TYPE, template.encode()))
        if params is not None:
            layers.append(self._layer(PARAMS_TYPE, json.dumps(params).encode()))
        if license is not None:
            layers.append(self._layer(LICENSE_TYPE, license.encode()))
        body = config or {"model_format": "gguf", "model_family": "llama", "file_type": "F32"}
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": self._layer(CONFIG_TYPE, json.dumps(body).encode()),
            "layers": layers,
        }
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        self.publish(name, raw)
        return raw

    def publish(self, name: str, raw: bytes) -> None:
        """Serve raw manifest bytes under a name."""
        repo, _, tag = name.partition(":")
        namespace, _, model = repo.rpartition("/")
        self.manifests[(namespace or "library", model, tag or "latest")] = raw

    def _layer(self, media_type: str, data: bytes | Path) -> dict[str, object]:
        digest, size = self.add_blob(data)
        return {"mediaType": media_type, "digest": digest, "size": size}

    # -- HTTP ----------------------------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        self.record(handler)
        url = urlsplit(handler.path)
        if url.path == "/token":
            self._token(handler, parse_qs(url.query))
            return
        if (cdn := _CDN.fullmatch(url.path)) is not None:
            self._blob(handler, cdn.group(1))
            return
        if self.token and not self._authorized(handler):
            self._challenge(handler)
            return
        if handler.command in ("POST", "PATCH", "PUT"):
            self._receive(handler, url.path, parse_qs(url.query))
        elif (found := _MANIFEST.fullmatch(url.path)) is not None:
            self._manifest(handler, found.group(1), found.group(2), found.group(3))
        elif (found := _BLOB.fullmatch(url.path)) is not None:
            self._blob_or_redirect(handler, found.group(3))
        else:
            self.send_json(handler, 404, b'{"errors":[{"code":"NOT_FOUND"}]}')

    def _manifest(self, handler: BaseHTTPRequestHandler, ns: str, model: str, tag: str) -> None:
        key = (ns.lower(), model.lower(), tag.lower())
        found = {(k[0].lower(), k[1].lower(), k[2].lower()): v for k, v in self.manifests.items()}
        if self.take_fault("manifest_500"):
            self.send_json(handler, 500, b'{"errors":[{"code":"UNKNOWN"}]}')
        elif key not in found:
            body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
            self.send_json(handler, 404, body)
        else:
            self.send_json(handler, 200, found[key], content_type=MANIFEST_TYPE)

    def _blob_or_redirect(self, handler: BaseHTTPRequestHandler, digest: str) -> None:
        if self.redirect and digest in self.blobs:
            location = f"http://127.0.0.1:{self.cdn_port}/cdn/{digest}?expires={int(time.time())}"
            self.send_json(handler, 307, b"", Location=location)
            return
        self._blob(handler, digest)

    def _blob(self, handler: BaseHTTPRequestHandler, digest: str) -> None:
        path = self.blobs.get(digest)
        if path is None:
            self.send_json(handler, 404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
            return
        self.send_file(handler, path, digest)

    # -- push ----------------------------------------------------------------------------------

    def _receive(
        self, handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]
    ) -> None:
        """Docker-registry-v2 uploads: open a session, append chunks, close it with a digest;
        then a manifest whose blobs are all here."""
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if handler.command == "POST" and (found := _UPLOADS.fullmatch(path)) is not None:
            session = uuid.uuid4().hex
            self.uploads[session] = self.root / "uploads" / session
            self.uploads[session].parent.mkdir(parents=True, exist_ok=True)
            self.uploads[session].write_bytes(b"")
            location = f"/v2/{found.group(1)}/{found.group(2)}/blobs/uploads/{session}"
            self.send_json(handler, 202, b"", Location=location)
        elif (found := _SESSION.fullmatch(path)) is not None and found.group(3) in self.uploads:
            self._append(handler, found.group(3), body, query)
        elif handler.command == "PUT" and (found := _MANIFEST.fullmatch(path)) is not None:
            manifest = json.loads(body)
            layers = [manifest["config"], *manifest["layers"]]
            missing = [layer["digest"] for layer in layers if layer["digest"] not in self.blobs]
            if missing:
                self.send_json(handler, 400, b'{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN"}]}')
                return
            self.publish(f"{found.group(1)}/{found.group(2)}:{found.group(3)}", body)
            self.send_json(handler, 201, b"")
        else:
            self.send_json(handler, 404, b'{"errors":[{"code":"NOT_FOUND"}]}')

    def _append(
        self,
        handler: BaseHTTPRequestHandler,
        session: str,
        body: bytes,
        query: dict[str, list[str]],
    ) -> None:
        data = self.uploads[session]
        with data.open("ab") as handle:
            handle.write(body)
        if handler.command == "PATCH":
            size = data.stat().st_size
            self.send_json(handler, 202, b"", Location=handler.path, Range=f"0-{size - 1}")
            return
        digest = query.get("digest", [""])[0]
        del self.uploads[session]
        if sha256_path(data) != digest:
            data.unlink()
            self.send_json(handler, 400, b'{"errors":[{"code":"DIGEST_INVALID"}]}')
            return
        self.blobs[digest] = data
        self.send_json(handler, 201, b"")

    def _expected_token(self, scope: str) -> str:
        return "token-" + scope.replace(":", "-").replace("/", "-")

    def _authorized(self, handler: BaseHTTPRequestHandler) -> bool:
        given = handler.headers.get("Authorization", "")
        found = _MANIFEST.fullmatch(urlsplit(handler.path).path) or _BLOB.fullmatch(
            urlsplit(handler.path).path
        )
        if found is None:
            return True
        scope = f"repository:{found.group(1)}/{found.group(2)}:pull"
        return given == f"Bearer {self._expected_token(scope)}"

    def _challenge(self, handler: BaseHTTPRequestHandler) -> None:
        found = _MANIFEST.fullmatch(urlsplit(handler.path).path) or _BLOB.fullmatch(
            urlsplit(handler.path).path
        )
        assert found is not None
        scope = f"repository:{found.group(1)}/{found.group(2)}:pull"
        realm = f"http://127.0.0.1:{self.registry_port}/token"
        challenge = f'Bearer realm="{realm}",service="test-registry",scope="{scope}"'
        self.send_json(
            handler, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', WWW_Authenticate=challenge
        )

    def _token(self, handler: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        params = {key: values[0] for key, values in query.items()}
        if self.refuse_tokens:
            self.send_json(handler, 403, b'{"errors":[{"code":"DENIED"}]}')
            return
        self.tokens_issued.append(params)
        token = self._expected_token(params.get("scope", ""))
        self.send_json(handler, 200, json.dumps({"token": token}).encode())


class RegistryServer:
    """A running registry: `url`, `host` (`127.0.0.1:<port>`) and the app with its state."""

    def __init__(self, app: RegistryApp) -> None:
        self.app = app
        self._main = LocalServer(app)
        self._cdn = LocalServer(app)
        app.registry_port = self._main.port
        app.cdn_port = self._cdn.port

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._main.port}"

    @property
    def url(self) -> str:
        return self._main.base_url

    def name(self, model: str) -> str:
        """The full pull name of a published model, e.g. `127.0.0.1:5000/library/tiny:latest`."""
        repo, _, tag = model.partition(":")
        if "/" not in repo:
            repo = "library/" + repo
        return f"{self.host}/{repo}:{tag or 'latest'}"

    def blob_url(self, digest: str, repo: str = "library/tiny") -> str:
        return f"{self.url}/v2/{repo}/blobs/{digest}"

    def start(self) -> None:
        self._main.start()
        self._cdn.start()

    def stop(self) -> None:
        self._main.stop()
        self._cdn.stop()


@contextmanager
def running_registry(
    root: Path, *, token: bool = False, redirect: bool = False
) -> Iterator[RegistryServer]:
    """Start a registry for the duration of a `with` block."""
    server = RegistryServer(RegistryApp(root, token=token, redirect=redirect))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    """Serve models from the command line (for manual checks and the benchmark)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--model", action="append", default=[], help="name:tag=path.gguf")
    parser.add_argument("--rate", type=float, default=None, help="bytes/s per response")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        app = RegistryApp(Path(root))
        app.faults.rate = args.rate
        for spec in args.model:
            name, _, path = spec.partition("=")
            app.add_model(name, Path(path))
        server = LocalServer(app, port=args.port)
        app.registry_port = app.cdn_port = server.port
        print(f"registry on {server.base_url}", flush=True)
        server.httpd.serve_forever()


if __name__ == "__main__":
    main()
