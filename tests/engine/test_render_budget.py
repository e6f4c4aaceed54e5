"""Template rendering is bounded: loops, calls, time, sizes, and a cancelled request stops it.

Templates come from requests and from /api/create: `{{ range 100000000 }}{{ end }}` used to
render on for seconds after its client left, and a Jinja `range(10**9)` answered 500.
"""

from __future__ import annotations

import threading
import time

import pytest

from ollamacli.engine.base import CancelToken, ChatMessage
from ollamacli.engine.budget import MAX_NUMBER, RenderBudget
from ollamacli.engine.templates import ChatTemplate, resolve_template
from ollamacli.errors import RequestCancelledError, TemplateError

HELLO = [ChatMessage("user", "hello")]


def render(source: str, budget: RenderBudget | None = None) -> str:
    return resolve_template(source).render(HELLO, budget=budget)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ range 100000000 }}{{ end }}", "a loop of 100000000 iterations is more than"),
        ("{% for i in range(10**9) %}x{% endfor %}", f"larger than the {MAX_NUMBER}"),
        ("{{ 'a' * 10**10 }}", "text longer than"),
        ("{{ 9 ** 999999 }}", "a number of more than"),
        ("{{ 'a'|center(10**9) }}", f"larger than the {MAX_NUMBER}"),
        ("{{ 'a'.ljust(10**9) }}", f"larger than the {MAX_NUMBER}"),
        ("{{ '{:>999999999}'.format('a') }}", f"larger than the {MAX_NUMBER}"),
        ("{{ '%999999999s' % 'a' }}", f"larger than the {MAX_NUMBER}"),
        ("{{ '%*s' % (999999999, 'a') }}", f"larger than the {MAX_NUMBER}"),
        ("{{ 1 / 0 }}", "division by zero"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "chat template error"),
    ],
    ids=[
        "go-range",
        "jinja-range",
        "jinja-repeat",
        "jinja-power",
        "jinja-filter-width",
        "jinja-method-width",
        "jinja-format-width",
        "jinja-percent-width",
        "jinja-percent-star",
        "jinja-zero-division",
        "jinja-recursion",
    ],
)
def test_runaway_templates_are_refused_quickly(source: str, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError, match="template error") as caught:
        render(source)
    assert message in str(caught.value)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "source",
    [
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        '{{ $s := "ab" }}{{ range 64 }}{{ $s = printf "%s%s" $s $s }}{{ end }}{{ len $s }}',
    ],
    ids=["jinja-concat", "jinja-plus", "go-printf"],
)
def test_a_string_doubled_in_a_loop_stops_at_the_size_limit(source: str) -> None:
    with pytest.raises(TemplateError, match="text longer than 4096 characters"):
        render(source, RenderBudget(max_chars=4096))


@pytest.mark.parametrize(
    "source",
    [
        "{{ range 3000 }}{{ range 3000 }}{{ end }}{{ end }}",
        "{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        "{% for c in messages[0].content * 2000 %}{% for d in messages[0].content * 2000 %}"
        "{% endfor %}{% endfor %}",
    ],
    ids=["go-nested-ranges", "jinja-nested-loops", "jinja-recursive-macro", "jinja-data-loops"],
)
def test_loops_and_calls_count_against_the_step_limit(source: str) -> None:
    with pytest.raises(TemplateError, match=r"more than (the )?10000 loop iterations and calls"):
        render(source, RenderBudget(max_steps=10_000))


def test_the_time_limit_stops_a_slow_rendering() -> None:
    source = "{{ range 3000 }}{{ range 3000 }}{{ end }}{{ end }}"
    started = time.monotonic()
    with pytest.raises(TemplateError, match=r"rendering took longer than 0\.2 seconds"):
        render(source, RenderBudget(max_seconds=0.2))
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "source",
    [
        "{{ range 3000 }}{{ range 3000 }}{{ end }}{{ end }}",
        "{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}",
    ],
    ids=["go", "jinja"],
)
def test_a_cancelled_request_stops_the_rendering(source: str) -> None:
    cancel = CancelToken()
    threading.Timer(0.2, cancel.cancel).start()
    started = time.monotonic()
    with pytest.raises(RequestCancelledError):
        resolve_template(source).render(HELLO, cancel=cancel)
    assert time.monotonic() - started < 2


def test_the_rendered_prompt_itself_is_size_limited() -> None:
    template = ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}", "jinja")
    long = [ChatMessage("user", "x" * 1000)] * 10
    with pytest.raises(TemplateError, match="text longer than 5000 characters"):
        template.render(long, budget=RenderBudget(max_chars=5000))


@pytest.mark.parametrize(
    "source",
    [
        "{% for m in messages %}{{ m.role }}: {{ m.content|trim }}{{ '%-5s' % 'x' }}"
        "{{ loop.index }}/{{ loop.length }}{% if loop.last %}!{% endif %}{% endfor %}"
        "{{ 'ab' * 3 }}{{ 2 ** 10 }}{{ 'a' ~ 'b' }}{{ '{:>4}'.format('z') }}{{ range(3)|list }}",
        '{{ range $i, $m := .Messages }}{{ $i }}{{ .Role }}{{ printf "%s!" .Content }}{{ end }}',
    ],
    ids=["jinja", "go"],
)
def test_ordinary_templates_render_as_before(source: str) -> None:
    text = resolve_template(source).render([*HELLO, ChatMessage("assistant", "hi")])
    assert "hello" in text
    assert "hi" in text
