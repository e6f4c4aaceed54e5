"""`finetune()` end to end on the tiny model: what lands in the store, and what never does."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest

from ollamacli.config import Settings
from ollamacli.errors import DatasetError, FinetuneError, InvalidRequestError
from ollamacli.finetune.dataset import load_dataset
from ollamacli.finetune.export import convert_to_temporary
from ollamacli.finetune.pipeline import FinetuneRequest, finetune
from ollamacli.finetune.trainer import TrainingConfig, TrainingStep
from ollamacli.gguffile import read_gguf
from ollamacli.names import ModelName
from ollamacli.progress import ProgressEvent
from ollamacli.service.models import CreateSpec, ModelService
from ollamacli.store import Store
from tests.factories import make_tiny_gguf

# Loading even the tiny model converts SmolLM2's tokenizer: ~10 s idle, minutes on a busy machine.
pytestmark = [pytest.mark.finetune, pytest.mark.slow, pytest.mark.timeout(900)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finetune" / "geektime.jsonl"
PARAPHRASES = EXAMPLE.with_name("geektime-paraphrases.jsonl")


@pytest.fixture
def models(settings: Settings, tiny_gguf: Path) -> ModelService:
    """A store holding `tiny` with a system message and parameters of its own."""
    service = ModelService(Store(settings.models), adapter_converter=convert_to_temporary)
    spec = CreateSpec(from_file=tiny_gguf, system="You are Tiny.", parameters={"temperature": 0.0})
    service.create("tiny", spec)
    return service


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def temp_leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("ollamacli-*")}


def test_lora_adds_an_adapter_layer_on_the_unchanged_base(models, tmp_path):
    base = models.store.resolve(ModelName.parse("tiny"))
    base_manifest = models.store.manifests.get(base.name).raw
    events: list[ProgressEvent] = []
    steps: list[TrainingStep] = []
    request = FinetuneRequest(
        "geek",
        "tiny",
        EXAMPLE,
        TrainingConfig(max_steps=2),
        adapter_out=tmp_path / "out",
        eval_data=PARAPHRASES,
    )
    (tmp_path / "out").mkdir()
    result = finetune(request, models, progress=events.append, on_step=steps.append)

    assert [(s.step, s.total, s.epoch) for s in steps] == [(1, 2, 1), (2, 2, 2)]
    # --eval rows are never trained on; their loss is measured each quarter (here every step)
    assert len(result.evaluation) == 24
    assert result.trained == tuple(load_dataset(EXAMPLE))
    assert result.eval_losses == tuple(s.eval_loss for s in steps)
    assert all(math.isfinite(x) and x > 0 for x in result.eval_losses)
    assert result.losses == tuple(s.loss for s in steps)
    assert all(math.isfinite(loss) and loss > 0 for loss in result.losses)
    assert result.examples == 8
    new = models.store.resolve(ModelName.parse("geek"))
    assert new.model_path == base.model_path  # BASE's model layer, shared
    assert (new.template, new.system, new.parameters) == (
        base.template,
        "You are Tiny.",
        {"temperature": 0.0},
    )
    (adapter,) = new.adapters
    info = read_gguf(adapter)
    assert info.is_adapter
    assert info.metadata["adapter.lora.alpha"] == 32.0
    assert len(info.tensors) == 2 * 7 * 2  # blocks x projections x (lora_a, lora_b)
    assert result.exported == tmp_path / "out" / "adapter.gguf"
    assert (tmp_path / "out" / "adapter.gguf").read_bytes() == adapter.read_bytes()
    assert models.store.manifests.get(base.name).raw == base_manifest
    statuses = [e.status for e in events if not e.total]
    assert statuses[:3] == [
        "loading tiny:latest into transformers",
        "training on 8 examples",
        "exporting LoRA adapter as GGUF",
    ]
    assert statuses[-1] == "success"


def test_rewrites_base_answers_and_a_system_message_are_trained_and_kept(models):
    from ollamacli.engine.base import ChatMessage
    from ollamacli.finetune.dataset import Example

    asked: list[int] = []

    def rehearsal(count: int) -> list[Example]:
        asked.append(count)
        messages = (ChatMessage("user", "How many legs?"), ChatMessage("assistant", "Eight."))
        return [Example(messages, f"base model answer {n}") for n in range(count)]

    config = TrainingConfig(max_steps=1, early_stop=1)
    request = FinetuneRequest(
        "geek",
        "tiny",
        EXAMPLE,
        config,
        augment=3,
        augment_codeswitch=1,
        keep_base=2,
        system="You are Xiao Ji.",
    )
    result = finetune(request, models, rehearsal=rehearsal)
    # 8 rows, 2 of each row's 3 rewrites (the third is the validation row), a code-switched
    # copy of each, 2 base answers
    assert (result.examples, asked) == (8 + 16 + 8 + 2, [2])
    assert result.trained == tuple(load_dataset(EXAMPLE))
    assert models.store.resolve(ModelName.parse("geek")).system == "You are Xiao Ji."


def test_ctrl_c_during_training_writes_nothing(models, tmp_path):
    before, leftovers = snapshot(models.store.root), temp_leftovers()

    def interrupt(step: TrainingStep) -> None:
        if step.step == 2:
            raise KeyboardInterrupt

    request = FinetuneRequest(
        "geek", "tiny", EXAMPLE, TrainingConfig(max_steps=4), adapter_out=tmp_path / "a.gguf"
    )
    with pytest.raises(KeyboardInterrupt):
        finetune(request, models, on_step=interrupt)
    assert snapshot(models.store.root) == before
    assert not (tmp_path / "a.gguf").exists()
    assert temp_leftovers() <= leftovers


def test_full_training_stores_a_merged_model_with_the_bases_settings(models, tiny_gguf):
    import gguf
    import numpy as np

    request = FinetuneRequest(
        "geek-full",
        "tiny",
        EXAMPLE,
        TrainingConfig(method="full", max_steps=1, learning_rate=1e-3),
        file_type="f16",
    )
    finetune(request, models)
    new = models.store.resolve(ModelName.parse("geek-full"))
    assert new.adapters == ()
    assert (new.system, new.parameters) == ("You are Tiny.", {"temperature": 0.0})
    info = read_gguf(new.model_path)
    assert info.file_type == "F16"
    assert {t.name for t in info.tensors} == {t.name for t in read_gguf(tiny_gguf).tensors}

    def tensor(path: Path, name: str) -> np.ndarray:
        found = [t for t in gguf.GGUFReader(str(path)).tensors if t.name == name]
        return np.asarray(found[0].data, dtype=np.float32)

    trained = tensor(new.model_path, "blk.0.ffn_up.weight")
    original = tensor(tiny_gguf, "blk.0.ffn_up.weight")
    assert not np.allclose(trained, original, atol=1e-4)  # the weights moved
    assert np.allclose(trained, original, atol=0.05)  # by one small step


def test_refusals_happen_before_any_training(models, tmp_path):
    before = snapshot(models.store.root)
    with pytest.raises(InvalidRequestError, match="needs a name other than its base 'tiny:latest'"):
        finetune(FinetuneRequest("tiny", "tiny", EXAMPLE), models)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"content": "Q", "response": "A"}\n{"content": "Q"}\n')
    with pytest.raises(DatasetError, match=rf"^{bad}:2: missing 'response'$"):
        finetune(FinetuneRequest("geek", "tiny", bad), models)
    assert snapshot(models.store.root) == before
    adapter = make_tiny_gguf(tmp_path / "lora.gguf", adapter=True)
    models.create("tiny-lora", CreateSpec(from_model="tiny", adapter_files=(adapter,)))
    with pytest.raises(FinetuneError, match="'tiny-lora:latest' already has an adapter"):
        finetune(FinetuneRequest("geek", "tiny-lora", EXAMPLE), models)


def test_ctrl_c_while_registering_leaves_no_blobs_behind(models):
    before = snapshot(models.store.root)

    def interrupt(event: ProgressEvent) -> None:
        if event.status == "writing manifest":  # every blob is in, the manifest is not
            raise KeyboardInterrupt

    request = FinetuneRequest("geek", "tiny", EXAMPLE, TrainingConfig(max_steps=1))
    with pytest.raises(KeyboardInterrupt):
        finetune(request, models, progress=interrupt)
    assert snapshot(models.store.root) == before


def test_a_full_model_in_a_k_quant_is_created_from_f16_with_create_quantize(models, tmp_path):
    """No training needed: what `_spec` hands `create` for `--method full -q q4_K_M`."""
    from ollamacli.finetune.pipeline import _spec

    base = models.store.resolve(ModelName.parse("tiny"))
    artefact = tmp_path / "model.gguf"
    for file_type, quantize in (("q4_K_M", "Q4_K_M"), ("q4_K_S", "Q4_K_S"), ("q8_0", None)):
        request = FinetuneRequest(
            "n", "tiny", EXAMPLE, TrainingConfig(method="full"), file_type=file_type
        )
        spec = _spec(request, base, artefact)
        assert (spec.from_file, spec.quantize, spec.system) == (artefact, quantize, "You are Tiny.")
