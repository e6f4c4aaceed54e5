"""The Jinja environment chat templates render in: Jinja's immutable sandbox, plus budgets.

Jinja's sandbox keeps a template away from Python internals, but not from spending without
bound: loops over huge ranges, recursive macros, `9 ** 9 ** 9`, `'a' * 10 ** 10` or a string
doubled on every turn of a loop. Here every `for` loop and every call counts against the
current `RenderBudget` (engine/budget.py), which also watches the clock and the request's
cancel token; the operators and filters that can make a value large check its size first.
The loops and `~` concatenations are wrapped while the template is parsed, so the compiled
template cannot skip the checks.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import jinja2
import jinja2.runtime
import jinja2.sandbox
from jinja2 import nodes
from jinja2.visitor import NodeTransformer

from ollamacli.engine.budget import MAX_INT_BITS, RenderBudget, check_number
from ollamacli.errors import TemplateError

_BUDGET: ContextVar[RenderBudget | None] = ContextVar("ollamacli_render_budget", default=None)
_LOOP_FILTER = "ollamacli_counted_loop"
_SIZE_FILTER = "ollamacli_checked_size"
# printf-style widths and precisions (`%*s`, `%99999999d`) and str.format widths (`{:>9999}`).
_PERCENT_SPEC = re.compile(r"%[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*:[^{}\d]*(\d+)")


@contextmanager
def budget_scope(budget: RenderBudget) -> Iterator[RenderBudget]:
    """Make `budget` the one the sandbox charges while the block renders."""
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick()


def _checked(value: object) -> object:
    """A value that may be big (a string, list or number), refused when too big."""
    budget = _BUDGET.get()
    if isinstance(value, (str, list, tuple)) and budget is not None:
        budget.check_size(len(value))
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise TemplateError(f"template error: a number of more than {MAX_INT_BITS} bits")
    return value


def _counted_loop(iterable: Iterable[object]) -> Iterator[object]:
    for item in iterable:
        _tick()
        yield item


def _check_width(spec: str | None) -> None:
    if spec and spec.isdigit():
        check_number(int(spec))


def _check_percent(text: str, args: object) -> None:
    """`'%*s' % (n, s)` and `'%9999999s' % s`: refuse widths beyond `MAX_NUMBER`."""
    starred = False
    for match in _PERCENT_SPEC.finditer(text):
        for spec in match.groups():
            starred = starred or spec == "*"
            _check_width(spec)
    if starred:
        for arg in args if isinstance(args, tuple) else (args,):
            check_number(arg)


def _multiply(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, (str, list, tuple)):
        left, right = right, left
    if isinstance(left, (str, list, tuple)) and isinstance(right, int):
        budget = _BUDGET.get()
        if budget is not None and right > 0:
            budget.check_size(len(left) * right)
    elif isinstance(left, int) and isinstance(right, int):
        _check_bits(left.bit_length() + right.bit_length())
    return left * right


def _power(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        _check_bits(left.bit_length() * right)
    return left**right


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        _check_percent(left, right)
    return left % right


def _check_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise TemplateError(f"template error: a number of more than {MAX_INT_BITS} bits")


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "*": _multiply,
    "**": _power,
    "%": _modulo,
    "+": operator.add,
}


def _guarded_filter(function: Callable[..., object]) -> Callable[..., object]:
    """A filter that counts as a step, takes no huge numbers, and returns no huge value."""
    # Filters marked pass_context/pass_environment get that first; the value comes next.
    skip = 2 if hasattr(function, "jinja_pass_arg") else 1

    @functools.wraps(function)
    def guarded(*args: object, **kwargs: object) -> object:
        _tick()
        for arg in (*args[skip:], *kwargs.values()):
            check_number(arg)
        return _checked(function(*args, **kwargs))

    return guarded


def _range(*args: int) -> range:
    for arg in args:
        check_number(arg)
    return range(*args)


class _Guards(NodeTransformer):
    """Wraps every loop's iterable in a counting filter and every `~` in a size check."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(node, _SIZE_FILTER, [], [], None, None, lineno=node.lineno)


class BudgetedSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """The immutable sandbox, charging the current `RenderBudget` (see the module docstring)."""

    intercepted_binops = frozenset(_BINOPS)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.binop_table.update(_BINOPS)
        self.filters = {name: _guarded_filter(f) for name, f in self.filters.items()}
        self.filters[_LOOP_FILTER] = _counted_loop
        self.filters[_SIZE_FILTER] = _checked
        self.globals["range"] = _range

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        result = _Guards().visit(tree)
        assert isinstance(result, nodes.Template)
        return result

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        return _checked(super().call_binop(context, operator, left, right))

    def call(
        __self,  # jinja2 names it so: a keyword argument may be called "self"
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        _tick()
        for arg in (*args, *kwargs.values()):
            check_number(arg)
        return _checked(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        for width in _FORMAT_SPEC.findall(str(value.__self__)):
            _check_width(width)
        return wrapped


def add_filter(env: jinja2.Environment, name: str, function: Callable[..., object]) -> None:
    """Register a filter with the same guards as the built-in ones."""
    env.filters[name] = _guarded_filter(function)


RENDER_ERRORS = (
    jinja2.TemplateError,
    TypeError,
    ValueError,
    LookupError,
    ArithmeticError,  # ZeroDivisionError, OverflowError (`range` beyond the sandbox's limit)
    RecursionError,  # a macro calling itself
    MemoryError,
)
"""What a template's own mistakes raise while it renders (each becomes a `TemplateError`)."""
