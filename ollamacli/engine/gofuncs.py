"""The functions Ollama's Go templates can call: Go's text/template builtins (`and`, `or`,
`not`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `len`, `index`, `slice`, `print`, `printf`,
`println`, `html`, `urlquery`) and Ollama's own (`json`, `currentDate`, `yesterdayDate`,
`toTypeScriptType`), with Go's comparison rules (incompatible kinds are an error)."""

from __future__ import annotations

import html
import json
import urllib.parse
from collections.abc import Mapping
from datetime import date, timedelta

from ollamacli.engine.goexec import (
    FunctionError,
    GoFunction,
    GoStruct,
    format_value,
    is_true,
    to_json,
)


def _typescript(value: object) -> str:
    """Ollama's `toTypeScriptType` for a tool property."""
    if not isinstance(value, GoStruct) or value.type_name != "api.ToolProperty":
        return "any"
    any_of = value.fields.get("AnyOf")
    if isinstance(any_of, list) and any_of:
        return " | ".join(_typescript(p) for p in any_of)
    kind = value.fields.get("Type")
    kinds = [kind] if isinstance(kind, str) else kind if isinstance(kind, list) else []
    names = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean"}
    names |= {"array": "any[]", "object": "Record<string, any>", "null": "null"}
    return " | ".join(names.get(str(k), "any") for k in kinds) or "any"


def _kind(value: object) -> str:
    if value is None:
        return "nil"
    for kind, types in (("bool", bool), ("int", int), ("float", float), ("string", str)):
        if isinstance(value, types):
            return kind
    return "other"


def _eq(first: object, *others: object) -> bool:
    if not others:
        raise FunctionError("missing argument for comparison")
    for other in others:
        kinds = (_kind(first), _kind(other))
        if kinds[0] != kinds[1]:
            if "nil" not in kinds:
                raise FunctionError("incompatible types for comparison")
        elif first == other:
            return True
    return False


def _ordered(first: object, second: object) -> tuple[object, object]:
    kinds = (_kind(first), _kind(second))
    if kinds[0] != kinds[1]:
        raise FunctionError("incompatible types for comparison")
    if kinds[0] not in ("int", "float", "string"):
        raise FunctionError("invalid type for comparison")
    return first, second


def _less(first: object, second: object) -> bool:
    a, b = _ordered(first, second)
    return bool(a < b)  # type: ignore[operator]  # same basic kind, checked above


def _len(value: object) -> int:
    if value is None:  # a nil slice or map field (ToolCalls, Images): Go's len is 0
        return 0
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, (list, tuple, dict, bytes)):
        return len(value)
    raise FunctionError(f"len of type {_kind(value)}")


def _index(value: object, *keys: object) -> object:
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, (list, tuple, str)) and isinstance(key, int):
            if not 0 <= key < len(value):
                raise FunctionError(f"index out of range: {key}")
            value = value[key]
        else:
            raise FunctionError(f"can't index item of type {_kind(value)}")
    return value


def _slice(value: object, *bounds: object) -> object:
    if not isinstance(value, (list, tuple, str)):
        raise FunctionError(f"can't slice item of type {_kind(value)}")
    if len(bounds) > 3 or not all(isinstance(b, int) for b in bounds):
        raise FunctionError("invalid slice indices")
    start, stop = (list(bounds) + [0, len(value)][len(bounds) :])[:2]
    assert isinstance(start, int)
    assert isinstance(stop, int)
    if not 0 <= start <= stop <= len(value):
        raise FunctionError(f"slice index out of range: {start}:{stop}")
    return value[start:stop]


def _sprint(*values: object) -> str:
    """fmt.Sprint: a space between operands when neither side is a string."""
    out = ""
    for index, value in enumerate(values):
        if index and not isinstance(value, str) and not isinstance(values[index - 1], str):
            out += " "
        out += format_value(value, nested=True)
    return out


def _sprintf(template: object, *values: object) -> str:
    """fmt.Sprintf for the verbs templates use: %s %v %d %q %t %f %g %x %%."""
    text, out, remaining = str(template), [], list(values)
    index = 0
    while index < len(text):
        if text[index] != "%" or index + 1 == len(text):
            out.append(text[index])
            index += 1
            continue
        verb = text[index + 1]
        index += 2
        if verb == "%":
            out.append("%")
        elif not remaining:
            out.append(f"%!{verb}(MISSING)")
        else:
            out.append(_verb(verb, remaining.pop(0)))
    return "".join(out)


def _verb(verb: str, value: object) -> str:
    if verb == "q":
        return json.dumps(format_value(value, nested=True), ensure_ascii=False)
    if verb == "d" and isinstance(value, int):
        return str(value)
    if verb == "x" and isinstance(value, int):
        return format(value, "x")
    if verb in "fg" and isinstance(value, (int, float)):
        return format(float(value), "f" if verb == "f" else "g")
    return format_value(value, nested=True)


FUNCTIONS: dict[str, GoFunction] = {
    "and": lambda *a: a[-1],  # short-circuit handled by the executor
    "or": lambda *a: a[-1],
    "not": lambda value: not is_true(value),
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": _less,
    "le": lambda a, b: _less(a, b) or _eq(a, b),
    "gt": lambda a, b: not (_less(a, b) or _eq(a, b)),
    "ge": lambda a, b: not _less(a, b),
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": _sprint,
    "printf": _sprintf,
    "println": lambda *a: " ".join(format_value(v, nested=True) for v in a) + "\n",
    "html": lambda *a: html.escape(_sprint(*a)),
    "urlquery": lambda *a: urllib.parse.quote_plus(_sprint(*a)),
    "json": to_json,
    "currentDate": lambda *_: date.today().isoformat(),
    "yesterdayDate": lambda *_: (date.today() - timedelta(days=1)).isoformat(),
    "toTypeScriptType": _typescript,
}
