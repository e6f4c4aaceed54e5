"""Every error ollamacli raises on purpose.

The core raises only these; the CLI, the REPL and the server each translate them in one place.
Real bugs are left to propagate as whatever Python raised.

    OllamaCliError                      base; .hint (what to do next, shown as a second line)
    ├── InvalidModelNameError(ValueError)
    ├── ModelfileError(ValueError)        .path, .line
    ├── InvalidOptionError(ValueError)    .option
    ├── InvalidRequestError(ValueError)   a malformed request or argument
    │   └── RequestTooLargeError          .limit (a request body over OLLAMACLI_MAX_BODY_SIZE)
    ├── ModelNotFoundError(LookupError)   .name
    ├── UnsupportedModelError             .architecture (preflight refuses an unloadable GGUF)
    ├── StoreError                        (OSErrors of the store end here, without paths)
    │   ├── InvalidGGUFError(ValueError)  a file that is not a sound GGUF (400)
    │   ├── DigestMismatchError           .expected, .actual
    │   ├── BlobNotFoundError(LookupError).digest
    │   ├── DiskFullError
    │   └── BundleError                   an export file that cannot be imported (nothing stored)
    ├── RegistryError                     .url, .status
    │   ├── ManifestNotFoundError(LookupError)
    │   └── DownloadError                 (after retries are exhausted)
    ├── EngineError
    │   ├── ModelLoadError                .path
    │   ├── TemplateError
    │   └── ContextLengthExceededError    .n_ctx, .requested
    ├── ServerBusyError                   the request queue is full
    ├── RequestCancelledError             the client went away or the server is stopping
    ├── ServerNotRunningError             .host
    ├── ServerResponseError               .status (a running server answered with an error)
    ├── ServeError                        .address (the server could not start listening)
    ├── ClusterError                      .address (`serve --ray` could not start or join Ray)
    ├── DatasetError(ValueError)          .location (fine-tuning data)
    ├── FinetuneError                     training or adapter conversion cannot proceed
    └── OptionalDependencyError           .extra
"""

from __future__ import annotations

import errno


class OllamaCliError(Exception):
    """Base of every error ollamacli raises deliberately."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidModelNameError(OllamaCliError, ValueError):
    """A model name that does not parse as `[host/][namespace/]model[:tag]`."""

    def __init__(self, name: str, *, reason: str = "") -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"invalid model name {name!r}{detail}",
            hint="names look like 'model', 'model:tag', 'namespace/model:tag' or "
            "'host/namespace/model:tag', using letters, digits, '_', '-' and '.'",
        )
        self.name = name


class ModelfileError(OllamaCliError, ValueError):
    """A Modelfile that cannot be parsed or validated; names the file and line."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "Modelfile",
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message, hint=hint)
        self.path = path
        self.line = line
        self.detail = message


class InvalidOptionError(OllamaCliError, ValueError):
    """An unknown or mistyped generation option (PARAMETER, /set parameter, API options)."""

    def __init__(self, message: str, *, option: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.option = option


class InvalidRequestError(OllamaCliError, ValueError):
    """A malformed request: missing fields, bad combinations, bad values."""


class RequestTooLargeError(InvalidRequestError):
    """A request body larger than the server accepts."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"request body too large: the limit is {limit} bytes",
            hint="send a smaller request, or raise OLLAMACLI_MAX_BODY_SIZE on the server",
        )
        self.limit = limit


class ModelNotFoundError(OllamaCliError, LookupError):
    """No model with this name in the local store."""

    def __init__(self, name: str, *, message: str | None = None, hint: str | None = None) -> None:
        super().__init__(
            message or f"model '{name}' not found",
            hint=hint or f"pull it first with 'ollamacli pull {name}', or see 'ollamacli list'",
        )
        self.name = name


class UnsupportedModelError(OllamaCliError):
    """A GGUF whose architecture the engine cannot load."""

    def __init__(self, architecture: str) -> None:
        super().__init__(
            f'architecture "{architecture}" is not supported by this engine',
            hint="pick a GGUF with a llama.cpp-supported architecture (llama, qwen2, gemma, ...)",
        )
        self.architecture = architecture


class StoreError(OllamaCliError):
    """Something wrong with the local model store."""

    @classmethod
    def from_os_error(cls, exc: OSError, doing: str, *, where: str = "") -> StoreError:
        """A one-line error for a failed file operation, without any file path in the message.

        `doing` says what failed ("cannot write to the model store"); the path (`where`) goes
        into the hint only, which the CLI shows and the server does not send.
        """
        reason = (exc.strerror or type(exc).__name__).lower()
        at = f" ({where})" if where else ""
        if exc.errno == errno.ENOSPC:
            return DiskFullError(where)
        hints = {
            errno.EACCES: f"check the permissions of the model store{at}",
            errno.EPERM: f"check the permissions of the model store{at}",
            errno.EROFS: f"the model store is on a read-only file system{at}",
            errno.ENAMETOOLONG: "use shorter names",
            errno.EDQUOT: f"the disk quota is exhausted{at}",
        }
        return cls(f"{doing}: {reason}", hint=hints.get(exc.errno or 0, where or None))


class InvalidGGUFError(StoreError, ValueError):
    """A file that is not a well-formed GGUF model or adapter; the message names the defect."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint or "the file is damaged or not a GGUF model: download or convert it again",
        )


