"""Settings: the only place that reads the process environment.

Everything else receives a `Settings` value, so tests build their own and never patch globals.
Variable names and semantics follow Ollama's (`OLLAMA_HOST`, `OLLAMA_MODELS`, ...).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from ollamacli.errors import InvalidRequestError

APP_NAME = "ollamacli"
DEFAULT_PORT = 11434
DEFAULT_KEEP_ALIVE = 300.0
DEFAULT_MAX_BODY_SIZE = 32 << 20
DEFAULT_PROMPT_CACHE = 1 << 30  # bytes of saved long prompts per loaded model
FOREVER = math.inf
MAX_DURATION = (2**63 - 1) / 1e9  # Go's time.Duration: int64 nanoseconds (about 292 years)

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
LogFormat = Literal["text", "json"]
_TRUE = {"1", "t", "true", "yes", "on", "y"}
_FALSE = {"0", "f", "false", "no", "off", "n", ""}


def parse_duration(value: str | float | int) -> float:
    """Parse a keep-alive duration into seconds; negative means forever (`math.inf`).

    Accepts numbers (seconds) and Go duration strings such as `"5m"`, `"1h30m"`, `"250ms"`,
    `"-1"` or `"0"`, as Ollama does for `keep_alive` and `OLLAMA_KEEP_ALIVE`. Go keeps a
    duration in int64 nanoseconds: a number of seconds beyond that (`1e308`) is forever, and a
    duration string beyond it (`"9999999999999h"`) is invalid, as Go's `time.ParseDuration`
    says; so every duration is either forever or a time a clock can show.
    """
    if isinstance(value, bool):
        raise InvalidRequestError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        seconds = _parse_duration_text(value.strip())
    if math.isnan(seconds):
        raise InvalidRequestError(f"invalid duration {value!r}")
    return FOREVER if seconds < 0 or seconds > MAX_DURATION else seconds


def _parse_duration_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if not body:
        raise InvalidRequestError(f"invalid duration {text!r}", hint='use e.g. "5m", "1h", "30s"')
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(body) or total > MAX_DURATION:
        raise InvalidRequestError(f"invalid duration {text!r}", hint='use e.g. "5m", "1h", "30s"')
    return sign * total


def parse_bool(value: str) -> bool:
    """Parse an environment flag the way Ollama does: unparseable values count as true."""
    text = value.strip().strip("'\"").lower()
    return text not in _FALSE


@dataclass(frozen=True, slots=True)
class HostAddress:
    """Where the server listens and where clients connect."""

    scheme: str = "http"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    path: str = ""

    @property
    def url(self) -> str:
        """The base URL a client uses (an unspecified bind address becomes loopback)."""
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def is_loopback(self) -> bool:
        """True when bound to a loopback address only."""
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")


def parse_host(value: str) -> HostAddress:
    """Parse `OLLAMA_HOST`: `[scheme://]host[:port][/path]`, defaults as Ollama's."""
    text = value.strip().strip("'\"")
    scheme, default_port = "http", DEFAULT_PORT
    if "://" in text:
        scheme, text = text.split("://", 1)
        default_port = {"http": 80, "https": 443}.get(scheme, DEFAULT_PORT)
    path = ""
    if "/" in text:
        text, rest = text.split("/", 1)
        path = "/" + rest.rstrip("/") if rest.strip("/") else ""
    host, port = _split_host_port(text, default_port)
    return HostAddress(scheme=scheme, host=host or "127.0.0.1", port=port, path=path)


def _split_host_port(text: str, default_port: int) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidRequestError(f"invalid port in OLLAMA_HOST: {port_text!r}")
    return host, int(port_text)


