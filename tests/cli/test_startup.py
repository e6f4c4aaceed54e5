"""`--help` and `list` stay light: they never import the engine, the web stack or the ML stack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "llama_cpp",
    "torch",
    "transformers",
    "peft",
    "numpy",
    "jinja2",
    "fastapi",
    "uvicorn",
    "pydantic",
    "huggingface_hub",
    "prompt_toolkit",
    "prometheus_client",
    "ray",
)

PROBE = """
import json, sys
{preload}
from ollamacli.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = {heavy!r}
loaded = sorted(name for name in heavy if name in sys.modules)
sys.stderr.write("LOADED=" + json.dumps(loaded) + "\\n")
"""


def _loaded_after(*args: str, preload: str = "") -> tuple[list[str], str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY, preload=preload), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    marker = [line for line in result.stderr.splitlines() if line.startswith("LOADED=")]
    assert marker, result.stderr
    return json.loads(marker[-1].removeprefix("LOADED=")), result.stdout


@pytest.mark.parametrize(
    "args", [("--help",), ("list",), ("run", "--help")], ids=["help", "list", "run-help"]
)
def test_light_commands_import_nothing_heavy(args):
    loaded, out = _loaded_after(*args)
    assert out  # the command really ran
    assert loaded == []


def test_the_probe_sees_heavy_imports():
    # Guards against a check that cannot fail.
    loaded, _ = _loaded_after("--help", preload="import jinja2")
    assert loaded == ["jinja2"]
