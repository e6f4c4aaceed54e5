"""TextStream: whole UTF-8 characters only, stop strings held back and never printed."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from ollamacli.engine.streaming import TextStream


def _feed(stream: TextStream, pieces: list[bytes]) -> list[str]:
    out = [stream.push(piece) for piece in pieces]
    out.append(stream.finish())
    return out


def test_multibyte_character_split_across_tokens_is_held_until_complete():
    data = "中文".encode()  # two characters, three bytes each
    stream = TextStream()
    assert stream.push(data[:1]) == ""
    assert stream.push(data[1:4]) == "中"
    assert stream.push(data[4:5]) == ""
    assert stream.push(data[5:]) == "文"
    assert stream.finish() == ""


def test_emoji_split_byte_by_byte_comes_out_once_whole():
    data = "a🌟b".encode()
    out = _feed(TextStream(), [data[i : i + 1] for i in range(len(data))])
    assert [piece for piece in out if piece] == ["a", "🌟", "b"]


def test_incomplete_character_at_the_end_is_dropped_not_garbled():
    stream = TextStream()
    assert stream.push(b"ok" + "中".encode()[:2]) == "ok"
    assert stream.finish() == ""


def test_invalid_bytes_become_replacement_characters():
    assert TextStream().push(b"a\xffb") == "a\ufffdb"


def test_stop_string_split_across_tokens_is_never_printed():
    stream = TextStream(["</end>"])
    out = _feed(stream, [b"Hello </", b"en", b"d> more"])
    assert "".join(out) == "Hello "
    assert stream.stopped
    assert out[0] == "Hello "  # the "</" was held back, not shown then retracted


def test_partial_stop_is_released_once_it_cannot_match():
    stream = TextStream(["STOP"])
    assert stream.push(b"ST") == ""
    assert stream.push(b"ART") == "START"
    assert not stream.stopped


def test_held_back_prefix_is_released_at_the_end():
    stream = TextStream(["###"])
    assert stream.push(b"done #") == "done "
    assert stream.finish() == "#"


def test_earliest_of_several_stops_wins():
    stream = TextStream(["b", "cd"])
    assert "".join(_feed(stream, [b"a c", b"d b"])) == "a "
    assert stream.matched == "cd"  # the stop string that ended it is reported


def test_no_stop_string_matched_without_a_stop():
    stream = TextStream(["zz"])
    assert "".join(_feed(stream, [b"a z", b"b"])) == "a zb"
    assert stream.matched is None


def test_nothing_after_a_stop_is_released():
    stream = TextStream(["x"])
    assert stream.push(b"1x2") == "1"
    assert stream.push(b"345") == ""
    assert stream.finish() == ""


@given(
    text=st.text(alphabet="ab中🌟 ", max_size=30),
    stop=st.text(alphabet="ab中", min_size=1, max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
def test_any_split_gives_the_text_before_the_first_stop(text, stop, cuts):
    data = text.encode()
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    out = _feed(TextStream([stop]), pieces)
    expected = text.split(stop, 1)[0]
    assert "".join(out) == expected
    assert all("\ufffd" not in piece for piece in out)
