"""Scripts: EVAL, EVALSHA, FCALL and SCRIPT on fakeredis's Lua, with the server's checks.

Each node keeps its own script cache; a script's shebang flags are read as
``evalExtractShebangFlags`` does, and ``redis.call`` comes back through the client's
``script_call`` (``scriptCall`` in script.c).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slotlab import errors
from slotlab.backends.emulated.compat import FakeError, NodeSocket
from slotlab.backends.emulated.helpers import (
    _VERSION_TUPLE,
    REDIS_VERSION,
    _from_fake,
    _ll,
    _text,
)
from slotlab.backends.emulated.registry import _handles
from slotlab.commands import CommandSpec
from slotlab.resp import (
    OK,
    ErrorReply,
)

if TYPE_CHECKING:
    from slotlab.backends.emulated.client import _Client


#: A script running longer than this is stopped (a real server would start answering BUSY).
SCRIPT_TIME_LIMIT = 5.0



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
        raise ErrorReply(errors.SHEBANG_INVALID)
    from slotlab.resp import split_args

    parts = split_args(body[:end])
    if not parts:
        raise ErrorReply(errors.SHEBANG_ENGINE_INVALID)
    if parts[0] != b"#!lua":
        raise ErrorReply(errors.SHEBANG_ENGINE_UNEXPECTED.format(engine=_text(parts[0])))
    flags: set[str] = set()
    for part in parts[1:]:
        if not part.startswith(b"flags="):
            raise ErrorReply(errors.SHEBANG_OPTION.format(option=_text(part)))
        for flag in part[6:].split(b","):
            name = _text(flag)
            if name not in _SCRIPT_FLAGS:
                raise ErrorReply(errors.SHEBANG_FLAG.format(flag=name))
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

    def __init__(self, sock: NodeSocket) -> None:
        runtime = sock.lua_runtime()
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
            text = errors.EMULATOR_SCRIPT_TIMEOUT.format(limit=SCRIPT_TIME_LIMIT)
            raise _ScriptError(text, int(line))

    @staticmethod
    def _error_info(err: Any) -> tuple[bytes, int | None]:
        """A Python exception raised inside the script: its text and, if known, its line."""
        return str(err).encode(), getattr(err, "line", None)

    @staticmethod
    def _missing_global(name: Any, line: Any) -> Any:
        text = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        raise _ScriptError(errors.LUA_GLOBAL.format(line=int(line), name=text), int(line))

    @staticmethod
    def _set_global(line: Any) -> Any:
        raise _ScriptError(errors.LUA_READONLY_TABLE.format(line=int(line)), int(line))




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
        return ErrorReply(errors.SCRIPT_COMPILE.format(detail=text))
    script = _Script(sha, body, flags, compat, fn)
    node.scripts[sha] = script
    return script


def _bridge(c: _Client) -> _LuaBridge:
    node = c.node
    if node.lua is None:
        assert c.sock is not None
        with node.store.lock:
            node.lua = _LuaBridge(c.sock)
    return node.lua


@_handles("eval", "evalsha", "eval_ro", "evalsha_ro")
def _eval(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    evalsha = spec.name.startswith("evalsha")
    ro = spec.name.endswith("_ro")
    if evalsha and len(argv[1]) != 40:
        return ErrorReply(errors.NOSCRIPT)
    numkeys = _ll(argv[2])
    if numkeys is None:
        return ErrorReply(errors.NOT_INTEGER)
    if numkeys > len(argv) - 3:
        return ErrorReply(errors.NUMKEYS_TOO_MANY)
    if numkeys < 0:
        return ErrorReply(errors.NUMKEYS_NEGATIVE)
    node = c.node
    if evalsha:
        found = node.scripts.get(argv[1].lower())
        if found is None:
            return ErrorReply(errors.NOSCRIPT)
        script: _Script | ErrorReply = found
    else:
        script = _load_script(c, argv[1])
        if isinstance(script, ErrorReply):
            return script
    assert isinstance(script, _Script)
    if not script.compat:
        if "no-cluster" in script.flags:
            return ErrorReply(errors.SCRIPT_NO_CLUSTER)
        if "no-writes" not in script.flags:
            if node.is_replica:
                return ErrorReply(errors.SCRIPT_WRITE_ON_REPLICA)
            if ro:
                return ErrorReply(errors.SCRIPT_WRITE_RO)
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
    store = c.node.store
    runtime = bridge.runtime
    with store.lock:
        store.set_time(time.time())
        store.set_script_socket(sock)
        outer_run, c.run = c.run, run
        in_tx = sock.in_transaction
        sock.in_transaction = True  # blocking commands never block inside a script
        bridge.deadline = time.monotonic() + SCRIPT_TIME_LIMIT
        try:
            ok, result = sock.run_lua(
                script.function, runtime.table_from(keys), runtime.table_from(args), bridge.run
            )
        finally:
            sock.in_transaction = in_tx
            c.run = outer_run
        if not ok:
            return _script_error(result, run.sha)
        try:
            return _from_fake(sock.convert_lua_result(result))
        except FakeError as exc:
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

    msg = field_text(b"err") or errors.LUA_EXECUTION_FAILURE
    source, line = field_text(b"source"), field_text(b"line")
    if source and line:
        msg += f" script: {sha}, on {source}:{line}."
    return ErrorReply(msg)


@_handles("fcall", "fcall_ro")
def _fcall(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    """FCALL: fakeredis runs the function; its ``redis.call`` comes back through script_call."""
    sock = c.sock
    assert sock is not None
    with c.node.store.lock:
        flags = sock.function_flags(argv[1]) or set()
    if b"no-cluster" in flags:
        return ErrorReply(errors.SCRIPT_NO_CLUSTER)
    run = _RunCtx(
        sha=_text(argv[1]),
        read_only=spec.name == "fcall_ro" or b"no-writes" in flags,
        allow_cross_slot=b"allow-cross-slot-keys" in flags,
    )
    outer, c.run = c.run, run
    in_tx = sock.in_transaction
    sock.in_transaction = True  # blocking commands never block inside a function
    try:
        return _from_fake(c.fake(argv))
    finally:
        c.run = outer
        sock.in_transaction = in_tx


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
    return ErrorReply(errors.SCRIPT_FLUSH_OPTION)


@_handles("script|kill")
def _script_kill(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return ErrorReply(errors.NOTBUSY)
