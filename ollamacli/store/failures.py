"""File-system failures of the store as `StoreError`s: one line, no server path in the message.

A request must never end in a traceback or a bare 500 because the disk is full, a folder is not
writable or a name is too long for the file system: every store operation runs under
`os_errors`, which turns the `OSError` into a `StoreError` (`DiskFullError` for ENOSPC,
`InvalidModelNameError` for a model name the file system cannot hold) whose message says what
failed and why, while the path goes only into the hint (which the server does not send).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from ollamacli.errors import InvalidModelNameError, StoreError


@contextmanager
def os_errors(doing: str, *, where: object = "", name: str | None = None) -> Iterator[None]:
    """Translate an `OSError` raised inside the block.

    Args:
        doing: what was being done, as the message's start ("cannot write to the model store").
        where: the path involved (hint only).
        name: the model name the path was built from; ENAMETOOLONG then means the name is
            too long for this file system.
    """
    try:
        yield
    except OSError as exc:
        if name is not None and exc.errno == errno.ENAMETOOLONG:
            raise InvalidModelNameError(
                name, reason="too long for the file system of the model store"
            ) from exc
        raise StoreError.from_os_error(exc, doing, where=str(where)) from exc
