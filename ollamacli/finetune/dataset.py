"""Fine-tuning data: read a JSONL file or a JSON array of rows and check every row before training.

Two row shapes are accepted:

- the seed's question/answer rows: `{"role": "user", "content": <question>, "response": <answer>}`;
- chat rows: `{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}`
  (multi-turn, optional leading system message, ending with an assistant turn).

An assistant turn (or a question/answer row) may carry `thinking`, its reasoning trace: models
whose template has a trace learn it between the tags, before the answer.

A malformed row is a `DatasetError` that names the line (JSONL) or the index (JSON array).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ollamacli.engine.base import ChatMessage
from ollamacli.errors import DatasetError

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class Example:
    """One training conversation; every assistant turn in it is trained on."""

    messages: tuple[ChatMessage, ...]
    location: str

    @property
    def answers(self) -> int:
        """How many assistant turns the example teaches."""
        return sum(1 for m in self.messages if m.role == "assistant")


def load_dataset(path: Path) -> list[Example]:
    """Read and validate a dataset file; raises `DatasetError` naming the first bad row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError("file not found", location=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read: {exc}", location=str(path)) from exc
    return parse_dataset(text, source=str(path))


def parse_dataset(text: str, *, source: str = "dataset") -> list[Example]:
    """Validate dataset text: a JSON array when it starts with `[`, JSON Lines otherwise."""
    rows = _array_rows(text, source) if text.lstrip().startswith("[") else _jsonl_rows(text, source)
    examples = [parse_row(row, location) for location, row in rows]
    if not examples:
        raise DatasetError(
            "no training examples",
            location=source,
        )
    return examples


def _array_rows(text: str, source: str) -> Iterator[tuple[str, object]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"invalid JSON: {exc.msg}", location=f"{source}:{exc.lineno}") from exc
    for index, row in enumerate(data):  # text starting with "[" decodes to a list
        yield f"{source}[{index}]", row


def _jsonl_rows(text: str, source: str) -> Iterator[tuple[str, object]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        location = f"{source}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"invalid JSON: {exc.msg} (column {exc.colno})", location=location
            ) from exc
        yield location, row


def parse_row(row: object, location: str) -> Example:
    """One row as an `Example` (either shape), or a `DatasetError` saying what is wrong."""
    if not isinstance(row, dict):
        raise DatasetError(f"expected a JSON object, got {_kind(row)}", location=location)
    if "messages" in row:
        if "content" in row or "response" in row:
            raise DatasetError(
                "a row has either 'messages' or 'content' and 'response', not both",
                location=location,
            )
        return Example(_chat_messages(row["messages"], location), location)
    return Example(_question_answer(row, location), location)


def _question_answer(row: dict[str, object], location: str) -> tuple[ChatMessage, ...]:
    role = row.get("role", "user")
    if role != "user":
        raise DatasetError(f"'role' must be \"user\", got {role!r}", location=location)
    question = _text(row, "content", location)
    answer = _text(row, "response", location)
    thinking = _text(row, "thinking", location) if "thinking" in row else ""
    return ChatMessage("user", question), ChatMessage("assistant", answer, thinking=thinking)


def _chat_messages(value: object, location: str) -> tuple[ChatMessage, ...]:
    if not isinstance(value, list) or not value:
        raise DatasetError("'messages' must be a non-empty list", location=location)
    messages = []
    for index, item in enumerate(value):
        where = f"{location}: messages[{index}]"
        if not isinstance(item, dict):
            raise DatasetError(f"expected a JSON object, got {_kind(item)}", location=where)
        role = item.get("role")
        if role not in ROLES:
            raise DatasetError(
                f"'role' must be one of {', '.join(ROLES)}, got {role!r}", location=where
            )
        if role == "system" and index != 0:
            raise DatasetError("only the first message may be a system message", location=where)
        thinking = (
            _text(item, "thinking", where) if role == "assistant" and "thinking" in item else ""
        )
        messages.append(ChatMessage(str(role), _text(item, "content", where), thinking=thinking))
    _check_turns(messages, location)
    return tuple(messages)


def _check_turns(messages: list[ChatMessage], location: str) -> None:
    turns = [m for m in messages if m.role != "system"]
    if not turns or turns[0].role != "user":
        raise DatasetError("the conversation must start with a user message", location=location)
    if turns[-1].role != "assistant":
        raise DatasetError(
            "the last message must be from the assistant (it is what the model learns)",
            location=location,
        )


def _text(row: dict[str, object], key: str, location: str) -> str:
    if key not in row:
        raise DatasetError(f"missing '{key}'", location=location)
    value = row[key]
    if not isinstance(value, str):
        raise DatasetError(f"'{key}' must be a string, got {_kind(value)}", location=location)
    if not value.strip():
        raise DatasetError(f"'{key}' is empty", location=location)
    return value


def _kind(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)
