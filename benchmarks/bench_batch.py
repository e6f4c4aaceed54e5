"""Continuous batching: `ollamacli serve` vs llama.cpp's `llama-server`, side by side.

    .venv/bin/python -m benchmarks.bench_batch --llama-server PATH [--clients 1,4,8,16]
        [--parallel 8] [--tokens 128] [--threads 2] [--rounds 2]

Both servers load the bundled SmolLM2 GGUF with the same threads, `--parallel` sequences and
`--parallel` x 2048 tokens of context (llama-server `-np N -c N*2048`, ours
OLLAMA_NUM_PARALLEL=N and num_ctx 2048). Each round drives them alternately with the same
streaming `/v1/chat/completions` requests, all clients started at once, and counts what the
clients saw: aggregate = generated tokens / wall time, time to first token per client. A
second case gives every client one ~1,000-token system prompt (agents and apps send one with
every request). Build llama-server from the llama.cpp that the installed llama-cpp-python
vendors (docs: ../shared/reference/measurements.md or README "Benchmarks"). Where that build
has AMX, ollamacli keeps the weights out of llama.cpp's extra buffers (its AMX kernels crash,
see `ollamacli.engine.native.extra_buffers_safe`), and llama-server gets `--no-repack` so that
both run the same kernels.

Goals (issue 11): 8 clients >= 1.0x llama-server and >= 1.45x our own 1 client; 1 client
>= 0.97x llama-server; p99 time to first token at 8 clients <= 1.5 s; 16 clients 0 errors.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.bench_api import bundled_model, free_port, percentile, start_server

SLOT_CTX = 2048  # tokens of context per sequence, both servers
QUESTION = "Write a long story about a dragon who learns to cook. Story number {n}."
SYSTEM = " ".join(
    f"Rule {n}: when the customer asks about order {n}, answer politely, briefly and in English."
    for n in range(50)
)


@dataclass
class Answer:
    """One streamed answer as its client saw it."""

    sent: float
    first: float | None = None
    tokens: int = 0
    error: str | None = None


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    model: str
    extra: dict[str, object] = field(default_factory=dict)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024


def wait_ready(url: str, path: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server at {url} exited")
        try:
            if httpx.get(url + path, trust_env=False, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the server at {url} did not start")


def start_ours(home: Path, threads: int, parallel: int) -> Server:
    process, url = start_server(home, threads, {"OLLAMA_NUM_PARALLEL": str(parallel)})
    return Server("ollamacli", process, url, "smollm2:135m", {"options": {"num_ctx": SLOT_CTX}})


def same_buffers() -> list[str]:
    """llama-server's flag for the weight buffers ollamacli uses with this build."""
    import llama_cpp

    from ollamacli.engine.native import extra_buffers_safe

    return [] if extra_buffers_safe(llama_cpp.llama_print_system_info().decode()) else ["-nr"]


