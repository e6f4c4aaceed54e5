"""Decode speed: our engine (ChatService -> scheduler -> LlamaCppEngine) and the `ollamacli run`
command vs a raw llama-cpp-python `Llama.generate` loop, on the same model, prompt, sampling and
thread count.

    .venv/bin/python -m benchmarks.bench_decode [--repeats 5] [--tokens 256] [--threads 2]

Both sides get the same prompt tokens (the chat template rendered by ChatService), the same
sampling (Ollama's defaults: temperature 0.8, top_k 40, top_p 0.9, same seed) and the same
cache state: before every measured run each side first answers a short other prompt, so the
measured prompt is evaluated from the shared template prefix on, as a new question would be.
Runs alternate (ours first on even repeats, raw first on odd ones) so background load hits
both alike.

Printed per run and as medians: decode tokens/s, from the first token to the last (the
figure Ollama's `eval rate` reports), time to first token (TTFT: prompt evaluation plus
everything before the first token), and CPU milliseconds per decoded token (this process, all
threads), which moves less than wall time when other work shares the machine. Goal (issue 3):
ours / raw >= 0.97 in decode speed.

The `ollamacli run` side is the console command a user types, in a fresh process each time, on
a model created from the bundled one with the same options as PARAMETER lines (`num_predict`,
`seed`, `num_ctx`, `num_thread`): its decode rate is measured from outside, from the arrival of
the first answer byte on its stdout to the last, and its own `--verbose` eval rate is printed
next to it. It runs once per repeat, between the other two sides.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollamacli.config import Settings
from ollamacli.engine.base import ChatMessage, TextChunk
from ollamacli.engine.native import plain_buffers_for_llama_class
from ollamacli.names import ModelName
from ollamacli.service import Services, build_services
from ollamacli.service.chat import ChatDone, ChatRequest

MODEL = "smollm2:135m"
PROMPT = "Write a long story about a dragon who learns to cook."
FLUSH = "Say hello."
SEED = 1234
GOAL = 0.97


@dataclass(frozen=True, slots=True)
class Run:
    """One measured generation."""

    tokens: int
    ttft: float  # seconds from the call to the first token
    decode: float  # seconds from the first token to the last
    cpu: float  # CPU seconds this process used over the same span (all threads)

    @property
    def rate(self) -> float:
        return (self.tokens - 1) / self.decode if self.decode > 0 else 0.0

    @property
    def cpu_per_token(self) -> float:
        """CPU milliseconds per decoded token: less sensitive to other work on the machine."""
        return 1000 * self.cpu / (self.tokens - 1) if self.tokens > 1 else 0.0


class Ours:
    """Generation through ChatService, as `run` and the server use it."""

    def __init__(self, services: Services, tokens: int, threads: int) -> None:
        self.services = services
        self.options = {
            "num_predict": tokens,
            "num_thread": threads,
            "num_ctx": 2048,
            "seed": SEED,
        }
        self.prompt_tokens: list[int] = []
        self.flush_tokens: list[int] = []

    def _chat(self, text: str, **options: object) -> tuple[list[tuple[float, float]], ChatDone]:
        request = ChatRequest(
            MODEL, (ChatMessage("user", text),), options={**self.options, **options}
        )
        arrivals: list[tuple[float, float]] = []
        done: ChatDone | None = None
        for event in self.services.chat.chat(request):
            if isinstance(event, TextChunk):
                arrivals.append((time.perf_counter(), time.process_time()))
            elif isinstance(event, ChatDone):
                done = event
        assert done is not None
        return arrivals, done

    def prepare(self) -> None:
        """Load the model and learn the exact prompt tokens the raw loop must use."""
        for text, attribute in ((FLUSH, "flush_tokens"), (PROMPT, "prompt_tokens")):
            _, done = self._chat(text, num_predict=1)
            setattr(self, attribute, list(done.context[: len(done.context) - done.eval_count]))

    def measure(self) -> Run:
        self._chat(FLUSH, num_predict=1)
        started = time.perf_counter()
        arrivals, done = self._chat(PROMPT)
        ended, cpu = time.perf_counter(), time.process_time()
        (first, first_cpu) = arrivals[0]
        return Run(done.eval_count, first - started, ended - first, cpu - first_cpu)


class Raw:
    """A bare `Llama.generate` loop, detokenizing each token as any client must."""

    def __init__(self, model_path: Path, threads: int, tokens: int) -> None:
        import llama_cpp

        self.lib = llama_cpp
        with plain_buffers_for_llama_class(llama_cpp.llama_cpp):
            self.llm: Any = llama_cpp.Llama(
                str(model_path),
                n_ctx=2048,
                n_batch=512,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.tokens = tokens

    def _generate(self, prompt: list[int], limit: int) -> tuple[int, float, float, float]:
        self.llm.set_seed(SEED)
        started = time.perf_counter()
        first = first_cpu = 0.0
        count = 0
        stream = self.llm.generate(
            prompt, top_k=40, top_p=0.9, min_p=0.0, typical_p=1.0, temp=0.8, repeat_penalty=1.0
        )
        for token in stream:
            if self.lib.llama_vocab_is_eog(self.vocab, token):
                break
            self.llm.detokenize([token])
            count += 1
            if count == 1:
                first, first_cpu = time.perf_counter(), time.process_time()
            if count >= limit:
                break
        return count, started, first, first_cpu

    def measure(self, flush: list[int], prompt: list[int]) -> Run:
        self._generate(flush, 1)
        count, started, first, first_cpu = self._generate(prompt, self.tokens)
        ended, cpu = time.perf_counter(), time.process_time()
        return Run(count, first - started, ended - first, cpu - first_cpu)


class CliRun:
    """`ollamacli run MODEL PROMPT --verbose` in a fresh process, stdout read as it arrives."""

    name = "bench-decode"

    def __init__(self, root: Path, threads: int, tokens: int) -> None:
        executable = Path(sys.executable).parent / "ollamacli"
        self.command = (
            [str(executable)] if executable.exists() else [sys.executable, "-m", "ollamacli"]
        )
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA", "OLLAMACLI"))
        }
        self.env.update(OLLAMA_MODELS=str(root / "models"), OLLAMACLI_HOME=str(root / "data"))
        modelfile = root / "Modelfile"
        modelfile.write_text(
            f"FROM {MODEL}\nPARAMETER num_predict {tokens}\nPARAMETER seed {SEED}\n"
            f"PARAMETER num_ctx 2048\nPARAMETER num_thread {threads}\n",
            encoding="utf-8",
        )
        subprocess.run(
            [*self.command, "create", self.name, "-f", str(modelfile)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        self.reported: list[float] = []  # the command's own --verbose eval rate, per run

    def measure(self) -> Run:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*self.command, "run", self.name, PROMPT, "--verbose"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = last = 0.0
        while os.read(proc.stdout.fileno(), 65536):
            last = time.perf_counter()
            first = first or last
        stderr = proc.stderr.read().decode("utf-8", "replace")
        if proc.wait() != 0 or not first:
            raise RuntimeError(f"ollamacli run failed (exit {proc.returncode}): {stderr}")
        count = re.search(r"^eval count:\s+(\d+)", stderr, re.MULTILINE)
        rate = re.search(r"^eval rate:\s+([\d.]+)", stderr, re.MULTILINE)
        if count is None or rate is None:
            raise RuntimeError(f"no --verbose statistics from ollamacli run: {stderr}")
        self.reported.append(float(rate.group(1)))
        # The whole process's CPU time would count start-up and loading, so none is recorded.
        return Run(int(count.group(1)), first - started, last - first, 0.0)


def _services(root: Path, threads: int) -> Services:
    settings = Settings(data_dir=root, models_dir=root / "models", num_thread=threads)
    services = build_services(settings)
    services.models.ensure(MODEL)
    return services


def _median(runs: list[Run], key: Callable[[Run], float]) -> float:
    return statistics.median(key(run) for run in runs)


def _spread(runs: list[Run], key: Callable[[Run], float]) -> str:
    values = [key(run) for run in runs]
    return f"{min(values):.1f}-{max(values):.1f}"


def _report_cli(cli: CliRun, runs: list[Run], raw: list[Run]) -> None:
    rate = _median(runs, lambda r: r.rate)
    ratio = rate / _median(raw, lambda r: r.rate)
    verdict = "meets" if ratio >= GOAL else "misses"
    print(
        f"{'ollamacli run':20} decode {rate:6.1f} tok/s (range {_spread(runs, lambda r: r.rate)}, "
        f"its own --verbose eval rate {statistics.median(cli.reported):.1f})   "
        f"first byte of a cold process {_median(runs, lambda r: r.ttft * 1000):6.1f} ms   "
        f"tokens {_median(runs, lambda r: r.tokens):.0f}"
    )
    print(f"decode ratio ollamacli run/raw (medians): {ratio:.3f}x  {verdict} the {GOAL}x goal")


def _report(ours: list[Run], raw: list[Run]) -> None:
    print()
    for name, runs in (("ours (ChatService)", ours), ("raw Llama.generate", raw)):
        rate, ttft = _median(runs, lambda r: r.rate), _median(runs, lambda r: r.ttft * 1000)
        print(
            f"{name:20} decode {rate:6.1f} tok/s (range {_spread(runs, lambda r: r.rate)})   "
            f"TTFT {ttft:6.1f} ms (range {_spread(runs, lambda r: r.ttft * 1000)})   "
            f"CPU {_median(runs, lambda r: r.cpu_per_token):5.2f} ms/token "
            f"(range {_spread(runs, lambda r: r.cpu_per_token)})   "
            f"tokens {_median(runs, lambda r: r.tokens):.0f}"
        )
    ratio = _median(ours, lambda r: r.rate) / _median(raw, lambda r: r.rate)
    pairs = [a.rate / b.rate for a, b in zip(ours, raw, strict=True) if b.rate]
    verdict = "meets" if ratio >= GOAL else "misses"
    print(
        f"\ndecode ratio ours/raw (medians): {ratio:.3f}x  {verdict} the {GOAL}x goal; "
        f"per-pair ratios {min(pairs):.3f}-{max(pairs):.3f}"
    )
    ttft_ratio = _median(ours, lambda r: r.ttft) / _median(raw, lambda r: r.ttft)
    print(f"TTFT ratio ours/raw (medians): {ttft_ratio:.3f}x")
    cpu_ratio = _median(ours, lambda r: r.cpu_per_token) / _median(raw, lambda r: r.cpu_per_token)
    print(f"CPU per token ours/raw (medians): {cpu_ratio:.3f}x (1.0 = no extra work per token)")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as folder:
        services = _services(Path(folder), args.threads)
        ours = Ours(services, args.tokens, args.threads)
        ours.prepare()
        model_path = services.store.resolve(ModelName.parse(MODEL)).model_path
        raw = Raw(model_path, args.threads, args.tokens)
        cli = CliRun(Path(folder), args.threads, args.tokens)
        cli_runs: list[Run] = []
        print(f"model {MODEL}, {args.tokens} tokens, {args.threads} threads, prompt {PROMPT!r}")
        ours_runs: list[Run] = []
        raw_runs: list[Run] = []
        for repeat in range(args.repeats):
            order = (
                [ours_runs, cli_runs, raw_runs]
                if repeat % 2 == 0
                else [raw_runs, cli_runs, ours_runs]
            )
            for runs in order:
                if runs is ours_runs:
                    runs.append(ours.measure())
                elif runs is cli_runs:
                    runs.append(cli.measure())
                else:
                    runs.append(raw.measure(ours.flush_tokens, ours.prompt_tokens))
                label = {id(ours_runs): "ours", id(cli_runs): "run "}.get(id(runs), "raw ")
                last = runs[-1]
                print(
                    f"  repeat {repeat + 1} {label}: {last.rate:6.1f} tok/s, "
                    f"TTFT {last.ttft * 1000:6.1f} ms, CPU {last.cpu_per_token:5.2f} ms/token, "
                    f"{last.tokens} tokens",
                    flush=True,
                )
        _report(ours_runs, raw_runs)
        _report_cli(cli, cli_runs, raw_runs)
        services.scheduler.close()


if __name__ == "__main__":
    main()
