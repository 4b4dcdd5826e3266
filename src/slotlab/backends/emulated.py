"""The emulated backend: a Redis Cluster made of fakeredis stores, for machines with no server.

fakeredis stores data faithfully but knows nothing of slots. Each node here is a fakeredis store
(one ``FakeServer``) behind its own loopback TCP listener that speaks RESP2 and RESP3, and a
layer in front of it does what a Redis 7.0 cluster node does before it runs a command, in the
server's order (``processCommand`` in server.c, ``getNodeByQuery`` in cluster.c):

1. look the command up in the server's own command table (``slotlab.commands``), check arity;
2. find its keys; keys in different slots -> ``CROSSSLOT``, on one node too;
3. a slot served elsewhere -> ``MOVED``; a slot being migrated -> ``ASK`` or ``TRYAGAIN``;
4. queue it (MULTI), run it on fakeredis, or run it here (CLUSTER, COMMAND, HELLO, INFO,
   ASKING, READONLY, EVAL and scripts, MIGRATE, ...).

Scripts run in fakeredis's Lua, with ``redis.call`` routed through the same checks a real node
applies to a script's commands (``scriptCall`` in script.c), so an undeclared key on another node
or in another slot fails with the server's words. Every node has its own script cache.

All nodes are served by one asyncio loop in one background thread; blocking commands (BLPOP and
friends) wait in worker threads so that they never stall the others. See ``docs/emulated.md``
for what differs from a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import fakeredis
import numpy as np
import redis
from fakeredis._helpers import NoResponse as _FakeNoResponse
from fakeredis._helpers import SimpleError as _FakeError
from fakeredis._helpers import SimpleString as _FakeStatus
from fakeredis._socket._fakesocket import FakeSocket
from fakeredis._socket._resp import extract_command
from redis.crc import key_slot as _crc_key_slot

from slotlab import commands
from slotlab.backends.base import Backend, NodeAddress, split_slots
from slotlab.commands import CommandSpec
from slotlab.resp import (
    OK,
    ErrorReply,
    NullArray,
    ProtocolError,
    RequestReader,
    RespSet,
    SimpleString,
    Verbatim,
    encode,
)

__all__ = ["EmulatedBackend", "EmulatorStartError"]

LOG = logging.getLogger("slotlab.emulated")

SLOTS = 16384
HOST = "127.0.0.1"
REDIS_VERSION = commands.redis_version()
_VERSION_TUPLE = tuple(int(x) for x in REDIS_VERSION.split("."))
#: A script running longer than this is stopped (a real server would start answering BUSY).
SCRIPT_TIME_LIMIT = 5.0

_QUEUED = SimpleString("QUEUED")
#: Commands refused unless enable-debug-command / enable-module-command allow them (7.0: "no").
_PROTECTED = frozenset({"debug", "module|load", "module|loadex", "module|unload"})
_CROSSSLOT = "CROSSSLOT Keys in request don't hash to the same slot"
_TRYAGAIN = "TRYAGAIN Multiple keys request during rehashing of slot"
_NOSCRIPT = "NOSCRIPT No matching script. Please use EVAL."
_ROSLAVE = "READONLY You can't write against a read only replica."
_NOT_INT = "ERR value is not an integer or out of range"
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


def key_slot(key: bytes) -> int:
    """The hash slot of a key given as bytes (CRC16 of the hash tag or the key, mod 16384)."""
    return int(_crc_key_slot(key))


def _err(text: str) -> ErrorReply:
    """An error reply from a server-style message: ``-CODE msg`` keeps its code, else ``ERR``."""
    if text.startswith("-"):
        return ErrorReply(text[1:])
    return ErrorReply("ERR " + text)


def _text(data: bytes) -> str:
    """Bytes from the client as text for an error message (C-string semantics: stop at NUL)."""
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


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


_ARITY7 = "ERR Wrong number of args calling Redis command from script"
_FAKE_TEXTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^ERR at least 1 input key is needed for (\w+)$"),
     "ERR at least 1 input key is needed for '\\1' command"),
    (re.compile(r"^ERR invalid expire time in (\w+)$"),
     "ERR invalid expire time in '\\1' command"),
]  # fmt: skip


def _translate(error: _FakeError, argv: Sequence[bytes]) -> _FakeError:
    """fakeredis's error texts where they differ from Redis 7.0's."""
    text = error.value
    if text == _ARITY7:
        spec = commands.lookup(argv)
        name = spec.name if spec is not None else _text(argv[0]).lower()
        return _FakeError(f"ERR wrong number of arguments for '{name}' command")
    for pattern, replacement in _FAKE_TEXTS:
        new = pattern.sub(replacement, text)
        if new != text:
            return _FakeError(new)
    return error


def _ld_text(value: Any) -> bytes:
    """A long double as ``ld2string(..., LD_STR_HUMAN)`` prints it: ``%.17Lf``, zeros trimmed."""
    text = np.format_float_positional(value, precision=17, unique=False, fractional=True, trim="k")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text == "-0":
        text = "0"
    return text.encode()


def _ld(data: bytes) -> Any:
    """``string2ld``: a long double, or None (spaces, NaN and trailing garbage are refused)."""
    if not data or data[:1].isspace() or data[-1:].isspace() or len(data) > 5 * 1024:
        return None
    try:
        value = np.longdouble(data.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    return None if np.isnan(value) else value


def _incr_float(current: bytes, increment: bytes) -> bytes:
    """INCRBYFLOAT's arithmetic in long double, the server's precision on this platform."""
    a, b = _ld(current), _ld(increment)
    if a is None or b is None:
        raise _FakeError("ERR value is not a valid float")
    total = a + b
    if np.isnan(total) or np.isinf(total):
        raise _FakeError("ERR increment would produce NaN or Infinity")
    return _ld_text(total)


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


# ---- scripts ----------------------------------------------------------------------------------

_SCRIPT_FLAGS = ("no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys")


class _ScriptError(Exception):
    """An error raised inside a script; ``str()`` is the full text with its code."""

    def __init__(self, text: str, line: int | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.line = line  # where in the user's script, when the error is raised for it

    def __str__(self) -> str:
        return self.text


@dataclass
class _Script:
    """A script in one node's cache: its source, its shebang flags, its compiled chunk."""

    sha: bytes
    body: bytes
    flags: frozenset[str]
    compat: bool  # no shebang: the pre-7.0 ("eval compatibility") behaviour
    function: Any = None


def parse_shebang(body: bytes) -> tuple[frozenset[str], bool, int]:
    """Read a script's ``#!lua flags=...`` line as ``evalExtractShebangFlags`` does.

    Returns (flags, compat, shebang length). Raises ErrorReply with the server's text.
    """
    if not body.startswith(b"#!"):
        return frozenset(), True, 0
    end = body.find(b"\n")
    if end == -1:
        raise _err("Invalid script shebang")
    from slotlab.resp import split_args

    parts = split_args(body[:end])
    if not parts:
        raise _err("Invalid engine in script shebang")
    if parts[0] != b"#!lua":
        raise _err(f"Unexpected engine in script shebang: {_text(parts[0])}")
    flags: set[str] = set()
    for part in parts[1:]:
        if not part.startswith(b"flags="):
            raise _err(f"Unknown lua shebang option: {_text(part)}")
        for flag in part[6:].split(b","):
            name = _text(flag)
            if name not in _SCRIPT_FLAGS:
                raise _err(f"Unexpected flag in script shebang: {name}")
            flags.add(name)
    return frozenset(flags), False, end


@dataclass
class _RunCtx:
    """What a running script may do (``scriptRunCtx``)."""

    sha: str
    read_only: bool
    allow_cross_slot: bool
    write_dirty: bool = False


_LUA_SETUP = """
local py = ...
local dbg = debug
redis.sha1hex = py.sha1hex
redis.error_reply = function(msg)
  if type(msg) ~= 'string' then return {err='ERR wrong number or type of arguments'} end
  if string.sub(msg, 1, 1) == '-' then msg = string.sub(msg, 2) end
  if not string.find(msg, ' ', 1, true) then msg = 'ERR ' .. msg end
  return {err=msg}
end
redis.status_reply = function(msg) return {ok=msg} end
redis.set_repl = function(flags) end
redis.replicate_commands = function() return true end
redis.REPL_NONE = 0
redis.REPL_AOF = 1
redis.REPL_SLAVE = 2
redis.REPL_REPLICA = 2
redis.REPL_ALL = 3
redis.REDIS_VERSION = py.version
redis.REDIS_VERSION_NUM = py.version_num
local function handler(err)
  local i = dbg.getinfo(2, 'nSl')
  if i and i.what == 'C' then i = dbg.getinfo(3, 'nSl') end
  if type(err) == 'userdata' then
    local text, line = py.error_info(err)
    err = {err=text}
    if line then i = {source='@user_script', currentline=line} end
  elseif type(err) ~= 'table' then
    err = {err='ERR ' .. tostring(err)}
  end
  if i then
    err['source'] = i.source
    err['line'] = i.currentline
  end
  return err
end
local function load(code)
  return loadstring(code, '@user_script')
end
local function watchdog()
  local i = dbg.getinfo(2, 'l')
  py.check_time(i and i.currentline or 0)
end
local function run(fn, keys, argv)
  rawset(_G, 'KEYS', keys)
  rawset(_G, 'ARGV', argv)
  dbg.sethook(watchdog, '', 100000)
  local ok, result = xpcall(fn, handler)
  dbg.sethook()
  return ok, result
end
local function caller_line()
  local i = dbg.getinfo(3, 'l')
  return i and i.currentline or 0
end
setmetatable(_G, {
  __index = function(t, name) return py.missing_global(name, caller_line()) end,
  __newindex = function(t, name, value) return py.set_global(caller_line()) end,
})
return load, run
"""


