"""Progress events: what long operations (pull, create, finetune) report, with no UI attached.

The CLI draws them with Rich; the server streams them as NDJSON with Ollama's field names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def short_digest(digest: str) -> str:
    """The 12 hex digits Ollama shows in `pulling <hex>` and `pushing <hex>`."""
    return digest.split(":", 1)[-1][:12]


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One status update, shaped like Ollama's `{status, digest, total, completed}`."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    def to_json(self) -> dict[str, object]:
        """The event as Ollama's API sends it (absent fields omitted)."""
        data: dict[str, object] = {"status": self.status}
        if self.digest is not None:
            data["digest"] = self.digest
        if self.total is not None:
            data["total"] = self.total
        if self.completed is not None:
            data["completed"] = self.completed
        return data


ProgressSink = Callable[[ProgressEvent], None]


def ignore_progress(event: ProgressEvent) -> None:
    """A sink that drops every event."""
