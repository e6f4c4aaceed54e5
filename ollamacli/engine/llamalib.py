"""Helpers around the `llama_cpp` module: log routing and sampler chains.

engine/llama.py imports `llama_cpp` and passes the module in; this module never imports it.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import threading
from collections import deque
from typing import Any

import numpy as np

from ollamacli.engine.base import SamplingConfig
from ollamacli.engine.structured import check_grammar
from ollamacli.errors import InvalidRequestError

logger = logging.getLogger("ollamacli.engine.llama")

_GGML_LOG_ERROR = 4  # ggml_log_level in the vendored llama.cpp (DEBUG=1 … ERROR=4)
_MIROSTAT_M = 100  # candidates mirostat v1 estimates from (llama.cpp's value)


class LogRouter:
    """Sends llama.cpp's log lines to `logging` (debug level) instead of stderr.

    Installed once per process under a lock: requests on several threads reach their first
    use of llama.cpp together (a server's first requests), and two unguarded installs could
    leave llama.cpp calling the callback whose Python object the other thread had just
    replaced and freed (a segfault in the next log line, the model load's first).
    """

    def __init__(self) -> None:
        self.callback: object | None = None  # kept alive: llama.cpp holds a raw pointer to it
        self.errors: deque[str] = deque(maxlen=8)
        self._lock = threading.Lock()

    def install(self, lib: Any) -> None:
        """Replace llama-cpp-python's callback (it prints errors to stderr) with ours, once,
        and have its /dev/null files closed at exit (the process's first use of the library)."""
        if self.callback is not None:
            return
        with self._lock:
            if self.callback is None:
                self._install_locked(lib)

    def _install_locked(self, lib: Any) -> None:

        @lib.llama_log_callback  # type: ignore[untyped-decorator]  # ctypes CFUNCTYPE
        def forward(level: int, text: bytes, _user_data: object) -> None:
            message = text.decode("utf-8", "replace").strip()
            if message:
                if level == _GGML_LOG_ERROR:
                    self.errors.append(message)
                logger.debug("llama.cpp[%d]: %s", level, message)

        close_devnull_at_exit(lib)
        lib.llama_log_set(forward, ctypes.c_void_p(0))
        self.callback = forward

    def last_error(self) -> str:
        """The latest error llama.cpp logged ("" if none since the last `errors.clear()`)."""
        return self.errors[-1] if self.errors else ""


LOGS = LogRouter()


def close_devnull_at_exit(lib: Any) -> None:
    """Close the two /dev/null files llama-cpp-python opens at import, when Python exits.

    `llama_cpp._utils` keeps them open for the life of the process and never closes them, so
    every interpreter that imported llama_cpp printed a `ResourceWarning: unclosed file
    <... name='/dev/null'>` at exit wherever warnings are shown (test runs, `python -X dev`).
    """
    utils = getattr(lib, "_utils", None)
    files = [getattr(utils, name, None) for name in ("outnull_file", "errnull_file")]
    for file in files:
        if file is not None and hasattr(file, "close"):
            atexit.register(file.close)


class RepeatPenalties:
    """The repeat, frequency and presence penalties over the last `last_n` tokens, computed as
    llama.cpp's penalties stage computes them (float32, the same order of operations), but on
    the remembered tokens only: llama.cpp's stage looks every token of the vocabulary up in
    its table, 0.14 ms per sampled token for SmolLM2's 49,152 tokens (measured here), where
    this touches at most `last_n` logits."""

    def __init__(self, last_n: int, repeat: float, frequency: float, presence: float) -> None:
        self.last_n = last_n
        self._repeat = np.float32(repeat)
        self._frequency = np.float32(frequency)
        self._presence = np.float32(presence)
        self._recent: deque[int] = deque()
        self._counts: dict[int, int] = {}

    def accept(self, token: int) -> None:
        """Remember a token (the oldest is forgotten past `last_n`)."""
        if len(self._recent) == self.last_n:
            oldest = self._recent.popleft()
            left = self._counts[oldest] - 1
            if left:
                self._counts[oldest] = left
            else:
                del self._counts[oldest]
        self._recent.append(token)
        self._counts[token] = self._counts.get(token, 0) + 1

    def apply(self, logits: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        """Penalise the remembered tokens' logits in place."""
        if not self._counts:
            return
        ids = np.fromiter(self._counts, dtype=np.intp, count=len(self._counts))
        counts = np.fromiter(self._counts.values(), dtype=np.float32, count=len(self._counts))
        values = logits[ids]
        values = np.where(values <= 0, values * self._repeat, values / self._repeat)
        logits[ids] = values - (counts * self._frequency + self._presence)


class SamplerChain:
    """A llama.cpp sampler chain for one request, in llama.cpp's order:
    penalties, then top-k, typical, top-p, min-p, temperature and the random draw
    (or greedy at temperature 0, or mirostat).

    The penalties (`RepeatPenalties`) change the batch entry's logits in llama.cpp's buffer
    before the chain runs on them. A grammar is not a stage of the chain: checking every token
    of the vocabulary against it costs seconds per token with schema grammars (bounded strings
    nest deeply). As llama-server does (common/sampling.cpp), the chain picks a token first;
    only when the grammar rejects it are the logits filtered by the grammar and the token drawn
    again."""

    def __init__(
        self, lib: Any, vocab: Any, n_vocab: int, sampling: SamplingConfig, n_ctx: int
    ) -> None:
        self._lib = lib
        self._chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        last_n = n_ctx if sampling.repeat_last_n < 0 else sampling.repeat_last_n
        penalised = last_n > 0 and (
            sampling.repeat_penalty != 1.0
            or sampling.frequency_penalty != 0.0
            or sampling.presence_penalty != 0.0
        )
        self._penalties = (
            RepeatPenalties(
                last_n,
                sampling.repeat_penalty,
                sampling.frequency_penalty,
                sampling.presence_penalty,
            )
            if penalised
            else None
        )
        self._n_vocab = n_vocab
        self._grammar: Any = None
        try:
            if sampling.grammar:
                self._grammar = self._grammar_stage(vocab, sampling.grammar)
            for stage in _selection(lib, n_vocab, sampling):
                lib.llama_sampler_chain_add(self._chain, stage)
        except BaseException:
            self.close()
            raise

    def _grammar_stage(self, vocab: Any, grammar: str) -> Any:
        check_grammar(grammar, where="grammar")  # whatever made it: llama.cpp must not crash
        LOGS.errors.clear()
        stage = self._lib.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not stage:
            reason = LOGS.last_error() or "it does not parse"
            raise InvalidRequestError(f"invalid grammar: {reason}")
        return stage

    def accept_history(self, tokens: list[int]) -> None:
        """Let the repeat penalties see the end of the prompt, as llama-server does."""
        if self._penalties is not None:
            for token in tokens[-self._penalties.last_n :]:
                self._penalties.accept(token)

    def sample(self, ctx: Any, index: int = -1) -> int:
        """Pick the next token from the logits of batch entry `index` (and record it)."""
        lib = self._lib
        if self._grammar is None and self._penalties is None:
            return int(lib.llama_sampler_sample(self._chain, ctx, index))
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, index), shape=(self._n_vocab,))
        if self._penalties is not None:
            self._penalties.apply(logits)
        if self._grammar is None:
            token = int(lib.llama_sampler_sample(self._chain, ctx, index))
        else:
            token = self._draw(logits, grammar=False)
            if not self._grammar_allows(token):
                token = self._draw(logits, grammar=True)
            lib.llama_sampler_accept(self._grammar, token)
            lib.llama_sampler_accept(self._chain, token)
        if self._penalties is not None:
            self._penalties.accept(token)
        return token

    def _draw(self, logits: np.ndarray[Any, Any], *, grammar: bool) -> int:
        """Run the chain (after the grammar, if asked) over all logits; the chosen token."""
        lib = self._lib
        candidates = (lib.llama_token_data * self._n_vocab)()
        view = np.ctypeslib.as_array(candidates).view(_TOKEN_DATA)
        view["id"] = np.arange(self._n_vocab, dtype=np.int32)
        view["logit"] = logits
        view["p"] = 0.0
        array = lib.llama_token_data_array(candidates, self._n_vocab, -1, False)
        if grammar:
            lib.llama_sampler_apply(self._grammar, ctypes.byref(array))
        lib.llama_sampler_apply(self._chain, ctypes.byref(array))
        return int(array.data[array.selected].id)

    def _grammar_allows(self, token: int) -> bool:
        lib = self._lib
        single = (lib.llama_token_data * 1)(lib.llama_token_data(token, 1.0, 0.0))
        array = lib.llama_token_data_array(single, 1, -1, False)
        lib.llama_sampler_apply(self._grammar, ctypes.byref(array))
        return bool(np.isfinite(single[0].logit))

    def close(self) -> None:
        if self._chain is not None:
            self._lib.llama_sampler_free(self._chain)
            self._chain = None
        if self._grammar is not None:
            self._lib.llama_sampler_free(self._grammar)
            self._grammar = None


_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])


def _selection(lib: Any, n_vocab: int, s: SamplingConfig) -> list[Any]:
    """The stages that turn (penalised) logits into one token."""
    seed = lib.LLAMA_DEFAULT_SEED if s.seed < 0 else s.seed & 0xFFFFFFFF  # default = random
    if s.temperature <= 0:
        return [lib.llama_sampler_init_greedy()]
    if s.mirostat == 1:
        return [
            lib.llama_sampler_init_temp(s.temperature),
            lib.llama_sampler_init_mirostat(
                n_vocab, seed, s.mirostat_tau, s.mirostat_eta, _MIROSTAT_M
            ),
        ]
    if s.mirostat == 2:
        return [
            lib.llama_sampler_init_temp(s.temperature),
            lib.llama_sampler_init_mirostat_v2(seed, s.mirostat_tau, s.mirostat_eta),
        ]
    return [
        lib.llama_sampler_init_top_k(s.top_k),
        lib.llama_sampler_init_typical(s.typical_p, 1),
        lib.llama_sampler_init_top_p(s.top_p, 1),
        lib.llama_sampler_init_min_p(s.min_p, 1),
        lib.llama_sampler_init_temp(s.temperature),
        lib.llama_sampler_init_dist(seed),
    ]
