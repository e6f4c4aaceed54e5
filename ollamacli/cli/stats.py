"""The `--verbose` statistics block, in Ollama's exact format (`api.Metrics.Summary`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ollamacli.service.chat import ChatDone

_SECOND = 1_000_000_000


def _fraction(value: int, precision: int) -> str:
    """`value / 10**precision` with trailing zeros (and a bare point) dropped, as Go's fmtFrac."""
    whole, rest = divmod(value, 10**precision)
    digits = f"{rest:0{precision}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def go_duration(nanoseconds: int) -> str:
    """A duration as Go's `time.Duration.String()` prints it: `1.5s`, `12.3ms`, `2m3.5s`."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    value = abs(nanoseconds)
    if value < 1_000:
        return f"{sign}{value}ns"
    if value < 1_000_000:
        return f"{sign}{_fraction(value, 3)}µs"
    if value < _SECOND:
        return f"{sign}{_fraction(value, 6)}ms"
    minutes, rest = divmod(value, 60 * _SECOND)
    text = f"{_fraction(rest, 9)}s"
    if minutes:
        hours, minutes = divmod(minutes, 60)
        text = (f"{hours}h" if hours else "") + f"{minutes}m" + text
    return sign + text


def _rate(count: int, duration_ns: int) -> str:
    return f"{count / (duration_ns / _SECOND):.2f}"


def format_stats(done: ChatDone) -> str:
    """Ollama's eight statistic lines; each appears only when its value is above zero."""
    lines = []
    if done.total_duration > 0:
        lines.append(f"total duration:       {go_duration(done.total_duration)}")
    if done.load_duration > 0:
        lines.append(f"load duration:        {go_duration(done.load_duration)}")
    if done.prompt_eval_count > 0:
        lines.append(f"prompt eval count:    {done.prompt_eval_count} token(s)")
    if done.prompt_eval_duration > 0:
        lines.append(f"prompt eval duration: {go_duration(done.prompt_eval_duration)}")
        rate = _rate(done.prompt_eval_count, done.prompt_eval_duration)
        lines.append(f"prompt eval rate:     {rate} tokens/s")
    if done.eval_count > 0:
        lines.append(f"eval count:           {done.eval_count} token(s)")
    if done.eval_duration > 0:
        lines.append(f"eval duration:        {go_duration(done.eval_duration)}")
        lines.append(f"eval rate:            {_rate(done.eval_count, done.eval_duration)} tokens/s")
    return "".join(line + "\n" for line in lines)
