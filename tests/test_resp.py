"""slotlab.resp: the request reader the emulated nodes and the proxy share, and reply encoding.

The reader is the server's parser, step by step: however a stream is cut into reads, the
requests and the protocol errors must be the same. The reply framer finds where each node reply
ends, wherever the reads cut it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slotlab.resp import (
    ErrorReply,
    NullArray,
    ProtocolError,
    ReplyFramer,
    RequestReader,
    SimpleString,
    encode,
    encode_command,
    split_array,
    split_replies,
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


def _whole(stream: bytes) -> list[object]:
    """The same stream fed in one piece, read with get_request; the raw bytes must add up."""
    reader, out = RequestReader(), []
    reader.feed(stream)
    raws = b""
    try:
        while (request := reader.get_request()) is not None:
            out.append(request[0])
            if request[1] is not None:
                raws += request[1]
    except ProtocolError as exc:
        out.append(("error", str(exc)))
        return out
    assert raws == stream  # every multibulk request's own bytes, in order, nothing lost
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
    assert _whole(stream) == requests


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
    whole = RequestReader()
    whole.feed(stream)
    assert _one_by_one(stream, cuts) == _one_by_one(stream, [])


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


_REPLIES = (
    b"+OK\r\n-ERR x\r\n:12\r\n$3\r\nfoo\r\n$-1\r\n*-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n"
    b"_\r\n%1\r\n+k\r\n~2\r\n,1.5\r\n#t\r\n>2\r\n$1\r\nm\r\n$0\r\n\r\n"
    b"|1\r\n+a\r\n:1\r\n:2\r\n=8\r\ntxt:abcd\r\n!3\r\nERR\r\n(123\r\n"
)
_EXPECTED = [
    b"+OK\r\n", b"-ERR x\r\n", b":12\r\n", b"$3\r\nfoo\r\n", b"$-1\r\n", b"*-1\r\n",
    b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", b"_\r\n", b"%1\r\n+k\r\n~2\r\n,1.5\r\n#t\r\n",
    b">2\r\n$1\r\nm\r\n$0\r\n\r\n", b"|1\r\n+a\r\n:1\r\n:2\r\n", b"=8\r\ntxt:abcd\r\n",
    b"!3\r\nERR\r\n", b"(123\r\n",
]  # fmt: skip


def test_the_reply_framer_finds_every_reply() -> None:
    assert split_replies(_REPLIES) == _EXPECTED
    assert split_array(b"*2\r\n$1\r\na\r\n:1\r\n") == [b"$1\r\na\r\n", b":1\r\n"]
    assert split_array(b"*-1\r\n") is None


@pytest.mark.parametrize("cut", range(1, len(_REPLIES)))
def test_the_reply_framer_resumes_at_every_byte_boundary(cut: int) -> None:
    """Fed in two reads cut at ``cut``, the framer finds the same replies, reading on."""
    framer, buf, out = ReplyFramer(), b"", []
    for piece in (_REPLIES[:cut], _REPLIES[cut:]):
        buf += piece
        while buf and (end := framer.end(buf, 0)) >= 0:
            out.append(buf[:end])
            buf = buf[end:]
    assert out == _EXPECTED and buf == b""
