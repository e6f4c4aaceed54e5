"""`finetune` under `accelerate launch` with two CPU processes (gloo): the same training as one
process, each process on its share of every batch, only the main one reporting and writing."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ollamacli.names import ModelName
from ollamacli.store import Store

# Two processes each load the tiny model (SmolLM2's tokenizer converted): ~30 s on idle cores.
pytestmark = [pytest.mark.finetune, pytest.mark.slow, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "finetune" / "geektime.jsonl"
STEP = re.compile(r"step (\d+)/(\d+)  loss (\d+\.\d{4})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def tiny(cli, tiny_gguf, tmp_path) -> str:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {tiny_gguf}\nPARAMETER num_predict 8\nPARAMETER temperature 0\n")
    assert cli("create", "tiny", "-f", str(modelfile)).code == 0
    return "tiny"


def adapter_tensors(path: Path) -> dict[str, np.ndarray]:
    import gguf

    return {t.name: np.array(t.data, dtype=np.float32) for t in gguf.GGUFReader(str(path)).tensors}


def test_two_processes_train_as_one_and_only_the_main_one_writes(cli, tiny, tmp_path, monkeypatch):
    # --contrast: its centroids are moved by every process's rows alike (gathered)
    common = ["--from", tiny, "--data", str(EXAMPLE), "--max-steps", "2", "--batch-size", "4"]
    common += ["--contrast", "0.5"]
    alone = cli("finetune", "one", *common, "--adapter-out", str(tmp_path / "one.gguf"))
    assert alone.code == 0, alone.err

    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
        "-m", "ollamacli", "finetune", "two", *common, "--adapter-out", str(tmp_path / "two.gguf"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]

    # One report, from the main process: one "created" line, each step shown once.
    assert re.fullmatch(
        r"created 'two' from 'tiny': 2 steps in \d+s, final loss \d+\.\d{4}\n", run.stdout
    )
    steps = STEP.findall(run.stderr)
    assert [(s, t) for s, t, _ in steps] == [("1", "2"), ("2", "2")], run.stderr[-3000:]
    assert run.stderr.count("exporting LoRA adapter as GGUF") == 1
    # Each process computed half of each batch of four rows; the averaged gradients are the
    # single process's: same losses (as printed, to 4 places, up to float rounding), same adapter.
    single = STEP.findall(alone.err)
    for (_, _, two), (_, _, one) in zip(steps, single, strict=True):
        assert float(two) == pytest.approx(float(one), abs=2e-4)
    first, second = adapter_tensors(tmp_path / "one.gguf"), adapter_tensors(tmp_path / "two.gguf")
    assert first.keys() == second.keys()
    for name, values in first.items():
        assert np.allclose(values, second[name], atol=2e-3, rtol=1e-2), name
    assert any(np.abs(v).max() > 0 for k, v in second.items() if "lora_b" in k)  # it trained

    # The model the group registered loads with its adapter in llama.cpp and answers.
    model = Store(Path(os.environ["OLLAMA_MODELS"])).resolve(ModelName.parse("two"))
    assert len(model.adapters) == 1
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))  # as `run ... </dev/null`
    answer = cli("run", "two", "你是谁？")  # noqa: RUF001  (the seed's question)
    assert answer.code == 0, answer.err
