"""One client connection to one node: ``processCommand``'s checks, then the command.

A client reads RESP requests, checks each in the server's order (lookup, arity, node checks,
MULTI queueing) and runs it here or on fakeredis; blocking commands wait in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from slotlab import commands, errors
from slotlab.backends.emulated import monitor, node_checks
from slotlab.backends.emulated.cluster import _Node
from slotlab.backends.emulated.compat import (
    FAKEREDIS_VERSION,
    FakeError,
    FakeNoResponse,
    NodeSocket,
    NotInFakeredis,
)
from slotlab.backends.emulated.helpers import (
    _NULL_ARRAY,
    _PROTECTED,
    _PUSH_KINDS,
    _QUEUED,
    _RESP3_SETS,
    _UNSUBSCRIBE_ALL,
    LOG,
    _encode_reply,
    _from_fake,
    _PushList,
    _to_fake,
    _translate,
)
from slotlab.backends.emulated.registry import _HANDLERS
from slotlab.backends.emulated.scripting import _RunCtx, _ScriptError
from slotlab.commands import CommandSpec
from slotlab.resp import (
    ErrorReply,
    NullArray,
    ProtocolError,
    RequestReader,
    RespSet,
    encode,
)

if TYPE_CHECKING:
    from slotlab.backends.emulated.backend import EmulatedBackend


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
        self.sock: NodeSocket | None = None
        #: ``c->authenticated``: a new connection is, only when the lab has no password.
        self.authenticated = commands.authenticated_after_reset(backend.password)

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
        self.sock = NodeSocket(self.node.store, self)
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
        with self.node.store.lock:
            sock.time_out_block()
        self.node.store.wake_blocked()

    def _close_sock(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                self.node.store.release(sock)
            except Exception:  # noqa: BLE001 - cleanup must not break the loop
                LOG.warning("closing a client's fakeredis connection failed", exc_info=True)

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
                out.append(encode(ErrorReply(errors.PROTOCOL_ERROR.format(reason=exc))))
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
                reply = ErrorReply(errors.EMULATOR_INTERNAL.format(detail=repr(exc)))
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
        suppressed = sock.take_reply_suppressed()
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
                count = self.sock.subscriptions
                self.pushes = [_PushList([name, None, count])]
            return reply
        finally:
            # resetClient(): ASKING lasts for one command, or until the transaction ends.
            if self.multi is None and argv[0].lower() != b"asking":
                self.asking = False

    def _process(self, argv: list[bytes]) -> Any:
        if commands.is_security_attack(argv):
            commands.security_warning(LOG)
            self.close_after_reply = True  # securityWarningCommand: drop the connection
            return _NO_REPLY
        spec, problem = commands.check_command(argv)
        if problem is not None:
            return self._reject(spec, problem)
        assert spec is not None
        if spec.name in _PROTECTED:  # CMD_PROTECTED: COMMAND does not show this flag
            which = "DEBUG" if spec.name.startswith("debug") else "MODULE"
            option = "enable-debug-command" if which == "DEBUG" else "enable-module-command"
            text = errors.PROTECTED_COMMAND.format(which=which, option=option)
            return self._reject(spec, text)
        noauth = commands.auth_required(spec, self.authenticated)
        if noauth is not None:
            return self._reject(spec, noauth)
        flags = self.command_flags(spec, argv)
        is_exec = spec.name == "exec"
        if self.multi is not None and "no_multi" in spec.flags:
            return self._reject(spec, errors.NOT_IN_MULTI)
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
            return self._reject(spec, errors.READONLY_REPLICA)
        sock = self.sock
        assert sock is not None
        if sock.subscriptions and self.resp == 2 and spec.name not in (
            "ping", "subscribe", "ssubscribe", "unsubscribe", "sunsubscribe", "psubscribe",
            "punsubscribe", "quit", "reset",
        ):  # fmt: skip
            return self._reject(spec, errors.PUBSUB_CONTEXT.format(name=spec.name))
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

    def _flag(self) -> None:
        """``flagTransaction``: a command failed to queue, so EXEC will abort."""
        if self.multi is not None:
            self.dirty = True

    def _discard(self) -> None:
        """``discardTransaction``: leave MULTI and forget the watched keys."""
        self.multi = None
        self.dirty = False
        if self.sock is not None:
            with self.node.store.lock:
                self.sock.clear_watches()

    def _reject(self, spec: CommandSpec | None, message: str) -> ErrorReply:
        """``rejectCommand``: flag the transaction; an EXEC aborts it with EXECABORT.

        ``message`` is the full error text, code first (from ``slotlab.errors``)."""
        self._flag()
        if spec is not None and spec.name == "exec":
            self._discard()
            # execCommandAbort: the reason as rejectCommandFormat wrote it, without "ERR "
            reason = message[4:] if message.startswith("ERR ") else message
            return ErrorReply(errors.EXECABORT_BECAUSE.format(reason=reason))
        return ErrorReply(message)

    def _moved(self, slot: int, target: _Node | None) -> ErrorReply:
        assert target is not None
        return ErrorReply(errors.MOVED.format(slot=slot, addr=target.address))

    def command_flags(self, spec: CommandSpec, argv: Sequence[bytes]) -> frozenset[str]:
        """``getCommandFlags`` for this client (see ``node_checks.command_flags``)."""
        return node_checks.command_flags(self, spec, argv)

    def node_by_query(
        self, spec: CommandSpec, argv: Sequence[bytes]
    ) -> tuple[_Node | None, int, str | None]:
        """Which node serves this command (see ``node_checks.node_by_query``)."""
        return node_checks.node_by_query(self, spec, argv)

    # ---- running commands -------------------------------------------------------------------

    def _really_blocks(self, spec: CommandSpec, argv: Sequence[bytes]) -> bool:
        if self.run is not None:
            return False
        if spec.name in ("xread", "xreadgroup"):
            return _has_block_option(argv)
        return spec.name != "wait"

    def _call_blocking(self, spec: CommandSpec, argv: list[bytes]) -> Any:
        """Run a blocking command in a worker thread; the loop keeps serving everyone else.

        Each blocked client holds one thread until its command returns, so their number is
        bounded (``EmulatedBackend.max_blocked_clients``); past it the command is refused.
        """
        backend = self.backend
        if backend.blocked_clients >= backend.max_blocked_clients:
            LOG.warning("refused %s: %d clients already blocked", spec.name.upper(),
                        backend.blocked_clients)
            limit = backend.max_blocked_clients
            return ErrorReply(errors.EMULATOR_BLOCKED_LIMIT.format(limit=limit))
        backend.blocked_clients += 1
        self.busy = True
        loop = backend.loop
        assert loop is not None
        fut: asyncio.Future[Any] = loop.create_future()
        backend.pending.add(fut)

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
            try:
                loop.call_soon_threadsafe(settle, *outcome)
            except RuntimeError:  # the loop closed: the lab stopped, the client is gone
                if not outcome[0]:
                    LOG.warning("blocking %s failed after the lab stopped: %r",
                                spec.name.upper(), outcome[1])

        # A daemon thread per blocked client: it never holds up the interpreter's exit.
        threading.Thread(target=work, name="slotlab-emulated-blocking", daemon=True).start()

        def done(f: asyncio.Future[Any]) -> None:
            backend.pending.discard(f)
            backend.blocked_clients -= 1
            self.busy = False
            if self.closing:
                self._close_sock()
                return
            try:
                reply = _from_fake(f.result())
            except FakeError as exc:
                reply = ErrorReply(exc.value)
            except Exception as exc:  # noqa: BLE001 - one bad command must not kill the node
                LOG.exception("emulator failed on blocking %r", argv[:1])
                reply = ErrorReply(errors.EMULATOR_INTERNAL.format(detail=repr(exc)))
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
        store = self.node.store
        with store.lock:
            store.set_time(time.time())
            try:
                result = sock.run_command(argv)
            except NotInFakeredis as exc:
                text = errors.EMULATOR_NOT_IMPLEMENTED
                return FakeError(text.format(version=FAKEREDIS_VERSION, cmd=exc.name.upper()))
        if isinstance(result, FakeError):
            return _translate(result, argv)
        return result

    def call(self, spec: CommandSpec, argv: list[bytes]) -> Any:
        """Run a command that passed every check (``call()``): here, or on fakeredis; the
        node's MONITOR clients see it (``slotlab.backends.emulated.monitor``)."""
        monitor.feed_client(self, spec, argv, True)
        reply = self._call(spec, argv)
        monitor.feed_client(self, spec, argv, False)
        return reply

    def _call(self, spec: CommandSpec, argv: list[bytes]) -> Any:
        handler = _HANDLERS.get(spec.name)
        if handler is not None:
            return handler(self, spec, argv)
        result = self.fake(argv)
        if isinstance(result, FakeNoResponse):
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

    @property
    def in_script(self) -> bool:
        """True while a script or function of this client runs."""
        return self.run is not None

    def function_call(self, lua_runtime: Any, raw: Sequence[Any]) -> Any:
        """``redis.call`` in a FUNCTION: ``script_call``, its errors as fakeredis raises them."""
        try:
            return self.script_call(lua_runtime, raw)
        except _ScriptError as exc:
            raise FakeError(exc.text) from None

    def script_call(self, lua_runtime: Any, raw: Sequence[Any]) -> Any:
        """``redis.call`` in a script: ``scriptCall``'s checks (script.c), then the command."""
        if not raw:
            raise _ScriptError(errors.LUA_NO_ARGS)
        argv: list[bytes] = []
        for a in raw:
            if type(a) is bytes:
                argv.append(a)
            elif type(a) is int:
                argv.append(b"%d" % a)
            elif type(a) is float:
                argv.append(b"%.17g" % a)  # as luaArgsToRedisArgv prints a Lua number
            else:
                raise _ScriptError(errors.LUA_ARG_TYPE)
        run = self.run
        assert run is not None
        spec = commands.lookup(argv)
        if spec is None:
            raise _ScriptError(errors.LUA_UNKNOWN_COMMAND)
        if not spec.check_arity(len(argv)):
            raise _ScriptError(errors.LUA_ARITY)
        if "noscript" in spec.flags:
            raise _ScriptError(errors.LUA_NOSCRIPT_COMMAND)
        if run.read_only and spec.flags & {"write", "may_replicate"}:
            raise _ScriptError(errors.LUA_WRITE_RO)
        if "write" in spec.flags and not run.write_dirty and self.node.is_replica:
            raise _ScriptError(errors.READONLY_REPLICA)
        if "write" in spec.flags:
            run.write_dirty = True
        target, slot, error = self.node_by_query(spec, argv)
        if error is not None or target is not self.node:
            raise _ScriptError(errors.LUA_NON_LOCAL_KEY)
        if slot != -1 and not run.allow_cross_slot:
            if self.slot == -1:
                self.slot = slot
            elif self.slot != slot:
                raise _ScriptError(errors.LUA_CROSS_SLOT)
        if spec.name in ("xread", "xreadgroup") and _has_block_option(argv):
            raise _ScriptError(errors.LUA_BLOCK_OPTION.format(name=spec.name))
        handler = _HANDLERS.get(spec.name)
        result = handler(self, spec, argv) if handler is not None else self.fake(argv)
        monitor.feed_client(self, spec, argv, False)
        if handler is not None:
            result = _to_fake(result)
        elif spec.name.startswith("xread") and isinstance(result, (list, dict)) and not result:
            result = None  # a null array, which a script sees as false
        sock = self.sock
        assert sock is not None
        return sock.convert_redis_result(lua_runtime, result)


def _has_block_option(argv: Sequence[bytes]) -> bool:
    """True when XREAD/XREADGROUP asks to BLOCK (an option before STREAMS)."""
    for arg in argv[1:]:
        low = arg.lower()
        if low == b"streams":
            return False
        if low == b"block":
            return True
    return False


class _InternalClient(_Client):
    """A connection-less client, for one node talking to another (MIGRATE's RESTORE)."""

    def __init__(self, backend: EmulatedBackend, node: _Node) -> None:
        super().__init__(backend, node)
        self.sock = NodeSocket(self.node.store, self)
        self.authenticated = True  # a node acting on another, inside the lab

    def close(self) -> None:
        self.connection_lost(None)
