"""The proxy's transport: it carries out what ``slotlab.proxy.rules`` decides.

Sessions (one per client connection) read requests with the server's own parser, ask the rules
for a decision, and keep the replies in the order the requests came. Each session has its own
connection to each node it needs (opened on first use, returned to a small idle pool when the
client leaves), speaking the client's RESP version: pipelining and stateful commands (WATCH,
blocking pops) then stay correct with no bookkeeping. Replies are forwarded byte for byte; the
proxy only finds where each one ends (``slotlab.resp.ReplyFramer``).

Everything that talks to a node goes through :meth:`Session.request`, the ONE place where MOVED
and ASK are followed and an EVALSHA that meets NOSCRIPT is resent as EVAL. A node that does not
answer within ``read_timeout`` seconds (blocking commands excepted) fails the commands waiting
on it with slotlab's "unreachable" error; a slot map that cannot be read again is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import itertools
import logging
import os
import re
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, Final, cast

import hiredis
import redis

from slotlab import commands, errors, resp
from slotlab.proxy.rules import Addr, Answer, FanOut, Forward, SessionState, Transaction, rules_for
from slotlab.resp import ProtocolError, ReplyFramer, RequestReader, error_reply, split_array
from slotlab.slots import SLOT_COUNT

Callback = Callable[[bytes], None]

PERSONALITIES: Final = ("alibaba", "passthrough")
EVENT_LOOPS: Final = ("auto", "asyncio", "uvloop")

MAX_REDIRECTS: Final = 5  # MOVED/ASK hops per command before the redirect reaches the client
MAX_INFLIGHT: Final = 4096  # replies a client may have outstanding before we stop parsing
#: Bytes of replies one client may have waiting (made but not yet read by it). Past this the
#: proxy stops reading that client's commands until it reads: a client that pipelines many GETs
#: of a large value and never reads is paused, and the proxy and the nodes stay bounded.
CLIENT_BUFFER_BYTES: Final = 16 * 1024 * 1024
#: Commands a client may have in flight before the proxy has seen how large its replies are;
#: the window then grows by one per reply, and falls back here when a reply much larger than
#: the ones before arrives (a reply's size is known only once it comes back).
FIRST_WINDOW: Final = 16
CONNECT_TIMEOUT: Final = 2.0  # seconds to connect to a node
READ_TIMEOUT: Final = 30.0  # seconds a node may take to answer (blocking commands excepted)
DOWN_BACKOFF: Final = 0.1  # after a failed connect, fail fast for this long before retrying
IDLE_PER_NODE: Final = 8  # idle node connections kept for the next client
REFRESH_INTERVAL: Final = 0.5  # seconds between slot map reads caused by unreachable nodes

_log = logging.getLogger("slotlab.proxy")

_HELLO3: Final = resp.encode_command(b"HELLO", b"3")
_ASKING: Final = resp.encode_command(b"ASKING")
_MULTI: Final = resp.encode_command(b"MULTI")
_EXEC: Final = resp.encode_command(b"EXEC")
_UNPIN: Final = resp.encode_command(b"DISCARD") + resp.encode_command(b"UNWATCH")


class ProxyError(RuntimeError):
    """The proxy could not start: no node answered, or the event loop asked for is missing."""


def _ignore(raw: bytes) -> None:
    """A reply nobody waits for (the +OK of ASKING, of MULTI in a sub-transaction)."""


def _nodelay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY: a small reply or command goes out at once, never held back by Nagle."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@functools.lru_cache(maxsize=4096)
def _blocking(name: bytes) -> bool:
    """True for a command that may wait on the node as long as it likes (BLPOP, XREAD...)."""
    spec = commands.lookup([name])
    return spec is not None and "blocking" in spec.flags


class NodeConn(asyncio.Protocol):
    """One connection to one node. Replies come back in order, so callbacks wait in a FIFO."""

    def __init__(self, proxy: Proxy, addr: Addr, proto: int = 2) -> None:
        self.proxy = proxy
        self.addr = addr
        self.proto = proto  # 3: HELLO 3 goes first, so replies come in RESP3 for a RESP3 client
        self.transport: asyncio.Transport | None = None
        self.pending: deque[Callback] = deque()
        self.out: list[bytes] = []
        self.dead = False
        self.stateful = False  # carries a WATCH or a pinned MULTI: never reuse for another client
        self.corked = False
        self.patient = 0  # blocking commands waiting: no read timeout meanwhile
        self._buf = bytearray()
        self._framer = ReplyFramer()
        self._why = ""
        self._timer: asyncio.TimerHandle | None = None

    async def connect(self) -> None:
        connecting = asyncio.get_running_loop().create_connection(lambda: self, *self.addr)
        try:
            await asyncio.wait_for(connecting, CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:  # "Connection refused", on either loop
            errno = getattr(exc, "errno", None)
            why = os.strerror(errno) if errno else str(exc) or "connect timed out"
            self.proxy._down[self.addr] = (time.monotonic() + DOWN_BACKOFF, why)
            self.proxy._schedule_refresh()  # a failover may have given its slots to a replica
            self._fail(why)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.dead:  # closed while connecting
            transport.close()
            return
        self.transport = cast(asyncio.Transport, transport)
        _nodelay(transport)
        self.proxy._down.pop(self.addr, None)
        hello = self.proxy._hello(self.proto)
        if hello:
            self.pending.appendleft(_ignore)
            self.out.insert(0, hello)
        self.uncork()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail("connection lost; the command may or may not have run")

    def close(self) -> None:
        """Close the connection; commands still waiting get the 'unreachable' error."""
        self.dead = True
        self._why = self._why or "connection closed by the proxy"
        if self.transport is not None:
            self.transport.close()
        else:
            self._fail(self._why)

    def _unreachable(self) -> bytes:
        addr = f"{self.addr[0]}:{self.addr[1]}"
        return error_reply(errors.PROXY_UNREACHABLE.format(addr=addr, why=self._why))

    def _fail(self, why: str) -> None:
        self.dead = True
        self._why = self._why or why
        if self._timer is not None:
            self._timer.cancel()
        if not self.pending:
            return
        err = self._unreachable()
        self.proxy.stats["unreachable"] += 1
        while self.pending:
            self.pending.popleft()(err)

    def _timed_out(self) -> None:
        self._why = f"no reply within {self.proxy.read_timeout:g} s"
        if self.transport is not None:
            self.transport.abort()  # connection_lost fails what waits

    def _arm(self) -> None:
        """Start (or restart) the read timeout while replies are awaited."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        if self.pending and not self.patient:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.proxy.read_timeout, self._timed_out)

    # -- sending --
    def send(self, payload: bytes, callbacks: Iterable[Callback], patient: bool = False) -> None:
        """Send one or more commands at once (``payload`` holds them all), one callback each."""
        callbacks = list(callbacks)
        if self.dead:
            err = self._unreachable()
            for cb in callbacks:
                cb(err)
            return
        if patient:
            self.patient += 1
            last = callbacks[-1]

            def done(raw: bytes) -> None:
                self.patient -= 1
                last(raw)

            callbacks[-1] = done
        was_idle = not self.pending
        self.pending.extend(callbacks)
        if was_idle:
            self._arm()
        self.out.append(payload)  # written once this turn of the event loop is over
        if self.transport is not None and not self.corked:
            self.corked = True
            asyncio.get_running_loop().call_soon(self.uncork)

    def uncork(self) -> None:
        self.corked = False
        if self.transport is not None and self.out:
            self.transport.write(b"".join(self.out))
            self.out.clear()

    # -- receiving --
    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        try:
            pos = 0
            while self.pending and pos < len(buf):
                end = self._framer.end(buf, pos)
                if end < 0:
                    break
                raw = bytes(buf[pos:end])
                pos = end
                if raw[:1] != b">":  # a RESP3 push is out of band: it answers no command
                    self.pending.popleft()(raw)
            del buf[:pos]
            if buf and not self.pending:
                raise ValueError("a reply nobody asked for")
            self._arm()
        except ValueError:
            self._why = "it sent something that is not a RESP reply"
            if self.transport is not None:
                self.transport.abort()


