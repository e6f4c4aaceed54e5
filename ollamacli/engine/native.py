"""A typed seam over the llama.cpp C API that the engine uses (through llama-cpp-python's ctypes
bindings, never its high-level `Llama` class).

Everything `Any`-typed about ctypes stays in this module: the rest of the engine sees
`NativeModel`, `NativeContext` and `NativeBatch` with plain Python types. Tested with
llama-cpp-python 0.3.36 (pyproject bounds the range); `check_bindings` fails loudly, at load,
when a binding this module calls is missing from another version.

Ownership: a `NativeModel` owns the weights (and a LoRA adapter); a `NativeContext` owns a KV
cache over one model; a `NativeBatch` owns token buffers. Each is freed by its `close()`, which
is idempotent; a context must be closed before its model. llama.cpp objects are not
thread-safe: one thread at a time may call into a context (the batch loop is that thread), while
the model's vocabulary (tokenize, pieces) is read-only and may be used from any thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ollamacli.errors import EngineError, ModelLoadError

_REQUIRED = (
    "llama_backend_init",
    "llama_model_default_params",
    "llama_model_load_from_file",
    "llama_model_free",
    "llama_model_get_vocab",
    "llama_model_meta_count",
    "llama_model_meta_key_by_index",
    "llama_model_meta_val_str_by_index",
    "llama_model_n_embd",
    "llama_adapter_lora_init",
    "llama_adapter_lora_free",
    "llama_set_adapters_lora",
    "llama_context_default_params",
    "llama_init_from_model",
    "llama_free",
    "llama_n_ctx",
    "llama_n_seq_max",
    "llama_get_memory",
    "llama_memory_seq_rm",
    "llama_memory_seq_cp",
    "llama_memory_clear",
    "llama_state_seq_get_size",
    "llama_state_seq_get_data",
    "llama_state_seq_set_data",
    "llama_batch_init",
    "llama_batch_free",
    "llama_decode",
    "llama_get_logits_ith",
    "llama_get_embeddings_seq",
    "llama_pooling_type",
    "llama_vocab_n_tokens",
    "llama_vocab_bos",
    "llama_vocab_eos",
    "llama_vocab_is_eog",
    "llama_vocab_get_add_bos",
    "llama_vocab_get_text",
    "llama_vocab_get_attr",
    "llama_tokenize",
    "llama_token_to_piece",
)

_backend_ready = False
_BACKEND_INIT = threading.Lock()


def extra_buffers_safe(system_info: str) -> bool:
    """Whether llama.cpp may put weights in the CPU backend's extra buffer types (AMX tiles,
    repacked layouts), given `llama_print_system_info()`'s text.

    Not when the backend was built with AMX: in llama-cpp-python 0.3.36 the AMX matrix multiply
    loads a tile configuration from the stack whose row and column stores the compiler dropped
    (GCC 12 with -march=native on a Xeon with AMX: the configuration reads back as all zeros), so
    the first tile instruction dies with SIGILL, the whole process with it (llama.cpp PR 26954,
    open, moves the configuration out of the stack). There the weights stay in ordinary CPU
    buffers: some quantization types lose a repacked fast path, nothing crashes.
    """
    return "AMX_INT8 = 1" not in system_info


@contextlib.contextmanager
def plain_buffers_for_llama_class(bindings: Any) -> Iterator[None]:
    """Within the block, llama-cpp-python's high-level `Llama` (which benchmarks and tests load
    as a baseline) keeps weights where `NativeModel` does: `bindings` is the `llama_cpp.llama_cpp`
    module, whose `llama_model_default_params` `Llama` starts from."""
    if extra_buffers_safe(_system_info(bindings)):
        yield
        return
    original = bindings.llama_model_default_params

    def plain() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    bindings.llama_model_default_params = plain
    try:
        yield
    finally:
        bindings.llama_model_default_params = original


def _system_info(lib: Any) -> str:
    """llama.cpp's build features ("AVX2 = 1 | AMX_INT8 = 1 | ..."), or "" when unavailable."""
    info = getattr(lib, "llama_print_system_info", None)
    if info is None:
        return ""
    text = info()
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def check_bindings(lib: Any) -> None:
    """Raise `ModelLoadError` when the installed llama-cpp-python lacks a call we make."""
    missing = [name for name in _REQUIRED if not hasattr(lib, name)]
    if missing:
        raise ModelLoadError(
            f"the installed llama-cpp-python lacks {', '.join(missing)}",
            path="",
            hint="install the version ollamacli was tested with: "
            "pip install 'llama-cpp-python>=0.3.36,<0.4'",
        )


