"""Push: publish a model from the store to an Ollama-style registry.

Statuses as Ollama sends them: `retrieving manifest`, `pushing <12 hex>` per blob (with
`digest`, `total`, `completed`; a blob the registry already has is complete at once),
`pushing manifest`, `success`. The name says where the model goes, as in Ollama: copy it to
`<host>/<namespace>/<model>:<tag>` first (`ollamacli cp`), then push that name. Only anonymous
Bearer-token registries are spoken to; registry.ollama.ai's signed-key sign-in is not.
"""

from __future__ import annotations

from ollamacli.config import Settings
from ollamacli.errors import InvalidRequestError, ModelNotFoundError
from ollamacli.names import ModelName
from ollamacli.progress import ProgressEvent, ProgressSink, ignore_progress, short_digest
from ollamacli.registry.ollama import OllamaRegistry, RegistryAuth, new_client
from ollamacli.registry.policy import TransferOptions
from ollamacli.registry.push import CHUNK_SIZE, RegistryUploader
from ollamacli.store import Digest, Store


class PushService:
    """Pushes models from a store (the CLI's `push` and /api/push)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        options: TransferOptions | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.store = store
        self.settings = settings
        self.options = options or TransferOptions()
        self.chunk_size = chunk_size

    def push(
        self, name: str | ModelName, progress: ProgressSink = ignore_progress, *, insecure: bool
    ) -> ModelName:
        """Upload the model's blobs the registry lacks, then its manifest."""
        model = name if isinstance(name, ModelName) else ModelName.parse(name)
        if model.scheme == "http" and not insecure:
            raise InvalidRequestError(
                "insecure protocol http", hint="pass --insecure to push to a plain-http registry"
            )
        progress(ProgressEvent("retrieving manifest"))
        if not self.store.manifests.exists(model):
            raise ModelNotFoundError(
                model.short,
                hint=f"name a local model for its registry first: 'ollamacli cp MODEL {model.short}'",
            )
        entry = self.store.manifests.get(model)
        manifest = entry.manifest
        auth = RegistryAuth(f"{'http' if insecure else 'https'}://{model.host}")
        with new_client(self.options, auth) as client:
            registry = OllamaRegistry(client, model, insecure=insecure, options=self.options)
            uploader = RegistryUploader(registry, chunk_size=self.chunk_size)
            for layer in (*manifest.layers, manifest.config):
                status, digest, size = (
                    f"pushing {short_digest(layer.digest)}",
                    layer.digest,
                    layer.size,
                )

                def report(
                    done: int, status: str = status, digest: Digest = digest, size: int = size
                ) -> None:
                    progress(ProgressEvent(status, digest=digest, total=size, completed=done))

                if uploader.has_blob(digest):
                    report(size)
                    continue
                uploader.upload(digest, self.store.blobs.require(digest), report)
            progress(ProgressEvent("pushing manifest"))
            uploader.put_manifest(entry.raw)
        progress(ProgressEvent("success"))
        return model
