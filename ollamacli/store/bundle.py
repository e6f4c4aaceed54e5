"""Export a model to one tar file and import it back, verifying every byte.

The file is an OCI image layout (https://github.com/opencontainers/image-spec, image-layout.md)
written as a tar stream, in this order:

    oci-layout              {"imageLayoutVersion": "1.0.0"}
    index.json              one descriptor per model: the manifest's digest, size, media type,
                            and the model's full name in `org.opencontainers.image.ref.name`
    blobs/sha256/<hex>      the manifest (Ollama's own JSON, byte for byte), then the config
                            and every layer it lists, each once

Import reads the stream once (a pipe works: `export m - | ssh host ollamacli import -`), under
one writer lease (`store.writers`). Each blob goes to a temporary file in the blobs folder while
its sha256 is computed; only when the whole archive has been read, every blob matched its name
and every manifest found all of its blobs are the blobs renamed into place and the manifests
written (manifest last, so no manifest ever points at an unverified blob). Any failure removes
the temporary files (and blobs already placed) and raises `BundleError` (or the store's error):
the store is left as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from ollamacli.errors import BundleError, OllamaCliError, StoreError
from ollamacli.names import ModelName
from ollamacli.store.blobs import CHUNK, WRITE_FAILED, Digest, sha256_bytes
from ollamacli.store.catalog import Store
from ollamacli.store.failures import os_errors
from ollamacli.store.manifests import MANIFEST_MEDIA_TYPE, Manifest
from ollamacli.store.writers import WriterLease

LAYOUT_FILE: Final = "oci-layout"
INDEX_FILE: Final = "index.json"
INDEX_MEDIA_TYPE: Final = "application/vnd.oci.image.index.v1+json"
REF_NAME: Final = "org.opencontainers.image.ref.name"
_LAYOUT = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()
_BLOB_ENTRY = re.compile(r"blobs/sha256/([0-9a-f]{64})")
_DIRECTORIES = {"blobs", "blobs/sha256"}
_SMALL_LIMIT = 1 << 20  # oci-layout and index.json are a few hundred bytes
_TAR_BUFFER = 1 << 20


@dataclass(frozen=True, slots=True)
class BundleSummary:
    """What an export wrote or an import stored."""

    names: tuple[ModelName, ...]
    blobs: int  # blobs in the file (manifests excluded)
    size: int  # bytes of those blobs


def export_model(store: Store, name: ModelName, out: IO[bytes]) -> BundleSummary:
    """Write the model (manifest and blobs) to `out` as a tar stream (see the module doc)."""
    entry = store.manifests.get(name)
    manifest, raw = entry.manifest, entry.raw
    paths = {digest: store.blobs.require(digest) for digest in manifest.digests}
    manifest_digest = sha256_bytes(raw)
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [
            {
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": manifest_digest,
                "size": len(raw),
                "annotations": {REF_NAME: entry.name.full},
            }
        ],
    }
    size = 0
    try:
        # TarFile's own "w|" stream mode re-copies its buffer on every write (slow for GB
        # blobs); plain "w" mode needs only write() and tell(), which a pipe can give.
        with tarfile.TarFile(fileobj=_Appender(out), mode="w", copybufsize=CHUNK) as tar:  # type: ignore[arg-type]  # write() and tell() are all "w" mode uses
            _add_bytes(tar, LAYOUT_FILE, _LAYOUT)
            _add_bytes(tar, INDEX_FILE, json.dumps(index, indent=2).encode())
            _add_bytes(tar, _blob_entry(manifest_digest), raw)
            for digest, path in paths.items():
                info = tarfile.TarInfo(_blob_entry(digest))
                info.size = path.stat().st_size
                info.mode = 0o644
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
                size += info.size
    except OSError as exc:
        raise StoreError(f"cannot write the export: {exc.strerror or exc}") from exc
    return BundleSummary((entry.name,), len(paths), size)


class _Appender:
    """A write-only stream (a pipe) that can say how much was written."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.position = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position


def _blob_entry(digest: Digest) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


@dataclass
class _Staged:
    """What was read from the archive so far: small files and verified temporary blobs."""

    layout: bytes | None = None
    index: bytes | None = None
    blobs: dict[Digest, Path] = field(default_factory=dict)


def import_model(store: Store, source: IO[bytes], *, prune: bool = True) -> BundleSummary:
    """Read an export stream and store its models; raises `BundleError` and stores nothing
    when the archive is truncated, unsafe, incomplete or a blob does not match its digest."""
    staged = _Staged()
    # One writer lease for the whole import: its temporary files are spared by a concurrent
    # cleanup, and if anything fails after blobs were placed, they are removed again.
    with store.writing(), store.blobs.lease() as lease:
        try:
            _read_archive(source, staged, lease)
            plan = _plan(staged)
            _commit(store, staged, plan, prune=prune)
        finally:
            for path in staged.blobs.values():
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
    sizes = {la.digest: la.size for _, m, _ in plan for la in (m.config, *m.layers)}
    return BundleSummary(tuple(name for name, _, _ in plan), len(sizes), sum(sizes.values()))


