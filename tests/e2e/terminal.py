"""A real terminal for tests: tmux runs the program, `send-keys` types, `capture-pane` reads."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


ROOT = Path(__file__).resolve().parents[2]


def ollamacli_command(args: str, **env: str) -> str:
    """A shell line running `python -m ollamacli <args>` from the checkout in a clean
    environment (plus `env`), then printing its exit status and staying open to be read."""
    clean = {
        "HOME": os.environ["HOME"],
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TERM": "xterm-256color",
        "NO_COLOR": "1",
        **env,
    }
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in clean.items())
    command = f"{shlex.quote(sys.executable)} -m ollamacli {args}"
    return (
        f"cd {shlex.quote(str(ROOT))} && env -i {assignments} {command}; echo EXITED=$?; sleep 600"
    )
