"""Generation parameters: the names Ollama accepts, their types, defaults and validation.

Shared by the Modelfile parser (`PARAMETER name value`), the REPL (`/set parameter`) and the
API (`options`). Values are checked here once, with errors that suggest the right name.
"""

from __future__ import annotations

import difflib
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ollamacli.errors import InvalidOptionError

logger = logging.getLogger(__name__)

ParamType = Literal["int", "float", "bool", "strings"]
OptionValue = int | float | bool | list[str]

_TYPE_WORDS: dict[ParamType, str] = {
    "int": "integer",
    "float": "float32",
    "bool": "boolean",
    "strings": "array",
}

# Go's int64 range: a float outside it has no integer value to truncate to.
_INT64_LIMIT = float(1 << 63)


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter: its type, Ollama's default, and whether llama.cpp can honour it."""

    type: ParamType
    default: OptionValue | None
    honoured: bool = True
    description: str = ""


# Ollama's names and defaults (api/types.go DefaultOptions). Parameters marked honoured=False are
# accepted for compatibility but have no effect on llama.cpp here.
PARAMETERS: dict[str, ParamSpec] = {
    "num_ctx": ParamSpec("int", 4096, description="context window size in tokens"),
    "num_batch": ParamSpec("int", 512, description="prompt processing batch size"),
    "num_thread": ParamSpec("int", 0, description="CPU threads (0 = physical cores)"),
    "num_keep": ParamSpec("int", 4, description="tokens kept when the context shifts"),
    "seed": ParamSpec("int", -1, description="random seed (-1 = random)"),
    "num_predict": ParamSpec("int", -1, description="max tokens to generate (-1 = no limit)"),
    "top_k": ParamSpec("int", 40, description="sample from the k most likely tokens"),
    "top_p": ParamSpec("float", 0.9, description="nucleus sampling threshold"),
    "min_p": ParamSpec("float", 0.0, description="minimum probability relative to the top token"),
    "typical_p": ParamSpec("float", 1.0, description="locally typical sampling"),
    "repeat_last_n": ParamSpec("int", 64, description="window for the repeat penalty"),
    "temperature": ParamSpec("float", 0.8, description="higher is more creative"),
    "repeat_penalty": ParamSpec("float", 1.0, description="penalty for repeated tokens"),
    "presence_penalty": ParamSpec("float", 0.0, description="penalty for any seen token"),
    "frequency_penalty": ParamSpec("float", 0.0, description="penalty by token frequency"),
    "mirostat": ParamSpec("int", 0, description="mirostat sampling (0 off, 1, 2)"),
    "mirostat_tau": ParamSpec("float", 5.0, description="mirostat target entropy"),
    "mirostat_eta": ParamSpec("float", 0.1, description="mirostat learning rate"),
    "stop": ParamSpec("strings", None, description="stop sequence (repeatable)"),
    "tfs_z": ParamSpec("float", 1.0, honoured=False),
    "num_gpu": ParamSpec("int", -1, honoured=False),
    "main_gpu": ParamSpec("int", 0, honoured=False),
    "use_mmap": ParamSpec("bool", True, honoured=False),
    "use_mlock": ParamSpec("bool", False, honoured=False),
    "numa": ParamSpec("bool", False, honoured=False),
    "low_vram": ParamSpec("bool", False, honoured=False),
    "f16_kv": ParamSpec("bool", True, honoured=False),
    "logits_all": ParamSpec("bool", False, honoured=False),
    "vocab_only": ParamSpec("bool", False, honoured=False),
    "penalize_newline": ParamSpec("bool", False, honoured=False),
    "embedding_only": ParamSpec("bool", False, honoured=False),
}

# Options that change how a model is loaded (a change means a reload), not how it samples.
LOAD_OPTIONS = frozenset({"num_ctx", "num_batch", "num_thread", "num_gpu", "main_gpu", "use_mmap"})


def suggest(name: str) -> str | None:
    """The closest known parameter name, for "did you mean" hints."""
    matches = difflib.get_close_matches(name, PARAMETERS, n=1, cutoff=0.6)
    return matches[0] if matches else None


