"""A terminal spinner on stderr while a model loads or thinks, as Ollama shows one.

It draws in place (the cursor stays where the answer will start) and erases itself before the
first piece of text is written. It only runs when its stream is a terminal.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TextIO

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
INTERVAL = 0.1


class Spinner:
    """`with Spinner(sys.stderr):` spins until `stop()` or the end of the block."""

    def __init__(self, stream: TextIO, *, enabled: bool | None = None) -> None:
        self._stream = stream
        self._enabled = stream.isatty() if enabled is None else enabled
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Spinner:
        if self._enabled:
            self._thread = threading.Thread(target=self._spin, name="spinner", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _spin(self) -> None:
        index = 0
        while not self._stopped.is_set():
            # Draw the frame, then step back over it so the cursor does not move.
            self._stream.write(f"{FRAMES[index % len(FRAMES)]}\x1b[1D")
            self._stream.flush()
            index += 1
            self._stopped.wait(INTERVAL)

    def stop(self) -> None:
        """Stop spinning and erase the frame (safe to call more than once)."""
        if self._thread is None:
            return
        self._stopped.set()
        self._thread.join()
        self._thread = None
        self._stream.write("\x1b[K")
        self._stream.flush()
