"""RESP, the Redis wire protocol: reading requests and writing replies.

Shared by the emulated cluster and the proxy. Clients parse replies with hiredis; a *server*
parses requests, which hiredis cannot do the server's way, so ``RequestReader`` follows Redis's
own request parser (``processMultibulkBuffer`` and ``processInlineBuffer`` in networking.c):
inline commands (``PING\\r\\n`` as telnet sends it, with quotes), and the server's exact
protocol-error texts. ``encode`` writes Python values as RESP2 or RESP3 replies.

Reply types, in RESP2 terms:

- ``SimpleString("OK")``  -> ``+OK``
- ``ErrorReply("ERR x")`` -> ``-ERR x``  (the text includes the error code, as the server sends it)
- ``int``                 -> ``:1``
- ``bytes`` / ``str``     -> ``$3\\r\\nfoo``  (a bulk string)
- ``None``                -> ``$-1``  (the null bulk string)
- ``NullArray``           -> ``*-1``
- ``list`` / ``tuple``    -> ``*N`` followed by each element

``encode(value, protocol=3)`` writes RESP3, which a client asks for with ``HELLO 3`` (redis-py 8
does by default): ``None`` -> ``_``, ``dict`` -> a map ``%N``, ``RespSet`` -> a set ``~N``,
``float`` -> a double ``,1.5``, ``Verbatim`` -> ``=N\r\ntxt:...``. In RESP2 these degrade the way
the server degrades them: a map becomes a flat array, a set an array, a double and a verbatim
string a bulk string.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, cast

import hiredis

from slotlab import errors

#: The server closes a connection whose request exceeds this (``proto-max-bulk-len``).
MAX_BULK_LEN: Final = 512 * 1024 * 1024
#: Inline requests longer than this are refused, as the server does (``PROTO_INLINE_MAX_SIZE``).
MAX_INLINE_LEN: Final = 64 * 1024


class SimpleString(str):
    """A status reply such as ``+OK`` or ``+PONG``."""


class ErrorReply(Exception):
    """An error reply. ``str(e)`` is the full text the server sends, code first: ``ERR ...``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class _NullArray:
    """The RESP2 null array ``*-1`` (what EXEC answers when a WATCHed key changed)."""

    _instance: _NullArray | None = None

    def __new__(cls) -> _NullArray:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NullArray"


NullArray: Final = _NullArray()

OK: Final = SimpleString("OK")


class RespSet(list):  # type: ignore[type-arg]
    """A set reply (RESP3 ``~``; an array in RESP2). A list, so it keeps the server's order."""


class Verbatim(str):
    """A verbatim text reply such as INFO or CLUSTER NODES (RESP3 ``=``; bulk in RESP2)."""


def format_double(value: float) -> bytes:
    """A double as the server prints it (``%.17g``; ``inf`` and ``-inf`` spelled out)."""
    if value != value:
        return b"nan"
    if value in (float("inf"), float("-inf")):
        return b"inf" if value > 0 else b"-inf"
    return b"%.17g" % value


class ProtocolError(Exception):
    """The client sent bytes that are not RESP. The server replies with this text and closes."""


def encode(value: Any, protocol: int = 2) -> bytes:
    """Encode a Python value as one reply in RESP2 (default) or RESP3 (see the module docstring)."""
    out: list[bytes] = []
    _encode_into(value, out, protocol == 3)
    return b"".join(out)


