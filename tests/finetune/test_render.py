"""Training text is what inference renders: same template, same system message and MESSAGE rows."""

from __future__ import annotations

import functools

import pytest

from ollamacli.config import Settings
from ollamacli.engine.base import ChatMessage
from ollamacli.errors import DatasetError
from ollamacli.finetune.dataset import Example
from ollamacli.finetune.render import IGNORE_INDEX, PromptFormat, tokenize_example
from ollamacli.gguffile import read_gguf
from ollamacli.modelfile import Message
from ollamacli.service import build_services
from ollamacli.service.chat import ChatRequest, ChatService
from ollamacli.service.models import CreateSpec
from tests.factories import CHATML, make_tiny_gguf
from tests.fakes import FakeFactory

SMOL_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


@pytest.fixture(scope="module")
def smol_template(smollm2_path) -> str:
    template = read_gguf(smollm2_path, with_tensors=False).chat_template
    assert template
    return template


def qa(question: str, answer: str) -> Example:
    return Example((ChatMessage("user", question), ChatMessage("assistant", answer)), "d:1")


def chars(text: str) -> list[int]:
    return [ord(c) for c in text]


def test_single_turn_uses_the_models_default_system_message(smol_template):
    fmt = PromptFormat.for_model(
        modelfile_template=None, gguf_template=smol_template, special=("<|im_start|>", "<|im_end|>")
    )
    assert fmt.pieces(qa("Who are you?", "I am Xiaoji.")) == [
        (SMOL_SYSTEM + "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n", False),
        ("I am Xiaoji.<|im_end|>\n", True),
    ]


def test_the_modelfile_template_wins_over_the_gguf_one(smol_template):
    fmt = PromptFormat.for_model(modelfile_template=CHATML, gguf_template=smol_template)
    assert (
        fmt.pieces(qa("Q", "A"))[0][0] == "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    )


def test_multi_turn_trains_every_assistant_turn_and_nothing_else():
    fmt = PromptFormat.for_model(modelfile_template=CHATML, gguf_template=None)
    example = Example(
        (
            ChatMessage("system", "S"),
            ChatMessage("user", "Q1"),
            ChatMessage("assistant", "A1"),
            ChatMessage("user", "Q2"),
            ChatMessage("assistant", "A2"),
        ),
        "d:1",
    )
    assert fmt.pieces(example) == [
        (
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n",
            False,
        ),
        ("A1<|im_end|>\n", True),
        ("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n", False),
        ("A2<|im_end|>\n", True),
    ]


def test_an_answer_without_an_end_marker_gets_the_eos_token():
    # Ollama's default `{{ .Prompt }}` has no end-of-turn marker; the model must still learn to stop.
    fmt = PromptFormat.for_model(
        modelfile_template=None, gguf_template=None, special=("<s>", "</s>")
    )
    pieces = fmt.pieces(qa("Q", "A"))
    assert pieces == [("Q", False), ("A</s>", True)]


def test_context_messages_are_not_trained():
    seeded = [ChatMessage("user", "hi"), ChatMessage("assistant", "hello")]
    fmt = PromptFormat.for_model(
        modelfile_template=CHATML, gguf_template=None, assemble=lambda m: [*seeded, *m]
    )
    trained = [text for text, is_trained in fmt.pieces(qa("Q", "A")) if is_trained]
    assert trained == ["A<|im_end|>\n"]


def test_the_prompt_piece_is_exactly_what_chat_service_sends_the_engine(tmp_path, smol_template):
    factory = FakeFactory(chat_template=smol_template)
    services = build_services(Settings(data_dir=tmp_path, models_dir=tmp_path / "m"), factory)
    gguf = make_tiny_gguf(tmp_path / "base.gguf", chat_template=None, context_length=8192)
    spec = CreateSpec(
        from_file=gguf,
        system="You are the helpdesk.",
        messages=(Message("user", "Hello?"), Message("assistant", "Hi.")),
    )
    services.models.create("base", spec)
    resolved = services.store.resolve(services.store.entries()[0].name)
    question = ChatMessage("user", "Who are you?")
    list(services.chat.chat(ChatRequest("base", (question,))))
    fmt = PromptFormat.for_model(
        modelfile_template=resolved.template,
        gguf_template=smol_template,
        assemble=functools.partial(ChatService.conversation, resolved),
    )
    prompt, answer = fmt.pieces(qa("Who are you?", "I am Xiaoji."))[-2:]
    assert factory.loaded[0].prompts == [prompt[0]]
    assert "<|im_start|>system\nYou are the helpdesk.<|im_end|>" in prompt[0]
    assert answer == ("I am Xiaoji.<|im_end|>\n", True)


def test_tokenize_masks_the_prompt_and_adds_bos_when_the_model_does():
    fmt = PromptFormat.for_model(modelfile_template=CHATML, gguf_template=None, bos_id=1)
    result = tokenize_example(qa("Q", "A"), fmt, chars, max_length=512)
    prompt = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    assert result.input_ids == (1, *chars(prompt), *chars("A<|im_end|>\n"))
    assert result.labels == (IGNORE_INDEX,) * (1 + len(prompt)) + tuple(chars("A<|im_end|>\n"))
    assert result.trained_tokens == len("A<|im_end|>\n")


def test_tokenize_labels_the_prompt_for_a_prompt_loss_only_when_asked():
    fmt = PromptFormat.for_model(modelfile_template=CHATML, gguf_template=None, bos_id=1)
    prompt = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    answer = chars("A<|im_end|>\n")
    plain = tokenize_example(qa("Q", "A"), fmt, chars, max_length=512)
    asked = tokenize_example(qa("Q", "A"), fmt, chars, max_length=512, prompt=True)
    assert plain.prompt_labels == ()
    assert (asked.input_ids, asked.labels) == (plain.input_ids, plain.labels)
    assert asked.prompt_labels == (
        IGNORE_INDEX,  # BOS: nothing predicts it
        *chars(prompt),
        *(IGNORE_INDEX,) * len(answer),
    )
    assert asked.trained_tokens == len(answer)  # the answer's tokens still set the weights


def test_tokenize_cuts_long_rows_and_refuses_rows_with_no_answer_left():
    fmt = PromptFormat.for_model(modelfile_template=CHATML, gguf_template=None)
    prompt_length = len("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n")
    cut = tokenize_example(qa("Q", "ABCDEF"), fmt, chars, max_length=prompt_length + 2)
    assert len(cut.input_ids) == prompt_length + 2
    assert cut.trained_tokens == 2
    with pytest.raises(
        DatasetError, match=r"^d:1: no answer tokens left within --max-seq-length 10"
    ):
        tokenize_example(qa("Q", "A"), fmt, chars, max_length=10)


def test_a_trace_is_learned_after_the_tag_the_prompt_opens():
    from ollamacli.finetune.dataset import parse_dataset
    from tests.finetune.test_thinking_real import THINK_TEMPLATE

    fmt = PromptFormat.for_model(
        modelfile_template=THINK_TEMPLATE, gguf_template=None, special=("", "<|im_end|>")
    )
    assert fmt.think is True  # inference's default for a template with a trace
    row = '{"content": "Q", "thinking": "T", "response": "A"}'
    (example,) = parse_dataset(row)
    assert example.messages[-1] == ChatMessage("assistant", "A", thinking="T")
    assert fmt.pieces(example) == [
        ("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n", False),
        ("T\n</think>\n\nA<|im_end|>", True),
    ]
