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
from typing import Any, Final

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
    """Encode a request as the clients send it: an array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(
        [bulk(a if isinstance(a, bytes) else str(a).encode()) for a in args]
    )


class RequestReader:
    """Splits a client's byte stream into commands (lists of bytes), exactly as the server does.

    A request that starts with ``*`` is a multibulk array of bulk strings; anything else is an
    inline command, split like ``redis-cli`` input (quotes and escapes allowed). Malformed input
    raises ``ProtocolError`` with the server's text; the server sends it as ``-ERR <text>`` and
    closes the connection.

    A well-formed multibulk request that arrived whole (the usual case) is read in one pass
    straight from the bytes received, without copying them; anything else (a request cut
    across reads, an inline command, an error) goes through the server's step-by-step parser.
    A pipeline can be taken many requests at a time with :meth:`get_requests`.
    """

    def __init__(self) -> None:
        # The unparsed input starts at _pos. A bytes object as received while that works (no
        # copy); a bytearray once a partial request has to grow by more than a little.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._left = 0  # bulk strings still to read in the current multibulk request
        self._bulklen = -1
        self._argv: list[bytes] = []
        # get_requests: the buffer it split (the bytes object), the parts, and which part
        # starts where its next request will.
        self._split_of: bytes | None = None
        self._split_end = 0  # where in it the split window ends
        self._window = _FIRST_WINDOW
        self._unsplittable: bytes | None = None  # a buffer get_requests leaves alone
        self._parts: list[bytes] = []
        self._part = 0
        self._part_at = 0

    def feed(self, data: bytes) -> None:
        """Add bytes received from the client."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):  # everything before was used up: keep the new bytes as they are
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
        elif type(buf) is bytes:
            rest = len(buf) - pos
            if rest <= _SMALL_REST:  # a short partial request: bytes again, so the fast path runs
                self._buf = buf[pos:] + data
            else:  # a big request arriving in pieces: grow a buffer instead of copying it again
                grown = bytearray(memoryview(buf)[pos:])
                grown += data
                self._buf = grown
            self._pos = 0
        else:
            buf += data

    def feed_single(self, data: bytes) -> list[bytes] | None:
        """Feed ``data``; if it is exactly one whole, well-formed multibulk request and nothing
        was pending before it, return that command at once (its bytes are ``data``).

        Otherwise return None: the bytes are kept, to be read with :meth:`get_command` or
        :meth:`get_request`, exactly as after :meth:`feed`. The usual request of a client that
        waits for each reply takes this path.
        """
        if not self._left and self._pos >= len(self._buf) and type(data) is bytes:
            argv = _single_request(data)
            if argv is not None:
                self._buf = b""
                self._pos = 0
                return argv
        self.feed(data)
        return None

    def pending(self) -> int:
        """How many received bytes are not yet part of a returned command."""
        return len(self._buf) - self._pos

    def get_command(self) -> list[bytes] | None:
        """The next complete command, ``[]`` for a request with no command, None for 'need more'."""
        buf, pos = self._buf, self._pos
        if not self._left and pos < len(buf) and buf[pos] == 0x2A and type(buf) is bytes:
            found = _parse_multibulk(buf, pos)
            if found is not None:
                self._consumed(found[1])
                return found[0]
        return self._step()

    def get_request(self) -> tuple[list[bytes], bytes | None] | None:
        """Like :meth:`get_command`, with the request's own bytes as the client sent them.

        The bytes are None when the request did not come as one well-formed multibulk array in
        the buffer (an inline command, a request cut across reads): re-encode ``argv`` then.
        A proxy forwards the bytes unchanged.
        """
        buf, pos = self._buf, self._pos
        if not self._left and pos < len(buf) and buf[pos] == 0x2A and type(buf) is bytes:
            found = _parse_multibulk(buf, pos)
            if found is not None:
                end = found[1]
                self._consumed(end)
                return found[0], buf if not pos and end == len(buf) else buf[pos:end]
        argv = self._step()
        return None if argv is None else (argv, None)

    def get_requests(self, limit: int) -> list[tuple[list[bytes], bytes]]:
        """Up to ``limit`` requests at once, each with its own bytes, for a pipeline.

        It takes the requests from the buffer while they are whole multibulk arrays written the
        plain way (``*N``, then ``$len`` and the argument for each, every line ending in CRLF,
        1 to 1023 arguments), which is how clients write them: what :meth:`get_request` would
        return for each, found from a C-level split of the buffer at every CRLF instead of a
        parse per request. It stops before the first request that is not all there or not
        written that way and returns what it has, maybe ``[]``: read that one with
        :meth:`get_request`, then call this again (the split is kept, not done again).
        """
        buf, pos = self._buf, self._pos
        if limit <= 0 or self._left or pos >= len(buf) or type(buf) is not bytes:
            return []
        if buf[pos] != 0x2A or buf is self._unsplittable:  # '*'
            return []
        if self._split_of is not buf or not self._resync(pos):
            self._split(buf, pos)
        parts = self._parts
        last = len(parts) - 1  # parts[last] is not followed by CRLF: never a whole line
        out: list[tuple[list[bytes], bytes]] = []
        small = _SMALL_NUMBERS
        pick = _BULK_HEADERS.__getitem__
        i, at = self._part, self._part_at  # the part that starts at buffer offset ``at``
        while len(out) < limit:
            if i < last:
                head = parts[i]
                count = small.get(head[1:]) if head[:1] == b"*" else None
                if not count:
                    self._give_up(buf)
                    break
                j = i + 1 + 2 * count
            else:
                j = i + 1  # the rest of the split has no CRLF
            if j > last:  # not all in the split
                if self._split_end == len(buf):
                    break  # not all received yet
                if not i:  # bigger than a window: the exact parser reads it
                    self._give_up(buf)
                    break
                self._split(buf, at)  # the next window
                parts = self._parts
                last = len(parts) - 1
                i = 0
                continue
            argv = parts[i + 2 : j : 2]
            try:
                plain = parts[i + 1 : j : 2] == list(map(pick, map(len, argv)))
            except IndexError:  # an argument of 1 KB or more
                plain = parts[i + 1 : j : 2] == [b"$%d" % len(a) for a in argv]
            if not plain:  # e.g. an argument holding CRLF itself: the exact parser reads it
                self._give_up(buf)
                break
            end = at + sum(map(len, parts[i:j])) + 2 * (j - i)
            out.append((argv, buf if not at and end == len(buf) else buf[at:end]))
            i, at = j, end
        if out:
            self._part, self._part_at = i, at
            self._consumed(at)
        return out

    def _split(self, buf: bytes, pos: int) -> None:
        """Split a window of ``buf`` from ``pos`` at every CRLF, for get_requests: a small one
        in a new buffer (a request bigger than that goes to the exact parser at little cost),
        twice the last one in the same buffer, up to _SPLIT_WINDOW."""
        if self._split_of is buf:
            self._window = min(self._window * 2, _SPLIT_WINDOW)
        else:
            self._window = _FIRST_WINDOW
        stop = pos + self._window
        if stop >= len(buf):
            stop = len(buf)
        self._parts = (buf if not pos and stop == len(buf) else buf[pos:stop]).split(b"\r\n")
        self._split_of = buf
        self._split_end = stop
        self._part = 0
        self._part_at = pos

    def _give_up(self, buf: bytes) -> None:
        """Leave the rest of ``buf`` to the exact parser: it holds requests written in other
        ways (arguments holding CRLF, inline commands...) or bigger than a window, for which
        splitting is work thrown away."""
        self._unsplittable = buf
        self._split_of = None
        self._parts = []

    def _resync(self, pos: int) -> bool:
        """Move the kept split on to buffer offset ``pos``, where the next request starts (an
        earlier one was read without it); False if no part starts there."""
        parts, i, at = self._parts, self._part, self._part_at
        last = len(parts) - 1
        while at < pos and i < last:
            at += len(parts[i]) + 2
            i += 1
        if at != pos:
            return False
        self._part, self._part_at = i, at
        return True

    def _consumed(self, end: int) -> None:
        if end >= len(self._buf):
            self._buf = b""
            self._pos = 0
        else:
            self._pos = end

    def _step(self) -> list[bytes] | None:
        """The server's parser, step by step: resumes a request cut across reads."""
        buf = self._buf
        if self._left == 0:
            if self._pos >= len(buf):
                self._compact()
                return None
            if buf[self._pos] != 0x2A:  # '*'
                return self._inline()
            if not self._multibulk_header():
                return None
            if self._left == 0:
                return []
        while self._left:
            if self._bulklen == -1:
                pos = self._pos
                nl = buf.find(b"\r", pos)
                if nl == -1:
                    if len(buf) - pos > MAX_INLINE_LEN:
                        raise ProtocolError("Protocol error: too big bulk count string")
                    return None
                if nl > len(buf) - 2:
                    return None
                if buf[pos] != 0x24:  # '$'
                    got = chr(buf[pos])
                    raise ProtocolError(f"Protocol error: expected '$', got '{got}'")
                length = _string2ll(bytes(buf[pos + 1 : nl]))
                if length is None or length < 0 or length > MAX_BULK_LEN:
                    raise ProtocolError("Protocol error: invalid bulk length")
                self._pos = nl + 2
                self._bulklen = length
            if len(buf) - self._pos < self._bulklen + 2:
                return None
            end = self._pos + self._bulklen
            self._argv.append(bytes(buf[self._pos : end]))
            self._pos = end + 2
            self._bulklen = -1
            self._left -= 1
        argv, self._argv = self._argv, []
        self._compact()
        return argv

    def _compact(self) -> None:
        buf, pos = self._buf, self._pos
        if not pos:
            return
        if pos >= len(buf):
            self._buf = b""
            self._pos = 0
        elif type(buf) is bytearray:
            del buf[:pos]
            self._pos = 0
        # a bytes buffer stays as it is until it is used up or more bytes come (see feed)

    def _multibulk_header(self) -> bool:
        buf, pos = self._buf, self._pos
        nl = buf.find(b"\r", pos)
        if nl == -1:
            if len(buf) - pos > MAX_INLINE_LEN:
                raise ProtocolError("Protocol error: too big mbulk count string")
            return False
        if nl > len(buf) - 2:
            return False
        count = _string2ll(bytes(buf[pos + 1 : nl]))
        if count is None or count > 2**31 - 1:
            raise ProtocolError("Protocol error: invalid multibulk length")
        self._pos = nl + 2
        self._left = max(count, 0)
        self._argv = []
        return True

    def _inline(self) -> list[bytes] | None:
        buf, pos = self._buf, self._pos
        nl = buf.find(b"\n", pos)
        if nl == -1:
            if len(buf) - pos > MAX_INLINE_LEN:
                raise ProtocolError("Protocol error: too big inline request")
            return None
        end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
        line = bytes(buf[pos:end])
        self._pos = nl + 1
        self._compact()
        argv = split_args(line)
        if argv is None:
            raise ProtocolError("Protocol error: unbalanced quotes in request")
        return argv


