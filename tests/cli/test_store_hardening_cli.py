"""Hostile names and files, store failures and kill -9 from the command line.

Every failure is one `Error: ...` line (and a hint), never a traceback or a hang; a `create`
killed at any moment leaves nothing that the next create or rm does not remove, while the
files of a writer still at work survive.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ollamacli.config import Settings
from ollamacli.store import Digest, Store
from tests.factories import BAD_GGUFS, live_writer, make_bad_gguf, make_big_gguf, make_tiny_gguf

LONG_HOST = "h" * 300


def _dot_files(models: Path) -> list[str]:
    """Temporary files and writer leases in the blobs folder."""
    blobs = models / "blobs"
    return (
        sorted(p.name for p in blobs.iterdir() if p.name.startswith(".")) if blobs.exists() else []
    )


def _unreferenced(store: Store) -> set[Digest]:
    return set(store.blobs.digests()) - store.referenced()


@pytest.mark.parametrize(
    "args",
    [
        ("create", f"{LONG_HOST}/ns/m"),
        ("pull", f"{LONG_HOST}/ns/m"),
        ("show", f"{LONG_HOST}/ns/m"),
        ("rm", f"{LONG_HOST}/ns/m"),
        ("cp", "a", f"{LONG_HOST}/ns/m"),
    ],
    ids=["create", "pull", "show", "rm", "cp"],
)
def test_cli_name_too_long_for_the_store_is_an_error_line(cli, args):
    result = cli(*args)
    assert result.code == 1
    assert result.err.startswith("Error: invalid model name")
    assert "host is 300 characters long (at most 255)" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize("defect", sorted(BAD_GGUFS))
@pytest.mark.parametrize("line", ["FROM", "ADAPTER"])
def test_cli_create_refuses_a_bad_gguf_and_keeps_nothing(
    cli, settings: Settings, tmp_path: Path, defect: str, line: str
):
    bad = make_bad_gguf(tmp_path / "bad.gguf", defect)
    make_tiny_gguf(tmp_path / "base.gguf")
    text = "FROM ./bad.gguf\n" if line == "FROM" else "FROM ./base.gguf\nADAPTER ./bad.gguf\n"
    (tmp_path / "Modelfile").write_text(text)

    result = cli("create", "bad", "-f", str(tmp_path / "Modelfile"))

    assert result.code == 1
    error = next(row for row in result.err.splitlines() if row.startswith("Error: "))
    assert error.startswith(f"Error: {bad}: ")  # the user's own file, then what is wrong
    assert BAD_GGUFS[defect] in error
    assert "Traceback" not in result.err
    store = Store(settings.models)
    assert store.entries() == []
    # With ADAPTER, the base GGUF was already copied in: the failed create removed it.
    assert set(store.blobs.digests()) == set()
    assert _dot_files(settings.models) == []


def test_cli_create_refuses_a_truncated_download_of_the_real_model(
    cli, settings: Settings, tmp_path: Path, smollm2_path: Path
):
    cut = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with smollm2_path.open("rb") as source:
        cut.write_bytes(source.read(smollm2_path.stat().st_size // 2))  # an interrupted download
    (tmp_path / "Modelfile").write_text(f"FROM {cut}\n")

    result = cli("create", "half", "-f", str(tmp_path / "Modelfile"))

    assert result.code == 1
    assert re.search(
        r"^Error: .*: truncated GGUF file: the data of tensor '[^']+' ends at byte \d+, "
        rf"the file has {cut.stat().st_size} bytes$",
        result.err,
        re.MULTILINE,
    ), result.err
    assert list(Store(settings.models).blobs.digests()) == []


@pytest.mark.parametrize("line", ["FROM ./pipe", "FROM ./base.gguf\nADAPTER ./pipe"])
def test_cli_create_from_a_fifo_fails_at_once(cli, tmp_path: Path, line: str):
    os.mkfifo(tmp_path / "pipe")
    make_tiny_gguf(tmp_path / "base.gguf")
    (tmp_path / "Modelfile").write_text(line + "\n")
    started = time.monotonic()
    result = cli("create", "piped", "-f", str(tmp_path / "Modelfile"))
    assert result.code == 1
    assert "is not a regular file" in result.err.splitlines()[-2]  # then the hint
    assert time.monotonic() - started < 10


def test_cli_store_failure_is_an_error_line_with_a_hint(cli, settings: Settings, tmp_path):
    (settings.models).mkdir(parents=True)
    (settings.models / "blobs").write_bytes(b"a file where the blobs folder should be")
    make_tiny_gguf(tmp_path / "m.gguf")
    (tmp_path / "Modelfile").write_text("FROM ./m.gguf\n")

    result = cli("create", "m", "-f", str(tmp_path / "Modelfile"))

    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[-2] == "Error: cannot write to the model store: file exists"
    assert str(settings.models) in lines[-1]  # the hint names the folder
    assert "Traceback" not in result.err


# -- kill -9 ---------------------------------------------------------------------------------


def _create_process(name: str, modelfile: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ollamacli", "create", name, "-f", str(modelfile)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(process: subprocess.Popen[bytes], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline, "the moment to kill never came"
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL


def _copying_big(blobs: Path) -> bool:
    """A temporary file past its first megabyte: the big file is being copied."""
    sizes = []
    for path in blobs.glob(".tmp-*"):
        try:
            sizes.append(path.stat().st_size)
        except FileNotFoundError:
            continue  # a small one finished meanwhile
    return any(size > 1 << 20 for size in sizes)


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "ollamacli", *args], capture_output=True, timeout=120, check=False
    )


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["during-copy", "after-blob-before-manifest"])
@pytest.mark.parametrize("following", ["create", "rm"])
def test_cli_create_killed_leaves_nothing_after_the_next_command(
    settings: Settings, tmp_path: Path, moment: str, following: str
):
    store = Store(settings.models)
    blobs = store.blobs.root
    make_tiny_gguf(tmp_path / "small.gguf")
    (tmp_path / "Small").write_text("FROM ./small.gguf\n")
    assert _run("create", "keep", "-f", str(tmp_path / "Small")).returncode == 0
    kept = set(store.blobs.digests())
    if moment == "during-copy":
        make_big_gguf(tmp_path / "big.gguf", 256 << 20)
        (tmp_path / "Big").write_text("FROM ./big.gguf\n")
    else:  # the base GGUF goes in, then a big adapter is still being copied
        make_tiny_gguf(tmp_path / "base.gguf", seed=7)
        make_big_gguf(tmp_path / "lora.gguf", 256 << 20, adapter=True)
        (tmp_path / "Big").write_text("FROM ./base.gguf\nADAPTER ./lora.gguf\n")

    _kill_when(_create_process("big", tmp_path / "Big"), lambda: _copying_big(blobs))

    dead = _dot_files(settings.models)
    assert any(name.startswith(".tmp-") for name in dead)
    assert any(name.startswith(".writer-") for name in dead)
    if moment == "after-blob-before-manifest":
        assert _unreferenced(store)  # the base blob, with no manifest

    # A writer at work in this process meanwhile: its files must survive the cleanup.
    with live_writer(store) as live:
        lease, live_temp, live_blob = live.lease, live.temp, live.blob

        if following == "create":
            result = _run("create", "next", "-f", str(tmp_path / "Small"))
        else:
            result = _run("rm", "keep")
        assert result.returncode == 0, result.stderr.decode()

        assert live_temp.exists()
        assert store.blobs.exists(live_blob)
        assert _dot_files(settings.models) == sorted([live_temp.name, lease.path.name])
        assert _unreferenced(store) == {live_blob}
        live_temp.unlink()

    assert _dot_files(settings.models) == []
    if following == "create":
        assert set(store.blobs.digests()) - {live_blob} == kept
