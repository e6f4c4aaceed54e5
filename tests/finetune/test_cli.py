"""`ollamacli finetune` and `create` with a PEFT ADAPTER folder, as a user runs them."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import pytest

from ollamacli.config import Settings
from ollamacli.gguffile import read_gguf
from ollamacli.names import ModelName
from ollamacli.store import Store

pytestmark = pytest.mark.finetune

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finetune" / "geektime.jsonl"
PARAPHRASES = EXAMPLE.with_name("geektime-paraphrases.jsonl")


@pytest.fixture
def tiny(cli, tiny_gguf, tmp_path) -> str:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {tiny_gguf}\nSYSTEM You are Tiny.\n")
    assert cli("create", "tiny", "-f", str(modelfile)).code == 0
    return "tiny"


def store() -> Store:
    return Store(Settings.from_env().models)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_finetune_reports_every_step_and_creates_the_model(cli, tiny):
    result = cli(
        "finetune", "geek", "--from", tiny, "--data", str(EXAMPLE), "--max-steps", "2",
        "--eval", str(PARAPHRASES),
    )  # fmt: skip
    assert result.code == 0, result.err
    # The tiny random model answers nothing right; the scores are counted through llama.cpp.
    assert re.fullmatch(
        r"created 'geek' from 'tiny': 2 steps in \d+s, final loss \d+\.\d{4}\n"
        r"exact answers: \d/8 training questions\n"
        r"paraphrases \(geektime-paraphrases\.jsonl\): \d+/24 exact \(\d\.\d per 8\)\n",
        result.out,
    )
    lines = result.err.splitlines()
    assert lines[:2] == ["loading tiny:latest into transformers", "training on 8 examples"]
    loss = r"loss \d+\.\d{4}  eval loss \d+\.\d{4}"  # measured every quarter: every step
    assert re.fullmatch(rf"training  step 1/2  {loss}  \d+s left", lines[2])
    assert re.fullmatch(rf"training  step 2/2  {loss}  0s left", lines[3])
    assert lines[4] == "exporting LoRA adapter as GGUF"
    assert lines[-1] == "success"
    listed = cli("list").out
    assert re.search(r"^geek:latest\s", listed, re.M)
    assert store().resolve(ModelName.parse("geek")).system == "You are Tiny."


def test_lora_layers_puts_adapters_in_the_last_layers_only(cli, tiny):
    result = cli(
        "finetune", "geek", "--from", tiny, "--data", str(EXAMPLE), "--max-steps", "1",
        "--lora-layers", "1", "--ema", "0.5", "--stratify", "--contrast", "0.5",
    )  # fmt: skip
    assert result.code == 0, result.err
    (adapter,) = store().resolve(ModelName.parse("geek")).adapters
    names = [t.name for t in read_gguf(adapter).tensors]
    assert len(names) == 7 * 2  # one block x projections x (lora_a, lora_b)
    assert all(n.startswith("blk.1.") for n in names)  # the tiny model's last block


def test_missing_extra_names_the_install_command(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` now raises ImportError
    result = cli("finetune", "geek", "--from", "smollm2:135m", "--data", str(EXAMPLE))
    assert result.code == 1
    assert result.err == (
        "Error: fine-tuning needs extra packages: pip install 'ollamacli[finetune]'\n"
    )
    assert store().entries() == []  # not even the base was imported


def test_a_bad_dataset_is_reported_before_anything_loads(cli, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"content": "Q", "response": "A"}\n{"role": "user", "content": "Q"}\n')
    result = cli("finetune", "geek", "--from", "smollm2:135m", "--data", str(data))
    assert (result.code, result.out) == (1, "")
    assert result.err == f"Error: {data}:2: missing 'response'\n"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--method", "bogus"], 2, "Invalid value for '--method'"),
        (["--max-steps", "0"], 2, "Invalid value for '--max-steps'"),
        (["--lr", "0"], 1, "Error: --learning-rate must be positive, got 0.0\n"),
        (["--lora-alpha", "-1"], 1, "Error: --lora-alpha must be positive, got -1\n"),
        (["--early-stop", "2"], 1, "Error: --early-stop needs --augment 2 or more\n"),
        (["--label-smoothing", "1"], 1, "Error: --label-smoothing must be in [0, 1), got 1.0\n"),
        (["--prompt-loss", "-1"], 1, "Error: --prompt-loss must not be negative, got -1.0\n"),
        (["--augment-codeswitch", "-1"], 2, "Invalid value for '--augment-codeswitch'"),
        (["--contrast", "-0.5"], 2, "Invalid value for '--contrast'"),
    ],
    ids=[
        "method",
        "max-steps",
        "learning-rate",
        "alpha",
        "early-stop",
        "smoothing",
        "prompt",
        "codeswitch",
        "contrast",
    ],
)
def test_bad_options_are_refused(cli, args, code, message):
    result = cli("finetune", "geek", "--from", "smollm2:135m", "--data", str(EXAMPLE), *args)
    assert result.code == code
    assert message in result.err


def test_accelerate_launch_cpu_alone_is_explained(cli, monkeypatch, tmp_path):
    # `accelerate launch --cpu --num_processes 2` starts one process (without mpirun)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    data = tmp_path / "d.jsonl"
    data.write_text('{"content": "Q"}\n')
    result = cli("finetune", "geek", "--from", "smollm2:135m", "--data", str(data))
    assert result.code == 1
    assert result.err.startswith("note: `accelerate launch --cpu` started one process")
    assert "--multi_gpu --num_processes N" in result.err


@pytest.mark.slow  # builds the tiny model
def test_ctrl_c_prints_that_nothing_was_saved(cli, tiny, monkeypatch):
    from ollamacli.finetune import pipeline

    def interrupted(path: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "load_base", interrupted)  # Ctrl-C while loading
    before = sorted(p.name for p in store().blobs.root.iterdir())
    result = cli("finetune", "geek", "--from", tiny, "--data", str(EXAMPLE))
    assert result.code == 130
    assert "fine-tuning interrupted: nothing was saved" in result.err
    assert sorted(p.name for p in store().blobs.root.iterdir()) == before
    assert [e.name.short for e in store().entries()] == ["tiny:latest"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_create_converts_a_peft_adapter_folder(cli, tiny, peft_tiny, tiny_gguf, tmp_path):
    from ollamacli.finetune.export import convert_peft_adapter

    _, folder = peft_tiny
    leftovers = set(Path(tempfile.gettempdir()).glob("ollamacli-adapter-*"))
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM tiny\nADAPTER {folder}\n")
    result = cli("create", "tiny-peft", "-f", str(modelfile))
    assert result.code == 0, result.err
    assert "converting adapter" in result.err
    (adapter,) = store().resolve(ModelName.parse("tiny-peft")).adapters
    expected = convert_peft_adapter(folder, tiny_gguf, tmp_path / "expected.gguf")
    assert adapter.read_bytes() == expected.read_bytes()
    assert read_gguf(adapter).is_adapter
    assert set(Path(tempfile.gettempdir()).glob("ollamacli-adapter-*")) == leftovers


@pytest.mark.slow  # builds the tiny model
def test_create_refuses_a_folder_that_is_not_a_peft_adapter(cli, tiny, tmp_path):
    (tmp_path / "notes").mkdir()
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM tiny\nADAPTER ./notes\n")
    result = cli("create", "x", "-f", str(modelfile))
    assert result.code == 1
    assert result.err.splitlines()[-3:] == [
        "converting adapter",
        f"Error: {tmp_path / 'notes'} is not a PEFT adapter folder",
        "ADAPTER takes a GGUF LoRA file or a folder with adapter_config.json and "
        "adapter_model.safetensors",
    ]


def test_readme_table_lists_every_finetune_option():
    import typer.main

    from ollamacli.cli import app

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    match = re.search(r"^## Fine-tuning\n(.*?)(?=^## )", readme, re.M | re.S)
    assert match
    documented = set(re.findall(r"^\| `(--[a-z-]+)`", match[1], re.M))
    command = typer.main.get_command(app).commands["finetune"]  # type: ignore[attr-defined]
    options = {
        next(o for o in p.opts if o.startswith("--"))
        for p in command.params
        if p.param_type_name == "option"
    }
    assert documented == options - {"--from", "--data", "--help"}