#: A partial request at most this long is copied into a new bytes object when more bytes come.
_SMALL_REST: Final = 4096

#: How many bytes RequestReader.get_requests splits at once: at first in a buffer, at most.
_FIRST_WINDOW: Final = 4096
_SPLIT_WINDOW: Final = 64 * 1024

#: Numbers as the server accepts them (no sign, no leading zero), for the common small ones.
_SMALL_NUMBERS: Final[dict[bytes, int]] = {b"%d" % i: i for i in range(1024)}


#: ``$<n>`` for the bulk lengths _single_request checks.
_BULK_HEADERS: Final = [b"$%d" % i for i in range(1024)]


def _single_request(data: bytes) -> list[bytes] | None:
    """The command when ``data`` is exactly one well-formed multibulk request, else None.

    Split at every CRLF (in C), the request must read ``*N``, then N times ``$len`` and the
    argument, then nothing: every length is checked against its argument, so an argument that
    holds a CRLF itself cannot pass. Only small requests (arguments under 1 KB); others go to
    :func:`_parse_multibulk`.
    """
    if not data or data[0] != 0x2A:  # '*'
        return None
    count = _SMALL_NUMBERS.get(data[1 : data.find(b"\r\n")])
    if not count:
        return None
    parts = data.split(b"\r\n", 2 * count + 1)
    if len(parts) != 2 * count + 2 or parts[-1]:
        return None
    argv = parts[2::2]
    headers = _BULK_HEADERS
    i = 1
    for arg in argv:
        size = len(arg)
        if size >= 1024 or headers[size] != parts[i]:
            return None
        i += 2
    return argv


