"""Test isolation: every test gets its own store and a clean environment."""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamacli.config import Settings
from ollamacli.store import Store
from tests.e2e.terminal import Terminal
from tests.factories import bundled_gguf
from tests.fakes import FakeFactory

_CLEARED_PREFIXES = ("OLLAMA_", "OLLAMACLI_", "HF_", "HUGGING")
_CLEARED = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy")

# A test suite started in the background (`cmd &` in a script, nohup) inherits SIGINT ignored,
# and so would every program it starts: Python then installs no KeyboardInterrupt handler and
# the Ctrl-C tests would test nothing. Handled signals reset to the default on exec, so this
# gives child processes the Ctrl-C a user's terminal gives them.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the user's environment or writes into the user's directories."""
    for key in list(os.environ):
        if key.startswith(_CLEARED_PREFIXES) or key in _CLEARED:
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("OLLAMACLI_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings pointing at this test's folders."""
    return Settings.from_env()


@pytest.fixture
def store(settings: Settings) -> Store:
    """An empty store."""
    return Store(settings.models)


@pytest.fixture
def fake_factory() -> FakeFactory:
    """A scripted engine factory."""
    return FakeFactory()


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The bundled SmolLM2 GGUF."""
    return bundled_gguf()


class CliResult:
    """What a CLI invocation printed and returned."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `ollamacli ARGS...` in-process through main(), as a user would see it."""
    from ollamacli.cli import main

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    """A tmux session on a private server socket (skipped where tmux is not installed)."""
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed; this real-terminal test needs it (apt install tmux)")
    term = Terminal(tmux, f"ollamacli-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield term
    finally:
        term.close()
