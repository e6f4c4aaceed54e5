"""Uploading to an Ollama-style (docker-registry-v2) registry: blobs, then the manifest.

Per blob: `HEAD /v2/<ns>/<model>/blobs/<digest>` (200: the registry has it, nothing to send);
else `POST /v2/<ns>/<model>/blobs/uploads/` opens an upload session whose URL comes back in
`Location` (or Ollama's `Docker-Upload-Location`); the bytes go in `PATCH` requests of at most
`chunk_size` with `Content-Range`, each answer naming where the next one goes; `PUT
<session>?digest=<digest>` closes it and the registry checks the digest. Last, `PUT
/v2/<ns>/<model>/manifests/<tag>` with the manifest's bytes as stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlencode, urljoin

import httpx

from ollamacli.errors import RegistryError
from ollamacli.registry.ollama import OllamaRegistry
from ollamacli.registry.policy import retryable_status, with_retries
from ollamacli.store import Digest
from ollamacli.store.manifests import MANIFEST_MEDIA_TYPE

CHUNK_SIZE = 100_000_000
"""The largest PATCH; Ollama sends parts of 100 MB to 1 GB."""

_READ_SIZE = 1 << 20
DENIED = (
    "you are not authorized to push to this namespace, create the model under a namespace you own"
)

ByteProgress = Callable[[int], None]


class RegistryUploader:
    """Pushes blobs and a manifest to one model's repository."""

    def __init__(self, registry: OllamaRegistry, *, chunk_size: int = CHUNK_SIZE) -> None:
        self.registry = registry
        self.client: httpx.Client = registry.client
        self.chunk_size = chunk_size

    def has_blob(self, digest: Digest) -> bool:
        """True when the registry already holds the blob."""
        url = self.registry.blob_url(digest)
        response = self._send("HEAD", url, what="check blob")
        return response.status_code == 200

    def upload(self, digest: Digest, path: Path, report: ByteProgress) -> None:
        """Send one blob; a failed attempt starts a new upload session (retried with backoff)."""

        def attempt() -> None:
            report(0)
            location = self._open_session()
            size = path.stat().st_size
            with path.open("rb") as handle:
                for start in range(0, size, self.chunk_size):
                    length = min(self.chunk_size, size - start)
                    location = self._patch(location, handle, start, length, report)
            query = urlencode({"digest": str(digest)})
            url = f"{location}{'&' if '?' in location else '?'}{query}"
            response = self.client.put(url, headers={"Content-Length": "0"})
            retryable_status(response)
            _refuse(response, f"push blob {digest}")

        with_retries(attempt, self.registry.options, what="push blob", url=str(path))

    def put_manifest(self, raw: bytes) -> None:
        """Publish the manifest under the tag (after every blob it names is there)."""
        url = self.registry.manifest_url
        response = self._send(
            "PUT",
            url,
            what="push manifest",
            content=raw,
            headers={"Content-Type": MANIFEST_MEDIA_TYPE},
        )
        _refuse(response, "push manifest")

    def _open_session(self) -> str:
        base = self.registry.blob_url(Digest("sha256:" + "0" * 64)).rsplit("/", 1)[0]
        url = f"{base}/uploads/"
        response = self.client.post(url, headers={"Content-Length": "0"})
        retryable_status(response)
        _refuse(response, "push blob")
        return _location(response, url)

    def _patch(
        self, location: str, handle: BinaryIO, start: int, length: int, report: ByteProgress
    ) -> str:
        end = start + length - 1
        response = self.client.patch(
            location,
            content=_chunks(handle, length, start, report),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(length),
                "Content-Range": f"{start}-{end}",
            },
        )
        retryable_status(response)
        _refuse(response, "push blob")
        return _location(response, location)

    def _send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        def call() -> httpx.Response:
            response = self.client.request(method, url, content=content, headers=headers)
            retryable_status(response)
            return response

        return with_retries(call, self.registry.options, what=what, url=url)


def _chunks(handle: BinaryIO, length: int, start: int, report: ByteProgress) -> Iterator[bytes]:
    sent = 0
    while sent < length:
        data = handle.read(min(_READ_SIZE, length - sent))
        if not data:
            raise RegistryError("push blob: the file ended early (was it changed meanwhile?)")
        sent += len(data)
        yield data
        report(start + sent)


def _location(response: httpx.Response, base: str) -> str:
    found = response.headers.get("docker-upload-location") or response.headers.get("location")
    if not found:
        raise RegistryError(
            f"push blob: the registry answered {response.status_code} without an upload location",
            url=str(response.url),
        )
    return str(urljoin(base, found))


def _refuse(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if status in (401, 403):
        raise RegistryError(DENIED, url=str(response.url), status=status)
    if status >= 400:
        detail = response.text.strip()[:200]
        raise RegistryError(f"{what}: {status}: {detail}", url=str(response.url), status=status)