def _parse_multibulk(buf: bytes, pos: int = 0) -> tuple[list[bytes], int] | None:
    """One complete, well-formed multibulk request at ``buf[pos]`` (a ``*``): (argv, its end).

    None when the request is not all there or is not plainly well formed (no arguments, a
    malformed number, a missing ``$``...): :class:`RequestReader`'s step-by-step parser then
    takes it from the same place and does exactly what the server does. What this returns is
    what that parser would return. Like the server, it does not look at the byte after each
    ``\\r``.
    """
    n = len(buf)
    nl = buf.find(b"\r", pos)
    if nl < 0 or nl > n - 2:
        return None
    text = buf[pos + 1 : nl]
    count = _SMALL_NUMBERS.get(text)
    if count is None:
        count = _string2ll(text)
        if count is None or count > 2**31 - 1:
            return None
    if count <= 0 or count * 6 > n - nl:  # each argument takes at least 6 bytes: $0\r\n\r\n
        return None
    p = nl + 2
    argv = []
    small = _SMALL_NUMBERS
    for _ in range(count):
        nl = buf.find(b"\r", p)
        if nl < 0 or nl > n - 2 or buf[p] != 0x24:  # '$'
            return None
        text = buf[p + 1 : nl]
        size = small.get(text)
        if size is None:
            size = _string2ll(text)
            if size is None or size < 0 or size > MAX_BULK_LEN:
                return None
        p = nl + 2
        end = p + size
        if end + 2 > n:
            return None
        argv.append(buf[p:end])
        p = end + 2
    return argv, p


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
