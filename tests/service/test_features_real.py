"""Structured outputs, tool calls, embeddings and context limits on the real SmolLM2."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from ollamacli.config import Settings
from ollamacli.engine.base import ChatMessage, TextChunk, ToolCall
from ollamacli.engine.tools import ToolChoice
from ollamacli.errors import ContextLengthExceededError
from ollamacli.service import Services, build_services
from ollamacli.service.chat import ChatDone, ChatRequest, GenerateRequest, ToolCallsChunk
from ollamacli.service.embed import EmbedRequest
from ollamacli.service.models import CreateSpec
from tests.factories import WEATHER_TOOL, assert_json_answer

pytestmark = [pytest.mark.llama, pytest.mark.slow]

MODEL = "smollm2:135m"
TEMPLATES = Path(__file__).parent.parent / "data" / "templates"
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 24},
        "age": {"type": "integer"},
        "job": {"type": "string", "enum": ["engineer", "artist", "doctor", "teacher"]},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 24},
                "country": {"type": "string", "maxLength": 24},
            },
            "required": ["city", "country"],
        },
        "skills": {
            "type": "array",
            "items": {"type": "string", "maxLength": 16},
            "minItems": 1,
            "maxItems": 3,
        },
        "retired": {"type": "boolean"},
    },
    "required": ["name", "age", "job", "address", "skills", "retired"],
}
WEATHER = WEATHER_TOOL
PARIS = (ChatMessage("user", "What is the weather in Paris?"),)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("features-real")
    built = build_services(Settings(data_dir=root, models_dir=root / "models"))
    built.models.ensure(MODEL)
    # SmolLM2 speaks ChatML, like Qwen2.5: Qwen's templates (which have a tools section) fit it.
    for name in ("qwen2.5.jinja", "qwen2.5.gotmpl"):
        template = (TEMPLATES / name).read_text()
        built.models.create(name, CreateSpec(from_model=MODEL, template=template))
    yield built
    built.scheduler.close()


def run(services: Services, request: ChatRequest) -> tuple[str, list[ToolCall], ChatDone]:
    *events, done = list(services.chat.chat(request))
    assert isinstance(done, ChatDone)
    text = "".join(e.text for e in events if isinstance(e, TextChunk))
    calls = [c for e in events if isinstance(e, ToolCallsChunk) for c in e.calls]
    return text, calls, done


def test_twenty_structured_answers_at_temperature_08_all_validate(services):
    prompts = itertools.cycle(
        ["Describe a person as JSON.", "Invent a character.", "Give me a random profile."]
    )
    for seed, prompt in zip(range(20), prompts, strict=False):
        request = ChatRequest(
            MODEL,
            (ChatMessage("user", prompt),),
            format=PERSON,
            options={"temperature": 0.8, "seed": seed, "num_predict": 400},
        )
        text, _, done = run(services, request)
        assert done.done_reason == "stop", text
        jsonschema.validate(json.loads(text), PERSON)


def test_generate_with_format_json_parses(services):
    # format "json" bounds the shape, not the length: an answer that stops must parse, and one
    # that runs to num_predict must still be JSON so far. Of three seeds at least one stops (the
    # model's words differ across CPUs; a JSON object that never closes in 256 tokens is rare).
    stopped = 0
    for seed in range(3):
        request = GenerateRequest(
            MODEL,
            "List three colours.",
            format="json",
            options={"temperature": 0.8, "seed": seed, "num_predict": 256},
        )
        *chunks, done = list(services.chat.generate(request))
        assert isinstance(done, ChatDone)
        text = "".join(c.text for c in chunks if isinstance(c, TextChunk))
        assert_json_answer(text, done.done_reason)
        stopped += done.done_reason == "stop"
    assert stopped >= 1


@pytest.mark.parametrize("model", [MODEL, "qwen2.5.jinja", "qwen2.5.gotmpl"])
def test_a_required_tool_call_is_parsed_from_the_models_output(services, model):
    request = ChatRequest(
        model,
        PARIS,
        tools=(WEATHER,),
        tool_choice=ToolChoice("required"),
        options={"temperature": 0},
    )
    text, calls, done = run(services, request)
    assert text == ""
    assert [call.name for call in calls] == ["get_weather"]
    jsonschema.validate(calls[0].arguments, WEATHER["function"]["parameters"])
    assert done.done_reason == "stop"


def prompt_text(services: Services, model: str, done: ChatDone) -> str:
    """The prompt and answer the model saw, from the final event's tokens."""
    prepared = services.chat.prepare(model, {}, {})
    with services.chat.lease(prepared, None) as lease:
        return lease.engine.detokenize(list(done.context))


def test_templates_show_the_tools_and_auto_answers_never_fail(services):
    for model in (MODEL, "qwen2.5.jinja", "qwen2.5.gotmpl"):
        options = {"temperature": 0, "num_predict": 48}
        request = ChatRequest(model, PARIS, tools=(WEATHER,), options=options)
        text, calls, done = run(services, request)
        assert text.strip() or calls, model  # an answer or a call, whatever the model chose
        assert all(call.name == "get_weather" for call in calls)
        seen = prompt_text(services, model, done)
        assert "Get the current weather for a city" in seen, model
        marker = "You can call functions" if model == MODEL else "# Tools"
        assert marker in seen, model  # injected instructions, or the template's own section


