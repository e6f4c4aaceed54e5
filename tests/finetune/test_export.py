"""GGUF export, tested directly: tensor names and metadata, and logits in llama.cpp against
transformers/peft (an export with the wrong q/k row order can still answer 7 of 8 questions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ollamacli.engine.native import plain_buffers_for_llama_class
from ollamacli.errors import FinetuneError
from ollamacli.finetune.export import (
    LoraWeights,
    convert_peft_adapter,
    lora_from_state,
    write_lora_gguf,
)
from ollamacli.finetune.layout import BaseLayout, permute_rows
from ollamacli.finetune.merged import write_model_gguf
from ollamacli.gguffile import read_gguf
from tests.finetune.tiny import HEADS, KV_HEADS, tiny_metadata

pytestmark = [pytest.mark.finetune, pytest.mark.timeout(900)]

PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def test_permute_rows_interleaves_the_rotary_halves_of_each_head():
    rows = np.arange(8, dtype=np.float32).reshape(8, 1)
    assert permute_rows(rows, 2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    with pytest.raises(FinetuneError, match="cannot split 8 rows into 3 rotary heads"):
        permute_rows(rows, 3)


@pytest.mark.slow
def test_permute_rows_is_what_transformers_undoes_when_loading_a_gguf(stack):
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    weights = np.random.default_rng(0).standard_normal((192, 64)).astype(np.float32)
    undo = LlamaTensorProcessor()._reverse_permute_weights  # type: ignore[no-untyped-call]
    assert np.array_equal(undo(permute_rows(weights, 3), 9, 3), weights)
    assert not np.array_equal(permute_rows(weights, 3), weights)


def test_lora_from_state_pairs_peft_tensors_and_scales_rslora_alpha():
    a, b = np.ones((4, 8), np.float32), np.zeros((16, 4), np.float32)
    state = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": a,
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": b,
    }
    plain = lora_from_state(state, rank=4, alpha=8)
    assert plain.alpha == 8
    assert list(plain.pairs) == ["model.layers.0.self_attn.q_proj"]
    assert plain.pairs["model.layers.0.self_attn.q_proj"][0] is a
    assert lora_from_state(state, rank=4, alpha=8, rslora=True).alpha == 16  # 8 * sqrt(4)


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("base_model.model.model.embed_tokens.lora_embedding_A", "unsupported adapter tensor"),
        ("base_model.model.model.layers.0.mlp.up_proj.lora_magnitude_vector", "unsupported"),
        ("base_model.model.model.layers.0.mlp.up_proj.lora_A.weight", "lacks lora_A or lora_B"),
    ],
    ids=["embedding", "dora", "half-pair"],
)
def test_lora_from_state_refuses_what_llama_cpp_cannot_apply(key, problem):
    with pytest.raises(FinetuneError, match=problem):
        lora_from_state({key: np.ones((2, 2), np.float32)}, rank=2, alpha=2)


def _random_lora(rng: np.random.Generator, rank: int = 4) -> LoraWeights:
    pairs = {}
    for block in range(2):
        for module, (out, inp) in {
            "self_attn.q_proj": (64, 64),
            "self_attn.k_proj": (32, 64),
            "self_attn.v_proj": (32, 64),
            "mlp.down_proj": (64, 128),
        }.items():
            pairs[f"model.layers.{block}.{module}"] = (
                rng.standard_normal((rank, inp)).astype(np.float32),
                rng.standard_normal((out, rank)).astype(np.float32),
            )
    return LoraWeights(alpha=8.0, pairs=pairs)


@pytest.mark.slow
def test_lora_gguf_has_llama_cpp_names_metadata_and_row_order(tiny_gguf, tmp_path):
    import gguf

    weights = _random_lora(np.random.default_rng(1))
    out = write_lora_gguf(weights, BaseLayout.read(tiny_gguf), tmp_path / "a.gguf")
    reader = gguf.GGUFReader(str(out))
    fields = {k: reader.fields[k].contents() for k in reader.fields if not k.startswith("GGUF.")}
    assert fields == {
        "general.architecture": "llama",
        "general.type": "adapter",
        "adapter.type": "lora",
        "adapter.lora.alpha": 8.0,
    }
    assert read_gguf(out).is_adapter
    tensors = {t.name: np.asarray(t.data) for t in reader.tensors}
    assert sorted(tensors) == sorted(
        f"blk.{b}.{n}.weight.lora_{p}"
        for b in range(2)
        for n in ("attn_q", "attn_k", "attn_v", "ffn_down")
        for p in "ab"
    )
    q_a, q_b = weights.pairs["model.layers.1.self_attn.q_proj"]
    k_b = weights.pairs["model.layers.1.self_attn.k_proj"][1]
    v_b = weights.pairs["model.layers.1.self_attn.v_proj"][1]
    assert {t.tensor_type for t in reader.tensors} == {gguf.GGMLQuantizationType.F16}

    def f16(rows: np.ndarray) -> np.ndarray:
        return rows.astype(np.float16)

    assert np.array_equal(tensors["blk.1.attn_q.weight.lora_a"], f16(q_a))
    assert np.array_equal(tensors["blk.1.attn_q.weight.lora_b"], f16(permute_rows(q_b, HEADS)))
    assert np.array_equal(tensors["blk.1.attn_k.weight.lora_b"], f16(permute_rows(k_b, KV_HEADS)))
    assert np.array_equal(tensors["blk.1.attn_v.weight.lora_b"], f16(v_b))  # only q/k permuted

    full = write_lora_gguf(
        weights, BaseLayout.read(tiny_gguf), tmp_path / "b.gguf", precision="f32"
    )
    full_tensors = gguf.GGUFReader(str(full)).tensors
    assert {t.tensor_type for t in full_tensors} == {gguf.GGMLQuantizationType.F32}
    assert sum(int(t.n_bytes) for t in full_tensors) == 2 * sum(
        int(t.n_bytes) for t in reader.tensors
    )


@pytest.mark.slow
def test_an_adapter_for_another_base_is_refused(tiny_gguf, tmp_path):
    rng = np.random.default_rng(2)
    wrong = LoraWeights(
        alpha=8.0,
        pairs={
            "model.layers.0.self_attn.q_proj": (
                rng.standard_normal((4, 576)).astype(np.float32),
                rng.standard_normal((576, 4)).astype(np.float32),
            )
        },
    )
    with pytest.raises(FinetuneError, match=r"do not fit blk\.0\.attn_q\.weight") as caught:
        write_lora_gguf(wrong, BaseLayout.read(tiny_gguf), tmp_path / "a.gguf")
    assert caught.value.hint == "the adapter was trained for a different base model"
    assert not (tmp_path / "a.gguf").exists()


@pytest.mark.slow
def test_merged_gguf_loads_back_into_transformers_unchanged(tiny_hf, tiny_gguf):
    from ollamacli.finetune.trainer import load_base

    loaded = load_base(tiny_gguf)
    original, reloaded = tiny_hf.state_dict(), loaded.model.state_dict()
    assert set(original) == set(reloaded)
    for name, tensor in original.items():
        assert np.array_equal(tensor.numpy(), reloaded[name].numpy()), name
    tensors = {t.name for t in read_gguf(tiny_gguf).tensors}
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    assert {"token_embd.weight", "output_norm.weight", "blk.1.attn_q.weight"} <= tensors


def _llama_logits(model: Path, tokens: list[int], lora: Path | None = None) -> np.ndarray:
    import llama_cpp

    with plain_buffers_for_llama_class(llama_cpp.llama_cpp):
        llm = llama_cpp.Llama(
            str(model),
            n_ctx=256,
            logits_all=True,
            verbose=False,
            n_threads=2,
            lora_path=str(lora) if lora else None,
        )
    try:
        llm.eval(tokens)
        return np.array(llm.scores[: len(tokens)])
    finally:
        llm.close()


def _hf_logits(model: Any, tokens: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        logits: np.ndarray = model(torch.tensor([tokens])).logits[0].float().numpy()
    return logits


def _tokens(smollm2: Path) -> list[int]:
    import llama_cpp

    vocab = llama_cpp.Llama(str(smollm2), vocab_only=True, verbose=False)
    try:
        return vocab.tokenize(PROMPT.encode(), add_bos=False, special=True)
    finally:
        vocab.close()


def _unpermute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of permute_rows: what a converter that forgets the rotary order writes."""
    n = rows.shape[0]
    return (
        rows.reshape(n_head, n // n_head // 2, 2, *rows.shape[1:])
        .swapaxes(1, 2)
        .reshape(rows.shape)
    )


@pytest.mark.slow
@pytest.mark.llama
def test_merged_model_logits_in_llama_cpp_match_transformers(
    tiny_hf, tiny_gguf, smollm2_path, tmp_path
):
    tokens = _tokens(smollm2_path)
    expected = _hf_logits(tiny_hf, tokens)
    assert expected.std() > 1.0  # the tiny model's attention is far from uniform
    got = _llama_logits(tiny_gguf, tokens)
    assert np.abs(got - expected).max() < 0.02 * np.abs(expected).max()
    assert (got.argmax(-1) == expected.argmax(-1)).all()
    # The same check catches a writer that keeps transformers' row order:
    state = {k: v.numpy().copy() for k, v in tiny_hf.state_dict().items()}
    for name in state:
        if "q_proj" in name or "k_proj" in name:
            state[name] = _unpermute(state[name], HEADS if "q_proj" in name else KV_HEADS)
    wrong = tmp_path / "wrong.gguf"
    write_model_gguf(state, tiny_metadata(smollm2_path), wrong, file_type="f32")
    assert np.abs(_llama_logits(wrong, tokens) - expected).max() > 0.2 * np.abs(expected).max()


@pytest.mark.slow
@pytest.mark.llama
@pytest.mark.parametrize("file_type", ["f16", "q8_0"])
def test_merged_model_in_f16_and_q8_0_keeps_the_predictions(
    tiny_hf, smollm2_path, tmp_path, file_type
):
    from tests.finetune.tiny import write_tiny_gguf

    path = write_tiny_gguf(tiny_hf, smollm2_path, tmp_path / "m.gguf", file_type=file_type)
    info = read_gguf(path)
    assert info.file_type == file_type.upper()
    types = {t.name: t.ggml_type for t in info.tensors}
    assert types["blk.0.attn_norm.weight"] == 0  # norms stay F32
    assert types["blk.0.attn_q.weight"] == {"f16": 1, "q8_0": 8}[file_type]
    tokens = _tokens(smollm2_path)
    expected = _hf_logits(tiny_hf, tokens)
    got = _llama_logits(path, tokens)
    # Rounding may flip near-ties of a random model, but the logits stay the same shape.
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.75
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.999


@pytest.mark.slow
@pytest.mark.llama
def test_lora_logits_in_llama_cpp_match_peft(peft_tiny, tiny_hf, tiny_gguf, smollm2_path, tmp_path):
    model, folder = peft_tiny
    tokens = _tokens(smollm2_path)
    expected = _hf_logits(model, tokens)
    base = _hf_logits(tiny_hf, tokens)
    assert np.abs(expected - base).max() > 1.0  # the adapter really changes the model
    adapter = convert_peft_adapter(folder, tiny_gguf, tmp_path / "adapter.gguf")
    got = _llama_logits(tiny_gguf, tokens, adapter)
    assert np.abs(got - expected).max() < 0.02 * np.abs(expected).max()
    assert (got.argmax(-1) == expected.argmax(-1)).all()
    # An export that forgets to permute lora_b of q and k is caught by the same comparison:
    from ollamacli.finetune.export import _load_safetensors

    state = _load_safetensors(folder / "adapter_model.safetensors")
    for key in state:
        if "lora_B" in key and ("q_proj" in key or "k_proj" in key):
            state[key] = _unpermute(state[key], HEADS if "q_proj" in key else KV_HEADS)
    wrong = write_lora_gguf(
        lora_from_state(state, rank=8, alpha=16), BaseLayout.read(tiny_gguf), tmp_path / "w.gguf"
    )
    off = np.abs(_llama_logits(tiny_gguf, tokens, wrong) - expected).max()
    assert off > 0.1 * np.abs(expected).max()
