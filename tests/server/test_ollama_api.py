"""Ollama's native API on a live server with scripted engines: shapes, statuses, errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from ollamacli import __version__
from ollamacli.errors import RegistryError
from ollamacli.names import ModelName
from ollamacli.progress import ProgressEvent, ProgressSink
from tests.factories import make_random_llama_gguf, make_tiny_gguf
from tests.fakes import FailingFactory, FakeFactory
from tests.server.conftest import LiveServer

STATS = {
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
}


def ndjson(response: httpx.Response) -> list[dict[str, object]]:
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines() if line]


def test_root_and_version_answer(live: LiveServer) -> None:
    with live.client() as client:
        root = client.get("/")
        head = client.head("/")
        version = client.get("/api/version")
    assert (root.status_code, root.text) == (200, "Ollama is running")
    assert head.status_code == 200
    assert version.json() == {"version": __version__}


def test_chat_without_stream_returns_one_object(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("Hello", " there")
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}
    with live.client() as client:
        response = client.post("/api/chat", json=body)
    assert response.status_code == 200
    data = response.json()
    assert data["message"] == {"role": "assistant", "content": "Hello there"}
    assert data["model"] == "tiny"
    assert data["done"] is True
    assert data["done_reason"] == "stop"
    assert data["created_at"].endswith("Z")
    assert data["eval_count"] == 2
    assert STATS - {"load_duration"} <= data.keys()


def test_chat_stream_true_sends_ndjson_chunks_then_stats(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("Hello", " there")
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    with live.client() as client:
        lines = ndjson(client.post("/api/chat", json=body))
    assert [line["message"] for line in lines[:2]] == [
        {"role": "assistant", "content": "Hello"},
        {"role": "assistant", "content": " there"},
    ]
    assert all(line["done"] is False for line in lines[:2])
    final = lines[-1]
    assert len(lines) == 3
    assert final["done"] is True
    assert final["done_reason"] == "stop"
    assert final["message"] == {"role": "assistant", "content": ""}
    assert {"total_duration", "eval_count", "eval_duration", "prompt_eval_count"} <= final.keys()


def test_generate_stream_false_and_context(live: LiveServer, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("four")
    with live.client() as client:
        data = client.post(
            "/api/generate", json={"model": "tiny", "prompt": "2+2?", "stream": False}
        ).json()
        fake_factory.enqueue("again")
        follow = client.post(
            "/api/generate",
            json={"model": "tiny", "prompt": "more", "context": data["context"], "stream": True},
        )
    assert data["response"] == "four"
    assert isinstance(data["context"], list)
    assert data["context"]
    lines = ndjson(follow)
    assert lines[0]["response"] == "again"
    assert lines[-1]["response"] == ""
    # the engine saw the previous context's tokens first
    engine = fake_factory.loaded[0]
    assert engine.prompts[-1][: len(data["context"])] == data["context"]


def test_generate_raw_sends_the_prompt_untemplated(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    with live.client() as client:
        data = client.post(
            "/api/generate", json={"model": "tiny", "prompt": "exact text", "raw": True}
        ).json()
    assert fake_factory.loaded[0].prompts[-1] == "exact text"
    assert "context" not in data


def test_generate_options_reach_the_sampler(live: LiveServer, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("a", "b", "c", "d")
    body = {"model": "tiny", "prompt": "x", "options": {"temperature": 0.1, "num_predict": 2}}
    with live.client() as client:
        data = client.post("/api/generate", json=body).json()
    sampling = fake_factory.loaded[0].samplings[-1]
    assert sampling.temperature == pytest.approx(0.1)
    assert data["response"] == "ab"
    assert data["done_reason"] == "length"


def test_empty_prompt_loads_and_keep_alive_zero_unloads(live: LiveServer) -> None:
    with live.client() as client:
        loaded = client.post("/api/generate", json={"model": "tiny"}).json()
        chat_loaded = client.post("/api/chat", json={"model": "tiny", "messages": []}).json()
        ps_before = client.get("/api/ps").json()["models"]
        unloaded = client.post("/api/generate", json={"model": "tiny", "keep_alive": 0}).json()
        ps_after = client.get("/api/ps").json()["models"]
    assert loaded["done_reason"] == "load"
    assert loaded["response"] == ""
    assert loaded["done"] is True
    assert chat_loaded["done_reason"] == "load"
    assert chat_loaded["message"] == {"role": "assistant", "content": ""}
    assert [m["name"] for m in ps_before] == ["tiny:latest"]
    assert unloaded["done_reason"] == "unload"
    assert ps_after == []


def test_tags_lists_models_with_details(live: LiveServer) -> None:
    with live.client() as client:
        models = client.get("/api/tags").json()["models"]
    (model,) = models
    assert model["name"] == model["model"] == "tiny:latest"
    assert len(model["digest"]) == 64
    assert model["size"] > 0
    assert model["details"]["format"] == "gguf"
    assert model["details"]["family"] == "llama"


def test_show_has_the_fields_clients_need(live: LiveServer) -> None:
    with live.client() as client:
        data = client.post("/api/show", json={"model": "tiny"}).json()
    assert {
        "modelfile",
        "parameters",
        "template",
        "system",
        "license",
        "details",
        "model_info",
        "capabilities",
        "modified_at",
    } <= data.keys()
    assert data["modelfile"].startswith('# Modelfile generated by "ollamacli show"')
    assert data["model_info"]["general.architecture"] == "llama"
    assert "completion" in data["capabilities"]


def test_ps_reports_loaded_models(live: LiveServer) -> None:
    with live.client() as client:
        client.post("/api/generate", json={"model": "tiny", "keep_alive": "10m"})
        (model,) = client.get("/api/ps").json()["models"]
    assert model["name"] == "tiny:latest"
    assert model["size_vram"] == 0
    assert model["context_length"] == 256  # the tiny GGUF's trained context caps num_ctx
    assert model["expires_at"].endswith("Z")


def test_ps_negative_keep_alive_never_expires(live: LiveServer) -> None:
    with live.client() as client:
        client.post("/api/generate", json={"model": "tiny", "keep_alive": -1})
        (model,) = client.get("/api/ps").json()["models"]
    assert model["expires_at"].startswith("2262-")


def test_copy_and_delete(live: LiveServer) -> None:
    with live.client() as client:
        copied = client.post("/api/copy", json={"source": "tiny", "destination": "tiny2:v1"})
        names = [m["name"] for m in client.get("/api/tags").json()["models"]]
        deleted = client.request("DELETE", "/api/delete", json={"model": "tiny2:v1"})
        missing = client.request("DELETE", "/api/delete", json={"model": "tiny2:v1"})
        names_after = [m["name"] for m in client.get("/api/tags").json()["models"]]
    assert copied.status_code == 200
    assert sorted(names) == ["tiny2:v1", "tiny:latest"]
    assert deleted.status_code == 200
    assert missing.status_code == 404
    assert missing.json() == {"error": "model 'tiny2:v1' not found"}
    assert names_after == ["tiny:latest"]


def test_blob_upload_create_from_files_and_streamed_progress(
    live: LiveServer, tmp_path: Path
) -> None:
    data = make_tiny_gguf(tmp_path / "up.gguf", seed=7).read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with live.client() as client:
        before = client.head(f"/api/blobs/{digest}")
        created = client.post(f"/api/blobs/{digest}", content=data)
        again = client.post(f"/api/blobs/{digest}", content=data)
        after = client.head(f"/api/blobs/{digest}")
        progress = client.post(
            "/api/create",
            json={
                "model": "uploaded",
                "files": {"model.gguf": digest},
                "system": "Be brief.",
                "parameters": {"temperature": 0.5, "stop": ["<|end|>"]},
                "stream": True,
            },
        )
        show = client.post("/api/show", json={"model": "uploaded"}).json()
    assert (before.status_code, created.status_code, again.status_code) == (404, 201, 200)
    assert after.status_code == 200
    statuses = [line["status"] for line in ndjson(progress)]
    assert statuses[-1] == "success"
    assert "writing manifest" in statuses
    assert show["system"] == "Be brief."
    assert 'stop                           "<|end|>"' in show["parameters"]
    assert "temperature                    0.5" in show["parameters"]


@pytest.mark.slow
@pytest.mark.llama
def test_create_quantize_of_a_model_in_the_store(
    live: LiveServer, tmp_path: Path, smollm2_path: Path
) -> None:
    """`quantize` on an F16 model already in the store (as a `finetune --full` one is)."""
    data = make_random_llama_gguf(tmp_path / "f16.gguf", smollm2_path).read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with live.client() as client:
        client.post(f"/api/blobs/{digest}", content=data)
        client.post("/api/create", json={"model": "f16", "files": {"m.gguf": digest}})
        progress = client.post(
            "/api/create",
            json={"model": "f16-q8", "from": "f16", "quantize": "q8_0", "stream": True},
        )
        details = {
            name: client.post("/api/show", json={"model": name}).json()["details"]
            for name in ("f16", "f16-q8")
        }
    assert progress.status_code == 200, progress.text
    events = ndjson(progress)
    quantizing = [e for e in events if e["status"] == "quantizing F16 model to Q8_0"]
    assert quantizing
    assert quantizing[-1].get("completed") == quantizing[-1].get("total") == len(data)
    assert events[-1] == {"status": "success"}
    assert details["f16-q8"]["quantization_level"] == "Q8_0"
    assert details["f16"]["quantization_level"] == "F16"  # the source model is kept


def test_blob_upload_with_wrong_digest_is_refused_and_not_stored(live: LiveServer) -> None:
    wrong = "sha256:" + "0" * 64
    with live.client() as client:
        response = client.post(f"/api/blobs/{wrong}", content=b"some bytes")
        head = client.head(f"/api/blobs/{wrong}")
        bad_format = client.post("/api/blobs/sha256:xyz", content=b"x")
    assert response.status_code == 400
    assert response.json()["error"].startswith(f'digest mismatch, expected "{wrong}"')
    assert head.status_code == 404
    assert not list(live.services.store.blobs.root.glob(".tmp-*"))
    assert bad_format.status_code == 400


def test_create_from_model_and_legacy_modelfile(live: LiveServer) -> None:
    with live.client() as client:
        structured = client.post(
            "/api/create", json={"model": "mario", "from": "tiny", "system": "It's-a me"}
        )
        legacy = client.post(
            "/api/create",
            json={"model": "luigi", "modelfile": "FROM tiny\nPARAMETER temperature 1\nSYSTEM Hi"},
        )
        mario = client.post("/api/show", json={"model": "mario"}).json()
        luigi = client.post("/api/show", json={"model": "luigi"}).json()
    assert structured.json() == {"status": "success"}
    assert legacy.json() == {"status": "success"}
    assert mario["system"] == "It's-a me"
    assert mario["details"]["parent_model"] == "tiny:latest"
    assert luigi["system"] == "Hi"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "x"}, "neither 'from' or 'files' was specified"),
        (
            {"model": "x", "files": {"/etc/passwd": "sha256:" + "a" * 64}},
            "file path must be relative",
        ),
        ({"model": "x", "files": {"m.gguf": "sha256:" + "a" * 64}}, "not found: upload it first"),
        ({"model": "x", "modelfile": "FROM /etc/passwd"}, "FROM a file path is not supported"),
        ({"model": "x", "modelfile": "NOPE tiny"}, "modelfile"),
        (
            {"model": "x", "from": "tiny", "quantize": "q4_0"},
            "unsupported quantization type Q4_0 - supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0",
        ),
        ({"model": "x", "from": "tiny", "parameters": {"top_k": "many"}}, "must be of type"),
    ],
    ids=[
        "no-source",
        "absolute-path",
        "missing-blob",
        "server-path",
        "bad-modelfile",
        "quantize",
        "bad-param",
    ],
)
def test_create_refuses_bad_requests(
    live: LiveServer, body: dict[str, object], message: str
) -> None:
    with live.client() as client:
        response = client.post("/api/create", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_create_from_a_blob_that_is_not_gguf_is_a_400(live: LiveServer) -> None:
    data = b"definitely not a model"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with live.client() as client:
        client.post(f"/api/blobs/{digest}", content=data)
        response = client.post("/api/create", json={"model": "x", "files": {"m.gguf": digest}})
    assert response.status_code == 400
    assert "not in GGUF format" in response.json()["error"]


def test_pull_of_a_bundled_model_streams_progress(make_server, fake_factory: FakeFactory) -> None:
    with make_server(fake_factory) as live, live.client() as client:
        response = client.post("/api/pull", json={"model": "smollm2:135m", "stream": True})
        names = [m["name"] for m in client.get("/api/tags").json()["models"]]
    lines = ndjson(response)
    assert lines[-1] == {"status": "success"}
    assert any("total" in line and "completed" in line for line in lines)
    assert "smollm2:135m" in names


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/chat", b"{not json", 400, "invalid JSON"),
        ("/api/chat", b"", 400, "missing request body"),
        ("/api/chat", b"[1, 2]", 400, "must be a JSON object"),
        ("/api/chat", b'{"messages": []}', 400, "model is required"),
        ("/api/generate", b'{"model": 5}', 400, 'invalid value for "model"'),
        ("/api/generate", b'{"model": "../../etc/passwd"}', 400, "invalid model name"),
        ("/api/show", b'{"model": "../x"}', 400, "invalid model name"),
        (
            "/api/generate",
            b'{"model": "ghost", "prompt": "x"}',
            404,
            "model 'ghost:latest' not found",
        ),
        ("/api/chat", b'{"model": "ghost", "messages": []}', 404, "model 'ghost:latest' not found"),
        ("/api/show", b'{"model": "ghost"}', 404, "model 'ghost:latest' not found"),
        ("/api/copy", b'{"source": "ghost", "destination": "y"}', 404, "not found"),
        ("/api/copy", b'{"source": "tiny", "destination": "a/../b"}', 400, "invalid model name"),
        (
            "/api/generate",
            b'{"model": "tiny", "prompt": "x", "options": {"top_k": "many"}}',
            400,
            "must be of type integer",
        ),
        (
            "/api/generate",
            b'{"model": "tiny", "prompt": "x", "options": {"num_thread": 100000}}',
            400,
            "between",
        ),
        (
            "/api/generate",
            b'{"model": "tiny", "prompt": "x", "keep_alive": "soon"}',
            400,
            "invalid duration",
        ),
        (
            "/api/generate",
            b'{"model": "tiny", "prompt": "x", "raw": true, "system": "s"}',
            400,
            "raw mode does not support",
        ),
        (
            "/api/generate",
            b'{"model": "tiny", "prompt": "x", "format": "yaml"}',
            400,
            "invalid format",
        ),
        (
            "/api/generate",
            b'{"model": "tiny", "prompt": "x", "think": true}',
            400,
            "does not support thinking",
        ),
        (
            "/api/generate",
            b'{"model": "tiny", "prompt": "x", "suffix": "y"}',
            400,
            "does not support insert",
        ),
        ("/api/pull", b'{"model": "nosuchthing"}', 404, "not found"),
        ("/api/nothing", b"{}", 404, "404 page not found"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_errors_are_json_with_the_right_status(
    live: LiveServer, path: str, body: bytes, status: int, message: str
) -> None:
    with live.client() as client:
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]


def test_wrong_method_is_405(live: LiveServer) -> None:
    with live.client() as client:
        response = client.get("/api/chat")
    assert response.status_code == 405
    assert response.json() == {"error": "method not allowed"}


def test_an_error_after_streaming_started_is_the_last_line(make_server) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    with make_server(FailingFactory()) as live, live.client() as client:
        response = client.post("/api/chat", json=body)
        plain = client.post("/api/chat", json={**body, "stream": False})
    lines = ndjson(response)
    assert response.status_code == 200
    assert [line["message"] for line in lines[:2]] == [
        {"role": "assistant", "content": "one"},
        {"role": "assistant", "content": " two"},
    ]
    assert lines[-1] == {"error": "the engine broke"}
    assert plain.status_code == 500
    assert plain.json() == {"error": "the engine broke"}


def test_an_error_after_sse_started_is_an_openai_error_event(make_server) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    with make_server(FailingFactory()) as live, live.client() as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert [json.loads(e)["choices"][0]["delta"]["content"] for e in events[:2]] == ["one", " two"]
    assert json.loads(events[-1]) == {
        "error": {"message": "the engine broke", "type": "api_error", "param": None, "code": None}
    }
    assert "[DONE]" not in response.text


def test_sse_stream_ends_with_done(live: LiveServer, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("a", "b")
    body = {"model": "tiny", "prompt": "x", "stream": True}
    with live.client() as client:
        response = client.post("/v1/completions", json=body)
        head = client.head("/api/tags")
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert [c["choices"][0]["text"] for c in chunks] == ["a", "b", ""]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["object"] == "text_completion" for c in chunks)
    assert head.status_code == 200


def test_pull_goes_to_the_registry_fetcher(make_server) -> None:
    pulled: list[str] = []

    def fetcher(name: ModelName, progress: ProgressSink) -> None:
        pulled.append(name.short)
        if name.model == "broken":
            progress(ProgressEvent("pulling manifest"))
            raise RegistryError("pull model manifest: file does not exist", status=404)
        progress(ProgressEvent("pulling manifest"))
        progress(ProgressEvent("pulling 0123456789ab", digest="sha256:01", total=10, completed=10))
        progress(ProgressEvent("success"))

    with make_server(FakeFactory(), fetcher=fetcher) as live, live.client() as client:
        streamed = client.post("/api/pull", json={"model": "library/remote:7b", "stream": True})
        plain = client.post("/api/pull", json={"model": "remote:7b"})
        failed_stream = client.post("/api/pull", json={"model": "broken", "stream": True})
        failed = client.post("/api/pull", json={"model": "broken"})
    assert pulled == ["remote:7b", "remote:7b", "broken:latest", "broken:latest"]
    assert ndjson(streamed) == [
        {"status": "pulling manifest"},
        {"status": "pulling 0123456789ab", "digest": "sha256:01", "total": 10, "completed": 10},
        {"status": "success"},
    ]
    assert plain.json() == {"status": "success"}
    assert ndjson(failed_stream)[-1] == {"error": "pull model manifest: file does not exist"}
    assert failed.status_code == 502
