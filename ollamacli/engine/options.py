"""Turn merged Ollama options into the engine's load and sampling settings.

Precedence is decided by the caller (`parameters.merge_options`): request > session >
Modelfile > Ollama's defaults. This module only maps names and applies limits.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ollamacli.engine.base import LoadConfig, SamplingConfig
from ollamacli.parameters import OptionValue


def physical_cores() -> int:
    """Physical CPU cores (llama.cpp decodes fastest with one thread per core)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return max(1, (os.cpu_count() or 2) // 2)
    cores = {
        (block.get("physical id"), block.get("core id"))
        for block in _cpuinfo_blocks(text)
        if "core id" in block
    }
    return len(cores) or max(1, os.cpu_count() or 1)


def _cpuinfo_blocks(text: str) -> list[dict[str, str]]:
    blocks = []
    for chunk in text.split("\n\n"):
        block = {}
        for line in chunk.splitlines():
            key, _, value = line.partition(":")
            block[key.strip()] = value.strip()
        blocks.append(block)
    return blocks


def _int(options: Mapping[str, OptionValue], name: str, default: int) -> int:
    value = options.get(name, default)
    return (
        int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
    )


def _float(options: Mapping[str, OptionValue], name: str, default: float) -> float:
    value = options.get(name, default)
    return (
        float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
    )


def load_config(
    model_path: Path,
    options: Mapping[str, OptionValue],
    *,
    adapters: tuple[Path, ...] = (),
    trained_context: int | None = None,
    embedding: bool = False,
) -> LoadConfig:
    """How to load a model for these options (num_ctx capped at the trained context)."""
    num_ctx = max(4, _int(options, "num_ctx", 4096))
    if trained_context:
        num_ctx = min(num_ctx, trained_context)
    threads = _int(options, "num_thread", 0) or physical_cores()
    return LoadConfig(
        model_path=model_path,
        adapters=adapters,
        num_ctx=num_ctx,
        num_batch=max(1, _int(options, "num_batch", 512)),
        num_thread=threads,
        embedding=embedding,
    )


def sampling_config(
    options: Mapping[str, OptionValue],
    *,
    extra_stop: tuple[str, ...] = (),
    grammar: str | None = None,
    truncate: bool = True,
) -> SamplingConfig:
    """Sampling settings for one request."""
    stop = options.get("stop", [])
    stops = tuple(s for s in (*(stop if isinstance(stop, list) else []), *extra_stop) if s)
    return SamplingConfig(
        temperature=_float(options, "temperature", 0.8),
        top_k=_int(options, "top_k", 40),
        top_p=_float(options, "top_p", 0.9),
        min_p=_float(options, "min_p", 0.0),
        typical_p=_float(options, "typical_p", 1.0),
        repeat_penalty=_float(options, "repeat_penalty", 1.0),
        repeat_last_n=_int(options, "repeat_last_n", 64),
        presence_penalty=_float(options, "presence_penalty", 0.0),
        frequency_penalty=_float(options, "frequency_penalty", 0.0),
        seed=_int(options, "seed", -1),
        mirostat=_int(options, "mirostat", 0),
        mirostat_tau=_float(options, "mirostat_tau", 5.0),
        mirostat_eta=_float(options, "mirostat_eta", 0.1),
        num_predict=_int(options, "num_predict", -1),
        num_keep=_int(options, "num_keep", 4),
        stop=tuple(dict.fromkeys(stops)),
        grammar=grammar,
        truncate=truncate,
    )
