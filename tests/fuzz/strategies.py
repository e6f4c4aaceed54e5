"""Hypothesis strategies for the fuzzer: names, options, templates, schemas, Unicode, bodies.

Each strategy mixes well-formed values (so requests get past validation and reach the model,
the store and the template engines) with the odd ones a careless or hostile client sends:
wrong types, nulls, huge, negative and non-finite numbers, control and bidi characters, path
traversal, template syntax. Generators that reach a known, not yet merged bug check
`allowed("<issue>")` (see `known_issues.py`).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from ollamacli.parameters import LOAD_OPTIONS, PARAMETERS
from tests.factories import WEATHER_TOOL
from tests.fuzz.harness import ALIASES, CAP
from tests.fuzz.known_issues import allowed

Json = Any

# -- Unicode -----------------------------------------------------------------------------------

ODD_PIECES = [
    "\x00",
    "\x07",
    "\x1b[31m",
    "\u202e",  # right-to-left override
    "\u200f",  # right-to-left mark
    "\u200b",  # zero width space
    "\ufeff",
    "\uffff",
    "\ufffd",
    "\U0001f600",
    "e\u0301",
    "\u0647\u0644\u0627",  # Arabic, RTL
    "\r\n",
    "\t",
    "\\",
    '"',
    "'",
    "%s%n%x",
    "${HOME}",
    "{{",
    "}}",
    "{%",
    "%}",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "</s>",
    "../",
]
SURROGATES = ["\ud800", "\udfff", "\udc00x", "a\ud83d"]


def odd_text(max_size: int = 24) -> st.SearchStrategy[str]:
    """Text with control, bidi, template and (when allowed) lone-surrogate pieces."""
    pieces = [*ODD_PIECES, *(SURROGATES if allowed("surrogates") else [])]
    mixed = st.lists(st.sampled_from(pieces) | st.text(max_size=6), max_size=5).map("".join)
    return mixed | st.text(max_size=max_size)


# -- JSON values of every type -------------------------------------------------------------------

ODD_NUMBERS = [0, -1, 1, -0.0, 0.5, 2**31, 2**63, -(2**63), 2**64, 10**30, 1e308, -1e308, 5e-324]
numbers = (
    st.sampled_from(ODD_NUMBERS)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
)
scalars = st.none() | st.booleans() | numbers | odd_text()
json_values: st.SearchStrategy[Json] = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text(8), inner, max_size=3),
    max_leaves=8,
)


def or_junk(strategy: st.SearchStrategy[Json]) -> st.SearchStrategy[Json]:
    """The strategy, or now and then (about 1 in 8) any JSON value: a wrong type, a null."""
    return st.one_of(*[strategy] * 7, json_values)


# -- model names -------------------------------------------------------------------------------

BAD_NAMES = [
    "",
    " ",
    ".",
    "..",
    "../../etc/passwd",
    "a/../../b",
    "..\\..\\x",
    "/abs/path",
    "C:\\models\\x",
    "%2e%2e/x",
    "a//b",
    ":",
    ":tag",
    "x:",
    "a:b:c",
    "https://",
    "http://127.0.0.1:1/a/b:c",
    "a/b/c/d/e",
    "fuzz\x00",
    "fuzz\n",
    "x" * 81,
    "x" * 5000,
    "名前",
    "fuzz:" + "t" * 81,
    "-fuzz",
    ".hidden",
]


def long_names() -> st.SearchStrategy[str]:
    """Valid names whose host part is longer than a file name may be (255 bytes)."""
    return st.integers(min_value=256, max_value=350).map(lambda n: "h" * n + "/ns/model:tag")


name_chars = st.sampled_from("abcxyz019_-.")
valid_names = st.builds(
    lambda model, tag: f"{model}:{tag}" if tag else model,
    st.text(name_chars, min_size=1, max_size=12).map(lambda s: "m" + s),
    st.none() | st.text(name_chars, min_size=1, max_size=8).map(lambda s: "t" + s),
)


def missing_names() -> st.SearchStrategy[str]:
    """Names no model has (valid or not)."""
    missing = valid_names.map(lambda n: f"missing-{n}")
    odd = st.sampled_from(BAD_NAMES) | odd_text(40)
    if allowed("long-names"):
        odd = odd | long_names()
    return missing | odd


MODEL_SPELLINGS = [
    *ALIASES,
    "fuzz:latest",
    "FUZZ",
    "Fuzz:Latest",
    "library/fuzz",
    "registry.ollama.ai/library/fuzz:latest",
    " fuzz ",
]


def generation_models() -> st.SearchStrategy[str]:
    """Names for generation routes: the capped aliases (spelled many ways) or missing ones.

    Never the base model: its generations have no `num_predict` cap when the request has none.
    """
    spellings = st.sampled_from(MODEL_SPELLINGS)
    return st.one_of(*[spellings] * 6, missing_names())


# -- options -----------------------------------------------------------------------------------

# Options that shape sampling only (a new value never reloads the model).
SAMPLING_OPTIONS = sorted(
    name for name, spec in PARAMETERS.items() if name not in LOAD_OPTIONS and name != "num_predict"
)
# Load options reload the model for every new value (seconds each): valid values come from a
# small set, most are invalid (negative, huge, wrong type) and cost a quick 400.
LOAD_VALUES: dict[str, list[Json]] = {
    "num_ctx": [-1, 2**31, 2**63, 1.5, "512", None],
    "num_batch": [-5, 2**40, 0.5, "8"],
    "num_thread": [-1, 10**6, 2.5, True],
    "num_gpu": [-1, 99, 2**40],
    "main_gpu": [-1, 7],
    "use_mmap": [False, "yes", 0],
}
ODD_NUM_CTX = [1, 2, 7, 100, 333]
stop_values = st.lists(odd_text(6), max_size=4) | odd_text(6)
ODD_INTS = [0, 1, -1, 2, 40, 2**31 - 1, 2**31, 2**32, 2**63 - 1, -(2**63), 2**64, -(2**70)]
int_values = st.sampled_from(ODD_INTS) | st.integers(-1000, 1000)
float_values = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0.0, 1.0, -1.0, 2.0, 1e308, 5e-324, -0.0])
    | int_values
)
TYPED_VALUES: dict[str, st.SearchStrategy[Json]] = {
    "int": int_values,
    "float": float_values,
    "bool": st.booleans(),
    "strings": stop_values,
}


def option_value(name: str) -> st.SearchStrategy[Json]:
    """A value of the option's type, odd as it may be (wrong types come from `corrupted`)."""
    return TYPED_VALUES[PARAMETERS[name].type]


