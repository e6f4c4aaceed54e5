"""Fitting a conversation into the context window: which old turns to drop.

As Ollama's `chatPrompt` (server/prompt.go): system turns and the last turn always stay, and
the oldest other turns go until the rendered prompt fits `num_ctx`.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ollamacli.engine.base import CancelToken, ChatMessage, Engine
from ollamacli.engine.templates import ChatTemplate
from ollamacli.engine.thinking import ThinkValue
from ollamacli.errors import ContextLengthExceededError, RequestCancelledError


@dataclass(frozen=True, slots=True)
class Fit:
    """How to fit: drop old turns or refuse (`truncate`), the thinking switch the template
    renders, and the request's cancel token."""

    truncate: bool = True
    think: ThinkValue = None
    cancel: CancelToken | None = None


def fit_conversation(
    engine: Engine,
    template: ChatTemplate,
    messages: Sequence[ChatMessage],
    tools: Sequence[Mapping[str, object]],
    fit: Fit,
) -> tuple[str, bool]:
    """The prompt, and whether old turns were dropped (never system turns or the last one)
    to make it fit the context; with `truncate=False` a prompt that does not fit raises
    `ContextLengthExceededError` with both token counts.

    Ollama's `chatPrompt` renders and tokenizes the conversation once per dropped turn, which
    is quadratic in the number of turns (2,001 short turns took minutes). Here the kept part
    is found from the end: suffixes of 2, 4, 8 ... turns until one does not fit, then a binary
    search between the last two sizes; that is the same choice (the longest suffix that fits)
    for a linear amount of work (one rendering of everything, then renderings and
    tokenizations about as long as what is kept), and `cancel` is checked before every
    rendering."""
    fitter = _Fitter(engine, template, messages, tools, fit)
    full = fitter.render(0)
    if fitter.surely_fits(full):
        return full, False
    if not fit.truncate:
        count = len(engine.tokenize(full))
        if count <= engine.n_ctx:
            return full, False
        raise ContextLengthExceededError(n_ctx=engine.n_ctx, requested=count)
    if len(messages) <= 1:
        return full, False  # the engine keeps the start and the end of a single turn
    start = fitter.first_kept()
    return fitter.render(start), start > 0


class _Fitter:
    """Renders the conversation from a given turn on (plus the system turns before it) and
    finds the first turn to keep; each rendering is remembered."""

    def __init__(
        self,
        engine: Engine,
        template: ChatTemplate,
        messages: Sequence[ChatMessage],
        tools: Sequence[Mapping[str, object]],
        fit: Fit,
    ) -> None:
        self.engine, self.template, self.tools, self.cancel = engine, template, tools, fit.cancel
        self.think = fit.think
        self.messages = list(messages)
        self.systems = [i for i, m in enumerate(messages) if m.role == "system"]
        self.rendered: dict[int, str] = {}

    def render(self, start: int) -> str:
        """The prompt for the turns from `start` on, with the earlier system turns first."""
        if start not in self.rendered:
            if self.cancel is not None and self.cancel.cancelled:
                raise RequestCancelledError()
            dropped = self.systems[: bisect.bisect_left(self.systems, start)]
            kept = [self.messages[i] for i in dropped] + self.messages[start:]
            self.rendered[start] = self.template.render(
                kept, tools=self.tools, think=self.think, cancel=self.cancel
            )
        return self.rendered[start]

    def surely_fits(self, prompt: str) -> bool:
        """True for a prompt of fewer bytes than the context has tokens (none is under a byte)."""
        n_ctx = self.engine.n_ctx
        return len(prompt) < n_ctx and len(prompt.encode()) < n_ctx

    def fits(self, start: int) -> bool:
        prompt = self.render(start)
        return self.surely_fits(prompt) or len(self.engine.tokenize(prompt)) <= self.engine.n_ctx

    def first_kept(self) -> int:
        """The first turn of the longest suffix that fits (0: everything fits; the last turn
        always stays). The whole conversation is tokenized only when all but its first turn
        fit: tokenizing a long prompt is the slow part."""
        last = len(self.messages) - 1
        fitting, size = last, 1
        while True:
            size *= 2
            start = max(0, last + 1 - size)
            if not self.fits(start):
                failing = start
                break
            fitting = start
            if start == 0:
                return fitting
        while fitting - failing > 1:
            middle = (fitting + failing) // 2
            if self.fits(middle):
                fitting = middle
            else:
                failing = middle
        return fitting
