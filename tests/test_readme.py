"""The README stays honest: its commands, parameters, variables and examples match the code."""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import pytest
import typer.main

from ollamacli.cli import app
from ollamacli.parameters import PARAMETERS, OptionValue, ParamType

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

_TYPE_WORDS: dict[ParamType, str] = {
    "int": "int",
    "float": "float",
    "bool": "bool",
    "strings": "string, repeatable",
}


def section(title: str) -> str:
    """The text of one `## title` section, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def code_blocks(text: str, language: str = "") -> list[str]:
    """Fenced code blocks (optionally of one language), dedented."""
    fence = re.compile(r"^([ \t]*)```(\w*)\n(.*?)^\1```[ \t]*$", re.M | re.S)
    return [
        textwrap.dedent(m.group(3)).strip("\n")
        for m in fence.finditer(text)
        if not language or m.group(2) == language
    ]


def table_names(text: str) -> list[str]:
    """The backticked first cell of every table row."""
    return re.findall(r"^\| `([^`]+)`", text, re.M)


def test_quick_start_has_exactly_two_commands():
    quick = section("Quick start")
    blocks = code_blocks(quick)
    assert len(blocks) == 2, blocks
    install, check = blocks
    assert install == 'sh install.sh && ollamacli run smollm2:135m "Why is the sky blue?"'
    assert check == "scripts/check"


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    execs = re.findall(r"^exec (.+)$", ci, re.M)
    assert execs == [code_blocks(section("Quick start"))[1]]


def test_commands_overview_matches_the_cli():
    overview = section("Commands overview")
    rows = re.findall(
        r"^\| `([a-z]+)`(?: \(`([a-z]+)`\))? \|.*\| `ollamacli ([a-z]+)", overview, re.M
    )
    documented = {name for row in rows for name in row[:2] if name}
    registered = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]  # a Typer group
    assert documented == registered
    for command, _alias, example in rows:
        assert example == command, f"the example for {command} runs {example}"


def _default(value: OptionValue | None) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


@pytest.mark.parametrize("name", [n for n, s in PARAMETERS.items() if s.honoured])
def test_parameter_table_row(name):
    spec = PARAMETERS[name]
    row = f"| `{name}` | {_TYPE_WORDS[spec.type]} | {_default(spec.default)} | {spec.description} |"
    assert row in section("Modelfile reference").splitlines()


def test_parameter_table_lists_exactly_the_honoured_parameters():
    reference = section("Modelfile reference")
    honoured = [n for n, s in PARAMETERS.items() if s.honoured]
    assert [n for n in table_names(reference) if n in PARAMETERS] == honoured
    for name, spec in PARAMETERS.items():
        if not spec.honoured:
            assert f"`{name}`" in reference


def test_modelfile_reference_shows_examples_modelfile():
    example = (REPO / "examples" / "Modelfile").read_text().strip("\n")
    assert example in code_blocks(section("Modelfile reference"))


def test_environment_variables_match_config():
    source = (REPO / "ollamacli" / "config.py").read_text()
    read = set(re.findall(r'get\("([A-Z_]+)"\)', source)) - {"VISUAL", "EDITOR"}
    documented = set(table_names(section("Environment variables")))
    assert documented == read


def test_installer_options_and_variables_are_documented():
    usage = subprocess.run(
        ["sh", str(REPO / "install.sh"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    installation = section("Installation")
    options = set(re.findall(r"^ +(--[a-z-]+)", usage, re.M)) - {"--help"}
    variables = set(re.findall(r"^ +(OLLAMACLI_[A-Z_]+)", usage, re.M))
    assert options
    assert variables
    assert options | variables == set(table_names(installation))


def test_internal_links_point_at_headings():
    slugs = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", README, re.M)
    }
    for anchor in re.findall(r"\]\(#([^)]+)\)", README):
        assert anchor in slugs


def test_the_client_library_table_names_only_installed_libraries():
    """Every library in the compatibility table is a test dependency (dev extra or npm)."""
    table = section("Serving the API").split("**Client libraries.**")[1].split("\n\n")[1]
    cells = re.findall(r"^\| (`[^|]+) \|", table, re.M)
    names = [name for cell in cells for name in re.findall(r"`([a-z-]+)`", cell)]
    pyproject = (REPO / "pyproject.toml").read_text()
    node = (REPO / "tests" / "node" / "package.json").read_text()
    assert len(cells) == 6
    for name in names:
        assert f'"{name}>=' in pyproject or f'"{name}": ' in node, name
