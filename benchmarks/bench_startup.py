"""Startup latency of the CLI: time to the first answer byte of `run`, and `--help` / `list`.

    .venv/bin/python -m benchmarks.bench_startup [--runs 7] [--importtime]

Each measurement is a fresh process of the installed `ollamacli` script, against a private
store that already holds the bundled SmolLM2 model (imported once before timing). For `run`
the clock stops at the first byte on stdout (the first token), then the process is stopped
with Ctrl-C. Goals (issue 3): run <= 0.5 s, --help and list <= 0.15 s. The figures are the
median of the runs; the machine's load average is printed with them because other work on a
shared machine moves them a lot.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

GOALS = {"run smollm2:135m hi (first token)": 0.5, "--help": 0.15, "list": 0.15}
MODEL = "smollm2:135m"


def _script() -> str:
    """The `ollamacli` console script next to this interpreter (what a user runs)."""
    path = Path(sys.executable).parent / "ollamacli"
    return str(path) if path.exists() else f"{sys.executable} -m ollamacli"


def _environment(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA", "OLLAMACLI"))}
    env.update(OLLAMA_MODELS=str(root / "models"), OLLAMACLI_HOME=str(root / "data"))
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time_exit(command: list[str], env: dict[str, str], cpu: list[float]) -> float:
    """Wall time of a whole command; its CPU time (user + system) is appended to `cpu`."""
    cpu_before, started = _children_cpu(), time.perf_counter()
    subprocess.run(
        command, env=env, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, check=True
    )
    elapsed = time.perf_counter() - started
    cpu.append(_children_cpu() - cpu_before)
    return elapsed


def _time_first_byte(command: list[str], env: dict[str, str], cpu: list[float]) -> float:
    """Wall time to the first stdout byte; the CPU time (to the stop just after) goes to `cpu`."""
    cpu_before, started = _children_cpu(), time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, bufsize=0
    )
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    elapsed = time.perf_counter() - started
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    cpu.append(_children_cpu() - cpu_before)
    if not first:
        raise RuntimeError(f"{' '.join(command)} printed nothing (exit {proc.returncode})")
    return elapsed


def _median(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    measure()  # warm the page cache; not counted
    times = [measure() for _ in range(runs)]
    return statistics.median(times), times


def _prepare(env: dict[str, str], script: list[str]) -> None:
    """Import the bundled model into the private store (not timed)."""
    subprocess.run(
        [*script, "run", MODEL, "hi"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=600,
    )


def _import_profile(env: dict[str, str]) -> None:
    """The slowest imports of the run path (cumulative microseconds), from -X importtime."""
    command = [sys.executable, "-X", "importtime", "-m", "ollamacli", "run", MODEL, "hi"]
    result = subprocess.run(
        command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True
    )
    rows = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = (part.strip() for part in line[12:].split("|"))
            if cumulative.isdigit():
                rows.append((int(cumulative), name))
    print("\nslowest imports on the run path (cumulative):")
    for micros, module in sorted(rows, reverse=True)[:20]:
        print(f"  {micros / 1e6:6.3f} s  {module}")


def main(argv: list[str] | None = None) -> None:
    """Measure and print the startup figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command")
    parser.add_argument("--importtime", action="store_true", help="also profile the run imports")
    parser.add_argument(
        "--threads", type=int, help="OLLAMACLI_NUM_THREAD for run (1 helps on a busy machine)"
    )
    args = parser.parse_args(argv)
    script = _script().split()
    with tempfile.TemporaryDirectory(prefix="ollamacli-bench-") as folder:
        env = _environment(Path(folder))
        if args.threads:
            env["OLLAMACLI_NUM_THREAD"] = str(args.threads)
        _prepare(env, script)
        run_label = "run smollm2:135m hi (first token)"
        cpu: dict[str, list[float]] = {run_label: [], "--help": [], "list": []}
        measures: dict[str, Callable[[], float]] = {
            run_label: lambda: _time_first_byte([*script, "run", MODEL, "hi"], env, cpu[run_label]),
            "--help": lambda: _time_exit([*script, "--help"], env, cpu["--help"]),
            "list": lambda: _time_exit([*script, "list"], env, cpu["list"]),
        }
        print(
            f"ollamacli startup, median of {args.runs} runs (load average {os.getloadavg()[0]:.2f})"
        )
        for label, measure in measures.items():
            median, times = _median(args.runs, measure)
            verdict = "ok" if median <= GOALS[label] else "MISSED"
            spread = f"min {min(times):.3f} s, max {max(times):.3f} s"
            # CPU time leaves out waiting for a busy CPU: with one thread, close to the wall
            # time on an idle machine.
            spread += f"; cpu {statistics.median(cpu[label][1:]):.3f} s"
            print(f"  {label:<36} {median:6.3f} s  (goal {GOALS[label]} s: {verdict}; {spread})")
        if args.importtime:
            _import_profile(env)


if __name__ == "__main__":
    main()