class _Reply:
    """One place in a client's reply order; calling it with the reply bytes fills it in."""

    __slots__ = ("data", "session")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.data: bytes | None = None

    def __call__(self, data: bytes) -> None:
        self.data = data
        self.session._filled(len(data))
        self.session._mark()


class Session(asyncio.Protocol):
    """One client connection: parses its commands, carries out the rules' decisions, keeps its
    replies in order."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.rules = proxy._rules
        self.state = SessionState(id=next(proxy._ids), version=proxy.server_version,
                                  authenticated=proxy.password is None)  # fmt: skip
        self.transport: asyncio.Transport | None = None
        self.reader = RequestReader()
        self.queue: deque[_Reply] = deque()
        self.conns: dict[Addr, NodeConn] = {}
        self.pinned: Addr | None = None  # the node of a WATCH or of a pinned transaction
        self.proto = 2
        self.closed = False
        self.closing = False  # close once every reply so far is written (QUIT, bad RESP)
        self.stalled = False
        self.dirty = False
        self.held = 0  # bytes of replies in ``queue`` that are made but not yet written
        self.made = 0  # how many replies in ``queue`` are made
        self.reply_size = 0  # how large this client's replies are lately (a decaying maximum)
        self.window = FIRST_WINDOW  # commands it may have in flight, by what replies showed
        self.paused = False  # stalled because its unread replies reached CLIENT_BUFFER_BYTES

    # -- asyncio --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        # Tell us (resume_writing) when the client has read most of what waits for it.
        self.transport.set_write_buffer_limits(high=CLIENT_BUFFER_BYTES // 2)
        _nodelay(transport)
        self.proxy._sessions.add(self)
        self.proxy.stats["connections"] += 1

    def data_received(self, data: bytes) -> None:
        if self.closing or self.closed:
            return
        self.reader.feed(data)
        self.pump()

    def resume_writing(self) -> None:
        """The client read its replies: read its commands again."""
        if self.stalled and not self.closed:
            self._mark()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy._sessions.discard(self)
        self.queue.clear()
        self.held = self.made = 0
        for conn in self.conns.values():
            self.proxy._release(conn)
        self.conns.clear()

    # -- commands in --
    def pump(self) -> None:
        """Parse and carry out the commands received so far, in order."""
        reader = self.reader
        while not self.closing and not self.closed:
            if not self._room():
                self._stall()
                break
            try:
                got = reader.get_request()
            except ProtocolError as exc:
                self.local(error_reply(errors.PROTOCOL_ERROR.format(reason=exc)))
                self.closing = True
                break
            if got is None:
                break
            argv, raw = got  # raw: the request's own bytes, forwarded as they are
            if not argv:
                continue  # an empty request: the server ignores it too
            self.proxy.stats["commands"] += 1
            first = len(self.queue)
            try:
                decision = self.rules.admit(argv, self.state)
                if decision is None:
                    decision = self.rules.decide(argv, self.state, self.proxy)
                self.carry_out(decision, argv, raw)
            except Exception as exc:  # noqa: BLE001 - a bug must not stall this client
                self.internal_error(exc, first)

    def carry_out(self, decision: Answer | Forward | FanOut | Transaction, argv: list[bytes],
                  raw: bytes | None) -> None:  # fmt: skip
        """Do what the rules decided for ``argv`` (``raw``: its bytes as the client sent them)."""
        if self.state.protocol != self.proto:
            self.switch_protocol(self.state.protocol)
        counter = getattr(decision, "counts_as", "")
        if counter:
            self.proxy.stats[counter] += 1
        if isinstance(decision, Answer):
            if decision.unpin and self.pinned is not None:
                self.conn_for(self.pinned).send(_UNPIN, (_ignore, _ignore))
                self.pinned = None
            self.local(decision.reply)
            if decision.close:
                self.closing = True
        elif isinstance(decision, Forward):
            self.forward(decision, argv, raw)
        elif isinstance(decision, FanOut):
            parts = decision.parts
            self.gather([partial(self.request, a, resp.encode_command(*c)) for a, c in parts],
                        decision.merge)  # fmt: skip
        else:
            self.transaction(decision)

    def forward(self, d: Forward, argv: list[bytes], raw: bytes | None) -> None:
        payload = raw if raw is not None else resp.encode_command(*argv)
        if d.prelude:
            payload = b"".join(resp.encode_command(*p) for p in d.prelude) + payload
        r = self.new_reply()
        patient = _blocking(argv[0])
        if d.pinned and self.pinned is not None:
            conn = self.conn_for(self.pinned)
            conn.send(payload, [_ignore] * len(d.prelude) + [r], patient)
            if not self.state.pinned:
                self.pinned = None
            return
        addr = self.proxy.node_for(d.slot) if d.slot is not None else self.proxy.masters[0]
        landed = None
        if d.pin:
            self.pinned = addr
            self.conn_for(addr).stateful = True

            def landed(final: Addr) -> None:
                self.pinned = final
                self.conn_for(final).stateful = True

        as_eval = None
        if d.script is not None:  # an EVALSHA whose body the rules know
            name = b"EVAL_RO" if argv[0].lower().endswith(b"_ro") else b"EVAL"
            as_eval = resp.encode_command(name, d.script, *argv[2:])
        self.request(addr, payload, r, landed=landed, as_eval=as_eval, patient=patient,
                     ignored=len(d.prelude))  # fmt: skip

    def internal_error(self, exc: Exception, first: int | None = None) -> bytes:
        """A bug in the proxy: log it, count it, and answer with an error instead of hanging.

        With ``first``, the replies this command added from that place on are filled in too.
        """
        self.proxy.stats["internal_errors"] += 1
        _log.exception("slotlab proxy: internal error", exc_info=exc)
        error = error_reply(errors.PROXY_INTERNAL.format(kind=type(exc).__name__, detail=exc))
        if first is not None:
            for r in list(self.queue)[first:]:
                if r.data is None:
                    r(error)
            if len(self.queue) == first:
                self.local(error)
        return error

    # -- the bound on a client's replies, in bytes --
    def _room(self) -> bool:
        """True when this client may send one more command: its replies waiting, in flight,
        and in bytes (the unread ones, plus those in flight at its recent reply size) are all
        under their bounds."""
        queued = len(self.queue)
        if queued >= MAX_INFLIGHT:
            return False
        in_flight = queued - self.made
        if in_flight >= self.window:
            return False
        unread = self.held + (self.transport.get_write_buffer_size() if self.transport else 0)
        return unread + in_flight * self.reply_size < CLIENT_BUFFER_BYTES

    def _filled(self, size: int) -> None:
        """One more reply is made: account for its bytes, learn the client's reply size."""
        self.held += size
        self.made += 1
        if size > 4 * self.reply_size and size > 65536:
            self.window = FIRST_WINDOW  # much larger replies than before: start small again
        elif self.window < MAX_INFLIGHT:
            self.window += 1
        self.reply_size = max(size, self.reply_size - (self.reply_size >> 4))

    def _stall(self) -> None:
        """Stop reading this client's commands (and its socket) until ``_room`` says so; count
        and log, once per pause, a client stopped because it does not read."""
        if not self.stalled:
            self.stalled = True
            if self.transport is not None:
                self.transport.pause_reading()
        if self.paused or self.transport is None:
            return
        unread = self.held + self.transport.get_write_buffer_size()
        if unread >= CLIENT_BUFFER_BYTES:
            self.paused = True
            self.proxy.stats["clients_paused"] += 1
            _log.warning(errors.PROXY_CLIENT_PAUSED.format(
                client=self.state.id, size=unread, limit=CLIENT_BUFFER_BYTES))  # fmt: skip

    # -- replies out --
    def new_reply(self) -> _Reply:
        r = _Reply(self)
        self.queue.append(r)
        return r

    def local(self, data: bytes) -> None:
        """A reply the proxy makes itself."""
        self.new_reply()(data)

    def _mark(self) -> None:
        if not self.dirty:  # written once this turn of the event loop is over
            self.dirty = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write every reply that is ready and has nothing unready before it."""
        self.dirty = False
        transport = self.transport
        if self.closed or transport is None:
            return
        queue = self.queue
        out = []
        while queue and queue[0].data is not None:
            data = cast(bytes, queue.popleft().data)
            self.held -= len(data)
            self.made -= 1
            out.append(data)
        if out:
            transport.write(b"".join(out))
        if self.closing and not queue:
            transport.close()
            return
        if self.stalled:
            if self._room():
                self.stalled = self.paused = False
                if not self.closing:
                    transport.resume_reading()
                self.pump()
            else:
                self._stall()

    # -- talking to nodes --
    def conn_for(self, addr: Addr) -> NodeConn:
        conn = self.conns.get(addr)
        if conn is None or conn.dead:
            conn = self.proxy._acquire(addr, self.proto)
            if not conn.dead:
                self.conns[addr] = conn
        return conn

    def request(self, addr: Addr, payload: bytes, cb: Callback, hops: int = 0,
                asking: bool = False, landed: Callable[[Addr], None] | None = None,
                as_eval: bytes | None = None, patient: bool = False, ignored: int = 0) -> None:
        """Send ``payload`` to ``addr``; ``cb`` gets the final reply.

        The one place that follows MOVED and ASK (up to MAX_REDIRECTS hops) and that resends an
        EVALSHA as ``as_eval`` (the call as EVAL, with its body) when the node answers NOSCRIPT.
        The replies of the first ``ignored`` commands in ``payload`` are dropped.
        """  # fmt: skip
        if self.closed:
            return

        def on_reply(raw: bytes) -> None:
            if raw[:1] == b"-":
                if hops < MAX_REDIRECTS and (raw.startswith((b"-MOVED ", b"-ASK "))):
                    moved = raw[1:2] == b"M"
                    target = self.proxy._redirect(raw, addr, moved)
                    if target is not None:
                        self.proxy.stats["redirects"] += 1
                        self.request(target, payload, cb, hops + 1, not moved, landed, as_eval,
                                     patient, ignored)  # fmt: skip
                        return
                if as_eval is not None and raw.startswith(b"-NOSCRIPT"):
                    self.request(addr, as_eval, cb, hops, False, landed, None, patient)
                    return
            if landed is not None:
                landed(addr)
            cb(raw)

        callbacks = [_ignore] * (ignored + (1 if asking else 0)) + [on_reply]
        self.conn_for(addr).send(_ASKING + payload if asking else payload, callbacks, patient)

    def switch_protocol(self, proto: int) -> None:
        """HELLO changed the RESP version: node connections must speak it too."""
        self.proto = proto
        for conn in self.conns.values():
            self.proxy._release(conn)
        self.conns.clear()
        self.pinned = None

    def gather(self, requests: Sequence[Callable[[Callable[[Any], None]], None]],
               finish: Callable[[list[Any]], bytes]) -> None:  # fmt: skip
        """Start several requests, each given the callback for its result; when all results
        are in, ``finish`` makes the client's one reply from them (in the requests' order)."""
        r = self.new_reply()
        results: list[Any] = [None] * len(requests)
        left = [len(requests)]

        def done() -> None:
            try:
                r(finish(results))
            except Exception as exc:  # noqa: BLE001 - a bug must not stall this client
                r(self.internal_error(exc))

        def put(i: int, result: Any) -> None:
            results[i] = result
            left[0] -= 1
            if not left[0]:
                done()

        if not requests:
            done()
        for i, start in enumerate(requests):
            start(partial(put, i))

    # -- transactions split per slot --
    def transaction(self, t: Transaction) -> None:
        """EXEC of a split transaction: one MULTI/EXEC per part, replies in the queued order."""
        if len(t.parts) > 1:
            self.proxy.stats["split_transactions"] += 1
        watched = self.pinned if t.watched else None
        self.pinned = None  # EXEC ends a WATCH, whatever happens

        def finish(per_part: list[list[bytes] | None]) -> bytes:
            if any(replies is None for replies in per_part):  # a WATCHed key changed
                return b"*-1\r\n" if self.proto == 2 else b"_\r\n"
            results = [b""] * t.size
            for (_, idx, _), replies in zip(t.parts, per_part, strict=True):
                for i, raw in zip(idx, replies or [], strict=True):
                    results[i] = raw
            return b"*%d\r\n" % t.size + b"".join(results)

        self.gather([partial(self._sub_transaction, watched or self.proxy.node_for(slot or 0),
                             slot, list(cmds), watched)
                     for slot, _, cmds in t.parts], finish)  # fmt: skip

    def _sub_transaction(self, addr: Addr, slot: int | None, cmds: list[list[bytes]],
                         watched: Addr | None, done: Callable[[list[bytes] | None], None],
                         attempt: int = 0) -> None:  # fmt: skip
        """MULTI, the commands, EXEC on one node; run again where MOVED points if the slot
        moved meanwhile (never a WATCHed one: the WATCH lives on its node)."""
        queued: list[bytes] = []

        def on_exec(raw: bytes) -> None:
            try:
                finish(raw)
            except Exception as exc:  # noqa: BLE001 - a bug must not stall this client
                done([self.internal_error(exc)] * len(cmds))

        def finish(raw: bytes) -> None:
            if raw.startswith(b"*-1") or raw == b"_\r\n":
                done(None)
                return
            if raw.startswith(b"*"):
                done(split_array(raw) or [])
                return
            moved = [q for q in queued[1:] if q.startswith(b"-MOVED ")]
            if moved and attempt < 3 and slot is not None and watched is None:
                target = self.proxy._redirect(moved[0], addr, True)
                if target is not None:
                    self._sub_transaction(target, slot, cmds, None, done, attempt + 1)
                    return
            per_command = [q if q[:1] == b"-" else raw for q in queued[1 : 1 + len(cmds)]]
            done(per_command + [raw] * (len(cmds) - len(per_command)))

        payload = _MULTI + b"".join(resp.encode_command(*c) for c in cmds) + _EXEC
        self.conn_for(addr).send(payload, [queued.append] * (len(cmds) + 1) + [on_exec])


def _parse_node(node: Any) -> Addr:
    """``"host:port"``, ``(host, port)`` or an object with ``.host`` and ``.port``."""
    if isinstance(node, str):
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a node address must look like 'host:port', not {node!r}")
        return (host.strip("[]"), int(port))
    host, port = node if isinstance(node, tuple) else (getattr(node, "host", None),
                                                        getattr(node, "port", None))
    if host is None or port is None:
        raise TypeError(f"cannot read a node address from {node!r}: give 'host:port' strings")
    return (str(host), int(port))


def _new_event_loop(kind: str) -> tuple[asyncio.AbstractEventLoop, str]:
    """A new event loop for the proxy's thread, and its name: uvloop (libuv, in C) when it is
    installed and ``kind`` allows it, else asyncio's own loop."""
    if kind != "asyncio":
        try:
            return importlib.import_module("uvloop").new_event_loop(), "uvloop"
        except ImportError:
            if kind == "uvloop":
                raise ProxyError("event_loop='uvloop' but uvloop is not installed") from None
    return asyncio.new_event_loop(), "asyncio"


