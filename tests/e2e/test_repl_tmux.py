"""The real `ollamacli run` REPL in a real terminal (tmux), on the real model.

Keys go in with `tmux send-keys`; what a user would see comes back with `capture-pane`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamacli.config import Settings

pytestmark = [pytest.mark.llama, pytest.mark.slow]

TMUX = shutil.which("tmux")
PROMPT_LINE = ">>> Send a message (/? for help)"
WAIT = 240.0


class Terminal:
    """A tmux session on a private server socket, so nothing else's tmux is touched."""

    def __init__(self, tmux: str, socket: str) -> None:
        self._tmux = tmux
        self._socket = socket

    def _run(self, *args: str) -> str:
        result = subprocess.run(
            [self._tmux, "-L", self._socket, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return result.stdout

    def start(self, command: str) -> None:
        self._run("new-session", "-d", "-s", "main", "-x", "100", "-y", "40", command)

    def send(self, *keys: str) -> None:
        self._run("send-keys", "-t", "main", *keys)

    def type_line(self, text: str) -> None:
        self.send("-l", text)
        self.send("Enter")

    def screen(self) -> str:
        """The whole pane with its scrollback, trailing blank lines removed."""
        return self._run("capture-pane", "-p", "-J", "-t", "main", "-S", "-500").rstrip("\n")

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            match = re.search(pattern, screen, flags=re.DOTALL)
            if match:
                return match
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {pattern!r}; the screen was:\n{screen}")
            time.sleep(0.3)

    def close(self) -> None:
        subprocess.run(
            [self._tmux, "-L", self._socket, "kill-server"], capture_output=True, check=False
        )


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    if TMUX is None:
        pytest.skip(
            "tmux is not installed; this real-terminal REPL test needs it (apt install tmux)"
        )
    term = Terminal(TMUX, f"ollamacli-e2e-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield term
    finally:
        term.close()


def _run_command(settings: Settings) -> str:
    env = {
        "OLLAMA_MODELS": str(settings.models),
        "OLLAMACLI_HOME": str(settings.data_dir),
        "HOME": os.environ["HOME"],
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TERM": "xterm-256color",
        "NO_COLOR": "1",
    }
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    run = f"{shlex.quote(sys.executable)} -m ollamacli run smollm2:135m"
    root = shlex.quote(str(Path(__file__).resolve().parents[2]))
    return f"cd {root} && env -i {assignments} {run}; echo EXITED=$?; sleep 600"


def _answer_after(terminal: Terminal, question: str) -> str:
    """Ask, wait for the next prompt, and return the answer text shown in between."""
    terminal.type_line(question)
    match = terminal.wait_for(
        re.escape(f">>> {question}\n") + r"(.*?)\n\n" + re.escape(PROMPT_LINE) + r"$"
    )
    return match.group(1)


@pytest.mark.timeout(1200)
def test_repl_in_a_real_terminal(terminal: Terminal, settings: Settings) -> None:
    terminal.start(_run_command(settings))
    terminal.wait_for(re.escape(PROMPT_LINE) + "$")  # the bundled model was imported, then loaded

    terminal.type_line("/set parameter num_predict 12")
    terminal.wait_for(r"Set parameter 'num_predict' to '12'\n" + re.escape(PROMPT_LINE))
    terminal.type_line("/set parameter temperature 0")
    terminal.wait_for(r"Set parameter 'temperature' to '0'\n" + re.escape(PROMPT_LINE))

    answer = _answer_after(terminal, "Why is the sky blue?")
    assert re.search(r"[A-Za-z]{3,}", answer), answer

    # Ctrl-C while the model writes stops that answer; the session goes on.
    terminal.type_line("/set parameter num_predict 400")
    terminal.wait_for(r"'num_predict' to '400'\n" + re.escape(PROMPT_LINE))
    terminal.type_line("Write a long story about a dragon.")
    terminal.wait_for(r">>> Write a long story about a dragon\.\n\S.{20,}")
    terminal.send("C-c")
    terminal.wait_for(r"dragon\.\n[^>]+\^C\n\n" + re.escape(PROMPT_LINE) + "$")

    terminal.type_line("/set parameter num_predict 12")
    terminal.wait_for(r"'num_predict' to '12'\n" + re.escape(PROMPT_LINE) + "$")
    again = _answer_after(terminal, "Say hello.")
    assert again.strip()

    # Ctrl-C on an empty line only hints; /bye leaves.
    terminal.send("C-c")
    terminal.wait_for(r"Use Ctrl \+ d or /bye to exit\.\n" + re.escape(PROMPT_LINE) + "$")
    terminal.type_line("/bye")
    terminal.wait_for(r">>> /bye\nEXITED=0")
    assert "+Why is the sky blue?" in settings.history_path.read_text()
