"""Fuzzer findings that other branches fix: each entry switches one generator off.

While an issue is listed here, the generators in `tests/fuzz/strategies.py` that reach it
(checked with `allowed("<key>")`) stay silent, so the fuzz run keeps passing. Delete an entry
once its fix is merged: the generator comes back and the fuzzer proves the fix. Each value is the
reproduction the fuzzer found.
"""

from __future__ import annotations

KNOWN_ISSUES: dict[str, str] = {}


def allowed(issue: str) -> bool:
    """True when the generators may produce inputs of this (fixed or never-known) class."""
    return issue not in KNOWN_ISSUES
