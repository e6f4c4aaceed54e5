"""Fuzzer findings that other branches fix: each entry switches one generator off.

While an issue is listed here, the generators in `tests/fuzz/strategies.py` that reach it
(checked with `allowed("<key>")`) stay silent, so the fuzz run keeps passing. Delete an entry
once its fix is merged: the generator comes back and the fuzzer proves the fix. Each value is the
reproduction the fuzzer found.
"""

from __future__ import annotations

KNOWN_ISSUES: dict[str, str] = {
    # harden-req: token ids outside the vocabulary in /api/generate's context.
    "context-token-ids": 'POST /api/generate {"model": "fuzz", "prompt": "", "context": '
    '[-1, -1, 10], "options": {"num_predict": 0}} -> 500 "llama.cpp could not evaluate the '
    'prompt: llama_decode returned -1"',
    # harden-req: lone surrogates (valid JSON escapes) in text fields.
    "surrogates": 'POST /api/create {"model": "fz-scratch", "from": "fuzz", "parameters": '
    '{"\\udfff": 0}} -> 500: the error message "unknown parameter" holds the lone surrogate '
    "and the JSON response cannot encode it (UnicodeEncodeError, logged as a crash)",
}


def allowed(issue: str) -> bool:
    """True when the generators may produce inputs of this (fixed or never-known) class."""
    return issue not in KNOWN_ISSUES
