"""LlamaCppEngine on the real bundled SmolLM2 (temperature 0 or fixed seeds, few tokens)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from ollamacli.engine.base import (
    CancelToken,
    Completion,
    GenerationEvent,
    LoadConfig,
    SamplingConfig,
    TextChunk,
)
from ollamacli.engine.llama import LlamaCppEngine, LlamaCppFactory, format_grammar
from ollamacli.errors import ContextLengthExceededError, InvalidRequestError, ModelLoadError
from tests.factories import assert_json_answer, make_tiny_gguf

pytestmark = pytest.mark.llama

GREEDY = SamplingConfig(temperature=0, num_predict=16)
# A JSON string no answer can finish within these tests' limits: with it the model cannot stop
# early, whatever words it picks on this CPU.
ENDLESS = format_grammar({"type": "string", "minLength": 400})


def chat(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[LlamaCppEngine]:
    loaded = LlamaCppFactory().load(LoadConfig(smollm2_path, num_ctx=1024))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def small_engine(smollm2_path: Path) -> Iterator[LlamaCppEngine]:
    loaded = LlamaCppFactory().load(LoadConfig(smollm2_path, num_ctx=256))  # llama.cpp's least
    yield loaded
    loaded.close()


def run(
    engine: LlamaCppEngine,
    prompt: str | list[int],
    sampling: SamplingConfig = GREEDY,
    cancel: CancelToken | None = None,
) -> tuple[list[str], Completion]:
    chunks: list[str] = []
    events: list[GenerationEvent] = list(engine.generate(prompt, sampling, cancel))
    *texts, done = events
    assert isinstance(done, Completion)
    for event in texts:
        assert isinstance(event, TextChunk)
        chunks.append(event.text)
    return chunks, done


def warmed(engine: LlamaCppEngine, prompt: str) -> str:
    """Evaluate the prompt once, so compared runs both start from the same cached state."""
    run(engine, prompt, SamplingConfig(temperature=0, num_predict=1))
    return prompt


def test_model_facts_are_exposed(engine):
    assert engine.n_ctx == 1024
    assert "<|im_start|>" in engine.metadata["tokenizer.chat_template"]
    assert engine.eos_token == "<|im_end|>"
    assert engine.detokenize(engine.tokenize("<|im_end|> hi")) == "<|im_end|> hi"


def test_answers_stream_in_pieces_then_end_with_statistics(engine):
    prompt = chat("Why is the sky blue?")
    chunks, done = run(engine, prompt)
    prompt_tokens = engine.prompt_tokens(prompt)
    assert len(chunks) >= 5
    assert all(chunks)
    assert "".join(chunks).strip()
    assert done.done_reason in ("stop", "length")
    assert 0 < done.prompt_eval_count <= len(prompt_tokens)
    assert done.prompt_eval_duration > 0
    assert 0 < done.eval_count <= GREEDY.num_predict
    assert done.eval_duration > 0
    assert list(done.context[: len(prompt_tokens)]) == prompt_tokens
    assert len(done.context) == len(prompt_tokens) + done.eval_count
    assert engine.detokenize(list(done.context[len(prompt_tokens) :])) == "".join(chunks)


def test_num_predict_limits_eval_count_and_reports_length(engine):
    _, done = run(
        engine, chat("Write a long story about a dragon."), GREEDY.__class__(num_predict=5)
    )
    assert done.eval_count == 5
    assert done.done_reason == "length"


def test_stop_string_ends_the_answer_and_is_never_printed(engine):
    prompt = warmed(engine, chat("Write a long story about a dragon who learns to cook."))
    full = "".join(run(engine, prompt, SamplingConfig(temperature=0, num_predict=16))[0])
    words = full.split()
    stop = words[3]
    expected = full[: full.index(stop)]
    chunks, done = run(engine, prompt, SamplingConfig(temperature=0, num_predict=16, stop=(stop,)))
    assert "".join(chunks) == expected
    assert stop not in "".join(chunks)
    assert done.done_reason == "stop"


def test_a_continued_conversation_evaluates_only_the_new_tokens(engine):
    first_prompt = chat("Name a colour.")
    first_chunks, first = run(engine, first_prompt, SamplingConfig(temperature=0, num_predict=6))
    second_prompt = first_prompt + "".join(first_chunks) + "<|im_end|>\n" + chat("And another one?")
    second_tokens = engine.prompt_tokens(second_prompt)
    # The last token of a length-limited answer is never evaluated; a stopped one ends on EOS.
    evaluated = first.context[:-1] if first.done_reason == "length" else first.context
    common = 0
    for cached, token in zip(evaluated, second_tokens[:-1], strict=False):
        if cached != token:
            break
        common += 1
    _, second = run(engine, second_prompt, SamplingConfig(temperature=0, num_predict=4))
    assert second.prompt_eval_count == len(second_tokens) - common
    assert second.prompt_eval_count < len(second_tokens) // 2


def test_a_fixed_seed_reproduces_the_answer_and_other_seeds_vary(engine):
    prompt = warmed(engine, chat("Invent a name for a cat."))

    def sample(seed: int) -> str:
        sampling = SamplingConfig(temperature=1.2, top_k=100, top_p=1.0, seed=seed, num_predict=12)
        return "".join(run(engine, prompt, sampling)[0])

    first = sample(42)
    assert sample(42) == first
    assert any(sample(seed) != first for seed in (1, 2, 3))


@pytest.mark.parametrize(
    "options",
    [{"top_k": 1}, {"top_p": 0.0}, {"min_p": 1.0}],
    ids=["top_k", "top_p", "min_p"],
)
def test_truncation_samplers_are_honoured(engine, options):
    prompt = warmed(engine, chat("Tell me about the sea."))
    greedy = run(engine, prompt, SamplingConfig(temperature=0, num_predict=10))[0]
    narrowed = SamplingConfig(**{"temperature": 1.5, "seed": 3, "num_predict": 10, **options})
    assert run(engine, prompt, narrowed)[0] == greedy


@pytest.mark.parametrize(
    "penalty",
    [{"repeat_penalty": 2.0}, {"frequency_penalty": 1.5}, {"presence_penalty": 1.5}],
    ids=["repeat", "frequency", "presence"],
)
def test_penalties_and_their_window_are_honoured(engine, penalty):
    prompt = warmed(engine, chat("Repeat the word apple five times."))
    greedy = run(engine, prompt, SamplingConfig(temperature=0, num_predict=12))[0]
    penalised = SamplingConfig(**{"temperature": 0, "num_predict": 12, **penalty})
    assert run(engine, prompt, penalised)[0] != greedy
    no_window = SamplingConfig(
        **{"temperature": 0, "num_predict": 12, "repeat_last_n": 0, **penalty}
    )
    assert run(engine, prompt, no_window)[0] == greedy


def test_mirostat_samples_reproducibly_with_a_seed(engine):
    prompt = warmed(engine, chat("Say something nice."))
    sampling = SamplingConfig(temperature=0.8, mirostat=2, seed=5, num_predict=8)
    first, done = run(engine, prompt, sampling)
    assert done.eval_count > 0
    assert run(engine, prompt, sampling)[0] == first


def test_chinese_output_streams_whole_characters(engine):
    question = chat("请用中文回答：你好吗？")  # noqa: RUF001  # full-width punctuation is Chinese
    # Held to CJK characters by a grammar: whether the model would answer in Chinese unaided
    # depends on its greedy path, which differs across CPUs. SmolLM2's vocabulary has few whole
    # CJK tokens, so some characters arrive split over several byte tokens.
    cjk = "root ::= [\u4e00-\u9fff]{12,}"
    sampling = SamplingConfig(temperature=0, num_predict=8, grammar=cjk)
    chunks, done = run(engine, question, sampling)
    answer = list(done.context[-done.eval_count :])
    split = [t for t in answer if "\ufffd" in engine.detokenize([t])]
    assert split, "no token split a character: the hold-back was not exercised"
    text = "".join(chunks)
    assert any("\u4e00" <= char <= "\u9fff" for char in text)
    assert all("\ufffd" not in chunk for chunk in chunks)
    assert text == engine.detokenize(answer)


def test_format_json_output_parses(engine):
    prompt = chat('Give a JSON object with the key "name" set to "Tom".')
    sampling = SamplingConfig(temperature=0, num_predict=120, grammar=format_grammar("json"))
    chunks, done = run(engine, prompt, sampling)
    assert_json_answer("".join(chunks), done.done_reason)


def test_format_schema_output_matches_the_schema(engine):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}, "big": {"type": "boolean"}},
        "required": ["city", "big"],
        "additionalProperties": False,
    }
    sampling = SamplingConfig(temperature=0, num_predict=40, grammar=format_grammar(schema))
    chunks, _ = run(engine, chat("Name a big city."), sampling)
    value = json.loads("".join(chunks))
    assert set(value) == {"city", "big"}
    assert isinstance(value["big"], bool)
    assert len(value["city"]) <= 12


def test_an_invalid_grammar_is_a_request_error(engine):
    with pytest.raises(InvalidRequestError, match="invalid grammar"):
        run(engine, chat("hi"), SamplingConfig(grammar="root ::= ("))


def test_cancel_stops_between_tokens(engine):
    cancel = CancelToken()
    events = engine.generate(chat("Write a long story."), SamplingConfig(num_predict=64), cancel)
    first = next(events)
    assert isinstance(first, TextChunk)
    cancel.cancel()
    rest = list(events)
    done = rest[-1]
    assert isinstance(done, Completion)
    assert done.eval_count < 8
    assert done.done_reason == "stop"


def _prompt_of(engine: LlamaCppEngine, size: int) -> str:
    """A chat prompt of about `size` tokens."""
    words = 0
    while len(engine.prompt_tokens(chat(" ".join(["story"] * (words + 10))))) < size:
        words += 10
    return chat("Continue: " + " ".join(["story"] * words))


def test_a_full_context_ends_with_length(small_engine):
    prompt = _prompt_of(small_engine, small_engine.n_ctx - 12)
    used = len(small_engine.prompt_tokens(prompt))
    assert small_engine.n_ctx - used < 20
    sampling = SamplingConfig(temperature=0, num_predict=-1, grammar=ENDLESS)
    _, done = run(small_engine, prompt, sampling)
    assert done.done_reason == "length"
    assert done.eval_count == small_engine.n_ctx - used + 1


def test_a_prompt_longer_than_the_context_keeps_num_keep_and_the_end(small_engine):
    prompt = _prompt_of(small_engine, small_engine.n_ctx + 40)
    tokens = small_engine.prompt_tokens(prompt)
    assert len(tokens) > small_engine.n_ctx
    sampling = SamplingConfig(temperature=0, num_predict=4, num_keep=3)
    _, done = run(small_engine, prompt, sampling)
    assert done.truncated
    kept = list(done.context[: len(done.context) - done.eval_count])
    assert kept[:3] == tokens[:3]
    assert kept[-10:] == tokens[-10:]
    assert len(kept) < small_engine.n_ctx
    with pytest.raises(ContextLengthExceededError, match="num_ctx 256"):
        run(small_engine, prompt, SamplingConfig(num_predict=4, truncate=False))


def test_embeddings_are_deterministic_per_text(smollm2_path):
    embedder = LlamaCppFactory().load(LoadConfig(smollm2_path, num_ctx=128, embedding=True))
    try:
        first, other, again = embedder.embed(["hello world", "bonjour", "hello world"])
        assert len(first) == 576
        assert first == again
        assert first != other
        with pytest.raises(InvalidRequestError):
            embedder.embed([""])
    finally:
        embedder.close()


def _lora(path: Path, *, rows: int = 576, scale: float = 0.5) -> Path:
    """A GGUF LoRA on every attention query projection of SmolLM2 (576 wide, rank 4)."""
    writer = GGUFWriter(str(path), "llama")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 4.0)
    rng = np.random.default_rng(0)
    for block in range(30):
        a = rng.standard_normal((4, 576)) * scale
        b = rng.standard_normal((rows, 4)) * scale
        writer.add_tensor(f"blk.{block}.attn_q.weight.lora_a", a.astype(np.float32))
        writer.add_tensor(f"blk.{block}.attn_q.weight.lora_b", b.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_lora_adapter_changes_the_answers(smollm2_path, tmp_path, engine):
    prompt = chat("Name a fruit.")
    adapted = LlamaCppFactory().load(
        LoadConfig(smollm2_path, num_ctx=128, adapters=(_lora(tmp_path / "a.gguf"),))
    )
    try:
        assert run(adapted, prompt)[0] != run(engine, prompt)[0]
    finally:
        adapted.close()


def test_an_adapter_for_another_model_is_a_load_error(smollm2_path, tmp_path):
    adapter = _lora(tmp_path / "bad.gguf", rows=100)
    with pytest.raises(ModelLoadError, match="incorrect shape") as caught:
        LlamaCppFactory().load(LoadConfig(smollm2_path, num_ctx=128, adapters=(adapter,)))
    assert caught.value.path == str(adapter)


def test_an_unloadable_file_is_a_one_line_load_error(tmp_path):
    broken = make_tiny_gguf(tmp_path / "tiny.gguf")
    with pytest.raises(ModelLoadError) as caught:
        LlamaCppFactory().load(LoadConfig(broken, num_ctx=128))
    assert str(broken) in str(caught.value)
    assert "\n" not in str(caught.value)


def logprob_run(
    engine: LlamaCppEngine, prompt: str, sampling: SamplingConfig
) -> tuple[list[TextChunk], Completion]:
    *chunks, done = engine.generate(prompt, sampling)
    assert isinstance(done, Completion)
    assert all(isinstance(chunk, TextChunk) for chunk in chunks)
    return chunks, done  # type: ignore[return-value]  # checked just above


def test_logprobs_of_greedy_tokens_top_the_alternatives(engine):
    sampling = SamplingConfig(temperature=0, num_predict=8, logprobs=True, top_logprobs=5)
    chunks, done = logprob_run(engine, chat("Name a colour."), sampling)
    entries = [entry for chunk in chunks for entry in chunk.logprobs]
    assert len(entries) == done.eval_count > 0
    assert [e.token_id for e in entries] == list(done.context[-done.eval_count :])
    for entry in entries:
        tops = [top.logprob for top in entry.top]
        assert len(tops) == 5
        assert tops == sorted(tops, reverse=True)
        assert all(value <= 0 for value in [entry.logprob, *tops])
        assert sum(math.exp(value) for value in tops) <= 1 + 1e-6
        assert entry.top[0].token_id == entry.token_id  # the greedy token is the best one
        assert entry.top[0].logprob == entry.logprob
    generated = b"".join(bytes(entry.bytes) for entry in entries)
    assert generated.decode("utf-8", "replace") == "".join(chunk.text for chunk in chunks)


def test_logprobs_are_the_model_s_before_sampling_settings(engine):
    """A forced answer (grammar) at a high temperature: the reported logprobs are the raw
    distribution's (the first position's best tokens are those of a greedy run), and a stop
    string's tokens still come out, on the last chunk."""
    forced = 'root ::= "Hello world, friend."'
    prompt = warmed(engine, chat("Say hello."))
    cold = SamplingConfig(temperature=0, num_predict=12, logprobs=True, top_logprobs=3)
    hot = dataclasses.replace(
        cold, temperature=1.5, top_k=3, seed=7, grammar=forced, stop=("world",)
    )
    cold_chunks, _ = logprob_run(engine, prompt, cold)
    hot_chunks, hot_done = logprob_run(engine, prompt, hot)
    hot_entries = [entry for chunk in hot_chunks for entry in chunk.logprobs]
    first_cold, first_hot = cold_chunks[0].logprobs[0], hot_entries[0]
    assert [t.token_id for t in first_hot.top] == [t.token_id for t in first_cold.top]
    assert [t.logprob for t in first_hot.top] == pytest.approx(
        [t.logprob for t in first_cold.top], abs=1e-4
    )
    assert "".join(chunk.text for chunk in hot_chunks) == "Hello "
    assert len(hot_entries) == hot_done.eval_count
    assert b"".join(bytes(e.bytes) for e in hot_entries).startswith(b"Hello world")
    assert hot_chunks[-1].logprobs  # the stop string's tokens ride on the last chunk
    assert all(entry.logprob <= 0 for entry in hot_entries)