def _encode_into(value: Any, out: list[bytes], resp3: bool = False) -> None:
    if isinstance(value, SimpleString):
        out.append(b"+" + value.encode() + b"\r\n")
    elif isinstance(value, ErrorReply):
        text = value.message.replace("\r", " ").replace("\n", " ")
        out.append(b"-" + text.encode() + b"\r\n")
    elif isinstance(value, bool):
        out.append(b":1\r\n" if value else b":0\r\n")
    elif isinstance(value, int):
        out.append(b":%d\r\n" % value)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        out.append(b"$%d\r\n" % len(data))
        out.append(data + b"\r\n")
    elif isinstance(value, Verbatim) and resp3:
        data = b"txt:" + value.encode()
        out.append(b"=%d\r\n%s\r\n" % (len(data), data))
    elif isinstance(value, str):
        data = value.encode()
        out.append(b"$%d\r\n" % len(data))
        out.append(data + b"\r\n")
    elif value is None:
        out.append(b"_\r\n" if resp3 else b"$-1\r\n")
    elif value is NullArray:
        out.append(b"_\r\n" if resp3 else b"*-1\r\n")
    elif isinstance(value, float):
        data = format_double(value)
        out.append(b",%s\r\n" % data if resp3 else b"$%d\r\n%s\r\n" % (len(data), data))
    elif isinstance(value, RespSet):
        out.append((b"~%d\r\n" if resp3 else b"*%d\r\n") % len(value))
        for item in value:
            _encode_into(item, out, resp3)
    elif isinstance(value, (list, tuple)):
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(item, out, resp3)
    elif isinstance(value, dict):  # RESP2 has no map: a flat list of key, value, ...
        out.append(b"%%%d\r\n" % len(value) if resp3 else b"*%d\r\n" % (2 * len(value)))
        for k, v in value.items():
            _encode_into(k, out, resp3)
            _encode_into(v, out, resp3)
    elif isinstance(value, (set, frozenset)):
        _encode_into(RespSet(value), out, resp3)
    elif isinstance(value, Iterable):
        _encode_into(list(value), out, resp3)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as a RESP reply")


def bulk(data: bytes) -> bytes:
    """One RESP bulk string: ``$<length>``, then the bytes, each line ending in CRLF."""
    return b"$%d\r\n%b\r\n" % (len(data), data)


def encode_command(*args: bytes | str | int) -> bytes:
    """Encode a request as the clients send it: an array of bulk strings (hiredis, in C)."""
    return cast(bytes, hiredis.pack_command(args))  # type: ignore[arg-type]


def error_reply(text: str) -> bytes:
    """An error reply on the wire: ``-`` and the full text (code first), on one line."""
    return b"-" + text.replace("\r", " ").replace("\n", " ").encode() + b"\r\n"


