"""A Hypothesis strategy for small GGUF files: well-formed headers, then mutated.

The files are written byte by byte (not with the `gguf` package, which refuses to write broken
files): a header, key/value metadata of every GGUF type, tensor infos, alignment and a little
data. Mutations then lie about counts and lengths, flip bytes, or cut the file short.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.known_issues import allowed
from tests.fuzz.strategies import odd_text, templates

# GGUF value types (ggml/gguf.h).
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_FORMATS = {
    U8: "<B",
    I8: "<b",
    U16: "<H",
    I16: "<h",
    U32: "<I",
    I32: "<i",
    F32: "<f",
    BOOL: "<B",
    U64: "<Q",
    I64: "<q",
    F64: "<d",
}
KEYS = [
    "general.architecture",
    "general.name",
    "general.type",
    "general.file_type",
    "general.parameter_count",
    "general.license",
    "llama.context_length",
    "llama.embedding_length",
    "llama.block_count",
    "llama.attention.head_count",
    "tokenizer.chat_template",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.model",
    "adapter.type",
    "",
]


def string(text: str | bytes) -> bytes:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def _scalar(kind: int) -> st.SearchStrategy[bytes]:
    fmt = _FORMATS[kind]
    if kind in (F32, F64):
        values: st.SearchStrategy[Any] = st.floats(width=32 if kind == F32 else 64)
    else:
        size = struct.calcsize(fmt) * 8
        signed = fmt[1].islower()
        low, high = (-(2 ** (size - 1)), 2 ** (size - 1) - 1) if signed else (0, 2**size - 1)
        if kind == BOOL:
            low, high = 0, 255
        values = st.integers(low, high)
    return values.map(lambda v: struct.pack(fmt, v))


def _text_value() -> st.SearchStrategy[bytes]:
    return (odd_text(20) | templates() | st.sampled_from(["llama", "adapter", "lora"])).map(string)


@st.composite
def _array(draw: st.DrawFn, depth: int) -> bytes:
    nested = allowed("gguf-nested-arrays") and depth < 3
    kind = draw(st.sampled_from([*_FORMATS, STRING, *([ARRAY] if nested else [])]))
    count = draw(st.integers(0, 4))
    items = [draw(_value_of(kind, depth + 1)) for _ in range(count)]
    return struct.pack("<IQ", kind, count) + b"".join(items)


def _value_of(kind: int, depth: int = 0) -> st.SearchStrategy[bytes]:
    if kind == STRING:
        return _text_value()
    if kind == ARRAY:
        return _array(depth)
    return _scalar(kind)


@st.composite
def metadata(draw: st.DrawFn) -> list[bytes]:
    """Key/value pairs; `general.architecture` is usually there so create gets far."""
    pairs = []
    if draw(st.integers(0, 3)) < 3:
        pairs.append(string("general.architecture") + struct.pack("<I", STRING) + string("llama"))
    for _ in range(draw(st.integers(0, 5))):
        key = draw(st.sampled_from(KEYS) | odd_text(12))
        kind = draw(st.sampled_from([*_FORMATS, STRING, ARRAY]))
        pairs.append(string(key) + struct.pack("<I", kind) + draw(_value_of(kind)))
    return pairs


@st.composite
def tensor_infos(draw: st.DrawFn) -> list[bytes]:
    infos = []
    minimum = 0 if allowed("gguf-tensorless") else 1
    for index in range(draw(st.integers(minimum, 3))):
        name = draw(
            st.sampled_from(["token_embd.weight", f"blk.{index}.attn_q.weight"]) | odd_text(10)
        )
        dims = draw(st.lists(st.integers(0, 2**40) | st.integers(1, 16), max_size=5))
        ggml_type = draw(st.integers(0, 40) | st.integers(0, 2**32 - 1))
        offset = draw(st.integers(0, 64) | st.integers(0, 2**64 - 1))
        infos.append(
            string(name)
            + struct.pack("<I", len(dims))
            + b"".join(struct.pack("<Q", d) for d in dims)
            + struct.pack("<IQ", ggml_type, offset)
        )
    return infos


@st.composite
def gguf_files(draw: st.DrawFn) -> bytes:
    """A small GGUF file, well-formed or mutated."""
    pairs, tensors = draw(metadata()), draw(tensor_infos())
    version = draw(st.sampled_from([3, 3, 3, 2, 1, 0, 2**32 - 1]))
    n_tensors, n_kv = len(tensors), len(pairs)
    if draw(st.integers(0, 4)) == 4:  # lie about the counts
        n_tensors = draw(st.integers(0, 2**64 - 1))
        n_kv = draw(st.integers(0, 8) | st.integers(0, 2**64 - 1))
    magic = draw(st.sampled_from([b"GGUF", b"GGUF", b"GGUF", b"GGML", b"FUGG", b""]))
    head = magic + struct.pack("<IQQ", version, n_tensors, n_kv) + b"".join(pairs + tensors)
    data = head + b"\x00" * (-len(head) % 32) + draw(st.binary(max_size=64))
    return draw(mutated(data))


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """The file as it is, with some bytes flipped, or cut short."""
    kind = draw(st.sampled_from(["none", "none", "flip", "truncate"]))
    if kind == "flip" and data:
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        return bytes(out)
    if kind == "truncate" and allowed("gguf-truncated"):
        return data[: draw(st.integers(0, len(data)))]
    return data
