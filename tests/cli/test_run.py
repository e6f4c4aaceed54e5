"""`ollamacli run`: one-shot answers, pipes, flags and errors, with the scripted engine."""

from __future__ import annotations

import io
import os
import re
import selectors
import signal
import subprocess
import sys
import time

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


def _use_engine_with_pulls(monkeypatch: pytest.MonkeyPatch, factory: EngineFactory) -> None:
    """As `_use_engine`, keeping the real registry fetcher the CLI wires in."""
    real = wiring.services

    def services(config: Settings | None = None, engine_factory: object = None) -> Services:
        return real(config, factory)

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


# Real model (SmolLM2 through llama.cpp), in subprocesses as a shell would run them.

ENGLISH = {"the", "is", "of", "and", "a", "to", "in", "sky", "blue", "light", "it", "that"}


def _ollamacli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ollamacli", *args]


def _read_at_least(proc: subprocess.Popen[bytes], size: int, timeout: float) -> bytes:
    """Read stdout until `size` bytes arrived, the process ended, or time ran out."""
    assert proc.stdout is not None
    data, deadline = b"", time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while len(data) < size and time.monotonic() < deadline:
            if not selector.select(timeout=0.5):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            data += chunk
    return data


def _assert_english(text: str) -> None:
    words = re.findall(r"[A-Za-z']+", text.lower())
    assert len(words) >= 8, text
    assert len(ENGLISH.intersection(words)) >= 2, text


@pytest.fixture
def limited_model(cli, tmp_path) -> str:
    """The bundled model at temperature 0 with a short answer limit."""
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM smollm2:135m\nPARAMETER temperature 0\nPARAMETER num_predict 24\n")
    assert cli("create", "short", "-f", str(modelfile)).code == 0
    return "short"


@pytest.mark.llama
@pytest.mark.slow
def test_real_run_streams_an_answer_and_ctrl_c_stops_it():
    proc = subprocess.Popen(
        _ollamacli("run", "smollm2:135m", "Why is the sky blue?", "--verbose"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        streamed = _read_at_least(proc, 150, timeout=240)
        still_running = proc.poll() is None
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    # The answer may end on its own between the poll and the signal (its length is random);
    # --verbose prints the statistics only for an answer that was not interrupted.
    finished = b"eval count" in err
    assert proc.returncode == (130 if still_running and not finished else 0)
    _assert_english(streamed.decode())
    assert b"Traceback" not in err
    assert b"Error" not in err
    if still_running:
        assert len(streamed + rest) < 2000  # it stopped: no full answer after the signal


@pytest.mark.llama
@pytest.mark.slow
def test_real_piped_stdin_and_redirected_file(limited_model, tmp_path):
    piped = subprocess.run(
        _ollamacli("run", limited_model),
        input=b"Why is the sky blue?\n",
        capture_output=True,
        timeout=240,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == b""
    assert piped.stdout.endswith(b"\n\n")
    _assert_english(piped.stdout.decode())

    text = tmp_path / "notes.txt"
    text.write_text("The sky is blue because air scatters blue light the most.\n")
    with text.open("rb") as stdin:
        summary = subprocess.run(
            _ollamacli("run", limited_model, "Summarise:", "--verbose"),
            stdin=stdin,
            capture_output=True,
            timeout=240,
            check=False,
        )
    assert summary.returncode == 0, summary.stderr
    _assert_english(summary.stdout.decode())
    stats = summary.stderr.decode().splitlines()
    assert stats[0].startswith("total duration:       ")
    counts = [int(line.split()[2]) for line in stats if line.startswith("eval count:")]
    assert len(counts) == 1
    assert 0 < counts[0] <= 24  # num_predict from the Modelfile


@pytest.mark.llama
@pytest.mark.slow
def test_real_run_into_a_closed_pipe_exits_quietly(cli, tmp_path):
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM smollm2:135m\nPARAMETER num_predict 400\n")
    assert cli("create", "long", "-f", str(modelfile)).code == 0
    proc = subprocess.Popen(
        _ollamacli("run", "long", "Write a long story about a dragon."),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert _read_at_least(proc, 1, timeout=240)
        assert proc.stdout is not None
        proc.stdout.close()  # like `| head -c 1`
        _, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert err == b""


def test_insecure_run_pulls_a_missing_model_from_a_plain_http_registry(cli, monkeypatch, tmp_path):
    from tests.factories import make_tiny_gguf
    from tests.servers.registry import running_registry

    factory = FakeFactory()
    _use_engine_with_pulls(monkeypatch, factory)
    factory.enqueue("Pulled", " and running.")
    with running_registry(tmp_path / "registry") as registry:
        registry.app.add_model("tiny", make_tiny_gguf(tmp_path / "t.gguf"))
        result = cli("run", registry.name("tiny"), "hi", "--insecure")
    assert result.code == 0, result
    assert result.out == "Pulled and running.\n\n"
    assert "pulling manifest" in result.err
    assert result.err.rstrip().endswith("success")
