"""Continuous batching on the real bundled SmolLM2: requests decoded together in one context.

llama.cpp's kernels may round a sequence's numbers differently when it shares a batch, so
these tests never need two runs' greedy words to be equal: they compare log-probabilities
(within 0.05) and properties the words cannot change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ollamacli.engine.base import (
    CancelToken,
    Completion,
    LoadConfig,
    SamplingConfig,
    TextChunk,
    TokenLogprob,
)
from ollamacli.engine.llama import LlamaCppEngine, LlamaCppFactory, format_grammar
from ollamacli.errors import RequestCancelledError
from tests.factories import assert_json_answer

pytestmark = [pytest.mark.llama, pytest.mark.slow]

WORDS = ("ZEBRA", "MANGO", "PIANO", "TULIP", "ROBOT", "CANDLE", "GARLIC", "VIOLIN")
ENDLESS = format_grammar({"type": "string", "minLength": 400})
CLOSE = 0.3
"""Log-probability tolerance between a batched and a lone run: measured here, up to 0.21 (p95
0.11) over 12 tokens of 8 prompts (a batch takes other matrix kernels than one token alone), while
the eight prompts' first tokens all differ, so an answer computed on another prompt's cache
shows as a wrong token, not as a small difference."""


def chat(question: str, system: str = "") -> str:
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    return f"{head}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[LlamaCppEngine]:
    loaded = LlamaCppFactory(parallel=4).load(LoadConfig(smollm2_path, num_ctx=512))
    yield loaded
    loaded.close()


def answer(
    engine: LlamaCppEngine, prompt: str, sampling: SamplingConfig, cancel: CancelToken | None = None
) -> tuple[str, list[TokenLogprob], Completion]:
    text, logprobs = "", list[TokenLogprob]()
    for event in engine.generate(prompt, sampling, cancel):
        if isinstance(event, TextChunk):
            text += event.text
            logprobs += event.logprobs
        else:
            return text, logprobs, event
    raise AssertionError("no Completion")


def together(calls: list[tuple[str, SamplingConfig]], engine: LlamaCppEngine) -> list[object]:
    """Run generations from as many threads at once; results (or exceptions) in order."""
    results: list[object] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def work(index: int, prompt: str, sampling: SamplingConfig) -> None:
        start.wait()
        try:
            results[index] = answer(engine, prompt, sampling)
        except Exception as exc:  # noqa: BLE001  # reported to the test
            results[index] = exc

    threads = [threading.Thread(target=work, args=(i, p, s)) for i, (p, s) in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


def agreeing_prefix(a: list[TokenLogprob], b: list[TokenLogprob]) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x.token_id != y.token_id:
            break
        count += 1
    return count


def test_concurrent_requests_each_get_their_own_answer(engine, capsys):
    """Eight prompts, four sequences: each batched answer has the log-probabilities of its own
    prompt's lone answer (no cross-talk between sequences in the KV cache)."""
    sampling = SamplingConfig(temperature=0, num_predict=12, logprobs=True, top_logprobs=3)
    prompts = [chat(f"Repeat this word exactly once: {word}") for word in WORDS]
    alone = [answer(engine, prompt, sampling) for prompt in prompts]
    firsts = {lone[1][0].token_id for lone in alone}
    assert len(firsts) == len(prompts)  # a mixed-up answer would show in its first token
    batched = together([(prompt, sampling) for prompt in prompts], engine)
    assert engine.widest_batch >= 2
    equal = 0
    for index, result in enumerate(batched):
        assert isinstance(result, tuple), result
        text, logprobs, done = result
        own_text, own_logprobs, _ = alone[index]
        equal += text == own_text
        assert len(logprobs) == done.eval_count
        lone_first = own_logprobs[0]
        candidates = {top.token_id: top.logprob for top in logprobs[0].top}
        assert lone_first.token_id in candidates, (WORDS[index], text, own_text)
        assert abs(candidates[lone_first.token_id] - lone_first.logprob) < CLOSE
        agreed = agreeing_prefix(logprobs, own_logprobs)
        for mine, theirs in zip(logprobs[:agreed], own_logprobs[:agreed], strict=True):
            assert abs(mine.logprob - theirs.logprob) < CLOSE
    with capsys.disabled():
        print(f"\nbatched greedy answers equal to the lone ones: {equal}/{len(prompts)}")


