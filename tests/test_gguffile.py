"""The GGUF header reader gives what create and show need, fast and without numpy."""

from __future__ import annotations

import os
import re
import struct
import time

import pytest
from gguf import GGML_QUANT_SIZES, GGUFWriter

from ollamacli.errors import InvalidGGUFError, StoreError
from ollamacli.gguffile import (
    GGML_TYPES,
    ArraySummary,
    check_gguf,
    human_number,
    is_gguf,
    read_gguf,
)
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


# -- hostile files ---------------------------------------------------------------------------
# Raw GGUF bytes, built by hand so that they can say what no writer would.


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _raw_gguf(kv: bytes, n_kv: int, tensors: bytes = b"", n_tensors: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + kv + tensors


def _nested_arrays(depth: int) -> bytes:
    """A value of type array whose items are arrays, `depth` levels deep."""
    return _string("evil") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * depth


def test_gguf_checker_matches_gguf_py_block_sizes():
    assert {int(k): v for k, v in GGML_QUANT_SIZES.items()} == GGML_TYPES


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_raw_gguf(_nested_arrays(100_000), 1), "arrays of arrays are not supported"),
        (_raw_gguf(_string("k") + struct.pack("<IIQ", 9, 4, 1 << 62), 1), "exceeds the limit"),
        (_raw_gguf(_string("k") + struct.pack("<IIQ", 9, 8, 1 << 20), 1), "past the end"),
        (_raw_gguf(_string("k") + struct.pack("<IQ", 8, 1 << 40), 1), "is too long"),
        (_raw_gguf(b"", 1 << 60), "key-value pairs"),
        (_raw_gguf(b"", 0, n_tensors=1 << 60), "tensors (the file cannot hold them)"),
        (
            _raw_gguf(_string("k") + struct.pack("<II", 4, 1) + _string("second")[:10], 2),
            "truncated GGUF file: key 1 runs past the end",
        ),
        (_raw_gguf((_string("k") + struct.pack("<II", 4, 1)) * 2, 2), "duplicate key 'k'"),
        (_raw_gguf(_string("k") + struct.pack("<I", 77) + b"\0" * 8, 1), "unknown value type 77"),
        (b"GGUF" + struct.pack("<IQQ", 7, 0, 0), "unsupported GGUF version 7"),
    ],
    ids=[
        "nested-arrays",
        "huge-array",
        "array-past-end",
        "huge-string",
        "kv-count",
        "tensor-count",
        "truncated-kv",
        "duplicate-key",
        "bad-type",
        "version",
    ],
)
def test_gguf_hostile_headers_are_refused_quickly_and_named(tmp_path, data, problem):
    path = tmp_path / "evil.gguf"
    path.write_bytes(data)
    started = time.monotonic()
    with pytest.raises(InvalidGGUFError, match=re.escape(problem)):
        read_gguf(path)
    assert time.monotonic() - started < 1.0


def _tensor(name: str, dims: tuple[int, ...], ggml_type: int = 0, offset: int = 0) -> bytes:
    return (
        _string(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", ggml_type, offset)
    )


@pytest.mark.parametrize(
    ("tensor", "problem"),
    [
        (_tensor("t", (1, 1, 1, 1, 1)), "5 dimensions"),
        (_tensor("t", (8,), ggml_type=99), "unknown tensor type 99"),
        (_tensor("t", (1 << 40, 1 << 40)), "is too large"),
        (_tensor("t", (33,), ggml_type=2), "not a multiple of the block size 32"),
        (_tensor("t", (8,), offset=3), "not aligned to 32"),
        (_tensor("x" * 70, (8,)), "name longer than 63 bytes"),
        (_tensor("t", (8,)) + _tensor("t", (8,)), "duplicate tensor 't'"),
    ],
    ids=["dims", "type", "overflow", "block", "alignment", "name", "duplicate"],
)
def test_gguf_bad_tensor_tables_are_refused(tmp_path, tensor, problem):
    path = tmp_path / "evil.gguf"
    n_tensors = 2 if "duplicate" in problem else 1
    path.write_bytes(_raw_gguf(b"", 0, tensor, n_tensors) + b"\0" * 4096)
    with pytest.raises(InvalidGGUFError, match=re.escape(problem)):
        read_gguf(path)


def test_gguf_truncated_data_is_caught_by_the_data_size_check(tmp_path):
    whole = make_tiny_gguf(tmp_path / "t.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:-16])  # the header is intact, the last tensor's bytes are not
    with pytest.raises(InvalidGGUFError, match="truncated GGUF file: the data of tensor"):
        check_gguf(cut)
    assert read_gguf(cut, with_tensors=False).architecture == "llama"  # header-only still reads


def test_gguf_without_tensors_fails_the_check(tmp_path):
    path = tmp_path / "empty.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert read_gguf(path).tensors == ()
    with pytest.raises(InvalidGGUFError, match="has no tensors"):
        check_gguf(path, source="empty")


def test_gguf_long_string_arrays_are_skipped_fast(tmp_path):
    count = 1_000_000
    kv = _string("tokens") + struct.pack("<IIQ", 9, 8, count) + struct.pack("<Q", 0) * count
    path = tmp_path / "vocab.gguf"
    path.write_bytes(_raw_gguf(kv, 1))
    started = time.monotonic()
    tokens = read_gguf(path).metadata["tokens"]
    assert time.monotonic() - started < 5.0
    assert isinstance(tokens, ArraySummary)
    assert tokens.length == count
    assert tokens.first == ("",) * 5


def test_gguf_reader_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    assert not is_gguf(fifo)
    with pytest.raises(InvalidGGUFError, match="is not a regular file"):
        read_gguf(fifo)


def test_gguf_check_accepts_the_bundled_model(smollm2_path):
    info = check_gguf(smollm2_path)
    assert len(info.tensors) == info.tensor_count > 0
