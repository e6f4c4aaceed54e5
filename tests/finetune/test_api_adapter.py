"""`/api/create` with a PEFT adapter sent as blobs, as Ollama's client sends an adapter folder."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from ollamacli.config import Settings
from ollamacli.finetune.export import convert_to_temporary
from ollamacli.names import ModelName
from ollamacli.service import build_services
from ollamacli.service.models import CreateSpec
from ollamacli.store import Store
from ollamacli.store.blobs import sha256_bytes
from ollamacli.store.manifests import MEDIA_ADAPTER
from tests.fakes import FakeFactory
from tests.server.conftest import serve_in_thread

pytestmark = [pytest.mark.finetune, pytest.mark.timeout(900)]


def _upload(client: httpx.Client, path: Path) -> str:
    data = path.read_bytes()
    digest = str(sha256_bytes(data))
    assert client.post(f"/api/blobs/{digest}", content=data).status_code == 201
    return digest


def _adapter_digest(store: Store, name: str) -> str:
    manifest = store.manifests.get(ModelName.parse(name)).manifest
    (layer,) = manifest.find(MEDIA_ADAPTER)
    return str(layer.digest)


def test_a_peft_adapter_uploaded_as_blobs_becomes_the_same_gguf_adapter_layer(
    settings: Settings, tiny_gguf: Path, peft_tiny: tuple[Any, Path], smollm2_path: Path
) -> None:
    _, folder = peft_tiny
    services = build_services(settings, FakeFactory(), adapter_converter=convert_to_temporary)
    services.models.create("tiny", CreateSpec(from_file=tiny_gguf))
    before = set(Path(tempfile.gettempdir()).glob("ollamacli-peft-*"))
    with serve_in_thread(services) as live, live.client(timeout=300) as client:
        files = {
            name: _upload(client, folder / name)
            for name in ("adapter_config.json", "adapter_model.safetensors")
        }
        body = {"model": "tiny-peft", "from": "tiny", "adapters": files, "stream": False}
        created = client.post("/api/create", json=body)
        assert created.status_code == 200, created.text
        assert created.json() == {"status": "success"}

        only_config = {"adapter_config.json": files["adapter_config.json"]}
        refused = client.post(
            "/api/create", json={"model": "x", "from": "tiny", "adapters": only_config}
        )
        assert refused.status_code == 400
        assert "needs exactly adapter_config.json and adapter_model.safetensors" in refused.text
        missing = dict(files, **{"adapter_model.safetensors": str(sha256_bytes(b"absent"))})
        refused = client.post(
            "/api/create", json={"model": "x", "from": "tiny", "adapters": missing}
        )
        assert refused.status_code == 400
        assert "upload it first" in refused.text
        # An adapter trained for another base: the converter refuses it as a client error.
        services.models.create("other", CreateSpec(from_file=smollm2_path))
        refused = client.post(
            "/api/create", json={"model": "x", "from": "other", "adapters": files}
        )
        assert refused.status_code == 400, refused.text

    # The same folder through a Modelfile's ADAPTER line gives the identical layer.
    services.models.create("tiny-direct", CreateSpec(from_model="tiny", adapter_files=(folder,)))
    store = services.store
    assert _adapter_digest(store, "tiny-peft") == _adapter_digest(store, "tiny-direct")
    resolved = store.resolve(ModelName.parse("tiny-peft"))
    assert resolved.model_path == store.resolve(ModelName.parse("tiny")).model_path
    assert not store.manifests.exists(ModelName.parse("x"))
    assert set(Path(tempfile.gettempdir()).glob("ollamacli-peft-*")) == before
