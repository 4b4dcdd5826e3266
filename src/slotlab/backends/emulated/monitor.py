"""``MONITOR`` for the emulated cluster's nodes and its standalone server.

A line is what ``replicationFeedMonitors`` (replication.c) writes: the time as
``seconds.microseconds``, ``[db client]`` (the client's ``ip:port``, or ``lua`` for a command a
script runs), then every argument as ``sdscatrepr`` quotes it, as a status reply::

    +1796313005.738450 [0 127.0.0.1:47808] "SET" "a\\"b" "v v"

What is fed follows ``call()`` (server.c, 7.0): a command is shown after it ran, so a command the
server refused before running it (unknown, wrong arity, ``CROSSSLOT``, ``MOVED``) never shows;
commands flagged ``admin`` or ``skip_monitor`` are not shown, except EVAL/EVALSHA/FCALL, which
``evalGenericCommand`` shows BEFORE the script runs (so their ``lua`` lines follow them); a
transaction's commands show when EXEC runs them, then EXEC; AUTH's and HELLO's credentials show
as ``(redacted)``.

The standalone server runs a script inside fakeredis, whose ``redis.call`` this module does not
see: its captures have the EVAL line but not the ``lua`` lines after it. The cluster nodes run
scripts in slotlab's own bridge and show them.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from slotlab.backends.emulated.registry import _handles
from slotlab.commands import CommandSpec
from slotlab.resp import OK

if TYPE_CHECKING:
    from slotlab.backends.emulated.client import _Client

__all__ = ["Monitors", "format_line", "monitors_of", "repr_arg"]

_ESCAPES: Final = {
    ord("\\"): b"\\\\", ord('"'): b'\\"', ord("\n"): b"\\n", ord("\r"): b"\\r",
    ord("\t"): b"\\t", ord("\a"): b"\\a", ord("\b"): b"\\b",
}  # fmt: skip
_REPR: Final = [
    _ESCAPES.get(c, bytes([c]) if 0x20 <= c <= 0x7E else b"\\x%02x" % c) for c in range(256)
]
#: Scripts: shown first, by evalGenericCommand / fcallCommandGeneric.
SHOWN_BEFORE: Final = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})


def repr_arg(arg: bytes) -> bytes:
    """``sdscatrepr``: the argument in double quotes, escaped; ``isprint`` bytes stay."""
    if arg.isascii() and arg.isalnum():
        return b'"' + arg + b'"'
    return b'"' + b"".join(_REPR[c] for c in arg) + b'"'


def format_line(ts: float, db: int, client: str, argv: Sequence[bytes]) -> bytes:
    """One MONITOR line, as the status reply the server sends (``+...\\r\\n``)."""
    sec = int(ts)
    usec = int((ts - sec) * 1_000_000)
    head = b"+%d.%06d [%d %s]" % (sec, usec, db, client.encode())
    return head + b"".join(b" " + repr_arg(a) for a in argv) + b"\r\n"


def shown(spec: CommandSpec) -> bool:
    """True when ``call()`` feeds this command to monitors after it runs."""
    return not spec.flags & {"admin", "skip_monitor"}


class Monitors:
    """The MONITOR clients of one server: each a function that sends a line, False when gone."""

    def __init__(self) -> None:
        self._sinks: list[Callable[[bytes], bool]] = []
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._sinks)

    def add(self, sink: Callable[[bytes], bool]) -> None:
        with self._lock:
            self._sinks.append(sink)

    def feed(self, db: int, client: str, argv: Sequence[bytes]) -> None:
        """Send every monitor the line of ``argv``; forget monitors whose connection is gone."""
        if not self._sinks:
            return
        line = format_line(time.time(), db, client, argv)
        with self._lock:
            self._sinks = [sink for sink in self._sinks if sink(line)]


_NODE_MONITORS: weakref.WeakKeyDictionary[Any, Monitors] = weakref.WeakKeyDictionary()


def monitors_of(node: Any) -> Monitors:
    """The monitors of one emulated node."""
    found = _NODE_MONITORS.get(node)
    if found is None:
        found = _NODE_MONITORS[node] = Monitors()
    return found


def feed_client(c: _Client, spec: CommandSpec, argv: Sequence[bytes], before: bool) -> None:
    """Feed the command a cluster node's client runs (``before``: the script commands' turn)."""
    monitors = _NODE_MONITORS.get(c.node)
    if not monitors:
        return
    if before != (spec.name in SHOWN_BEFORE):
        return
    if before or shown(spec):
        if spec.name in ("auth", "hello"):
            argv = redacted(argv)
        monitors.feed(0, "lua" if c.in_script else c.peer, argv)


@_handles("monitor")
def _monitor(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    transport = c.transport

    def sink(line: bytes) -> bool:
        if transport is None or transport.is_closing() or c.closing:
            return False
        transport.write(line)
        return True

    monitors_of(c.node).add(sink)
    return OK


_TX_CONTROL: Final = frozenset({b"exec", b"discard", b"multi", b"watch", b"quit", b"reset"})


class ConnectionFeed:
    """What one connection of the standalone server shows its server's monitors: its commands
    once they ran, a transaction's commands at EXEC, in the database it has SELECTed."""

    def __init__(self, monitors: Monitors, peer: str) -> None:
        self.monitors = monitors
        self.peer = peer
        self.db = 0
        self.tx: list[list[bytes]] | None = None

    def start(self, write: Callable[[bytes], None], is_open: Callable[[], bool]) -> bytes:
        """MONITOR on this connection: every line from now on goes to ``write``; its reply."""

        def sink(line: bytes) -> bool:
            if not is_open():
                return False
            try:
                write(line)
            except OSError:
                return False
            return True

        self.monitors.add(sink)
        return b"+OK\r\n"

    def before(self, spec: CommandSpec | None, argv: Sequence[bytes]) -> None:
        """Called before a command that passed the server's checks runs."""
        if spec is not None and spec.name in SHOWN_BEFORE and self.tx is None:
            self.monitors.feed(self.db, self.peer, argv)

    def after(self, spec: CommandSpec | None, argv: list[bytes]) -> None:
        """Called after a command ran (``spec`` None: the server refused it)."""
        if spec is None:
            return
        name = argv[0].lower()
        if self.tx is not None and name not in _TX_CONTROL:
            self.tx.append(argv)  # queued: shown when EXEC runs it
            return
        if name == b"select" and len(argv) == 2 and argv[1].isdigit() and int(argv[1]) < 16:
            self.db = int(argv[1])
        if name == b"exec" and self.tx is not None:
            queued, self.tx = self.tx, None
            for q in queued:
                self.monitors.feed(self.db, self.peer, q)
        elif name == b"discard":
            self.tx = None
        if spec.name not in SHOWN_BEFORE and shown(spec):
            self.monitors.feed(self.db, self.peer, argv)
        if name == b"multi" and self.tx is None:
            self.tx = []


def redacted(argv: Sequence[bytes]) -> list[bytes]:
    """``argv`` as MONITOR shows it: the credentials of AUTH and HELLO ... AUTH hidden
    (``redactClientCommandArgument``)."""
    name = argv[0].lower()
    if name == b"auth":
        return [argv[0], *(b"(redacted)" for _ in argv[1:])]
    out = list(argv)
    if name == b"hello":
        for i in range(2, len(out) - 2):
            if out[i].lower() == b"auth":
                out[i + 1] = out[i + 2] = b"(redacted)"
                break
    return out
