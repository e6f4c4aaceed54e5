"""create / list / show / cp / rm from the command line, on the bundled model and tiny files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.factories import make_tiny_gguf

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "Modelfile"


def _blobs(models: Path) -> set[str]:
    return {p.name for p in (models / "blobs").iterdir()} if (models / "blobs").exists() else set()


def test_create_example_list_show_cp_rm_leaves_no_blob(cli, settings):
    result = cli("create", "mario", "-f", str(EXAMPLE))
    assert result.code == 0, result
    assert "writing manifest" in result.err
    assert result.err.rstrip().endswith("success")

    listing = cli("list")
    lines = listing.out.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert re.match(r"mario:latest\s+[0-9a-f]{12}\s+98 MB\s+Less than a second ago", lines[1])
    assert any(line.startswith("smollm2:135m") for line in lines)

    modelfile = cli("show", "mario", "--modelfile").out
    assert "PARAMETER temperature 1\n" in modelfile
    assert "PARAMETER num_ctx 4096\n" in modelfile
    assert "SYSTEM You are Mario from super mario bros, acting as an assistant.\n" in modelfile
    assert (
        cli("show", "mario", "--system").out
        == "You are Mario from super mario bros, acting as an assistant."
    )
    info = cli("show", "mario").out
    assert "    architecture        llama" in info
    assert "    parameters          134.52M" in info

    assert cli("cp", "mario", "mario2").out == "copied 'mario' to 'mario2'\n"
    before = _blobs(settings.models)
    assert cli("rm", "mario", "mario2").out == "deleted 'mario'\ndeleted 'mario2'\n"
    assert cli("rm", "smollm2:135m").code == 0
    assert cli("list").out.splitlines() == ["NAME    ID    SIZE    MODIFIED"]
    assert before
    assert _blobs(settings.models) == set()


def test_show_modelfile_recreates_the_same_model(cli, tmp_path):
    assert cli("create", "mario", "-f", str(EXAMPLE)).code == 0
    text = cli("show", "mario", "--modelfile").out
    (tmp_path / "Modelfile").write_text(text)
    assert cli("create", "mario-again", "-f", str(tmp_path / "Modelfile")).code == 0
    assert (
        cli("show", "mario-again", "--parameters").out == cli("show", "mario", "--parameters").out
    )
    assert cli("show", "mario-again", "--system").out == cli("show", "mario", "--system").out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "FROM smollm2:135m\nPARAMETER temprature 1\n",
            'Error: {path}:2: unknown parameter "temprature" (did you mean "temperature"?)',
        ),
        ("FROM ./missing.gguf\n", "Error: {path}: FROM file not found: {dir}/missing.gguf"),
        (
            "FROM smollm2:135m\nMESSAGE bot hi\n",
            'Error: {path}:2: message role must be one of "system", "user", or "assistant" (got "bot")',
        ),
    ],
    ids=["typo", "missing-file", "role"],
)
def test_broken_modelfile_errors_and_writes_nothing(cli, settings, tmp_path, text, expected):
    path = tmp_path / "Modelfile"
    path.write_text(text)
    result = cli("create", "broken", "-f", str(path))
    assert result.code == 1
    assert result.err.splitlines()[0] == expected.format(path=path, dir=tmp_path)
    assert not (settings.models / "manifests").exists()
    assert _blobs(settings.models) == set()


def test_create_refuses_non_gguf_before_writing(cli, settings, tmp_path):
    (tmp_path / "weights.gguf").write_bytes(b"\x00" * 100)
    (tmp_path / "Modelfile").write_text("FROM ./weights.gguf\n")
    result = cli("create", "x", "-f", str(tmp_path / "Modelfile"))
    assert result.code == 1
    assert "is not a GGUF file" in result.err
    assert _blobs(settings.models) == set()


def test_create_refuses_unsupported_architecture(cli, settings, tmp_path):
    make_tiny_gguf(tmp_path / "m.gguf", arch="notanarch")
    (tmp_path / "Modelfile").write_text("FROM m.gguf\n")
    result = cli("create", "x", "-f", str(tmp_path / "Modelfile"))
    assert (
        'Error: architecture "notanarch" is not supported by this engine' in result.err.splitlines()
    )
    assert not (settings.models / "manifests").exists()


def test_create_stores_identical_files_once(cli, settings, tmp_path):
    make_tiny_gguf(tmp_path / "m.gguf")
    (tmp_path / "Modelfile").write_text("FROM m.gguf\n")
    assert cli("create", "a", "-f", str(tmp_path / "Modelfile")).code == 0
    second = cli("create", "b", "-f", str(tmp_path / "Modelfile"))
    assert "using existing layer sha256:" in second.err
    assert len(_blobs(settings.models)) == 2  # the GGUF and one config blob shared by both


def test_invalid_name_is_refused_before_anything(cli, settings):
    result = cli("create", "../evil", "-f", str(EXAMPLE))
    assert result.code == 1
    assert result.err.startswith("Error: invalid model name")
    assert not settings.models.exists()


def test_unknown_model_errors(cli):
    result = cli("show", "nothere")
    assert result.code == 1
    assert result.err.splitlines()[0] == "Error: model 'nothere:latest' not found"


def test_show_flags_are_exclusive(cli):
    result = cli("show", "x", "--license", "--system")
    assert result.code == 1
    assert "only one of" in result.err


def test_list_json_for_scripts(cli):
    cli("create", "mario", "-f", str(EXAMPLE))
    rows = json.loads(cli("list", "--json").out)
    assert {r["name"] for r in rows} == {"mario:latest", "smollm2:135m"}
    assert all(len(r["id"]) == 12 and r["size"] > 90_000_000 for r in rows)


def test_list_filters_by_prefix(cli):
    cli("create", "mario", "-f", str(EXAMPLE))
    assert [line.split()[0] for line in cli("list", "mar").out.splitlines()] == [
        "NAME",
        "mario:latest",
    ]


def test_missing_modelfile_says_how_to_fix(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("create", "x")
    assert result.code == 1
    assert result.err.splitlines() == [
        "Error: Modelfile: file not found",
        "pass the Modelfile with -f PATH",
    ]


def test_version_flag(cli):
    assert cli("--version").out.startswith("ollamacli version is ")


@pytest.mark.parametrize("noprune", ["", "1"])
def test_recreating_a_tag_prunes_its_old_layers_unless_noprune(
    cli, settings, tmp_path, monkeypatch, noprune
):
    monkeypatch.setenv("OLLAMA_NOPRUNE", noprune)
    make_tiny_gguf(tmp_path / "m.gguf")
    for system in ("first", "second"):
        (tmp_path / "Modelfile").write_text(f"FROM m.gguf\nSYSTEM {system}\n")
        assert cli("create", "a", "-f", str(tmp_path / "Modelfile")).code == 0
    # The GGUF, a config and a system blob; the first system blob stays only with noprune.
    assert len(_blobs(settings.models)) == (4 if noprune else 3)
    assert cli("show", "a", "--system").out == "second"
