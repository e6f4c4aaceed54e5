"""`finetune`: dataset -> training -> GGUF export -> a new model in the store, in one call.

Nothing is written to the store until training and export have finished: the work happens in a
temporary folder, so an interrupt (Ctrl-C) or an error leaves the store exactly as it was. The
new model is BASE's layers plus an adapter layer (LoRA), or a new model layer carrying over
BASE's template, system message, parameters and messages (full).
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ollamacli.engine.base import ChatMessage
from ollamacli.engine.quantize import parse_quantize_type
from ollamacli.errors import FinetuneError, InvalidRequestError
from ollamacli.finetune.augment import (
    Paraphraser,
    Rehearsal,
    augment,
    deletion_paraphraser,
    rule_paraphraser,
)
from ollamacli.finetune.codeswitch import codeswitch_paraphraser
from ollamacli.finetune.dataset import Example, load_dataset
from ollamacli.finetune.evaluate import split_held_out
from ollamacli.finetune.export import convert_peft_adapter
from ollamacli.finetune.keywords import augment_keywords
from ollamacli.finetune.merged import FILE_TYPES, FileType, GGUFMetadata, write_model_gguf
from ollamacli.finetune.render import PromptFormat, TokenizedExample, tokenize_example
from ollamacli.finetune.trainer import (
    LoadedBase,
    StepSink,
    TrainingConfig,
    TrainingStep,
    ignore_step,
    load_base,
    merged_state,
    prepare,
    require_stack,
    save_adapter,
    train,
)
from ollamacli.gguffile import read_gguf
from ollamacli.modelfile import Message
from ollamacli.names import ModelName
from ollamacli.parameters import options_from_json
from ollamacli.progress import ProgressEvent, ProgressSink, ignore_progress
from ollamacli.service.chat import ChatService
from ollamacli.service.models import CreateSpec, ModelService
from ollamacli.store import ResolvedModel


@dataclass(frozen=True, slots=True)
class FinetuneRequest:
    """What to train, from what, on which data."""

    name: str
    base: str
    data: Path
    training: TrainingConfig = field(default_factory=TrainingConfig)
    file_type: str = "f16"
    """How the merged model (--method full) is stored: f32, f16 and q8_0 are written directly;
    another type `create --quantize` accepts (q4_K_M, q4_K_S) is quantized by llama.cpp from F16."""
    adapter_out: Path | None = None  # also write the GGUF (adapter, or merged model) here
    eval_data: Path | None = None
    """Rows never trained on, scored after training (and their loss measured while training);
    without it, a large dataset has rows held out instead (`evaluate.split_held_out`)."""
    augment: int = 0  # rewrites of each question added before training (--augment N)
    augment_deletions: int = 0
    """Rewrites of each question with one character or word left out (--augment-deletions N)."""
    augment_codeswitch: int = 0
    """Rewrites of each Chinese question with words in English (--augment-codeswitch N)."""
    augment_keywords: int = 0
    """Short questions made of each answer's distinctive words (--augment-keywords N)."""
    keep_base: int = 0
    """General questions answered by BASE itself, trained alongside (--keep-base N)."""
    system: str | None = None
    """Trained as the system message of every row without one, and the new model's SYSTEM (so
    inference asks with the context training saw); None keeps the base model's."""

    def __post_init__(self) -> None:
        if self.training.early_stop and self.augment < 2:
            raise InvalidRequestError(
                "--early-stop needs --augment 2 or more",
                hint="its validation rows are one rewrite of each question, never trained on",
            )
        if self.file_type.lower() not in FILE_TYPES:
            parse_quantize_type(self.file_type)  # refuse an unknown type before training

    @property
    def written_type(self) -> FileType:
        """The type the merged GGUF is written in (before any llama.cpp quantization)."""
        lower = self.file_type.lower()
        return next((t for t in FILE_TYPES if t == lower), "f16")

    @property
    def quantize(self) -> str | None:
        """The llama.cpp quantization `create` applies to the merged model, if any."""
        return None if self.file_type.lower() in FILE_TYPES else self.file_type


@dataclass(frozen=True, slots=True)
class FinetuneResult:
    """What a finished fine-tune produced, with timings in seconds."""

    name: ModelName
    examples: int
    losses: tuple[float, ...]
    load_seconds: float
    train_seconds: float
    exported: Path | None = None  # the copy written to `adapter_out`
    trained: tuple[Example, ...] = ()  # the dataset's rows trained on (before --augment)
    evaluation: tuple[Example, ...] = ()  # the --eval rows, or the held-out ones
    eval_losses: tuple[float, ...] = ()  # measured on `evaluation` during training
    main: bool = True
    """False in the other processes of a launched group: they trained their share and wrote
    nothing (the main process exports and registers the model)."""

    @property
    def final_loss(self) -> float:
        """The loss of the last step."""
        return self.losses[-1] if self.losses else float("nan")