@dataclass(frozen=True, slots=True)
class ContextParams:
    """How to build a context (llama.cpp's names)."""

    n_ctx: int  # KV cells in all (n_ctx / n_seq_max each with `per_sequence_cache`)
    n_batch: int  # most tokens one `decode` takes
    n_seq_max: int  # sequences at once
    n_threads: int
    embeddings: bool = False
    mean_pooling: bool = False  # pool token embeddings by mean (models without pooling)
    # True: each sequence has its own KV stream (llama.cpp's split cache, as `llama-server -np N`
    # runs), so a token attends only its own sequence's cells, and sharing a prefix copies the
    # source's stream. False: one unified cache (cells shared for free, but every token's
    # attention spans the cells of all sequences).
    per_sequence_cache: bool = False


class NativeModel:
    """Weights and vocabulary of one GGUF (plus at most one LoRA adapter)."""

    def __init__(self, lib: Any, path: Path, *, adapter: Path | None = None) -> None:
        global _backend_ready
        check_bindings(lib)
        with _BACKEND_INIT:  # two first loads on two threads initialise the backend once
            if not _backend_ready:
                lib.llama_backend_init()
                _backend_ready = True
        self._lib = lib
        self.path = path
        params = lib.llama_model_default_params()
        params.n_gpu_layers = 0x7FFFFFFF if lib.llama_supports_gpu_offload() else 0
        # mmap shares the file's pages between instances; a LoRA writes to the weights' copy.
        params.load_mode = lib.LLAMA_LOAD_MODE_NONE if adapter else lib.LLAMA_LOAD_MODE_MMAP
        self.extra_buffers = extra_buffers_safe(_system_info(lib))
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = self.extra_buffers
        self._model = lib.llama_model_load_from_file(str(path).encode(), params)
        if not self._model:
            raise ModelLoadError(f"unable to load model {path}", path=str(path))
        self._adapter: Any = None
        self.vocab = lib.llama_model_get_vocab(self._model)
        self.n_vocab = int(lib.llama_vocab_n_tokens(self.vocab))
        self.bos = int(lib.llama_vocab_bos(self.vocab))
        self.eos = int(lib.llama_vocab_eos(self.vocab))
        self.add_bos = bool(lib.llama_vocab_get_add_bos(self.vocab))
        self.n_embd = int(lib.llama_model_n_embd(self._model))
        if adapter is not None:
            self._adapter = lib.llama_adapter_lora_init(self._model, str(adapter).encode())
            if not self._adapter:
                self.close()
                raise ModelLoadError(f"unable to load adapter {adapter}", path=str(adapter))

    @property
    def handle(self) -> Any:
        """The `llama_model *` (for llama-cpp-python calls outside this seam)."""
        return self._model

    def metadata(self) -> dict[str, str]:
        """Every GGUF metadata key with its value as text (arrays as llama.cpp prints them)."""
        lib = self._lib
        values: dict[str, str] = {}
        for index in range(int(lib.llama_model_meta_count(self._model))):
            key = self._meta_text(lib.llama_model_meta_key_by_index, index)
            values[key] = self._meta_text(lib.llama_model_meta_val_str_by_index, index)
        return values

    def _meta_text(self, function: Any, index: int) -> str:
        size = 256
        while True:
            buffer = ctypes.create_string_buffer(size)
            written = int(function(self._model, index, buffer, size))
            if written < size:
                return buffer.value.decode("utf-8", "replace")
            size = written + 1

    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, `<|im_end|>` ...)."""
        return bool(self._lib.llama_vocab_is_eog(self.vocab, token))

    def token_text(self, token: int) -> str:
        """The vocabulary's text for a token ("" for negative ids)."""
        if token < 0:
            return ""
        raw = bytes(self._lib.llama_vocab_get_text(self.vocab, token))
        return raw.decode("utf-8", "replace")

    def token_attr(self, token: int) -> int:
        """llama.cpp's attribute bits of a token (`LLAMA_TOKEN_ATTR_*`)."""
        return int(self._lib.llama_vocab_get_attr(self.vocab, token))

    def tokenize(self, data: bytes, *, special: bool) -> list[int]:
        """Tokens for some UTF-8 text, without adding BOS."""
        lib = self._lib
        capacity = len(data) + 2  # a token is at least a byte, plus a space prefix
        while True:
            buffer = (lib.llama_token * capacity)()
            count = int(
                lib.llama_tokenize(self.vocab, data, len(data), buffer, capacity, False, special)
            )
            if count >= 0:
                return list(buffer[:count])
            capacity = -count

    def piece(self, token: int, *, special: bool) -> bytes:
        """The bytes a token stands for (control tokens only with `special`)."""
        size = 32
        while True:
            buffer = ctypes.create_string_buffer(size)
            written = int(
                self._lib.llama_token_to_piece(self.vocab, token, buffer, size, 0, special)
            )
            if written >= 0:
                return buffer.raw[:written]
            size = -written

    def new_context(self, params: ContextParams) -> NativeContext:
        """A context (KV cache) over this model; raises `ModelLoadError` when llama.cpp can't."""
        return NativeContext(self._lib, self, params)

    def close(self) -> None:
        """Free the adapter and the weights (idempotent)."""
        if self._adapter:
            self._lib.llama_adapter_lora_free(self._adapter)
            self._adapter = None
        if self._model:
            self._lib.llama_model_free(self._model)
            self._model = None

    @property
    def adapter(self) -> Any:
        """The loaded `llama_adapter_lora *`, or None."""
        return self._adapter