class DigestMismatchError(StoreError):
    """Content whose sha256 differs from the digest it was announced with."""

    def __init__(self, expected: str, actual: str, *, message: str | None = None) -> None:
        super().__init__(
            message
            or f"digest mismatch, file must be downloaded again: want {expected}, got {actual}",
            hint="the data was removed; run the command again",
        )
        self.expected = expected
        self.actual = actual


class BlobNotFoundError(StoreError, LookupError):
    """A manifest refers to a blob that is not in the store."""

    def __init__(self, digest: str) -> None:
        super().__init__(
            f'blob "{digest}" not found',
            hint="the store is incomplete; pull or create the model again",
        )
        self.digest = digest


class DiskFullError(StoreError):
    """No space left while writing into the store."""

    def __init__(self, path: str, *, message: str | None = None) -> None:
        super().__init__(
            message or "no space left on device while writing to the model store",
            hint="free some disk space (or point OLLAMA_MODELS elsewhere) and try again; "
            f"nothing was changed in the store{f' ({path})' if path else ''}",
        )
        self.path = path


class BundleError(StoreError):
    """A model export file (tar) that is malformed, incomplete or unsafe; nothing was stored."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint
            or "nothing was imported; export the model again (ollamacli export MODEL -o FILE)",
        )


class RegistryError(OllamaCliError):
    """A registry (Ollama or Hugging Face) answered with an error or could not be reached."""

    def __init__(
        self, message: str, *, url: str = "", status: int | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.url = url
        self.status = status


class ManifestNotFoundError(RegistryError, LookupError):
    """The registry has no manifest for this name."""


class DownloadError(RegistryError):
    """A download that failed after all retries."""


class EngineError(OllamaCliError):
    """The inference engine failed."""


class ModelLoadError(EngineError):
    """llama.cpp could not load a model file."""

    def __init__(self, message: str, *, path: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class TemplateError(EngineError):
    """A chat template that cannot be parsed or rendered."""


class ContextLengthExceededError(EngineError):
    """The prompt does not fit in the context window (and truncation was refused)."""

    def __init__(self, *, n_ctx: int, requested: int) -> None:
        super().__init__(
            f"the input length exceeds the context length: {requested} tokens > num_ctx {n_ctx}",
            hint="shorten the conversation, raise num_ctx, or allow truncation",
        )
        self.n_ctx = n_ctx
        self.requested = requested


class ServerBusyError(OllamaCliError):
    """Too many requests are already waiting."""

    def __init__(self) -> None:
        super().__init__("server busy, please try again.  maximum pending requests exceeded")


class RequestCancelledError(OllamaCliError):
    """A request given up before it was served (client disconnected, server shutting down)."""

    def __init__(self, message: str = "request canceled") -> None:
        super().__init__(message)


class ServerNotRunningError(OllamaCliError):
    """No ollamacli server answers at the configured address."""

    def __init__(self, host: str) -> None:
        super().__init__(
            "could not connect to ollamacli server, run 'ollamacli serve' to start it",
            hint=f"looked for it at {host} (set OLLAMA_HOST to use another address)",
        )
        self.host = host


class ServerResponseError(OllamaCliError):
    """A running ollamacli server answered a client request with an error status."""

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class ServeError(OllamaCliError):
    """`serve` could not listen on its address."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(
            f"could not listen on {address}: {reason}",
            hint="is another server running there? stop it or set OLLAMA_HOST to another address",
        )
        self.address = address


class DatasetError(OllamaCliError, ValueError):
    """A fine-tuning dataset that cannot be used; names the line or index."""

    def __init__(self, message: str, *, location: str = "") -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.location = location


class FinetuneError(OllamaCliError):
    """Fine-tuning or adapter conversion that cannot proceed with this model or adapter."""


class ClusterError(OllamaCliError):
    """`serve --ray` could not start a local Ray instance or join the cluster at an address."""

    def __init__(self, address: str | None, reason: str) -> None:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        super().__init__(
            f"could not start serving on {where}: {reason}",
            hint=(
                "is `ray start --head` running there, with the same Ray version, and the same "
                "RAY_AUTH_MODE and token (~/.ray/auth_token) on this machine?"
                if address
                else "see Ray's log under /tmp/ray/session_latest/logs"
            ),
        )
        self.address = address


class OptionalDependencyError(OllamaCliError):
    """A feature that needs an optional extra which is not installed."""

    def __init__(self, feature: str, *, extra: str) -> None:
        super().__init__(
            f"{feature} needs extra packages: pip install 'ollamacli[{extra}]'",
        )
        self.extra = extra
