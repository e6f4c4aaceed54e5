"""The load/think spinner: draws in place on a terminal, erases itself, silent elsewhere."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

from ollamacli.cli.answer import stream_answer
from ollamacli.cli.spinner import FRAMES, Spinner
from ollamacli.cli.wordwrap import WordWrapper
from ollamacli.engine.base import CancelToken, TextChunk
from ollamacli.service.chat import ChatDone, ChatEvent


def test_spinner_draws_frames_in_place_and_erases_itself():
    stream = io.StringIO()
    with Spinner(stream, enabled=True):
        time.sleep(0.25)
    text = stream.getvalue()
    assert text.startswith(FRAMES[0] + "\x1b[1D")
    assert text.endswith("\x1b[K")
    assert text.count("\x1b[K") == 1


def test_spinner_is_silent_when_not_on_a_terminal():
    stream = io.StringIO()
    with Spinner(stream):
        time.sleep(0.15)
    assert stream.getvalue() == ""


def test_stream_answer_stops_the_spinner_before_the_first_text():
    stream, written = io.StringIO(), []

    def events() -> Iterator[ChatEvent]:
        time.sleep(0.15)
        yield TextChunk("")
        assert stream.getvalue().count("\x1b[K") == 0  # still spinning on an empty chunk
        yield TextChunk("Hi")
        yield ChatDone(done_reason="stop")

    def write(text: str) -> None:
        assert stream.getvalue().endswith("\x1b[K")  # erased before any text
        written.append(text)

    token = CancelToken()
    with Spinner(stream, enabled=True) as spinner:
        answer = stream_answer(events(), WordWrapper(write, 80), token, spinner)
    assert (answer.text, answer.cancelled) == ("Hi", False)
    assert written == ["Hi"]
    assert stream.getvalue().count("\x1b[K") == 1
