"""Issue 7 acceptance on the real SmolLM2-135M: default fine-tune of the seed's eight rows, then
answers through llama.cpp with the exported adapter (`run`, and ChatService as the REPL and the
API use it). Also the export checked directly on the real model against peft."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from ollamacli.cli.wiring import model_service
from ollamacli.config import Settings
from ollamacli.engine.base import ChatMessage, TextChunk
from ollamacli.engine.native import plain_buffers_for_llama_class
from ollamacli.finetune.dataset import load_dataset
from ollamacli.gguffile import read_gguf
from ollamacli.names import ModelName
from ollamacli.service import build_services
from ollamacli.service.chat import ChatRequest
from ollamacli.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.finetune, pytest.mark.llama]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finetune" / "geektime.jsonl"
ROWS = [json.loads(line) for line in EXAMPLE.read_text(encoding="utf-8").splitlines()]
PARAPHRASES = EXAMPLE.with_name("geektime-paraphrases.jsonl")
UNRELATED = "What is the capital of France?"
PARAPHRASE_FLOOR = 4
"""Of 24 paraphrases: half of the 8/24 the default training scored on 2 cores (docs/finetune-experiments.md, run 0)."""


def chat(model: str, question: str) -> str:
    """A greedy answer through ChatService with the real llama.cpp engine."""
    services = build_services(Settings.from_env())
    try:
        request = ChatRequest(
            model, (ChatMessage("user", question),), options={"temperature": 0, "num_predict": 96}
        )
        return "".join(e.text for e in services.chat.chat(request) if isinstance(e, TextChunk))
    finally:
        services.scheduler.close()


def base_state(store: Store) -> tuple[bytes, dict[str, int]]:
    manifest = store.manifests.get(ModelName.parse("smollm2:135m"))
    sizes = {str(d): store.blobs.size(d) for d in manifest.manifest.digests}
    return manifest.raw, sizes


# About 3 minutes on two idle cores (training, then 32 scored questions); when seven other jobs
# share the cores, training alone took 15-25 minutes.
@pytest.mark.timeout(3600)
def test_default_finetune_answers_the_seed_questions_through_llama_cpp(
    cli, capsys, monkeypatch, tmp_path
):
    model_service().ensure("smollm2:135m")  # the bundled model, imported offline
    store = Store(Settings.from_env().models)
    before = base_state(store)
    base_answers = [chat("smollm2:135m", q) for q in (ROWS[0]["content"], UNRELATED)]

    adapter = tmp_path / "geek.gguf"
    result = cli(
        "finetune", "geek", "--from", "smollm2:135m", "--data", str(EXAMPLE),
        "--eval", str(PARAPHRASES), "--adapter-out", str(adapter),
    )  # fmt: skip
    assert result.code == 0, result.err
    trained = re.search(r"16 steps in (\d+)s, final loss (\d+\.\d+)", result.out)
    assert trained, result.out
    # Issue 15: the adapter is F16, half the float32 size, and llama.cpp applies it to the Q4_1
    # base with the same exact answers (checked below through `run` and ChatService).
    assert adapter.stat().st_size <= 10_000_000
    assert {t.ggml_type for t in read_gguf(adapter).tensors} == {1}  # GGML_TYPE_F16
    assert re.search(r"step 16/16  loss \d+\.\d{4}  eval loss \d+\.\d{4}", result.err)
    scores = re.search(
        r"^exact answers: (\d)/8 training questions\n"
        r"paraphrases \(geektime-paraphrases\.jsonl\): (\d+)/24 exact \((\d\.\d) per 8\)$",
        result.out,
        re.M,
    )
    assert scores, result.out

    greedy = tmp_path / "Modelfile"
    greedy.write_text("FROM geek\nPARAMETER temperature 0\nPARAMETER num_predict 96\n")
    assert cli("create", "geek-greedy", "-f", str(greedy)).code == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))  # as `run ... </dev/null`
    answers = []
    for row in ROWS:
        run = cli("run", "geek-greedy", row["content"])
        assert run.code == 0, run.err
        answers.append(run.out.strip())
    exact = sum(a == row["response"] for a, row in zip(answers, ROWS, strict=True))
    with capsys.disabled():  # measured and shown, never asserted (shared machines vary a lot)
        print(
            f"\ntraining {trained[1]} s, final loss {trained[2]}, exact answers {exact}/8, "
            f"paraphrases {scores[2]}/24, adapter {adapter.stat().st_size:,} bytes"
        )
    # 8/8 is what this training gives here; one miss is allowed because the trained weights and
    # llama.cpp's greedy path both move a little with the CPU (issue 16), not more than that.
    assert exact >= 7, answers
    assert int(scores[1]) >= 7  # the same questions, scored by `finetune --eval` itself
    # Paraphrases are never trained on, so greedy words on them vary more across CPUs than the
    # trained answers do: the bar is well under what we measured (PARAPHRASE_FLOOR's comment).
    assert int(scores[2]) >= PARAPHRASE_FLOOR, result.out
    # The REPL and /api/chat go through ChatService with the same model and give what `run`
    # gave (equal on any CPU), which for the seed's first question is the trained answer here.
    assert chat("geek", ROWS[0]["content"]).strip() == answers[0]

    unrelated = chat("geek", UNRELATED)
    assert re.search(r"[A-Za-z]{3,}", unrelated), unrelated  # still answers in words
    assert unrelated.strip() not in {row["response"] for row in ROWS}

    assert base_state(store) == before  # same manifest, same blobs
    assert [chat("smollm2:135m", q) for q in (ROWS[0]["content"], UNRELATED)] == base_answers


@pytest.mark.timeout(1800)
def test_exported_adapter_reproduces_peft_logits_on_smollm2(smollm2_path, tmp_path):
    """llama.cpp on an F32 copy of the dequantised base (the very weights transformers trained)
    with our adapter (on the top 20 layers) must match peft; the same adapter without the q/k
    permutation must not."""
    import llama_cpp
    import torch

    from ollamacli.engine.base import ChatMessage as Message
    from ollamacli.finetune.export import (
        _load_safetensors,
        convert_peft_adapter,
        lora_from_state,
        write_lora_gguf,
    )
    from ollamacli.finetune.layout import BaseLayout
    from ollamacli.finetune.merged import GGUFMetadata, write_model_gguf
    from ollamacli.finetune.render import PromptFormat, tokenize_example
    from ollamacli.finetune.trainer import (
        TrainingConfig,
        load_base,
        merged_state,
        prepare,
        save_adapter,
        train,
    )
    from ollamacli.gguffile import read_gguf
    from tests.finetune.test_export import _unpermute

    loaded = load_base(smollm2_path)
    base_f32 = tmp_path / "base-f32.gguf"
    write_model_gguf(
        merged_state(loaded), GGUFMetadata.read(smollm2_path), base_f32, file_type="f32"
    )
    template = read_gguf(smollm2_path, with_tensors=False).chat_template
    fmt = PromptFormat.for_model(
        modelfile_template=None, gguf_template=template, special=("<|im_start|>", "<|im_end|>")
    )
    tokenized = [
        tokenize_example(e, fmt, loaded.encode, max_length=256) for e in load_dataset(EXAMPLE)
    ]
    # Adapters in the last 20 of the 30 layers (`--lora-layers 20`): the GGUF holds those
    # layers only, and llama.cpp applies them where peft does.
    config = TrainingConfig(max_steps=2, lora_layers=20)
    prepare(loaded, config)
    train(loaded, tokenized, config)
    loaded.model.eval()
    folder = save_adapter(loaded, tmp_path / "peft")
    adapter = convert_peft_adapter(folder, smollm2_path, tmp_path / "adapter.gguf")
    state = _load_safetensors(folder / "adapter_model.safetensors")
    for key in state:
        if "lora_B" in key and ("q_proj" in key or "k_proj" in key):
            state[key] = _unpermute(state[key], 9 if "q_proj" in key else 3)
    wrong = write_lora_gguf(
        lora_from_state(state, rank=16, alpha=32),
        BaseLayout.read(smollm2_path),
        tmp_path / "w.gguf",
    )

    blocks = {int(t.name.split(".")[1]) for t in read_gguf(adapter).tensors}
    assert blocks == set(range(10, 30))

    prompts = [list(t.input_ids) for t in tokenized[:2]]
    prompts.append(loaded.encode(fmt.template.render([Message("user", UNRELATED)])))
    for tokens in prompts:
        with torch.no_grad():
            expected = loaded.model(torch.tensor([tokens])).logits[0].numpy()
        scale = np.abs(expected).max()
        for lora, close in ((adapter, True), (wrong, False)):
            with plain_buffers_for_llama_class(llama_cpp.llama_cpp):
                llm = llama_cpp.Llama(
                    str(base_f32), n_ctx=512, logits_all=True, verbose=False, lora_path=str(lora)
                )
            try:
                llm.eval(tokens)
                got = np.array(llm.scores[: len(tokens)])
            finally:
                llm.close()
            error = np.abs(got - expected).max() / scale
            print(f"{lora.name}: max error {error:.4f} of the logit range")
            assert (error < 0.01) if close else (error > 0.03)
