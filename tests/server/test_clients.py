"""The official `ollama` and `openai` Python clients against a live server (scripted engines)."""

from __future__ import annotations

import ollama
import openai
import pytest

from tests.factories import make_tiny_gguf
from tests.fakes import FakeFactory


def test_ollama_client_chat(client: ollama.Client, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("Blue", " light")
    response = client.chat(model="tiny", messages=[{"role": "user", "content": "Why?"}])
    assert response.message.role == "assistant"
    assert response.message.content == "Blue light"
    assert response.done
    assert response.done_reason == "stop"
    assert response.eval_count == 2


def test_ollama_client_chat_streaming(client: ollama.Client, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("Blue", " light")
    parts = list(
        client.chat(model="tiny", messages=[{"role": "user", "content": "Why?"}], stream=True)
    )
    assert [p.message.content for p in parts] == ["Blue", " light", ""]
    assert parts[-1].done
    assert parts[-1].total_duration


def test_ollama_client_generate(client: ollama.Client, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("4")
    response = client.generate(model="tiny", prompt="2+2=", options={"temperature": 0})
    assert response.response == "4"
    assert response.context
    fake_factory.enqueue("5", "!")
    parts = list(client.generate(model="tiny", prompt="3+2=", stream=True))
    assert "".join(p.response or "" for p in parts) == "5!"
    assert parts[-1].done_reason == "stop"


def test_ollama_client_list_show_ps(client: ollama.Client) -> None:
    (model,) = client.list().models
    assert model.model == "tiny:latest"
    assert model.details is not None
    assert model.details.family == "llama"
    shown = client.show("tiny")
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.capabilities == ["completion"]
    assert shown.modified_at is not None
    client.generate(model="tiny", prompt="", keep_alive="1m")
    (running,) = client.ps().models
    assert running.model == "tiny:latest"
    assert running.context_length == 256
    assert running.expires_at is not None


def test_ollama_client_create_copy_delete(client: ollama.Client, tmp_path) -> None:
    path = make_tiny_gguf(tmp_path / "m.gguf", seed=3)
    digest = client.create_blob(path)
    progress = client.create(model="fromfile", files={"m.gguf": digest}, system="Short answers.")
    assert progress.status == "success"
    derived = client.create(
        model="derived", from_="fromfile", parameters={"temperature": 0.2}, stream=True
    )
    assert [p.status for p in derived][-1] == "success"
    assert "Short answers." in (client.show("derived").modelfile or "")
    assert client.copy("derived", "derived:copy").status == "success"
    assert client.delete("derived:copy").status == "success"
    names = sorted(m.model or "" for m in client.list().models)
    assert names == ["derived:latest", "fromfile:latest", "tiny:latest"]
    with pytest.raises(ollama.ResponseError) as missing:
        client.delete("derived:copy")
    assert missing.value.status_code == 404


def test_ollama_client_pull(make_server, fake_factory: FakeFactory) -> None:
    with make_server(fake_factory) as live, ollama.Client(host=live.url) as client:
        statuses = [p.status for p in client.pull("smollm2:135m", stream=True)]
        assert statuses[-1] == "success"
        assert client.pull("smollm2:135m").status == "success"
        assert "smollm2:135m" in [m.model for m in client.list().models]


def test_ollama_client_errors(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="ghost", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.status_code == 404
    assert missing.value.error == "model 'ghost:latest' not found"


def test_openai_chat_completion(oai: openai.OpenAI, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("Hi", " there")
    completion = oai.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=10
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2
    sampling = fake_factory.loaded[0].samplings[-1]
    assert (sampling.temperature, sampling.top_p, sampling.num_predict) == (1.0, 1.0, 10)


def test_openai_chat_completion_streaming(oai: openai.OpenAI, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("Hi", " there")
    stream = oai.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hi there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2


def test_openai_completions_and_models(oai: openai.OpenAI, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("42")
    completion = oai.completions.create(model="tiny", prompt="The answer is")
    assert completion.choices[0].text == "42"
    fake_factory.enqueue("4", "2")
    streamed = "".join(
        c.choices[0].text for c in oai.completions.create(model="tiny", prompt="x", stream=True)
    )
    assert streamed == "42"
    assert [m.id for m in oai.models.list()] == ["tiny:latest"]
    assert oai.models.retrieve("tiny").owned_by == "library"


def test_openai_errors_use_openai_shape(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        oai.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body == {
        "message": "model 'ghost:latest' not found",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="tiny", messages=[])
