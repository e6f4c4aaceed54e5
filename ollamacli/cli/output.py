"""Terminal output: error lines, Ollama-style tables and sizes, and progress display.

Rich is imported only by the functions that draw with it, so `--help` and `list` start fast.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ollamacli.progress import ProgressEvent, ProgressSink

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def print_error(message: str, hint: str | None = None) -> None:
    """`Error: <message>` on stderr, and the hint on a second line."""
    sys.stderr.write(f"Error: {message}\n")
    if hint:
        sys.stderr.write(f"{hint}\n")
    sys.stderr.flush()


def human_bytes(size: int) -> str:
    """Ollama's HumanBytes: decimal units, `98 MB`, `4.7 GB`, `512 B`."""
    for scale, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB")):
        if size >= scale:
            value = size / scale
            if value >= 10 or value == math.trunc(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{size} B"


def _human_duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = whole // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    steps = (
        (48, 1, "hours"),
        (24 * 14, 24, "days"),
        (24 * 60, 24 * 7, "weeks"),
        (24 * 730, 24 * 30, "months"),
    )
    for limit, divisor, unit in steps:
        if hours < limit:
            return f"{hours // divisor} {unit}"
    return f"{int(seconds / 3600 / 24 / 365)} years"


def human_time(moment: datetime | float, now: datetime | None = None) -> str:
    """Ollama's HumanTime: `2 minutes ago`, `4 minutes from now`, `Forever`."""
    if isinstance(moment, float):
        if math.isinf(moment):
            return "Forever"
        moment = datetime.fromtimestamp(moment, tz=timezone.utc)
    now = now or datetime.now(tz=timezone.utc)
    delta = (moment - now).total_seconds()
    if delta > 20 * 365 * 24 * 3600:
        return "Forever"
    if delta > 0:
        return f"{_human_duration(delta)} from now"
    return f"{_human_duration(-delta)} ago"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded with four spaces and no borders, as Ollama's `list` and `ps` print."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("    ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


class ProgressDisplay:
    """Draws ProgressEvents: a bar per download (percent, size, rate, time left), a line per status."""

    REFRESH_S = 0.1
    """The shortest time between two redraws while bytes arrive."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}
        self._settled: set[str] = set()
        self._last_status: str | None = None
        self._drawn = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        if event.total:
            key = event.digest or event.status
            if key in self._settled:
                if (event.completed or 0) >= event.total:
                    return  # the final state of a bar already printed
                self._settled.discard(key)  # the same name again, for another file
            task = self._tasks.get(key)
            if task is None:
                task = self._progress.add_task(event.status, total=event.total)
                self._tasks[key] = task
            self._progress.update(task, completed=event.completed or 0, description=event.status)
            now = time.monotonic()
            if now - self._drawn >= self.REFRESH_S or (event.completed or 0) >= event.total:
                self._drawn = now
                self._progress.refresh()
            return
        if event.status != self._last_status:
            self._last_status = event.status
            self._settle()
            self._progress.console.print(event.status, highlight=False, markup=False)

    def _settle(self) -> None:
        """Print finished bars as lines of their own, so they stay above the statuses that
        follow them (`verifying sha256 digest` comes after the bars, as in Ollama)."""
        for key, task_id in list(self._tasks.items()):
            task = next(t for t in self._progress.tasks if t.id == task_id)
            if not task.finished:
                continue
            self._progress.console.print(self._progress.make_tasks_table([task]))
            self._progress.remove_task(task_id)
            del self._tasks[key]
            self._settled.add(key)

    def finish(self) -> None:
        """Nothing is left open: bars end with their last update."""


@contextmanager
def progress_display(*, enabled: bool = True) -> Iterator[ProgressSink]:
    """A progress sink drawing to stderr (plain status lines when stderr is not a terminal)."""
    if not enabled:
        yield lambda event: None
        return
    if not sys.stderr.isatty():
        yield _plain_progress()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        TaskProgressColumn(),
        BarColumn(),
        DownloadColumn(binary_units=False),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
        # Drawn from this thread only: rich's refresh thread and a status line printed here each
        # move the cursor up by the bars' height as they last saw it, and when the two writes
        # cross, a status line is overwritten and the bars are drawn twice (seen under load).
        auto_refresh=False,
    )
    display = ProgressDisplay(progress)
    with progress:
        yield display
        display.finish()


def _plain_progress() -> ProgressSink:
    """Status lines only, once per status (and once per finished download), for logs and pipes."""
    seen: set[str] = set()

    def sink(event: ProgressEvent) -> None:
        if event.total and event.completed != event.total:
            return
        line = event.status
        if event.total:
            line = f"{event.status} 100% {human_bytes(event.total)}"
        if line not in seen:
            seen.add(line)
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    return sink
