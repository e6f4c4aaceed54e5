"""A real terminal for tests: tmux runs the program, `send-keys` types, `capture-pane` reads."""

from __future__ import annotations

import re
import subprocess
import time

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
