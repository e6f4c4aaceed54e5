"""A small, dependency-free reader for GGUF headers (metadata and tensor shapes, never weights).

`create`, `show` and the preflight check need the architecture, parameter count, file type,
context length and chat template of a model file; reading them must stay fast and must not
import numpy or llama.cpp. `check_gguf` is the gate a model or adapter passes before it
enters the store (see `gguffile.reader` for what it refuses).
"""

from ollamacli.gguffile.model import (
    FILE_TYPES,
    GGML_TYPES,
    GGUF_MAGIC,
    ArraySummary,
    GGUFInfo,
    GGUFValue,
    TensorInfo,
    human_number,
)
from ollamacli.gguffile.reader import check_gguf, is_gguf, open_regular, read_gguf

__all__ = [
    "FILE_TYPES",
    "GGML_TYPES",
    "GGUF_MAGIC",
    "ArraySummary",
    "GGUFInfo",
    "GGUFValue",
    "TensorInfo",
    "check_gguf",
    "human_number",
    "is_gguf",
    "open_regular",
    "read_gguf",
]
