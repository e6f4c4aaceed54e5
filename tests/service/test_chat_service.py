"""ChatService with the scripted fake engine: conversation assembly, options precedence,
load/unload, generate's raw/context/system/template, format, truncation."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamacli.config import Settings
from ollamacli.engine.base import ChatMessage, TextChunk
from ollamacli.errors import InvalidOptionError, InvalidRequestError, ModelNotFoundError
from ollamacli.modelfile import Message
from ollamacli.names import ModelName
from ollamacli.service import Services, build_services
from ollamacli.service.chat import ChatDone, ChatEvent, ChatRequest, GenerateRequest
from ollamacli.service.models import CreateSpec
from ollamacli.store.manifests import MEDIA_PARAMS, Layer
from tests.factories import make_tiny_gguf
from tests.fakes import FakeFactory

# A Go template that shows exactly which turns reach the model.
SHOW_TURNS = "{{ range .Messages }}[{{ .Role }}:{{ .Content }}]{{ end }}"


@pytest.fixture
def services(settings: Settings, fake_factory: FakeFactory) -> Services:
    return build_services(settings, fake_factory)


def create(services: Services, tmp_path: Path, name: str = "m", **spec) -> str:
    gguf = make_tiny_gguf(tmp_path / f"{name}.gguf", context_length=8192)
    services.models.create(name, CreateSpec(from_file=gguf, **spec))
    return name


def collect(stream: Iterator[ChatEvent]) -> tuple[str, ChatDone]:
    *chunks, done = list(stream)
    assert isinstance(done, ChatDone)
    return "".join(c.text for c in chunks if isinstance(c, TextChunk)), done


def test_chat_streams_the_answer_then_statistics(services, tmp_path, fake_factory):
    create(services, tmp_path)
    fake_factory.enqueue("Hello", " there")
    events = list(services.chat.chat(ChatRequest("m", (ChatMessage("user", "hi"),))))
    assert [e.text for e in events[:-1] if isinstance(e, TextChunk)] == ["Hello", " there"]
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert done.done_reason == "stop"
    assert done.eval_count == 2
    assert done.load_duration > 0
    assert done.total_duration >= done.load_duration + done.eval_duration


def test_system_messages_rows_then_request_turns_in_ollamas_order(services, tmp_path, fake_factory):
    create(
        services,
        tmp_path,
        template=SHOW_TURNS,
        system="Be Mario.",
        messages=(Message("user", "Who are you?"), Message("assistant", "It's-a me!")),
    )
    collect(services.chat.chat(ChatRequest("m", (ChatMessage("user", "Hi"),))))
    collect(
        services.chat.chat(
            ChatRequest("m", (ChatMessage("system", "Be Luigi."), ChatMessage("user", "Hi")))
        )
    )
    collect(services.chat.chat(ChatRequest("m", (ChatMessage("user", "Hi"),), system="Be Peach.")))
    first, own_system, override = fake_factory.loaded[0].prompts
    assert first == "[system:Be Mario.][user:Who are you?][assistant:It's-a me!][user:Hi]"
    assert own_system == "[user:Who are you?][assistant:It's-a me!][system:Be Luigi.][user:Hi]"
    assert override.startswith("[system:Be Peach.]")


def test_options_precedence_request_over_session_over_modelfile_over_default(
    services, tmp_path, fake_factory
):
    create(services, tmp_path, parameters={"temperature": 0.1, "top_k": 5, "seed": 7})
    turn = (ChatMessage("user", "hi"),)
    requests = [
        ChatRequest("m", turn),
        ChatRequest("m", turn, session_options={"temperature": 0.2, "top_k": 6}),
        ChatRequest(
            "m", turn, session_options={"temperature": 0.2, "top_k": 6}, options={"top_k": 9}
        ),
    ]
    for request in requests:
        collect(services.chat.chat(request))
    modelfile, session, request = fake_factory.loaded[0].samplings
    assert (modelfile.temperature, modelfile.top_k, modelfile.seed, modelfile.top_p) == (
        0.1,
        5,
        7,
        0.9,  # Ollama's default
    )
    assert (session.temperature, session.top_k, session.seed) == (0.2, 6, 7)
    assert (request.temperature, request.top_k, request.seed) == (0.2, 9, 7)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temprature": 1}, 'unknown parameter "temprature" \\(did you mean "temperature"\\?\\)'),
        ({"top_k": "many"}, 'option "top_k" must be of type integer'),
        ({"stop": 3}, 'option "stop" must be of type array'),
    ],
    ids=["unknown", "mistyped", "stop-not-strings"],
)
def test_bad_options_are_clear_errors(services, tmp_path, options, message):
    create(services, tmp_path)
    with pytest.raises(InvalidOptionError, match=message):
        collect(services.chat.chat(ChatRequest("m", (ChatMessage("user", "hi"),), options=options)))


def test_a_models_parameters_this_version_does_not_know_are_skipped(
    services, tmp_path, fake_factory
):
    """A model made by Ollama may carry parameters unknown here (or nulls): they are ignored,
    as Ollama's Options.FromMap ignores them, and the known ones still apply."""
    create(services, tmp_path, parameters={"top_k": 5})
    store, name = services.store, ModelName.parse("m")
    data = json.dumps({"top_k": 5, "num_gqa": 8, "temperature": None}).encode()
    digest = store.blobs.write_bytes(data)
    manifest = store.manifests.get(name).manifest
    layers = tuple(
        Layer(MEDIA_PARAMS, digest, len(data)) if layer.media_type == MEDIA_PARAMS else layer
        for layer in manifest.layers
    )
    store.manifests.write(name, dataclasses.replace(manifest, layers=layers).to_bytes())
    text, _ = collect(services.chat.chat(ChatRequest("m", (ChatMessage("user", "hi"),))))
    assert text == "ok"
    (sampling,) = fake_factory.loaded[0].samplings
    assert (sampling.top_k, sampling.temperature) == (5, 0.8)


