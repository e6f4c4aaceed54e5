"""Manifests: `manifests/<host>/<namespace>/<model>/<tag>`, in Ollama's own JSON format.

A manifest lists a config blob and layers by media type. Manifests are written atomically and
only after every blob they name is in the store; pulled manifests are stored byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Final

from ollamacli.errors import ModelNotFoundError, StoreError
from ollamacli.names import ModelName
from ollamacli.store.blobs import Digest, parse_digest
from ollamacli.store.failures import os_errors

MANIFEST_MEDIA_TYPE: Final = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE: Final = "application/vnd.docker.container.image.v1+json"
MEDIA_MODEL: Final = "application/vnd.ollama.image.model"
MEDIA_ADAPTER: Final = "application/vnd.ollama.image.adapter"
MEDIA_PROJECTOR: Final = "application/vnd.ollama.image.projector"
MEDIA_TEMPLATE: Final = "application/vnd.ollama.image.template"
MEDIA_PROMPT: Final = "application/vnd.ollama.image.prompt"  # legacy name for a template
MEDIA_SYSTEM: Final = "application/vnd.ollama.image.system"
MEDIA_PARAMS: Final = "application/vnd.ollama.image.params"
MEDIA_LICENSE: Final = "application/vnd.ollama.image.license"
MEDIA_MESSAGES: Final = "application/vnd.ollama.image.messages"


@dataclass(frozen=True, slots=True)
class Layer:
    """One entry of a manifest: a blob and what it holds."""

    media_type: str
    digest: Digest
    size: int
    source: str | None = None  # Ollama's "from": the model this layer came from

    def to_json(self) -> dict[str, object]:
        """The layer as Ollama writes it."""
        data: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.source:
            data["from"] = self.source
        return data

    @classmethod
    def from_json(cls, data: object) -> Layer:
        """Parse a layer object; raises `StoreError` when it is malformed."""
        if not isinstance(data, dict):
            raise StoreError("malformed manifest: a layer is not an object")
        media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
        if not isinstance(media_type, str) or not isinstance(digest, str):
            raise StoreError("malformed manifest: a layer lacks mediaType or digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise StoreError("malformed manifest: a layer has no valid size")
        source = data.get("from")
        try:
            parsed = parse_digest(digest)
        except ValueError as exc:
            raise StoreError(f"malformed manifest: bad digest {digest!r}") from exc
        return cls(media_type, parsed, size, source if isinstance(source, str) else None)


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest."""

    config: Layer
    layers: tuple[Layer, ...]

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        """Parse manifest bytes; raises `StoreError` when they are not a v2 manifest."""
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"malformed manifest: {exc}") from exc
        if not isinstance(body, dict) or body.get("schemaVersion") != 2:
            raise StoreError("malformed manifest: schemaVersion must be 2")
        layers = body.get("layers")
        if not isinstance(layers, list):
            raise StoreError("malformed manifest: layers must be a list")
        return cls(
            config=Layer.from_json(body.get("config")),
            layers=tuple(Layer.from_json(layer) for layer in layers),
        )

    def to_bytes(self) -> bytes:
        """Serialise as Ollama does (compact JSON)."""
        body = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @property
    def digests(self) -> tuple[Digest, ...]:
        """Every blob the manifest refers to: the layers, then the config."""
        return (*(layer.digest for layer in self.layers), self.config.digest)

    @property
    def size(self) -> int:
        """Total size of the layers and config, as `list` shows it."""
        return self.config.size + sum(layer.size for layer in self.layers)

    def find(self, *media_types: str) -> list[Layer]:
        """The layers with any of these media types, in manifest order."""
        return [layer for layer in self.layers if layer.media_type in media_types]


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """A manifest found in the store."""

    name: ModelName
    path: Path
    manifest: Manifest
    raw: bytes
    modified: datetime

    @property
    def digest(self) -> str:
        """sha256 hex of the manifest bytes: the model's ID in `list`."""
        return hashlib.sha256(self.raw).hexdigest()


class ManifestStore:
    """The `manifests/` folder of a model store."""

    def __init__(self, root: Path) -> None:
        self.root = root / "manifests"

    def path_for(self, name: ModelName) -> Path:
        """Where the manifest for this exact spelling of a name lives."""
        return self.root.joinpath(*name.parts)

    def locate(self, name: ModelName) -> Path | None:
        """The existing manifest file for a name, matched case-insensitively like Ollama."""
        with os_errors("cannot read the model store", where=self.root, name=name.short):
            return self._locate(name)

    def _locate(self, name: ModelName) -> Path | None:
        exact = self.path_for(name)
        if exact.is_file():
            return exact
        folder = self.root
        for part in name.parts:
            if not folder.is_dir():
                return None
            matches = [entry for entry in folder.iterdir() if entry.name.lower() == part.lower()]
            if not matches:
                return None
            folder = matches[0]
        return folder if folder.is_file() else None

    def get(self, name: ModelName) -> ManifestEntry:
        """The manifest for a name; raises `ModelNotFoundError` when there is none."""
        path = self.locate(name)
        if path is None:
            raise ModelNotFoundError(name.short)
        with os_errors("cannot read a manifest", where=path):
            return self._entry(path)

    def exists(self, name: ModelName) -> bool:
        """True when a manifest exists for the name."""
        return self.locate(name) is not None

    def write(self, name: ModelName, data: bytes) -> Path:
        """Atomically write manifest bytes (reusing an existing path of another letter case)."""
        Manifest.parse(data)  # never store something we could not read back
        path = self.locate(name) or self.path_for(name)
        temp = path.parent / f".{path.name}.tmp-{os.getpid()}"
        with os_errors("cannot write a manifest", where=path, name=name.short):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                temp.write_bytes(data)
                temp.replace(path)
            except OSError:
                with contextlib.suppress(OSError):
                    temp.unlink(missing_ok=True)
                raise
        return path

    def delete(self, name: ModelName) -> Manifest:
        """Remove a manifest and empty folders above it; returns what it listed."""
        entry = self.get(name)
        with os_errors("cannot remove a manifest", where=entry.path):
            entry.path.unlink()
        folder = entry.path.parent
        while folder != self.root and folder.is_dir():
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty
            folder = folder.parent
        return entry.manifest

    def entries(self) -> list[ManifestEntry]:
        """Every readable manifest (exactly four levels deep, as Ollama globs them)."""
        with os_errors("cannot list the model store", where=self.root):
            if not self.root.is_dir():
                return []
            paths = list(self.root.glob("*/*/*/*"))
        found = []
        for path in paths:
            # One unreadable or malformed manifest must not hide the others.
            with contextlib.suppress(StoreError, ValueError, OSError):
                if path.is_file() and not path.name.startswith("."):
                    found.append(self._entry(path))
        return found

    def _entry(self, path: Path) -> ManifestEntry:
        raw = path.read_bytes()
        rel = path.relative_to(self.root).parts
        name = ModelName.parse(f"{rel[0]}/{rel[1]}/{rel[2]}:{rel[3]}")
        modified = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
        return ManifestEntry(name, path, Manifest.parse(raw), raw, modified)
