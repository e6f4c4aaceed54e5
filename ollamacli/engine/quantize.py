"""Quantize a GGUF model with llama.cpp (`llama_model_quantize`), as `create --quantize` does.

The type names and refusals follow Ollama (`fs/ggml/type.go` ParseFileType, `server/create.go`):
only F32, F16, BF16, Q8_0, Q4_K_S and Q4_K_M (alias Q4_K) are accepted, case-insensitive, and
only an F32, F16 or BF16 model is quantized. llama.cpp picks the per-tensor types itself (the
K-quant mixes keep some tensors at higher precision, and a tensor whose rows do not divide into
the type's blocks falls back to a type that fits), exactly as `llama-quantize` does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ollamacli.errors import InvalidRequestError

QUANTIZE_TYPES: dict[str, int] = {
    "F32": 0,
    "F16": 1,
    "Q8_0": 7,
    "Q4_K_S": 14,
    "Q4_K_M": 15,
    "BF16": 32,
}
"""Ollama's accepted names -> llama.cpp `llama_ftype` (`general.file_type`)."""
_ALIASES = {"Q4_K": "Q4_K_M"}
_SUPPORTED_LISTED = ("F32", "F16", "Q4_K_S", "Q4_K_M", "Q8_0")  # as Ollama's error lists them
QUANTIZABLE_SOURCES = ("F16", "BF16", "F32")
_BITS = {"F32": 32.0, "F16": 16.0, "BF16": 16.0, "Q8_0": 8.5, "Q4_K_S": 4.6, "Q4_K_M": 4.9}
"""Rough bits per weight, to turn the growing output file into a completed fraction."""

Progress = Callable[[float], None]


def parse_quantize_type(name: str) -> str:
    """The canonical type name (`q4_k_m` -> `Q4_K_M`); InvalidRequestError as Ollama words it."""
    upper = name.strip().upper()
    upper = _ALIASES.get(upper, upper)
    if upper not in QUANTIZE_TYPES:
        raise InvalidRequestError(
            f"unsupported quantization type {upper} - supported types are "
            + ", ".join(_SUPPORTED_LISTED)
        )
    return upper


def check_quantizable(source_type: str) -> None:
    """Refuse an already-quantized model, with Ollama's message."""
    if source_type not in QUANTIZABLE_SOURCES:
        raise InvalidRequestError(
            "quantization is only supported for F16, BF16 and F32 models",
            hint=f"this model is {source_type}; create it from an F16 or F32 GGUF instead",
        )


def quantize_gguf(
    source: Path,
    out: Path,
    *,
    source_type: str,
    target: str,
    progress: Progress | None = None,
    num_thread: int | None = None,
) -> Path:
    """Write `source` quantized to `target` (a `parse_quantize_type` name) at `out`.

    `progress` gets the completed fraction (0..1) while llama.cpp works, estimated from the size
    the output file has reached: `llama_model_quantize` reports nothing until it returns.
    """
    # Imported here: `create` without --quantize (and `list`) must not load numpy or llama.cpp.
    import ctypes
    import threading

    from ollamacli.engine.llama import _library
    from ollamacli.engine.llamalib import LOGS
    from ollamacli.engine.options import physical_cores

    lib = _library()
    params = lib.llama_model_quantize_default_params()
    params.nthread = num_thread or physical_cores()
    params.ftype = QUANTIZE_TYPES[target]
    expected = source.stat().st_size * _BITS[target] / _BITS.get(source_type, 16.0)
    outcome: list[int] = []
    LOGS.errors.clear()

    def work() -> None:
        outcome.append(
            int(
                lib.llama_model_quantize(
                    str(source).encode(), str(out).encode(), ctypes.byref(params)
                )
            )
        )

    worker = threading.Thread(target=work, name="llama-quantize", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.2)
        if progress is not None and out.exists():
            progress(min(out.stat().st_size / expected, 0.99))
    if outcome != [0]:
        out.unlink(missing_ok=True)
        reason = LOGS.last_error() or f"llama_model_quantize returned {outcome}"
        # llama.cpp refuses a model it cannot load (a damaged or unsupported one): the request's
        # model is at fault, so this is a client error, not a server failure.
        raise InvalidRequestError(f"cannot quantize this model to {target}: {reason}")
    if progress is not None:
        progress(1.0)
    return out
