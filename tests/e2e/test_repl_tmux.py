"""The real `ollamacli run` REPL in a real terminal (tmux), on the real model.

Keys go in with `tmux send-keys`; what a user would see comes back with `capture-pane`.
"""

from __future__ import annotations

import re

import pytest

from ollamacli.config import Settings
from tests.e2e.terminal import Terminal, ollamacli_command

pytestmark = [pytest.mark.llama, pytest.mark.slow]

PROMPT_LINE = ">>> Send a message (/? for help)"


def _run_command(settings: Settings) -> str:
    return ollamacli_command(
        "run smollm2:135m",
        OLLAMA_MODELS=str(settings.models),
        OLLAMACLI_HOME=str(settings.data_dir),
    )


def _answer_after(terminal: Terminal, question: str) -> str:
    """Ask, wait for the next prompt, and return the answer text shown in between."""
    terminal.type_line(question)
    match = terminal.wait_for(
        re.escape(f">>> {question}\n") + r"(.*?)\n\n" + re.escape(PROMPT_LINE) + r"$"
    )
    return match.group(1)


@pytest.mark.timeout(1200)
def test_repl_in_a_real_terminal(terminal: Terminal, settings: Settings) -> None:
    terminal.start(_run_command(settings))
    terminal.wait_for(re.escape(PROMPT_LINE) + "$")  # the bundled model was imported, then loaded

    terminal.type_line("/set parameter num_predict 12")
    terminal.wait_for(r"Set parameter 'num_predict' to '12'\n" + re.escape(PROMPT_LINE))
    terminal.type_line("/set parameter temperature 0")
    terminal.wait_for(r"Set parameter 'temperature' to '0'\n" + re.escape(PROMPT_LINE))

    answer = _answer_after(terminal, "Why is the sky blue?")
    assert re.search(r"[A-Za-z]{3,}", answer), answer

    # Ctrl-C while the model writes stops that answer; the session goes on.
    terminal.type_line("/set parameter num_predict 400")
    terminal.wait_for(r"'num_predict' to '400'\n" + re.escape(PROMPT_LINE))
    terminal.type_line("Write a long story about a dragon.")
    terminal.wait_for(r">>> Write a long story about a dragon\.\n\S.{20,}")
    terminal.send("C-c")
    terminal.wait_for(r"dragon\.\n[^>]+\^C\n\n" + re.escape(PROMPT_LINE) + "$")

    terminal.type_line("/set parameter num_predict 12")
    terminal.wait_for(r"'num_predict' to '12'\n" + re.escape(PROMPT_LINE) + "$")
    again = _answer_after(terminal, "Say hello.")
    assert again.strip()

    # Ctrl-C on an empty line only hints; /bye leaves.
    terminal.send("C-c")
    terminal.wait_for(r"Use Ctrl \+ d or /bye to exit\.\n" + re.escape(PROMPT_LINE) + "$")
    terminal.type_line("/bye")
    terminal.wait_for(r">>> /bye\nEXITED=0")
    assert "+Why is the sky blue?" in settings.history_path.read_text()
