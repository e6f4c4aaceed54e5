"""EmbedService with the scripted engine (its vectors are [len(text), 1.0], tokens are words)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ollamacli.config import Settings
from ollamacli.engine.base import ChatMessage
from ollamacli.errors import ContextLengthExceededError, InvalidRequestError
from ollamacli.service import Services, build_services
from ollamacli.service.chat import ChatRequest
from ollamacli.service.embed import EmbedRequest, shape
from ollamacli.service.models import CreateSpec
from tests.factories import make_tiny_gguf
from tests.fakes import FakeFactory


def make(settings: Settings, factory: FakeFactory, tmp_path: Path) -> Services:
    services = build_services(settings, factory)
    gguf = make_tiny_gguf(tmp_path / "m.gguf", context_length=8192)
    services.models.create("m", CreateSpec(from_file=gguf))
    return services


@pytest.fixture
def services(settings: Settings, fake_factory: FakeFactory, tmp_path: Path) -> Services:
    return make(settings, fake_factory, tmp_path)


def test_vectors_are_l2_normalised_one_per_input(services):
    result = services.embed.embed(EmbedRequest("m", ("abc", "hello world")))
    assert result.embeddings == [
        pytest.approx([3 / math.sqrt(10), 1 / math.sqrt(10)]),
        pytest.approx([11 / math.sqrt(122), 1 / math.sqrt(122)]),
    ]
    assert result.prompt_eval_count == 3  # "abc" + "hello" + "world"
    assert result.load_duration > 0
    assert result.total_duration >= result.load_duration


def test_dimensions_cut_then_renormalise_and_legacy_vectors_stay_raw(services):
    cut = services.embed.embed(EmbedRequest("m", ("abcd",), dimensions=1))
    assert cut.embeddings == [[1.0]]
    raw = services.embed.embed(EmbedRequest("m", ("abcd",), normalize=False))
    assert raw.embeddings == [[4.0, 1.0]]
    wide = services.embed.embed(EmbedRequest("m", ("abcd",), dimensions=10))
    assert len(wide.embeddings[0]) == 2
    with pytest.raises(InvalidRequestError, match="dimensions must be a positive number"):
        services.embed.embed(EmbedRequest("m", ("abcd",), dimensions=0))


def test_long_inputs_are_cut_to_the_context_or_refused(services, fake_factory):
    text = " ".join(["word"] * 10)
    cut = services.embed.embed(EmbedRequest("m", (text,), options={"num_ctx": 4}))
    assert cut.prompt_eval_count == 4
    assert cut.embeddings == [shape([len("xxxx " * 4) - 1, 1.0], None, normalize=True)]
    with pytest.raises(ContextLengthExceededError, match="10 tokens > num_ctx 4"):
        services.embed.embed(EmbedRequest("m", (text,), options={"num_ctx": 4}, truncate=False))


def test_no_input_only_loads_the_embedding_instance(services, fake_factory):
    result = services.embed.embed(EmbedRequest("m"))
    assert result.embeddings == []
    (loaded,) = services.scheduler.ps()
    assert loaded.config.embedding
    assert loaded.name == "m:latest"


def test_embedding_and_chat_instances_are_both_loaded_and_listed_once(services, fake_factory):
    services.embed.embed(EmbedRequest("m", ("x",)))
    list(services.chat.chat(ChatRequest("m", (ChatMessage("user", "hi"),))))
    embed_engine, chat_engine = fake_factory.loaded
    assert not embed_engine.closed
    assert not chat_engine.closed
    (row,) = services.scheduler.ps()
    assert (row.name, row.config.embedding) == ("m:latest", False)
    assert services.scheduler.unload("m:latest")
    assert services.scheduler.ps() == []
    assert embed_engine.closed
    assert chat_engine.closed


def test_the_embedding_instance_respects_max_loaded_models(settings, tmp_path):
    factory = FakeFactory()
    services = make(settings.with_changes(max_loaded_models=1), factory, tmp_path)
    list(services.chat.chat(ChatRequest("m", (ChatMessage("user", "hi"),))))
    services.embed.embed(EmbedRequest("m", ("x",)))
    (only,) = services.scheduler.ps()
    assert only.config.embedding
    chat_engine, embed_engine = factory.loaded
    assert chat_engine.closed  # evicted to make room
    assert not embed_engine.closed
