"""Thinking in the CLI (scripted engine): `run --think[=level]`, `--hidethinking`, the trace kept
off a pipe unless asked for, the REPL's `/set think` and `/set nothink`, and Ollama's banners."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ollamacli.cli.answer import BOLD, DEFAULT, GREY, RunOptions, ThinkingView, stream_answer
from ollamacli.cli.wordwrap import WordWrapper
from ollamacli.engine.base import CancelToken, ChatMessage, TextChunk
from ollamacli.service import Services, build_services
from ollamacli.service.chat import ChatDone, ChatEvent, ThinkingChunk
from ollamacli.service.models import CreateSpec
from tests.cli.chat_helpers import PLAIN, run_script
from tests.cli.test_run import _pipe_stdin, _use_engine
from tests.factories import make_tiny_gguf
from tests.service.test_thinking_service import OPENS

TRACE = ("I should", " answer.</think>", "\n\nBecause.")
SHOWN = "Thinking...\nI should answer.\n...done thinking.\n\nBecause.\n\n"


def add_thinker(services: Services, tmp_path: Path) -> None:
    gguf = make_tiny_gguf(tmp_path / "thinker.gguf")
    services.models.create("thinker", CreateSpec(from_file=gguf, template=OPENS))


@pytest.fixture
def thinker_cli(monkeypatch, fake_factory, settings, tmp_path):
    _use_engine(monkeypatch, fake_factory)
    _pipe_stdin(monkeypatch, b"")
    services = build_services(settings, fake_factory)
    add_thinker(services, tmp_path)
    services.models.create("plain", CreateSpec(from_file=make_tiny_gguf(tmp_path / "p.gguf")))
    return fake_factory


def test_run_keeps_the_trace_off_a_pipe_unless_asked(cli, thinker_cli):
    for _ in range(4):
        thinker_cli.enqueue(*TRACE)
    assert cli("run", "thinker", "Why?").out == "Because.\n\n"
    shown = cli("run", "thinker", "--think", "Why?")
    assert (shown.code, shown.out, shown.err) == (0, SHOWN, "")
    assert cli("run", "thinker", "--think=high", "Why?").out == SHOWN
    assert cli("run", "thinker", "--think", "--hidethinking", "Why?").out == "Because.\n\n"
    prompts = [str(p) for p in thinker_cli.loaded[0].prompts]
    assert all(p.endswith("assistant\n<think>\n") for p in prompts)  # the model thought each time


def test_run_think_false_and_bad_values(cli, thinker_cli):
    thinker_cli.enqueue("Straight.")
    assert cli("run", "thinker", "--think=false", "Why?").out == "Straight.\n\n"
    assert str(thinker_cli.loaded[0].prompts[0]).endswith("<think>\n\n</think>\n\n")
    bad = cli("run", "thinker", "--think=lots", "Why?")
    assert bad.code == 2
    assert "invalid value for --think: 'lots'" in bad.err
    refused = cli("run", "plain", "--think", "Why?")
    assert (refused.code, refused.out) == (1, "")
    assert 'Error: "plain" does not support thinking' in refused.err


def test_the_repl_shows_the_trace_and_keeps_it_with_the_turn(settings, fake_factory, tmp_path):
    services = build_services(settings, fake_factory)
    add_thinker(services, tmp_path)
    fake_factory.enqueue(*TRACE)
    fake_factory.enqueue("Plain.")
    fake_factory.enqueue("again</think>Ok.")
    script = "Why?\n/set nothink\nSure?\n/set think low\nReally?\n/bye\n"
    transcript, session = run_script(services, "thinker", script)
    assert transcript == (
        SHOWN
        + "Set 'nothink' mode.\nPlain.\n\n"
        + "Set 'think' mode to 'low'.\n"
        + "Thinking...\nagain\n...done thinking.\n\nOk.\n\n"
    )
    assert session.messages[1] == ChatMessage("assistant", "Because.", thinking="I should answer.")
    prompts = [str(p) for p in fake_factory.loaded[0].prompts]
    assert "<think>I should answer.</think>Because." in prompts[1]  # passed back
    assert prompts[1].endswith("<think>\n\n</think>\n\n")
    fake_factory.enqueue("hidden</think>Shown.")
    hidden, _ = run_script(
        services, "thinker", "Why?\n/bye\n", RunOptions(wordwrap=False, hide_thinking=True)
    )
    assert hidden == "Shown.\n\n"


def test_the_terminal_banners_are_dimmed_as_ollamas():
    out = io.StringIO()
    wrapper = WordWrapper(out.write, 80, enabled=False)
    events: list[ChatEvent] = [ThinkingChunk("x"), TextChunk("y"), ChatDone("stop")]
    answer = stream_answer(events, wrapper, CancelToken(), view=ThinkingView())
    assert (answer.thinking, answer.text) == ("x", "y")
    assert out.getvalue() == (
        f"{GREY}{BOLD}Thinking...\n{DEFAULT}{GREY}x\n{GREY}{BOLD}...done thinking.\n\n{DEFAULT}y"
    )
    assert PLAIN.hide_thinking is False
