"""A registry serving a damaged GGUF: the pull is refused before the manifest is written, with
an error that names the defect, and the blobs it brought are removed again."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamacli.config import Settings
from ollamacli.service import build_services
from ollamacli.store import Store
from tests.factories import BAD_GGUFS, make_bad_gguf
from tests.fakes import FakeFactory
from tests.server.conftest import serve_in_thread
from tests.servers.registry import RegistryServer


def _nothing_stored(store: Store) -> None:
    assert store.entries() == []
    assert list(store.blobs.root.iterdir()) == []  # no blob, part, temporary file or lease


@pytest.mark.parametrize("defect", sorted(BAD_GGUFS))
def test_pull_cli_refuses_a_damaged_gguf(
    cli, registry: RegistryServer, store: Store, tmp_path: Path, defect: str
):
    registry.app.add_model("bad", make_bad_gguf(tmp_path / "bad.gguf", defect))

    result = cli("pull", "--insecure", registry.name("bad"))

    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[-2].startswith(f"Error: the model layer of {registry.host}/library/bad:latest: ")
    assert BAD_GGUFS[defect] in lines[-2]
    assert lines[-1] == "the registry serves a damaged model"
    _nothing_stored(store)


def test_api_pull_of_a_damaged_gguf_is_a_400(
    registry: RegistryServer, settings: Settings, store: Store, tmp_path: Path
):
    registry.app.add_model("bad", make_bad_gguf(tmp_path / "bad.gguf", "truncated"))
    services = build_services(settings, FakeFactory(), fetcher=lambda name, sink: None)
    with serve_in_thread(services) as live, live.client() as client:
        body = {"model": registry.name("bad"), "insecure": True, "stream": False}
        response = client.post("/api/pull", json=body)
    assert response.status_code == 400
    assert "truncated GGUF file: the data of tensor" in response.json()["error"]
    assert str(tmp_path) not in response.text
    _nothing_stored(store)
