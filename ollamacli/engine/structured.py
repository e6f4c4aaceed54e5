"""Structured output requests: which `format` values and JSON-schema keywords we can enforce.

The grammar itself is built by llama-cpp-python's JSON-schema converter (in engine/llama.py).
That converter silently ignores keywords it does not understand, which would let the model
produce output that breaks the schema; so a schema is checked here first, and a keyword
the converter cannot enforce is refused with its name. The converter also picks one branch
per schema (`anyOf` before `properties`, `pattern` before `maxLength`, `format` before
length limits), dropping the other keywords of such combinations without a word, and knows
only a few string formats: those cases are refused too.

Limits: llama.cpp's grammar parser recurses once per nested parenthesis, and the converter
writes `maxLength: N` (like `maxItems` and a pattern's `{0,N}`) as N nested optional groups;
at N = 20,000 the parser overflowed the stack and the whole server died (SIGSEGV), from about
N = 1,100 it refuses the grammar ("number of rules ... exceeds sane defaults"), while 1,000 parses.
So repetition counts are capped at `MAX_REPEAT`, schemas at `MAX_SCHEMA_DEPTH` levels, and
every grammar, whatever made it, is checked by `check_grammar` (size and parenthesis depth,
measured: depth 14,000 still parsed on an 8 MiB thread stack, 20,000 crashed) before
llama.cpp parses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ollamacli.errors import InvalidRequestError

MAX_REPEAT = 1000
"""The largest minLength/maxLength/minItems/maxItems, and `{m,n}` count in a pattern."""

MAX_SCHEMA_DEPTH = 64
"""How deep schemas may nest inside a schema."""

MAX_PATTERN = 1000
"""The longest `pattern` (characters)."""

MAX_GRAMMAR_BYTES = 1 << 20
"""The largest GBNF grammar handed to llama.cpp."""

MAX_GRAMMAR_DEPTH = 1100
"""The deepest parenthesis nesting in a grammar (room for `MAX_REPEAT` plus the structure)."""

_REPEAT_KEYWORDS = ("minLength", "maxLength", "minItems", "maxItems")
# GBNF string literals, character classes and comments: their parentheses are not groups.
_NOT_STRUCTURE = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|#[^\r\n]*')
_PAREN = re.compile(r"[()]")
_QUANTIFIER = re.compile(r"(?<!\\)\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")

ENFORCED_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "$defs",
        "definitions",
        "pattern",
        "format",
        "minLength",
        "maxLength",
    }
)
"""Keywords the grammar builder turns into constraints."""

ANNOTATION_KEYWORDS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "nullable",
    }
)
"""Keywords that describe a value without constraining it (safe to ignore)."""

STRING_FORMATS = frozenset(
    {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
)
"""`format` values the converter turns into a grammar (others it would ignore)."""

_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
# Keywords the converter handles before the listed ones, ignoring those when both appear.
_SHADOWING: tuple[tuple[str, frozenset[str]], ...] = (
    ("$ref", ENFORCED_KEYWORDS - {"$ref", "$defs", "definitions"}),
    ("anyOf", ENFORCED_KEYWORDS - {"anyOf", "$defs", "definitions", "type"}),
    ("oneOf", ENFORCED_KEYWORDS - {"oneOf", "$defs", "definitions", "type"}),
    ("const", ENFORCED_KEYWORDS - {"const", "type"}),
    ("enum", ENFORCED_KEYWORDS - {"enum", "type"}),
    ("pattern", frozenset({"minLength", "maxLength", "format"})),
    ("format", frozenset({"minLength", "maxLength"})),
)


def check_json_schema(
    schema: Mapping[str, object], *, where: str = "format", depth: int = 0
) -> None:
    """Raise `InvalidRequestError` naming the first keyword the grammar cannot enforce, or
    the limit a schema goes beyond."""
    if depth > MAX_SCHEMA_DEPTH:
        raise InvalidRequestError(
            f"{where}: JSON schema nests deeper than the limit of {MAX_SCHEMA_DEPTH} levels"
        )
    _check_limits(schema, where)
    for key, value in schema.items():
        if key not in ENFORCED_KEYWORDS and key not in ANNOTATION_KEYWORDS:
            if not key.startswith("x-"):
                raise InvalidRequestError(
                    f'{where}: JSON schema keyword "{key}" is not supported',
                    hint="supported: " + ", ".join(sorted(ENFORCED_KEYWORDS)),
                )
            continue
        _check_children(key, value, where, depth + 1)
    _check_combinations(schema, where)


def _unsupported(where: str, detail: str) -> InvalidRequestError:
    return InvalidRequestError(f"{where}: JSON schema {detail} is not supported")


def _check_combinations(schema: Mapping[str, object], where: str) -> None:
    """Refuse what the converter would silently drop (see the module docstring)."""
    fmt = schema.get("format")
    if fmt is not None and fmt not in STRING_FORMATS:
        raise _unsupported(where, f'keyword "format" with value {fmt!r}')
    for first, shadowed in _SHADOWING:
        if first in schema:
            dropped = sorted(k for k in shadowed if k in schema)
            if dropped:
                raise _unsupported(where, f'keyword "{dropped[0]}" next to "{first}"')
    if "allOf" in schema:
        parts = schema["allOf"]
        if (
            schema.get("type", "object") != "object"
            or not isinstance(parts, list)
            or any(
                not isinstance(p, Mapping) or not ({"properties", "$ref", "anyOf"} & set(p))
                for p in parts
            )
        ):
            raise _unsupported(where, 'keyword "allOf" over anything but object properties')
    _check_required(schema, where)
    _check_shapes(schema, where)


def _check_shapes(schema: Mapping[str, object], where: str) -> None:
    """Union types, tuples and length limits the converter reads only in one shape."""
    kind = schema.get("type")
    if isinstance(kind, list):
        extra = sorted(
            k for k in ENFORCED_KEYWORDS - {"type", "$defs", "definitions"} if k in schema
        )
        if extra:
            raise _unsupported(where, f'keyword "{extra[0]}" next to a list of types')
    limits = sorted(k for k in ("minItems", "maxItems") if k in schema)
    is_tuple = "prefixItems" in schema or isinstance(schema.get("items"), list)
    if limits and (is_tuple or "items" not in schema):
        raise _unsupported(where, f'keyword "{limits[0]}" without a single "items" schema')
    if "prefixItems" in schema and "items" in schema:
        raise _unsupported(where, 'keyword "items" next to "prefixItems"')
    lengths = sorted(k for k in ("minLength", "maxLength") if k in schema)
    if lengths and kind != "string":
        raise _unsupported(where, f'keyword "{lengths[0]}" without "type": "string"')


def _check_required(schema: Mapping[str, object], where: str) -> None:
    """A required property the schema does not describe could never be produced."""
    required, properties = schema.get("required"), schema.get("properties")
    if not isinstance(required, list) or "allOf" in schema:
        return
    known = properties if isinstance(properties, Mapping) else {}
    for name in required:
        if name not in known:
            raise InvalidRequestError(
                f'{where}: required property "{name}" is not in "properties"',
                hint="describe every required property, or it can never be generated",
            )


def _check_children(key: str, value: object, where: str, depth: int) -> None:
    if key in _SCHEMA_MAPS and isinstance(value, Mapping):
        for name, child in value.items():
            _check_schema_value(child, f"{where}.{key}.{name}", depth)
    elif key in _SCHEMA_LISTS and isinstance(value, list):
        for index, child in enumerate(value):
            _check_schema_value(child, f"{where}.{key}[{index}]", depth)
    elif key in ("items", "additionalProperties"):
        if isinstance(value, list):
            for index, child in enumerate(value):
                _check_schema_value(child, f"{where}.{key}[{index}]", depth)
        elif not isinstance(value, bool):
            _check_schema_value(value, f"{where}.{key}", depth)


def _check_schema_value(value: object, where: str, depth: int) -> None:
    if isinstance(value, bool):
        return
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"{where}: a JSON schema must be an object")
    check_json_schema(value, where=where, depth=depth)


def _over_limit(where: str, what: str, value: object, limit: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"{where}: JSON schema {what} is {value}, more than the limit of {limit}",
        hint="constrained output cannot repeat more than that; check the length afterwards",
    )


def _check_limits(schema: Mapping[str, object], where: str) -> None:
    """Repetition counts and patterns the grammar can hold (see the module docstring)."""
    for key in _REPEAT_KEYWORDS:
        if key not in schema:
            continue
        value = schema[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidRequestError(
                f'{where}: JSON schema keyword "{key}" must be a non-negative integer'
            )
        if value > MAX_REPEAT:
            raise _over_limit(where, f'keyword "{key}"', value, MAX_REPEAT)
    pattern = schema.get("pattern")
    if pattern is None:
        return
    if not isinstance(pattern, str):
        raise InvalidRequestError(f'{where}: JSON schema keyword "pattern" must be a string')
    if len(pattern) > MAX_PATTERN:
        raise _over_limit(where, '"pattern" length', len(pattern), MAX_PATTERN)
    for match in _QUANTIFIER.finditer(pattern):
        count = max(int(number) for number in match.groups() if number)
        if count > MAX_REPEAT:
            raise _over_limit(where, f'"pattern" repetition {match.group(0)}', count, MAX_REPEAT)


def check_grammar(grammar: str, *, where: str = "format") -> None:
    """Refuse a GBNF grammar llama.cpp must not parse: too large, or nested so deeply that
    its recursive parser could overflow the stack (see the module docstring)."""
    size = len(grammar.encode())
    if size > MAX_GRAMMAR_BYTES:
        raise InvalidRequestError(
            f"{where}: the grammar is {size} bytes, more than the limit of {MAX_GRAMMAR_BYTES}",
            hint="simplify the schema (fewer properties, shorter enums, smaller limits)",
        )
    depth = grammar_depth(grammar)
    if depth > MAX_GRAMMAR_DEPTH:
        raise InvalidRequestError(
            f"{where}: the grammar nests {depth} groups deep, more than the limit of "
            f"{MAX_GRAMMAR_DEPTH}",
            hint="simplify the schema (smaller maxLength/maxItems, fewer nested groups)",
        )


def grammar_depth(grammar: str) -> int:
    """The deepest parenthesis nesting of a GBNF text (outside literals, classes, comments)."""
    depth = deepest = 0
    for match in _PAREN.finditer(_NOT_STRUCTURE.sub("", grammar)):
        depth += 1 if match.group() == "(" else -1
        deepest = max(deepest, depth)
    return deepest


# Rule names of a GBNF text (where they are defined), and `root` where it is referenced.
_RULE_NAME = re.compile(r"^\s*([A-Za-z0-9-]+)\s*::=", re.MULTILINE)
_ROOT_WORD = re.compile(_NOT_STRUCTURE.pattern + r"|(?<![A-Za-z0-9-])root(?![A-Za-z0-9-])")
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.,:;!?|=+*/<>@")


def gbnf_literal(text: str) -> str:
    """`text` as a GBNF string literal (code points escaped, never surrogate pairs)."""
    return '"' + "".join(c if c in _PLAIN else f"\\U{ord(c):08X}" for c in text) + '"'


def _class_char(char: str) -> str:
    return f"\\U{ord(char):08X}"


def _fresh_name(grammar: str, base: str) -> str:
    """A rule-name prefix no rule of `grammar` starts with."""
    names = _RULE_NAME.findall(grammar)
    candidate, number = base, 1
    while any(name.startswith(candidate) for name in names):
        number += 1
        candidate = f"{base}{number}"
    return candidate


def text_without(tag: str, prefix: str) -> str:
    """GBNF rules `{prefix}-0` … `{prefix}-{len(tag) - 1}`: any text (empty included) that
    does not contain `tag`; the start rule is `{prefix}-0`.

    Rule `k` stands for "the text so far ends with the first k characters of the tag": a
    character that extends the match goes to the next rule, any other falls back to the
    longest part of the tag still matched (as in Knuth-Morris-Pratt), and no rule lets the
    whole tag through. Each rule recurses only at its end, which llama.cpp follows without
    its stacks growing."""
    if not tag:
        raise ValueError("the tag must not be empty")
    chars = sorted(set(tag))
    others = "[^" + "".join(_class_char(c) for c in chars) + "]"
    rules = []
    for matched in range(len(tag)):
        choices = []
        for char in chars:
            after = _longest_match(tag[:matched] + char, tag)
            if after < len(tag):
                choices.append(f"{gbnf_literal(char)} {prefix}-{after}")
        choices.append(f"{others} {prefix}-0")
        rules.append(f"{prefix}-{matched} ::= ( {' | '.join(choices)} )?")
    return "\n".join(rules)


def _longest_match(text: str, tag: str) -> int:
    """The length of the longest start of `tag` that `text` ends with."""
    for size in range(min(len(text), len(tag)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


@dataclass(frozen=True, slots=True)
class TraceShape:
    """How a trace is written before a constrained answer: `opening`, free text without
    `closing`, `closing`, `after_closing` (a GBNF fragment, e.g. blanks); the trace is
    optional unless `required`; `lead` (a literal) always comes between it and the answer."""

    opening: str
    closing: str
    after_closing: str = ""
    lead: str = ""
    required: bool = False


def trace_then(answer: str, shape: TraceShape, *, where: str = "format") -> str:
    """A grammar that lets the model reason freely before `answer` (a GBNF text with a `root`
    rule) constrains what follows, in the given `shape`. The answer's rules keep their names
    (its `root` is renamed, references included) and the result is checked like any
    grammar."""
    prefix = _fresh_name(answer, "trace")
    answer_root = f"{prefix}-answer"
    body = f"{prefix}-text"
    opening = gbnf_literal(shape.opening) if shape.opening else ""
    parts = (opening, f"{body}-0", gbnf_literal(shape.closing), shape.after_closing)
    trace = " ".join(part for part in parts if part)
    root = trace if shape.required else f"( {trace} )?"
    if shape.lead:
        root += f" {gbnf_literal(shape.lead)}"
    rules = text_without(shape.closing, body)
    grammar = f"root ::= {root} {answer_root}\n{rules}\n{_renamed_root(answer, answer_root)}"
    check_grammar(grammar, where=where)
    return grammar


def _renamed_root(grammar: str, name: str) -> str:
    """`grammar` with its rule `root` called `name`, where defined and where referenced."""
    return _ROOT_WORD.sub(lambda match: name if match.group() == "root" else match.group(), grammar)


def prefixed_rules(grammar: str, prefix: str) -> str:
    """`grammar` with every rule it defines renamed `{prefix}-{name}` (references included),
    so that several grammars can live in one text; its start rule is `{prefix}-root`."""
    names = sorted(set(_RULE_NAME.findall(grammar)), key=len, reverse=True)
    if not names:
        return grammar
    words = "|".join(re.escape(name) for name in names)
    pattern = re.compile(_NOT_STRUCTURE.pattern + rf"|(?<![A-Za-z0-9-])(?:{words})(?![A-Za-z0-9-])")
    return pattern.sub(
        lambda match: match.group() if match.group()[:1] in '"[#' else f"{prefix}-{match.group()}",
        grammar,
    )


def lead_then(answer: str, lead: str, *, where: str = "format") -> str:
    """A grammar for the literal `lead` followed by `answer` (a GBNF text with a `root`)."""
    answer_root = f"{_fresh_name(answer, 'lead')}-answer"
    grammar = f"root ::= {gbnf_literal(lead)} {answer_root}\n{_renamed_root(answer, answer_root)}"
    check_grammar(grammar, where=where)
    return grammar
