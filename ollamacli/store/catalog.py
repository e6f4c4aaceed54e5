"""The model store as a whole: resolve a name to its files, commit, copy and delete models.

Every change to the set of manifests happens under one file lock, and a manifest is only
written after checking that every blob it names is present. Removing or overwriting a
manifest deletes the blobs no remaining manifest refers to.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ollamacli.errors import BlobNotFoundError, StoreError
from ollamacli.names import ModelName
from ollamacli.store.blobs import PARTIAL_SUFFIX, TEMP_PREFIX, BlobStore, Digest
from ollamacli.store.manifests import (
    MEDIA_ADAPTER,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_PROMPT,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    Manifest,
    ManifestEntry,
    ManifestStore,
)

LOCK_NAME = ".ollamacli.lock"
PRUNE_GRACE_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """Everything needed to run a model, read from its manifest and blobs."""

    name: ModelName
    digest: str
    modified: datetime
    manifest: Manifest
    model_path: Path
    config: dict[str, object] = field(default_factory=dict)
    adapters: tuple[Path, ...] = ()
    projectors: tuple[Path, ...] = ()
    template: str | None = None
    system: str | None = None
    parameters: dict[str, object] = field(default_factory=dict)
    messages: tuple[dict[str, object], ...] = ()
    licenses: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Bytes on disk, as `list` shows them."""
        return self.manifest.size


class Store:
    """A model store rooted at `OLLAMA_MODELS`, in Ollama's on-disk layout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = BlobStore(root)
        self.manifests = ManifestStore(root)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock (for changes to the set of manifests)."""
        from filelock import FileLock  # imported here: `list` never locks, and starts faster

        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / LOCK_NAME)):
            yield

    def resolve(self, name: ModelName) -> ResolvedModel:
        """Load a model's manifest and the small blobs it refers to."""
        entry = self.manifests.get(name)
        return self._resolve_entry(entry)

    def _resolve_entry(self, entry: ManifestEntry) -> ResolvedModel:
        manifest = entry.manifest
        models = manifest.find(MEDIA_MODEL)
        if not models:
            raise StoreError(f"model '{entry.name.short}' has no model layer")
        templates = manifest.find(MEDIA_TEMPLATE, MEDIA_PROMPT)
        systems = manifest.find(MEDIA_SYSTEM)
        params = manifest.find(MEDIA_PARAMS)
        messages = manifest.find(MEDIA_MESSAGES)
        return ResolvedModel(
            name=entry.name,
            digest=entry.digest,
            modified=entry.modified,
            manifest=manifest,
            model_path=self.blobs.require(models[0].digest),
            config=self._json_object(manifest.config.digest),
            adapters=tuple(self.blobs.require(la.digest) for la in manifest.find(MEDIA_ADAPTER)),
            projectors=tuple(
                self.blobs.require(la.digest) for la in manifest.find(MEDIA_PROJECTOR)
            ),
            template=self._text(templates[-1].digest) if templates else None,
            system=self._text(systems[-1].digest) if systems else None,
            parameters=self._json_object(params[-1].digest) if params else {},
            messages=tuple(self._json_list(messages[-1].digest)) if messages else (),
            licenses=tuple(self._text(la.digest) for la in manifest.find(MEDIA_LICENSE)),
        )

    def entries(self) -> list[ManifestEntry]:
        """Every model, newest first."""
        return sorted(self.manifests.entries(), key=lambda e: e.modified, reverse=True)

    def commit(self, name: ModelName, data: bytes, *, prune: bool = True) -> list[Digest]:
        """Write a manifest once all its blobs exist; returns the blobs this made unused.

        With `prune` (the default) the blobs the name's previous manifest used and no manifest
        uses now are deleted; without it (`OLLAMA_NOPRUNE`) they stay and none is returned.
        """
        manifest = Manifest.parse(data)
        with self.locked():
            for digest in manifest.digests:
                if not self.blobs.exists(digest):
                    raise BlobNotFoundError(digest)
            previous = self._current(name)
            self.manifests.write(name, data)
            if not prune or previous is None:
                return []
            stale = [d for d in previous.digests if d not in manifest.digests]
            return self._remove_unreferenced(stale)

    def copy(self, source: ModelName, destination: ModelName) -> None:
        """Point a new name at the same manifest."""
        entry = self.manifests.get(source)
        self.commit(destination, entry.raw)

    def delete(self, name: ModelName) -> list[Digest]:
        """Remove a model and every blob no other model uses; returns the removed blobs."""
        with self.locked():
            manifest = self.manifests.delete(name)
            return self._remove_unreferenced(list(manifest.digests))

    def prune(self, *, grace_seconds: float = PRUNE_GRACE_SECONDS) -> list[Path]:
        """Delete unreferenced blobs, stale temporary files and abandoned downloads.

        Only files untouched for the grace period go. A download in progress is one unit (its
        `-partial` data file, `-partial-<N>` part files and lock): it is removed whole once
        none of its files changed for the grace period (Ollama removes partial downloads at
        start-up too), never piecemeal, which would leave a download that cannot resume.
        """
        removed: list[Path] = []
        if not self.blobs.root.is_dir():
            return removed
        with self.locked():
            referenced = self.referenced()
            cutoff = time.time() - grace_seconds
            downloads: dict[str, list[Path]] = {}
            for entry in self.blobs.root.iterdir():
                if not entry.is_file():
                    continue
                name = entry.name
                if name.startswith("sha256-") and PARTIAL_SUFFIX in name:
                    downloads.setdefault(name[: name.index(PARTIAL_SUFFIX)], []).append(entry)
                    continue
                if entry.stat().st_mtime > cutoff:
                    continue
                stale_blob = (
                    name.startswith("sha256-") and name.replace("-", ":", 1) not in referenced
                )
                if name.startswith(TEMP_PREFIX) or stale_blob:
                    entry.unlink(missing_ok=True)
                    removed.append(entry)
            for files in downloads.values():
                if all(_mtime(path) <= cutoff for path in files):
                    for path in files:
                        path.unlink(missing_ok=True)
                        removed.append(path)
        return removed

    def referenced(self) -> set[Digest]:
        """Every digest some manifest refers to."""
        return {digest for entry in self.manifests.entries() for digest in entry.manifest.digests}

    def _current(self, name: ModelName) -> Manifest | None:
        path = self.manifests.locate(name)
        if path is None:
            return None
        try:
            return Manifest.parse(path.read_bytes())
        except StoreError:
            return None

    def _remove_unreferenced(self, candidates: list[Digest]) -> list[Digest]:
        if not candidates:
            return []
        referenced = self.referenced()
        removed = []
        for digest in dict.fromkeys(candidates):
            if digest not in referenced and self.blobs.exists(digest):
                self.blobs.delete(digest)
                removed.append(digest)
        return removed

    def _text(self, digest: Digest) -> str:
        return self.blobs.read_bytes(digest).decode("utf-8", errors="replace")

    def _json_object(self, digest: Digest) -> dict[str, object]:
        value = self._json(digest)
        return value if isinstance(value, dict) else {}

    def _json_list(self, digest: Digest) -> list[dict[str, object]]:
        value = self._json(digest)
        if not isinstance(value, list):
            return []
        return [item for item in value if isinstance(item, dict)]

    def _json(self, digest: Digest) -> object:
        try:
            return json.loads(self.blobs.read_bytes(digest))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"blob {digest} is not valid JSON") from exc


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