def test_a_missing_model_is_not_found(services):
    with pytest.raises(ModelNotFoundError):
        collect(services.chat.chat(ChatRequest("nope", (ChatMessage("user", "hi"),))))


def test_empty_requests_load_and_keep_alive_zero_unloads(services, tmp_path, fake_factory):
    create(services, tmp_path)
    _, loaded = collect(services.chat.chat(ChatRequest("m")))
    assert loaded.done_reason == "load"
    assert loaded.load_duration > 0
    assert [info.name for info in services.scheduler.ps()] == ["m:latest"]
    _, unloaded = collect(services.chat.generate(GenerateRequest("m", keep_alive=0)))
    assert unloaded.done_reason == "unload"
    assert services.scheduler.ps() == []
    assert fake_factory.loaded[0].closed
    assert fake_factory.loaded[0].prompts == []


def test_generate_uses_system_messages_and_template_like_ollama(services, tmp_path, fake_factory):
    create(
        services,
        tmp_path,
        template=SHOW_TURNS,
        system="Model system.",
        messages=(Message("user", "seed"), Message("assistant", "ok")),
    )
    collect(services.chat.generate(GenerateRequest("m", "Why?")))
    collect(services.chat.generate(GenerateRequest("m", "Why?", system="Asked system.")))
    collect(services.chat.generate(GenerateRequest("m", "Why?", template="Q: {{ .Prompt }}")))
    default, system, template = fake_factory.loaded[0].prompts
    assert default == "[system:Model system.][user:seed][assistant:ok][user:Why?]"
    assert system == "[system:Asked system.][user:seed][assistant:ok][user:Why?]"
    # A legacy template runs once per turn: the MESSAGE rows become a finished turn first.
    assert template == "Q: seedokQ: Why?"


def test_generate_context_continues_from_tokens_without_message_rows(
    services, tmp_path, fake_factory
):
    create(services, tmp_path, template=SHOW_TURNS, messages=(Message("user", "seed"),))
    _, first = collect(services.chat.generate(GenerateRequest("m", "one")))
    assert first.context
    collect(services.chat.generate(GenerateRequest("m", "two", context=first.context)))
    continued = fake_factory.loaded[0].prompts[-1]
    assert isinstance(continued, list)
    assert continued[: len(first.context)] == list(first.context)
    engine = fake_factory.loaded[0]
    assert continued[len(first.context) :] == engine.tokenize("[user:two]")


