"""A tiny random llama model (SmolLM2's tokenizer, 2 blocks of width 64) written as GGUF.

Fast to load and train, yet with real multi-head rotary attention: weights are drawn large
enough that attention is far from uniform, so a wrong q/k row order changes the logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ollamacli.finetune.merged import FileType, GGUFMetadata, write_model_gguf

HEADS, KV_HEADS, HIDDEN, FFN, BLOCKS, CONTEXT = 4, 2, 64, 128, 2, 2048


def tiny_config() -> Any:
    """The transformers config of the tiny model."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=49152,
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=BLOCKS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=CONTEXT,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},  # SmolLM2's base
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )


def tiny_model(seed: int = 0) -> Any:
    """A random LlamaForCausalLM with weights large enough to matter."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config())
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 2:
                std = 1.0 if "embed" in name else 0.25
                parameter.normal_(0.0, std)
    return model.eval()  # type: ignore[no-untyped-call]  # torch's eval is untyped here


def tiny_metadata(smollm2: Path) -> GGUFMetadata:
    """SmolLM2's GGUF metadata (tokenizer, template) with the tiny model's shape."""
    return GGUFMetadata.read(smollm2).with_values(
        {
            "llama.block_count": BLOCKS,
            "llama.embedding_length": HIDDEN,
            "llama.feed_forward_length": FFN,
            "llama.attention.head_count": HEADS,
            "llama.attention.head_count_kv": KV_HEADS,
            "llama.rope.dimension_count": HIDDEN // HEADS,
            "llama.context_length": CONTEXT,
            "general.name": "tiny-llama",
        }
    )


def write_tiny_gguf(model: Any, smollm2: Path, out: Path, *, file_type: FileType = "f32") -> Path:
    """The tiny model as a GGUF llama.cpp and transformers can load."""
    tensors = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    write_model_gguf(tensors, tiny_metadata(smollm2), out, file_type=file_type)
    return out
