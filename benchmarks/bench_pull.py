"""Pull benchmark: ollamacli vs curl on the same blob, and bytes re-fetched after a kill -9.

    .venv/bin/python -m benchmarks.bench_pull [--size-mb 200] [--rounds 3]

1. Throughput: a local registry runs in its own process (`tests.servers.registry`) serving a
   model whose layer is a GGUF header plus `--size-mb` MB of random bytes. Each round, in
   alternation: `curl -o` of the blob URL; `ollamacli pull --insecure` into a fresh store,
   timed as a whole command (interpreter start-up and imports included) and from its
   `pulling manifest` line to `success` (manifest, parallel ranges, sha256 verification,
   manifest write); and the same pull in-process (`PullService.pull`). Medians are printed,
   with ollamacli/curl ratios (goal: >= 0.9).
2. Resume: the CLI pulls from a registry throttled to 2 MB/s per connection, is killed with
   SIGKILL after 40% of the blob arrived, and pulls again unthrottled. Printed: bytes served in
   each run, bytes fetched twice, and the bound (connections x part size).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def _model_file(folder: Path, size_mb: int) -> tuple[Path, str]:
    """A GGUF header followed by random bytes; returns (path, digest)."""
    sys.path.insert(0, str(ROOT))
    from tests.factories import make_tiny_gguf

    header = make_tiny_gguf(folder / "header.gguf").read_bytes()
    path = folder / "bench.gguf"
    hasher = hashlib.sha256(header)
    with path.open("wb") as out:
        out.write(header)
        for _ in range(size_mb):
            chunk = os.urandom(1_000_000)
            hasher.update(chunk)
            out.write(chunk)
    return path, "sha256:" + hasher.hexdigest()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"registry did not start on port {port}")


def _timed(action: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    action(*args)
    return time.perf_counter() - start


def _cli_pull(name: str, models: Path) -> tuple[float, float]:
    """Run the CLI; returns (whole command, `pulling manifest` line to `success`) in seconds."""
    env = {**os.environ, "OLLAMA_MODELS": str(models)}
    command = [PYTHON, "-m", "ollamacli", "pull", "--insecure", name]
    begin = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    started = finished = 0.0
    for line in process.stderr:
        if line.startswith(b"pulling manifest"):
            started = time.perf_counter()
        elif line.startswith(b"success"):
            finished = time.perf_counter()
    if process.wait() != 0 or not finished:
        raise SystemExit("ollamacli pull failed")
    return time.perf_counter() - begin, finished - started


def _service_pull(name: str, models: Path) -> None:
    from ollamacli.config import Settings
    from ollamacli.service.pull import PullService
    from ollamacli.store import Store

    PullService(Store(models), Settings(models_dir=models)).pull(name, insecure=True)


def throughput(folder: Path, size_mb: int, rounds: int) -> None:
    """Median MB/s of curl, the CLI and the in-process pull, interleaved."""
    model, digest = _model_file(folder, size_mb)
    size = model.stat().st_size
    port = _free_port()
    server = subprocess.Popen(
        [PYTHON, "-m", "tests.servers.registry", "--port", str(port), "--model", f"bench={model}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        url = f"http://127.0.0.1:{port}/v2/library/bench/blobs/{digest}"
        name = f"127.0.0.1:{port}/library/bench:latest"
        out = folder / "curl.out"
        results: dict[str, list[float]] = {
            "curl": [],
            "CLI, whole command": [],
            "CLI, pull phase": [],
            "in-process pull": [],
        }
        for index in range(rounds):
            curl = ["curl", "-sS", "--fail", "-o", str(out), url]
            results["curl"].append(_timed(subprocess.run, curl))
            out.unlink()
            whole, phase = _cli_pull(name, folder / f"c{index}")
            results["CLI, whole command"].append(whole)
            results["CLI, pull phase"].append(phase)
            results["in-process pull"].append(_timed(_service_pull, name, folder / f"s{index}"))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
    print(f"blob: {size / 1e6:.0f} MB, {rounds} rounds, medians (all rounds in MB/s)")
    curl_rate = size / statistics.median(results["curl"]) / 1e6
    for label, times in results.items():
        rate = size / statistics.median(times) / 1e6
        every = ", ".join(f"{size / t / 1e6:.0f}" for t in times)
        ratio = f"  ({rate / curl_rate:.2f}x curl)" if label != "curl" else ""
        print(f"  {label:20} {rate:6.0f} MB/s{ratio}   [{every}]")


def resume(folder: Path, size_mb: int) -> None:
    """Kill -9 a throttled CLI pull mid-blob, pull again, count bytes fetched twice."""
    sys.path.insert(0, str(ROOT))
    from ollamacli.registry.policy import TransferOptions
    from tests.servers.registry import running_registry

    model, digest = _model_file(folder, size_mb)
    size = model.stat().st_size
    models = folder / "resume-store"
    env = {**os.environ, "OLLAMA_MODELS": str(models)}
    with running_registry(folder / "registry") as registry:
        registry.app.add_model("bench", model)
        registry.app.faults.rate = 2_000_000
        command = [PYTHON, "-m", "ollamacli", "pull", "--insecure", registry.name("bench")]
        process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        while registry.app.served[digest] < 0.4 * size and process.poll() is None:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        registry.app.faults.rate = None
        registry.app.wait_idle()
        first = registry.app.served[digest]
        registry.app.served.clear()
        subprocess.run(command, env=env, check=True, stderr=subprocess.DEVNULL)
        second = registry.app.served[digest]
    options = TransferOptions()
    bound = options.connections * options.part_size(size)
    print(f"kill -9 after {first / 1e6:.1f} MB of {size / 1e6:.1f} MB served:")
    print(f"  resumed run fetched {second / 1e6:.1f} MB")
    print(f"  fetched twice: {(first + second - size) / 1e6:.2f} MB (bound: {bound / 1e6:.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description="ollamacli pull vs curl")
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--resume-size-mb", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as tmp:
        folder = Path(tmp)
        throughput(folder, args.size_mb, args.rounds)
        resume(folder / "resume", args.resume_size_mb)


if __name__ == "__main__":
    main()
