"""Request bodies of every route, and how they go on the wire.

A body is first drawn with sound top-level fields (odd values of the right type), so about half
of the requests get through validation to the model, the store or the template engine. Then
`corrupted` swaps a field or two for any JSON value or drops them (type confusion, nulls,
missing required fields), and `wire_bodies` now and then breaks the bytes themselves
(truncated, re-encoded, wrapped, deeply nested, duplicate keys) or sends an odd content type.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from hypothesis import strategies as st

from tests.fuzz.harness import ALIASES, BASE_MODEL, CAP
from tests.fuzz.known_issues import allowed
from tests.fuzz.strategies import (
    MODEL_SPELLINGS,
    Json,
    formats,
    generation_models,
    images,
    json_values,
    keep_alives,
    messages,
    numbers,
    options,
    or_junk,
    schemas,
    stop_values,
    templates,
    text_field,
    token_ids,
    tool_choices,
    tools,
)

Bodies = st.SearchStrategy[dict[str, Json]]
FIELDS = [
    "model",
    "name",
    "prompt",
    "messages",
    "input",
    "stream",
    "options",
    "format",
    "keep_alive",
    "template",
    "system",
    "context",
    "raw",
    "from",
    "files",
    "modelfile",
    "source",
    "destination",
    "max_tokens",
    "temperature",
    "response_format",
    "tools",
]


# Fields whose junk values reach a known issue (see known_issues.py): left alone meanwhile.
GUARDED_FIELDS = {"context": "context-token-ids", "keep_alive": "keep-alive-huge"}


def _body(
    required: dict[str, st.SearchStrategy[Json]], optional: dict[str, st.SearchStrategy[Json]]
) -> Bodies:
    return st.fixed_dictionaries(required, optional=optional)


# Values that make a sound request a 400 on this model (no thinking, vision or insert): rare,
# so most requests that carry these fields still reach the model.
thinks = st.sampled_from([False, False, False, True, "low", "nope"])
suffixes = st.sampled_from(["", "", ""]) | text_field()
rare_images: st.SearchStrategy[list[str]] = st.just([]) | st.just([]) | images


def generate_bodies() -> Bodies:
    return _body(
        {"model": generation_models(), "prompt": text_field(long=True)},
        {
            "stream": st.booleans(),
            "format": formats,
            "options": options(),
            "keep_alive": keep_alives(),
            "think": thinks,
            "truncate": st.booleans(),
            "logprobs": st.booleans(),
            "top_logprobs": st.integers(-1, 21),
            "suffix": suffixes,
            "system": text_field(),
            "template": templates(),
            "context": token_ids(),
            "raw": st.booleans(),
            "images": rare_images,
        },
    )


def chat_bodies() -> Bodies:
    return _body(
        {"model": generation_models(), "messages": messages()},
        {
            "stream": st.booleans(),
            "format": formats,
            "options": options(),
            "keep_alive": keep_alives(),
            "think": thinks,
            "tools": tools,
            "tool_choice": tool_choices,
            "truncate": st.booleans(),
            "logprobs": st.booleans(),
            "top_logprobs": st.integers(-1, 21),
        },
    )


def _openai_sampling() -> dict[str, st.SearchStrategy[Json]]:
    return {
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "temperature": numbers,
        "top_p": numbers,
        "max_tokens": st.sampled_from([0, 1, CAP]),  # this API's num_predict
        "seed": st.integers(-(2**70), 2**70),
        "stop": stop_values,
        "frequency_penalty": numbers,
        "presence_penalty": numbers,
    }


def openai_chat_bodies() -> Bodies:
    response_format = st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "json_object", "json_schema", "json_schema", "nope"])},
        optional={"json_schema": or_junk(st.fixed_dictionaries({"schema": schemas}))},
    )
    return _body(
        {"model": generation_models(), "messages": messages(openai=True).filter(bool)},
        {
            **_openai_sampling(),
            "max_completion_tokens": st.sampled_from([1, CAP]),
            "response_format": response_format,
            "tools": tools,
            "tool_choice": tool_choices,
            "logprobs": st.booleans(),
            "top_logprobs": st.integers(-1, 21),
        },
    )


def openai_completion_bodies() -> Bodies:
    return _body(
        {"model": generation_models(), "prompt": text_field(long=True)},
        {**_openai_sampling(), "suffix": suffixes, "logprobs": st.integers(-1, 21)},
    )


embed_models = generation_models() | st.just(BASE_MODEL)
# A long input costs a full-context evaluation (seconds on a busy machine): 1 in 8 or so.
embed_inputs = st.one_of(
    *[text_field()] * 4, st.lists(or_junk(text_field()), max_size=3), text_field(long=True)
)


def embed_bodies() -> Bodies:
    return _body(
        {"model": embed_models, "input": embed_inputs},
        {
            "truncate": st.booleans(),
            "dimensions": st.integers(-2, 1000),
            "options": options(),
            "keep_alive": keep_alives(),
        },
    )


def embeddings_bodies() -> Bodies:
    return _body(
        {"model": embed_models, "prompt": embed_inputs},
        {"options": options(), "keep_alive": keep_alives()},
    )


def openai_embedding_bodies() -> Bodies:
    return _body(
        {"model": embed_models, "input": embed_inputs},
        {
            "encoding_format": st.sampled_from(["float", "base64", "nope"]),
            "dimensions": st.integers(-2, 1000),
        },
    )


# -- corruption and the wire -------------------------------------------------------------------


@st.composite
def corrupted(draw: st.DrawFn, body: dict[str, Json]) -> dict[str, Json]:
    """The body (2 times in 3), or with a field or two replaced by any JSON value or dropped."""
    if draw(st.integers(0, 2)) < 2:  # Hypothesis favours small numbers: 0 is the common case
        return body
    out = dict(body)
    for _ in range(draw(st.integers(1, 2))):
        keys = st.sampled_from(FIELDS)
        key = draw(st.sampled_from(sorted(out)) | keys if out else keys)
        if not allowed(GUARDED_FIELDS.get(key, "")):
            continue
        if draw(st.booleans()):
            out.pop(key, None)
        else:
            out[key] = draw(json_values)
    return out


def encode(body: Json, ascii_only: bool) -> bytes:
    """JSON as clients send it; NaN and Infinity stay (Python clients send them)."""
    text = json.dumps(body, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


BROKEN = ["truncate", "garbage", "wrap", "utf16", "bom", "nested", "bad-utf8", "duplicate"]


@st.composite
def broken(draw: st.DrawFn, valid: bytes, name: str) -> bytes:
    """A body that is not a sound JSON object: truncated, wrapped, re-encoded, or garbage."""
    kind = draw(st.sampled_from(BROKEN))
    model = json.dumps(name).encode()
    if kind == "truncate":
        return valid[: draw(st.integers(0, max(0, len(valid) - 1)))]
    if kind == "garbage":
        return draw(st.binary(max_size=200))
    if kind == "wrap":
        return draw(st.sampled_from([b"[" + valid + b"]", b"null", b'"x"', b"1", b"true", b"[]"]))
    if kind == "utf16":
        return valid.decode("utf-8", "replace").encode("utf-16")
    if kind == "bom":
        return b"\xef\xbb\xbf" + valid
    if kind == "nested":
        depth = draw(st.sampled_from([100, 1000, 100_000]))
        return b'{"model": ' + model + b', "options": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "bad-utf8":
        return valid.replace(b'"', b'"\xff\xfe', 1)
    duplicate = b', "model": 1, "model": ' + model + b"}"
    return valid[:-1] + duplicate if valid.endswith(b"}") else valid


CONTENT_TYPES = [
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "application/json; charset=nope",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/x-ndjson",
    "x/y",
    "",
]


def unchanged(body: dict[str, Json]) -> dict[str, Json]:
    return body


@st.composite
def wire_bodies(
    draw: st.DrawFn,
    bodies: Bodies,
    name: str = ALIASES[0],
    guard: Callable[[dict[str, Json]], dict[str, Json]] = unchanged,
    sound: bool = False,
) -> tuple[bytes, dict[str, str]]:
    """A generated body as bytes on the wire (mostly sound JSON) with a content type.

    `sound` leaves out corruption and broken bytes, so (nearly) every request reaches the
    model. `guard` gets the last say on the body (after corruption), so it can keep protected
    or non-local names out; `name` is the model a broken body names (a duplicate key, a deeply
    nested body).
    """
    body = draw(bodies)
    if sound and "model" in body and body["model"] not in MODEL_SPELLINGS:
        body["model"] = draw(st.sampled_from(MODEL_SPELLINGS))
    body = guard(body if sound else draw(corrupted(body)))
    data = encode(body, ascii_only=draw(st.booleans()))
    if sound:
        return data, {"content-type": "application/json"}
    if draw(st.integers(0, 7)) == 7:
        data = draw(broken(data, name))
    content_type = draw(
        st.sampled_from(["application/json", None, None]) | st.sampled_from(CONTENT_TYPES)
    )
    return data, {} if content_type is None else {"content-type": content_type}
