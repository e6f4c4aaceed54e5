"""Operations benchmark: the cost of `/metrics` + the request log, and export/import speed.

    .venv/bin/python -m benchmarks.bench_ops [--tokens 256] [--repeat 3] [--threads N]

1. Single-stream decode through two real servers on the bundled SmolLM2 (subprocesses, each
   with the model loaded): one as `serve` builds it (request log as JSON lines into a file,
   metrics), one with the request-log middleware removed (so no record, no metrics update, no
   log line). Streaming `/api/generate`, tokens/s seen by the client, three runs interleaved:
   without, with, and with a `/metrics` scrape every second during the decode (a stress case:
   Prometheus scrapes every 15-60 s). Goal (issue 14): >= 0.98x.
2. `export` of the bundled model to a file and `import` into an empty store, against
   `tar -cf` of the same manifest and blob files and `tar -xf` of that archive (which, unlike
   import, checks no digest): seconds and bytes.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from benchmarks.bench_api import free_port, stream_generate

MODEL = "smollm2:135m"


def serve_variant(variant: str, port: int, home: Path, threads: int) -> None:
    """Run a server in this process (the `--serve` mode of this script)."""
    import logging

    import uvicorn

    from ollamacli.config import HostAddress, Settings
    from ollamacli.server.app import create_app
    from ollamacli.server.requestlog import JsonFormatter, RequestLog
    from ollamacli.service import build_services

    settings = Settings(
        data_dir=home,
        models_dir=home / "models",
        host=HostAddress(port=port),
        keep_alive=math.inf,  # stay loaded between runs
        num_thread=threads,
    )
    services = build_services(settings)
    services.models.ensure(MODEL)
    app = create_app(services)
    handler = logging.FileHandler(home / f"{variant}.log")
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    if variant == "bare":
        app.user_middleware = [
            m for m in app.user_middleware if object.__eq__(m.cls, RequestLog) is not True
        ]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    uvicorn.Server(config).run()


def start(variant: str, home: Path, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    folder = home / variant
    folder.mkdir()
    args = ["--serve", variant, "--port", str(port), "--home", str(folder)]
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_ops", *args, "--threads", str(threads)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, trust_env=False).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"{variant} server did not start")


def scraping(url: str, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, trust_env=False) as client:
        while not stop.wait(1.0):
            client.get("/metrics").raise_for_status()


def decode_rate(url: str, tokens: int, *, scrape: bool) -> float:
    stop = threading.Event()
    scraper = threading.Thread(target=scraping, args=(url, stop))
    if scrape:
        scraper.start()
    try:
        stream = stream_generate(url, tokens)
    finally:
        stop.set()
        if scrape:
            scraper.join()
    if stream.error or stream.eval_count < 2:
        raise SystemExit(f"stream failed: {stream.error}")
    return stream.decode_rate


def report_overhead(tokens: int, repeat: int, threads: int, home: Path) -> None:
    full, full_url = start("full", home, threads)
    bare, bare_url = start("bare", home, threads)
    try:
        for url in (full_url, bare_url):
            stream_generate(url, 8)  # load the model, warm up
        without, with_ops, scraped = [], [], []
        for _ in range(repeat):  # interleaved, so all three see the same machine load
            without.append(decode_rate(bare_url, tokens, scrape=False))
            with_ops.append(decode_rate(full_url, tokens, scrape=False))
            scraped.append(decode_rate(full_url, tokens, scrape=True))
        lines = (home / "full" / "full.log").read_text().count('"msg": "request"')
    finally:
        for server in (full, bare):
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    print(f"\nSingle-stream decode tokens/s ({tokens} tokens, {threads} thread(s))")
    print(f"  without request log/metrics  {max(without):8.1f}   (runs: {_runs(without)})")
    print(f"  with them                    {max(with_ops):8.1f}   (runs: {_runs(with_ops)})")
    print(f"  with them, /metrics every 1 s{max(scraped):8.1f}   (runs: {_runs(scraped)})")
    for label, runs in (("with", with_ops), ("with + scrapes", scraped)):
        best = max(runs) / max(without)
        median = statistics.median(runs) / statistics.median(without)
        print(f"  ratio {label:<15} best {best:6.3f}x, median {median:6.3f}x (goal >= 0.98x)")
    print(f"  JSON request lines written   {lines:8d}")


def best_of(repeat: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def report_bundle(repeat: int, home: Path) -> None:
    from ollamacli.names import ModelName
    from ollamacli.service.bundle import BundleService
    from ollamacli.service.models import ModelService
    from ollamacli.store import Store

    source = Store(home / "bundle-source")
    ModelService(source).ensure(MODEL)
    entry = source.manifests.get(ModelName.parse(MODEL))
    files = [entry.path, *(source.blobs.path(d) for d in dict.fromkeys(entry.manifest.digests))]
    exported, tarred = home / "model.tar", home / "plain.tar"

    def export() -> None:
        BundleService(source).export_file(MODEL, exported)

    def import_() -> None:
        target = home / "bundle-target"
        shutil.rmtree(target, ignore_errors=True)
        BundleService(Store(target)).import_file(exported)

    def tar_create() -> None:
        names = [str(f.relative_to(source.root)) for f in files]
        subprocess.run(["tar", "-cf", str(tarred), "-C", str(source.root), *names], check=True)

    def tar_extract() -> None:
        target = home / "tar-target"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        subprocess.run(["tar", "-xf", str(tarred), "-C", str(target)], check=True)

    times = {f.__name__: best_of(repeat, f) for f in (export, tar_create, import_, tar_extract)}
    size, plain = exported.stat().st_size, tarred.stat().st_size
    payload = sum(f.stat().st_size for f in files)
    print(
        f"\nExport/import of {MODEL} ({payload / 1e6:.1f} MB of manifest and blobs), best of {repeat}"
    )
    print(f"  export -o FILE   {times['export']:7.3f} s   {size:>11,} bytes")
    print(f"  tar -cf          {times['tar_create']:7.3f} s   {plain:>11,} bytes")
    print(f"  import FILE      {times['import_']:7.3f} s   (sha256 of every blob)")
    print(f"  tar -xf          {times['tar_extract']:7.3f} s   (no verification)")
    print(f"  size ratio export/tar  {size / plain:.4f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: the engine's default")
    parser.add_argument("--serve", choices=["full", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_variant(args.serve, args.port, args.home, args.threads)
        return

    from ollamacli.engine.options import physical_cores

    threads = args.threads or physical_cores()
    with tempfile.TemporaryDirectory(prefix="bench-ops-") as folder:
        home = Path(folder)
        report_overhead(args.tokens, args.repeat, threads, home)
        report_bundle(args.repeat, home)


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    os.environ.setdefault("NO_PROXY", "127.0.0.1")
    main()