def finetune(
    request: FinetuneRequest,
    models: ModelService,
    *,
    progress: ProgressSink = ignore_progress,
    on_step: StepSink = ignore_step,
    paraphraser: Paraphraser | None = None,
    rehearsal: Rehearsal | None = None,
) -> FinetuneResult:
    """Train NEW_NAME from BASE on a dataset and register it; see the module docstring.

    `paraphraser` rewrites questions for `request.augment` (rules when None); `rehearsal`
    gives BASE's own answers to general questions for `request.keep_base`."""
    target = ModelName.parse(request.name)
    examples, evaluation = _datasets(request)
    require_stack()
    base = _base(request, target, models, progress)
    rows, examples = examples, _augmented(request, examples, paraphraser, progress)
    examples, validation = validation_split(examples, request)
    if request.keep_base:
        if rehearsal is None:
            raise InvalidRequestError("--keep-base needs the base model to answer questions")
        progress(ProgressEvent(f"asking {base.name.short} {request.keep_base} general questions"))
        examples = [*examples, *rehearsal(request.keep_base)]
    asked = evaluation
    if request.system is not None:
        examples, asked = with_system(examples, request.system), with_system(asked, request.system)
        validation = with_system(validation, request.system)
    progress(ProgressEvent(f"loading {base.name.short} into transformers"))
    started = time.monotonic()
    loaded = load_base(base.model_path)
    tokenized = _tokenize(
        examples,
        base,
        loaded,
        request.training.max_seq_length,
        prompt=request.training.prompt_loss > 0,
    )
    held_out = _tokenize(asked, base, loaded, request.training.max_seq_length)
    checked = _tokenize(validation, base, loaded, request.training.max_seq_length)
    prepare(loaded, request.training)
    load_seconds = time.monotonic() - started
    progress(ProgressEvent(f"training on {len(examples)} examples"))
    eval_losses: list[float] = []

    def step(report: TrainingStep) -> None:
        if report.eval_loss is not None:
            eval_losses.append(report.eval_loss)
        on_step(report)

    started = time.monotonic()
    losses = train(loaded, tokenized, request.training, step, held_out, checked)
    train_seconds = time.monotonic() - started
    if loaded.rank != 0:
        return FinetuneResult(
            target, len(examples), tuple(losses), load_seconds, train_seconds, main=False
        )
    with tempfile.TemporaryDirectory(prefix="ollamacli-finetune-") as tmp:
        artefact = _export(request, base, loaded, Path(tmp), progress)
        exported = _copy_out(artefact, request.adapter_out)
        _register(models, request.name, _spec(request, base, artefact), progress)
    return FinetuneResult(
        target,
        len(examples),
        tuple(losses),
        load_seconds,
        train_seconds,
        exported,
        trained=tuple(rows),
        evaluation=tuple(evaluation),
        eval_losses=tuple(eval_losses),
    )


def _augmented(
    request: FinetuneRequest,
    examples: list[Example],
    paraphraser: Paraphraser | None,
    progress: ProgressSink,
) -> list[Example]:
    rows = examples
    if request.augment:
        progress(ProgressEvent(f"rewriting each question {request.augment} ways"))
        rewrite = paraphraser or rule_paraphraser(request.training.seed)
        examples = augment(examples, rewrite, request.augment)
    if request.augment_deletions:
        cut = deletion_paraphraser(request.training.seed)
        examples += augment(rows, cut, request.augment_deletions, label="deletion")[len(rows) :]
    if request.augment_codeswitch:
        switch = codeswitch_paraphraser(request.training.seed)
        added = augment(rows, switch, request.augment_codeswitch, label="codeswitch")
        examples += added[len(rows) :]
    if request.augment_keywords:
        examples += augment_keywords(rows, request.augment_keywords, request.training.seed)
    return examples


def validation_split(
    examples: list[Example], request: FinetuneRequest
) -> tuple[list[Example], list[Example]]:
    """(rows to train on, validation rows): with --early-stop, each question's last rewrite is
    kept out of training to measure the validation loss on (rewrites of trained questions, so
    the --eval rows stay unseen)."""
    if not request.training.early_stop:
        return examples, []
    last = f"(rewrite {request.augment})"
    validation = [e for e in examples if e.location.endswith(last)]
    return [e for e in examples if not e.location.endswith(last)], validation