class Proxy:
    """A loopback proxy-mode endpoint in front of a Redis Cluster (see ``slotlab.proxy``).

    ``nodes`` are the cluster nodes to start from (``"host:port"`` strings, ``(host, port)``
    tuples, or a lab's ``lab.nodes``); the proxy reads the slot map from them with
    ``CLUSTER SLOTS``. ``personality`` is ``"alibaba"`` or ``"passthrough"``.
    ``script_check_enable`` is the Alibaba console parameter: False turns the static script check
    off (the slot and key-count checks stay). The proxy listens on ``host`` (loopback by default)
    at a port the OS picks unless you give one. ``event_loop`` is ``"auto"`` (uvloop when it is
    installed, else asyncio's own loop), ``"asyncio"`` or ``"uvloop"``; ``loop_kind`` says which
    one runs. ``read_timeout``: seconds a node may take to answer a non-blocking command.
    ``password``: clients must AUTH with it (``NOAUTH`` until then, as a server with
    ``requirepass``), and the proxy AUTHs to the nodes with it (a lab's ``lab.password``).
    """

    def __init__(self, nodes: Iterable[Any], personality: str = "alibaba",
                 script_check_enable: bool = True, host: str = "127.0.0.1", port: int = 0,
                 event_loop: str = "auto", read_timeout: float = READ_TIMEOUT,
                 password: str | None = None) -> None:  # fmt: skip
        if event_loop not in EVENT_LOOPS:
            choices = ", ".join(EVENT_LOOPS)
            raise ValueError(f"unknown event_loop {event_loop!r}: choose one of {choices}")
        #: Clients AUTH with it, and the proxy AUTHs to the nodes with it (None: no password).
        self.password = password
        self._rules = rules_for(personality, bool(script_check_enable), password)
        self.event_loop = event_loop
        #: The loop that runs the proxy, once started: "uvloop" or "asyncio".
        self.loop_kind = ""
        self.seeds: list[Addr] = [_parse_node(n) for n in nodes]
        if not self.seeds:
            raise ValueError("give the proxy at least one cluster node to start from")
        self.personality, self.script_check_enable = personality, bool(script_check_enable)
        self.host, self.port, self.read_timeout = host, port, read_timeout
        self.server_version = "7.0.0"
        #: Counters a notebook can print: commands, fanouts, redirects, scripts_rejected, ...
        self.stats: dict[str, int] = dict.fromkeys(
            ("commands", "connections", "fanouts", "redirects", "scripts_rejected",
             "split_transactions", "unreachable", "slot_map_refreshes", "internal_errors",
             "clients_paused"), 0)
        self._slots: list[Addr | None] = [None] * SLOT_COUNT
        self._masters: list[Addr] = []
        self._sessions: set[Session] = set()
        self._idle: dict[tuple[Addr, int], list[NodeConn]] = {}
        self._down: dict[Addr, tuple[float, str]] = {}
        self._ids = itertools.count(1)  # the client ids HELLO reports
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refreshing = self._closing = False
        self._refreshed_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def address(self) -> str:
        """``host:port`` of the proxy, once started."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._loop is not None and self._server is not None

    @property
    def masters(self) -> list[Addr]:
        """The masters, in slot order (the rules' slot map)."""
        return self._masters

    def node_for(self, slot: int) -> Addr:
        """The master that serves ``slot``, as far as the proxy knows."""
        return self._slots[slot] or self._masters[0]

    def __repr__(self) -> str:
        state = f"on {self.address}" if self.running else "stopped"
        check = f"script_check_enable={self.script_check_enable}"
        return f"<Proxy {self.personality} {check} {state}, {len(self._masters)} masters>"

    def start(self) -> Proxy:
        """Read the slot map and start listening; returns self. Raises ProxyError on failure."""
        if self.running:
            return self
        loop, self.loop_kind = _new_event_loop(self.event_loop)
        name = f"slotlab-proxy-{self.personality}"
        thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._startup(), loop).result(timeout=30)
        except BaseException as exc:
            self.stop()
            if isinstance(exc, ProxyError):
                raise
            raise ProxyError(f"the proxy could not start: {exc}") from exc
        # at interpreter exit, a proxy nobody stopped stops its loop (the thread is a daemon)
        self._finalizer = weakref.finalize(self, loop.call_soon_threadsafe, loop.stop)
        return self

    def stop(self) -> None:
        """Close every client connection and node connection, and the listener. Safe twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = self._server = None
        if self._finalizer is not None:
            self._finalizer.detach()
        if thread is not threading.current_thread():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            if not loop.is_running():
                loop.close()
        else:
            loop.stop()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _startup(self) -> None:
        await self._load_slot_map()
        info = await self._ask_any(b"INFO", b"server")
        m = re.search(rb"redis_version:([0-9.]+)", info if isinstance(info, bytes) else b"")
        if m:
            self.server_version = m[1].decode()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Session(self), self.host, self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for s in list(self._sessions):
            if s.transport is not None:
                s.transport.abort()
        await asyncio.sleep(0)  # let the sessions' connection_lost release their node conns
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0.01)  # let the transports close their sockets

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ask_any(self, *args: bytes) -> Any:
        """One command to the first node that answers, on a short-lived connection."""
        problems = []
        for addr in dict.fromkeys([*self._masters, *self.seeds]):
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr), 2)
                try:
                    hello = self._hello(2)
                    writer.write(hello + resp.encode_command(*args))
                    parser = hiredis.Reader()
                    replies: list[Any] = []
                    while len(replies) < 1 + bool(hello):
                        while (reply := parser.gets()) is False:
                            data = await asyncio.wait_for(reader.read(1 << 16), 5)
                            if not data:
                                raise ConnectionError("the node closed the connection")
                            parser.feed(data)
                        replies.append(reply)
                    if hello and isinstance(replies[0], hiredis.ReplyError):
                        raise redis.ResponseError(f"AUTH: {replies[0]}")
                finally:
                    writer.close()
                if isinstance(reply, hiredis.ReplyError):
                    raise redis.ResponseError(str(reply))
                return reply
            except (OSError, asyncio.TimeoutError, redis.RedisError) as exc:
                problems.append(f"{addr[0]}:{addr[1]}: {str(exc) or type(exc).__name__}")
        raise ProxyError(f"no node answered {args[0].decode()}: " + "; ".join(problems))

    async def _load_slot_map(self) -> None:
        """Read ``CLUSTER SLOTS`` from the first node that answers; build slot -> master."""
        reply = await self._ask_any(b"CLUSTER", b"SLOTS")
        slots: list[Addr | None] = [None] * SLOT_COUNT
        ranges: list[tuple[int, Addr]] = []
        for entry in reply:
            lo, hi, master = int(entry[0]), int(entry[1]), entry[2]
            host = master[0].decode() if master[0] else ""
            addr = (host or self.seeds[0][0], int(master[1]))
            slots[lo : hi + 1] = [addr] * (hi - lo + 1)
            ranges.append((lo, addr))
        if not ranges:
            raise ProxyError("the cluster serves no slots (CLUSTER SLOTS is empty)")
        self._slots = slots
        self._masters = list(dict.fromkeys(addr for _, addr in sorted(ranges)))
        self.stats["slot_map_refreshes"] += 1

    async def _refresh(self) -> None:
        try:
            await self._load_slot_map()
        except (ProxyError, OSError, asyncio.TimeoutError) as exc:
            _log.warning("slotlab proxy: could not read the slot map again: %s", exc)
        finally:
            self._refreshing = False

    def _redirect(self, raw: bytes, via: Addr, moved: bool) -> Addr | None:
        """The node a MOVED/ASK reply points to; MOVED also updates the slot map."""
        try:
            _, slot_text, target = raw[1:].rstrip(b"\r\n").split(b" ", 2)
            host, _, port = target.rpartition(b":")
            addr = (host.decode() or via[0], int(port))
            slot = int(slot_text)
        except ValueError:
            return None
        if moved:
            self._slots[slot] = addr
            if addr not in self._masters:
                self._masters.append(addr)
            self._schedule_refresh(at_once=True)
        return addr

    def _schedule_refresh(self, at_once: bool = False) -> None:
        """Read the slot map again soon: after MOVED at once, after a failed connect at most
        every REFRESH_INTERVAL seconds."""
        now = time.monotonic()
        if self._refreshing or (not at_once and now - self._refreshed_at < REFRESH_INTERVAL):
            return
        self._refreshing = True
        self._refreshed_at = now
        self._spawn(self._refresh())

    def _acquire(self, addr: Addr, proto: int) -> NodeConn:
        idle = self._idle.get((addr, proto))
        while idle:
            conn = idle.pop()
            if not conn.dead:
                return conn
        conn = NodeConn(self, addr, proto)
        down = self._down.get(addr)
        if down is not None and time.monotonic() < down[0]:  # fail fast for a while
            conn.dead, conn._why = True, down[1]
        else:
            self._spawn(conn.connect())
        return conn

    def _release(self, conn: NodeConn) -> None:
        """A client left: keep its clean node connection for the next client, or close it."""
        idle = self._idle.setdefault((conn.addr, conn.proto), [])
        if self._closing or conn.dead or conn.stateful or conn.pending or conn.transport is None \
                or len(idle) >= IDLE_PER_NODE:  # fmt: skip
            conn.close()
        else:
            idle.append(conn)

    def _hello(self, proto: int) -> bytes:
        """What a new node connection sends first: HELLO 3 for a RESP3 client, AUTH with the
        password when there is one (the nodes ask for the same password as the proxy)."""
        if self.password is None:
            return _HELLO3 if proto == 3 else b""
        auth = (b"HELLO", b"3", b"AUTH", b"default") if proto == 3 else (b"AUTH",)
        return resp.encode_command(*auth, self.password.encode())


class ProxyClient(redis.Redis):
    """A plain ``redis.Redis`` connected to a :class:`Proxy`; closing it stops the proxy.

    ``client.proxy`` is the proxy itself (its address, personality and ``stats``).
    """

    def __init__(self, proxy: Proxy, **kwargs: Any) -> None:
        self.proxy = proxy
        kwargs.setdefault("password", proxy.password)
        super().__init__(host=proxy.host, port=proxy.port, **kwargs)

    def close(self) -> None:
        """Close the client's connections, then stop its proxy."""
        try:
            super().close()
        finally:
            proxy = getattr(self, "proxy", None)
            if proxy is not None:
                proxy.stop()
