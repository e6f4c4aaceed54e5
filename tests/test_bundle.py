"""Export/import of a model as one tar: round trip, and every malformed file refused whole."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from ollamacli.errors import BundleError, ModelNotFoundError
from ollamacli.names import ModelName
from ollamacli.service.bundle import BundleService
from ollamacli.service.models import CreateSpec, ModelService
from ollamacli.store import Store
from tests.factories import make_tiny_gguf

Entries = list[tuple[tarfile.TarInfo, bytes]]


@pytest.fixture
def source(tmp_path: Path) -> Store:
    """A store holding `tiny` (a small GGUF plus a system prompt layer)."""
    store = Store(tmp_path / "source")
    gguf = make_tiny_gguf(tmp_path / "tiny.gguf")
    ModelService(store).create("tiny", CreateSpec(from_file=gguf, system="be brief"))
    return store


@pytest.fixture
def target(tmp_path: Path) -> Store:
    """A second store, with a model of its own that must survive failed imports."""
    store = Store(tmp_path / "target")
    gguf = make_tiny_gguf(tmp_path / "other.gguf", seed=1)
    ModelService(store).create("other", CreateSpec(from_file=gguf))
    return store


def exported(store: Store, name: str = "tiny") -> bytes:
    out = io.BytesIO()
    BundleService(store).export_stream(name, out)
    return out.getvalue()


def entries(data: bytes) -> Entries:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar]  # type: ignore[union-attr]


def rebuild(items: Entries) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info, data in items:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return out.getvalue()


def snapshot(store: Store) -> dict[str, bytes]:
    return {
        str(p.relative_to(store.root)): p.read_bytes()
        for p in sorted(store.root.rglob("*"))
        if p.is_file()
    }


def test_export_writes_an_oci_layout_with_the_manifest_and_each_blob_once(source: Store) -> None:
    items = entries(exported(source))
    names = [info.name for info, _ in items]
    manifest = source.manifests.get(ModelName.parse("tiny"))
    assert names[:2] == ["oci-layout", "index.json"]
    blobs = {n.removeprefix("blobs/sha256/") for n in names[2:]}
    assert len(names) == 2 + 1 + len(set(manifest.manifest.digests))
    assert {d.removeprefix("sha256:") for d in manifest.manifest.digests} < blobs
    assert manifest.digest in blobs  # the manifest itself, as a blob


def test_import_round_trip_stores_the_same_manifest_and_blobs(source: Store, target: Store) -> None:
    summary = BundleService(target).import_stream(io.BytesIO(exported(source)))
    name = ModelName.parse("tiny")
    assert [n.short for n in summary.names] == ["tiny:latest"]
    assert target.manifests.get(name).raw == source.manifests.get(name).raw
    resolved = target.resolve(name)
    assert resolved.system == "be brief"
    assert resolved.model_path.read_bytes() == source.resolve(name).model_path.read_bytes()
    assert target.manifests.exists(ModelName.parse("other"))
    # importing again changes nothing and succeeds
    before = snapshot(target)
    BundleService(target).import_stream(io.BytesIO(exported(source)))
    assert snapshot(target).keys() == before.keys()


def test_export_file_is_written_atomically_and_imports(
    source: Store, target: Store, tmp_path: Path
) -> None:
    path = tmp_path / "tiny.tar"
    BundleService(source).export_file("tiny", path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    BundleService(target).import_file(path)
    assert target.manifests.exists(ModelName.parse("tiny"))


def test_export_of_an_unknown_model_creates_no_file(source: Store, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        BundleService(source).export_file("nope", tmp_path / "nope.tar")
    assert not (tmp_path / "nope.tar").exists()


def _corrupt_largest_blob(items: Entries) -> Entries:
    index = max(range(len(items)), key=lambda i: len(items[i][1]))
    info, data = items[index]
    items[index] = (info, data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    return items


def _drop_largest_blob(items: Entries) -> Entries:
    index = max(range(len(items)), key=lambda i: len(items[i][1]))
    return items[:index] + items[index + 1 :]


def _add(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> Callable[[Entries], Entries]:
    def change(items: Entries) -> Entries:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        return [*items, (info, b"evil" if kind == tarfile.REGTYPE else b"")]

    return change


def _rename_blob_to_traversal(items: Entries) -> Entries:
    info, data = items[-1]
    info.name = "blobs/sha256/../../../escaped"
    return [*items[:-1], (info, data)]


def _bad_index(items: Entries) -> Entries:
    return [(i, b"{not json" if i.name == "index.json" else d) for i, d in items]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_corrupt_largest_blob, "is corrupt"),
        (_drop_largest_blob, "lacks blob"),
        (_add("../escaped"), "unexpected entry '../escaped'"),
        (_add("/etc/escaped"), "unexpected entry '/etc/escaped'"),
        (_rename_blob_to_traversal, "unexpected entry"),
        (_add("blobs/sha256/link", tarfile.SYMTYPE, "/etc/passwd"), "not a regular file"),
        (_add("blobs/sha256/hard", tarfile.LNKTYPE, "oci-layout"), "not a regular file"),
        (_bad_index, "malformed index.json"),
    ],
    ids=[
        "corrupted-blob",
        "missing-blob",
        "dot-dot",
        "absolute",
        "traversal-in-blob-name",
        "symlink",
        "hardlink",
        "bad-index",
    ],
)
def test_import_refuses_a_bad_file_and_leaves_the_store_unchanged(
    source: Store, target: Store, tmp_path: Path, change: Callable[[Entries], Entries], message: str
) -> None:
    data = rebuild(change(entries(exported(source))))
    before = snapshot(target)
    with pytest.raises(BundleError, match=message):
        BundleService(target).import_stream(io.BytesIO(data))
    assert snapshot(target) == before
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize("where", ["index", "largest", "last"])
def test_import_refuses_a_truncated_file_and_leaves_the_store_unchanged(
    source: Store, target: Store, where: str
) -> None:
    data = exported(source)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    member = {
        "index": members[1],
        "largest": max(members, key=lambda m: m.size),
        "last": members[-1],
    }[where]
    before = snapshot(target)
    cut = data[: member.offset_data + member.size // 2]
    with pytest.raises(BundleError, match="not a complete export file"):
        BundleService(target).import_stream(io.BytesIO(cut))
    assert snapshot(target) == before


def test_import_refuses_something_that_is_not_a_tar(target: Store) -> None:
    before = snapshot(target)
    with pytest.raises(BundleError, match="not a complete export file"):
        BundleService(target).import_stream(io.BytesIO(b"hello world" * 100))
    assert snapshot(target) == before


class Pipe(io.RawIOBase):
    """A byte stream that cannot seek, like stdin from `export - | import -`."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.data.read(min(len(buffer), 5000))  # short reads, as pipes give
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_import_reads_a_pipe_and_refuses_a_corrupted_one(source: Store, target: Store) -> None:
    data = exported(source)
    bad = rebuild(_corrupt_largest_blob(entries(data)))
    before = snapshot(target)
    with pytest.raises(BundleError, match="is corrupt"):
        BundleService(target).import_stream(Pipe(bad))  # type: ignore[arg-type]
    assert snapshot(target) == before
    BundleService(target).import_stream(Pipe(data))  # type: ignore[arg-type]
    assert target.manifests.exists(ModelName.parse("tiny"))