def with_system(examples: list[Example], system: str) -> list[Example]:
    """The examples, each row without a system message of its own starting with `system`."""
    return [
        e
        if e.messages[0].role == "system"
        else Example((ChatMessage("system", system), *e.messages), e.location)
        for e in examples
    ]


def _datasets(request: FinetuneRequest) -> tuple[list[Example], list[Example]]:
    """(rows to train on, rows to evaluate on), every row checked before anything loads."""
    examples = load_dataset(request.data)
    if request.eval_data is not None:
        return examples, load_dataset(request.eval_data)
    return split_held_out(examples, request.training.seed)


def _base(
    request: FinetuneRequest, target: ModelName, models: ModelService, progress: ProgressSink
) -> ResolvedModel:
    base = models.ensure(request.base, progress)
    if base.name.key == target.key:
        raise InvalidRequestError(
            f"the new model needs a name other than its base '{base.name.short}'",
            hint="the base model stays as it is; pick a new name for the fine-tuned one",
        )
    if base.adapters:
        raise FinetuneError(
            f"'{base.name.short}' already has an adapter",
            hint="fine-tune its base model instead",
        )
    return base


def prompt_format(base: ResolvedModel, loaded: LoadedBase) -> PromptFormat:
    """How inference renders conversations for BASE (template, system, MESSAGE rows, BOS)."""
    info = read_gguf(base.model_path, with_tensors=False)
    tokenizer = loaded.tokenizer
    add_bos = info.metadata.get("tokenizer.ggml.add_bos_token") is True
    return PromptFormat.for_model(
        modelfile_template=base.template,
        gguf_template=info.chat_template,
        assemble=functools.partial(ChatService.conversation, base),
        special=(tokenizer.bos_token or "", tokenizer.eos_token or ""),
        bos_id=tokenizer.bos_token_id if add_bos else None,
    )


def _tokenize(
    examples: list[Example],
    base: ResolvedModel,
    loaded: LoadedBase,
    max_length: int,
    *,
    prompt: bool = False,
) -> list[TokenizedExample]:
    fmt = prompt_format(base, loaded)
    return [
        tokenize_example(e, fmt, loaded.encode, max_length=max_length, prompt=prompt)
        for e in examples
    ]


def _export(
    request: FinetuneRequest,
    base: ResolvedModel,
    loaded: LoadedBase,
    folder: Path,
    progress: ProgressSink,
) -> Path:
    if request.training.method == "full":
        progress(ProgressEvent(f"writing merged model ({request.written_type.upper()})"))
        out = folder / "model.gguf"
        written = write_model_gguf(
            merged_state(loaded),
            GGUFMetadata.read(base.model_path),
            out,
            file_type=request.written_type,
        )
        expected = {t.name for t in read_gguf(base.model_path).tensors}
        if set(written) != expected:
            raise FinetuneError(
                "the merged model's tensors differ from the base model's: "
                f"missing {sorted(expected - set(written))[:5]}, extra {sorted(set(written) - expected)[:5]}"
            )
        return out
    progress(ProgressEvent("exporting LoRA adapter as GGUF"))
    peft_folder = save_adapter(loaded, folder / "peft")
    return convert_peft_adapter(peft_folder, base.model_path, folder / "adapter.gguf")


def _copy_out(artefact: Path, destination: Path | None) -> Path | None:
    if destination is None:
        return None
    destination = destination.expanduser()
    if destination.is_dir():
        destination = destination / artefact.name
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artefact, destination)
    return destination


def _register(models: ModelService, name: str, spec: CreateSpec, progress: ProgressSink) -> None:
    """`create`; if it fails or is interrupted before the manifest is written, the blobs it
    added and nothing refers to are removed again, so the store holds nothing of the model."""
    blobs = models.store.blobs
    before = set(blobs.digests())
    try:
        models.create(name, spec, progress)
    except BaseException:
        with models.store.locked():
            for digest in set(blobs.digests()) - before - models.store.referenced():
                blobs.delete(digest)
        raise


def _spec(request: FinetuneRequest, base: ResolvedModel, artefact: Path) -> CreateSpec:
    if request.training.method == "lora":
        return CreateSpec(
            from_model=base.name.short, adapter_files=(artefact,), system=request.system
        )
    return CreateSpec(
        from_file=artefact,
        template=base.template,
        system=base.system if request.system is None else request.system,
        parameters=options_from_json(base.parameters) if base.parameters else None,
        messages=tuple(
            Message(str(m.get("role", "user")), str(m.get("content", ""))) for m in base.messages
        )
        or None,
        licenses=base.licenses or None,
        quantize=request.quantize,
    )
