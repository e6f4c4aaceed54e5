"""Option values from JSON, read as Ollama's `Options.FromMap` reads them (api/types.go)."""

from __future__ import annotations

import logging

import pytest

from ollamacli import parameters
from ollamacli.errors import InvalidOptionError
from ollamacli.parameters import options_from_json, validate_options


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees unknown names as never warned about before."""
    monkeypatch.setattr(parameters, "_warned_names", set())


def test_null_values_are_not_set() -> None:
    sent = {"temperature": None, "num_predict": None, "stop": None, "top_k": 3}
    assert options_from_json(sent) == {"top_k": 3}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("num_predict", 5.0, 5),
        ("num_predict", 5.7, 5),
        ("seed", -2.9, -2),
        ("top_k", 40, 40),
        ("temperature", 1, 1.0),
        ("temperature", 0, 0.0),
        ("top_p", 0.5, 0.5),
        ("stop", ["a", "b"], ["a", "b"]),
        ("stop", "a", ["a"]),
        ("use_mmap", False, False),
    ],
    ids=[
        "int-from-whole-float",
        "int-truncates-like-go",
        "negative-truncates-toward-zero",
        "int",
        "float-from-int",
        "float-from-zero",
        "float",
        "stop-list",
        "stop-string",
        "bool",
    ],
)
def test_numbers_convert_as_ollama_converts_them(
    name: str, value: object, expected: object
) -> None:
    converted = options_from_json({name: value})[name]
    assert converted == expected
    assert type(converted) is type(expected)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("temperature", "0.5", 'option "temperature" must be of type float32'),
        ("temperature", True, 'option "temperature" must be of type float32'),
        ("top_k", "many", 'option "top_k" must be of type integer'),
        ("top_k", False, 'option "top_k" must be of type integer'),
        ("top_k", 1e300, 'option "top_k" must be of type integer'),
        ("use_mmap", 1, 'option "use_mmap" must be of type boolean'),
        ("stop", [1], 'option "stop" must be of type array'),
        ("stop", {"a": 1}, 'option "stop" must be of type array'),
    ],
    ids=[
        "float-from-string",
        "float-from-bool",
        "int-from-string",
        "int-from-bool",
        "int-out-of-range",
        "bool-from-number",
        "stop-of-numbers",
        "stop-object",
    ],
)
def test_wrong_types_are_still_refused(name: str, value: object, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        options_from_json({name: value})


def test_unknown_names_are_ignored_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ollamacli.parameters")
    assert options_from_json({"temprature": 0.1, "tfs": 1, "top_k": 2}) == {"top_k": 2}
    assert options_from_json({"temprature": 0.3}) == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        'ignoring unknown option "temprature" (did you mean "temperature"?)',
        'ignoring unknown option "tfs" (did you mean "tfs_z"?)',
    ]


def test_strict_validation_still_refuses_unknown_names() -> None:
    with pytest.raises(InvalidOptionError, match='unknown parameter "temprature"'):
        validate_options({"temprature": 1})
