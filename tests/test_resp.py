"""slotlab.resp: the request reader the emulated nodes and the proxy share, and reply encoding.

The reader has three ways in (one request at a time, a whole read holding one request, and a
bulk path for long pipelines); whatever way a stream is read, the requests and the protocol
errors must be the same.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slotlab.resp import (
    ErrorReply,
    NullArray,
    ProtocolError,
    RequestReader,
    SimpleString,
    encode,
    encode_command,
)

_args = st.lists(
    st.one_of(st.binary(max_size=12), st.sampled_from([b"\r\n", b"$3", b"*2", b"", b"\n"])),
    min_size=1,
    max_size=6,
)
_requests = st.lists(_args, min_size=1, max_size=30)


def _one_by_one(stream: bytes, cuts: list[int]) -> list[object]:
    """Read ``stream`` fed in pieces, one request at a time; a protocol error ends it."""
    reader, out = RequestReader(), []
    for piece in _pieces(stream, cuts):
        reader.feed(piece)
        try:
            while (request := reader.get_command()) is not None:
                out.append(request)
        except ProtocolError as exc:
            out.append(("error", str(exc)))
            return out
    return out


def _in_bulk(stream: bytes, cuts: list[int]) -> list[object]:
    """The same, taking whatever the bulk path gives and the rest one at a time."""
    reader, out = RequestReader(), []
    for piece in _pieces(stream, cuts):
        reader.feed(piece)
        try:
            while True:
                batch = reader.get_requests(64)
                out += [args for args, _raw in batch]
                request = reader.get_request()
                if request is None:
                    break
                out.append(request[0])
        except ProtocolError as exc:
            out.append(("error", str(exc)))
            return out
    return out


def _pieces(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    return [stream[a:b] for a, b in zip(points, points[1:], strict=False)]


@settings(max_examples=300, deadline=None)
@given(requests=_requests, cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_every_way_of_reading_a_pipeline_gives_the_same_requests(
    requests: list[list[bytes]], cuts: list[int]
) -> None:
    stream = b"".join(encode_command(*args) for args in requests)
    assert _one_by_one(stream, cuts) == requests
    assert _in_bulk(stream, cuts) == requests


@settings(max_examples=300, deadline=None)
@given(
    requests=_requests,
    garbage=st.binary(min_size=1, max_size=20),
    at=st.integers(0, 10_000),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_corrupted_streams_give_the_same_requests_and_errors(
    requests: list[list[bytes]], garbage: bytes, at: int, cuts: list[int]
) -> None:
    stream = b"".join(encode_command(*args) for args in requests)
    at %= len(stream) + 1
    stream = stream[:at] + garbage + stream[at:]
    assert _in_bulk(stream, cuts) == _one_by_one(stream, cuts)


def test_inline_commands_and_the_servers_error_texts() -> None:
    reader = RequestReader()
    reader.feed(b"PING\r\nSET a  b\r\n")
    assert reader.get_command() == [b"PING"]
    assert reader.get_command() == [b"SET", b"a", b"b"]
    for bad, text in [
        (b"*x\r\n", "Protocol error: invalid multibulk length"),
        (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
    ]:
        reader = RequestReader()
        reader.feed(bad)
        with pytest.raises(ProtocolError, match=text.replace("$", r"\$")):
            reader.get_command()


def test_replies_encode_as_resp2() -> None:
    value = [1, b"a", None, SimpleString("OK"), ErrorReply("ERR x"), [], NullArray]
    assert encode(value) == b"*7\r\n:1\r\n$1\r\na\r\n$-1\r\n+OK\r\n-ERR x\r\n*0\r\n*-1\r\n"
