"""The Typer application object every command module registers on."""

from __future__ import annotations

import typer

HELP = (
    "Large language model runner: pull, chat with, shape, serve and fine-tune open LLMs "
    "locally.\n\nEnvironment variables: OLLAMA_HOST, OLLAMA_MODELS, OLLAMA_KEEP_ALIVE, "
    "OLLAMA_NOHISTORY, OLLAMA_DEBUG (see README)."
)

app = typer.Typer(
    name="ollamacli",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
