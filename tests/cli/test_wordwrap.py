"""Streaming word wrap at the terminal width minus five, as Ollama's displayResponse."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from ollamacli.cli.wordwrap import WordWrapper, char_width


def _wrap(pieces: list[str], width: int = 20, *, enabled: bool = True) -> str:
    written: list[str] = []
    wrapper = WordWrapper(written.append, width, enabled=enabled)
    for piece in pieces:
        wrapper.feed(piece)
    return "".join(written)


def _render(text: str) -> list[str]:
    """What a terminal shows: apply `ESC[nD` (cursor back) and `ESC[K` (erase to end)."""
    lines: list[str] = []
    line: list[str] = []
    col = 0
    for token in re.findall(r"\x1b\[\d+D|\x1b\[K|.|\n", text, flags=re.DOTALL):
        if token == "\n":
            lines.append("".join(line))
            line, col = [], 0
        elif token.startswith("\x1b[") and token.endswith("D"):
            col -= int(token[2:-1])
        elif token == "\x1b[K":
            del line[col:]
        else:
            line[col : col + 1] = [token]
            col += 1
    lines.append("".join(line))
    return lines


def test_disabled_wrapper_passes_text_through():
    assert _wrap(["a" * 50, " b"], enabled=False) == "a" * 50 + " b"


def test_too_narrow_terminals_do_not_wrap():
    assert _wrap(["hello world"], width=9) == "hello world"


def test_a_word_crossing_the_margin_moves_to_the_next_line():
    text = _wrap(["hello world fo", "obar baz"])
    assert text == "hello world foo\x1b[3D\x1b[K\nfoobar baz"
    assert _render(text) == ["hello world ", "foobar baz"]


def test_a_space_at_the_margin_becomes_the_line_break():
    assert _wrap(["hello world foo bar"]) == "hello world foo\nbar"


def test_newlines_reset_the_line():
    assert _wrap(["hello world\nworld foo bar"]) == "hello world\nworld foo bar"


def test_words_longer_than_the_line_are_broken():
    assert _wrap(["x" * 40]) == "x" * 15 + "\n" + "x" * 15 + "\n" + "x" * 10


def test_wide_characters_count_two_columns():
    assert char_width("日") == 2
    assert char_width("é") == 1
    assert char_width("\u0301") == 0
    # As Ollama, the check is made before a character is printed, so a wide one may end at 16.
    assert _render(_wrap(["日本語" * 4])) == ["日本語日本語日本", "語日本語"]


@given(st.lists(st.sampled_from(["a", "bb", "ccc dd", " ", "eeeeeee", "\n", "f g h"]), max_size=40))
def test_wrapping_keeps_every_word_and_respects_the_width(pieces):
    text = "".join(pieces)
    rendered = _render(_wrap(pieces, width=20))
    assert all(len(line) <= 15 for line in rendered)
    assert "".join("".join(rendered).split()) == "".join(text.split())
    if all(len(word) <= 10 for word in text.split()):
        assert " ".join(rendered).split() == text.split()