@st.composite
def options(draw: st.DrawFn) -> Json:
    """An `options` object with odd values, always holding a small `num_predict` (or junk)."""
    names = draw(st.lists(st.sampled_from(SAMPLING_OPTIONS), max_size=4, unique=True))
    chosen: dict[str, Json] = {name: draw(option_value(name)) for name in names}
    if draw(st.integers(0, 4)) == 4:
        name = draw(st.sampled_from(sorted(LOAD_VALUES)))
        chosen[name] = draw(st.sampled_from(LOAD_VALUES[name]))
    if allowed("num-ctx") and draw(st.integers(0, 9)) == 9:
        chosen["num_ctx"] = draw(st.sampled_from(ODD_NUM_CTX))
    if draw(st.integers(0, 5)) == 5:
        chosen[draw(odd_text(12).filter(lambda k: k != "num_predict"))] = draw(json_values)
    small = st.sampled_from([0, 1, CAP])
    chosen["num_predict"] = draw(
        st.one_of(*[small] * 5, st.sampled_from(["2", None, 1.5, True, [1]]))
    )
    return chosen


# -- durations ---------------------------------------------------------------------------------


def keep_alives() -> st.SearchStrategy[Json]:
    """`keep_alive` values. Never 0 or negative-zero durations: those unload the shared model."""
    values = st.sampled_from(["5m", "1h", "30s", "1.5h", "-1", -1, "-1m", 3600, 1.5, "1h2m3s"])
    odd = st.sampled_from(
        ["", "forever", "5", "m5", "5 m", "1d", "\x00", "5m\u202e", "NaN", "1e3s"]
    )
    if allowed("keep-alive-huge"):
        odd = odd | st.sampled_from([1e308, 10**30, "99999999999h", "9223372036854775807s", 2**63])
    return values | odd


