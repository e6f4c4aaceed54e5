"""Hypothesis strategies for raw HTTP/1.1 bytes: framing an HTTP client would never send.

Truncated bodies (a Content-Length longer than what follows, then the client hangs up), chunked
bodies with bad chunk sizes, both Content-Length and Transfer-Encoding, garbage request lines,
odd header bytes, absolute-form targets, pipelined requests. The server may refuse any of these
(400, 413, 431 or a closed connection) but must not answer 500, log a crash or die.
"""

from __future__ import annotations

from hypothesis import strategies as st

ROUTES = ["/api/generate", "/api/chat", "/api/create", "/api/show", "/v1/chat/completions"]
SAMPLE = b'{"model": "fz-missing", "prompt": "hi", "messages": [], "options": {"num_predict": 1}}'


def _request(target: bytes, headers: list[bytes], body: bytes, method: bytes = b"POST") -> bytes:
    head = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@st.composite
def truncated(draw: st.DrawFn, route: bytes) -> tuple[bytes, bool]:
    """Content-Length promises more than the client sends before it hangs up."""
    cut = draw(st.integers(0, len(SAMPLE) - 1))
    length = draw(st.sampled_from([len(SAMPLE), len(SAMPLE) * 2, 10**9]))
    headers = [b"Content-Type: application/json", b"Content-Length: %d" % length]
    return _request(route, headers, SAMPLE[:cut]), True


@st.composite
def chunked(draw: st.DrawFn, route: bytes) -> tuple[bytes, bool]:
    """A chunked body whose chunk sizes lie, are not hex, or never end."""
    size = draw(st.sampled_from([b"%x" % len(SAMPLE), b"ffffffffffffffff", b"zz", b"-1", b""]))
    end = draw(st.sampled_from([b"\r\n0\r\n\r\n", b"", b"\r\n", b"\r\n5\r\nab"]))
    headers = [b"Transfer-Encoding: chunked", b"Connection: close"]
    if draw(st.booleans()):
        headers.append(b"Content-Length: 3")  # both: request smuggling territory
    return _request(route, headers, size + b"\r\n" + SAMPLE + end), True


@st.composite
def odd_heads(draw: st.DrawFn, route: bytes) -> tuple[bytes, bool]:
    """Odd request lines and headers around a small sound body."""
    kind = draw(st.sampled_from(["line", "header", "target", "version", "huge", "pipeline"]))
    length = b"Content-Length: %d" % len(SAMPLE)
    if kind == "line":
        return draw(st.sampled_from([b"GARBAGE\r\n\r\n", b"\r\n\r\n", b"POST\r\n\r\n"])), True
    if kind == "header":
        header = draw(
            st.sampled_from([b"X: \xff\xfe", b"No-Colon", b": empty", b"X:\x00y", b"X\x01: y"])
        )
        return _request(route, [header, length, b"Connection: close"], SAMPLE), False
    if kind == "target":
        target = draw(
            st.sampled_from(
                [b"http://evil.example" + route, b"*", route + b"/../..", b"//" + route, b"%"]
            )
        )
        return _request(target, [length, b"Connection: close"], SAMPLE), False
    if kind == "version":
        line = b"POST " + route + draw(st.sampled_from([b" HTTP/1.0", b" HTTP/2.0", b" HTTP/9"]))
        return line + b"\r\n" + length + b"\r\n\r\n" + SAMPLE, True
    if kind == "huge":
        header = b"X-Big: " + b"a" * draw(st.sampled_from([10_000, 100_000, 1_000_000]))
        return _request(route, [header, length, b"Connection: close"], SAMPLE), False
    first = _request(route, [length], SAMPLE)
    return first + _request(b"/api/tags", [b"Connection: close"], b"", b"GET"), False


@st.composite
def raw_requests(draw: st.DrawFn) -> tuple[bytes, bool]:
    """Raw request bytes, and whether the client then closes its side."""
    route = draw(st.sampled_from(ROUTES)).encode()
    return draw(st.one_of(truncated(route), chunked(route), odd_heads(route)))
