"""Settings come from the environment only through config.Settings."""

from __future__ import annotations

import math

import pytest

from ollamacli.config import DEFAULT_PROMPT_CACHE, Settings, parse_duration, parse_host
from ollamacli.errors import InvalidRequestError


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("0", 0.0),
        (30, 30.0),
        ("-1", math.inf),
        (-5, math.inf),
        ("1.5h", 5400.0),
    ],
)
def test_duration_parses_go_style(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["five", "5x", "", "m"])
def test_duration_rejects_garbage(value):
    with pytest.raises(InvalidRequestError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("127.0.0.1:11434", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("https://example.com", "https://example.com:443"),
        ("localhost:8080/prefix", "http://localhost:8080/prefix"),
        ("[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_host_parses_like_ollama(value, url):
    assert parse_host(value).url == url


def test_settings_from_env_reads_ollama_variables(tmp_path):
    env = {
        "OLLAMA_MODELS": str(tmp_path / "m"),
        "OLLAMA_HOST": "0.0.0.0:1234",
        "OLLAMA_KEEP_ALIVE": "10m",
        "OLLAMA_NOHISTORY": "1",
        "OLLAMA_MAX_QUEUE": "7",
        "HF_ENDPOINT": "http://127.0.0.1:9/",
        "OLLAMA_ORIGINS": "http://a, http://b",
    }
    s = Settings.from_env(env)
    assert s.models == tmp_path / "m"
    assert s.host.port == 1234
    assert not s.host.is_loopback
    assert s.keep_alive == 600
    assert s.nohistory
    assert s.max_queue == 7
    assert s.hf_endpoint == "http://127.0.0.1:9"
    assert s.origins == ("http://a", "http://b")


def test_settings_default_store_is_under_data_dir(tmp_path):
    s = Settings.from_env({"OLLAMACLI_HOME": str(tmp_path)})
    assert s.models == tmp_path / "models"
    assert s.host.is_loopback
    assert s.host.port == 11434


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "text"), ("text", "text"), ("JSON", "json"), ("json", "json")]
)
def test_log_format_is_text_or_json(tmp_path, value, expected):
    env = {"OLLAMACLI_HOME": str(tmp_path)}
    if value is not None:
        env["OLLAMACLI_LOG_FORMAT"] = value
    assert Settings.from_env(env).log_format == expected


def test_log_format_refuses_other_values_and_debug_log_requests_is_a_flag(tmp_path):
    env = {"OLLAMACLI_HOME": str(tmp_path)}
    with pytest.raises(InvalidRequestError, match="OLLAMACLI_LOG_FORMAT"):
        Settings.from_env({**env, "OLLAMACLI_LOG_FORMAT": "xml"})
    assert Settings.from_env({**env, "OLLAMA_DEBUG_LOG_REQUESTS": "1"}).log_requests
    assert not Settings.from_env(env).log_requests


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, DEFAULT_PROMPT_CACHE), ("256m", 256 << 20), ("0", 0), ("much", DEFAULT_PROMPT_CACHE)],
)
def test_the_prompt_cache_size_comes_from_the_environment(tmp_path, value, expected):
    env = {} if value is None else {"OLLAMACLI_PROMPT_CACHE": value}
    settings = Settings.from_env({"OLLAMACLI_HOME": str(tmp_path), **env})
    assert settings.prompt_cache == expected
    assert DEFAULT_PROMPT_CACHE == 1 << 30
