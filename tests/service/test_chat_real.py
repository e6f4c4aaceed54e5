"""ChatService on the real bundled SmolLM2 through the scheduler (temperature 0, few tokens)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ollamacli.config import Settings
from ollamacli.engine.base import ChatMessage, TextChunk
from ollamacli.service import Services, build_services
from ollamacli.service.chat import ChatDone, ChatRequest, GenerateRequest
from ollamacli.service.models import CreateSpec
from tests.factories import assert_json_answer

pytestmark = pytest.mark.llama

GREEDY = {"temperature": 0, "num_predict": 8, "num_ctx": 1024}
CHATML_GO = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("chat-real")
    settings = Settings(data_dir=root, models_dir=root / "models", num_thread=2)
    built = build_services(settings)
    built.models.ensure("smollm2:135m")
    built.models.create(
        "capped", CreateSpec(from_model="smollm2:135m", parameters={"num_predict": 3})
    )
    built.models.create("go-chatml", CreateSpec(from_model="smollm2:135m", template=CHATML_GO))
    yield built
    built.scheduler.close()


def collect(events: Iterator[object]) -> tuple[list[str], ChatDone]:
    *chunks, done = list(events)
    assert isinstance(done, ChatDone)
    return [c.text for c in chunks if isinstance(c, TextChunk)], done


def ask(
    services: Services, model: str, *turns: ChatMessage, **fields
) -> tuple[list[str], ChatDone]:
    fields.setdefault("options", GREEDY)
    return collect(services.chat.chat(ChatRequest(model, turns, **fields)))


def test_answers_stream_and_report_ollamas_statistics(services):
    chunks, done = ask(services, "smollm2:135m", ChatMessage("user", "Why is the sky blue?"))
    assert len(chunks) >= 3
    assert "".join(chunks).strip()
    assert done.done_reason in ("stop", "length")
    assert done.prompt_eval_count > 0
    assert done.eval_count > 0
    assert done.prompt_eval_duration > 0
    assert done.eval_duration > 0
    assert done.total_duration >= done.load_duration + done.prompt_eval_duration
    _, again = ask(services, "smollm2:135m", ChatMessage("user", "Hi"))
    assert again.load_duration == 0  # still loaded


def test_turn_two_evaluates_only_the_new_tokens(services):
    question = ChatMessage("user", "Name a planet.")
    chunks, first = ask(services, "smollm2:135m", question)
    history = (question, ChatMessage("assistant", "".join(chunks)), ChatMessage("user", "Another?"))
    _, second = ask(services, "smollm2:135m", *history)
    prompt = second.context[: len(second.context) - second.eval_count]
    evaluated = first.context[:-1] if first.done_reason == "length" else first.context
    common = 0
    for cached, token in zip(evaluated, prompt[:-1], strict=False):
        if cached != token:
            break
        common += 1
    assert second.prompt_eval_count == len(prompt) - common
    assert second.prompt_eval_count < len(prompt) // 2


def test_options_precedence_is_observable(services):
    turn = ChatMessage("user", "Write a long story about a dragon.")
    options = {"temperature": 0, "num_ctx": 1024}
    endless = {"type": "string", "minLength": 200}  # no model can stop before the limit
    _, modelfile = ask(services, "capped", turn, options=options, format=endless)
    _, session = ask(
        services,
        "capped",
        turn,
        options=options,
        session_options={"num_predict": 5},
        format=endless,
    )
    _, request = ask(
        services,
        "capped",
        turn,
        options={**options, "num_predict": 7},
        session_options={"num_predict": 5},
        format=endless,
    )
    assert (modelfile.eval_count, session.eval_count, request.eval_count) == (3, 5, 7)
    assert modelfile.done_reason == session.done_reason == request.done_reason == "length"


def test_a_go_template_in_the_modelfile_gives_the_ggufs_jinja_prompt(services):
    turns = (ChatMessage("system", "You are terse."), ChatMessage("user", "Hello!"))
    options = {**GREEDY, "num_predict": 1}
    _, jinja = ask(services, "smollm2:135m", *turns, options=options)
    _, go = ask(services, "go-chatml", *turns, options=options)
    assert go.context == jinja.context


def test_a_stop_option_cuts_the_answer_before_it(services):
    prompt = GenerateRequest("smollm2:135m", "Count from one to ten in words.", options=GREEDY)
    collect(services.chat.generate(prompt))  # both compared runs then start from the cache
    full = "".join(collect(services.chat.generate(prompt))[0])
    stop = full.split()[2]
    options = {**GREEDY, "stop": [stop]}
    chunks, done = collect(
        services.chat.generate(GenerateRequest(prompt.model, prompt.prompt, options=options))
    )
    assert "".join(chunks) == full[: full.index(stop)]
    assert done.done_reason == "stop"
    assert done.stop_sequence == stop


def test_format_json_through_generate_parses(services):
    request = GenerateRequest(
        "smollm2:135m",
        'Give a JSON object with the key "name" set to "Tom".',
        format="json",
        options={**GREEDY, "num_predict": 120},
    )
    chunks, done = collect(services.chat.generate(request))
    assert_json_answer("".join(chunks), done.done_reason)
