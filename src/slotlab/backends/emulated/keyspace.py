"""Key commands that a cluster node answers differently: SWAPDB, MOVE, COPY, TOUCH, MIGRATE, ..."""

from __future__ import annotations

from typing import Any

from slotlab import commands, errors
from slotlab.backends.emulated import node_checks
from slotlab.backends.emulated.client import _Client
from slotlab.backends.emulated.compat import FakeError as _FakeError
from slotlab.backends.emulated.helpers import _from_fake, _ll
from slotlab.backends.emulated.registry import _handles
from slotlab.commands import CommandSpec
from slotlab.resp import (
    OK,
    ErrorReply,
    SimpleString,
)


@_handles("swapdb")
def _swapdb(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return ErrorReply(errors.SWAPDB_IN_CLUSTER)


@_handles("move")
def _move(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return ErrorReply(errors.MOVE_IN_CLUSTER)


@_handles("sort", "sort_ro")
def _sort(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    refused = node_checks.sort_refusal(argv)
    if refused is not None:
        return ErrorReply(refused[1])
    run = list(argv)
    for j, option in node_checks.sort_options(argv):
        if option == b"by":  # a '*' after a NUL byte: not a pattern for sort.c, one for fakeredis
            run[j + 1] = argv[j + 1].split(b"\0", 1)[0]
    return _from_fake(c.fake(run))


@_handles("touch")
def _touch(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return sum(1 for k in argv[1:] if c.node.key_exists(k))


@_handles("copy")
def _copy(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    j = 3
    db = 0
    while j < len(argv):
        opt = argv[j].lower()
        if opt == b"replace":
            pass
        elif opt == b"db" and j + 1 < len(argv):
            value = _ll(argv[j + 1])
            if value is None or not -(2**31) <= value < 2**31:
                return ErrorReply(errors.NOT_INTEGER)
            if not 0 <= value < 16:
                return ErrorReply(errors.DB_RANGE)
            db = value
            j += 1
        else:
            return ErrorReply(errors.SYNTAX)
        j += 1
    if db != 0:
        return ErrorReply(errors.COPY_IN_CLUSTER)
    return _from_fake(c.fake(argv))


@_handles("sintercard")
def _sintercard(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    numkeys = _ll(argv[1])
    if numkeys is None or numkeys < 1:
        return ErrorReply(errors.NUMKEYS_ZERO)
    return _from_fake(c.fake(argv))


@_handles("bitfield_ro")
def _bitfield_ro(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    j = 2
    while j < len(argv):
        if argv[j].lower() != b"get" or len(argv) - 1 - j < 2:
            return ErrorReply(errors.BITFIELD_RO)
        j += 3
    return _from_fake(c.fake([b"BITFIELD", *argv[1:]]))




@_handles("migrate")
def _migrate(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    """MIGRATE between this lab's nodes: DUMP here, RESTORE-ASKING there, DEL here."""
    copy = replace = False
    auth: tuple[bytes, bytes] | None = None  # AUTH <password> / AUTH2 <user> <password>
    first, num = 3, 1
    j = 6
    while j < len(argv):
        opt = argv[j].lower()
        more = len(argv) - 1 - j
        if opt == b"copy":
            copy = True
        elif opt == b"replace":
            replace = True
        elif opt == b"auth" and more >= 1:
            auth = (b"default", argv[j + 1])
            j += 1
        elif opt == b"auth2" and more >= 2:
            auth = (argv[j + 1], argv[j + 2])
            j += 2
        elif opt == b"keys":
            if argv[3]:
                return ErrorReply(errors.MIGRATE_KEYS_EMPTY_KEY)
            first, num = j + 1, len(argv) - j - 1
            break
        else:
            return ErrorReply(errors.SYNTAX)
        j += 1
    port, db, timeout = _ll(argv[2]), _ll(argv[4]), _ll(argv[5])
    if port is None or db is None or timeout is None:
        return ErrorReply(errors.NOT_INTEGER)
    keys = [k for k in argv[first : first + num] if c.node.key_exists(k)]
    if not keys:
        return SimpleString("NOKEY")
    host = argv[1].lower()
    target = next(
        (n for n in c.node.cluster.nodes
         if n.port == port and host in (b"127.0.0.1", b"localhost")),
        None,
    )  # fmt: skip
    if target is None:
        return ErrorReply(errors.MIGRATE_IOERR)
    # The target sees AUTH first, then SELECT, then RESTORE-ASKING (migrateCommand).
    password = c.backend.password
    if auth is not None and not commands.credentials_ok(*auth, password):
        return ErrorReply(errors.MIGRATE_TARGET_ERROR.format(error=errors.WRONGPASS))
    if db != 0:
        return ErrorReply(errors.MIGRATE_TARGET_ERROR.format(error=errors.SELECT_IN_CLUSTER))
    if auth is None and not commands.authenticated_after_reset(password):
        return ErrorReply(errors.MIGRATE_TARGET_ERROR.format(error=errors.NOAUTH))
    dumps = []
    for key in keys:
        dumped = c.fake([b"DUMP", key])
        ttl = c.fake([b"PTTL", key])
        dumps.append((key, dumped, max(int(ttl), 0)))
    peer = c.backend.internal(target)
    restore = commands.lookup([b"restore-asking"])
    assert restore is not None
    for key, dumped, ttl in dumps:
        cmd = [b"RESTORE-ASKING", key, str(ttl).encode(), dumped]
        cmd += [b"REPLACE"] if replace else []
        peer.asking = True
        node, slot, error = peer.node_by_query(restore, cmd)
        if error is None and node is not target:
            moved = errors.MOVED.format(slot=slot, addr=node.address) if node is not None else ""
            error = moved or "CLUSTERDOWN"
        if error is not None:
            return ErrorReply(errors.MIGRATE_TARGET_ERROR.format(error=error))
        result = peer.fake([b"RESTORE", *cmd[1:]])
        if isinstance(result, _FakeError):
            return ErrorReply(errors.MIGRATE_TARGET_ERROR.format(error=result.value))
    peer.asking = False
    if not copy:
        c.fake([b"DEL", *keys])
    return OK
