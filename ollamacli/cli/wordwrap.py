"""Streaming word wrap for answers on a terminal, the way Ollama's `displayResponse` does it.

Text is printed character by character as it arrives. When a line reaches the terminal width
minus five, the word being written is taken back with ANSI cursor moves (`ESC[nD`, `ESC[K`) and
rewritten on the next line, so words are not split. Only used when stdout is a terminal.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

MARGIN = 5
"""Ollama wraps at the terminal width minus five columns."""


def char_width(char: str) -> int:
    """Columns a character takes on a terminal: 0 for combining marks, 2 for wide East Asian."""
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def text_width(text: str) -> int:
    """Columns a string takes on a terminal."""
    return sum(char_width(c) for c in text)


class WordWrapper:
    """Writes streamed text, wrapping words at `width - 5` when enabled."""

    def __init__(self, write: Callable[[str], object], width: int, *, enabled: bool = True) -> None:
        self._write = write
        self.width = width
        self.enabled = enabled and width >= 10
        self._line = 0
        self._word = ""
        self.started = False

    def feed(self, text: str) -> None:
        """Write a piece of the answer."""
        self.started = self.started or bool(text)
        if not self.enabled:
            self._write(text)
            return
        out: list[str] = []
        for char in text:
            if self._line + 1 > self.width - MARGIN:
                out.append(self._break(char))
            else:
                out.append(char)
                self._advance(char)
        self._write("".join(out))

    def write_line(self, text: str) -> None:
        """Write whole lines outside the wrapping (the thinking banners); the next piece
        starts at the beginning of a line."""
        self.started = self.started or bool(text)
        self._write(text)
        self._line = 0
        self._word = ""

    def _break(self, char: str) -> str:
        """The text that moves to a new line before `char`."""
        if char in " \t\r\n":
            # A space or newline at the margin simply becomes the line break.
            self._line = 0
            self._word = ""
            return "\n"
        word_width = text_width(self._word)
        if word_width > self.width - 10:
            # A word too long to move: break it where it stands.
            self._word = ""
            self._line = 0
            return "\n" + self._accept(char)
        back = f"\x1b[{word_width}D" if word_width else ""
        moved = f"{back}\x1b[K\n{self._word}{char}"
        self._line = word_width + char_width(char)
        self._word = "" if char_width(char) >= 2 else self._word + char
        return moved

    def _accept(self, char: str) -> str:
        self._advance(char)
        return char

    def _advance(self, char: str) -> None:
        width = char_width(char)
        self._line += width
        if width >= 2 or char in " \t":
            self._word = ""
        elif char in "\r\n":
            self._line = 0
            self._word = ""
        else:
            self._word += char