class _LuaBridge:
    """Per-node additions to fakeredis's Lua runtime: the loader, the runner, global guards."""

    def __init__(self, sock: FakeSocket) -> None:
        runtime = sock._get_server_runtime(sock._server)
        self.runtime = runtime
        major, minor, patch = _VERSION_TUPLE
        py = runtime.table_from(
            {
                b"sha1hex": lambda s: hashlib.sha1(s).hexdigest().encode(),
                b"version": REDIS_VERSION.encode(),
                b"version_num": (major << 16) | (minor << 8) | patch,
                b"missing_global": self._missing_global,
                b"set_global": self._set_global,
                b"error_info": self._error_info,
                b"check_time": self._check_time,
            }
        )
        self.deadline = 0.0
        self.load, self.run = runtime.execute(_LUA_SETUP, py)

    def _check_time(self, line: Any) -> None:
        """Called every 100000 Lua instructions: stop a script that runs too long."""
        if time.monotonic() > self.deadline:
            raise _ScriptError(
                f"ERR slotlab's emulated cluster stopped a script that ran longer than "
                f"{SCRIPT_TIME_LIMIT:g} s (a real server would answer BUSY to other clients "
                "until SCRIPT KILL)",
                int(line),
            )

    @staticmethod
    def _error_info(err: Any) -> tuple[bytes, int | None]:
        """A Python exception raised inside the script: its text and, if known, its line."""
        return str(err).encode(), getattr(err, "line", None)

    @staticmethod
    def _missing_global(name: Any, line: Any) -> Any:
        text = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        raise _ScriptError(
            f"ERR user_script:{int(line)}: Script attempted to access nonexistent global "
            f"variable '{text}'",
            int(line),
        )

    @staticmethod
    def _set_global(line: Any) -> Any:
        raise _ScriptError(
            f"ERR user_script:{int(line)}: Attempt to modify a readonly table", int(line)
        )


# ---- the cluster ------------------------------------------------------------------------------


class _Node:
    """One cluster node: a fakeredis store, its slot states, its script cache, its listener."""

    def __init__(self, cluster: _Cluster, index: int, master: _Node | None = None) -> None:
        self.cluster = cluster
        self.index = index
        self.node_id = secrets.token_hex(20)
        self.port = 0
        self.master = master
        self.replicas: list[_Node] = []
        self.config_epoch = 0
        self.server: Any = cast(
            Any, fakeredis.FakeServer(version=_VERSION_TUPLE, server_type="redis")
        )
        # An RLock lets a transaction hold the store while each queued command takes it again;
        # the databases' condition variables (blocking commands) are built on this lock.
        self.server.lock = threading.RLock()
        if master is not None:
            # A replica is always in sync: it reads its master's data (and shares its lock).
            self.server.dbs = master.server.dbs
            self.server.lock = master.server.lock
            master.replicas.append(self)
        self.migrating: dict[int, _Node] = {}
        self.importing: dict[int, _Node] = {}
        self.scripts: dict[bytes, _Script] = {}
        self.lua: _LuaBridge | None = None
        self.listener: asyncio.AbstractServer | None = None
        self.clients: set[_Client] = set()
        self.started = time.time()
        self.stat_commands = 0

    @property
    def is_replica(self) -> bool:
        """True for a replica node (it redirects keyed commands to its master)."""
        return self.master is not None

    @property
    def address(self) -> str:
        """``host:port`` as MOVED replies write it."""
        return f"{HOST}:{self.port}"

    @property
    def cport(self) -> int:
        """The cluster bus port shown in CLUSTER NODES (the emulator has no bus; port+10000)."""
        return self.port + 10000 if self.port + 10000 <= 65535 else self.port - 10000

    def owned_slots(self) -> list[tuple[int, int]]:
        """The slot ranges this node serves, merged."""
        ranges: list[tuple[int, int]] = []
        start = -1
        owners = self.cluster.slots
        for slot in range(SLOTS + 1):
            mine = slot < SLOTS and owners[slot] is self
            if mine and start == -1:
                start = slot
            elif not mine and start != -1:
                ranges.append((start, slot - 1))
                start = -1
        return ranges

    def db0(self) -> Any:
        return self.server.dbs[0]

    def key_exists(self, key: bytes) -> bool:
        """True when db 0 holds a live key, without touching it (``LOOKUP_NOTOUCH``)."""
        item = self.db0()._dict.get(key)
        return item is not None and not (item.expireat is not None and item.expireat < time.time())

    def keys_in_slot(self, slot: int) -> list[bytes]:
        """The live keys of db 0 in ``slot``, newest first as the server lists them."""
        now = time.time()
        found = [
            k
            for k, item in self.db0()._dict.items()
            if key_slot(k) == slot and not (item.expireat is not None and item.expireat < now)
        ]
        found.reverse()
        return found

    def repl_offset(self) -> int:
        """A replication offset that grows with writes (0 for a master without replicas)."""
        shard = self.master or self
        return 14 + shard.stat_commands if shard.replicas else 0


class _Cluster:
    """What every node agrees on: the nodes, who owns each slot, the epoch."""

    def __init__(self) -> None:
        self.nodes: list[_Node] = []
        self.slots: list[_Node | None] = [None] * SLOTS
        self.assigned = 0
        self.current_epoch = 0

    def assign(self, slot: int, node: _Node | None) -> None:
        """Give ``slot`` to ``node`` (None: unassign it), as every node will see it."""
        self.assigned += (node is not None) - (self.slots[slot] is not None)
        self.slots[slot] = node

    @property
    def ok(self) -> bool:
        """``cluster_state:ok``: every slot is served (cluster-require-full-coverage yes)."""
        return self.assigned == SLOTS

    def lookup(self, node_id: bytes) -> _Node | None:
        """``clusterLookupNode``: an exact 40-character node ID, else None."""
        if len(node_id) != 40:
            return None
        text = node_id.decode("ascii", "replace")
        return next((n for n in self.nodes if n.node_id == text), None)

    def masters(self) -> list[_Node]:
        return [n for n in self.nodes if not n.is_replica]


# ---- fakeredis connection -------------------------------------------------------------------


class _NodeSocket(FakeSocket):
    """fakeredis's per-connection state, with replies and ``redis.call`` routed to the client."""

    def __init__(self, client: _Client) -> None:
        super().__init__(
            client.node.server,
            0,
            client_class=redis.Redis,
            client_info={"addr": client.peer, "laddr": client.local, "fd": client.fd},
        )
        self._slotlab = client

    def put_response(self, msg: Any) -> None:
        self._slotlab.on_push(msg)

    # Redis computes these in long double; fakeredis in double.
    def incrbyfloat(self, key: Any, amount: float) -> bytes:
        encoded = _incr_float(key.get(b"0"), repr(amount).encode())
        key.update(encoded)
        return encoded

    def hincrbyfloat(self, key: Any, field: bytes, amount: bytes) -> bytes:
        encoded = _incr_float(key.value.get(field, b"0"), amount)
        key.value.update({field: encoded}, clear_expiration=False)
        key.updated()
        self.add_subkey_event(b"hincrbyfloat", key.key, (field,))
        return encoded

    def _lua_redis_call(self, lua_runtime: Any, expected_globals: Any, op: Any, *args: Any) -> Any:
        return self._slotlab.script_call(lua_runtime, (op, *args))

    def _function_redis_call(self, lua_runtime: Any, read_only: bool, *args: Any) -> Any:
        """``redis.call`` inside a FUNCTION (FCALL): the same checks as in an EVAL script."""
        if self._slotlab.run is None:
            return super()._function_redis_call(lua_runtime, read_only, *args)
        try:
            return self._slotlab.script_call(lua_runtime, args)
        except _ScriptError as exc:
            raise _FakeError(exc.text) from None

    def _lua_redis_pcall(self, lua_runtime: Any, expected_globals: Any, op: Any, *args: Any) -> Any:
        try:
            return self._slotlab.script_call(lua_runtime, (op, *args))
        except Exception as exc:  # noqa: BLE001 - pcall turns any error into an error table
            return lua_runtime.table_from({b"err": str(exc).encode()})


# ---- one client connection ------------------------------------------------------------------

_Queued = tuple[CommandSpec, list[bytes], frozenset[str]]


class _Deferred:
    """A blocking command handed to a worker thread; its reply is written when it finishes."""


_DEFERRED = _Deferred()
_NO_REPLY = object()


