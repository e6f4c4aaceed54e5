"""Log-probabilities of generated tokens (placeholder until the logprobs branch lands)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ollamacli.engine.base import TokenLogprob, TopLogprob


def token_logprob(
    logits: np.ndarray[Any, np.dtype[np.float32]],
    token: int,
    top: int,
    piece: Callable[[int, bool], bytes],
) -> TokenLogprob:
    """The chosen token's log-probability under the raw logits, with the `top` best."""
    shifted = logits.astype(np.float64) - float(logits.max())
    log_total = float(np.log(np.exp(shifted).sum()))
    best: tuple[TopLogprob, ...] = ()
    if top > 0:
        ids = np.argpartition(-shifted, top)[:top]
        ids = ids[np.argsort(-shifted[ids])]
        best = tuple(_entry(int(i), float(shifted[i]) - log_total, piece) for i in ids)
    chosen = _entry(token, float(shifted[token]) - log_total, piece)
    return TokenLogprob(chosen.token, token, chosen.logprob, chosen.bytes, best)


def _entry(token: int, logprob: float, piece: Callable[[int, bool], bytes]) -> TopLogprob:
    data = piece(token, False)
    return TopLogprob(data.decode("utf-8", "replace"), token, logprob, tuple(data))
