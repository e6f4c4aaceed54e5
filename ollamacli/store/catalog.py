"""The model store as a whole: resolve a name to its files, commit, copy and delete models.

Every change to the set of manifests happens under one file lock, and a manifest is only
written after checking that every blob it names is present. Removing or overwriting a
manifest deletes the blobs no remaining manifest refers to.

Leftovers of writers that died (kill -9 during a copy, a crash between the blob and the
manifest) are found through their writer leases (`store.writers`) and removed by `cleanup`,
which the next create, pull and rm run; `prune` (serve's start-up, unless OLLAMA_NOPRUNE) also
removes unreferenced blobs and abandoned downloads after a grace period.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ollamacli.errors import BlobNotFoundError, StoreError
from ollamacli.names import ModelName
from ollamacli.store import writers
from ollamacli.store.blobs import LOCK_NAME, PARTIAL_SUFFIX, WRITE_FAILED, BlobStore, Digest
from ollamacli.store.failures import os_errors
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

__all__ = ["LOCK_NAME", "PRUNE_GRACE_SECONDS", "ResolvedModel", "Store"]

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
        with self.blobs.locked():
            yield

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Run an operation that adds blobs (create, pull) under one writer lease.

        If the operation fails, the blobs it made that no manifest references are removed
        (whatever OLLAMA_NOPRUNE says: they never belonged to a model). Nested calls (create
        pulling its FROM model) share the outer lease.
        """
        if writers.current(self.blobs.root) is not None:
            yield
            return
        with os_errors(WRITE_FAILED, where=self.blobs.root):
            lease = writers.acquire(self.blobs.root)
        try:
            with writers.holding(lease):
                yield
        except BaseException:
            made = [Digest(d) for d in lease.made]
            lease.release()  # first, so that our own lease no longer spares them
            with contextlib.suppress(OSError, StoreError):
                self._collect(made)
            raise
        lease.release()

    def cleanup(self, *, prune: bool = True) -> list[Path]:
        """Remove what dead writers left behind: their temporary files and the blobs they made
        that no manifest references (nothing a live writer holds is touched).

        With `prune` (not OLLAMA_NOPRUNE), downloads abandoned for the grace period go too.
        Create, pull and rm run this first.
        """
        return self.prune(unreferenced=False) if prune else self._collect([])

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

    def prune(
        self, *, grace_seconds: float = PRUNE_GRACE_SECONDS, unreferenced: bool = True
    ) -> list[Path]:
        """`cleanup`, plus abandoned downloads and (with `unreferenced`) unreferenced blobs.

        Only files untouched for the grace period go. A download in progress is one unit (its
        `-partial` data file, `-partial-<N>` part files and lock): it is removed whole once
        none of its files changed for the grace period and no process holds its lock (Ollama
        removes partial downloads at start-up too), never piecemeal, which would leave a
        download that cannot resume.
        """
        if not self.blobs.root.is_dir():
            return []
        with self.locked(), os_errors("cannot clean up the model store", where=self.root):
            removed = self._sweep([])
            referenced = self.referenced()
            cutoff = time.time() - grace_seconds
            downloads: dict[str, list[Path]] = {}
            for entry in self.blobs.root.iterdir():
                name = entry.name
                if name.startswith("sha256-") and PARTIAL_SUFFIX in name:
                    downloads.setdefault(name[: name.index(PARTIAL_SUFFIX)], []).append(entry)
                elif _is_stale(entry, cutoff, referenced if unreferenced else None):
                    entry.unlink(missing_ok=True)
                    removed.append(entry)
            for files in downloads.values():
                if _is_abandoned(files, cutoff):
                    for path in files:
                        path.unlink(missing_ok=True)
                        removed.append(path)
        return removed

    def _collect(self, made: Iterable[Digest]) -> list[Path]:
        """`_sweep` under the store lock."""
        if not self.blobs.root.is_dir():
            return []
        with self.locked(), os_errors("cannot clean up the model store", where=self.root):
            return self._sweep(made)

    def _sweep(self, made: Iterable[Digest]) -> list[Path]:
        """Remove dead writers' leftovers and the blobs in `made` (a failed writer's own),
        sparing any blob a manifest references or a live writer has recorded.

        Runs under the store lock, as blobs only enter the store under it (`BlobStore.place`).
        """
        dead, live, spared = writers.survey(self.blobs.root)
        removed: list[Path] = []
        try:
            doomed = {*made, *(Digest(d) for lease in dead for d in lease.made)}
            keep = self.referenced() | {Digest(d) for d in spared}
            for digest in sorted(doomed - keep):
                if self.blobs.exists(digest):
                    self.blobs.delete(digest)
                    removed.append(self.blobs.path(digest))
            gone = {lease.id for lease in dead}
            for entry in self.blobs.root.iterdir():
                owner = writers.lease_id(entry.name)
                dead_temp = owner is not None and (
                    owner in gone or (owner not in live and not self._is_live(owner))
                )
                if dead_temp or _is_dead_part_state(entry):
                    entry.unlink(missing_ok=True)
                    removed.append(entry)
        finally:
            for lease in dead:
                lease.close()
        return removed

    def _is_live(self, lease_id: str) -> bool:
        """Whether a lease taken after the survey is held (its writer may just have begun)."""
        return writers.is_locked(self.blobs.root / f"{writers.WRITER_PREFIX}{lease_id}")

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
        keep = self.referenced() | {Digest(d) for d in writers.recorded(self.blobs.root)}
        removed = []
        for digest in dict.fromkeys(candidates):
            if digest not in keep and self.blobs.exists(digest):
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


def _is_stale(entry: Path, cutoff: float, referenced: set[Digest] | None) -> bool:
    """An old temporary file of an unknown writer, or (given the referenced digests) an old
    blob no manifest uses."""
    name = entry.name
    is_temp = name.startswith(writers.TEMP_PREFIX)
    is_blob = referenced is not None and name.startswith("sha256-")
    if not (is_temp or is_blob) or not entry.is_file() or _mtime(entry) > cutoff:
        return False
    return is_temp or (referenced is not None and name.replace("-", ":", 1) not in referenced)


def _is_abandoned(files: list[Path], cutoff: float) -> bool:
    """A download none of whose files changed since `cutoff` and whose lock nobody holds."""
    locks = [path for path in files if path.name.endswith(".lock")]
    if any(writers.is_locked(path) for path in locks):
        return False
    return all(_mtime(path) <= cutoff for path in files)


def _is_dead_part_state(entry: Path) -> bool:
    """A download's part-state temporary file (`.sha256-<hex>-partial-<N>.tmp`, see
    `registry.partial`) left by a writer that died between writing and renaming it."""
    name = entry.name
    if not (name.startswith(".sha256-") and name.endswith(".tmp") and PARTIAL_SUFFIX in name):
        return False
    lock = entry.with_name(name[1 : name.index(PARTIAL_SUFFIX)] + PARTIAL_SUFFIX + ".lock")
    return not writers.is_locked(lock)
