"""`serve --ray` benchmark: one stream through Ray Serve vs plain `serve`, and aggregate
throughput with 1 and 2 model-server replicas.

    .venv/bin/python -m benchmarks.bench_ray [--tokens 64] [--repeat 5] [--threads 1] [--clients 4]

1. Single stream: plain `ollamacli serve` and `ollamacli serve --ray --replicas 1` run side by
   side on the same store (the bundled SmolLM2, loaded and kept loaded in both); streaming
   `/api/generate` runs alternate between them; tokens/s as the client sees them (first to last
   token). Goal (issue 14): ray / plain >= 0.9x.
2. Aggregate: `--clients` streams at once, half for `smollm2:135m` and half for the same weights
   under a second name (`second`), against `serve --ray` with 1 and then 2 replicas: generated
   tokens / wall time. Model multiplexing puts the two models on different replicas when there
   are two; on a 2-core machine that is not expected to scale (both replicas share the cores).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from benchmarks.bench_api import PROMPT, Stream, free_port, stream_generate

MODEL = "smollm2:135m"
SECOND = "second"


def prepare_store(home: Path) -> None:
    from ollamacli.config import Settings
    from ollamacli.service import build_services
    from ollamacli.service.models import CreateSpec

    services = build_services(Settings(data_dir=home, models_dir=home / "models"))
    services.models.ensure(MODEL)
    services.models.create(SECOND, CreateSpec(from_model=MODEL))


def start(home: Path, threads: int, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMACLI_HOME": str(home),
        "OLLAMA_MODELS": str(home / "models"),
        "OLLAMA_KEEP_ALIVE": "-1",
    }
    if threads:
        env["OLLAMACLI_NUM_THREAD"] = str(threads)
    log = (home / f"serve-{port}.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "ollamacli", "serve", *args], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, trust_env=False).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit(f"ollamacli serve {' '.join(args)} did not start (log: {log.name})")


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def rate(stream: Stream) -> float:
    if stream.error:
        raise SystemExit(f"stream failed: {stream.error}")
    return stream.decode_rate


def warm(url: str, *models: str) -> None:
    for model in models:
        body = {"model": model, "prompt": "hi", "stream": False, "options": {"num_predict": 1}}
        httpx.post(f"{url}/api/generate", json=body, timeout=600, trust_env=False)


def single_stream(home: Path, tokens: int, repeat: int, threads: int) -> None:
    plain, plain_url = start(home, threads)
    ray, ray_url = start(home, threads, "--ray", "--replicas", "1")
    try:
        warm(plain_url, MODEL)
        warm(ray_url, MODEL)
        plain_rates, ray_rates = [], []
        for _ in range(repeat):
            plain_rates.append(rate(stream_generate(plain_url, tokens)))
            ray_rates.append(rate(stream_generate(ray_url, tokens)))
    finally:
        stop(ray)
        stop(plain)
    best = max(ray_rates) / max(plain_rates)
    median = statistics.median(ray_rates) / statistics.median(plain_rates)
    print(f"single stream, {tokens} tokens, {repeat} runs each (tokens/s):")
    print(f"  plain serve        {_runs(plain_rates)}")
    print(f"  serve --ray (1)    {_runs(ray_rates)}")
    print(f"  ray / plain: {best:.3f}x best, {median:.3f}x median (goal >= 0.9x)")


def aggregate(home: Path, tokens: int, clients: int, threads: int, replicas: int) -> float:
    server, url = start(home, threads, "--ray", "--replicas", str(replicas))
    try:
        warm(url, MODEL, SECOND)
        streams, wall = at_once(url, clients, tokens)
    finally:
        stop(server)
    for stream in streams:
        rate(stream)  # fails on an error
    total = sum(s.eval_count for s in streams)
    print(
        f"  {replicas} replica(s): {total} tokens from {clients} streams in {wall:.1f} s = "
        f"{total / wall:.1f} tokens/s"
    )
    return total / wall


def at_once(url: str, clients: int, tokens: int) -> tuple[list[Stream], float]:
    """`clients` streams at once, alternating the two models; and the wall time of them all."""
    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        futures = [
            pool.submit(
                stream_generate,
                url,
                tokens,
                f"{PROMPT} Story number {n}.",
                MODEL if n % 2 == 0 else SECOND,
            )
            for n in range(clients)
        ]
        streams = [future.result() for future in futures]
    return streams, time.perf_counter() - started


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="0: the engine's default")
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        prepare_store(home)
        single_stream(home, args.tokens, args.repeat, args.threads)
        print(f"aggregate, {args.clients} streams at once (two models), {args.tokens} tokens each:")
        one = aggregate(home, args.tokens, args.clients, args.threads, 1)
        two = aggregate(home, args.tokens, args.clients, args.threads, 2)
        print(f"  2 / 1 replicas: {two / one:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
