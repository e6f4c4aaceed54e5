"""`run MODEL [PROMPT...]`: answer once (prompt, piped stdin or piped stdout) or open the REPL.

Non-interactive runs keep stdout for the answer alone, so `echo "..." | ollamacli run m` and
`ollamacli run m "Summarise:" < file.txt` compose in shell pipelines; progress and `--verbose`
statistics go to stderr. Ctrl-C stops the answer and exits with 130.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ollamacli.cli import wiring
from ollamacli.cli.answer import FormatSpec, RunOptions
from ollamacli.cli.app import app
from ollamacli.errors import InvalidRequestError

if TYPE_CHECKING:
    from ollamacli.engine.thinking import ThinkValue
    from ollamacli.service import Services

# Ollama appends these to `run --help`; `\b` stops the help formatter from rewrapping them.
RUN_HELP_EPILOG = (
    "\b\nEnvironment Variables:\n"
    "      OLLAMA_EDITOR                 Path to editor for interactive prompt editing (Ctrl+G)\n"
    "      OLLAMA_NOHISTORY              Do not preserve readline history"
)


def parse_format(value: str) -> FormatSpec:
    """`--format`: empty for none, `json`, a JSON schema object, or a file holding one."""
    import json

    if not value:
        return None
    if value == "json":
        return "json"
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = Path(value).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidRequestError(
                f"invalid format {value!r}: not json, a JSON schema or a readable schema file",
                hint="use --format json, --format schema.json or --format '{\"type\": ...}'",
            ) from exc
    try:
        schema = json.loads(text)
    except json.JSONDecodeError:
        schema = None
    if not isinstance(schema, dict):
        raise InvalidRequestError(
            f"invalid format {value!r}: not a JSON schema object",
            hint="use --format json, or a JSON schema object",
        )
    return schema


def parse_think(value: str | None) -> ThinkValue:
    """`--think[=level]`: true, false or a level (None when the flag is absent)."""
    if value is None:
        return None
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    if value in ("low", "medium", "high", "max"):
        return value
    raise typer.BadParameter(
        f"invalid value for --think: {value!r} (must be true, false, high, medium, low, or max)"
    )


def _read_stdin() -> str:
    return sys.stdin.buffer.read().decode("utf-8", errors="replace")


def _ensure_model(services: Services, model: str, *, insecure: bool) -> None:
    """Pull (or import a bundled) model that is not in the store yet, showing progress."""
    from ollamacli.cli.output import progress_display
    from ollamacli.names import ModelName

    name = ModelName.parse(model)
    if services.store.manifests.exists(name):
        return
    models = services.models
    if insecure:
        from ollamacli.service.models import ModelService

        fetcher = wiring.pull_service(services.settings).fetcher(insecure=True)
        models = ModelService(services.store, fetcher=fetcher, prune=services.models.prune)
    with progress_display() as progress:
        models.ensure(name, progress)


def _answer_once(services: Services, model: str, prompt: str, options: RunOptions) -> None:
    """Stream one answer to stdout; statistics to stderr."""
    from ollamacli.cli.answer import (
        ThinkingView,
        interrupt_cancels,
        stream_answer,
        streaming_writer,
        terminal_width,
    )
    from ollamacli.cli.spinner import Spinner
    from ollamacli.cli.wordwrap import WordWrapper
    from ollamacli.engine.base import CancelToken
    from ollamacli.service.chat import GenerateRequest

    request = GenerateRequest(
        model=model,
        prompt=prompt,
        format=options.format,
        keep_alive=options.keep_alive,
        think=options.think,
    )
    on_terminal = sys.stdout.isatty()
    wrap = options.wordwrap and on_terminal
    wrapper = WordWrapper(streaming_writer(sys.stdout), terminal_width(), enabled=wrap)
    # The trace reaches a pipe only when --think asked for it (scripts read the answer).
    hidden = options.hide_thinking or (not on_terminal and not options.think)
    view = ThinkingView(plain=not on_terminal, hidden=hidden)
    token = CancelToken()
    with interrupt_cancels(token), Spinner(sys.stderr) as spinner:
        events = services.chat.generate(request, token)
        answer = stream_answer(events, wrapper, token, spinner, view)
    if answer.cancelled:
        sys.stdout.write("\n" if wrapper.started else "")
        sys.stdout.flush()
        raise typer.Exit(130)
    if prompt:
        sys.stdout.write("\n\n")
        sys.stdout.flush()
    if options.verbose and answer.done is not None:
        from ollamacli.cli.stats import format_stats

        sys.stderr.write(format_stats(answer.done))


def _silence_stdout() -> None:
    """After the reader of our stdout went away, point stdout at /dev/null (quiet exit)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


@app.command(epilog=RUN_HELP_EPILOG)
def run(
    model: str = typer.Argument(..., metavar="MODEL", help="Model to run."),
    prompt: list[str] | None = typer.Argument(
        None, metavar="[PROMPT]...", help="Prompt; omit it to chat."
    ),
    format: str = typer.Option(
        "", "--format", help="Response format (json, or a JSON schema or schema file)."
    ),
    verbose: bool = typer.Option(False, "--verbose", help="Show timings for response."),
    nowordwrap: bool = typer.Option(
        False, "--nowordwrap", help="Don't wrap words to the next line automatically."
    ),
    keepalive: str | None = typer.Option(
        None, "--keepalive", help="Duration to keep a model loaded (e.g. 5m)."
    ),
    insecure: bool = typer.Option(False, "--insecure", help="Use an insecure registry."),
    think: str | None = typer.Option(
        None,
        "--think",
        metavar="[=LEVEL]",
        help="Enable thinking mode: true/false or high/medium/low for supported models.",
    ),
    hidethinking: bool = typer.Option(
        False, "--hidethinking", help="Hide thinking output (if provided)."
    ),
) -> None:
    """Run a model."""
    from ollamacli.config import parse_duration

    words = list(prompt or [])
    interactive = not words and sys.stdout.isatty()
    if not sys.stdin.isatty():
        interactive = False
        piped = _read_stdin()
        if piped:
            words.insert(0, piped)
    options = RunOptions(
        format=parse_format(format),
        verbose=verbose,
        wordwrap=not nowordwrap,
        keep_alive=parse_duration(keepalive) if keepalive else None,
        think=parse_think(think),
        hide_thinking=hidethinking,
    )
    services = wiring.services()
    _ensure_model(services, model, insecure=insecure)
    if interactive:
        from ollamacli.cli.repl import run_repl

        run_repl(services, model, options)
        return
    try:
        _answer_once(services, model, " ".join(words), options)
    except BrokenPipeError:
        _silence_stdout()