# -- templates -----------------------------------------------------------------------------------

GO_TEMPLATE_PIECES = [
    "{{ .Prompt }}",
    "{{ .System }}",
    "{{ .Response }}",
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}",
    "{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}",
    "{{ range $i, $m := .Messages }}{{ $i }}{{ $m.Role }}{{ end }}",
    "{{ range .Tools }}{{ .Function.Name }}{{ end }}",
    "{{ if .Tools }}{{ json .Tools }}{{ end }}",
    "{{- .Prompt -}}",
    "{{/* a comment */}}",
    "{{ .Missing }}",
    "{{ .Prompt.Nope }}",
    "{{ len .Messages }}",
    "{{ index .Messages 99 }}",
    "{{ slice .Prompt 0 1 }}",
    '{{ printf "%q" .Prompt }}',
    "{{ call .Prompt }}",
    '{{ template "x" }}',
    '{{ define "x" }}x{{ end }}{{ template "x" }}',
    "{{",
    "}}",
    "{{ end }}",
    "{{ if }}",
    "{{ range }}",
    "<|im_start|>assistant\n",
]
JINJA_PIECES = [
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
    "{% for i in range(3) %}{{ i }}{% endfor %}",
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "{{ messages[0]['content'] }}",
    "{{ messages[99] }}",
    "{{ bos_token }}",
    "{{ raise_exception('no') }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{% set ns = namespace(x=1) %}{{ ns.x }}",
    "{% raw %}{{{% endraw %}",
    "{% for %}",
    "{% endfor %}",
    "{{ 1 / 0 }}",
    "{{ tools | tojson }}",
]
HEAVY_TEMPLATE_PIECES = [
    "{% for i in range(100000000) %}x{% endfor %}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "{{ 'x' * 1000000000 }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    '{{ define "x" }}{{ template "x" }}{{ end }}{{ template "x" }}',
    "{{ range .Messages }}{{ range $.Messages }}{{ range $.Messages }}x{{ end }}{{ end }}{{ end }}",
]


def templates() -> st.SearchStrategy[str]:
    """Go and Jinja templates, well-formed or broken, with loops."""
    pieces = [*GO_TEMPLATE_PIECES, *JINJA_PIECES]
    if allowed("template-loops"):
        pieces += HEAVY_TEMPLATE_PIECES
    return st.lists(st.sampled_from(pieces) | odd_text(10), min_size=1, max_size=4).map("".join)


# -- structured output -------------------------------------------------------------------------


def _length(name: str) -> st.SearchStrategy[Json]:
    small = st.integers(min_value=-2, max_value=6)
    if allowed("grammar-size"):
        small = small | st.sampled_from([10**6, 2**31, 10**12])
    return st.tuples(st.just(name), or_junk(small))


def _leaf_schema() -> st.SearchStrategy[Json]:
    extras = st.lists(
        _length("minLength")
        | _length("maxLength")
        | _length("minimum")
        | _length("maximum")
        | st.tuples(st.just("enum"), st.lists(scalars, max_size=3))
        | st.tuples(st.just("const"), scalars)
        | st.tuples(st.just("pattern"), st.sampled_from(["^a+$", "[", "(a|b)*c", r"\d{1,3}", ""]))
        | st.tuples(st.just("format"), st.sampled_from(["date", "email", "uuid", "date-time"])),
        max_size=2,
    ).map(dict)
    kinds = st.sampled_from(["string", "integer", "number", "boolean", "null", "nope"])
    return st.builds(lambda kind, more: {"type": kind, **more}, or_junk(kinds), extras)


def _compound_schema(inner: st.SearchStrategy[Json]) -> st.SearchStrategy[Json]:
    obj = st.builds(
        lambda props, required, extra: {
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": extra,
        },
        st.dictionaries(odd_text(8), inner, max_size=3),
        or_junk(st.lists(odd_text(8), max_size=2)),
        st.booleans() | inner,
    )
    array = st.builds(
        lambda items, more: {"type": "array", "items": items, **more},
        inner,
        st.lists(_length("minItems") | _length("maxItems"), max_size=2).map(dict),
    )
    either = st.builds(
        lambda key, options: {key: options},
        st.sampled_from(["anyOf", "oneOf", "allOf"]),
        st.lists(inner, max_size=3),
    )
    refs = st.builds(
        lambda target: {"$defs": {"a": target}, "$ref": "#/$defs/a"},
        inner,
    ) | st.sampled_from([{"$ref": "#/$defs/missing"}, {"$ref": "#"}, {"$ref": "http://x/y"}])
    return obj | array | either | refs


schemas: st.SearchStrategy[Json] = st.recursive(_leaf_schema(), _compound_schema, max_leaves=6)
formats = st.sampled_from(["json", "", "JSON", "xml"]) | schemas


# -- messages and tools --------------------------------------------------------------------------

roles = st.sampled_from(["user", "user", "user", "assistant", "system", "tool", "USER", "", "bot"])
images: st.SearchStrategy[list[str]] = st.just([]) | st.lists(
    st.sampled_from(["", "aGVsbG8=", "not base64!", "iVBORw0KGgo="]), max_size=2
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "function": st.fixed_dictionaries(
                {"name": odd_text(10)}, optional={"arguments": json_values}
            )
        },
        optional={"id": or_junk(odd_text(6))},
    ),
    max_size=2,
)
tools = st.lists(
    st.just(WEATHER_TOOL)
    | st.fixed_dictionaries(
        {"type": st.just("function"), "function": st.fixed_dictionaries({"name": odd_text(8)})},
        optional={"parameters": schemas},
    )
    | st.dictionaries(odd_text(6), json_values, max_size=2),
    max_size=2,
)
tool_choices = (
    st.sampled_from(["auto", "none", "required", "nope"])
    | st.just({"type": "function", "function": {"name": "get_weather"}})
    | st.just({"type": "function", "function": {}})
)


