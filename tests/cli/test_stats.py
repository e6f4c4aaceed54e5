"""`--verbose` statistics and Go duration formatting."""

from __future__ import annotations

import pytest

from ollamacli.cli.stats import format_stats, go_duration
from ollamacli.service.chat import ChatDone


@pytest.mark.parametrize(
    ("nanoseconds", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1_000, "1µs"),
        (1_500, "1.5µs"),
        (999_999, "999.999µs"),
        (1_000_000, "1ms"),
        (12_300_000, "12.3ms"),
        (123_456_789, "123.456789ms"),
        (1_000_000_000, "1s"),
        (1_234_567_891, "1.234567891s"),
        (59_999_999_999, "59.999999999s"),
        (60_000_000_000, "1m0s"),
        (61_500_000_000, "1m1.5s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_000_000_000, "1h2m3s"),
        (-1_500, "-1.5µs"),
        (-90_000_000_000, "-1m30s"),
    ],
    ids=lambda value: str(value),
)
def test_go_duration_matches_go_time_duration_string(nanoseconds, text):
    assert go_duration(nanoseconds) == text


def test_format_stats_prints_ollamas_eight_lines():
    done = ChatDone(
        done_reason="stop",
        total_duration=2_345_678_901,
        load_duration=98_765_432,
        prompt_eval_count=26,
        prompt_eval_duration=130_000_000,
        eval_count=290,
        eval_duration=2_000_000_000,
    )
    assert format_stats(done) == (
        "total duration:       2.345678901s\n"
        "load duration:        98.765432ms\n"
        "prompt eval count:    26 token(s)\n"
        "prompt eval duration: 130ms\n"
        "prompt eval rate:     200.00 tokens/s\n"
        "eval count:           290 token(s)\n"
        "eval duration:        2s\n"
        "eval rate:            145.00 tokens/s\n"
    )


def test_format_stats_leaves_out_zero_values():
    done = ChatDone(done_reason="stop", total_duration=5_000, eval_count=3, eval_duration=0)
    assert format_stats(done) == "total duration:       5µs\neval count:           3 token(s)\n"
