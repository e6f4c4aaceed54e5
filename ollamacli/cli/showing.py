"""How `show` (and the REPL's `/show`) print a model: Ollama's indented info tables."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

from ollamacli.gguffile import ArraySummary, GGUFValue
from ollamacli.parameters import OptionValue
from ollamacli.service.show import ModelInfo


def _go_value(value: OptionValue | str) -> str:
    """A value as Go's %#v prints it: strings quoted, floats without a trailing .0."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parameter_lines(parameters: dict[str, OptionValue]) -> list[tuple[str, str]]:
    """(name, value) rows, one per stop string."""
    rows: list[tuple[str, str]] = []
    for name, value in parameters.items():
        values: Sequence[OptionValue | str] = value if isinstance(value, list) else [value]
        rows.extend((name, _go_value(item)) for item in values)
    return rows


def print_parameters(parameters: dict[str, OptionValue], out: TextIO | None = None) -> None:
    """`show --parameters`: `%-30s %#v` lines, as Ollama prints them."""
    out = out or sys.stdout
    for name, value in parameter_lines(parameters):
        out.write(f"{name:<30} {value}\n")


def _section(out: TextIO, title: str, rows: Sequence[Sequence[str]]) -> None:
    out.write(f"  {title}\n")
    if rows and len(rows[0]) > 1:
        width = max(len(r[0]) for r in rows)
        for row in rows:
            out.write(("    " + f"{row[0]:<{width}}    " + "    ".join(row[1:])).rstrip() + "\n")
    else:
        for row in rows:
            out.write(f"    {row[0]}\n")
    out.write("\n")


def _first_lines(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.strip()]
    rows = [[line.strip()] for line in lines[:2]]
    if len(lines) > 2:
        rows.append(["..."])
    return rows


def _abbreviate(value: GGUFValue | ArraySummary | object) -> str:
    if isinstance(value, ArraySummary):
        items = " ".join(str(v) for v in value.first)
        return f"[{items} ...+{value.length - len(value.first)} more]"
    if isinstance(value, list):
        if len(value) > 5:
            return "[" + " ".join(str(v) for v in value[:5]) + f" ...+{len(value) - 5} more]"
        return "[" + " ".join(str(v) for v in value) + "]"
    return str(value)


def print_info(info: ModelInfo, *, verbose: bool = False, out: TextIO | None = None) -> None:
    """The default `show` output: Model, Capabilities, Parameters, System, License."""
    out = out or sys.stdout
    gguf = info.gguf
    rows = [
        ["architecture", gguf.architecture],
        ["parameters", str(info.details.get("parameter_size", ""))],
        ["context length", str(gguf.context_length or "")],
        ["embedding length", str(gguf.embedding_length or "")],
        ["quantization", str(info.details.get("quantization_level", ""))],
    ]
    _section(out, "Model", [r for r in rows if r[1]])
    _section(out, "Capabilities", [[c] for c in info.capabilities])
    if info.parameters:
        _section(out, "Parameters", [list(r) for r in parameter_lines(info.parameters)])
    if info.system:
        _section(out, "System", _first_lines(info.system))
    if info.license:
        _section(out, "License", _first_lines(info.license))
    if verbose:
        _section(out, "Metadata", [[k, _abbreviate(v)] for k, v in gguf.metadata.items()])
        tensors = [[t.name, str(t.ggml_type), str(list(t.shape))] for t in gguf.tensors]
        _section(out, "Tensors", tensors)