def text_field(long: bool = False) -> st.SearchStrategy[Json]:
    """A prompt or content: short (or null or junk); long ones only once prompt fitting works."""
    strategy: st.SearchStrategy[Json] = odd_text(60)
    if long and allowed("prompt-fitting"):
        # Just past the fuzz server's 512-token context: truncation without a long evaluation.
        strategy = strategy | st.integers(500, 700).map(lambda n: "word " * n)
    return strategy


def messages(openai: bool = False) -> st.SearchStrategy[Json]:
    optional: dict[str, st.SearchStrategy[Json]] = {
        "images": images,
        "thinking": text_field(),
        "tool_calls": tool_calls,
        "tool_name": odd_text(8),
    }
    if openai:
        content_parts = st.lists(
            st.fixed_dictionaries(
                {"type": or_junk(st.sampled_from(["text", "image_url"]))},
                optional={"text": text_field()},
            ),
            max_size=2,
        )
        optional = {
            "name": odd_text(8),
            "tool_call_id": odd_text(8),
            "tool_calls": or_junk(
                st.lists(json_values, max_size=2)
                | tool_calls.map(lambda calls: [{"type": "function", **c} for c in calls])
            ),
        }
        content = text_field(long=True) | content_parts
    else:
        content = text_field(long=True)
    message = st.fixed_dictionaries({"role": roles, "content": content}, optional=optional)
    return st.lists(message, max_size=4)


def token_ids() -> st.SearchStrategy[Json]:
    """`context` for /api/generate: token ids of the model's vocabulary (or out of it)."""
    ids = st.integers(min_value=0, max_value=49_151)
    if allowed("context-token-ids"):
        ids = ids | st.sampled_from([-1, 49_152, 2**31, 2**63])
    return st.lists(ids, max_size=8)