class RequestReader:
    """Splits a client's byte stream into commands (lists of bytes), exactly as the server does.

    This is Redis's own request parser (``processMultibulkBuffer`` and ``processInlineBuffer``
    in networking.c), step by step, so a request cut across reads resumes where it stopped. A
    request that starts with ``*`` is a multibulk array of bulk strings; anything else is an
    inline command, split like ``redis-cli`` input (quotes and escapes allowed). Malformed input
    raises ``ProtocolError`` with the server's text; the server sends it as ``-ERR <text>`` and
    closes the connection.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # where the unparsed input starts
        self._start = 0  # where the request being parsed started
        self._left = 0  # bulk strings still to read in the current multibulk request
        self._bulklen = -1
        self._argv: list[bytes] = []

    def feed(self, data: bytes) -> None:
        """Add bytes received from the client."""
        self._buf += data

    def pending(self) -> int:
        """How many received bytes are not yet part of a returned command."""
        return len(self._buf) - self._start

    def get_command(self) -> list[bytes] | None:
        """The next complete command, ``[]`` for a request with no command, None for 'need more'."""
        got = self.get_request()
        return None if got is None else got[0]

    def get_request(self) -> tuple[list[bytes], bytes | None] | None:
        """Like :meth:`get_command`, with the request's own bytes as the client sent them.

        The bytes are None for an inline command (re-encode ``argv`` then); a proxy forwards a
        multibulk request's bytes unchanged.
        """
        buf = self._buf
        if self._left == 0:
            self._compact()
            buf = self._buf
            if self._pos >= len(buf):
                return None
            if buf[self._pos] != 0x2A:  # '*'
                argv = self._inline()
                return None if argv is None else (argv, None)
            if not self._multibulk_header():
                return None
        while self._left:
            pos = self._pos
            if self._bulklen == -1:
                nl = buf.find(b"\r", pos)
                if nl == -1:
                    if len(buf) - pos > MAX_INLINE_LEN:
                        raise ProtocolError(errors.PROTO_BIG_BULK_COUNT)
                    return None
                if nl > len(buf) - 2:
                    return None
                if buf[pos] != 0x24:  # '$'
                    raise ProtocolError(errors.PROTO_EXPECTED_DOLLAR.format(got=chr(buf[pos])))
                length = _string2ll(bytes(buf[pos + 1 : nl]))
                if length is None or length < 0 or length > MAX_BULK_LEN:
                    raise ProtocolError(errors.PROTO_BULK_LENGTH)
                pos = self._pos = nl + 2
                self._bulklen = length
            if len(buf) - pos < self._bulklen + 2:
                return None
            end = pos + self._bulklen
            self._argv.append(bytes(buf[pos:end]))
            self._pos = end + 2
            self._bulklen = -1
            self._left -= 1
        argv, self._argv = self._argv, []
        raw = bytes(buf[self._start : self._pos])
        self._start = self._pos
        return argv, raw

    def _compact(self) -> None:
        """Drop the bytes of requests already returned (between requests only)."""
        self._start = self._pos
        if self._pos >= len(self._buf):
            self._buf.clear()
            self._pos = self._start = 0
        elif self._pos > 65536:
            del self._buf[: self._pos]
            self._pos = self._start = 0

    def _multibulk_header(self) -> bool:
        buf, pos = self._buf, self._pos
        nl = buf.find(b"\r", pos)
        if nl == -1:
            if len(buf) - pos > MAX_INLINE_LEN:
                raise ProtocolError(errors.PROTO_BIG_MBULK_COUNT)
            return False
        if nl > len(buf) - 2:
            return False
        count = _string2ll(bytes(buf[pos + 1 : nl]))
        if count is None or count > 2**31 - 1:
            raise ProtocolError(errors.PROTO_MBULK_LENGTH)
        self._pos = nl + 2
        self._left = max(count, 0)
        self._argv = []
        return True

    def _inline(self) -> list[bytes] | None:
        buf, pos = self._buf, self._pos
        nl = buf.find(b"\n", pos)
        if nl == -1:
            if len(buf) - pos > MAX_INLINE_LEN:
                raise ProtocolError(errors.PROTO_BIG_INLINE)
            return None
        end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
        line = bytes(buf[pos:end])
        self._pos = self._start = nl + 1
        argv = split_args(line)
        if argv is None:
            raise ProtocolError(errors.PROTO_UNBALANCED_QUOTES)
        return argv


class ReplyFramer:
    """Finds where one RESP2 or RESP3 reply ends in a buffer, resuming where it stopped.

    A proxy forwards a node's reply byte for byte (``+OK`` stays a status reply, ``*-1`` a null
    array, a RESP3 map stays a map), so it only needs to know where each reply ends. Resuming
    matters for big replies that arrive in many pieces: nothing is read twice.
    """

    __slots__ = ("_stack", "_off")

    def __init__(self) -> None:
        self._stack: list[int] = []  # elements still missing, per nesting level
        self._off = 0  # how far into the current reply we got last time

    def end(self, buf: bytes | bytearray, start: int = 0) -> int:
        """The index just past the reply that starts at ``start``, or -1 if it is incomplete.

        Raises ValueError for bytes that are not a RESP reply.
        """
        n = len(buf)
        stack = self._stack
        if stack:
            p = start + self._off
        else:
            p = start
            stack.append(1)
        while p < n:
            t = buf[p]
            nl = buf.find(b"\r\n", p)
            if nl < 0:
                break
            if t in _LENGTH_PREFIXED:  # $ bulk string; RESP3 ! blob error, = verbatim string
                size = int(buf[p + 1 : nl])
                if size >= 0:
                    e = nl + 4 + size
                    if e > n:
                        break
                    p = e
                else:
                    p = nl + 2
                stack[-1] -= 1
            elif t in _AGGREGATES:  # * array; RESP3 ~ set, > push, % map, | attribute
                count = int(buf[p + 1 : nl]) * (2 if t in (37, 124) else 1)
                p = nl + 2
                if t != 124:  # an attribute is a prefix: the reply that follows is the element
                    stack[-1] -= 1
                if count > 0:
                    stack.append(count)
                    continue
            elif t in _LINES:  # + status, - error, : integer; RESP3 _ null, # , ( scalars
                p = nl + 2
                stack[-1] -= 1
            else:
                raise ValueError(f"not a RESP reply: type byte {t!r}")
            while stack and stack[-1] == 0:
                stack.pop()
            if not stack:
                self._off = 0
                return p
        self._off = p - start
        return -1


_LENGTH_PREFIXED: Final = frozenset(b"$!=")
_AGGREGATES: Final = frozenset(b"*~>%|")
_LINES: Final = frozenset(b"+-:_#,(")


def split_replies(data: bytes) -> list[bytes]:
    """Every whole reply in ``data``, each as its own bytes (the rest, if cut, is left out)."""
    out: list[bytes] = []
    p = 0
    while p < len(data):
        e = ReplyFramer().end(data, p)
        if e < 0:
            break
        out.append(data[p:e])
        p = e
    return out


def split_array(raw: bytes) -> list[bytes] | None:
    """The elements of an array (or set) reply, each as its raw bytes; None for anything else."""
    if raw[:1] not in (b"*", b"~"):
        return None
    nl = raw.find(b"\r\n")
    if int(raw[1:nl]) < 0:
        return None
    return split_replies(raw[nl + 2 :])


def _string2ll(data: bytes) -> int | None:
    """Redis's strict integer parse: optional '-', no '+', no spaces, no leading zeros."""
    if not data or len(data) > 20:
        return None
    body = data[1:] if data[:1] == b"-" else data
    if not body.isdigit() or (body[:1] == b"0" and (len(body) > 1 or data[:1] == b"-")):
        return None
    value = int(data)
    return value if -(2**63) <= value < 2**63 else None