def _read_archive(source: IO[bytes], staged: _Staged, lease: WriterLease) -> None:
    try:
        # A file is read in place; a pipe (stdin) as a stream, which cannot seek back.
        mode = "r:" if _seekable(source) else "r|"
        with tarfile.open(fileobj=source, mode=mode, bufsize=_TAR_BUFFER) as tar:  # type: ignore[call-overload]  # mode is one of two literals
            for member in tar:
                _read_member(tar, member, staged, lease)
    except tarfile.TarError as exc:
        raise BundleError(f"not a complete export file: {exc}") from None
    except EOFError:
        raise BundleError("not a complete export file: unexpected end of data") from None


def _seekable(source: IO[bytes]) -> bool:
    try:
        return source.seekable()
    except (AttributeError, OSError, ValueError):
        return False


def _read_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, staged: _Staged, lease: WriterLease
) -> None:
    name = member.name.removeprefix("./").rstrip("/")
    if member.isdir() and name in _DIRECTORIES:
        return
    if not member.isfile():
        raise BundleError(f"unsafe entry {member.name!r} in export file: not a regular file")
    handle = tar.extractfile(member)
    assert handle is not None  # a regular file always has data
    if name in (LAYOUT_FILE, INDEX_FILE):
        if member.size > _SMALL_LIMIT:
            raise BundleError(f"{name} in export file is too large ({member.size} bytes)")
        data = handle.read()
        if getattr(staged, "layout" if name == LAYOUT_FILE else "index") is not None:
            raise BundleError(f"export file holds {name} twice")
        setattr(staged, "layout" if name == LAYOUT_FILE else "index", data)
        return
    match = _BLOB_ENTRY.fullmatch(name)
    if match is None:
        raise BundleError(f"unexpected entry {member.name!r} in export file")
    digest = Digest("sha256:" + match.group(1))
    if digest in staged.blobs:
        raise BundleError(f"export file holds blob {digest} twice")
    staged.blobs[digest] = _stage_blob(lease, handle, digest, member.size)


def _stage_blob(lease: WriterLease, handle: IO[bytes], digest: Digest, size: int) -> Path:
    """Copy one blob to a temporary file, hashing it; refuse it unless it matches its name."""
    temp = lease.temp_path()
    hasher = hashlib.sha256()
    done = 0
    try:
        with os_errors(WRITE_FAILED, where=lease.folder), temp.open("xb") as out:
            while chunk := handle.read(CHUNK):
                hasher.update(chunk)
                out.write(chunk)
                done += len(chunk)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    actual = "sha256:" + hasher.hexdigest()
    if done != size or actual != digest:
        temp.unlink(missing_ok=True)
        raise BundleError(
            f"blob {digest} in export file is corrupt: its content hashes to {actual}"
        )
    return temp


def _plan(staged: _Staged) -> list[tuple[ModelName, Manifest, bytes]]:
    """The models to store (name, manifest, manifest bytes), once everything checks out."""
    if staged.layout is None or staged.index is None:
        raise BundleError("not an export file: oci-layout or index.json is missing")
    layout = _json(staged.layout, LAYOUT_FILE)
    if not isinstance(layout, dict) or layout.get("imageLayoutVersion") != "1.0.0":
        raise BundleError("unsupported export file: imageLayoutVersion must be 1.0.0")
    index = _json(staged.index, INDEX_FILE)
    descriptors = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(descriptors, list) or not descriptors:
        raise BundleError("export file lists no model in index.json")
    return [_model(staged, descriptor) for descriptor in descriptors]


def _model(staged: _Staged, descriptor: object) -> tuple[ModelName, Manifest, bytes]:
    if not isinstance(descriptor, dict):
        raise BundleError("malformed index.json: a manifest entry is not an object")
    annotations = descriptor.get("annotations")
    ref = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    if not isinstance(ref, str):
        raise BundleError(f"malformed index.json: a manifest has no {REF_NAME}")
    try:
        name = ModelName.parse(ref)
        digest = Digest(str(descriptor.get("digest")))
        path = staged.blobs.get(digest)
        if path is None:
            raise BundleError(f"export file lacks the manifest {digest} of {name.short}")
        raw = path.read_bytes()
        manifest = Manifest.parse(raw)
    except OllamaCliError as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"malformed model in export file: {exc}") from None
    for layer in (manifest.config, *manifest.layers):
        blob = staged.blobs.get(layer.digest)
        if blob is None:
            raise BundleError(f"export file lacks blob {layer.digest} of {name.short}")
        if blob.stat().st_size != layer.size:
            raise BundleError(f"blob {layer.digest} of {name.short} has the wrong size")
    return name, manifest, raw


def _json(data: bytes, what: str) -> object:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"malformed {what} in export file: {exc}") from None


def _commit(
    store: Store, staged: _Staged, plan: list[tuple[ModelName, Manifest, bytes]], *, prune: bool
) -> None:
    """Move the verified blobs into place (recorded in the writer's lease), then write the
    manifests."""
    for digest in _wanted(plan):
        store.blobs.place(staged.blobs.pop(digest), digest)
    for name, _, raw in plan:
        store.commit(name, raw, prune=prune)


def _wanted(plan: list[tuple[ModelName, Manifest, bytes]]) -> Iterator[Digest]:
    seen: set[Digest] = set()
    for _, manifest, _ in plan:
        for digest in manifest.digests:
            if digest not in seen:
                seen.add(digest)
                yield digest
