"""MULTI, EXEC, DISCARD and WATCH, with a cluster node's queueing rules."""

from __future__ import annotations

from typing import Any

from slotlab import errors
from slotlab.backends.emulated.client import _NO_REPLY, _Client
from slotlab.backends.emulated.helpers import LOG, _from_fake
from slotlab.backends.emulated.registry import _handles
from slotlab.commands import CommandSpec
from slotlab.resp import (
    OK,
    ErrorReply,
    NullArray,
)


@_handles("multi")
def _multi(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if c.multi is not None:
        return ErrorReply(errors.MULTI_NESTED)
    c.multi = []
    c.dirty = False
    return OK


@_handles("discard")
def _discard_cmd(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if c.multi is None:
        return ErrorReply(errors.DISCARD_WITHOUT_MULTI)
    c._discard()
    return OK


@_handles("watch")
def _watch(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if c.multi is not None:
        return ErrorReply(errors.WATCH_IN_MULTI)
    return _from_fake(c.fake(argv))


@_handles("exec")
def _exec(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if c.multi is None:
        return ErrorReply(errors.EXEC_WITHOUT_MULTI)
    sock = c.sock
    assert sock is not None
    if c.dirty:
        c._discard()
        return ErrorReply(errors.EXECABORT)
    queued = c.multi
    with c.node.store.lock:
        if sock.watch_notified:
            c._discard()
            return NullArray
        c.multi = None
        c.dirty = False
        sock.clear_watches()
        replies = []
        sock.in_transaction = True  # blocking commands do not block inside EXEC
        try:
            for qspec, qargv, _ in queued:
                try:
                    reply = c.call(qspec, qargv)
                except Exception as exc:  # noqa: BLE001 - one bad command must not kill the node
                    LOG.exception("emulator failed on %r inside EXEC", qargv[:1])
                    reply = ErrorReply(errors.EMULATOR_INTERNAL.format(detail=repr(exc)))
                replies.append(None if reply is _NO_REPLY else reply)
        finally:
            sock.in_transaction = False
    return replies
