"""Exception class -> HTTP status and body, for Ollama's and OpenAI's error shapes.

One table, looked up along the exception's class hierarchy (the most specific entry wins), so
no handler inspects message text. Ollama answers `{"error": "<message>"}`; the `/v1` routes
answer OpenAI's `{"error": {"message", "type", "param", "code"}}`, except Anthropic's
`/v1/messages`, which answers `{"type": "error", "error": {"type", "message"}}`.
"""

from __future__ import annotations

import re

from ollamacli.errors import (
    BlobNotFoundError,
    ContextLengthExceededError,
    DatasetError,
    DigestMismatchError,
    DiskFullError,
    EngineError,
    FinetuneError,
    InvalidGGUFError,
    InvalidModelNameError,
    InvalidOptionError,
    InvalidRequestError,
    ManifestNotFoundError,
    ModelfileError,
    ModelLoadError,
    ModelNotFoundError,
    OllamaCliError,
    OptionalDependencyError,
    RegistryError,
    RequestCancelledError,
    RequestTooLargeError,
    ServerBusyError,
    StoreError,
    TemplateError,
    UnsupportedModelError,
)

INTERNAL_ERROR = "internal server error"

STATUS: dict[type[Exception], int] = {
    InvalidModelNameError: 400,
    ModelfileError: 400,
    InvalidOptionError: 400,
    InvalidRequestError: 400,
    DatasetError: 400,
    FinetuneError: 400,  # an adapter that cannot be converted for this base
    DigestMismatchError: 400,
    InvalidGGUFError: 400,  # a damaged or crafted GGUF (create, pull)
    UnsupportedModelError: 400,
    TemplateError: 400,
    ContextLengthExceededError: 400,
    RequestTooLargeError: 413,
    ModelNotFoundError: 404,
    ManifestNotFoundError: 404,
    BlobNotFoundError: 404,
    RequestCancelledError: 499,  # nginx's and Ollama's "client closed request"
    EngineError: 500,
    ModelLoadError: 500,
    StoreError: 500,
    OptionalDependencyError: 501,
    RegistryError: 502,  # the upstream registry failed, not this server
    ServerBusyError: 503,
    DiskFullError: 507,
    OllamaCliError: 500,
}

OPENAI_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
}


# Anthropic's error types (docs.anthropic.com/en/api/errors), as Ollama's anthropic.NewError.
ANTHROPIC_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
ANTHROPIC_PATH = "/v1/messages"


def _translated(exc: Exception) -> Exception:
    """A file-system failure the core did not translate, as a `StoreError` (no path in it)."""
    if isinstance(exc, OSError):
        return StoreError.from_os_error(exc, "file system error")
    return exc


def status_for(exc: Exception) -> int:
    """The HTTP status for an exception (500 for anything not in the table)."""
    exc = _translated(exc)
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500


# An absolute file path (POSIX with two or more parts, or Windows), not a URL or an API route.
_FILE_PATH = re.compile(
    r"(?<![\w.:/~-])/(?!api/|v1/)(?:[^\s/'\"]+/)+([^\s/'\"]*)"
    r"|\b[A-Za-z]:\\(?:[^\s\\'\"]+\\)*([^\s\\'\"]*)"
)


def hide_paths(message: str) -> str:
    """The message with every absolute file path cut to its last part: error bodies must not
    show where the server keeps its files (the server log has the whole message)."""
    return _FILE_PATH.sub(lambda match: match.group(1) or match.group(2) or "", message)


def message_for(exc: Exception) -> str:
    """The message clients see: ours for deliberate errors (without server file paths), a
    generic one for bugs."""
    exc = _translated(exc)
    return hide_paths(exc.message) if isinstance(exc, OllamaCliError) else INTERNAL_ERROR


def ollama_body(message: str) -> dict[str, object]:
    """`{"error": "<message>"}`."""
    return {"error": message}


def openai_body(message: str, status: int) -> dict[str, object]:
    """OpenAI's error object."""
    kind = OPENAI_TYPES.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def anthropic_body(message: str, status: int) -> dict[str, object]:
    """Anthropic's error object."""
    kind = ANTHROPIC_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_body(path: str, message: str, status: int) -> dict[str, object]:
    """The error shape of the API the path belongs to."""
    if path == ANTHROPIC_PATH or path.startswith(f"{ANTHROPIC_PATH}/"):
        return anthropic_body(message, status)
    if path.startswith("/v1/"):
        return openai_body(message, status)
    return ollama_body(message)
