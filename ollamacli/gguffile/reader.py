"""Reading and checking GGUF headers: bounded, with no recursion, trusting nothing in the file.

Every count and length is checked against the bytes left in the file before anything is
allocated or looped over, arrays of arrays are refused (as Ollama's `fs/ggml` and ggml's
`gguf.cpp` refuse them), arrays hold at most 64 Mi items (Ollama's `MaxArraySize`), and with
the tensor table read, every tensor's data must lie inside the file (ggml's data-size check),
so a truncated download is caught before the first chat.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import BinaryIO

from ollamacli.errors import InvalidGGUFError, StoreError
from ollamacli.gguffile.model import (
    GGML_TYPES,
    GGUF_MAGIC,
    ArraySummary,
    GGUFInfo,
    GGUFValue,
    TensorInfo,
)

_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9

MAX_ARRAY_ITEMS = 64 << 20
"""Ollama's `fs/gguf.MaxArraySize`."""
MAX_STRING_BYTES = 1 << 28
MAX_DIMS = 4
"""ggml's `GGML_MAX_DIMS`."""
MAX_TENSOR_NAME = 63
"""ggml's `GGML_MAX_NAME` (64) less the terminating NUL."""
DEFAULT_ALIGNMENT = 32
MAX_KV = 1 << 16
MAX_TENSORS = 1 << 18
"""Far above any real model (tens of key-value pairs, at most some thousands of tensors);
they bound the memory a crafted header can make the reader use."""
_KV_MIN_BYTES = 8 + 4 + 1
"""The smallest key-value pair: an empty key's length, the value type, a one-byte value."""
_TENSOR_MIN_BYTES = 8 + 4 + 4 + 8
"""The smallest tensor entry: an empty name's length, n_dims (0), type, offset."""


