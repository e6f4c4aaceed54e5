"""`export` / `import` as a shell runs them: through a pipe between two stores, and refusals."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ollamacli.names import ModelName
from ollamacli.store import Store

MODEL = "smollm2:135m"


def _env(models: Path) -> dict[str, str]:
    return {**os.environ, "OLLAMA_MODELS": str(models)}


def _ollamacli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ollamacli", *args]


@pytest.mark.slow
def test_export_pipe_import_copies_the_bundled_model(cli, settings, tmp_path: Path) -> None:
    assert cli("pull", MODEL).code == 0  # the bundled model, into this test's store
    target = tmp_path / "elsewhere"
    exporter = subprocess.Popen(
        _ollamacli("export", MODEL, "-"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    importer = subprocess.run(
        _ollamacli("import", "-"),
        stdin=exporter.stdout,
        capture_output=True,
        text=True,
        env=_env(target),
        timeout=170,
        check=False,
    )
    assert exporter.stdout is not None
    exporter.stdout.close()
    _, export_err = exporter.communicate(timeout=60)
    assert exporter.returncode == 0, export_err
    assert importer.returncode == 0, importer.stderr
    assert importer.stdout == f"imported {MODEL}\n"
    assert f"exported {MODEL} (" in export_err.decode()
    name = ModelName.parse(MODEL)
    source, copy = Store(settings.models), Store(target)
    assert copy.manifests.get(name).raw == source.manifests.get(name).raw
    for digest in source.manifests.get(name).manifest.digests:
        assert copy.blobs.verify(digest)
    listed = subprocess.run(
        _ollamacli("list"), capture_output=True, text=True, env=_env(target), check=True
    )
    assert MODEL in listed.stdout


def test_export_to_a_file_and_import_it(cli, tmp_path: Path, monkeypatch) -> None:
    from tests.factories import make_tiny_gguf

    gguf = make_tiny_gguf(tmp_path / "tiny.gguf")
    (tmp_path / "Modelfile").write_text(f"FROM {gguf}\n")
    assert cli("create", "tiny", "-f", str(tmp_path / "Modelfile")).code == 0
    path = tmp_path / "tiny.tar"
    exported = cli("export", "tiny", "-o", str(path))
    assert exported.code == 0, exported
    assert exported.err.startswith("exported tiny:latest (")
    assert tarfile.is_tarfile(path)
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "second"))
    imported = cli("import", str(path))
    assert (imported.code, imported.out) == (0, "imported tiny:latest\n")
    assert cli("show", "tiny").code == 0


def test_import_of_a_corrupted_file_fails_with_a_clear_error(cli, tmp_path: Path) -> None:
    from tests.factories import make_tiny_gguf

    gguf = make_tiny_gguf(tmp_path / "tiny.gguf")
    (tmp_path / "Modelfile").write_text(f"FROM {gguf}\n")
    assert cli("create", "tiny", "-f", str(tmp_path / "Modelfile")).code == 0
    path = tmp_path / "tiny.tar"
    assert cli("export", "tiny", str(path)).code == 0
    with tarfile.open(path) as tar:
        items = [(m, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    largest = max(info.size for info, _ in items)
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        for info, data in items:
            if info.size == largest:  # the GGUF: flip its last bit
                data = data[:-1] + bytes([data[-1] ^ 1])
            tar.addfile(info, io.BytesIO(data))
    assert cli("rm", "tiny").code == 0
    result = cli("import", str(bad))
    assert result.code == 1
    assert result.err.startswith("Error: blob sha256:")
    assert "is corrupt" in result.err
    assert "nothing was imported" in result.err
    assert cli("show", "tiny").code == 1


def test_export_needs_an_output(cli) -> None:
    result = cli("export", "tiny")
    assert result.code == 1
    assert "Error: no output file" in result.err
