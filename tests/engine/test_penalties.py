"""RepeatPenalties: the same numbers as llama.cpp's own penalties stage, on the changed logits
only (compared with the stage of the installed llama.cpp, bit for bit)."""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollamacli.engine.llamalib import RepeatPenalties

N_VOCAB = 2_000
TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])


def llama_cpp_penalised(
    llama: Any, logits: np.ndarray, history: list[int], last_n: int, factors: tuple[float, ...]
) -> np.ndarray:
    stage = llama.llama_sampler_init_penalties(N_VOCAB, last_n, *factors)
    try:
        for token in history:
            llama.llama_sampler_accept(stage, token)
        candidates = (llama.llama_token_data * N_VOCAB)()
        view = np.ctypeslib.as_array(candidates).view(TOKEN_DATA)
        view["id"] = np.arange(N_VOCAB, dtype=np.int32)
        view["logit"] = logits
        array = llama.llama_token_data_array(candidates, N_VOCAB, -1, False)
        llama.llama_sampler_apply(stage, ctypes.byref(array))
        return np.array(view["logit"])
    finally:
        llama.llama_sampler_free(stage)


@pytest.fixture(scope="module")
def lib():
    from ollamacli.engine.llama import _library

    return _library()  # llama_cpp, with its log and /dev/null handling


@settings(max_examples=60, deadline=None)
@given(
    history=st.lists(st.integers(0, 40), max_size=120),  # small ids: tokens repeat
    last_n=st.integers(1, 64),
    repeat=st.sampled_from([1.0, 1.1, 1.5, 2.0, 0.9]),
    frequency=st.sampled_from([0.0, 0.5, 1.5, -0.3]),
    presence=st.sampled_from([0.0, 0.7, 1.5]),
    seed=st.integers(0, 2**16),
)
def test_the_same_logits_as_llama_cpp_s_penalties_stage(
    lib, history, last_n, repeat, frequency, presence, seed
):
    logits = np.random.default_rng(seed).normal(0, 4, N_VOCAB).astype(np.float32)
    logits[:5] = [0.0, -0.0, 3.0, -3.0, 1e-8]  # both sides of the sign test
    expected = llama_cpp_penalised(lib, logits, history, last_n, (repeat, frequency, presence))
    penalties = RepeatPenalties(last_n, repeat, frequency, presence)
    for token in history:
        penalties.accept(token)
    ours = logits.copy()
    penalties.apply(ours)
    assert np.array_equal(ours, expected)
    untouched = np.ones(N_VOCAB, dtype=bool)
    untouched[history[-last_n:]] = False
    assert np.array_equal(ours[untouched], logits[untouched])  # only the remembered tokens


def test_the_window_forgets_the_oldest_token():
    penalties = RepeatPenalties(2, 2.0, 0.0, 0.0)
    for token in (7, 8, 9):
        penalties.accept(token)
    logits = np.full(12, 4.0, dtype=np.float32)
    penalties.apply(logits)
    assert logits[7] == 4.0
    assert (logits[8], logits[9]) == (2.0, 2.0)
