"""A pull killed with kill -9 leaves nothing that the next create, pull or rm keeps.

Blobs a dead pull moved into the store before its manifest was written are removed by the next
command; a download killed half-way is resumed by the next pull of the model (its parts are
kept for that, see `Store.prune`) and then nothing is left either.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ollamacli.store import Digest, Manifest, Store
from tests.factories import live_writer, make_big_gguf, make_tiny_gguf
from tests.servers.registry import RegistryServer


def _dot_files(store: Store) -> list[str]:
    return sorted(p.name for p in store.blobs.root.iterdir() if p.name.startswith("."))


def _unreferenced(store: Store) -> set[Digest]:
    return set(store.blobs.digests()) - store.referenced()


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "ollamacli", *args], capture_output=True, timeout=120, check=False
    )


@pytest.mark.slow
@pytest.mark.parametrize("following", ["create", "rm", "pull"])
def test_pull_killed_between_blobs_and_manifest_leaves_nothing_after_the_next_command(
    registry: RegistryServer, store: Store, tmp_path: Path, following: str
):
    make_tiny_gguf(tmp_path / "small.gguf")
    (tmp_path / "Small").write_text("FROM ./small.gguf\n")
    assert _run("create", "keep", "-f", str(tmp_path / "Small")).returncode == 0
    registry.app.add_model("other", make_tiny_gguf(tmp_path / "other.gguf", seed=3))
    # Its 4 M-entry vocabulary takes the header check a second or so: the blobs are in place
    # and the manifest is not written yet while it runs.
    slow = make_big_gguf(tmp_path / "slow.gguf", 1 << 20, vocab=4_000_000)
    manifest = Manifest.parse(registry.app.add_model("slow", slow, template="{{ .Prompt }}"))
    model_blob = store.blobs.path(manifest.layers[0].digest)

    process = subprocess.Popen(
        [sys.executable, "-m", "ollamacli", "pull", "--insecure", registry.name("slow")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def committed() -> bool:  # every blob moved in, none still a download
        names = [p.name for p in store.blobs.root.iterdir()]
        return model_blob.exists() and not any("partial" in name for name in names)

    deadline = time.monotonic() + 60
    while not committed():
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)

    assert [e.name.model for e in store.entries()] == ["keep"]
    assert manifest.layers[0].digest in _unreferenced(store)
    assert any(name.startswith(".writer-") for name in _dot_files(store))

    with live_writer(store) as live:  # a writer at work meanwhile, in this process
        lease, live_temp, live_blob = live.lease, live.temp, live.blob

        if following == "create":
            result = _run("create", "next", "-f", str(tmp_path / "Small"))
        elif following == "rm":
            result = _run("rm", "keep")
        else:
            result = _run("pull", "--insecure", registry.name("other"))
        assert result.returncode == 0, result.stderr.decode()

        assert live_temp.exists()
        assert _dot_files(store) == sorted([live_temp.name, lease.path.name])
        assert _unreferenced(store) == {live_blob}
        assert [p.name for p in store.blobs.root.iterdir() if "partial" in p.name] == []
        live_temp.unlink()
    assert _dot_files(store) == []


@pytest.mark.slow
def test_pull_killed_mid_download_is_finished_by_the_next_pull_with_nothing_left(
    registry: RegistryServer, store: Store, tmp_path: Path
):
    big = make_big_gguf(tmp_path / "big.gguf", 24 << 20)
    manifest = Manifest.parse(registry.app.add_model("big", big))
    registry.app.faults.rate = 4_000_000  # bytes/s per connection: slow enough to interrupt
    partial = store.blobs.partial_path(manifest.layers[0].digest)

    process = subprocess.Popen(
        [sys.executable, "-m", "ollamacli", "pull", "--insecure", registry.name("big")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while registry.app.served[manifest.layers[0].digest] < 4_000_000:
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    registry.app.faults.rate = None
    registry.app.wait_idle()
    assert partial.exists()

    assert _run("rm", "nothing-here").returncode == 1  # rm keeps a fresh download for resuming
    assert partial.exists()
    result = _run("pull", "--insecure", registry.name("big"))

    assert result.returncode == 0, result.stderr.decode()
    assert _dot_files(store) == []
    assert [p.name for p in store.blobs.root.iterdir() if "partial" in p.name] == []
    assert _unreferenced(store) == set()
    assert store.blobs.verify(manifest.layers[0].digest)
