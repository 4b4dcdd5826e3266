"""Connection commands: AUTH, ASKING, READONLY, READWRITE, QUIT, SELECT, RESET, HELLO, CLIENT
SETNAME."""

from __future__ import annotations

from typing import Any

from slotlab import commands, errors
from slotlab.backends.emulated.client import _Client
from slotlab.backends.emulated.helpers import REDIS_VERSION, _from_fake, _ll
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
        return ErrorReply(errors.NOT_INTEGER)
    if db != 0:
        return ErrorReply(errors.SELECT_IN_CLUSTER)
    return OK


@_handles("auth")
def _auth(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    problem = commands.check_auth(argv, c.backend.password)
    if problem is not None:
        return ErrorReply(problem)
    c.authenticated = True
    return OK


@_handles("reset")
def _reset(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    c._discard()
    c.authenticated = commands.authenticated_after_reset(c.backend.password)
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


@_handles("client|setname")
def _client_setname(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if commands.bad_client_name(argv[2]):
        return ErrorReply(errors.CLIENT_NAME)
    return _from_fake(c.fake(argv))


@_handles("hello")
def _hello(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    hello = commands.parse_hello(argv, c.backend.password, c.authenticated)
    if isinstance(hello, str):
        return ErrorReply(hello)
    if hello.authenticated:
        c.authenticated = True
    version, name = hello.protocol, hello.name
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
