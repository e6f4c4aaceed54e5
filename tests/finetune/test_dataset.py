"""Dataset loading and validation: both row shapes, both file shapes, one clear error per problem."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from ollamacli.engine.base import ChatMessage
from ollamacli.errors import DatasetError
from ollamacli.finetune.dataset import load_dataset, parse_dataset

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "finetune" / "geektime.jsonl"
SEED = Path("/work/shared/seed/000_ba1144e16aa3651d.txt")


def test_example_dataset_has_the_seeds_eight_rows():
    examples = load_dataset(EXAMPLE)
    assert len(examples) == 8
    assert examples[0].messages == (
        ChatMessage("user", "你是谁？"),  # noqa: RUF001  (the seed is Chinese)
        ChatMessage("assistant", "我是极客时间的小极，一个虚拟客服助手。"),  # noqa: RUF001
    )
    assert [e.location for e in examples[:2]] == [f"{EXAMPLE}:1", f"{EXAMPLE}:2"]


@pytest.mark.skipif(not SEED.is_file(), reason="the seed text is not on this machine")
def test_example_dataset_is_copied_exactly_from_the_seed():
    lines = SEED.read_text(encoding="utf-8").splitlines()
    seed_rows = [
        ast.literal_eval(line.strip().rstrip(","))
        for line in lines
        if line.strip().startswith('{"role": "user"') and '"response"' in line
    ]
    shipped = [json.loads(line) for line in EXAMPLE.read_text(encoding="utf-8").splitlines()]
    assert shipped == seed_rows


def test_json_array_of_seed_rows_and_chat_rows():
    text = json.dumps(
        [
            {"role": "user", "content": "Q1", "response": "A1"},
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Q2"},
                    {"role": "assistant", "content": "A2"},
                    {"role": "user", "content": "Q3"},
                    {"role": "assistant", "content": "A3"},
                ]
            },
        ]
    )
    first, second = parse_dataset(text, source="data.json")
    assert first.messages == (ChatMessage("user", "Q1"), ChatMessage("assistant", "A1"))
    assert first.location == "data.json[0]"
    assert [m.role for m in second.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert second.answers == 2


def test_jsonl_skips_blank_lines_and_accepts_a_bom(tmp_path):
    path = tmp_path / "d.jsonl"
    row = json.dumps({"content": "Q", "response": "A"})
    path.write_text(f"\ufeff{row}\n\n   \n{row}\n", encoding="utf-8")
    examples = load_dataset(path)
    assert [e.location for e in examples] == [f"{path}:1", f"{path}:4"]


BAD_ROWS = [
    ('{"content": "Q"}', "missing 'response'"),
    ('{"response": "A"}', "missing 'content'"),
    ('{"role": "assistant", "content": "Q", "response": "A"}', "'role' must be \"user\""),
    ('{"content": 3, "response": "A"}', "'content' must be a string, got a number"),
    ('{"content": "  ", "response": "A"}', "'content' is empty"),
    ("[1, 2]", "expected a JSON object, got an array"),
    ('{"content": "Q", "response": "A", "messages": []}', "not both"),
    ('{"messages": []}', "'messages' must be a non-empty list"),
    ('{"messages": [{"role": "user", "content": "Q"}]}', "the last message must be from"),
    ('{"messages": [{"role": "assistant", "content": "A"}]}', "must start with a user message"),
    (
        '{"messages": [{"role": "user", "content": "Q"}, {"role": "bot", "content": "A"}]}',
        "messages[1]: 'role' must be one of system, user, assistant, got 'bot'",
    ),
    (
        '{"messages": [{"role": "user", "content": "Q"}, {"role": "system", "content": "S"},'
        ' {"role": "assistant", "content": "A"}]}',
        "messages[1]: only the first message may be a system message",
    ),
    ('{"content": "Q", "response": "A"', "invalid JSON: Expecting ',' delimiter (column 33)"),
]


@pytest.mark.parametrize(("line", "problem"), BAD_ROWS, ids=[p for _, p in BAD_ROWS])
def test_a_bad_jsonl_row_names_its_line_and_problem(line, problem):
    good = json.dumps({"content": "Q", "response": "A"})
    with pytest.raises(DatasetError) as caught:
        parse_dataset(f"{good}\n\n{line}\n{good}\n", source="train.jsonl")
    assert str(caught.value).startswith("train.jsonl:3: ")
    assert problem in str(caught.value)
    assert caught.value.location.startswith("train.jsonl:3")


def test_a_bad_array_item_names_its_index():
    text = json.dumps([{"content": "Q", "response": "A"}, {"content": "Q"}])
    with pytest.raises(DatasetError, match=r"^data\.json\[1\]: missing 'response'$"):
        parse_dataset(text, source="data.json")


def test_broken_json_array_names_the_line():
    with pytest.raises(DatasetError, match=r"^data\.json:3: invalid JSON"):
        parse_dataset('[\n{"content": "Q", "response": "A"},\n{oops}\n]', source="data.json")


def test_a_pretty_printed_object_is_read_as_jsonl_and_refused_at_line_one():
    with pytest.raises(DatasetError, match=r"^x:1: invalid JSON"):
        parse_dataset('{\n  "content": "Q",\n  "response": "A"\n}\n', source="x")


@pytest.mark.parametrize("text", ["", "\n\n", "[]"], ids=["empty", "blank-lines", "empty-array"])
def test_an_empty_dataset_is_an_error(text):
    with pytest.raises(DatasetError, match=r"^d\.jsonl: no training examples$"):
        parse_dataset(text, source="d.jsonl")


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="file not found"):
        load_dataset(tmp_path / "nope.jsonl")