class NativeContext:
    """A llama.cpp context: a KV cache holding up to `n_seq_max` sequences, unified or one
    stream per sequence (`ContextParams.per_sequence_cache`)."""

    def __init__(self, lib: Any, model: NativeModel, params: ContextParams) -> None:
        self._lib = lib
        self.model = model
        self.params = params
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = params.n_ctx
        cparams.n_batch = params.n_batch
        cparams.n_ubatch = params.n_batch
        cparams.n_seq_max = params.n_seq_max
        cparams.n_threads = params.n_threads
        cparams.n_threads_batch = params.n_threads
        cparams.embeddings = params.embeddings
        cparams.kv_unified = not params.per_sequence_cache
        cparams.no_perf = True
        if params.mean_pooling:
            cparams.pooling_type = lib.LLAMA_POOLING_TYPE_MEAN
        self._ctx = lib.llama_init_from_model(model.handle, cparams)
        if not self._ctx:
            raise ModelLoadError(
                f"unable to create a context of {params.n_ctx} tokens for {model.path}",
                path=str(model.path),
                hint="try a smaller num_ctx or OLLAMA_NUM_PARALLEL",
            )
        if model.adapter:
            adapters = (lib.llama_adapter_lora_p_ctypes * 1)(model.adapter)
            scales = (ctypes.c_float * 1)(1.0)
            if lib.llama_set_adapters_lora(self._ctx, adapters, 1, scales):
                self.close()
                raise ModelLoadError("unable to apply the adapter", path=str(model.path))
        self._memory = lib.llama_get_memory(self._ctx)
        self.n_ctx = int(lib.llama_n_ctx(self._ctx))
        self.n_seq_max = int(lib.llama_n_seq_max(self._ctx))
        self._logits_shape = (model.n_vocab,)

    @property
    def handle(self) -> Any:
        """The `llama_context *`."""
        return self._ctx

    def new_batch(self, capacity: int) -> NativeBatch:
        """A batch for this context with room for `capacity` tokens."""
        return NativeBatch(self._lib, capacity, self.n_seq_max)

    def decode(self, batch: NativeBatch) -> int:
        """Evaluate a batch: 0 on success, 1 when the KV cache has no room, < 0 on errors."""
        return int(self._lib.llama_decode(self._ctx, batch.struct))

    def logits(self, index: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The logits of the batch entry at `index` (a view, valid until the next decode)."""
        pointer = self._lib.llama_get_logits_ith(self._ctx, index)
        if not pointer:
            raise IndexError(f"no logits for batch index {index}")
        return np.ctypeslib.as_array(pointer, shape=self._logits_shape)

    def pooled_embedding(self, seq_id: int) -> list[float]:
        """The pooled embedding of a sequence after a decode (needs a pooling context)."""
        pointer = self._lib.llama_get_embeddings_seq(self._ctx, seq_id)
        if not pointer:
            raise IndexError(f"no embedding for sequence {seq_id}")
        return [float(v) for v in np.ctypeslib.as_array(pointer, shape=(self.model.n_embd,))]

    def pooling_none(self) -> bool:
        """True when the context pools nothing (one vector per token)."""
        return int(self._lib.llama_pooling_type(self._ctx)) == int(
            self._lib.LLAMA_POOLING_TYPE_NONE
        )

    def forget(self, seq_id: int, start: int = 0) -> bool:
        """Drop a sequence's cells from position `start` on (False when llama.cpp can't)."""
        return bool(self._lib.llama_memory_seq_rm(self._memory, seq_id, start, -1))

    def share(self, source: int, target: int, end: int) -> None:
        """Give `target` (empty) the cells of `source` at positions [0, end).

        In a unified cache the cells are marked as the target's too (nothing is copied). With a
        stream per sequence, llama.cpp copies only whole streams (at the next decode, before the
        batch is evaluated): the source's stream is copied and the target drops what lies past
        `end`."""
        if not self.params.per_sequence_cache:
            self._lib.llama_memory_seq_cp(self._memory, source, target, 0, end)
            return
        self._lib.llama_memory_seq_cp(self._memory, source, target, -1, -1)
        self._lib.llama_memory_seq_rm(self._memory, target, end, -1)

    def save(self, seq_id: int) -> tuple[Any, int]:
        """A copy of a sequence's cells (positions, keys, values): (buffer, bytes)."""
        size = int(self._lib.llama_state_seq_get_size(self._ctx, seq_id))
        buffer = (ctypes.c_uint8 * size)()
        written = int(self._lib.llama_state_seq_get_data(self._ctx, buffer, size, seq_id))
        if written != size:
            raise EngineError(f"llama.cpp saved {written} of {size} bytes of a sequence")
        return buffer, size

    def restore(self, seq_id: int, state: Any, size: int) -> bool:
        """Load a saved sequence into `seq_id` (empty); False (and the sequence empty) when
        llama.cpp cannot."""
        return int(self._lib.llama_state_seq_set_data(self._ctx, state, size, seq_id)) > 0

    def clear(self) -> None:
        """Empty the KV cache."""
        self._lib.llama_memory_clear(self._memory, True)

    def close(self) -> None:
        """Free the context (idempotent)."""
        if self._ctx:
            self._lib.llama_free(self._ctx)
            self._ctx = None


class NativeBatch:
    """A `llama_batch` with room for `capacity` tokens, filled entry by entry."""

    def __init__(self, lib: Any, capacity: int, n_seq_max: int) -> None:
        self._lib = lib
        self.capacity = capacity
        self._batch = lib.llama_batch_init(capacity, 0, n_seq_max)
        self.size = 0

    @property
    def struct(self) -> Any:
        """The `llama_batch` to pass to `llama_decode`, sized to its entries."""
        self._batch.n_tokens = self.size
        return self._batch

    def clear(self) -> None:
        """Forget the entries (the buffers stay)."""
        self.size = 0

    def add(self, token: int, position: int, seq_id: int, *, logits: bool) -> int:
        """Append one token of a sequence; returns its index in the batch."""
        index = self.size
        if index >= self.capacity:
            raise IndexError("batch is full")
        batch = self._batch
        batch.token[index] = token
        batch.pos[index] = position
        batch.n_seq_id[index] = 1
        batch.seq_id[index][0] = seq_id
        batch.logits[index] = logits
        self.size = index + 1
        return index

    def want_logits(self, index: int) -> None:
        """Ask for the logits of an entry already added."""
        self._batch.logits[index] = True

    def close(self) -> None:
        """Free the buffers (idempotent)."""
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
