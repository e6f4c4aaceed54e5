"""engine/logprobs.py: log-probabilities from a logits row, and their place on text chunks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollamacli.engine.base import TextChunk, TokenLogprob
from ollamacli.engine.logprobs import PendingLogprobs, token_logprob
from ollamacli.engine.streaming import TextStream

PIECES = {0: b"a", 1: b"bc", 2: b"\xe4\xb8", 3: b"\xad", 4: b"<|im_end|>"}


def piece(token: int) -> bytes:
    return PIECES.get(token, f"t{token}".encode())


def log_softmax(row: np.ndarray) -> np.ndarray:
    wide = row.astype(np.float64)
    result: np.ndarray = wide - (wide.max() + np.log(np.exp(wide - wide.max()).sum()))
    return result


def test_the_chosen_token_and_the_best_alternatives_from_the_whole_row() -> None:
    row = np.random.default_rng(1).normal(0, 4, 49152).astype(np.float32)
    entry = token_logprob(row, 1, 5, piece)
    reference = log_softmax(row)
    assert entry.token_id == 1
    assert entry.token == "bc"
    assert entry.bytes == (98, 99)
    assert entry.logprob == pytest.approx(reference[1], abs=1e-5)
    best = np.argsort(-reference, kind="stable")[:5]
    assert [top.token_id for top in entry.top] == list(best)
    assert [top.logprob for top in entry.top] == pytest.approx(list(reference[best]), abs=1e-5)
    assert [top.token for top in entry.top] == [f"t{t}" for t in best]
    assert math.fsum(math.exp(v) for v in reference) == pytest.approx(1.0)


def test_the_greedy_token_is_the_top_alternative() -> None:
    row = np.array([0.5, 3.0, -1.0, 2.0], dtype=np.float32)
    entry = token_logprob(row, int(row.argmax()), 3, piece)
    assert entry.top[0].token_id == entry.token_id == 1
    assert entry.top[0].logprob == entry.logprob < 0
    assert [top.token_id for top in entry.top] == [1, 3, 0]


def test_no_alternatives_unless_asked_and_never_more_than_the_vocabulary() -> None:
    row = np.array([1.0, 1.0, 0.0], dtype=np.float32)
    assert token_logprob(row, 0, 0, piece).top == ()
    entry = token_logprob(row, 0, 20, piece)
    assert [top.token_id for top in entry.top] == [0, 1, 2]  # ties: the lower id first
    assert entry.logprob == pytest.approx(math.log(math.e / (2 * math.e + 1)), abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-8, 8), min_size=1, max_size=3000),
    st.integers(1, 20),
)
def test_the_top_alternatives_are_exact_with_ties(values: list[int], top: int) -> None:
    row = np.array(values, dtype=np.float32)  # small integers: ties at every boundary
    entry = token_logprob(row, 0, top, piece)
    reference = sorted(range(len(values)), key=lambda i: (-values[i], i))[:top]
    assert [t.token_id for t in entry.top] == reference


def test_a_token_holding_part_of_a_character_keeps_its_bytes() -> None:
    row = np.zeros(8, dtype=np.float32)
    entry = token_logprob(row, 2, 0, piece)
    assert entry.bytes == (0xE4, 0xB8)
    assert entry.token == "\ufffd"
    assert entry.logprob == pytest.approx(-math.log(8))


def test_a_masked_token_gets_a_finite_floor_not_minus_infinity() -> None:
    row = np.array([0.0, -np.inf, 1.0], dtype=np.float32)
    entry = token_logprob(row, 1, 3, piece)
    assert math.isfinite(entry.logprob)
    assert entry.logprob < -1e30
    assert all(math.isfinite(top.logprob) for top in entry.top)


def entry_for(token: int, data: bytes) -> TokenLogprob:
    return TokenLogprob(data.decode("utf-8", "replace"), token, -0.5, tuple(data))


def decode_loop(
    tokens: list[bytes], stops: tuple[str, ...]
) -> tuple[list[TextChunk], int, TextStream]:
    """The engine loop's shape: add each token's entry, emit what the stream releases."""
    stream, pending = TextStream(stops), PendingLogprobs()
    chunks: list[TextChunk] = []
    used = 0
    for index, data in enumerate(tokens):
        used += 1
        pending.add(entry_for(index, data))
        text = stream.push(data)
        if text:
            chunks.append(pending.chunk(text))
        if stream.stopped:
            break
    last = pending.finish(stream.finish())
    if last is not None:
        chunks.append(last)
    return chunks, used, stream


def split_bytes(text: str, cuts: list[int]) -> list[bytes]:
    data = text.encode()
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="ab é中😀\n", max_size=30),
    st.lists(st.integers(0, 120), max_size=30),
    st.lists(st.sampled_from(["b ", "中😀", "é", "\n\n", "a"]), max_size=2),
)
def test_every_token_comes_out_once_in_order_with_its_text(
    text: str, cuts: list[int], stops: list[str]
) -> None:
    tokens = split_bytes(text, cuts)
    chunks, used, stream = decode_loop(tokens, tuple(stops))
    entries = [entry for chunk in chunks for entry in chunk.logprobs]
    assert [entry.token_id for entry in entries] == list(range(used))
    assert b"".join(bytes(entry.bytes) for entry in entries) == b"".join(tokens[:used])
    shown = ""
    carried = b""
    for chunk in chunks:  # no chunk shows text before the tokens that made it came out
        shown += chunk.text
        carried += b"".join(bytes(entry.bytes) for entry in chunk.logprobs)
        assert carried.decode("utf-8", "replace").startswith(shown)
    if not stream.stopped:
        assert shown == b"".join(tokens).decode("utf-8", "replace")


def test_held_back_tokens_ride_on_the_chunk_that_releases_them() -> None:
    chunks, _, _ = decode_loop([b"a", b"\xe4\xb8", b"\xad", b"b"], ())
    assert [(c.text, [e.token_id for e in c.logprobs]) for c in chunks] == [
        ("a", [0]),
        ("中", [1, 2]),
        ("b", [3]),
    ]


def test_a_stop_string_s_tokens_come_out_on_a_last_empty_chunk() -> None:
    chunks, used, _ = decode_loop([b"Hi", b" EN", b"D", b"never"], ("END",))
    assert used == 3
    assert [(c.text, [e.token_id for e in c.logprobs]) for c in chunks] == [
        ("Hi", [0]),
        (" ", [1]),
        ("", [2]),  # the stop string shows no text, but its tokens were generated
    ]


def test_without_entries_the_chunks_are_plain_text() -> None:
    pending = PendingLogprobs()
    assert pending.chunk("x") == TextChunk("x")
    assert pending.finish("") is None
    assert pending.finish("y") == TextChunk("y")
