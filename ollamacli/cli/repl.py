"""The interactive prompt: prompt-toolkit reads lines and hands them to a `ChatSession`.

Prompt `>>> `, continuation `... `, placeholder `Send a message (/? for help)`, emacs keys as
Ollama's readline has them (plus Ctrl-G for $OLLAMA_EDITOR and Tab as eight spaces), history in
`Settings.history_path` (last 100 entries; not saved with OLLAMA_NOHISTORY or `/set nohistory`).
Ctrl-C on an empty line hints how to leave; Ctrl-D on an empty line leaves.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.application import get_app, run_in_terminal
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.styles import Style

from ollamacli.cli.session import ChatSession

if TYPE_CHECKING:
    from prompt_toolkit.input import Input
    from prompt_toolkit.output import Output

    from ollamacli.cli.answer import RunOptions
    from ollamacli.service import Services

HISTORY_LIMIT = 100
PROMPT, ALT_PROMPT = ">>> ", "... "
PLACEHOLDER, ALT_PLACEHOLDER = "Send a message (/? for help)", "Press Enter to send"
EXIT_HINT = "Use Ctrl + d or /bye to exit.\n"
_STYLE = Style.from_dict({"placeholder": "#8a8a8a"})


class SessionHistory(FileHistory):
    """A history file that can stop saving, and loads only the last 100 entries."""

    def __init__(self, path: Path, *, enabled: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(str(path))
        self.enabled = enabled

    def set_enabled(self, enabled: bool) -> None:
        """`/set history` and `/set nohistory`."""
        self.enabled = enabled

    def load_history_strings(self) -> Iterable[str]:
        return itertools.islice(super().load_history_strings(), HISTORY_LIMIT)

    def store_string(self, string: str) -> None:
        if self.enabled:
            super().store_string(string)


class LineInterrupt(KeyboardInterrupt):
    """Ctrl-C at the prompt, carrying what had been typed."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _edit_in_editor(editor: str, text: str) -> str | None:
    """Compose in an external editor (Ctrl-G); None when it failed or left nothing."""
    with tempfile.TemporaryDirectory(prefix="ollamacli-") as folder:
        path = Path(folder) / "prompt.txt"
        path.write_text(text, encoding="utf-8")
        try:
            subprocess.run([*editor.split(), str(path)], check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            sys.stderr.write(f"error: {exc}\n")
            return None
        content = path.read_text(encoding="utf-8").rstrip("\n")
    return content if content.strip() else None


def key_bindings(editor: str | None) -> KeyBindings:
    """Ctrl-C that reports the typed text, Tab as eight spaces, Ctrl-G to open the editor."""
    bindings = KeyBindings()

    @bindings.add("c-c")
    def _interrupt(event: KeyPressEvent) -> None:
        event.app.exit(exception=LineInterrupt(event.current_buffer.text), style="class:aborting")

    @bindings.add("tab")
    def _tab(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text(" " * 8)

    @bindings.add("c-g")
    def _editor(event: KeyPressEvent) -> None:
        if editor is None:
            return
        buffer = event.current_buffer

        def edit() -> None:
            content = _edit_in_editor(editor, buffer.text)
            if content is not None:
                buffer.text = content
                buffer.cursor_position = len(content)

        run_in_terminal(edit)

    return bindings


def _placeholder(text: str) -> Callable[[], FormattedText]:
    """Grey hint text shown on an empty line, and left out of the line once it is entered."""

    def render() -> FormattedText:
        return FormattedText([] if get_app().is_done else [("class:placeholder", text)])

    return render


def read_loop(prompt: PromptSession[str], session: ChatSession, out: TextIO) -> None:
    """Read lines until /bye or Ctrl-D, feeding each to the session."""
    while True:
        alt = session.continuing
        try:
            line = prompt.prompt(
                ALT_PROMPT if alt else PROMPT,
                placeholder=_placeholder(ALT_PLACEHOLDER if alt else PLACEHOLDER),
            )
        except LineInterrupt as interrupt:
            if not interrupt.text and not alt:
                out.write(EXIT_HINT)
                out.flush()
            session.interrupt()
            continue
        except EOFError:
            return
        if not session.feed(line):
            return


def run_repl(
    services: Services,
    model: str,
    options: RunOptions,
    *,
    input: Input | None = None,
    output: Output | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> ChatSession:
    """Load the model and chat until the user leaves; returns the finished session."""
    settings = services.settings
    history = SessionHistory(settings.history_path, enabled=not settings.nohistory)
    out, err = out or sys.stdout, err or sys.stderr
    session = ChatSession(
        services, model, options, out=out, err=err, on_history=history.set_enabled
    )
    session.start()
    prompt: PromptSession[str] = PromptSession(
        history=history,
        key_bindings=key_bindings(settings.editor),
        style=_STYLE,
        enable_suspend=True,
        input=input,
        output=output,
    )
    read_loop(prompt, session, out)
    return session
