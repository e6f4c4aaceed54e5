"""The GGUF header reader gives what create and show need, fast and without numpy."""

from __future__ import annotations

import pytest

from ollamacli.errors import StoreError
from ollamacli.gguffile import human_number, is_gguf, read_gguf
from tests.factories import make_tiny_gguf


def test_gguf_reads_bundled_model_header(smollm2_path):
    info = read_gguf(smollm2_path)
    assert info.architecture == "llama"
    assert info.file_type == "Q4_1"
    assert human_number(info.parameter_count) == "134.52M"
    assert info.context_length == 8192
    assert info.chat_template
    assert "<|im_start|>" in info.chat_template


def test_gguf_reads_tiny_file(tmp_path):
    path = make_tiny_gguf(tmp_path / "t.gguf", arch="llama", context_length=123)
    info = read_gguf(path)
    assert info.context_length == 123
    assert info.parameter_count == 32
    assert not info.is_adapter
    assert make_tiny_gguf(tmp_path / "a.gguf", adapter=True)
    assert read_gguf(tmp_path / "a.gguf").is_adapter


def test_gguf_refuses_other_files(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf at all")
    assert not is_gguf(bad)
    with pytest.raises(StoreError, match="not a GGUF"):
        read_gguf(bad)


def test_gguf_truncated_header_is_an_error(tmp_path):
    path = make_tiny_gguf(tmp_path / "t.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:40])
    with pytest.raises(StoreError, match="truncated"):
        read_gguf(cut)


@pytest.mark.parametrize(
    ("count", "text"),
    [(134_515_008, "134.52M"), (7_000_000_000, "7B"), (3_212_749_888, "3.2B"), (999, "999")],
)
def test_human_number_matches_ollama(count, text):
    assert human_number(count) == text
