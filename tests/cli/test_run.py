"""`ollamacli run`: one-shot answers, pipes, flags and errors, with the scripted engine."""

from __future__ import annotations

import io
import re
import sys

import pytest

from ollamacli.cli import wiring
from ollamacli.config import Settings
from ollamacli.engine.base import EngineFactory
from ollamacli.service import Services, build_services
from tests.cli.chat_helpers import InterruptingFactory, make_model
from tests.fakes import FakeFactory


def _use_engine(monkeypatch: pytest.MonkeyPatch, factory: EngineFactory) -> None:
    """Make the CLI build its services around this engine factory."""

    def services(config: Settings | None = None, engine_factory: object = None) -> Services:
        return build_services(config or Settings.from_env(), factory)

    monkeypatch.setattr(wiring, "services", services)


@pytest.fixture
def fake_cli(monkeypatch, fake_factory, settings, tmp_path):
    """The `cli` runner over the scripted engine, with a model `tiny` in the store."""
    _use_engine(monkeypatch, fake_factory)
    make_model(build_services(settings, fake_factory), tmp_path, system="Be brief.")
    return fake_factory


def _pipe_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


@pytest.fixture(autouse=True)
def _empty_stdin(monkeypatch):
    """Like a script run with </dev/null: stdin is not a terminal and has nothing."""
    _pipe_stdin(monkeypatch, b"")


def test_prompt_argument_streams_only_the_answer_to_stdout(cli, fake_cli):
    fake_cli.enqueue("The sky", " is blue.")
    result = cli("run", "tiny", "Why", "is the sky blue?")
    assert result.code == 0, result
    assert result.out == "The sky is blue.\n\n"
    assert result.err == ""
    prompt = fake_cli.loaded[0].prompts[0]
    assert prompt == "### System:\nBe brief.\n\n### User:\nWhy is the sky blue?\n\n### Assistant:\n"


def test_piped_stdin_comes_first_joined_with_a_space(cli, fake_cli, monkeypatch):
    _pipe_stdin(monkeypatch, "Some text: ünïcode.\n".encode())
    fake_cli.enqueue("Summary.")
    result = cli("run", "tiny", "Summarise:")
    assert result.out == "Summary.\n\n"
    assert "### User:\nSome text: ünïcode.\n Summarise:\n\n" in fake_cli.loaded[0].prompts[0]


def test_piped_stdin_alone_is_the_prompt(cli, fake_cli, monkeypatch):
    _pipe_stdin(monkeypatch, b"Why is the sky blue?\n")
    fake_cli.enqueue("Rayleigh.")
    result = cli("run", "tiny")
    assert (result.code, result.out) == (0, "Rayleigh.\n\n")
    assert "### User:\nWhy is the sky blue?\n\n\n### Assistant:" in fake_cli.loaded[0].prompts[0]


def test_no_prompt_and_no_terminal_only_loads_the_model(cli, fake_cli):
    result = cli("run", "tiny")
    assert (result.code, result.out, result.err) == (0, "", "")
    assert len(fake_cli.loaded) == 1
    assert fake_cli.loaded[0].prompts == []


def test_verbose_writes_ollamas_statistics_to_stderr(cli, fake_cli):
    fake_cli.enqueue("a", " b", " c")
    result = cli("run", "tiny", "hello", "--verbose")
    assert result.out == "a b c\n\n"
    lines = result.err.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "total duration",
        "load duration",
        "prompt eval count",
        "prompt eval duration",
        "prompt eval rate",
        "eval count",
        "eval duration",
        "eval rate",
    ]
    assert re.fullmatch(r"total duration:       \d+(\.\d+)?(µs|ms|s)", lines[0])
    assert re.fullmatch(r"load duration:        \d+(\.\d+)?(ns|µs|ms|s)", lines[1])
    prompt = fake_cli.loaded[0].prompts[0]
    count = len(fake_cli.loaded[0].tokenize(prompt))
    assert lines[2:] == [
        f"prompt eval count:    {count} token(s)",
        "prompt eval duration: 1µs",
        f"prompt eval rate:     {count * 1e6:.2f} tokens/s",
        "eval count:           3 token(s)",
        "eval duration:        2µs",
        "eval rate:            1500000.00 tokens/s",
    ]


def test_piped_output_is_never_wrapped(cli, fake_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "20")
    fake_cli.enqueue("word " * 30)
    assert cli("run", "tiny", "go").out == "word " * 30 + "\n\n"


def test_format_json_and_keepalive_reach_the_request(cli, fake_cli):
    fake_cli.enqueue('{"a": 1}')
    result = cli("run", "tiny", "json please", "--format", "json", "--keepalive", "0")
    assert result.out == '{"a": 1}\n\n'
    # keep-alive 0: the model is unloaded as soon as the answer is done.
    assert fake_cli.loaded[0].closed


def test_default_keepalive_keeps_the_model_loaded(cli, fake_cli):
    assert cli("run", "tiny", "hi").code == 0
    assert not fake_cli.loaded[0].closed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nope", "hi"], "Error: model 'nope:latest' not found"),
        (["run", "Bad:Name:x", "hi"], "Error: invalid model name 'Bad:Name:x'"),
        (["run", "tiny", "hi", "--format", "xml"], "Error: invalid format 'xml'"),
        (["run", "tiny", "hi", "--keepalive", "soon"], "Error: invalid duration 'soon'"),
    ],
    ids=["missing-model", "bad-name", "bad-format", "bad-keepalive"],
)
def test_errors_exit_1_with_one_line_and_nothing_on_stdout(cli, fake_cli, args, message):
    result = cli(*args)
    assert result.code == 1
    assert result.out == ""
    assert result.err.splitlines()[0].startswith(message)
    assert fake_cli.loaded == []


def test_json_schema_format_is_accepted(cli, fake_cli):
    fake_cli.enqueue("{}")
    assert cli("run", "tiny", "x", "--format", '{"type": "object"}').code == 0


def test_ctrl_c_mid_answer_exits_130_quietly(cli, monkeypatch, settings, tmp_path):
    factory = InterruptingFactory(interrupt_turns={0})
    _use_engine(monkeypatch, factory)
    make_model(build_services(settings, factory), tmp_path)
    factory.enqueue("Once", " upon", " a time")
    result = cli("run", "tiny", "story")
    assert result.code == 130
    assert result.out == "Once\n"
    assert result.err == ""


def test_missing_bundled_model_is_imported_with_progress_on_stderr(cli, monkeypatch):
    factory = FakeFactory()
    _use_engine(monkeypatch, factory)
    factory.enqueue("Hi!")
    result = cli("run", "smollm2:135m", "hi")
    assert result.code == 0, result
    assert result.out == "Hi!\n\n"
    assert "writing manifest" in result.err
    assert result.err.rstrip().endswith("success")
    assert cli("list").out.splitlines()[1].startswith("smollm2:135m")


def test_run_help_lists_ollamas_flags(cli):
    result = cli("run", "--help")
    for flag in ("--format", "--verbose", "--nowordwrap", "--keepalive", "--insecure"):
        assert flag in result.out
    assert "OLLAMA_NOHISTORY" in result.out
