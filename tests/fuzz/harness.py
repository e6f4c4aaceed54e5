"""The fuzzer's server and its per-request checks.

`FuzzServer` runs a real `ollamacli serve` subprocess on a temporary store holding the bundled
SmolLM2 (as `smollm2:135m`) and two aliases of it whose Modelfile parameters cap every
generation (`num_predict`), so a generated request that leaves the cap out still stays short.
`FuzzServer.send` sends one request and checks what every answer must satisfy, whatever was sent:

- the status is a real HTTP status and not 500;
- the server process is still alive and logged no traceback;
- a 4xx carries the API's error shape (`{"error": "..."}`, or OpenAI's object under `/v1/`);
- a JSON answer parses, a stream has no "internal server error" line;
- the request took less than a bound linear in its size (a constant per kind of route).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ollamacli.config import Settings
from ollamacli.service import build_services
from ollamacli.service.models import CreateSpec
from tests.fuzz.known_issues import allowed

BASE_MODEL = "smollm2:135m"
CAP = 2
"""The `num_predict` every alias (and every generated generation request) is held to."""
ALIASES = ("fuzz", "fuzz-chat")
PROTECTED = (BASE_MODEL, *ALIASES)
"""Models the fuzzer must never delete or overwrite (the aliases carry the `num_predict` cap)."""

# Seconds a request may take: a constant per kind of route plus a term linear in the body size.
# The constants are generous because the suite shares 2 cores: a model load (the first request
# on an instance) takes 1-10 s there.
BOUND_BASE_S = {"model": 90.0, "registry": 30.0, "light": 15.0}
BOUND_PER_KIB_S = 0.05
_MODEL_ROUTES = ("/api/generate", "/api/chat", "/api/embed", "/v1/chat", "/v1/comp", "/v1/emb")
_REGISTRY_ROUTES = ("/api/pull", "/api/push")
_CLEARED_PREFIXES = ("OLLAMA_", "OLLAMACLI_", "HF_", "HUGGING")
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def route_kind(path: str) -> str:
    """Which latency constant applies to a path."""
    if path.startswith(_MODEL_ROUTES):
        return "model"
    if path.startswith(_REGISTRY_ROUTES):
        return "registry"
    return "light"


def latency_bound(path: str, size: int) -> float:
    """The most seconds a request of `size` body bytes to `path` may take."""
    return BOUND_BASE_S[route_kind(path)] + BOUND_PER_KIB_S * size / 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stats:
    """What the fuzzer sent and what came back, for the run's summary."""

    first: float | None = None  # when the first request was sent
    last: float = 0.0  # when the last answer came back
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    slowest: dict[str, float] = field(default_factory=dict)

    def record(self, path: str, status: int, elapsed: float) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now - elapsed
        self.last = now
        self.requests += 1
        self.statuses[status] += 1
        kind = route_kind(path)
        self.slowest[kind] = max(self.slowest.get(kind, 0.0), elapsed)

    def summary(self) -> str:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        slowest = ", ".join(f"{kind} {s:.2f}s" for kind, s in sorted(self.slowest.items()))
        # From the first request to the last answer: the fuzz tests run one after another, and
        # the summary is printed when the whole session ends, long after them.
        wall = self.last - self.first if self.first is not None else 0.0
        return (
            f"fuzz: {self.requests} requests in {wall:.1f}s; statuses {{{statuses}}}; "
            f"slowest {slowest}"
        )


STATS = Stats()
KEEP_GOING = bool(os.environ.get("OLLAMACLI_FUZZ_KEEP_GOING"))
REQUEST_LOG = os.environ.get("OLLAMACLI_FUZZ_LOG")
"""A file to append every request and the start of its answer to (for debugging the fuzzer)."""


@dataclass
class Answer:
    """One response, read in full."""

    status: int
    headers: httpx.Headers
    content: bytes
    elapsed: float

    def json(self) -> object:
        return json.loads(self.content)


@dataclass
class Request:
    """One request as sent; `str()` is a short form, `to_json()` the whole reproduction."""

    method: str
    path: str
    content: bytes
    headers: dict[str, str]

    def __str__(self) -> str:
        body = self.content if len(self.content) <= 600 else self.content[:600] + b"..."
        return f"{self.method} {self.path} {body!r} headers={self.headers}"

    def to_json(self) -> dict[str, object]:
        """Replay with: curl -X METHOD URL/PATH -H ... --data-binary @<(base64 -d <<< body)."""
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body_base64": base64.b64encode(self.content).decode(),
            "body_text": self.content.decode("utf-8", "replace")[:20000],
        }


