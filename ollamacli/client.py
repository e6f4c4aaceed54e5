"""A small HTTP client for a running `ollamacli serve` (used by `ps` and `stop`).

It speaks the Ollama API over httpx and never imports the server. A refused connection
becomes `ServerNotRunningError`; an error answer becomes `ModelNotFoundError` (404) or
`ServerResponseError` carrying the server's own message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType

import httpx

from ollamacli.config import Settings
from ollamacli.errors import ModelNotFoundError, ServerNotRunningError, ServerResponseError


@dataclass(frozen=True, slots=True)
class RunningModel:
    """A model the server has loaded, as `/api/ps` reports it."""

    name: str
    digest: str
    size: int
    size_vram: int
    context_length: int
    expires_at: float  # wall-clock seconds since the epoch


def parse_time(text: str) -> float:
    """An RFC 3339 time (Go writes up to nanoseconds and a `Z`) as epoch seconds."""
    text = text.strip().replace("Z", "+00:00")
    main, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        rest = rest[: min(digits, 6)] + rest[digits:]
        text = f"{main}.{rest}"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


class Client:
    """Talks to the server at `OLLAMA_HOST`, with `OLLAMACLI_API_KEY` when set."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.host = settings.host.url
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        # trust_env=False: proxy variables are for registries, not for this local server.
        self._http = httpx.Client(
            base_url=self.host,
            headers=headers,
            timeout=timeout,
            transport=transport,
            trust_env=False,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _request(
        self, method: str, path: str, body: dict[str, object] | None = None
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServerNotRunningError(self.host) from exc
        except httpx.TransportError as exc:
            raise ServerResponseError(
                f"lost the connection to the server at {self.host}: {exc}", status=0
            ) from exc
        if response.status_code >= 400:
            raise ServerResponseError(_error_text(response), status=response.status_code)
        return response

    def heartbeat(self) -> None:
        """Check that a server answers (raises `ServerNotRunningError`)."""
        self._request("HEAD", "/")

    def version(self) -> str:
        """The server's version."""
        return str(self._request("GET", "/api/version").json().get("version", ""))

    def ps(self) -> list[RunningModel]:
        """The loaded models."""
        data = self._request("GET", "/api/ps").json()
        return [_running(item) for item in data.get("models") or []]

    def stop(self, model: str) -> None:
        """Unload a model now (an empty request with `keep_alive: 0`, as `ollama stop` sends)."""
        try:
            self._request("POST", "/api/generate", {"model": model, "keep_alive": 0})
        except ServerResponseError as exc:
            if exc.status == 404:
                raise ModelNotFoundError(
                    model, message=f'couldn\'t find model "{model}" to stop'
                ) from None
            raise


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip() or f"HTTP {response.status_code}"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, str):
            return error
    return f"HTTP {response.status_code}"


def _running(item: dict[str, object]) -> RunningModel:
    expires = item.get("expires_at")
    return RunningModel(
        name=str(item.get("name") or item.get("model") or ""),
        digest=str(item.get("digest") or ""),
        size=_int(item.get("size")),
        size_vram=_int(item.get("size_vram")),
        context_length=_int(item.get("context_length")),
        expires_at=parse_time(expires) if isinstance(expires, str) and expires else 0.0,
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
