"""Reply values and conversions shared by the emulator's modules.

fakeredis's reply values (its status, error and no-response types) become ``slotlab.resp``
values here and back; its error texts that differ from Redis 7.0's are translated.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from slotlab import commands, errors, slots
from slotlab.backends.emulated.compat import FakeError as _FakeError
from slotlab.backends.emulated.compat import FakeStatus as _FakeStatus
from slotlab.resp import (
    ErrorReply,
    SimpleString,
    encode,
)

LOG = logging.getLogger("slotlab.emulated")

SLOTS = 16384
HOST = "127.0.0.1"
REDIS_VERSION = commands.redis_version()
_VERSION_TUPLE = tuple(int(x) for x in REDIS_VERSION.split("."))

_QUEUED = SimpleString("QUEUED")
#: Commands refused unless enable-debug-command / enable-module-command allow them (7.0: "no").
_PROTECTED = frozenset({"debug", "module|load", "module|loadex", "module|unload"})
#: Commands whose RESP3 reply is a set (``addReplySetLen`` in 7.0); fakeredis gives a list.
_RESP3_SETS = frozenset({"smembers", "sinter", "sunion", "sdiff"})
#: Commands whose "nothing" is a null array (``*-1``), not a null bulk string (``$-1``).
_NULL_ARRAY = frozenset(
    {"blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin", "bzpopmax", "bzmpop",
     "lmpop", "zmpop", "xread", "xreadgroup"}
)  # fmt: skip
_PUSH_KINDS = frozenset(
    {b"message", b"pmessage", b"smessage", b"subscribe", b"psubscribe", b"ssubscribe",
     b"unsubscribe", b"punsubscribe", b"sunsubscribe"}
)  # fmt: skip


#: Unsubscribe commands that, given no channel, answer even when nothing was subscribed.
_UNSUBSCRIBE_ALL = frozenset({b"unsubscribe", b"punsubscribe", b"sunsubscribe"})


class EmulatorStartError(RuntimeError):
    """The emulated cluster could not start (for example, no loopback port could be bound)."""


key_slot = slots.key_slot  # the one key_slot, for str and bytes


_text = commands.c_string


def _ll(data: bytes) -> int | None:
    """``getLongLongFromObject``: the server's strict integer parse."""
    return commands.string2ll(data)


class _PushList(list):  # type: ignore[type-arg]
    """A pub/sub message: a RESP3 push (``>``), an array in RESP2."""


def _encode_reply(value: Any, protocol: int) -> bytes:
    if isinstance(value, _PushList) and protocol == 3:
        body = encode(list(value), 3)
        return b">" + body[1:]
    return encode(value, protocol)


_FAKE_TEXTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^ERR at least 1 input key is needed for (\w+)$"), errors.AT_LEAST_ONE_KEY),
    (re.compile(r"^ERR invalid expire time in (\w+)$"), errors.INVALID_EXPIRE),
]


def _translate(error: _FakeError, argv: Sequence[bytes]) -> _FakeError:
    """fakeredis's error texts where they differ from Redis 7.0's."""
    text = error.value
    if text == errors.LUA_ARITY:
        spec = commands.lookup(argv)
        name = spec.name if spec is not None else _text(argv[0]).lower()
        return _FakeError(commands.arity_error(name))
    for pattern, replacement in _FAKE_TEXTS:
        m = pattern.match(text)
        if m:
            return _FakeError(replacement.format(name=m[1]))
    return error


def _from_fake(value: Any) -> Any:
    """fakeredis's reply values as ``slotlab.resp`` values (status and error types differ)."""
    t = type(value)
    if t is bytes or t is int or value is None:
        return value
    if isinstance(value, _FakeStatus):
        return SimpleString(value.value.decode("utf-8", "replace"))
    if isinstance(value, _FakeError):
        return ErrorReply(value.value)
    if isinstance(value, list):
        return [_from_fake(v) for v in value]
    if isinstance(value, dict):
        return {_from_fake(k): _from_fake(v) for k, v in value.items()}
    if isinstance(value, str):
        return value.encode()
    return value


def _to_fake(value: Any) -> Any:
    """Reply values built here, as fakeredis's script bridge expects them."""
    if isinstance(value, SimpleString):
        return _FakeStatus(str(value).encode())
    if isinstance(value, ErrorReply):
        return _FakeError(value.message)
    if isinstance(value, list):
        return [_to_fake(v) for v in value]
    if isinstance(value, dict):
        return {_to_fake(k): _to_fake(v) for k, v in value.items()}
    if isinstance(value, str):
        return value.encode()
    return value