def start_llama_server(binary: Path, threads: int, parallel: int) -> Server:
    port = free_port()
    process = subprocess.Popen(
        [
            str(binary),
            "-m",
            str(bundled_model()),
            "-t",
            str(threads),
            "-tb",
            str(threads),
            "-c",
            str(SLOT_CTX * parallel),
            "-np",
            str(parallel),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            *same_buffers(),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, "/health", process)
    return Server("llama-server", process, url, "smollm2")


def ask(server: Server, question: str, system: str, tokens: int) -> Answer:
    messages = [{"role": "user", "content": question}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    body = {
        "model": server.model,
        "messages": messages,
        "stream": True,
        "max_tokens": tokens,
        "temperature": 0.8,
        "seed": 42,
        "stream_options": {"include_usage": True},
        **server.extra,
    }
    answer = Answer(sent=time.perf_counter())
    try:
        with (
            httpx.Client(base_url=server.url, timeout=600, trust_env=False) as client,
            client.stream("POST", "/v1/chat/completions", json=body) as response,
        ):
            if response.status_code != 200:
                response.read()
                answer.error = f"HTTP {response.status_code}: {response.text[:200]}"
                return answer
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if data.get("usage"):
                    answer.tokens = int(data["usage"]["completion_tokens"])
                choices = data.get("choices") or []
                if choices and choices[0].get("delta", {}).get("content") and not answer.first:
                    answer.first = time.perf_counter()
    except httpx.HTTPError as exc:
        answer.error = repr(exc)
    return answer


@dataclass
class Run:
    answers: list[Answer]
    wall: float

    @property
    def rate(self) -> float:
        return sum(a.tokens for a in self.answers) / self.wall

    @property
    def errors(self) -> int:
        return sum(1 for a in self.answers if a.error)

    def ttft(self, q: float) -> float:
        values = [a.first - a.sent for a in self.answers if a.first is not None]
        return percentile(values, q) if values else float("nan")


def drive(server: Server, clients: int, tokens: int, system: str, tag: str) -> Run:
    answers: list[Answer] = [Answer(0.0)] * clients

    def one(n: int) -> None:
        answers[n] = ask(server, QUESTION.format(n=f"{tag}-{n}"), system, tokens)

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Run(answers, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-server", type=Path, default=os.environ.get("LLAMA_SERVER"))
    parser.add_argument("--clients", default="1,4,8,16")
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-shared", action="store_true", help="skip the system-prompt case")
    args = parser.parse_args()
    if args.llama_server is None or not args.llama_server.exists():
        raise SystemExit("pass --llama-server PATH (or LLAMA_SERVER); see the module docstring")
    counts = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory() as home:
        ours = start_ours(Path(home), args.threads, args.parallel)
        theirs = start_llama_server(args.llama_server, args.threads, args.parallel)
        try:
            for server in (ours, theirs):  # warm both: first load, first graph
                drive(server, 2, 8, "", "warm")
            results: dict[tuple[str, str, int], list[Run]] = {}
            cases = [("plain", "", c) for c in counts]
            if not args.no_shared:
                cases.append(("shared", SYSTEM, args.parallel))
            for round_ in range(args.rounds):
                for case, system, clients in cases:
                    for server in (ours, theirs) if round_ % 2 == 0 else (theirs, ours):
                        tag = f"{case}{round_}{server.name}"
                        run = drive(server, clients, args.tokens, system, tag)
                        results.setdefault((server.name, case, clients), []).append(run)
            report(results, cases, args, ours, theirs)
        finally:
            ours.stop()
            theirs.stop()


def report(
    results: dict[tuple[str, str, int], list[Run]],
    cases: list[tuple[str, str, int]],
    args: argparse.Namespace,
    ours: Server,
    theirs: Server,
) -> None:
    def rate(name: str, case: str, clients: int) -> float:
        return statistics.mean(r.rate for r in results[(name, case, clients)])

    print(
        f"\nSmolLM2-135M Q4_1, {args.threads} threads, {args.parallel} sequences, "
        f"{args.tokens}-token answers, {args.rounds} alternating rounds; load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'case':<8}{'clients':>8}{'ours tok/s':>12}{'llama-srv':>11}{'ratio':>8}"
        f"{'ttft p50':>10}{'p99':>8}{'srv p50':>9}{'p99':>8}{'errors':>8}"
    )
    one = rate("ollamacli", "plain", 1) if ("ollamacli", "plain", 1) in results else None
    for case, _system, clients in cases:
        mine = results[("ollamacli", case, clients)]
        peer = results[("llama-server", case, clients)]
        ours_rate, peer_rate = rate("ollamacli", case, clients), rate("llama-server", case, clients)
        print(
            f"{case:<8}{clients:>8}{ours_rate:>12.1f}{peer_rate:>11.1f}"
            f"{ours_rate / max(peer_rate, 1e-9):>7.2f}x"
            f"{max(r.ttft(50) for r in mine):>9.2f}s{max(r.ttft(99) for r in mine):>7.2f}s"
            f"{max(r.ttft(50) for r in peer):>8.2f}s{max(r.ttft(99) for r in peer):>7.2f}s"
            f"{sum(r.errors for r in mine):>5}/{sum(r.errors for r in peer)}"
        )
        for run in mine + peer:
            for answer in run.answers:
                if answer.error:
                    print(f"  error: {answer.error}")
                    break
    if one:
        for case, _system, clients in cases:
            if case == "plain" and clients > 1:
                scale = rate("ollamacli", case, clients) / one
                print(f"ours, {clients} clients vs our 1 client: {scale:.2f}x")
    print(
        f"resident memory: ollamacli {ours.rss_mib():.0f} MiB, llama-server "
        f"{theirs.rss_mib():.0f} MiB"
    )


if __name__ == "__main__":
    main()
