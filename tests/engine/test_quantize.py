"""`create --quantize`: llama.cpp quantizes an F16/F32 model into a new blob; Ollama's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamacli.engine.base import Completion, LoadConfig, SamplingConfig
from ollamacli.engine.llama import LlamaCppFactory
from ollamacli.engine.quantize import parse_quantize_type
from ollamacli.errors import InvalidRequestError
from ollamacli.gguffile import read_gguf
from ollamacli.names import ModelName
from tests.factories import make_random_llama_gguf, make_tiny_gguf

SUPPORTED = "supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0"
# ggml_type ids (gguf.GGMLQuantizationType)
F32, F16, Q8_0, Q4_K, Q6_K = 0, 1, 8, 12, 14


@pytest.mark.parametrize(
    ("name", "canonical"),
    [("q4_K_M", "Q4_K_M"), ("q4_k", "Q4_K_M"), ("Q8_0", "Q8_0"), ("f16", "F16"), ("bf16", "BF16")],
)
def test_quantize_type_names_are_ollamas(name, canonical):
    assert parse_quantize_type(name) == canonical


@pytest.mark.parametrize("name", ["q4_0", "q5_K_M", "iq2_xs", ""])
def test_unknown_quantize_type_is_refused_with_ollamas_message(name):
    with pytest.raises(
        InvalidRequestError, match=f"unsupported quantization type .* - {SUPPORTED}"
    ):
        parse_quantize_type(name)


@pytest.fixture(scope="module")
def f16_model(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_llama_gguf(tmp_path_factory.mktemp("q") / "model.gguf", smollm2_path)


def _modelfile(folder: Path, source: Path) -> Path:
    path = folder / "Modelfile"
    path.write_text(f"FROM {source}\n")
    return path


def _model_file(settings, name: str) -> Path:
    from ollamacli.store import Store

    return Store(settings.models).resolve(ModelName.parse(name)).model_path


def _generates(model: Path) -> int:
    engine = LlamaCppFactory().load(LoadConfig(model, num_ctx=256, num_thread=2))
    try:
        events = list(engine.generate("Hello", SamplingConfig(temperature=0, num_predict=4)))
    finally:
        engine.close()
    done = events[-1]
    assert isinstance(done, Completion)
    return done.eval_count


@pytest.mark.slow
@pytest.mark.llama
@pytest.mark.parametrize(
    ("kind", "file_type", "weights"),
    [("q8_0", "Q8_0", {Q8_0}), ("q4_K_M", "Q4_K_M", {Q4_K, Q6_K})],
    ids=["q8_0", "q4_K_M"],
)
def test_create_quantize_writes_a_new_quantized_blob_that_generates(
    cli, settings, tmp_path, f16_model, kind, file_type, weights
):
    result = cli("create", "small", "-f", str(_modelfile(tmp_path, f16_model)), "-q", kind)
    assert result.code == 0, result.err
    assert f"quantizing F16 model to {file_type}" in result.err
    quantized = _model_file(settings, "small")
    info = read_gguf(quantized)
    assert info.file_type == file_type
    types = {t.name: t.ggml_type for t in info.tensors}
    assert types["blk.0.attn_norm.weight"] == F32  # llama.cpp keeps norms in F32
    assert {types[n] for n, t in types.items() if "norm" not in n} <= weights
    if kind == "q4_K_M":
        assert types["blk.0.attn_q.weight"] == Q4_K
    assert quantized.stat().st_size < 0.6 * f16_model.stat().st_size
    assert f"quantization        {file_type}" in cli("show", "small").out
    assert _generates(quantized) > 0


def test_quantizing_a_quantized_model_is_refused_with_ollamas_message(cli, settings, tmp_path):
    q4 = make_tiny_gguf(tmp_path / "q4.gguf", file_type=2)  # Q4_0
    result = cli("create", "x", "-f", str(_modelfile(tmp_path, q4)), "-q", "q4_K_M")
    assert result.code == 1
    assert "Error: quantization is only supported for F16, BF16 and F32 models" in result.err
    assert not (settings.models / "manifests").exists() or not list(
        (settings.models / "manifests").rglob("x")
    )


def test_create_refuses_an_unknown_quantize_type_before_reading(cli, tmp_path):
    result = cli("create", "x", "-f", str(tmp_path / "missing"), "-q", "q4_0")
    assert result.code == 1
    assert f"Error: unsupported quantization type Q4_0 - {SUPPORTED}" in result.err


@pytest.mark.llama
def test_a_model_llama_cpp_cannot_load_is_refused_as_a_bad_request(cli, settings, tmp_path):
    """An F32 GGUF without a llama model in it: llama.cpp's quantizer fails, nothing is stored."""
    broken = make_tiny_gguf(tmp_path / "f32.gguf", file_type=0)
    result = cli("create", "x", "-f", str(_modelfile(tmp_path, broken)), "-q", "q8_0")
    assert result.code == 1
    assert "Error: cannot quantize this model to Q8_0:" in result.err
    assert "x:latest" not in cli("list").out