def _default_data_dir() -> Path:
    import platformdirs  # only needed when OLLAMACLI_HOME is unset; keeps `--help` fast

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob ollamacli reads from the environment, resolved once."""

    data_dir: Path = field(default_factory=_default_data_dir)
    models_dir: Path | None = None
    host: HostAddress = field(default_factory=HostAddress)
    keep_alive: float = DEFAULT_KEEP_ALIVE
    max_loaded_models: int = 3
    num_parallel: int = 4
    max_queue: int = 512
    context_length: int = 4096
    origins: tuple[str, ...] = ()
    debug: bool = False
    noprune: bool = False
    nohistory: bool = False
    api_key: str | None = None
    hf_endpoint: str = "https://huggingface.co"
    hf_token: str | None = None
    editor: str | None = None
    num_thread: int = 0
    log_format: LogFormat = "text"  # "json": one JSON object per log line (OLLAMACLI_LOG_FORMAT)
    log_requests: bool = False  # request bodies in the request log (OLLAMA_DEBUG_LOG_REQUESTS)
    max_body_size: int = DEFAULT_MAX_BODY_SIZE  # bytes of a JSON request body; 0 = no limit
    prompt_cache: int = DEFAULT_PROMPT_CACHE  # OLLAMACLI_PROMPT_CACHE; 0 = no prompt cache

    @property
    def models(self) -> Path:
        """The model store root (`OLLAMA_MODELS`, default `<data dir>/models`)."""
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"

    @property
    def history_path(self) -> Path:
        """The REPL history file."""
        return self.data_dir / "history"

    def with_changes(self, **changes: object) -> Settings:
        """A copy with some fields replaced (handy in tests)."""
        return replace(self, **changes)  # type: ignore[arg-type]  # dataclasses.replace is untyped

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from an environment mapping (default: `os.environ`)."""
        env = dict(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            raw = env.get(name)
            if raw is None:
                return None
            value = raw.strip().strip("'\"")
            return value or None

        data_dir = Path(get("OLLAMACLI_HOME") or _default_data_dir()).expanduser()
        models = get("OLLAMA_MODELS")
        return cls(
            data_dir=data_dir,
            models_dir=Path(models).expanduser() if models else None,
            host=parse_host(get("OLLAMA_HOST") or "127.0.0.1:11434"),
            keep_alive=parse_duration(get("OLLAMA_KEEP_ALIVE") or DEFAULT_KEEP_ALIVE),
            max_loaded_models=_int(get("OLLAMA_MAX_LOADED_MODELS"), 3, minimum=1),
            num_parallel=_int(get("OLLAMA_NUM_PARALLEL"), 4, minimum=1),
            max_queue=_int(get("OLLAMA_MAX_QUEUE"), 512, minimum=1),
            context_length=_int(get("OLLAMA_CONTEXT_LENGTH"), 4096, minimum=4),
            origins=tuple(o.strip() for o in (get("OLLAMA_ORIGINS") or "").split(",") if o.strip()),
            debug=parse_bool(get("OLLAMA_DEBUG") or ""),
            noprune=parse_bool(get("OLLAMA_NOPRUNE") or ""),
            nohistory=parse_bool(get("OLLAMA_NOHISTORY") or ""),
            api_key=get("OLLAMACLI_API_KEY"),
            hf_endpoint=(get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/"),
            hf_token=get("HF_TOKEN"),
            editor=get("OLLAMA_EDITOR") or get("VISUAL") or get("EDITOR"),
            num_thread=_int(get("OLLAMACLI_NUM_THREAD"), 0, minimum=0),
            log_format=_log_format(get("OLLAMACLI_LOG_FORMAT")),
            log_requests=parse_bool(get("OLLAMA_DEBUG_LOG_REQUESTS") or ""),
            max_body_size=parse_size(get("OLLAMACLI_MAX_BODY_SIZE"), DEFAULT_MAX_BODY_SIZE),
            prompt_cache=parse_size(get("OLLAMACLI_PROMPT_CACHE"), DEFAULT_PROMPT_CACHE),
        )


def _log_format(value: str | None) -> LogFormat:
    text = (value or "text").lower()
    if text == "json":
        return "json"
    if text != "text":
        raise InvalidRequestError(
            f"invalid OLLAMACLI_LOG_FORMAT {value!r}", hint='use "text" (default) or "json"'
        )
    return "text"


_SIZE = re.compile(r"(\d+)\s*([kmg]?)i?b?", re.IGNORECASE)


def parse_size(value: str | None, default: int) -> int:
    """A byte count as nginx writes sizes: `1048576`, `512k`, `32m`, `1g` (binary units);
    unparseable values give the default."""
    match = _SIZE.fullmatch(value.strip()) if value else None
    if match is None:
        return default
    shift = {"": 0, "k": 10, "m": 20, "g": 30}[match.group(2).lower()]
    return int(match.group(1)) << shift


def _int(value: str | None, default: int, *, minimum: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        return default
    return number if number >= minimum else default


def prefer_passive_openmp() -> None:
    """Let OpenMP worker threads sleep rather than spin while they wait (call before `import torch`).

    On a busy 2-core machine torch's default spinning made one fine-tuning step 3-4 times
    slower (115 s against 32 s at load average 7). A value the user set is kept.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
