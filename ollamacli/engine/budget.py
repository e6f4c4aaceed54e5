"""Limits on rendering one chat template: steps, time, text size, and the request's cancel token.

Templates come from requests (`template`) and from `/api/create`, so a template may loop for
ever (`{{ range 100000000 }}`), recurse, or build a string that doubles on every turn. Both
template engines (goexec.py, sandbox.py) count every loop iteration and call as a step here,
check the clock and the request's `CancelToken` every few hundred steps, and check the size
of the strings and numbers they produce; going over a limit is a `TemplateError` (400) that
names the limit, and a client that went away stops the rendering (`RequestCancelledError`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ollamacli.engine.base import CancelToken
from ollamacli.errors import RequestCancelledError, TemplateError

MAX_STEPS = 10_000_000
"""Loop iterations plus function calls in one rendering."""

MAX_SECONDS = 30.0
"""Wall-clock time of one rendering."""

MAX_CHARS = 64 << 20
"""Characters in the rendered prompt, and in any one string a template builds."""

MAX_NUMBER = 1 << 20
"""The largest integer a template may pass to a function or filter (widths, counts, ranges)."""

MAX_INT_BITS = 1 << 16
"""Bits of the largest integer a template may compute (`9 ** 9 ** 9` is refused)."""

_CHECK_EVERY = 0xFF  # check the clock and the cancel token once per 256 steps


@dataclass(slots=True)
class RenderBudget:
    """What one rendering may still spend; `tick` once per loop iteration or call."""

    cancel: CancelToken | None = None
    max_steps: int = MAX_STEPS
    max_seconds: float = MAX_SECONDS
    max_chars: int = MAX_CHARS
    steps: int = 0
    deadline: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.max_seconds

    def tick(self) -> None:
        """Count one step; raises when over a limit or cancelled."""
        self.steps += 1
        if self.steps > self.max_steps:
            raise TemplateError(
                f"template error: more than {self.max_steps} loop iterations and calls"
            )
        if not self.steps & _CHECK_EVERY:
            self.check()

    def check(self) -> None:
        """Raise when the request was cancelled or the time is up."""
        if self.cancel is not None and self.cancel.cancelled:
            raise RequestCancelledError()
        if time.monotonic() > self.deadline:
            raise TemplateError(
                f"template error: rendering took longer than {self.max_seconds:g} seconds"
            )

    def check_steps(self, count: int) -> None:
        """Refuse at once a loop that would take more steps than are left (`range N`)."""
        if self.steps + count > self.max_steps:
            raise TemplateError(
                f"template error: a loop of {count} iterations is more than the "
                f"{self.max_steps} loop iterations and calls a template may take"
            )

    def check_size(self, size: int) -> None:
        """Refuse a string (or the prompt) longer than `max_chars`."""
        if size > self.max_chars:
            raise TemplateError(f"template error: text longer than {self.max_chars} characters")


def check_number(value: object) -> None:
    """Refuse an integer argument that would size an allocation or a loop beyond the limits."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
        raise TemplateError(
            f"template error: the number {value} is larger than the {MAX_NUMBER} "
            "a template may pass to a function"
        )
