"""A local Hugging Face Hub endpoint for tests: the routes huggingface_hub and ollamacli call.

- `GET /api/models/<user>/<repo>/tree/<revision>[/<path>]`: the file listing (`list_repo_tree`),
  LFS files with their sha256 (`lfs.oid`), like the Hub's JSON.
- `GET /api/models/<user>/<repo>[/revision/<revision>]`: model info with `siblings`.
- `HEAD|GET /<user>/<repo>/resolve/<revision>/<file>`: the Hub's metadata headers
  (`X-Repo-Commit`, `ETag`, `X-Linked-Etag`, `X-Linked-Size`); LFS files redirect (302) to a
  second listener standing in for the CDN, which serves the bytes with `Range`; small files are
  served directly.
- Unknown repos and revisions answer 404 with the Hub's `X-Error-Code` header.

Point ollamacli at it with `HF_ENDPOINT=<server.url>` (through `Settings.hf_endpoint`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.servers.base import LocalServer, ServerApp, sha256_path, write_blob

_TREE = re.compile(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?")
_INFO = re.compile(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?")
_RESOLVE = re.compile(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)")
_CDN = re.compile(r"/lfs/([0-9a-f]{64})")

LFS_THRESHOLD = 1024
"""Files at least this big are stored as LFS (the Hub's own threshold is 10 MB)."""


@dataclass(frozen=True)
class HubEntry:
    """A file of a repo."""

    path: str
    file: Path
    sha256: str
    git_oid: str
    size: int

    @property
    def is_lfs(self) -> bool:
        """GGUF files are LFS whatever their size (the Hub's default `.gitattributes`)."""
        return self.size >= LFS_THRESHOLD or self.path.endswith(".gguf")


class HubApp(ServerApp):
    """The Hub's state: repos of files, one commit each."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.repos: dict[str, dict[str, HubEntry]] = {}
        self.commits: dict[str, str] = {}
        self.cdn_port = 0

    def add_file(self, repo_id: str, path: str, data: bytes | Path) -> HubEntry:
        """Put a file into a repo (creating the repo); returns its entry."""
        if isinstance(data, Path):
            file, sha256 = data, sha256_path(data).split(":", 1)[1]
        else:
            digest, file = write_blob(self.root / "files", data)
            sha256 = digest.split(":", 1)[1]
        size = file.stat().st_size
        oid = hashlib.sha1(f"{repo_id}/{path}/{sha256}".encode()).hexdigest()
        entry = HubEntry(path, file, sha256, oid, size)
        self.repos.setdefault(repo_id, {})[path] = entry
        self.commits[repo_id] = hashlib.sha1(
            f"{repo_id}{len(self.repos[repo_id])}".encode()
        ).hexdigest()
        return entry

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        self.record(handler)
        path = unquote(urlsplit(handler.path).path)
        if (cdn := _CDN.fullmatch(path)) is not None:
            self._cdn(handler, cdn.group(1))
        elif (tree := _TREE.fullmatch(path)) is not None:
            self._tree(handler, tree.group(1), tree.group(2), tree.group(3) or "")
        elif (info := _INFO.fullmatch(path)) is not None:
            self._info(handler, info.group(1), info.group(2) or "main")
        elif (resolve := _RESOLVE.fullmatch(path)) is not None:
            self._resolve(handler, resolve.group(1), resolve.group(2), resolve.group(3))
        else:
            self._error(handler, 404, "EntryNotFound", "not found")

    def _error(self, handler: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_json(handler, status, body, X_Error_Code=code, X_Error_Message=message)

    def _repo(self, handler: BaseHTTPRequestHandler, repo_id: str, revision: str) -> bool:
        if repo_id not in self.repos:
            self._error(handler, 404, "RepoNotFound", "Repository not found")
            return False
        if revision not in ("main", self.commits[repo_id]):
            self._error(handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return False
        return True

    def _tree(
        self, handler: BaseHTTPRequestHandler, repo_id: str, revision: str, under: str
    ) -> None:
        if not self._repo(handler, repo_id, revision):
            return
        rows = []
        for entry in self.repos[repo_id].values():
            if under and not entry.path.startswith(under.rstrip("/") + "/"):
                continue
            row: dict[str, object] = {
                "type": "file",
                "oid": entry.git_oid,
                "size": entry.size,
                "path": entry.path,
            }
            if entry.is_lfs:
                row["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": 134}
            rows.append(row)
        self.send_json(handler, 200, json.dumps(rows).encode())

    def _info(self, handler: BaseHTTPRequestHandler, repo_id: str, revision: str) -> None:
        if not self._repo(handler, repo_id, revision):
            return
        body = {
            "id": repo_id,
            "modelId": repo_id,
            "sha": self.commits[repo_id],
            "private": False,
            "siblings": [{"rfilename": path} for path in self.repos[repo_id]],
        }
        self.send_json(handler, 200, json.dumps(body).encode())

    def _resolve(
        self, handler: BaseHTTPRequestHandler, repo_id: str, revision: str, path: str
    ) -> None:
        if not self._repo(handler, repo_id, revision):
            return
        entry = self.repos[repo_id].get(path)
        if entry is None:
            self._error(handler, 404, "EntryNotFound", f"{path} does not exist")
            return
        commit = self.commits[repo_id]
        if not entry.is_lfs:
            self.send_file(
                handler, entry.file, entry.sha256, ETag=f'"{entry.git_oid}"', X_Repo_Commit=commit
            )
            return
        location = f"http://127.0.0.1:{self.cdn_port}/lfs/{entry.sha256}"
        self.send_json(
            handler,
            302,
            b"",
            Location=location,
            ETag=f'"{entry.git_oid}"',
            X_Linked_Etag=f'"{entry.sha256}"',
            X_Linked_Size=str(entry.size),
            X_Repo_Commit=commit,
        )

    def _cdn(self, handler: BaseHTTPRequestHandler, sha256: str) -> None:
        for files in self.repos.values():
            for entry in files.values():
                if entry.sha256 == sha256:
                    self.send_file(handler, entry.file, "sha256:" + sha256, ETag=f'"{sha256}"')
                    return
        self._error(handler, 404, "EntryNotFound", "no such object")


class HubServer:
    """A running Hub endpoint (`url`) and its CDN, sharing one `HubApp`."""

    def __init__(self, app: HubApp) -> None:
        self.app = app
        self._main = LocalServer(app)
        self._cdn = LocalServer(app)
        app.cdn_port = self._cdn.port

    @property
    def url(self) -> str:
        return self._main.base_url

    def start(self) -> None:
        self._main.start()
        self._cdn.start()

    def stop(self) -> None:
        self._main.stop()
        self._cdn.stop()


@contextmanager
def running_hub(root: Path) -> Iterator[HubServer]:
    """Start a Hub endpoint for the duration of a `with` block."""
    server = HubServer(HubApp(root))
    server.start()
    try:
        yield server
    finally:
        server.stop()