class FuzzFailure(AssertionError):
    """A request broke one of the invariants (the message says which, with the request)."""


def server_env(root: Path, port: int, hf_endpoint: str) -> dict[str, str]:
    """The environment `ollamacli serve` runs in: our store, loopback only, small contexts."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_CLEARED_PREFIXES) and k.upper() not in _PROXIES
    }
    env.update(
        HOME=str(root / "home"),
        OLLAMACLI_HOME=str(root / "data"),
        OLLAMA_MODELS=str(root / "models"),
        OLLAMA_HOST=f"127.0.0.1:{port}",
        OLLAMA_CONTEXT_LENGTH="512",  # bounds prompt evaluation even when a generator forgets
        OLLAMA_KEEP_ALIVE="1h",  # no reload churn between examples
        OLLAMA_MAX_LOADED_MODELS="6",
        OLLAMA_NOPRUNE="1",
        HF_ENDPOINT=hf_endpoint,  # a local server: hf.co pulls stay offline and fail fast
        OLLAMACLI_NUM_THREAD="1",  # on a busy 2-core machine 1 thread is twice as fast as 2
        NO_PROXY="*",
    )
    return env


def prepare_store(env: Mapping[str, str]) -> None:
    """Import the bundled model and create the capped aliases, before the server starts."""
    services = build_services(Settings.from_env(env))
    services.models.ensure(BASE_MODEL)
    for alias in ALIASES:
        services.models.create(
            alias, CreateSpec(from_model=BASE_MODEL, parameters={"num_predict": CAP})
        )


class FuzzServer:
    """A running `ollamacli serve` and the client that fuzzes it."""

    def __init__(self, root: Path, hf_endpoint: str) -> None:
        self.root = root
        self.port = free_port()
        self.closed_port = free_port()  # nothing listens here: an unreachable registry
        self.env = server_env(root, self.port, hf_endpoint)
        self.log_path = root / "serve.log"
        self._log_offset = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.findings: list[str] = []
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", trust_env=False, timeout=120
        )

    def start(self) -> None:
        (self.root / "home").mkdir(parents=True, exist_ok=True)
        prepare_store(self.env)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ollamacli", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.client.get("/").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.client.close()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    @property
    def store_root(self) -> str:
        return str(self.root)

    def new_log(self) -> str:
        """What the server logged since the last call."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            data = log.read()
        self._log_offset += len(data)
        return data.decode("utf-8", "replace")

    def send(
        self,
        method: str,
        path: str,
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request and check the invariants (raises `FuzzFailure`)."""
        request = Request(method, path, content, dict(headers or {}))
        bound = latency_bound(path, len(content))
        started = time.monotonic()
        try:
            response = self.client.request(
                method, path, content=content, headers=request.headers, timeout=bound + 10
            )
        except httpx.TimeoutException:
            self.fail(request, f"no answer within {bound + 10:.0f}s", b"")
            raise
        except httpx.TransportError as exc:
            self.fail(request, f"connection failed ({exc!r})", b"")
            raise
        answer = Answer(
            response.status_code, response.headers, response.content, time.monotonic() - started
        )
        STATS.record(path, answer.status, answer.elapsed)
        if REQUEST_LOG:
            with Path(REQUEST_LOG).open("a", encoding="utf-8") as log:
                reply = answer.content[:300].decode("utf-8", "replace")
                log.write(f"{answer.status} {answer.elapsed:.2f}s {request}\n  -> {reply!r}\n")
        self.check(request, answer, bound)
        return answer

    def check(self, request: Request, answer: Answer, bound: float) -> None:
        """Every invariant of one answer."""
        problems = [
            *self._process_problems(),
            *status_problems(answer),
            *shape_problems(request.method, request.path, answer),
            *self._leak_problems(answer),
        ]
        if answer.elapsed > bound:
            problems.append(f"took {answer.elapsed:.1f}s, bound {bound:.1f}s")
        if problems:
            self.fail(request, "; ".join(problems), answer.content)

    def fail(self, request: Request, problem: str, answer: bytes) -> None:
        """Write the reproduction down, then raise at once (Hypothesis then shrinks), or note
        it for `raise_findings` when OLLAMACLI_FUZZ_KEEP_GOING is set (every finding, unshrunk)."""
        folder = self.root / "findings"
        folder.mkdir(exist_ok=True)
        saved = folder / f"{len(list(folder.iterdir())):04d}.json"
        saved.write_text(json.dumps({"problem": problem, **request.to_json()}, indent=1))
        reply = answer[:1000].decode("utf-8", "replace")
        message = f"{problem}\nrequest: {request}\nanswer: {reply}\nreproduction: {saved}"
        if not KEEP_GOING:
            raise FuzzFailure(message)
        self.findings.append(message)

    def raise_findings(self) -> None:
        """Fail with every finding noted so far (keep-going mode), and forget them."""
        findings, self.findings = self.findings, []
        if findings:
            raise FuzzFailure(f"{len(findings)} finding(s):\n\n" + "\n\n".join(findings))

    def send_raw(self, data: bytes, *, close_write: bool) -> bytes:
        """Write bytes straight to the server's socket (framing the HTTP client would never
        send), then read what comes back until it closes or goes quiet; checks the invariants."""
        request = Request("RAW", "", data, {})
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(data)
            if close_write:
                sock.shutdown(socket.SHUT_WR)
            reply = _read_until_quiet(sock)
        elapsed = time.monotonic() - started
        status = _raw_status(reply)
        STATS.record("/raw", status, elapsed)
        problems = self._process_problems()
        if status == 500 or not (status == 0 or 100 <= status < 600):
            problems.append(f"status {status}")
        if problems:
            self.fail(request, "; ".join(problems), reply)
        return reply

    def _process_problems(self) -> list[str]:
        assert self.process is not None
        log = self.new_log()
        problems = []
        if self.process.poll() is not None:
            problems.append(f"server exited with {self.process.returncode}")
        if "Traceback" in log or " crashed" in log:
            problems.append(f"server logged a crash:\n{log[-4000:]}")
        return problems

    def _leak_problems(self, answer: Answer) -> list[str]:
        # Only errors: `show` prints the model's blob path in its Modelfile, as Ollama does.
        leaked = answer.status >= 400 and self.store_root.encode() in answer.content
        if leaked and allowed("path-leak"):
            return ["the error shows a server file path"]
        return []


def _read_until_quiet(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection or is silent for 2 s."""
    sock.settimeout(2)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _raw_status(reply: bytes) -> int:
    """The status code of the first response in `reply` (0: no response)."""
    line = reply.split(b"\r\n", 1)[0].split(b" ")
    if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
        return int(line[1])
    return 0


