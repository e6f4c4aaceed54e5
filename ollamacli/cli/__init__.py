"""The `ollamacli` command line: thin commands over the service layer.

`main()` is the single place where errors become `Error: ...` lines and exit codes
(0 ok, 1 error, 2 usage, 130 interrupted).
"""

from __future__ import annotations

import sys

import typer

from ollamacli.cli import bundle as _bundle  # noqa: F401  (registers commands)
from ollamacli.cli import finetune as _finetune  # noqa: F401  (registers commands)
from ollamacli.cli import models as _models  # noqa: F401  (registers commands)
from ollamacli.cli import pull as _pull  # noqa: F401  (registers commands)
from ollamacli.cli import run as _run  # noqa: F401  (registers commands)
from ollamacli.cli import serve as _serve  # noqa: F401  (registers commands)
from ollamacli.cli.app import app
from ollamacli.cli.output import print_error
from ollamacli.errors import OllamaCliError, StoreError

__all__ = ["app", "main"]


def _version_callback(value: bool) -> None:
    if value:
        from ollamacli import __version__

        typer.echo(f"ollamacli version is {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        "-v",
        help="Show version information.",
        callback=_version_callback,
        is_eager=True,
    ),
) -> None:
    """Large language model runner."""


def optional_values(argv: list[str]) -> list[str]:
    """`--think` alone means `--think=true`, as with Ollama's flag (pflag's NoOptDefVal): a
    level must be attached (`--think=high`); a following word stays part of the prompt."""
    return ["--think=true" if arg == "--think" else arg for arg in argv]


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, translating ollamacli errors into one-line messages."""
    args = optional_values(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, standalone_mode=False)
    except OllamaCliError as exc:
        print_error(exc.message, exc.hint)
        sys.exit(1)
    except (KeyboardInterrupt, typer.Abort):
        sys.stderr.write("\n")
        sys.exit(130)
    except BrokenPipeError:
        raise
    except OSError as exc:  # the environment failed (disk, permissions), not ollamacli
        error = StoreError.from_os_error(exc, "file system error", where=str(exc.filename or ""))
        print_error(error.message, error.hint)
        sys.exit(1)
    except Exception as exc:
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()  # a usage error from the argument parser
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]  # checked just above
        raise
    sys.exit(code if isinstance(code, int) else 0)