def test_raw_generate_sends_the_prompt_as_is_and_returns_no_context(
    services, tmp_path, fake_factory
):
    create(services, tmp_path, template=SHOW_TURNS, system="ignored")
    _, done = collect(services.chat.generate(GenerateRequest("m", "<raw> text", raw=True)))
    assert fake_factory.loaded[0].prompts == ["<raw> text"]
    assert done.context == ()


@pytest.mark.parametrize(
    "extra",
    [{"system": "s"}, {"template": "{{ .Prompt }}"}, {"context": (1, 2)}],
    ids=["system", "template", "context"],
)
def test_raw_mode_refuses_template_system_and_context(services, tmp_path, extra):
    create(services, tmp_path)
    with pytest.raises(InvalidRequestError, match="raw mode does not support"):
        collect(services.chat.generate(GenerateRequest("m", "x", raw=True, **extra)))


def test_format_becomes_a_grammar_and_bad_formats_fail_before_loading(
    services, tmp_path, fake_factory
):
    create(services, tmp_path)
    collect(services.chat.generate(GenerateRequest("m", "x", format="json")))
    grammar = fake_factory.loaded[0].samplings[-1].grammar
    assert grammar is not None
    assert "object" in grammar
    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 3}}}
    with pytest.raises(InvalidRequestError, match='keyword "maximum" is not supported'):
        collect(services.chat.generate(GenerateRequest("m", "x", format=schema)))
    with pytest.raises(InvalidRequestError, match='invalid format "xml"'):
        collect(services.chat.chat(ChatRequest("m", (ChatMessage("user", "x"),), format="xml")))
    assert len(fake_factory.loaded[0].prompts) == 1


def test_stop_strings_from_every_layer_reach_the_engine(services, tmp_path, fake_factory):
    create(services, tmp_path, parameters={"stop": ["<m1>", "<m2>"]})
    collect(services.chat.generate(GenerateRequest("m", "x")))
    collect(services.chat.generate(GenerateRequest("m", "x", options={"stop": ["<r>"]})))
    modelfile, request = fake_factory.loaded[0].samplings
    assert modelfile.stop == ("<m1>", "<m2>")
    assert request.stop == ("<r>",)  # a request's list replaces the model's, as in Ollama


def test_old_turns_are_dropped_to_fit_the_context_but_system_and_last_turn_stay(
    services, tmp_path, fake_factory
):
    create(services, tmp_path, template=SHOW_TURNS, system="sys")
    words = " ".join(["w"] * 30)  # the fake engine counts whitespace-separated words
    turns = (
        ChatMessage("user", f"old {words}"),
        ChatMessage("assistant", f"older {words}"),
        ChatMessage("user", "latest question"),
    )
    _, done = collect(services.chat.chat(ChatRequest("m", turns, options={"num_ctx": 40})))
    assert done.truncated  # only the oldest turn had to go
    assert fake_factory.loaded[0].prompts[-1].startswith("[system:sys][assistant:older w")
    _, done = collect(services.chat.chat(ChatRequest("m", turns, options={"num_ctx": 20})))
    assert done.truncated
    assert fake_factory.loaded[-1].prompts[-1] == "[system:sys][user:latest question]"
    _, kept = collect(services.chat.chat(ChatRequest("m", turns, options={"num_ctx": 400})))
    assert not kept.truncated
    assert "old w" in fake_factory.loaded[-1].prompts[-1]


def test_cancel_is_passed_to_the_engine(services, tmp_path, fake_factory):
    from ollamacli.engine.base import CancelToken

    create(services, tmp_path)
    fake_factory.enqueue("a", "b", "c", "d")
    cancel = CancelToken()
    events = services.chat.chat(ChatRequest("m", (ChatMessage("user", "x"),)), cancel)
    assert next(events) == TextChunk("a")
    cancel.cancel()
    *_, done = list(events)
    assert isinstance(done, ChatDone)
    assert done.eval_count == 1
