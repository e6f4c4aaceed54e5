"""Strategies for the model-management routes: create, copy, delete, show, pull, push, blobs.

Names that would touch what the fuzzer relies on (the base model and its capped aliases) or
leave the machine (a registry other than the local ones) are swapped for harmless ones, so a
run never deletes its own model or sends a request beyond 127.0.0.1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from hypothesis import strategies as st

from ollamacli.errors import InvalidModelNameError
from ollamacli.names import ModelName
from tests.fuzz.harness import PROTECTED
from tests.fuzz.known_issues import allowed
from tests.fuzz.strategies import (
    BAD_NAMES,
    Json,
    json_values,
    long_names,
    messages,
    missing_names,
    odd_text,
    options,
    or_junk,
    templates,
    text_field,
    valid_names,
)

_PROTECTED_KEYS = {ModelName.parse(name).key for name in PROTECTED}
SCRATCH = "fz-scratch"


def _parsed(name: object) -> ModelName | None:
    if not isinstance(name, str):
        return None
    try:
        return ModelName.parse(name)
    except InvalidModelNameError:
        return None


def unprotected(name: Json) -> Json:
    """The name, unless it names a protected model (then a scratch name)."""
    parsed = _parsed(name)
    return SCRATCH if parsed is not None and parsed.key in _PROTECTED_KEYS else name


def any_names() -> st.SearchStrategy[Json]:
    """Existing models (protected ones too), scratch names, missing and malformed ones."""
    existing = st.sampled_from([*PROTECTED, "FUZZ:LATEST", SCRATCH])
    return or_junk(existing | valid_names.map(lambda n: f"fz-{n}") | missing_names())


def target_names() -> st.SearchStrategy[Json]:
    """Names a request may create, overwrite or delete."""
    names = st.sampled_from([SCRATCH, "fz-a", "fz-b:tag", "ns/fz-c"]) | valid_names.map(
        lambda n: f"fz-{n}"
    )
    odd = st.sampled_from(BAD_NAMES) | odd_text(30)
    if allowed("long-names"):
        odd = odd | long_names()
    return or_junk(names | odd).map(unprotected)


def digests() -> st.SearchStrategy[Json]:
    """Blob digests: real-looking, of known content, or malformed."""
    well_formed = st.binary(max_size=8).map(lambda b: "sha256:" + hashlib.sha256(b).hexdigest())
    odd = st.sampled_from(
        [
            "sha256:" + "0" * 63,
            "sha256:" + "g" * 64,
            "sha256-" + "a" * 64,
            "SHA256:" + "A" * 64,
            "md5:" + "0" * 32,
            "sha256:../../etc/passwd",
            "",
            "sha256:" + "a" * 64 + "\x00",
        ]
    )
    return or_junk(well_formed | odd)


def file_maps() -> st.SearchStrategy[Json]:
    paths = st.sampled_from(
        ["model.gguf", "a/b.gguf", "../x.gguf", "/etc/x.gguf", "x\\..\\y.gguf", "m.safetensors", ""]
    )
    return or_junk(st.dictionaries(paths | odd_text(10), digests(), max_size=2))


MODELFILE_LINES = [
    "FROM fuzz",
    "FROM smollm2:135m",
    "FROM missing-model",
    "FROM ./model.gguf",
    "FROM /etc/passwd",
    "FROM @sha256:" + "0" * 64,
    "FROM",
    "PARAMETER num_predict 2",
    "PARAMETER temperature NaN",
    "PARAMETER nope 1",
    "PARAMETER stop <|im_end|>",
    "PARAMETER num_ctx -5",
    'TEMPLATE """{{ .Prompt }}"""',
    'TEMPLATE """{{ if }}"""',
    'SYSTEM """unterminated',
    "SYSTEM be brief",
    "ADAPTER ./lora.gguf",
    "ADAPTER @sha256:" + "1" * 64,
    "LICENSE MIT",
    "MESSAGE user hello",
    "MESSAGE nobody hi",
    "# a comment",
    "REQUIRES 0.1",
    "NOPE x",
]


def modelfiles() -> st.SearchStrategy[Json]:
    lines = st.sampled_from(MODELFILE_LINES) | odd_text(20)
    template = templates().map(lambda t: f'TEMPLATE """{t}"""')
    return or_junk(st.lists(lines | template, max_size=5).map("\n".join))


def create_bodies() -> st.SearchStrategy[dict[str, Json]]:
    return st.fixed_dictionaries(
        {"model": target_names()},
        optional={
            "from": any_names(),
            "files": file_maps(),
            "adapters": file_maps(),
            "template": or_junk(templates()),
            "system": text_field(),
            "license": or_junk(odd_text() | st.lists(odd_text(), max_size=2)),
            "parameters": or_junk(options()),
            "messages": messages(),
            "quantize": or_junk(st.sampled_from(["q4_K_M", "", "nope"])),
            "modelfile": modelfiles(),
            "stream": or_junk(st.booleans()),
        },
    )


def show_bodies() -> st.SearchStrategy[dict[str, Json]]:
    return st.fixed_dictionaries(
        {"model": any_names()}, optional={"verbose": or_junk(st.booleans()), "name": any_names()}
    )


def copy_bodies() -> st.SearchStrategy[dict[str, Json]]:
    return st.fixed_dictionaries({"source": any_names(), "destination": target_names()})


def delete_bodies() -> st.SearchStrategy[dict[str, Json]]:
    # "name" is the deprecated spelling of "model", and wins only when "model" is missing.
    return st.fixed_dictionaries({"model": target_names()}, optional={"x": json_values})


def local_pull_names(registry: str, closed: str) -> st.SearchStrategy[Json]:
    """Names whose registry is on this machine: the test registry, a closed port, hf.co
    (pointed at the closed port), or names that do not parse. Never the public registry."""
    published = st.sampled_from(["library/tiny:latest", "library/broken", "library/nolayer"])
    repo = published | valid_names.map(lambda n: f"library/fz-{n}") | odd_text(20)
    host = st.sampled_from([registry, registry, "hf.co", closed, "http://" + registry])
    names = st.builds(lambda h, r: f"{h}/{r}", host, repo) | st.sampled_from(BAD_NAMES)
    return or_junk(names.map(lambda n: _local(n, registry)))


def _local(name: Json, registry: str) -> Json:
    parsed = _parsed(name)
    if parsed is None or parsed.host.startswith("127.0.0.1") or parsed.is_huggingface:
        return unprotected(name)
    return f"{registry}/library/fz-rehomed"


def pull_guard(registry: str) -> Callable[[dict[str, Json]], dict[str, Json]]:
    """Keeps a pull or push on this machine whatever corruption did to its model name."""

    def guard(body: dict[str, Json]) -> dict[str, Json]:
        for key in ("model", "name"):
            if key in body:
                body = {**body, key: _local(body[key], registry)}
        return body

    return guard


def target_guard(body: dict[str, Json]) -> dict[str, Json]:
    """Keeps create, copy and delete off the protected models whatever corruption did."""
    return {k: unprotected(v) if k in _TARGETS else v for k, v in body.items()}


_TARGETS = ("model", "name", "destination")


def pull_bodies(registry: str, closed: str) -> st.SearchStrategy[dict[str, Json]]:
    return st.fixed_dictionaries(
        # Mostly insecure: an https pull from the plain-http test registry retries for seconds.
        {"model": local_pull_names(registry, closed), "insecure": st.sampled_from([True, False])},
        optional={"stream": or_junk(st.booleans())},
    )