class _Reader:
    """Reads a GGUF header, knowing at every step how many bytes are left in the file."""

    def __init__(self, handle: BinaryIO, source: str, size: int) -> None:
        self._handle = handle
        self.source = source
        self.size = size
        self.position = 0

    def fail(self, problem: str) -> InvalidGGUFError:
        return InvalidGGUFError(f"{self.source}: {problem}")

    def need(self, size: int, what: str) -> None:
        if size > self.size - self.position:
            raise self.fail(f"truncated GGUF file: {what} runs past the end of the file")

    def take(self, size: int, what: str = "the header") -> bytes:
        self.need(size, what)
        data = self._handle.read(size)
        if len(data) != size:
            raise self.fail(f"truncated GGUF file: {what} runs past the end of the file")
        self.position += size
        return data

    def skip(self, size: int, what: str) -> None:
        self.need(size, what)
        self._handle.seek(size, os.SEEK_CUR)
        self.position += size

    def scalar(self, fmt: str, what: str = "the header") -> int | float | bool:
        value: int | float | bool = struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]
        return value

    def u32(self, what: str = "the header") -> int:
        return int(self.scalar("<I", what))

    def u64(self, what: str = "the header") -> int:
        return int(self.scalar("<Q", what))

    def string(self, what: str) -> str:
        length = self.u64(what)
        if length > MAX_STRING_BYTES:
            raise self.fail(f"{what}: string of {length} bytes is too long")
        return self.take(length, what).decode("utf-8", errors="replace")

    def skip_string(self, what: str) -> None:
        self.skip(self.u64(what), what)

    def skip_strings(self, count: int, what: str) -> None:
        """Skip `count` strings, walking their lengths a megabyte at a time (a vocabulary
        has ~10^5 of them; a crafted file may hold 10^7 empty ones)."""
        while count:
            chunk = self._handle.read(min(1 << 20, self.size - self.position))
            done = 0
            while count and done + 8 <= len(chunk):
                end = done + 8 + int.from_bytes(chunk[done : done + 8], "little")
                if end > len(chunk):
                    break
                done, count = end, count - 1
            self._handle.seek(done - len(chunk), os.SEEK_CUR)
            self.position += done
            if count and not done:  # a string longer than a chunk (or a truncated file)
                self.skip_string(what)
                count -= 1

    def value(self, kind: int, what: str, max_array: int) -> GGUFValue | ArraySummary:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind], what)
        if kind == _STRING:
            return self.string(what)
        if kind == _ARRAY:
            return self.array(what, max_array)
        raise self.fail(f"{what}: unknown value type {kind}")

    def array(self, what: str, max_array: int) -> list[GGUFValue] | ArraySummary:
        """A flat array (of scalars or strings); keeps at most `max_array` items' values."""
        kind, length = self.u32(what), self.u64(what)
        if kind == _ARRAY:
            raise self.fail(f"{what}: arrays of arrays are not supported")
        if kind not in _SCALARS and kind != _STRING:
            raise self.fail(f"{what}: unknown array item type {kind}")
        if length > MAX_ARRAY_ITEMS:
            raise self.fail(f"{what}: array of {length} items exceeds the limit {MAX_ARRAY_ITEMS}")
        item_size = struct.calcsize(_SCALARS[kind]) if kind in _SCALARS else 8
        self.need(length * item_size, what)
        keep = length if length <= max_array else min(length, 5)
        if kind in _SCALARS:
            fmt = _SCALARS[kind]
            data = self.take(keep * item_size, what)
            items: list[GGUFValue] = list(struct.unpack(f"<{keep}{fmt[1]}", data))
            self.skip((length - keep) * item_size, what)
        else:
            items = [self.string(what) for _ in range(keep)]
            self.skip_strings(length - keep, what)
        if length > max_array:
            return ArraySummary(length=length, first=tuple(items))
        return items


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading; refuses FIFOs, devices and folders without blocking.

    The file is opened non-blocking, so a named pipe with no writer cannot hang the caller
    (a plain `open` of a FIFO waits for a writer forever), then checked with `fstat`.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InvalidGGUFError(
                f"{path} is not a regular file",
                hint="point FROM and ADAPTER at a .gguf file, not a pipe, device or folder",
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def is_gguf(path: Path) -> bool:
    """True when the path is a regular file that starts with the GGUF magic."""
    try:
        with open_regular(path) as handle:
            return handle.read(4) == GGUF_MAGIC
    except (OSError, InvalidGGUFError):
        return False


def read_gguf(
    path: Path, *, max_array: int = 64, with_tensors: bool = True, source: str | None = None
) -> GGUFInfo:
    """Read a GGUF file's header; raises `InvalidGGUFError` when it is not a sound GGUF file.

    With `with_tensors`, the tensor table is read too and every tensor's data is checked to
    lie inside the file. `source` names the file in messages (default: its path).
    """
    label = source or str(path)
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            return _read(_Reader(handle, label, size), max_array, with_tensors)
    except OSError as exc:
        raise StoreError.from_os_error(exc, f"cannot read {label}") from exc


def check_gguf(path: Path, *, source: str | None = None) -> GGUFInfo:
    """Read and fully check a GGUF model or adapter before it enters the store.

    Header, key-value section and tensor table must parse, every tensor's data must lie
    inside the file, and there must be at least one tensor.
    """
    info = read_gguf(path, source=source)
    if not info.tensors:
        raise InvalidGGUFError(f"{source or path}: the GGUF file has no tensors")
    return info


def _read(reader: _Reader, max_array: int, with_tensors: bool) -> GGUFInfo:
    if reader.size < 4 or reader.take(4) != GGUF_MAGIC:
        raise InvalidGGUFError(
            f"{reader.source} is not a GGUF file",
            hint="FROM and ADAPTER need a .gguf file (or an existing model name)",
        )
    version = reader.u32()
    if version not in (2, 3):
        raise reader.fail(f"unsupported GGUF version {version}")
    n_tensors, n_kv = reader.u64(), reader.u64()
    left = reader.size - reader.position
    if n_kv > min(MAX_KV, left // _KV_MIN_BYTES):
        raise reader.fail(f"corrupt header: {n_kv} key-value pairs (the file cannot hold them)")
    if n_tensors > min(MAX_TENSORS, left // _TENSOR_MIN_BYTES):
        raise reader.fail(f"corrupt header: {n_tensors} tensors (the file cannot hold them)")
    metadata = _read_metadata(reader, n_kv, max_array)
    tensors: tuple[TensorInfo, ...] = ()
    if with_tensors:
        tensors = _read_tensors(reader, n_tensors)
        _check_data(reader, metadata, tensors)
    return GGUFInfo(version, metadata, tensors, tensor_count=n_tensors)


def _read_metadata(
    reader: _Reader, n_kv: int, max_array: int
) -> dict[str, GGUFValue | ArraySummary]:
    metadata: dict[str, GGUFValue | ArraySummary] = {}
    for index in range(n_kv):
        key = reader.string(f"key {index}")
        if key in metadata:
            raise reader.fail(f"duplicate key {key!r}")
        what = f"value of {key!r}"
        metadata[key] = reader.value(reader.u32(what), what, max_array)
    return metadata


def _read_tensors(reader: _Reader, n_tensors: int) -> tuple[TensorInfo, ...]:
    tensors: list[TensorInfo] = []
    names: set[str] = set()
    for index in range(n_tensors):
        name = reader.string(f"tensor {index}")
        what = f"tensor {name!r}"
        if len(name.encode()) > MAX_TENSOR_NAME:
            raise reader.fail(f"{what}: name longer than {MAX_TENSOR_NAME} bytes")
        if name in names:
            raise reader.fail(f"duplicate tensor {name!r}")
        names.add(name)
        n_dims = reader.u32(what)
        if n_dims > MAX_DIMS:
            raise reader.fail(f"{what}: {n_dims} dimensions (at most {MAX_DIMS})")
        dims = tuple(reader.u64(what) for _ in range(n_dims))
        ggml_type, offset = reader.u32(what), reader.u64(what)
        tensor = TensorInfo(name, dims, ggml_type, offset)
        _check_tensor(reader, tensor)
        tensors.append(tensor)
    return tuple(tensors)


def _check_tensor(reader: _Reader, tensor: TensorInfo) -> None:
    what = f"tensor {tensor.name!r}"
    if tensor.ggml_type not in GGML_TYPES:
        raise reader.fail(f"{what}: unknown tensor type {tensor.ggml_type}")
    if tensor.elements >= 1 << 63:
        raise reader.fail(f"{what}: shape {list(tensor.shape)} is too large")
    block = GGML_TYPES[tensor.ggml_type][0]
    if tensor.shape and tensor.shape[0] % block:
        raise reader.fail(
            f"{what}: first dimension {tensor.shape[0]} is not a multiple of the block size {block}"
        )


def _check_data(
    reader: _Reader, metadata: dict[str, GGUFValue | ArraySummary], tensors: tuple[TensorInfo, ...]
) -> None:
    """Every tensor's data must start aligned and end inside the file (the data-size check)."""
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if (
        not isinstance(alignment, int)
        or isinstance(alignment, bool)
        or alignment <= 0
        or alignment & (alignment - 1)
    ):
        raise reader.fail(f"general.alignment {alignment!r} is not a power of two")
    data_start = -(-reader.position // alignment) * alignment
    for tensor in tensors:
        if tensor.offset % alignment:
            raise reader.fail(
                f"tensor {tensor.name!r}: data offset {tensor.offset} is not aligned to {alignment}"
            )
        end = data_start + tensor.offset + tensor.nbytes
        if end > reader.size:
            raise reader.fail(
                f"truncated GGUF file: the data of tensor {tensor.name!r} ends at byte {end}, "
                f"the file has {reader.size} bytes"
            )
