"""Hostile names, files and store failures at the API: a clear 4xx/5xx, never a hang or a path."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from ollamacli.config import Settings
from ollamacli.service import build_services
from tests.factories import BAD_GGUFS, make_bad_gguf
from tests.fakes import FakeFactory
from tests.server.conftest import LiveServer, serve_in_thread

LONG_HOST = "h" * 300


def _leftovers(models: Path) -> list[str]:
    """Temporary files and writer leases in the blobs folder."""
    return sorted(p.name for p in (models / "blobs").iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/create", {"model": f"{LONG_HOST}/ns/m", "from": "tiny"}),
        ("/api/pull", {"model": f"{LONG_HOST}/ns/m"}),
        ("/api/show", {"model": f"{LONG_HOST}/ns/m"}),
        ("/api/delete", {"model": f"{LONG_HOST}/ns/m"}),
        ("/api/copy", {"source": "tiny", "destination": f"{LONG_HOST}/ns/m"}),
    ],
    ids=["create", "pull", "show", "delete", "copy"],
)
def test_api_name_too_long_for_the_store_is_a_400(live: LiveServer, path, body) -> None:
    with live.client() as client:
        response = client.request("DELETE" if path == "/api/delete" else "POST", path, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith("invalid model name")
    assert "host is 300 characters long (at most 255)" in error


def _upload(client, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert client.post(f"/api/blobs/{digest}", content=data).status_code == 201
    return digest


@pytest.mark.parametrize("defect", sorted(BAD_GGUFS))
@pytest.mark.parametrize("field", ["files", "adapters"])
def test_api_create_refuses_a_bad_gguf_with_a_400_naming_the_defect(
    live: LiveServer, settings: Settings, tmp_path: Path, defect: str, field: str
) -> None:
    data = make_bad_gguf(tmp_path / f"{defect}.gguf", defect).read_bytes()
    with live.client() as client:
        digest = _upload(client, data)
        body: dict[str, object] = {"model": "bad", field: {"m.gguf": digest}}
        if field == "adapters":
            body["from"] = "tiny"
        response = client.post("/api/create", json={**body, "stream": False})
        names = [m["name"] for m in client.get("/api/tags").json()["models"]]
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert BAD_GGUFS[defect] in error
    assert digest in error  # names the file the client sent, not a server path
    assert str(tmp_path) not in error
    assert names == ["tiny:latest"]
    assert _leftovers(settings.models) == []


def test_api_create_from_a_fifo_in_the_blob_store_does_not_hang(
    live: LiveServer, settings: Settings
) -> None:
    digest = "sha256:" + "ab" * 32
    os.mkfifo(settings.models / "blobs" / ("sha256-" + "ab" * 32))
    with live.client(timeout=10) as client:
        head = client.head(f"/api/blobs/{digest}")
        response = client.post("/api/create", json={"model": "x", "files": {"m.gguf": digest}})
    assert head.status_code == 404
    assert response.status_code == 400
    assert "not found" in response.json()["error"]


def test_api_store_failure_is_one_line_without_server_paths(
    settings: Settings, tmp_path: Path
) -> None:
    services = build_services(settings, FakeFactory())
    blobs = settings.models / "blobs"
    blobs.parent.mkdir(parents=True, exist_ok=True)
    blobs.write_bytes(b"a file where the blobs folder should be")
    data = b"some layer"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with serve_in_thread(services) as live, live.client() as client:
        upload = client.post(f"/api/blobs/{digest}", content=data)
        create = client.post("/api/create", json={"model": "x", "files": {"m.gguf": digest}})
        tags = client.get("/api/tags")
    assert upload.status_code == 500
    assert upload.json() == {"error": "cannot write to the model store: file exists"}
    assert create.status_code == 400  # the blob never arrived
    assert tags.status_code == 200
    for response in (upload, create):
        assert str(tmp_path) not in response.text
    shutil.rmtree(settings.models, ignore_errors=True)