class _Client(asyncio.Protocol):
    """One client connection to one node, processing commands the way ``processCommand`` does."""

    def __init__(self, backend: EmulatedBackend, node: _Node) -> None:
        self.backend = backend
        self.node = node
        self.transport: asyncio.Transport | None = None
        self.reader = RequestReader()
        self.resp = 2
        self.asking = False
        self.readonly = False
        self.multi: list[_Queued] | None = None
        self.dirty = False  # a command failed to queue (CLIENT_DIRTY_EXEC)
        self.slot = -1  # c->slot: the slot the current command is bound to (scripts use it)
        self.run: _RunCtx | None = None
        self.busy = False
        self.closing = False
        self.close_after_reply = False
        self.pushes: list[Any] | None = None
        self.peer = "?"
        self.local = "?"
        self.fd = -1
        self.sock: _NodeSocket | None = None

    # ---- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.fd = sock.fileno()
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
        if local:
            self.local = f"{local[0]}:{local[1]}"
        self.sock = _NodeSocket(self)
        self.node.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.node.clients.discard(self)
        if self.busy:
            # A worker thread is blocked for this client: time it out; it closes the socket.
            self.unblock()
        else:
            self._close_sock()

    def unblock(self) -> None:
        """Make a blocking command waiting in a worker thread return at once (as on timeout)."""
        sock = self.sock
        if sock is None:
            return
        with self.node.server.lock:
            if sock._blocked:
                sock._unblock_reason = b"timeout"
            for db in self.node.server.dbs.values():
                db.condition.notify_all()

    def _close_sock(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            with self.node.server.lock:
                try:
                    sock.close()
                    server = self.node.server
                    while server.closed_sockets:
                        ref = server.closed_sockets.pop()
                        s = ref()
                        if s is not None:
                            s._cleanup(server)
                except Exception:  # noqa: BLE001 - cleanup must not break the loop
                    LOG.debug("socket cleanup failed", exc_info=True)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.reader.feed(data)
        if not self.busy:
            self._drain()

    def _drain(self) -> None:
        """Run every complete command received so far and write the replies in one go."""
        out: list[bytes] = []
        transport = self.transport
        while not self.closing and not self.busy:
            try:
                argv = self.reader.get_command()
            except ProtocolError as exc:
                out.append(encode(ErrorReply(f"ERR {exc}")))
                self.close_after_reply = True
                break
            if argv is None:
                break
            if not argv:
                continue
            try:
                reply = self.process(argv)
            except Exception as exc:  # noqa: BLE001 - one bad command must not kill the node
                LOG.exception("emulator failed on %r", argv[:1])
                reply = ErrorReply(f"ERR slotlab emulator internal error: {exc!r}")
            if reply is _DEFERRED:
                break
            self._emit(reply, out)
            if self.close_after_reply:
                break
        if out and transport is not None and not transport.is_closing():
            transport.write(b"".join(out))
        if self.close_after_reply and transport is not None:
            self.closing = True
            transport.close()

    def _emit(self, reply: Any, out: list[bytes]) -> None:
        if self.pushes:
            for msg in self.pushes:
                out.append(_encode_reply(msg, self.resp))
            self.pushes = None
        sock = self.sock
        if sock is None:
            return
        # CLIENT REPLY OFF|SKIP; SKIP takes effect on the command after it (resetClient()).
        suppressed = sock._reply_off or sock._reply_skip
        sock._reply_skip, sock._reply_skip_next = sock._reply_skip_next, False
        if reply is _NO_REPLY or suppressed:
            return
        out.append(_encode_reply(reply, self.resp))

    def on_push(self, msg: Any) -> None:
        """fakeredis queued a reply outside a command's return value (pub/sub, CLIENT REPLY)."""
        value = _from_fake(msg)
        if isinstance(value, list) and value and value[0] in _PUSH_KINDS:
            value = _PushList(value)
        if self.pushes is not None:
            self.pushes.append(value)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(_encode_reply(value, self.resp))

    # ---- processCommand ---------------------------------------------------------------------

    def process(self, argv: list[bytes]) -> Any:
        """Check and run one command; the reply value, or ``_DEFERRED`` for a blocking one."""
        self.slot = -1
        self.pushes = []
        try:
            reply = self._process(argv)
            name = argv[0].lower()
            if (
                len(argv) == 1
                and name in _UNSUBSCRIBE_ALL
                and self.multi is None
                and not self.pushes
                and self.sock is not None
            ):
                # pubsubUnsubscribeAll*(): "We were subscribed to nothing? Still reply to the
                # client." fakeredis sends nothing then.
                count = int(getattr(self.sock, "_pubsub", 0))
                self.pushes = [_PushList([name, None, count])]
            return reply
        finally:
            # resetClient(): ASKING lasts for one command, or until the transaction ends.
            if self.multi is None and argv[0].lower() != b"asking":
                self.asking = False

    def _process(self, argv: list[bytes]) -> Any:
        name = argv[0].lower()
        if name in (b"host:", b"post"):
            self.close_after_reply = True  # securityWarningCommand: drop the connection
            return _NO_REPLY
        spec = commands.lookup(argv)
        if spec is None:
            return self._reject(None, self._existence_error(argv))
        if not spec.check_arity(len(argv)):
            return self._reject(spec, f"wrong number of arguments for '{spec.name}' command")
        if spec.name in _PROTECTED:  # CMD_PROTECTED: COMMAND does not show this flag
            which = "DEBUG" if spec.name.startswith("debug") else "MODULE"
            option = "enable-debug-command" if which == "DEBUG" else "enable-module-command"
            return self._reject(
                spec,
                f"{which} command not allowed. If the {option} option is set to \"local\", you "
                "can run it from a local connection, otherwise you need to set this option in "
                "the configuration file, and then restart the server.",
            )
        flags = self.command_flags(spec, argv)
        is_exec = spec.name == "exec"
        if self.multi is not None and "no_multi" in spec.flags:
            return self._reject(spec, "Command not allowed inside a transaction")
        if ("movablekeys" in spec.flags or spec.key_specs) or is_exec:
            target, slot, error = self.node_by_query(spec, argv)
            if error is not None or target is not self.node:
                if is_exec:
                    self._discard()
                else:
                    self._flag()
                return ErrorReply(error) if error is not None else self._moved(slot, target)
            self.slot = slot
        is_write = "write" in flags or (
            is_exec and self.multi is not None and any("write" in q[2] for q in self.multi)
        )
        if self.node.is_replica and is_write:
            return self._reject(spec, "-" + _ROSLAVE)
        sock = self.sock
        assert sock is not None
        if sock._pubsub and self.resp == 2 and spec.name not in (
            "ping", "subscribe", "ssubscribe", "unsubscribe", "sunsubscribe", "psubscribe",
            "punsubscribe", "quit", "reset",
        ):  # fmt: skip
            return self._reject(
                spec,
                f"Can't execute '{spec.name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / "
                "QUIT / RESET are allowed in this context",
            )
        if self.multi is not None and spec.name not in (
            "exec", "discard", "multi", "watch", "quit", "reset",
        ):  # fmt: skip
            if not self.dirty:
                self.multi.append((spec, argv, flags))
            return _QUEUED
        self.node.stat_commands += 1
        if "blocking" in spec.flags and self._really_blocks(spec, argv):
            return self._call_blocking(spec, argv)
        return self.call(spec, argv)

    @staticmethod
    def _existence_error(argv: list[bytes]) -> str:
        if commands.is_container(argv[0]) and len(argv) > 1:
            return (
                f"unknown subcommand '{_text(argv[1][:128])}'. "
                f"Try {_text(argv[0]).upper()} HELP."
            )
        args = b""
        for a in argv[1:]:
            if len(args) >= 128:
                break
            args += b"'" + a.split(b"\0", 1)[0][: 128 - len(args)] + b"' "
        text = args.decode("utf-8", "replace")
        return f"unknown command '{_text(argv[0][:128])}', with args beginning with: {text}"

    def _flag(self) -> None:
        """``flagTransaction``: a command failed to queue, so EXEC will abort."""
        if self.multi is not None:
            self.dirty = True

    def _discard(self) -> None:
        """``discardTransaction``: leave MULTI and forget the watched keys."""
        self.multi = None
        self.dirty = False
        if self.sock is not None:
            with self.node.server.lock:
                self.sock._clear_watches()

    def _reject(self, spec: CommandSpec | None, message: str) -> ErrorReply:
        """``rejectCommand``: flag the transaction; an EXEC aborts it with EXECABORT."""
        self._flag()
        if spec is not None and spec.name == "exec":
            self._discard()
            text = message[1:] if message.startswith("-") else message
            return ErrorReply(f"EXECABORT Transaction discarded because of: {text}")
        return _err(message)

    def _moved(self, slot: int, target: _Node | None) -> ErrorReply:
        assert target is not None
        return ErrorReply(f"MOVED {slot} {target.address}")

    def command_flags(self, spec: CommandSpec, argv: Sequence[bytes]) -> frozenset[str]:
        """``getCommandFlags``: a script's shebang flags replace EVAL's write/denyoom/stale."""
        if not spec.name.startswith("eval"):
            return spec.flags
        evalsha = spec.name.startswith("evalsha")
        if evalsha and len(argv[1]) != 40:
            return spec.flags
        sha = argv[1].lower() if evalsha else hashlib.sha1(argv[1]).hexdigest().encode()
        script = self.node.scripts.get(sha)
        if script is None:
            if evalsha:
                return spec.flags
            try:
                sflags, compat, _ = parse_shebang(argv[1])
            except ErrorReply:
                return spec.flags
        else:
            sflags, compat = script.flags, script.compat
        if compat:
            return spec.flags
        out = set(spec.flags) - {"stale", "denyoom", "write", "may_replicate"}
        if not sflags & {"allow-oom", "no-writes"}:
            out.add("denyoom")
        if "no-writes" not in sflags:
            out.add("write")
        if "allow-stale" in sflags:
            out.add("stale")
        return frozenset(out)

    # ---- getNodeByQuery ---------------------------------------------------------------------

    def node_by_query(
        self, spec: CommandSpec, argv: Sequence[bytes]
    ) -> tuple[_Node | None, int, str | None]:
        """Which node serves this command, as ``getNodeByQuery`` decides (cluster.c).

        Returns (node, slot, error text). No keys: (this node, -1, None).
        """
        node = self.node
        cluster = node.cluster
        if spec.name == "exec":
            if self.multi is None:
                return node, -1, None
            batch: list[tuple[CommandSpec, Sequence[bytes]]] = [(q[0], q[1]) for q in self.multi]
        else:
            batch = [(spec, argv)]
        pubsubshard = spec.name in ("ssubscribe", "sunsubscribe", "spublish")
        first: bytes | None = None
        slot = 0
        owner: _Node | None = None
        migrating = importing = multiple = False
        missing = existing = 0
        for mspec, margv in batch:
            for pos in commands.cluster_keys(mspec, margv):
                key = margv[pos]
                this_slot = key_slot(key)
                if first is None:
                    first, slot = key, this_slot
                    owner = cluster.slots[slot]
                    if owner is None:
                        return None, slot, "CLUSTERDOWN Hash slot not served"
                    if owner is node and slot in node.migrating:
                        migrating = True
                    elif slot in node.importing:
                        importing = True
                elif key != first:
                    if slot != this_slot:
                        return None, slot, _CROSSSLOT
                    multiple = True
                if (migrating or importing) and not pubsubshard:
                    if node.key_exists(key):
                        existing += 1
                    else:
                        missing += 1
        if owner is None:
            return node, -1, None
        flags = self.command_flags(spec, argv)
        if not cluster.ok:
            return None, slot, "CLUSTERDOWN The cluster is down"
        if (migrating or importing) and spec.name == "migrate":
            return node, slot, None
        if migrating and missing:
            if existing:
                return None, slot, _TRYAGAIN
            target = node.migrating[slot]
            return None, slot, f"ASK {slot} {target.address}"
        if importing and (self.asking or "asking" in flags):
            if multiple and missing:
                return None, slot, _TRYAGAIN
            return node, slot, None
        is_write = "write" in flags or (
            spec.name == "exec"
            and self.multi is not None
            and any("write" in q[2] for q in self.multi)
        )
        if (
            (self.readonly or pubsubshard)
            and not is_write
            and node.is_replica
            and node.master is owner
        ):
            return node, slot, None
        return owner, slot, None

    # ---- running commands -------------------------------------------------------------------

    def _really_blocks(self, spec: CommandSpec, argv: Sequence[bytes]) -> bool:
        if self.run is not None:
            return False
        if spec.name in ("xread", "xreadgroup"):
            return _has_block_option(argv)
        return spec.name != "wait"

    def _call_blocking(self, spec: CommandSpec, argv: list[bytes]) -> Any:
        """Run a blocking command in a worker thread; the loop keeps serving everyone else."""
        self.busy = True
        loop = self.backend.loop
        assert loop is not None
        fut: asyncio.Future[Any] = loop.create_future()
        self.backend.pending.add(fut)

        def settle(ok: bool, value: Any) -> None:
            if not fut.done():
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

        def work() -> None:
            try:
                outcome: tuple[bool, Any] = (True, self.fake(argv))
            except Exception as exc:  # noqa: BLE001 - handed to the loop
                outcome = (False, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed: the lab stopped
                loop.call_soon_threadsafe(settle, *outcome)

        # A daemon thread per blocked client: it never holds up the interpreter's exit.
        threading.Thread(target=work, name="slotlab-emulated-blocking", daemon=True).start()

        def done(f: asyncio.Future[Any]) -> None:
            self.backend.pending.discard(f)
            self.busy = False
            if self.closing:
                self._close_sock()
                return
            try:
                reply = _from_fake(f.result())
            except Exception as exc:  # noqa: BLE001
                reply = ErrorReply(f"ERR {exc}")
            if reply is None and spec.name in _NULL_ARRAY:
                reply = NullArray
            out: list[bytes] = []
            self._emit(reply, out)
            if out and self.transport is not None and not self.transport.is_closing():
                self.transport.write(b"".join(out))
            self._drain()

        fut.add_done_callback(done)
        return _DEFERRED

    def fake(self, argv: Sequence[bytes]) -> Any:
        """Run one command on this node's fakeredis store; fakeredis's raw reply value."""
        sock = self.sock
        assert sock is not None
        cmd, args = extract_command(list(argv))
        try:
            func, sig = sock._name_to_func(cmd)
        except _FakeError:
            func = sig = None
        if func is None or sig is None:
            return _FakeError(
                f"ERR the emulated cluster (fakeredis {fakeredis.__version__}) does not "
                f"implement '{cmd.upper()}'; use the real backend for it"
            )
        server = self.node.server
        with server.lock:
            now = time.time()
            for db in server.dbs.values():
                db.time = now
            try:
                sig.check_arity(args, sock.version)
            except _FakeError as exc:
                return _translate(exc, argv)
            result = sock._run_command(func, sig, args, False)
        if isinstance(result, _FakeError):
            return _translate(result, argv)
        return result

    def call(self, spec: CommandSpec, argv: list[bytes]) -> Any:
        """Run a command that passed every check (``call()``): here, or on fakeredis."""
        handler = _HANDLERS.get(spec.name)
        if handler is not None:
            return handler(self, spec, argv)
        result = self.fake(argv)
        if isinstance(result, _FakeNoResponse):
            return _NO_REPLY
        value = _from_fake(result)
        name = spec.name
        if name in _NULL_ARRAY and (value is None or (name.startswith("xread") and not value)):
            return NullArray  # fakeredis answers XREAD with no data as an empty array
        if name == "geodist" and isinstance(value, (bytes, float)):
            return b"%.4f" % float(value)  # addReplyDoubleDistance
        if self.resp == 3 and name in _RESP3_SETS and isinstance(value, list):
            return RespSet(value)
        if self.resp == 3 and spec.name == "spop" and len(argv) == 3 and isinstance(value, list):
            return RespSet(value)
        return value

    # ---- scripts: redis.call ----------------------------------------------------------------

    def script_call(self, lua_runtime: Any, raw: Sequence[Any]) -> Any:
        """``redis.call`` in a script: ``scriptCall``'s checks (script.c), then the command."""
        if not raw:
            raise _ScriptError("ERR Please specify at least one argument for this redis lib call")
        argv: list[bytes] = []
        for a in raw:
            if type(a) is bytes:
                argv.append(a)
            elif type(a) is int:
                argv.append(b"%d" % a)
            elif type(a) is float:
                argv.append(b"%.17g" % a)  # as luaArgsToRedisArgv prints a Lua number
            else:
                raise _ScriptError(
                    "ERR Lua redis lib command arguments must be strings or integers"
                )
        run = self.run
        assert run is not None
        spec = commands.lookup(argv)
        if spec is None:
            raise _ScriptError("ERR Unknown Redis command called from script")
        if not spec.check_arity(len(argv)):
            raise _ScriptError("ERR Wrong number of args calling Redis command from script")
        if "noscript" in spec.flags:
            raise _ScriptError("ERR This Redis command is not allowed from script")
        if run.read_only and spec.flags & {"write", "may_replicate"}:
            raise _ScriptError("ERR Write commands are not allowed from read-only scripts.")
        if "write" in spec.flags and not run.write_dirty and self.node.is_replica:
            raise _ScriptError(_ROSLAVE)
        if "write" in spec.flags:
            run.write_dirty = True
        target, slot, error = self.node_by_query(spec, argv)
        if error is not None or target is not self.node:
            raise _ScriptError("ERR Script attempted to access a non local key in a cluster node")
        if slot != -1 and not run.allow_cross_slot:
            if self.slot == -1:
                self.slot = slot
            elif self.slot != slot:
                raise _ScriptError(
                    "ERR Script attempted to access keys that do not hash to the same slot"
                )
        if spec.name in ("xread", "xreadgroup") and _has_block_option(argv):
            raise _ScriptError(
                f"ERR {spec.name} command is not allowed with BLOCK option from scripts"
            )
        handler = _HANDLERS.get(spec.name)
        result = handler(self, spec, argv) if handler is not None else self.fake(argv)
        if handler is not None:
            result = _to_fake(result)
        elif spec.name.startswith("xread") and isinstance(result, (list, dict)) and not result:
            result = None  # a null array, which a script sees as false
        sock = self.sock
        assert sock is not None
        return sock._convert_redis_result(lua_runtime, result)


def _has_block_option(argv: Sequence[bytes]) -> bool:
    """True when XREAD/XREADGROUP asks to BLOCK (an option before STREAMS)."""
    for arg in argv[1:]:
        low = arg.lower()
        if low == b"streams":
            return False
        if low == b"block":
            return True
    return False


# ---- commands run here rather than on fakeredis -----------------------------------------------

_Handler = Callable[[_Client, CommandSpec, list[bytes]], Any]
_HANDLERS: dict[str, _Handler] = {}


def _handles(*names: str) -> Callable[[_Handler], _Handler]:
    def register(fn: _Handler) -> _Handler:
        for name in names:
            _HANDLERS[name] = fn
        return fn

    return register


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


@_handles("swapdb")
def _swapdb(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return _err("SWAPDB is not allowed in cluster mode")


@_handles("move")
def _move(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return _err("MOVE is not allowed in cluster mode")


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
                return ErrorReply(_NOT_INT)
            if not 0 <= value < 16:
                return _err("DB index is out of range")
            db = value
            j += 1
        else:
            return _err("syntax error")
        j += 1
    if db != 0:
        return _err("Copying to another database is not allowed in cluster mode")
    return _from_fake(c.fake(argv))


@_handles("sintercard")
def _sintercard(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    numkeys = _ll(argv[1])
    if numkeys is None or numkeys < 1:
        return _err("numkeys should be greater than 0")
    return _from_fake(c.fake(argv))


@_handles("publish")
def _publish(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    """PUBLISH reaches subscribers on every node (the cluster bus carries it); the reply counts
    this node's receivers only."""
    local = _from_fake(c.fake(argv))
    for node in c.node.cluster.nodes:
        if node is not c.node:
            c.backend.internal(node).fake(argv)
    return local


@_handles("spublish")
def _spublish(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    """SPUBLISH reaches the shard's nodes: the master that serves the slot and its replicas."""
    local = _from_fake(c.fake(argv))
    master = c.node.master or c.node
    for node in [master, *master.replicas]:
        if node is not c.node:
            c.backend.internal(node).fake(argv)
    return local


@_handles("bitfield_ro")
def _bitfield_ro(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    j = 2
    while j < len(argv):
        if argv[j].lower() != b"get" or len(argv) - 1 - j < 2:
            return _err("BITFIELD_RO only supports the GET subcommand")
        j += 3
    return _from_fake(c.fake([b"BITFIELD", *argv[1:]]))


@_handles("wait")
def _wait(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if _ll(argv[1]) is None or _ll(argv[2]) is None:
        return ErrorReply(_NOT_INT)
    if c.node.is_replica:
        return _err("WAIT cannot be used with replica instances. Please also note that since "
                    "Redis 4.0 if a replica is configured to be writable (which is not the "
                    "default) writes to replicas are just local and are not propagated.")
    return len(c.node.replicas)


@_handles("role")
def _role(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    node = c.node
    if node.master is not None:
        return [b"slave", HOST.encode(), node.master.port, b"connected", node.repl_offset()]
    return [
        b"master",
        node.repl_offset(),
        [[HOST.encode(), str(r.port).encode(), str(r.repl_offset()).encode()]
         for r in node.replicas],
    ]  # fmt: skip


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
    sock._client_info["resp"] = 2
    sock._client_info.pop("name", None)
    sock._reply_off = sock._reply_skip = sock._reply_skip_next = False
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
        sock._client_info["name"] = name.decode("utf-8", "replace")
    if version:
        c.resp = version
        sock._client_info["resp"] = version
    return {
        b"server": b"redis",
        b"version": REDIS_VERSION.encode(),
        b"proto": c.resp,
        b"id": sock._client_info.get("id", 1),
        b"mode": b"cluster",
        b"role": b"replica" if c.node.is_replica else b"master",
        b"modules": [],
    }


# ---- transactions ---------------------------------------------------------------------------


@_handles("multi")
def _multi(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if c.multi is not None:
        return _err("MULTI calls can not be nested")
    c.multi = []
    c.dirty = False
    return OK


@_handles("discard")
def _discard_cmd(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if c.multi is None:
        return _err("DISCARD without MULTI")
    c._discard()
    return OK


@_handles("watch")
def _watch(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if c.multi is not None:
        return _err("WATCH inside MULTI is not allowed")
    return _from_fake(c.fake(argv))


@_handles("exec")
def _exec(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if c.multi is None:
        return _err("EXEC without MULTI")
    sock = c.sock
    assert sock is not None
    if c.dirty:
        c._discard()
        return ErrorReply("EXECABORT Transaction discarded because of previous errors.")
    queued = c.multi
    with c.node.server.lock:
        if sock._watch_notified:
            c._discard()
            return NullArray
        c.multi = None
        c.dirty = False
        sock._clear_watches()
        replies = []
        sock._in_transaction = True  # blocking commands do not block inside EXEC
        try:
            for qspec, qargv, _ in queued:
                try:
                    reply = c.call(qspec, qargv)
                except Exception as exc:  # noqa: BLE001
                    reply = ErrorReply(f"ERR slotlab emulator internal error: {exc!r}")
                replies.append(None if reply is _NO_REPLY else reply)
        finally:
            sock._in_transaction = False
    return replies


# ---- scripting --------------------------------------------------------------------------------


def _load_script(c: _Client, body: bytes) -> _Script | ErrorReply:
    """``luaCreateFunction``: parse the shebang, compile, keep it in this node's cache."""
    node = c.node
    sha = hashlib.sha1(body).hexdigest().encode()
    script = node.scripts.get(sha)
    if script is not None:
        return script
    try:
        flags, compat, shebang_len = parse_shebang(body)
    except ErrorReply as exc:
        return exc
    bridge = _bridge(c)
    # Like the server, skip the shebang but keep its newline so line numbers stay right.
    fn = bridge.load(body[shebang_len:])
    if isinstance(fn, tuple):
        fn, message = fn[0], fn[1] if len(fn) > 1 else b""
    else:
        message = b""
    if fn is None:
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
        return _err(f"Error compiling script (new function): {text}")
    script = _Script(sha, body, flags, compat, fn)
    node.scripts[sha] = script
    return script


def _bridge(c: _Client) -> _LuaBridge:
    node = c.node
    if node.lua is None:
        assert c.sock is not None
        with node.server.lock:
            node.lua = _LuaBridge(c.sock)
    return node.lua


@_handles("eval", "evalsha", "eval_ro", "evalsha_ro")
def _eval(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    evalsha = spec.name.startswith("evalsha")
    ro = spec.name.endswith("_ro")
    if evalsha and len(argv[1]) != 40:
        return ErrorReply(_NOSCRIPT)
    numkeys = _ll(argv[2])
    if numkeys is None:
        return ErrorReply(_NOT_INT)
    if numkeys > len(argv) - 3:
        return _err("Number of keys can't be greater than number of args")
    if numkeys < 0:
        return _err("Number of keys can't be negative")
    node = c.node
    if evalsha:
        found = node.scripts.get(argv[1].lower())
        if found is None:
            return ErrorReply(_NOSCRIPT)
        script: _Script | ErrorReply = found
    else:
        script = _load_script(c, argv[1])
        if isinstance(script, ErrorReply):
            return script
    assert isinstance(script, _Script)
    if not script.compat:
        if "no-cluster" in script.flags:
            return _err("Can not run script on cluster, 'no-cluster' flag is set.")
        if "no-writes" not in script.flags:
            if node.is_replica:
                return _err("-READONLY Can not run script with write flag on readonly replica")
            if ro:
                return _err("Can not execute a script with write flag using *_ro command.")
    run = _RunCtx(
        sha=script.sha.decode(),
        read_only=ro or (not script.compat and "no-writes" in script.flags),
        allow_cross_slot=script.compat or "allow-cross-slot-keys" in script.flags,
    )
    keys = argv[3 : 3 + numkeys]
    args = argv[3 + numkeys :]
    return _run_script(c, script, run, keys, args)


def _run_script(
    c: _Client, script: _Script, run: _RunCtx, keys: list[bytes], args: list[bytes]
) -> Any:
    bridge = _bridge(c)
    sock = c.sock
    assert sock is not None
    server: Any = c.node.server
    runtime = bridge.runtime
    with server.lock:
        now = time.time()
        for db in server.dbs.values():
            db.time = now
        server._lua_current_socket[0] = sock
        outer_run, c.run = c.run, run
        in_tx = sock._in_transaction
        sock._in_transaction = True  # blocking commands never block inside a script
        sock._script_resp = 2
        bridge.deadline = time.monotonic() + SCRIPT_TIME_LIMIT
        try:
            ok, result = bridge.run(
                script.function, runtime.table_from(keys), runtime.table_from(args)
            )
        finally:
            sock._script_resp = None
            sock._in_transaction = in_tx
            c.run = outer_run
        if not ok:
            return _script_error(result, run.sha)
        try:
            return _from_fake(sock._convert_lua_result(result, nested=False))
        except _FakeError as exc:
            return ErrorReply(exc.value)
        except Exception as exc:  # noqa: BLE001
            return ErrorReply(str(exc))


def _script_error(err: Any, sha: str) -> ErrorReply:
    """The reply for a script that raised: ``<msg> script: <sha>, on @user_script:<line>.``"""

    def field_text(name: bytes) -> str | None:
        try:
            value = err[name]
        except Exception:  # noqa: BLE001
            return None
        if value is None:
            return None
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    msg = field_text(b"err") or "ERR execution failure"
    source, line = field_text(b"source"), field_text(b"line")
    if source and line:
        msg += f" script: {sha}, on {source}:{line}."
    return ErrorReply(msg)


@_handles("fcall", "fcall_ro")
def _fcall(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    """FCALL: fakeredis runs the function; its ``redis.call`` comes back through script_call."""
    sock = c.sock
    assert sock is not None
    with c.node.server.lock:
        function = sock._functions().find(argv[1])
    flags = set(function.flags) if function is not None else set()
    if b"no-cluster" in flags:
        return _err("Can not run script on cluster, 'no-cluster' flag is set.")
    run = _RunCtx(
        sha=_text(argv[1]),
        read_only=spec.name == "fcall_ro" or b"no-writes" in flags,
        allow_cross_slot=b"allow-cross-slot-keys" in flags,
    )
    outer, c.run = c.run, run
    in_tx = sock._in_transaction
    sock._in_transaction = True  # blocking commands never block inside a function
    try:
        return _from_fake(c.fake(argv))
    finally:
        c.run = outer
        sock._in_transaction = in_tx


@_handles("script|load")
def _script_load(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    script = _load_script(c, argv[2])
    return script if isinstance(script, ErrorReply) else script.sha


@_handles("script|exists")
def _script_exists(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return [1 if a.lower() in c.node.scripts else 0 for a in argv[2:]]


@_handles("script|flush")
def _script_flush(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if len(argv) == 3 and argv[2].lower() in (b"sync", b"async") or len(argv) == 2:
        c.node.scripts.clear()
        return OK
    return _err("SCRIPT FLUSH only support SYNC|ASYNC option")


@_handles("script|kill")
def _script_kill(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return ErrorReply("NOTBUSY No scripts in execution right now.")


# ---- CLUSTER ---------------------------------------------------------------------------------

_CLUSTER_HELP = [
    "ADDSLOTS <slot> [<slot> ...]",
    "    Assign slots to current node.",
    "ADDSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
    "    Assign slots which are between <start-slot> and <end-slot> to current node.",
    "BUMPEPOCH",
    "    Advance the cluster config epoch.",
    "COUNT-FAILURE-REPORTS <node-id>",
    "    Return number of failure reports for <node-id>.",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "DELSLOTS <slot> [<slot> ...]",
    "    Delete slots information from current node.",
    "DELSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
    "    Delete slots information which are between <start-slot> and <end-slot> from current node.",
    "FAILOVER [FORCE|TAKEOVER]",
    "    Promote current replica node to being a master.",
    "FORGET <node-id>",
    "    Remove a node from the cluster.",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "FLUSHSLOTS",
    "    Delete current node own slots information.",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MEET <ip> <port> [<bus-port>]",
    "    Connect nodes into a working cluster.",
    "MYID",
    "    Return the node id.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "REPLICATE <node-id>",
    "    Configure current node as replica to <node-id>.",
    "RESET [HARD|SOFT]",
    "    Reset current node (default: soft).",
    "SET-CONFIG-EPOCH <epoch>",
    "    Set config epoch of current node.",
    "SETSLOT <slot> (IMPORTING <node-id>|MIGRATING <node-id>|STABLE|NODE <node-id>)",
    "    Set slot state.",
    "REPLICAS <node-id>",
    "    Return <node-id> replicas.",
    "SAVECONFIG",
    "    Force saving cluster configuration on disk.",
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "LINKS",
    "    Return information about all network links between this node and its peers.",
    "    Output format is an array where each array element is a map containing attributes of "
    "a link",
]


def _help(argv: list[bytes], lines: list[str]) -> list[SimpleString]:
    head = f"{_text(argv[0]).upper()} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    return [SimpleString(x) for x in (head, *lines, "HELP", "    Prints this help.")]


@_handles("cluster|help")
def _cluster_help(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return _help(argv, _CLUSTER_HELP)


@_handles("cluster|myid")
def _cluster_myid(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return c.node.node_id.encode()


@_handles("cluster|keyslot")
def _cluster_keyslot(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return key_slot(argv[2])


@_handles("cluster|countkeysinslot")
def _cluster_countkeysinslot(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    slot = _ll(argv[2])
    if slot is None:
        return ErrorReply(_NOT_INT)
    if slot < 0 or slot >= SLOTS:
        return _err("Invalid slot")
    with c.node.server.lock:
        return len(c.node.keys_in_slot(slot))


@_handles("cluster|getkeysinslot")
def _cluster_getkeysinslot(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    slot, count = _ll(argv[2]), None
    if slot is None:
        return ErrorReply(_NOT_INT)
    count = _ll(argv[3])
    if count is None:
        return ErrorReply(_NOT_INT)
    if slot < 0 or slot >= SLOTS or count < 0:
        return _err("Invalid slot or number of keys")
    with c.node.server.lock:
        return c.node.keys_in_slot(slot)[:count]


def _node_line(node: _Node, myself: _Node) -> str:
    """One line of CLUSTER NODES (``clusterGenNodeDescription``)."""
    flags = ("myself," if node is myself else "") + ("slave" if node.is_replica else "master")
    master = node.master.node_id if node.master is not None else "-"
    epoch = node.master.config_epoch if node.master is not None else node.config_epoch
    pong = int(time.time()) * 1000 if node is myself else int(time.time() * 1000)
    line = f"{node.node_id} {node.address}@{node.cport} {flags} {master} 0 {pong} {epoch} connected"
    for lo, hi in node.owned_slots():
        line += f" {lo}" if lo == hi else f" {lo}-{hi}"
    if node is myself:
        for slot in range(SLOTS):
            if slot in node.migrating:
                line += f" [{slot}->-{node.migrating[slot].node_id}]"
            elif slot in node.importing:
                line += f" [{slot}-<-{node.importing[slot].node_id}]"
    return line


@_handles("cluster|nodes")
def _cluster_nodes(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    text = "".join(_node_line(n, c.node) + "\n" for n in c.node.cluster.nodes)
    return Verbatim(text)


def _slot_ranges(cluster: _Cluster) -> list[tuple[int, int, _Node]]:
    ranges: list[tuple[int, int, _Node]] = []
    start = 0
    owner = cluster.slots[0]
    for slot in range(1, SLOTS + 1):
        here = cluster.slots[slot] if slot < SLOTS else None
        if slot == SLOTS or here is not owner:
            if owner is not None:
                ranges.append((start, slot - 1, owner))
            start, owner = slot, here
    return ranges


def _node_entry(node: _Node) -> list[Any]:
    return [HOST.encode(), node.port, node.node_id.encode(), {}]


@_handles("cluster|slots")
def _cluster_slots(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    out = []
    for lo, hi, owner in _slot_ranges(c.node.cluster):
        entry: list[Any] = [lo, hi, _node_entry(owner)]
        entry += [_node_entry(r) for r in owner.replicas if r.repl_offset() != 0]
        out.append(entry)
    return out


def _shard_node(node: _Node) -> dict[bytes, Any]:
    offset = node.repl_offset()
    return {
        b"id": node.node_id.encode(),
        b"port": node.port,
        b"ip": HOST.encode(),
        b"endpoint": HOST.encode(),
        b"role": b"replica" if node.is_replica else b"master",
        b"replication-offset": offset,
        b"health": b"loading" if node.is_replica and offset == 0 else b"online",
    }


@_handles("cluster|shards")
def _cluster_shards(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    out = []
    for master in c.node.cluster.masters():
        slots: list[int] = []
        for lo, hi in master.owned_slots():
            slots += [lo, hi]
        out.append(
            {
                b"slots": slots,
                b"nodes": [_shard_node(master)] + [_shard_node(r) for r in master.replicas],
            }
        )
    return out


@_handles("cluster|info")
def _cluster_info(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    cluster = c.node.cluster
    assigned = cluster.assigned
    node = c.node
    my_epoch = node.master.config_epoch if node.master is not None else node.config_epoch
    size = sum(1 for m in cluster.masters() if m.owned_slots())
    known = len(cluster.nodes)
    pings = max(1, int(time.time() - node.started)) * (known - 1)
    lines = [
        f"cluster_state:{'ok' if assigned == SLOTS else 'fail'}",
        f"cluster_slots_assigned:{assigned}",
        f"cluster_slots_ok:{assigned}",
        "cluster_slots_pfail:0",
        "cluster_slots_fail:0",
        f"cluster_known_nodes:{known}",
        f"cluster_size:{size}",
        f"cluster_current_epoch:{cluster.current_epoch}",
        f"cluster_my_epoch:{my_epoch}",
    ]
    if known > 1:
        lines += [
            f"cluster_stats_messages_ping_sent:{pings}",
            f"cluster_stats_messages_pong_sent:{pings}",
            f"cluster_stats_messages_sent:{2 * pings}",
            f"cluster_stats_messages_ping_received:{pings}",
            f"cluster_stats_messages_pong_received:{pings}",
            f"cluster_stats_messages_received:{2 * pings}",
        ]
    else:
        lines += ["cluster_stats_messages_sent:0", "cluster_stats_messages_received:0"]
    lines.append("total_cluster_links_buffer_limit_exceeded:0")
    return Verbatim("".join(line + "\r\n" for line in lines))


def _lookup_node(c: _Client, node_id: bytes, unknown: str) -> _Node | ErrorReply:
    node = c.node.cluster.lookup(node_id)
    return node if node is not None else _err(unknown.format(_text(node_id)))


@_handles("cluster|replicas", "cluster|slaves")
def _cluster_replicas(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    node = _lookup_node(c, argv[2], "Unknown node {}")
    if isinstance(node, ErrorReply):
        return node
    if node.is_replica:
        return _err("The specified node is not a master")
    return [_node_line(r, c.node) for r in node.replicas]


@_handles("cluster|count-failure-reports")
def _cluster_cfr(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    node = _lookup_node(c, argv[2], "Unknown node {}")
    return node if isinstance(node, ErrorReply) else 0


@_handles("cluster|saveconfig")
def _cluster_saveconfig(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return OK


@_handles("cluster|links")
def _cluster_links(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    links = []
    for other in c.node.cluster.nodes:
        if other is c.node:
            continue
        for direction in (b"to", b"from"):
            links.append(
                {
                    b"direction": direction,
                    b"node": other.node_id.encode(),
                    b"create-time": int(c.node.started * 1000),
                    b"events": b"r",
                    b"send-buffer-allocated": 0,
                    b"send-buffer-used": 0,
                }
            )
    return links


def _bump_epoch(node: _Node) -> bool:
    """``clusterBumpConfigEpochWithoutConsensus``."""
    cluster = node.cluster
    max_epoch = max([cluster.current_epoch] + [n.config_epoch for n in cluster.nodes])
    if node.config_epoch == 0 or node.config_epoch != max_epoch:
        cluster.current_epoch += 1
        node.config_epoch = cluster.current_epoch
        return True
    return False


@_handles("cluster|bumpepoch")
def _cluster_bumpepoch(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    bumped = _bump_epoch(c.node)
    return SimpleString(f"{'BUMPED' if bumped else 'STILL'} {c.node.config_epoch}")


def _slot_arg(data: bytes) -> int | None:
    slot = _ll(data)
    return slot if slot is not None and 0 <= slot < SLOTS else None


@_handles("cluster|setslot")
def _cluster_setslot(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    node = c.node
    cluster = node.cluster
    if node.is_replica:
        return _err("Please use SETSLOT only with masters.")
    slot = _slot_arg(argv[2])
    if slot is None:
        return _err("Invalid or out of range slot")
    action = argv[3].lower()
    if action == b"migrating" and len(argv) == 5:
        if cluster.slots[slot] is not node:
            return _err(f"I'm not the owner of hash slot {slot}")
        target = _lookup_node(c, argv[4], "I don't know about node {}")
        if isinstance(target, ErrorReply):
            return target
        if target.is_replica:
            return _err("Target node is not a master")
        node.migrating[slot] = target
    elif action == b"importing" and len(argv) == 5:
        if cluster.slots[slot] is node:
            return _err(f"I'm already the owner of hash slot {slot}")
        source = _lookup_node(c, argv[4], "I don't know about node {}")
        if isinstance(source, ErrorReply):
            return source
        if source.is_replica:
            return _err("Target node is not a master")
        node.importing[slot] = source
    elif action == b"stable" and len(argv) == 4:
        node.importing.pop(slot, None)
        node.migrating.pop(slot, None)
    elif action == b"node" and len(argv) == 5:
        target = _lookup_node(c, argv[4], "Unknown node {}")
        if isinstance(target, ErrorReply):
            return target
        if target.is_replica:
            return _err("Target node is not a master")
        with node.server.lock:
            keys_here = len(node.keys_in_slot(slot))
        if cluster.slots[slot] is node and target is not node and keys_here:
            return _err(
                f"Can't assign hashslot {slot} to a different node while I still hold keys "
                "for this hash slot."
            )
        if keys_here == 0 and slot in node.migrating:
            del node.migrating[slot]
        # Every emulated node sees the new owner at once: there is no gossip to wait for.
        cluster.assign(slot, target)
        if target is node and slot in node.importing:
            _bump_epoch(node)
            del node.importing[slot]
    else:
        return _err("Invalid CLUSTER SETSLOT action or number of arguments. Try CLUSTER HELP")
    return OK


def _parse_slots(argv: list[bytes], ranges: bool) -> list[int] | ErrorReply:
    slots: list[int] = []
    if ranges:
        for j in range(2, len(argv), 2):
            lo, hi = _slot_arg(argv[j]), _slot_arg(argv[j + 1])
            if lo is None or hi is None:
                return _err("Invalid or out of range slot")
            if lo > hi:
                return _err(f"start slot number {lo} is greater than end slot number {hi}")
            slots += range(lo, hi + 1)
    else:
        for a in argv[2:]:
            s = _slot_arg(a)
            if s is None:
                return _err("Invalid or out of range slot")
            slots.append(s)
    return slots


@_handles("cluster|addslots", "cluster|addslotsrange", "cluster|delslots", "cluster|delslotsrange")
def _cluster_addslots(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    ranges = spec.name.endswith("range")
    delete = "|del" in spec.name
    if ranges and len(argv) % 2 == 1:
        return _err(f"wrong number of arguments for '{spec.name}' command")
    slots = _parse_slots(argv, ranges)
    if isinstance(slots, ErrorReply):
        return slots
    cluster = c.node.cluster
    seen: set[int] = set()
    for s in slots:
        if delete and cluster.slots[s] is None:
            return _err(f"Slot {s} is already unassigned")
        if not delete and cluster.slots[s] is not None:
            return _err(f"Slot {s} is already busy")
        if s in seen:
            return _err(f"Slot {s} specified multiple times")
        seen.add(s)
    for s in slots:
        cluster.assign(s, None if delete else c.node)
        if not delete:
            c.node.importing.pop(s, None)
    return OK


@_handles("cluster|flushslots")
def _cluster_flushslots(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if len(c.node.db0()._dict):
        return _err("DB must be empty to perform CLUSTER FLUSHSLOTS.")
    cluster = c.node.cluster
    for s in range(SLOTS):
        if cluster.slots[s] is c.node:
            cluster.assign(s, None)
    return OK


@_handles(
    "cluster|meet", "cluster|forget", "cluster|replicate", "cluster|failover",
    "cluster|set-config-epoch", "cluster|reset",
)  # fmt: skip
def _cluster_unsupported(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return _err(
        f"the emulated cluster does not support CLUSTER {_text(argv[1]).upper()}: its nodes "
        "and roles are fixed when the lab starts (use the real backend for this)"
    )


# ---- COMMAND ----------------------------------------------------------------------------------


def _spec_by_name(name: bytes) -> CommandSpec | None:
    """``lookupCommandBySds``: ``get`` or ``config|get``."""
    parts = name.lower().split(b"|")
    if len(parts) > 2:
        return None
    base = commands.command_table().get(parts[0].decode("utf-8", "replace"))
    if base is None or len(parts) == 1:
        return base
    return base.subcommands.get(parts[1].decode("utf-8", "replace"))


@_handles("command")
def _command(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return [s.reply() for s in commands.command_table().values()]


@_handles("command|count")
def _command_count(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return len(commands.command_table())


@_handles("command|info")
def _command_info(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if len(argv) == 2:
        return _command(c, spec, argv)
    out = []
    for name in argv[2:]:
        found = _spec_by_name(name)
        out.append(found.reply() if found is not None else None)
    return out


@_handles("command|docs")
def _command_docs(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return {}  # the emulator carries no documentation (see docs/emulated.md)


@_handles("command|list")
def _command_list(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    import fnmatch

    every: list[CommandSpec] = []
    for top in commands.command_table().values():
        every.append(top)
        every.extend(top.subcommands.values())
    if len(argv) == 2:
        return [s.name.encode() for s in every]
    if len(argv) != 5 or argv[2].lower() != b"filterby":
        return _err("syntax error")
    kind, value = argv[3].lower(), argv[4]
    if kind == b"module":
        return []
    if kind == b"aclcat":
        cat = "@" + _text(value).lower()
        return [s.name.encode() for s in every if cat in s.acl_categories]
    if kind == b"pattern":
        pattern = _text(value)
        return [s.name.encode() for s in every if fnmatch.fnmatchcase(s.name, pattern)]
    return _err("syntax error")


@_handles("command|getkeys", "command|getkeysandflags")
def _command_getkeys(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    inner = argv[2:]
    cmd = commands.lookup(inner)
    if cmd is None:
        return _err("Invalid command specified")
    if not commands.has_keys(cmd):
        return _err("The command has no key arguments")
    if not cmd.check_arity(len(inner)):
        return _err("Invalid number of arguments specified for command")
    positions = commands.spec_keys(cmd, inner)
    if not positions:
        if "no_mandatory_keys" in cmd.flags:
            return []
        return _err("Invalid arguments specified for command")
    if spec.name == "command|getkeys":
        return [inner[p] for p in positions]
    out = []
    for p in positions:
        flags = _key_flags(cmd, inner, p)
        out.append([inner[p], RespSet(SimpleString(f) for f in flags)])
    return out


_FLAG_ORDER = ("RO", "RW", "OW", "RM", "access", "update", "insert", "delete", "not_key",
               "incomplete", "variable_flags")  # fmt: skip


def _key_flags(cmd: CommandSpec, argv: Sequence[bytes], pos: int) -> list[str]:
    """The access flags COMMAND GETKEYSANDFLAGS reports for the key at ``pos``."""
    name = cmd.name
    if name == "set":
        get = any(a.lower() == b"get" for a in argv[3:])
        wanted = {"RW", "access", "update"} if get else {"OW", "update"}
    elif name == "bitfield":
        wanted = {"RO", "access"} if all(
            a.lower() in (b"get", b"overflow") or not a.isalpha() for a in argv[2:]
        ) else {"RW", "access", "update"}
    elif name in ("sort", "sort_ro"):
        wanted = {"RO", "access"} if pos == 1 else {"OW", "update"}
    elif name == "migrate":
        wanted = {"RW", "access", "delete"}
    else:
        for ks in cmd.key_specs:
            if ks.begin == "index" and ks.index == pos and ks.find == "range":
                wanted = set(ks.flags)
                break
        else:
            wanted = set(cmd.key_specs[-1].flags) if cmd.key_specs else set()
        wanted.discard("variable_flags")
        wanted.discard("incomplete")
    return [f for f in _FLAG_ORDER if f in wanted]


# ---- INFO -------------------------------------------------------------------------------------


def _info_sections(c: _Client) -> dict[str, list[str]]:
    node = c.node
    uptime = int(time.time() - node.started)
    with node.server.lock:
        keys = len(node.db0())
        expires = sum(1 for item in node.db0()._dict.values() if item.expireat is not None)
    role = "slave" if node.is_replica else "master"
    replication = [f"role:{role}"]
    if node.master is not None:
        replication += [
            f"master_host:{HOST}",
            f"master_port:{node.master.port}",
            "master_link_status:up",
            "master_last_io_seconds_ago:0",
            "master_sync_in_progress:0",
            f"slave_read_repl_offset:{node.repl_offset()}",
            f"slave_repl_offset:{node.repl_offset()}",
            "slave_priority:100",
            "slave_read_only:1",
            "replica_announced:1",
            "connected_slaves:0",
        ]
    else:
        replication.append(f"connected_slaves:{len(node.replicas)}")
        for i, r in enumerate(node.replicas):
            replication.append(
                f"slave{i}:ip={HOST},port={r.port},state=online,offset={r.repl_offset()},lag=0"
            )
    replication += [
        "master_failover_state:no-failover",
        f"master_repl_offset:{node.repl_offset()}",
    ]
    return {
        "server": [
            f"redis_version:{REDIS_VERSION}",
            "redis_git_sha1:00000000",
            "redis_git_dirty:0",
            "redis_mode:cluster",
            f"os:slotlab emulated cluster (fakeredis {fakeredis.__version__})",
            f"process_id:{os.getpid()}",
            f"run_id:{hashlib.sha1(node.node_id.encode()).hexdigest()}",
            f"tcp_port:{node.port}",
            f"uptime_in_seconds:{uptime}",
            f"uptime_in_days:{uptime // 86400}",
            "executable:slotlab-emulated",
            "config_file:",
        ],
        "clients": [f"connected_clients:{len(node.clients)}", "blocked_clients:0"],
        "memory": ["used_memory:0", "used_memory_human:0B", "maxmemory:0",
                   "maxmemory_policy:noeviction"],  # fmt: skip
        "persistence": ["loading:0", "rdb_changes_since_last_save:0", "aof_enabled:0"],
        "stats": [f"total_commands_processed:{node.stat_commands}"],
        "replication": replication,
        "cpu": [],
        "modules": [],
        "errorstats": [],
        "cluster": ["cluster_enabled:1"],
        "keyspace": [f"db0:keys={keys},expires={expires},avg_ttl=0"] if keys else [],
    }


_INFO_DEFAULT = ("server", "clients", "memory", "persistence", "stats", "replication", "cpu",
                 "modules", "errorstats", "cluster", "keyspace")  # fmt: skip


@_handles("info")
def _info(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    sections = _info_sections(c)
    wanted: list[str] = []
    for a in argv[1:] or [b"default"]:
        name = _text(a).lower()
        if name in ("default", "all", "everything"):
            wanted += [s for s in _INFO_DEFAULT if s not in wanted]
        elif name in sections and name not in wanted:
            wanted.append(name)
    parts = []
    for name in wanted:
        title = name.capitalize() if name != "cpu" else "CPU"
        if name == "errorstats":
            title = "Errorstats"
        parts.append("# " + title + "\r\n" + "".join(line + "\r\n" for line in sections[name]))
    return Verbatim("\r\n".join(parts))


# ---- MIGRATE ----------------------------------------------------------------------------------


@_handles("migrate")
def _migrate(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    """MIGRATE between this lab's nodes: DUMP here, RESTORE-ASKING there, DEL here."""
    copy = replace = False
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
            j += 1
        elif opt == b"auth2" and more >= 2:
            j += 2
        elif opt == b"keys":
            if argv[3]:
                return _err(
                    "When using MIGRATE KEYS option, the key argument must be set to the empty "
                    "string"
                )
            first, num = j + 1, len(argv) - j - 1
            break
        else:
            return _err("syntax error")
        j += 1
    port, db, timeout = _ll(argv[2]), _ll(argv[4]), _ll(argv[5])
    if port is None or db is None or timeout is None:
        return ErrorReply(_NOT_INT)
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
        return ErrorReply("IOERR error or timeout connecting to the client")
    if db != 0:
        return _err("Target instance replied with error: ERR SELECT is not allowed in cluster mode")
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
            error = f"MOVED {slot} {node.address}" if node is not None else "CLUSTERDOWN"
        if error is not None:
            return _err(f"Target instance replied with error: {error}")
        result = peer.fake([b"RESTORE", *cmd[1:]])
        if isinstance(result, _FakeError):
            return _err(f"Target instance replied with error: {result.value}")
    peer.asking = False
    if not copy:
        c.fake([b"DEL", *keys])
    return OK


class _InternalClient(_Client):
    """A connection-less client, for one node talking to another (MIGRATE's RESTORE)."""

    def __init__(self, backend: EmulatedBackend, node: _Node) -> None:
        super().__init__(backend, node)
        self.sock = _NodeSocket(self)

    def close(self) -> None:
        self.connection_lost(None)


# ---- the backend ------------------------------------------------------------------------------


class EmulatedBackend(Backend):
    """A Redis Cluster emulated in this process: fakeredis stores behind loopback listeners.

    ``masters`` nodes share the 16384 slots the way ``redis-cli --cluster create`` splits them;
    each has ``replicas`` replicas that always hold the same data. One background thread serves
    every node; ``stop()`` closes the listeners and ends the thread.
    """

    name = "emulated"

    def __init__(self, masters: int = 3, replicas: int = 0) -> None:
        if masters < 1:
            raise ValueError(f"masters must be at least 1, not {masters}")
        if replicas < 0:
            raise ValueError(f"replicas (per master) must be 0 or more, not {replicas}")
        self.masters = masters
        self.replicas = replicas
        self.cluster = _Cluster()
        self._ids = itertools.count(1)
        self._stopped = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.pending: set[asyncio.Future[Any]] = set()
        self._internal: dict[str, _InternalClient] = {}
        self._standalone: list[fakeredis.TcpFakeServer] = []
        self._build()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def internal(self, node: _Node) -> _InternalClient:
        """A connection-less client on ``node``, for one node acting on another."""
        client = self._internal.get(node.node_id)
        if client is None:
            client = self._internal[node.node_id] = _InternalClient(self, node)
        return client

    def _build(self) -> None:
        cluster = self.cluster
        masters = [_Node(cluster, i) for i in range(self.masters)]
        for i, (lo, hi) in enumerate(split_slots(self.masters)):
            node = masters[i]
            node.config_epoch = i + 1
            for s in range(lo, hi + 1):
                cluster.assign(s, node)
        cluster.current_epoch = self.masters
        cluster.nodes = list(masters)
        index = self.masters
        for k in range(self.masters * self.replicas):
            cluster.nodes.append(_Node(cluster, index, master=masters[k % self.masters]))
            index += 1

    def _start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._close_all())
                loop.close()

        self._thread = threading.Thread(target=serve, name="slotlab-emulated-cluster", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise EmulatorStartError("the emulated cluster did not start within 30 s")
        if failure:
            raise EmulatorStartError(f"the emulated cluster could not start: {failure[0]}")

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        for node in self.cluster.nodes:
            server = await loop.create_server(
                lambda node=node: _Client(self, node),  # type: ignore[misc]
                host=HOST,
                port=0,
            )
            node.listener = server
            node.port = int(server.sockets[0].getsockname()[1])

    async def _close_all(self) -> None:
        for node in self.cluster.nodes:
            if node.listener is not None:
                node.listener.close()
        for node in self.cluster.nodes:
            self._wake_blocked(node)
            for client in list(node.clients):
                if client.transport is not None:
                    client.transport.abort()
        if self.pending:
            await asyncio.wait(list(self.pending), timeout=10)
        for node in self.cluster.nodes:
            if node.listener is not None:
                await node.listener.wait_closed()
        await asyncio.sleep(0)

    @staticmethod
    def _wake_blocked(node: _Node) -> None:
        """Time out every client blocked in a worker thread on this node (at stop)."""
        for client in list(node.clients):
            client.unblock()

    # ---- the Backend interface ------------------------------------------------------------

    @property
    def nodes(self) -> list[NodeAddress]:
        return [NodeAddress(HOST, n.port, n.node_id, None) for n in self.cluster.nodes]

    def alive(self) -> bool:
        return not self._stopped and self._thread is not None and self._thread.is_alive()

    def describe(self) -> str:
        return (
            f"emulated: fakeredis {fakeredis.__version__} as Redis {REDIS_VERSION} cluster, "
            f"{self.masters} masters, {self.replicas} replica(s) per master, on loopback"
        )

    def add_node(self) -> NodeAddress:
        """A new empty master on its own listener. Every emulated node shares one view of the
        cluster, so it is known to all at once: no CLUSTER MEET, no gossip to wait for."""
        loop = self.loop
        if self._stopped or loop is None:
            raise RuntimeError("this backend was stopped")
        node = _Node(self.cluster, len(self.cluster.nodes))

        async def listen() -> None:
            server = await asyncio.get_running_loop().create_server(
                lambda: _Client(self, node), host=HOST, port=0
            )
            node.listener = server
            node.port = int(server.sockets[0].getsockname()[1])
            self.cluster.nodes.append(node)  # on the loop's thread, between two commands

        asyncio.run_coroutine_threadsafe(listen(), loop).result(timeout=10)
        self.masters += 1
        return NodeAddress(HOST, node.port, node.node_id, None)

    def start_standalone(self) -> tuple[str, int]:
        """A plain fakeredis server (no cluster) on a loopback port; it stops with the lab."""
        if self._stopped:
            raise RuntimeError("this backend was stopped")
        server = fakeredis.TcpFakeServer(("127.0.0.1", 0), server_version=(7, 0))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._standalone.append(server)
        return "127.0.0.1", int(server.server_address[1])

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for server in self._standalone:
            server.shutdown()
            server.server_close()
        loop, thread = self.loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
