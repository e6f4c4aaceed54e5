"""The fuzzer: property-based requests to every route of a real `ollamacli serve`.

Each test sends Hypothesis-generated requests and `FuzzServer.send` checks every answer (no
500, the server alive and quiet, the API's error shape on 4xx, JSON that parses, latency under a
bound linear in the request size). The run is derandomized (a fixed seed, no example database)
and bounded: about 20 s on 2 cores by default. For a release, run more examples per test:

    OLLAMACLI_FUZZ_EXAMPLES=2000 pytest tests/fuzz -p no:cacheprovider

Why not schemathesis: the server publishes no OpenAPI document (`openapi_url=None`, as Ollama
has none) and its routes read raw request bodies, so a schema-driven fuzzer would only know the
paths. The strategies here know each body's fields and their odd values.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fuzz import bodies, management, strategies
from tests.fuzz.bodies import encode, unchanged, wire_bodies
from tests.fuzz.gguf import gguf_files
from tests.fuzz.harness import FuzzServer
from tests.fuzz.management import SCRATCH
from tests.fuzz.raw import raw_requests
from tests.fuzz.strategies import Json, odd_text, or_junk
from tests.servers.registry import RegistryServer

pytestmark = [pytest.mark.llama, pytest.mark.slow]

_RELEASE = int(os.environ.get("OLLAMACLI_FUZZ_EXAMPLES", "0") or 0)
"""Examples per test for a long run (0: each test's small default)."""


def examples(default: int) -> int:
    return _RELEASE or default


def fuzzed(default: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Hypothesis settings of the fuzzer: fixed seed, no database, no deadline (the harness
    bounds latency itself), `default` examples unless OLLAMACLI_FUZZ_EXAMPLES says more."""
    return settings(
        max_examples=examples(default),
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )


def timeout(default: int, per_example_s: float) -> pytest.MarkDecorator:
    """A pytest timeout that grows with the example count."""
    return pytest.mark.timeout(60 + int(examples(default) * per_example_s))


def case(*values: object, default: int, per_example_s: float) -> object:
    """A parametrized case named after its path, with a timeout for its example count."""
    path = next(v for v in values if isinstance(v, str) and v.startswith("/"))
    return pytest.param(
        *values, default, marks=timeout(default, per_example_s), id=path.removeprefix("/")
    )


# (path, bodies, sound examples, junk examples): a sound request reaches the model (and costs a
# short generation), a junk one is mostly a quick 400.
ROUTES = [
    ("/api/generate", bodies.generate_bodies, 15, 25),
    ("/api/chat", bodies.chat_bodies, 15, 25),
    ("/v1/chat/completions", bodies.openai_chat_bodies, 12, 25),
    ("/v1/completions", bodies.openai_completion_bodies, 10, 20),
    ("/api/embed", bodies.embed_bodies, 8, 20),
    ("/api/embeddings", bodies.embeddings_bodies, 6, 15),
    ("/v1/embeddings", bodies.openai_embedding_bodies, 6, 15),
]
GENERATION = [
    pytest.param(
        path,
        make,
        sound,
        count,
        marks=timeout(count, 10),
        id=f"{path.removeprefix('/')}-{'sound' if sound else 'junk'}",
    )
    for path, make, sound_count, junk_count in ROUTES
    for sound, count in ((True, sound_count), (False, junk_count))
]


@pytest.mark.parametrize(("path", "make_bodies", "sound", "default"), GENERATION)
def test_fuzz_generation_routes(
    fuzz_server: FuzzServer,
    path: str,
    make_bodies: Callable[[], st.SearchStrategy[dict[str, Json]]],
    sound: bool,
    default: int,
) -> None:
    """Sound bodies with odd values (they reach the model), then junk ones (types, framing)."""

    @fuzzed(default)
    @given(wire=wire_bodies(make_bodies(), sound=sound))
    def run(wire: tuple[bytes, dict[str, str]]) -> None:
        fuzz_server.send("POST", path, *wire)

    run()
    fuzz_server.raise_findings()


MANAGEMENT = [
    case("POST", "/api/show", management.show_bodies, unchanged, default=30, per_example_s=2),
    case(
        "POST",
        "/api/create",
        management.create_bodies,
        management.target_guard,
        default=40,
        per_example_s=5,
    ),
    case(
        "POST",
        "/api/copy",
        management.copy_bodies,
        management.target_guard,
        default=25,
        per_example_s=2,
    ),
    case(
        "DELETE",
        "/api/delete",
        management.delete_bodies,
        management.target_guard,
        default=25,
        per_example_s=2,
    ),
]


@pytest.mark.parametrize(("method", "path", "make_bodies", "guard", "default"), MANAGEMENT)
def test_fuzz_model_management(
    fuzz_server: FuzzServer,
    method: str,
    path: str,
    make_bodies: Callable[[], st.SearchStrategy[dict[str, Json]]],
    guard: Callable[[dict[str, Json]], dict[str, Json]],
    default: int,
) -> None:
    @fuzzed(default)
    @given(wire=wire_bodies(make_bodies(), guard=guard))
    def run(wire: tuple[bytes, dict[str, str]]) -> None:
        fuzz_server.send(method, path, *wire)

    run()
    fuzz_server.raise_findings()


@timeout(25, 10)
def test_fuzz_pull_and_push(fuzz_server: FuzzServer, fuzz_registry: RegistryServer) -> None:
    closed = f"127.0.0.1:{fuzz_server.closed_port}"
    pulls = management.pull_bodies(fuzz_registry.host, closed)
    guard = management.pull_guard(fuzz_registry.host)
    wire = wire_bodies(pulls, name=f"{closed}/library/fz-broken", guard=guard)
    route = st.sampled_from(["/api/pull", "/api/pull", "/api/push"])

    @fuzzed(25)
    @given(path=route, wire=wire)
    def run(path: str, wire: tuple[bytes, dict[str, str]]) -> None:
        fuzz_server.send("POST", path, *wire)

    run()
    fuzz_server.raise_findings()


def quote(text: str, safe: str = "/") -> str:
    """Percent-encode a path segment; lone surrogates go out as their raw (invalid) bytes."""
    return urllib.parse.quote(text, safe=safe, errors="surrogatepass")


path_names = (
    management.any_names() | st.sampled_from(["%2e%2e/%2e%2e/etc/passwd", "..%2f..%2f", "%00"])
).map(lambda name: quote(name, safe="/:%") if isinstance(name, str) else str(name))
blob_paths = management.digests().map(lambda d: quote(str(d), safe=":"))
GETS = st.sampled_from(["/", "/api/version", "/api/tags", "/api/ps", "/v1/models", "/metrics"])
READS = (
    st.tuples(st.sampled_from(["GET", "HEAD"]), GETS)
    | st.tuples(st.just("GET"), path_names.map(lambda n: f"/v1/models/{n}"))
    | st.tuples(st.sampled_from(["HEAD", "POST"]), blob_paths.map(lambda d: f"/api/blobs/{d}"))
    | st.tuples(
        st.sampled_from(["PUT", "PATCH", "OPTIONS", "TRACE", "GET", "DELETE"]),
        st.sampled_from(["/api/generate", "/api/chat", "/api/tags", "/v1/chat/completions"]),
    )
    | st.tuples(st.just("GET"), odd_text(30).map(lambda t: "/" + quote(t)))
)
ODD_HEADERS = st.dictionaries(
    st.sampled_from(["origin", "authorization", "accept", "user-agent", "x-forwarded-for"]),
    st.sampled_from(["", "null", "http://evil.example", "Bearer x", "*/*", "a" * 2000]),
    max_size=2,
)


@timeout(40, 2)
def test_fuzz_listings_paths_and_methods(fuzz_server: FuzzServer) -> None:
    @fuzzed(40)
    @given(request=READS, body=st.binary(max_size=64), headers=ODD_HEADERS)
    def run(request: tuple[str, str], body: bytes, headers: dict[str, str]) -> None:
        method, path = request
        fuzz_server.send(method, path, body if method != "GET" else b"", headers)

    run()
    fuzz_server.raise_findings()


create_extras = st.fixed_dictionaries(
    {},
    optional={
        "template": or_junk(strategies.templates()),
        "system": strategies.text_field(),
        "parameters": or_junk(strategies.options()),
        "stream": st.booleans(),
    },
)


def use_gguf(
    fuzz_server: FuzzServer, data: bytes, extra: dict[str, Json], as_adapter: bool, verbose: bool
) -> None:
    """Upload a GGUF file as a blob, create a model of it, then show and delete that model."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    uploaded = fuzz_server.send("POST", f"/api/blobs/{digest}", data)
    assert uploaded.status in (200, 201), uploaded
    files = {"adapters": {"lora.gguf": digest}, "from": "fuzz"} if as_adapter else None
    body = {"model": SCRATCH, **(files or {"files": {"model.gguf": digest}}), **extra}
    created = fuzz_server.send("POST", "/api/create", encode(body, ascii_only=True))
    if created.status == 200 and b'"error"' not in created.content:
        show = encode({"model": SCRATCH, "verbose": verbose}, ascii_only=True)
        fuzz_server.send("POST", "/api/show", show)
        fuzz_server.send("GET", "/api/tags")
        fuzz_server.send("DELETE", "/api/delete", encode({"model": SCRATCH}, True))


# Found by the fuzzer (a release run): a tensor count the file cannot hold; create answered 500
# ("corrupt GGUF string length") before the store hardening. Replayed on every run.
FOUND_GGUF = bytes.fromhex(
    "47475546020000000c00000000f00000000000000000000005000000000000002e2e2f7b2502000000991b0d"
    "000000000000002e311dc280f2a09fa300c3a5570b00d40040fbffffffffffff1a000000000000006c6c616d"
    "612e617474656e74696f6e2e686561645f636f756e740c000000a7f73467df9472641a000000000000006c6c"
    "616d612e617474656e74696f6e2e686561645f636f756e740300000040fb0d000000000000002e311dc280f2"
    "a09fa300c3a5570500000008000000000000000e000000000000000c0000000000000041000000000000000c"
    "00000000000000040000000b260000000000000300000000000000000d0a020000000600000000000000d102"
    "0000000000000b26000033170000000000000000000000009f"
)


@timeout(30, 5)
def test_fuzz_gguf_uploads_and_create(fuzz_server: FuzzServer) -> None:
    """Mutated GGUF files, uploaded as blobs and used by create (then shown and deleted)."""

    @fuzzed(30)
    @given(data=gguf_files(), extra=create_extras, as_adapter=st.booleans(), verbose=st.booleans())
    @example(data=FOUND_GGUF, extra={"template": "{{ .Prompt }}"}, as_adapter=False, verbose=False)
    def run(data: bytes, extra: dict[str, Json], as_adapter: bool, verbose: bool) -> None:
        use_gguf(fuzz_server, data, extra, as_adapter, verbose)

    run()
    fuzz_server.raise_findings()


@timeout(30, 4)
def test_fuzz_http_framing(fuzz_server: FuzzServer) -> None:
    """Truncated and chunked bodies, odd request lines and headers, sent on a raw socket."""

    @fuzzed(30)
    @given(raw=raw_requests())
    def run(raw: tuple[bytes, bool]) -> None:
        data, close_write = raw
        fuzz_server.send_raw(data, close_write=close_write)

    run()
    fuzz_server.raise_findings()
