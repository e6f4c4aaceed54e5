"""Download policy: part sizes, connections, timeouts, and retries with backoff.

Ollama retries each part 6 times, waiting 2^try seconds, and treats 30 s without a byte as a
stall; the defaults here are the same, with smaller parts and fewer connections for small
machines (see `registry.transfer`).
"""

from __future__ import annotations

import http.client
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from ollamacli.errors import DownloadError

T = TypeVar("T")

RETRY_HINT = "check the network connection and run the same command again; it resumes"


@dataclass(frozen=True, slots=True)
class TransferOptions:
    """How downloads are split, retried and reported. The defaults suit a small machine."""

    parts: int = 16
    min_part_size: int = 8_000_000
    max_part_size: int = 100_000_000
    connections: int = 4
    retries: int = 6
    backoff: float = 1.0
    max_backoff: float = 30.0
    stall_timeout: float = 30.0
    max_stalls: int = 10
    connect_timeout: float = 30.0
    checkpoint_interval: float = 0.25
    progress_interval: float = 0.1
    max_redirects: int = 10

    def part_size(self, total: int) -> int:
        """The size of each part of a blob of `total` bytes."""
        wanted = math.ceil(total / self.parts)
        return max(1, min(max(wanted, self.min_part_size), self.max_part_size))

    def delay(self, failures: int) -> float:
        """Seconds to wait before retry number `failures` (1-based)."""
        return float(min(self.backoff * 2 ** (failures - 1), self.max_backoff))

    def timeout(self) -> httpx.Timeout:
        """Client timeouts; the read timeout is what detects a stalled body."""
        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.stall_timeout,
            write=self.stall_timeout,
            pool=None,
        )


class Retryable(Exception):
    """A failure worth another try (5xx, 429, a body cut short)."""


NETWORK_ERRORS = (httpx.TransportError, OSError, http.client.HTTPException, Retryable)
"""Failures worth another try: transport errors of httpx and http.client, and `Retryable`."""


def with_retries(
    call: Callable[[], T],
    options: TransferOptions,
    *,
    what: str,
    url: str,
    sleep: Callable[[float], None] = time.sleep,
    attempts: int | None = None,
) -> T:
    """Run `call`, retrying network failures and retryable statuses with backoff."""
    tries = attempts if attempts is not None else options.retries + 1
    for failures in range(1, tries + 1):
        try:
            return call()
        except NETWORK_ERRORS as exc:
            if failures >= tries:
                raise DownloadError(f"{what}: {reason(exc)}", url=url, hint=RETRY_HINT) from exc
            sleep(options.delay(failures))
    raise AssertionError("unreachable")  # pragma: no cover


def retryable_status(response: httpx.Response) -> None:
    """Raise for statuses worth another try (429 and 5xx); `with_retries` retries them."""
    raise_if_retryable(response.status_code, response.reason_phrase)


def raise_if_retryable(status: int, reason: str) -> None:
    if status == 429 or status >= 500:
        raise Retryable(f"{status} {reason}".strip())


def reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, Retryable):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
