"""Log-probabilities of generated tokens, from a logits row, and their place on text chunks.

`token_logprob` turns the model's raw logits for one position (the whole vocabulary, before
penalties, temperature or top-k reshape them, as llama-server's `n_probs` and Ollama report
them) into the chosen token's log-probability and the best alternatives. `PendingLogprobs`
carries those entries to the text they belong to: a token's text may be held back (part of a
UTF-8 character, a possible stop string), so entries wait for the next chunk that is emitted,
and whatever is still waiting at the end goes out on one last chunk.

Both are pure (numpy only) so every engine loop, single or batched, can share them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ollamacli.engine.base import TextChunk, TokenLogprob, TopLogprob

_STRIDE = 16
"""Top alternatives are searched from a floor found in every 16th logit (see `_best`)."""

_FLOOR = float(np.finfo(np.float32).min)
"""Reported instead of -inf (a token masked out entirely), which JSON cannot carry."""


def token_logprob(
    logits: np.ndarray[Any, Any],
    token: int,
    top_n: int,
    piece: Callable[[int], bytes],
) -> TokenLogprob:
    """The log-probability of `token` under log-softmax(`logits`), with the `top_n` most
    likely tokens (best first; ties keep the lower token id first).

    `logits` is one float row over the whole vocabulary; `piece` gives a token's bytes. The
    top tokens are found with a partial sort, so the cost is linear in the vocabulary."""
    row = np.asarray(logits, dtype=np.float32)
    peak = float(row.max())
    total = float(np.exp(row - peak).sum(dtype=np.float64))
    norm = peak + float(np.log(total))
    top: tuple[TopLogprob, ...] = ()
    if top_n > 0:
        best = _best(row, min(top_n, row.shape[0]))
        top = tuple(_top(int(t), float(row[t]) - norm, piece) for t in best)
    data = piece(token)
    return TokenLogprob(
        token=_text(data),
        token_id=token,
        logprob=_finite(float(row[token]) - norm),
        bytes=tuple(data),
        top=top,
    )


def _best(row: np.ndarray[Any, Any], count: int) -> np.ndarray[Any, Any]:
    """The ids of the `count` largest logits, largest first (ties: lower id first).

    The `count`-th largest of every `_STRIDE`-th logit is a floor that at least `count`
    logits reach, so the best are among those (a few hundred, not the vocabulary); only they
    are partitioned. This is exact and several times faster than partitioning the whole row.
    Ties go to the lower id, as llama.cpp's greedy sampler picks the first best token."""
    size = row.shape[0]
    if size >= 4 * _STRIDE * count:
        sample = np.partition(row[::_STRIDE], -count)
        candidates = np.flatnonzero(row >= sample[-count])
    else:
        candidates = np.arange(size)
    values = row[candidates]
    floor = np.partition(values, -count)[-count]
    best = candidates[values >= floor]  # the best, and every token tied with the last of them
    ordered: np.ndarray[Any, Any] = best[np.lexsort((best, -row[best]))[:count]]
    return ordered


def _top(token: int, logprob: float, piece: Callable[[int], bytes]) -> TopLogprob:
    data = piece(token)
    return TopLogprob(_text(data), token, _finite(logprob), tuple(data))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _finite(value: float) -> float:
    return value if value >= _FLOOR else _FLOOR


class PendingLogprobs:
    """Entries of generated tokens waiting for the text chunk that carries them.

    Use one per generated sequence: `add` every generated token's entry, wrap every text the
    loop emits with `chunk`, and at the end emit `finish(rest)` when it is not None. Each
    entry then comes out exactly once, in order. Without logprobs nothing is ever added and
    the chunks are plain text (`finish("")` is None)."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: list[TokenLogprob] = []

    def add(self, entry: TokenLogprob) -> None:
        """One more generated token's entry."""
        self._entries.append(entry)

    def chunk(self, text: str) -> TextChunk:
        """A chunk of `text` carrying every entry still waiting."""
        entries, self._entries = tuple(self._entries), []
        return TextChunk(text, entries)

    def finish(self, rest: str) -> TextChunk | None:
        """The last chunk: the text still held back, and every entry still waiting (the
        tokens of a stop string, or of a character left incomplete); None when neither."""
        if not rest and not self._entries:
            return None
        return self.chunk(rest)
