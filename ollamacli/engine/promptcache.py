"""Saved KV states of prompts, kept in RAM after their sequence is given to another request.

A loaded model serves `OLLAMA_NUM_PARALLEL` sequences; a cached prompt lives in its sequence only
until another request takes that sequence. When a sequence that holds a long prompt (an agent's
system prompt and tools) is about to be overwritten, the batch loop saves its state here
(`llama_state_seq_get_data`); a later request with that beginning restores it
(`llama_state_seq_set_data`) instead of reading it again. llama-server keeps such a cache too
(`--cache-ram`).

Invariants: an entry's state holds exactly `entry.tokens` at positions 0.. of one sequence of the
same context; the entries' sizes add up to at most the budget, least recently used out first; an
entry whose tokens another one extends is dropped (the longer one serves both).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

DEFAULT_BUDGET = 1 << 30
"""Bytes of saved states per loaded model (SmolLM2-135M: about 23 KiB per token)."""


def common_prefix(first: list[int], second: list[int]) -> int:
    """Length of the common beginning of two token lists."""
    limit = min(len(first), len(second))
    for index in range(limit):
        if first[index] != second[index]:
            return index
    return limit


@dataclass(eq=False)
class SavedPrompt:
    """One sequence's saved state and the tokens it holds."""

    tokens: list[int]
    state: Any  # the ctypes byte buffer llama.cpp filled
    size: int


class PromptCache:
    """Saved sequence states by their tokens, within a byte budget (see the module)."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self.used = 0
        self._entries: OrderedDict[int, SavedPrompt] = OrderedDict()  # id -> entry, LRU first

    def __len__(self) -> int:
        return len(self._entries)

    def best(self, prompt: list[int]) -> tuple[SavedPrompt | None, int]:
        """The entry sharing the longest beginning with `prompt`, and that length."""
        found, length = None, 0
        for entry in self._entries.values():
            shared = common_prefix(entry.tokens, prompt)
            if shared > length:
                found, length = entry, shared
        return found, length

    def covers(self, tokens: list[int], slack: int) -> bool:
        """True when an entry already holds all but at most `slack` of these tokens."""
        return any(
            common_prefix(entry.tokens, tokens) >= len(tokens) - slack
            for entry in self._entries.values()
        )

    def use(self, entry: SavedPrompt) -> None:
        """Mark an entry as just used (the last to go)."""
        self._entries.move_to_end(id(entry))

    def add(self, entry: SavedPrompt) -> bool:
        """Keep an entry (False when it alone is over the budget); entries it extends go, then
        the least recently used until the budget holds."""
        if entry.size > self.budget:
            return False
        for key, old in list(self._entries.items()):
            if common_prefix(old.tokens, entry.tokens) == len(old.tokens):
                self._drop(key)
        while self._entries and self.used + entry.size > self.budget:
            self._drop(next(iter(self._entries)))
        self._entries[id(entry)] = entry
        self.used += entry.size
        return True

    def _drop(self, key: int) -> None:
        self.used -= self._entries.pop(key).size
