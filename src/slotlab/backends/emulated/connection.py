"""Connection commands: ASKING, READONLY, READWRITE, QUIT, SELECT, RESET, HELLO, CLIENT SETNAME."""

from __future__ import annotations

from typing import Any

from slotlab.backends.emulated.client import _Client
from slotlab.backends.emulated.helpers import _NOT_INT, REDIS_VERSION, _err, _from_fake, _ll, _text
from slotlab.backends.emulated.registry import _handles
from slotlab.commands import CommandSpec
from slotlab.resp import (
    OK,
    ErrorReply,
    SimpleString,
)


@_handles("asking")
def _asking(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    c.asking = True
    return OK


@_handles("readonly")
def _readonly(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    c.readonly = True
    return OK


@_handles("readwrite")
def _readwrite(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    c.readonly = False
    return OK


@_handles("quit")
def _quit(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    c.close_after_reply = True
    return OK


@_handles("select")
def _select(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    db = _ll(argv[1])
    if db is None:
        return ErrorReply(_NOT_INT)
    if db != 0:
        return _err("SELECT is not allowed in cluster mode")
    return OK


@_handles("reset")
def _reset(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    c._discard()
    c.resp = 2
    c.asking = c.readonly = False
    sock = c.sock
    assert sock is not None
    c.fake([b"UNSUBSCRIBE"])
    c.fake([b"PUNSUBSCRIBE"])
    c.fake([b"SUNSUBSCRIBE"])
    c.pushes = []  # RESET answers alone; the unsubscribe confirmations are not sent
    sock.set_protocol(2)
    sock.set_client_name(None)
    sock.reset_reply_mode()
    return SimpleString("RESET")


def _bad_client_name(name: bytes) -> bool:
    """``clientSetNameOrReply``: names are printable ASCII without spaces."""
    return any(ch < 0x21 or ch > 0x7E for ch in name)


@_handles("client|setname")
def _client_setname(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if _bad_client_name(argv[2]):
        return _err("Client names cannot contain spaces, newlines or special characters.")
    return _from_fake(c.fake(argv))


@_handles("hello")
def _hello(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    version = 0
    j = 1
    if len(argv) >= 2:
        v = _ll(argv[1])
        if v is None:
            return _err("Protocol version is not an integer or out of range")
        version = v
        j = 2
        if version < 2 or version > 3:
            return _err("-NOPROTO unsupported protocol version")
    name: bytes | None = None
    while j < len(argv):
        more = len(argv) - 1 - j
        opt = argv[j].lower()
        if opt == b"auth" and more >= 2:
            if argv[j + 1] != b"default":
                return _err("-WRONGPASS invalid username-password pair or user is disabled.")
            j += 2
        elif opt == b"setname" and more:
            name = argv[j + 1]
            if _bad_client_name(name):
                return _err("Client names cannot contain spaces, newlines or special characters.")
            j += 1
        else:
            return _err(f"Syntax error in HELLO option '{_text(argv[j])}'")
        j += 1
    sock = c.sock
    assert sock is not None
    if name is not None:
        sock.set_client_name(name.decode("utf-8", "replace"))
    if version:
        c.resp = version
        sock.set_protocol(version)
    return {
        b"server": b"redis",
        b"version": REDIS_VERSION.encode(),
        b"proto": c.resp,
        b"id": sock.client_id,
        b"mode": b"cluster",
        b"role": b"replica" if c.node.is_replica else b"master",
        b"modules": [],
    }