_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("a"): b"\a"}
_HEX = b"0123456789abcdefABCDEF"


def split_args(line: bytes) -> list[bytes] | None:
    """Split an inline command like the server's ``sdssplitargs``; None for unbalanced quotes."""
    line = line.split(b"\0", 1)[0]  # the server reads the line as a C string
    out: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in b" \n\r\t\v\f":
            i += 1
        if i >= n:
            return out
        current = bytearray()
        inq = insq = False
        while True:
            if inq:
                if i >= n:
                    return None
                c = line[i]
                if (
                    c == 0x5C
                    and i + 3 < n
                    and line[i + 1] == ord("x")
                    and line[i + 2] in _HEX
                    and line[i + 3] in _HEX
                ):
                    current.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n:
                    i += 1
                    current += _ESCAPES.get(line[i], bytes([line[i]]))
                elif c == 0x22:
                    if i + 1 < n and line[i + 1] not in b" \n\r\t\v\f":
                        return None  # the closing quote must be followed by a space
                    i += 1
                    break
                else:
                    current.append(c)
            elif insq:
                if i >= n:
                    return None
                c = line[i]
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    i += 1
                    current.append(0x27)
                elif c == 0x27:
                    if i + 1 < n and line[i + 1] not in b" \n\r\t\v\f":
                        return None
                    i += 1
                    break
                else:
                    current.append(c)
            else:
                if i >= n:
                    break
                c = line[i]
                if c in b" \n\r\t":
                    break
                if c == 0x22:
                    inq = True
                elif c == 0x27:
                    insq = True
                else:
                    current.append(c)
            i += 1
        out.append(bytes(current))