def status_problems(answer: Answer) -> list[str]:
    if answer.status == 500 or not 100 <= answer.status < 600:
        return [f"status {answer.status}"]
    return []


def shape_problems(method: str, path: str, answer: Answer) -> list[str]:
    """A 4xx has the API's error shape; JSON parses; a stream has no internal error."""
    kind = answer.headers.get("content-type", "")
    if method == "HEAD" or (not answer.content and answer.status < 400):
        return []
    if 400 <= answer.status < 500:
        return error_shape_problems(path, answer)
    if kind.startswith("application/json"):
        try:
            answer.json()
        except ValueError:
            return ["a JSON answer that does not parse"]
    elif kind.startswith(("application/x-ndjson", "text/event-stream")):
        return stream_problems(answer.content)
    return []


def error_shape_problems(path: str, answer: Answer) -> list[str]:
    try:
        body = answer.json()
    except ValueError:
        return [f"a {answer.status} whose body is not JSON"]
    error = body.get("error") if isinstance(body, dict) else None
    if path.startswith("/v1/"):
        message = error.get("message") if isinstance(error, dict) else None
        kind = error.get("type") if isinstance(error, dict) else None
        ok = isinstance(message, str) and bool(message) and isinstance(kind, str)
    else:
        ok = isinstance(error, str) and bool(error)
    return [] if ok else [f"a {answer.status} without the API's error shape"]


def stream_problems(content: bytes) -> list[str]:
    """NDJSON lines or SSE `data:` events must parse and carry no internal server error."""
    problems = []
    for raw in content.decode("utf-8", "replace").splitlines():
        line = raw.removeprefix("data: ").strip()
        if not line or line == "[DONE]":
            continue
        try:
            json.loads(line)
        except ValueError:
            problems.append(f"a stream line that does not parse: {line[:200]!r}")
        if "internal server error" in line:
            problems.append(f"an internal error in the stream: {line[:200]!r}")
    return problems