def spec_for(name: str) -> ParamSpec:
    """The spec of a parameter; raises `InvalidOptionError` (with a suggestion) if unknown."""
    spec = PARAMETERS.get(name)
    if spec is None:
        close = suggest(name)
        hint = f'did you mean "{close}"?' if close else "see 'ollamacli show --help' for names"
        message = f'unknown parameter "{name}"' + (f' (did you mean "{close}"?)' if close else "")
        raise InvalidOptionError(message, option=name, hint=None if close else hint)
    return spec


def parse_value(name: str, text: str) -> OptionValue:
    """Parse a parameter written as text (Modelfile, `/set parameter`)."""
    spec = spec_for(name)
    if spec.type == "strings":
        return [text]
    text = text.strip()
    if spec.type == "bool":
        lowered = text.lower()
        if lowered in ("1", "t", "true"):
            return True
        if lowered in ("0", "f", "false"):
            return False
        raise InvalidOptionError(f"invalid bool value [{text}] for {name}", option=name)
    if spec.type == "int":
        try:
            return int(text, 10)
        except ValueError:
            raise InvalidOptionError(
                f"invalid int value [{text}] for {name}",
                option=name,
                hint=f"{name} takes a whole number",
            ) from None
    try:
        number = float(text)
    except ValueError:
        raise InvalidOptionError(
            f"invalid float value [{text}] for {name}", option=name, hint=f"{name} takes a number"
        ) from None
    if not math.isfinite(number):
        raise InvalidOptionError(f"invalid float value [{text}] for {name}", option=name)
    return number


def coerce_value(name: str, value: object) -> OptionValue:
    """Check a JSON option value (API `options`, params layer) against the parameter's type.

    Numbers convert as Ollama's `Options.FromMap` converts them (api/types.go): JSON has one
    number type, so an integer option takes `5.0` (or `5.7`, truncated toward zero, as Go's
    `int64(f)` does) and a float option takes `1`. Booleans and strings never become numbers.
    """
    spec = spec_for(name)
    wrong = InvalidOptionError(
        f'option "{name}" must be of type {_TYPE_WORDS[spec.type]}', option=name
    )
    if spec.type == "strings":
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise wrong
    if spec.type == "bool":
        if isinstance(value, bool):
            return value
        raise wrong
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise wrong
    number = _number(spec.type, value)
    if number is None:
        raise wrong
    return number


def _number(kind: ParamType, value: float) -> int | float | None:
    """A JSON number as an integer or float option; None when it has no such value."""
    if kind == "float":
        return float(value) if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if not math.isfinite(value) or abs(value) >= _INT64_LIMIT:
        return None
    return math.trunc(value)


def validate_options(options: Mapping[str, object]) -> dict[str, OptionValue]:
    """Validate a whole options mapping strictly: unknown names and nulls are errors."""
    return {name: coerce_value(name, value) for name, value in options.items()}


_warned_names: set[str] = set()
_warned_lock = threading.Lock()


def options_from_json(options: Mapping[str, object]) -> dict[str, OptionValue]:
    """Options sent as JSON (API `options`, a stored params layer), read as Ollama reads them.

    Ollama's `Options.FromMap` skips `null` values (clients such as LlamaIndex send every
    option they know, unset ones as `null`) and logs and ignores names it does not know; only
    a value of the wrong type is an error. Each unknown name is logged once per process.
    """
    checked: dict[str, OptionValue] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name not in PARAMETERS:
            _warn_unknown(name)
            continue
        checked[name] = coerce_value(name, value)
    return checked


def _warn_unknown(name: str) -> None:
    with _warned_lock:
        if name in _warned_names:
            return
        _warned_names.add(name)
    close = suggest(name)
    hint = f' (did you mean "{close}"?)' if close else ""
    logger.warning('ignoring unknown option "%s"%s', name, hint)


def merge_options(*layers: Mapping[str, OptionValue]) -> dict[str, OptionValue]:
    """Merge option layers, later ones winning (default < Modelfile < session < request)."""
    merged: dict[str, OptionValue] = {}
    for layer in layers:
        merged.update(layer)
    return merged


def defaults() -> dict[str, OptionValue]:
    """Ollama's defaults for every honoured parameter that has one."""
    return {
        name: spec.default
        for name, spec in PARAMETERS.items()
        if spec.honoured and spec.default is not None
    }


def format_value(value: OptionValue) -> str:
    """A value as a Modelfile or `/show parameters` writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)
