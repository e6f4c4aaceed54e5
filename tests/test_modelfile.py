"""The Modelfile parser: syntax, errors with line numbers, rendering round trips, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollamacli.errors import ModelfileError
from ollamacli.modelfile import Message, Modelfile, parse, render

SEED = """FROM llama2
# 设定温度参数为1
PARAMETER temperature 1
PARAMETER num_ctx 4096

SYSTEM You are Mario from super mario bros, acting as an assistant.
"""


def test_modelfile_parses_the_seed_example():
    mf = parse(SEED)
    assert mf.from_ == "llama2"
    assert mf.parameters == {"temperature": 1.0, "num_ctx": 4096}
    assert mf.system == "You are Mario from super mario bros, acting as an assistant."


def test_modelfile_keywords_case_insensitive_and_quotes():
    text = 'from x\nTemplate """{{ .Prompt }}\nline2"""\nsystem "  padded "\nparameter stop <|a|>\nPARAMETER stop "b c"\nmessage user hi there\nMESSAGE assistant """multi\nline"""\nLICENSE MIT\nADAPTER ./a.gguf\n'
    mf = parse(text)
    assert mf.template == "{{ .Prompt }}\nline2"
    assert mf.system == "  padded "
    assert mf.parameters["stop"] == ["<|a|>", "b c"]
    assert mf.messages == (Message("user", "hi there"), Message("assistant", "multi\nline"))
    assert mf.licenses == ("MIT",)
    assert mf.adapters == ("./a.gguf",)


def test_modelfile_hash_inside_value_is_literal():
    assert parse("FROM x\nSYSTEM use # freely\n").system == "use # freely"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "FROM x\n\nPARAMETER temprature 1\n",
            'Modelfile:3: unknown parameter "temprature" (did you mean "temperature"?)',
        ),
        ("FROM x\nPARAMETER num_ctx big\n", "Modelfile:2: invalid int value [big] for num_ctx"),
        ("FROM x\nPARAMETER top_p x\n", "Modelfile:2: invalid float value [x] for top_p"),
        ("FROM x\nFORM y\n", 'Modelfile:2: unknown instruction "FORM" (did you mean "FROM"?)'),
        (
            "FROM x\nMESSAGE robot hi\n",
            'Modelfile:2: message role must be one of "system", "user", or "assistant" (got "robot")',
        ),
        ("PARAMETER temperature 1\n", "Modelfile: no FROM line"),
        ('FROM x\nSYSTEM """never closed\n', 'Modelfile:2: unterminated """ quote in SYSTEM'),
        ("FROM x\nPARAMETER\n", "Modelfile:2: PARAMETER needs a name and a value"),
        ("FROM x\nPARAMETER seed\n", "Modelfile:2: PARAMETER seed needs a value"),
        ("FROM\n", "Modelfile:1: FROM needs a value"),
        ("FROM x\nREQUIRES abc\n", "Modelfile:2: requires must be a valid semver (e.g. 0.14.0)"),
        ('FROM x\nSYSTEM "a" b\n', "Modelfile:2: unexpected text after the closing quote: 'b'"),
    ],
    ids=[
        "typo",
        "int",
        "float",
        "keyword",
        "role",
        "nofrom",
        "unterminated",
        "noname",
        "novalue",
        "emptyfrom",
        "semver",
        "trailing",
    ],
)
def test_modelfile_errors_name_file_and_line(text, message):
    with pytest.raises(ModelfileError) as info:
        parse(text)
    assert str(info.value) == message


def test_modelfile_error_uses_given_path():
    with pytest.raises(ModelfileError, match=r"^examples/Modelfile:1: "):
        parse("FRM x", path="examples/Modelfile")


# The parser drops non-printable characters (as Ollama's does), so generated values avoid them.
_printable = st.characters(exclude_categories=["Cs"]).filter(str.isprintable)
_text = st.text(_printable | st.sampled_from("\n\t"), max_size=30)
_value = _text.filter(lambda v: '"""' not in v and not v.endswith('"'))
_solid = _printable.filter(lambda c: not c.isspace() and c != '"')
_nonempty = st.builds(
    lambda first, rest: (first + rest).rstrip(), _solid, st.text(_printable, max_size=20)
)
_params = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.floats(0, 2, allow_nan=False),
        "num_ctx": st.integers(1, 1 << 20),
        "seed": st.integers(-5, 1 << 31),
        "stop": st.lists(_value.filter(lambda v: v != ""), min_size=1, max_size=3),
        "use_mmap": st.booleans(),
    },
)
_modelfiles = st.builds(
    Modelfile,
    from_=_nonempty,
    parameters=_params,
    template=st.none() | _value,
    system=st.none() | _value,
    adapters=st.lists(_nonempty, max_size=1).map(tuple),
    licenses=st.lists(_value, max_size=2).map(tuple),
    messages=st.lists(
        st.builds(Message, st.sampled_from(["system", "user", "assistant"]), _value), max_size=3
    ).map(tuple),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(_modelfiles)
def test_modelfile_render_then_parse_gives_the_same_model(modelfile):
    assert parse(render(modelfile)) == modelfile


@settings(max_examples=500, deadline=None)
@given(
    st.text(max_size=200)
    | st.lists(
        st.sampled_from(
            [
                "FROM x",
                "PARAMETER ",
                "stop",
                '"""',
                '"',
                "\n",
                "SYSTEM",
                " ",
                "#",
                "MESSAGE user",
                "temperature",
                "1",
                "x",
            ]
        ),
        max_size=25,
    ).map("".join)
)
def test_modelfile_fuzz_ends_in_model_or_modelfile_error(text):
    try:
        result = parse(text)
    except ModelfileError:
        return
    assert isinstance(result, Modelfile)


def test_modelfile_renderer_and_parser_are_kept_and_written_back():
    text = "FROM qwen3.5:9b\nRENDERER qwen3.5\nparser qwen3.5\nSYSTEM hi\n"
    modelfile = parse(text)
    assert (modelfile.renderer, modelfile.parser) == ("qwen3.5", "qwen3.5")
    assert render(modelfile) == "FROM qwen3.5:9b\nSYSTEM hi\nRENDERER qwen3.5\nPARSER qwen3.5\n"
    assert parse(render(modelfile)) == modelfile