def test_a_tool_result_is_answered(services):
    history = (
        *PARIS,
        ChatMessage("assistant", "", tool_calls=(ToolCall("get_weather", {"city": "Paris"}),)),
        ChatMessage("tool", '{"temperature": "22 C", "sky": "cloudy"}', tool_name="get_weather"),
    )
    options = {"temperature": 0, "num_predict": 48}
    text, calls, _ = run(services, ChatRequest(MODEL, history, tools=(WEATHER,), options=options))
    assert text.strip() or calls


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_similar_sentences_embed_closer_than_unrelated_ones(services):
    pairs = [
        ("The cat sits on the mat.", "A cat is sitting on a mat."),
        ("How do I reset my password?", "I forgot my password and need to change it."),
        ("I love eating pizza with friends.", "Pizza is my favourite food to share."),
    ]
    texts = tuple(text for pair in pairs for text in pair)
    result = services.embed.embed(EmbedRequest(MODEL, texts))
    vectors = dict(zip(texts, result.embeddings, strict=True))
    assert all(math.isclose(cosine(v, v), 1.0, rel_tol=1e-6) for v in vectors.values())
    for first, second in pairs:
        similar = cosine(vectors[first], vectors[second])
        others = [t for t in texts if t not in (first, second)]
        assert all(similar > cosine(vectors[first], vectors[o]) for o in others), first
    assert result.prompt_eval_count > len(texts)
    # Loaded (with its chat instance, if that is loaded too) and listed once, as Ollama does.
    assert [info.name for info in services.scheduler.ps()].count(MODEL) == 1


def test_a_long_conversation_is_truncated_with_the_flag_or_refused(services):
    story = "Once upon a time there was a little robot who loved to count the stars. " * 8
    turns = [ChatMessage("system", "You are terse.")]
    for n in range(6):
        turns += [ChatMessage("user", f"{n}: {story}"), ChatMessage("assistant", "Noted.")]
    turns.append(ChatMessage("user", "What did the robot love?"))
    options = {"temperature": 0, "num_predict": 8, "num_ctx": 512}
    _, _, done = run(services, ChatRequest(MODEL, tuple(turns), options=options))
    assert done.truncated
    assert done.prompt_eval_count < 512
    with pytest.raises(ContextLengthExceededError) as refused:
        run(services, ChatRequest(MODEL, tuple(turns), options=options, truncate=False))
    assert refused.value.n_ctx == 512
    assert refused.value.requested > 512


def test_generation_that_reaches_num_predict_or_num_ctx_ends_with_length(services):
    # Both limits are forced, not hoped for: the schema's string needs far more characters than
    # either limit leaves room for, so no model on any CPU can close it and stop early.
    endless = {"type": "string", "minLength": 400}
    capped = {"temperature": 0, "num_predict": 5}
    _, _, done = run(services, ChatRequest(MODEL, PARIS, format=endless, options=capped))
    assert (done.done_reason, done.eval_count) == ("length", 5)
    small_context = {"temperature": 0, "num_ctx": 256}
    story = (ChatMessage("user", "Write a very long story about the sea."),)
    _, _, done = run(services, ChatRequest(MODEL, story, format=endless, options=small_context))
    assert done.done_reason == "length"
    assert done.eval_count < 256
    assert len(done.context) > 256  # prompt and answer filled the context (the last token
    # is sampled from the full context and never evaluated)


def test_a_hot_sampler_is_still_held_to_the_grammar(services):
    # At temperature 3 most tokens the chain draws break the schema and are drawn again with
    # the grammar applied (engine/llamalib.py): the answer still validates.
    schema = {
        "type": "object",
        "properties": {"colour": {"enum": ["red", "green", "blue"]}, "n": {"type": "integer"}},
        "required": ["colour", "n"],
    }
    options = {"temperature": 3.0, "top_k": 0, "top_p": 1.0, "seed": 7, "num_predict": 60}
    request = ChatRequest(
        MODEL, (ChatMessage("user", "Pick one."),), format=schema, options=options
    )
    text, _, done = run(services, request)
    assert done.done_reason == "stop", text
    jsonschema.validate(json.loads(text), schema)


def test_a_generate_prompt_longer_than_the_context_is_cut_and_flagged(services):
    prompt = "Count the stars with me, one by one, all night long. " * 60
    options = {"temperature": 0, "num_predict": 4, "num_ctx": 256}
    *_, done = list(services.chat.generate(GenerateRequest(MODEL, prompt, options=options)))
    assert isinstance(done, ChatDone)
    assert done.truncated
    assert len(done.context) <= 256
    with pytest.raises(ContextLengthExceededError):
        list(
            services.chat.generate(GenerateRequest(MODEL, prompt, options=options, truncate=False))
        )


def test_a_forced_call_in_harmony_syntax_under_the_gpt_oss_template(services):
    """The gpt-oss library template on SmolLM2 (read as harmony): a required call comes out
    as a commentary message to the function under its identifier name, is read back as a
    call of the name offered, and its arguments fit the schema."""
    template = (TEMPLATES / "gpt-oss.gotmpl").read_text()
    services.models.create("smol-oss", CreateSpec(from_model=MODEL, template=template))
    spaced = {"type": "function", "function": {**WEATHER["function"], "name": "get weather"}}
    request = ChatRequest(
        "smol-oss",
        PARIS,
        tools=(spaced,),
        tool_choice=ToolChoice("required"),
        think=False,
        options={"temperature": 0, "num_predict": 96},
    )
    text, calls, done = run(services, request)
    assert text == ""
    assert [call.name for call in calls] == ["get weather"]
    jsonschema.validate(calls[0].arguments, WEATHER["function"]["parameters"])
    assert done.done_reason == "stop"
    shown = prompt_text(services, "smol-oss", done)
    assert "type get_weather = (_: {" in shown
    assert "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" in shown
