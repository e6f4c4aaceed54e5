"""`ollamacli run --format`: json, a schema, or a schema file, each turned into a grammar."""

from __future__ import annotations

import io
import json
import sys

import pytest

from ollamacli.service import build_services
from tests.cli.chat_helpers import make_model
from tests.cli.test_run import _use_engine

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


@pytest.fixture
def fake_cli(monkeypatch, fake_factory, settings, tmp_path):
    _use_engine(monkeypatch, fake_factory)
    make_model(build_services(settings, fake_factory), tmp_path)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    return fake_factory


@pytest.mark.parametrize("how", ["file", "inline"])
def test_a_schema_becomes_the_grammar(cli, fake_cli, tmp_path, how):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA))
    value = str(path) if how == "file" else json.dumps(SCHEMA)
    fake_cli.enqueue('{"ok": true}')
    result = cli("run", "tiny", "Answer.", "--format", value)
    assert result.code == 0, result
    assert result.out == '{"ok": true}\n\n'
    grammar = fake_cli.loaded[0].samplings[-1].grammar
    assert grammar is not None
    assert '\\"ok\\"' in grammar


def test_format_json_is_the_json_grammar(cli, fake_cli):
    fake_cli.enqueue("{}")
    assert cli("run", "tiny", "x", "--format", "json").code == 0
    grammar = fake_cli.loaded[0].samplings[-1].grammar
    assert grammar is not None
    assert "object" in grammar


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Error: invalid format '{path}': not json, a JSON schema or a readable schema file"),
        ("[1, 2]", "Error: invalid format '{path}': not a JSON schema object"),
        (
            '{"type": "integer", "minimum": 1}',
            'Error: format: JSON schema keyword "minimum" is not supported',
        ),
    ],
    ids=["missing-file", "not-an-object", "unenforceable"],
)
def test_bad_schema_files_are_one_line_errors(cli, fake_cli, tmp_path, content, message):
    path = tmp_path / "schema.json"
    if content is not None:
        path.write_text(content)
    result = cli("run", "tiny", "x", "--format", str(path))
    assert result.code == 1
    assert result.out == ""
    assert result.err.splitlines()[0] == message.format(path=path)
    assert all(not engine.samplings for engine in fake_cli.loaded)