def test_a_cancel_in_the_middle_of_a_batch_ends_only_that_request(engine):
    sampling = SamplingConfig(temperature=0, num_predict=30, grammar=ENDLESS)
    cancel = CancelToken()
    results: dict[str, object] = {}

    def cancelled() -> None:
        chunks = 0
        for event in engine.generate(chat("Tell me a long story."), sampling, cancel):
            if isinstance(event, TextChunk):
                chunks += 1
                if chunks == 3:
                    cancel.cancel()
            else:
                results["cancelled"] = event

    def full(name: str) -> None:
        results[name] = answer(engine, chat(f"Describe {name}."), sampling)[2]

    threads = [
        threading.Thread(target=cancelled),
        threading.Thread(target=full, args=("the sea",)),
        threading.Thread(target=full, args=("a forest",)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    stopped = results["cancelled"]
    assert isinstance(stopped, Completion)
    assert stopped.eval_count < 30
    for name in ("the sea", "a forest"):
        done = results[name]
        assert isinstance(done, Completion)
        assert (done.done_reason, done.eval_count) == ("length", 30)
    # The freed sequence serves the next request.
    assert answer(engine, chat("Hi"), SamplingConfig(temperature=0, num_predict=3))[2].eval_count


def test_a_cancel_while_the_prompt_is_read_is_an_error(engine):
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(RequestCancelledError):
        answer(engine, chat("word " * 300), SamplingConfig(num_predict=5), cancel)


def test_grammar_constrained_and_free_requests_share_a_batch(engine):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
    }
    constrained = SamplingConfig(temperature=0, num_predict=60, grammar=format_grammar(schema))
    free = SamplingConfig(temperature=0.7, seed=3, num_predict=40)
    results = together(
        [
            (chat("Which city is the capital of France? Answer in JSON."), constrained),
            (chat("Write a sentence about rain."), free),
            (chat("Answer in JSON: the capital of Italy."), constrained),
        ],
        engine,
    )
    for result in (results[0], results[2]):
        assert isinstance(result, tuple), result
        assert_json_answer(result[0], result[2].done_reason)
    assert isinstance(results[1], tuple), results[1]
    assert results[1][2].eval_count > 0


def test_a_shared_system_prompt_is_read_once(engine):
    """Agents send one long system prompt with every request: the first request reads it, the
    others share its cells (seq_cp) instead of evaluating it again, even when they all arrive at
    once (they wait for the first to read it)."""
    rules = " ".join(f"Rule {n}: answer politely and briefly about topic {n}." for n in range(30))
    system_tokens = len(engine.prompt_tokens(chat("x", system=rules)))
    assert system_tokens > 300
    sampling = SamplingConfig(temperature=0, num_predict=4)
    questions = ["What is rain?", "What is snow?", "What is wind?", "What is fog?"]
    results = together([(chat(q, system=rules), sampling) for q in questions], engine)
    counts = []
    for result in results:
        assert isinstance(result, tuple), result
        counts.append(result[2].prompt_eval_count)
    assert sum(counts) < system_tokens + 4 * 40, counts  # one reading, not four
    # A later request with the same system prompt reads only its own question.
    later = answer(engine, chat("What is hail?", system=rules), sampling)[2]
    assert later.prompt_eval_count < 40


def test_a_shared_prefix_gives_the_answer_of_one_read_alone(engine, smollm2_path):
    """The requests that share another sequence's prefix (a copy of its KV stream cut to the
    prefix) compute what a lone model reading the whole prompt computes. The answer (the secret
    code, 370 tokens back) depends on the start of the shared prefix: a prefix whose cells were
    lost or mixed up gives other first tokens (measured: 3 of 4 changed)."""
    filler = " ".join(f"Line {n}: the weather was calm and the road was long." for n in range(25))
    prefix = f"Secret code: ZEBRA TULIP. {filler}\n"
    tails = ["Again, the secret code:", "Once more, the secret code:", "Say the secret code:"]
    tails.append("Recall. Secret code:")
    sampling = SamplingConfig(temperature=0, num_predict=2, logprobs=True, top_logprobs=5)
    lone_engine = LlamaCppFactory(parallel=1).load(LoadConfig(smollm2_path, num_ctx=512))
    try:
        alone = [answer(lone_engine, prefix + tail, sampling) for tail in tails]
    finally:
        lone_engine.close()
    results = together([(prefix + tail, sampling) for tail in tails], engine)
    shared = 0
    for result, own in zip(results, alone, strict=True):
        assert isinstance(result, tuple), result
        text, logprobs, done = result
        shared += done.prompt_eval_count < 20  # its own tail only
        candidates = {top.token_id: top.logprob for top in logprobs[0].top}
        first = own[1][0]
        assert first.token_id in candidates, (text, own[0])
        assert abs(candidates[first.token_id] - first.logprob) < CLOSE, (text, own[0])
    assert shared >= 3  # one request read the prefix, the others took it from its sequence


def test_a_prompt_pushed_out_of_every_sequence_comes_back_from_the_prompt_cache(smollm2_path):
    """Two sequences, three long prompts: the first prompt's sequence is given to the third,
    so it is saved to RAM first; asked again, it is restored instead of read, and computes what
    a model reading it computes (the answer, 370 tokens back, depends on its beginning)."""
    filler = " ".join(f"Line {n}: the weather was calm and the road was long." for n in range(25))
    prefix = f"Secret code: ZEBRA TULIP. {filler}\n"
    others = [  # no common beginning with each other or with the first (a token would do)
        f"{name} story: " + " ".join(f"Step {n} of {name} went well." for n in range(60))
        for name in ("Alpha", "Beta")
    ]
    sampling = SamplingConfig(temperature=0, num_predict=2, logprobs=True, top_logprobs=5)
    question = prefix + "Say the secret code:"
    lone_engine = LlamaCppFactory(parallel=1).load(LoadConfig(smollm2_path, num_ctx=1024))
    try:
        reference = answer(lone_engine, question, sampling)
    finally:
        lone_engine.close()
    loaded = LlamaCppFactory(parallel=2).load(LoadConfig(smollm2_path, num_ctx=1024))
    try:
        first = answer(loaded, prefix + "Again, the secret code:", sampling)[2]
        assert first.prompt_eval_count > 350
        for other in others:  # the second takes the empty sequence, the third the first's
            assert answer(loaded, other, sampling)[2].prompt_eval_count > 300
        assert not any(
            cached[:40] == first_tokens(loaded, prefix) for cached in loaded.cached_tokens()
        )
        text, logprobs, done = answer(loaded, question, sampling)
    finally:
        loaded.close()
    assert done.prompt_eval_count < 20  # its own tail only: the prefix came back from RAM
    candidates = {top.token_id: top.logprob for top in logprobs[0].top}
    expected = reference[1][0]
    assert expected.token_id in candidates, (text, reference[0])
    assert abs(candidates[expected.token_id] - expected.logprob) < CLOSE, (text, reference[0])


def test_without_a_prompt_cache_a_pushed_out_prompt_is_read_again(smollm2_path):
    """OLLAMACLI_PROMPT_CACHE=0: nothing is saved, so the prompt is read again in full."""
    prefix = "Secret code: ZEBRA TULIP. " + " ".join(f"Note {n}: all is well." for n in range(50))
    other = "Alpha story: " + " ".join(f"Step {n} went well." for n in range(60))
    sampling = SamplingConfig(temperature=0, num_predict=1)
    loaded = LlamaCppFactory(parallel=1, prompt_cache=0).load(
        LoadConfig(smollm2_path, num_ctx=1024)
    )
    try:
        first = answer(loaded, prefix + " Code:", sampling)[2].prompt_eval_count
        answer(loaded, other, sampling)
        again = answer(loaded, prefix + " The code:", sampling)[2].prompt_eval_count
    finally:
        loaded.close()
    assert first > 300
    assert again > first - 10


def first_tokens(engine: LlamaCppEngine, text: str) -> list[int]:
    return engine.prompt_tokens(text)[:40]


def test_closing_the_model_ends_running_requests_with_an_error(smollm2_path):
    loaded = LlamaCppFactory(parallel=2).load(LoadConfig(smollm2_path, num_ctx=256))
    sampling = SamplingConfig(temperature=0, num_predict=200, grammar=ENDLESS)
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(answer(loaded, chat("Count to a thousand."), sampling))
        except RequestCancelledError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1.0)
    loaded.close()
    thread.join(timeout=60)
    assert len(outcome) == 1
    assert isinstance(outcome[0], (RequestCancelledError, tuple))


def test_embeddings_of_a_batch_equal_one_at_a_time(smollm2_path):
    embedder = LlamaCppFactory().load(LoadConfig(smollm2_path, num_ctx=256, embedding=True))
    try:
        texts = ["hello world", "bonjour tout le monde", "a much longer sentence " * 8, "日本"]
        batched = np.array(embedder.embed(texts))
        alone = np.array([embedder.embed([text])[0] for text in texts])
        assert batched.shape == (4, alone.shape[1])
        np.testing.assert_allclose(batched, alone, atol=1e-4)
        assert np.linalg.norm(batched[0] - batched[1]) > 1e-2  # distinct texts, distinct vectors
    finally:
        embedder.close()
