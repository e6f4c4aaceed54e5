"""The REPL's `/show` topics, printed as Ollama's interactive mode prints them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TextIO

from ollamacli.parameters import OptionValue, format_value
from ollamacli.service.show import ModelInfo


def _go_plain(value: OptionValue) -> str:
    """A value as Go's `%v` prints it: lists in brackets, floats without a trailing `.0`."""
    if isinstance(value, list):
        return "[" + " ".join(value) + "]"
    return format_value(value)


@dataclass(frozen=True, slots=True)
class ShowContext:
    """The model's description plus what the session changed, and where to print."""

    info: ModelInfo
    system: str | None
    parameters: Mapping[str, OptionValue]
    out: TextIO
    err: TextIO


def _info(ctx: ShowContext) -> None:
    from ollamacli.cli.showing import print_info

    print_info(ctx.info, out=ctx.err)


def _license(ctx: ShowContext) -> None:
    ctx.out.write((ctx.info.license or "No license was specified for this model.") + "\n")


def _modelfile(ctx: ShowContext) -> None:
    """The Modelfile with the session's system message and parameters applied (as Ollama's)."""
    modelfile = replace(
        ctx.info.modelfile,
        system=ctx.system if ctx.system is not None else ctx.info.modelfile.system,
        parameters={**ctx.info.modelfile.parameters, **ctx.parameters},
    )
    ctx.out.write(replace(ctx.info, modelfile=modelfile).modelfile_text() + "\n")


def _parameters(ctx: ShowContext) -> None:
    from ollamacli.cli.showing import parameter_lines

    out = ctx.out
    out.write("Model defined parameters:\n")
    lines = [f"  {name:<30} {value}\n" for name, value in parameter_lines(ctx.info.parameters)]
    out.write("".join(lines) or "  No additional parameters were specified for this model.\n")
    out.write("\n")
    if ctx.parameters:
        out.write("User defined parameters:\n")
        for name, value in ctx.parameters.items():
            out.write(f"  {name:<30} {_go_plain(value)}\n")
        out.write("\n")


def _system(ctx: ShowContext) -> None:
    text = ctx.system or ctx.info.system
    ctx.out.write(f"{text}\n\n" if text else "No system message was specified for this model.\n")


def _template(ctx: ShowContext) -> None:
    ctx.out.write((ctx.info.template or "No prompt template was specified for this model.") + "\n")


TOPICS: dict[str, Callable[[ShowContext], None]] = {
    "info": _info,
    "license": _license,
    "modelfile": _modelfile,
    "parameters": _parameters,
    "system": _system,
    "template": _template,
}
