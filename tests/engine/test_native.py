"""Where llama.cpp keeps the weights: never in the AMX buffers whose matrix multiply crashes.

llama-cpp-python 0.3.36 built natively on a Xeon with AMX runs its quantized matrix multiplies
with tile instructions after loading an all-zero tile configuration, and the process dies with
SIGILL on the first prompt (seen on these machines: `ollamacli run smollm2:135m` exited 132).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from ollamacli.engine.native import (
    NativeModel,
    extra_buffers_safe,
    plain_buffers_for_llama_class,
)

pytestmark = pytest.mark.llama

AVX2_BUILD = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
AMX_BUILD = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | "
    "BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | "
    "AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)


def test_extra_buffers_are_refused_only_for_a_build_with_amx() -> None:
    assert extra_buffers_safe(AVX2_BUILD)
    assert not extra_buffers_safe(AMX_BUILD)
    assert extra_buffers_safe("")  # a build that does not say: llama.cpp's default


def test_the_installed_build_decides_the_model_buffers(smollm2_path: Path) -> None:
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    model = NativeModel(llama_cpp, smollm2_path)
    try:
        assert model.extra_buffers is ("AMX_INT8 = 1" not in info)
    finally:
        model.close()


def test_a_prompt_through_the_real_model_does_not_kill_the_process(smollm2_path: Path) -> None:
    # In a child process, so that a SIGILL fails this test instead of ending the test run.
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from ollamacli.engine.base import LoadConfig, SamplingConfig, TextChunk
        from ollamacli.engine.llama import LlamaCppFactory

        engine = LlamaCppFactory().load(LoadConfig(Path({str(smollm2_path)!r}), num_ctx=512))
        prompt = "<|im_start|>user\\nWhy is the sky blue?<|im_end|>\\n<|im_start|>assistant\\n"
        events = engine.generate(prompt, SamplingConfig(temperature=0, num_predict=8))
        print("".join(e.text for e in events if isinstance(e, TextChunk)))
        engine.close()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip(), "no tokens generated"


@pytest.mark.parametrize(("build", "extra"), [(AMX_BUILD, False), (AVX2_BUILD, True)])
def test_the_llama_class_gets_the_same_buffers_within_the_block(build: str, extra: bool) -> None:
    def defaults() -> SimpleNamespace:
        return SimpleNamespace(use_extra_bufts=True)

    bindings = SimpleNamespace(
        llama_print_system_info=lambda: build.encode(), llama_model_default_params=defaults
    )
    with plain_buffers_for_llama_class(bindings):
        assert bindings.llama_model_default_params().use_extra_bufts is extra
    assert bindings.llama_model_default_params is defaults
