"""Record live traffic with ``MONITOR``: on every master of a lab or cluster, or on one server.

Read-only: each endpoint gets one connection that sends ``MONITOR`` and nothing else (AUTH
first when a password is given); the connections are closed when the capture stops, so no
client is left behind. ``MONITOR`` shows what a server EXECUTES: a command a cluster node
refuses (``CROSSSLOT``, ``MOVED``) never appears. To audit an application before it moves to a
cluster, capture it on the single server it uses today (``lab.standalone_client()`` in the lab).

Stopping drains: MONITOR lines of commands that ran just before the stop may still be on their
way, so :meth:`Capture.stop` sends ``ECHO`` with a unique marker to each server on a second,
short-lived connection and reads until the marker's own line arrives (a server feeds its
monitors in the order it runs commands). That connection's lines (its ``AUTH``, the marker)
never enter the capture.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

import redis
from redis.cluster import RedisCluster

from slotlab.audit.parse import BadInput

__all__ = ["Capture", "capture"]

_POLL = 0.1  # seconds a reader waits for a line before looking at the stop flag
DRAIN_TIMEOUT = 5.0
"""Seconds :meth:`Capture.stop` waits for each server's marker line before giving up on it."""
_MARKER = b"slotlab-audit-drain-"


class _Endpoint:
    def __init__(self, host: str, port: int, password: str | None, username: str | None) -> None:
        self.host, self.port = host, port
        self.password, self.username = password, username
        self.conn = self.connection()
        self.lines: list[tuple[float, bytes]] = []
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        #: the drain marker this endpoint's reader waits for, and the event it sets on seeing it
        self.marker: bytes | None = None
        self.drained = threading.Event()
        #: lines from this index on that the drain connection sent (client field) are dropped
        self.drain_from = 0
        self.drain_client: bytes | None = None

    def connection(self) -> redis.Connection:
        return redis.Connection(host=self.host, port=self.port, password=self.password,
                                username=self.username, socket_timeout=5,
                                socket_connect_timeout=5)  # fmt: skip

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class Capture:
    """A running ``MONITOR`` capture; stop it with :meth:`stop` (or by leaving ``with``)."""

    def __init__(self, endpoints: list[_Endpoint], seconds: float | None) -> None:
        self._endpoints = endpoints
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self.seconds = seconds
        self.started = time.monotonic()
        for ep in endpoints:
            ep.conn.connect()
            ep.conn.send_command("MONITOR")
            reply = ep.conn.read_response()
            if reply not in (b"OK", "OK"):
                self._close_all()
                raise redis.ResponseError(f"MONITOR on {ep.address} answered {reply!r}")
        for ep in endpoints:
            ep.thread = threading.Thread(target=self._read, args=(ep,), daemon=True,
                                         name=f"slotlab-audit-monitor-{ep.address}")
            ep.thread.start()
        if seconds is not None:
            timer = threading.Timer(seconds, self.stop)
            timer.daemon = True
            timer.start()

    def _read(self, ep: _Endpoint) -> None:
        conn = ep.conn
        while not self._stop.is_set():
            try:
                if not conn.can_read(timeout=_POLL):
                    continue
                line = conn.read_response()
            except (redis.ConnectionError, redis.TimeoutError, OSError, ValueError) as exc:
                if not self._stop.is_set():
                    ep.error = exc
                return
            if line is None:
                continue
            raw = line if isinstance(line, bytes) else str(line).encode()
            marker = ep.marker
            if marker is not None and raw.endswith(b' "ECHO" "' + marker + b'"'):
                # "<time> [<db> <client>] ...": the drain connection's own address
                ep.drain_client = raw[raw.find(b"[") + 1 : raw.find(b"]")].split(b" ", 1)[-1]
                ep.drained.set()
                return
            try:
                ts = float(raw.split(b" ", 1)[0])
            except ValueError:
                ts = 0.0
            ep.lines.append((ts, raw))

    def _close_all(self) -> None:
        for ep in self._endpoints:
            ep.conn.disconnect()

    def _drain(self) -> None:
        """Send each server a unique ``ECHO`` marker and wait until its reader has read the
        marker's line: every line of a command that ran before it has then been read."""
        waiting = []
        for ep in self._endpoints:
            if ep.error is not None or ep.thread is None or not ep.thread.is_alive():
                continue
            marker = _MARKER + uuid.uuid4().hex.encode()
            ep.drain_from = len(ep.lines)
            ep.marker = marker
            conn = ep.connection()
            try:
                conn.connect()
                conn.send_command("ECHO", marker)
                conn.read_response()
            except (redis.RedisError, OSError) as exc:
                ep.error = RuntimeError(
                    f"could not drain the capture on {ep.address} (ECHO on a second "
                    f"connection failed: {exc}); its last lines may be missing")  # fmt: skip
                continue
            finally:
                conn.disconnect()
            waiting.append(ep)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        for ep in waiting:
            if not ep.drained.wait(max(0.0, deadline - time.monotonic())):
                ep.error = TimeoutError(
                    f"MONITOR on {ep.address} did not show the drain marker within "
                    f"{DRAIN_TIMEOUT:g}s; lines of the last commands may be missing")  # fmt: skip

    def stop(self) -> None:
        """Drain (see the module's docstring), stop reading and close every MONITOR
        connection (waits for the readers). A server that did not show its marker in time
        is named in :attr:`errors`."""
        if self._stopped.is_set():
            return
        if not self._stop.is_set() and threading.current_thread() not in self._threads():
            self._drain()
        self._stop.set()
        for ep in self._endpoints:
            if ep.thread is not None and ep.thread is not threading.current_thread():
                ep.thread.join(timeout=5)
        self._close_all()
        self._stopped.set()

    def _threads(self) -> list[threading.Thread]:
        return [ep.thread for ep in self._endpoints if ep.thread is not None]

    def wait(self) -> None:
        """Wait until the capture stops (after ``seconds``); stop it now if it has no limit."""
        if self.seconds is None:
            self.stop()
        self._stopped.wait()

    @property
    def lines(self) -> list[str]:
        """Every line captured, all endpoints merged in time order (MONITOR's own format)."""
        merged = sorted((item for ep in self._endpoints for item in _kept(ep)),
                        key=lambda item: item[0])  # fmt: skip
        return [raw.decode("utf-8", "surrogateescape") for _ts, raw in merged]

    @property
    def errors(self) -> dict[str, BaseException]:
        """Endpoints whose connection failed while capturing, with the error."""
        return {ep.address: ep.error for ep in self._endpoints if ep.error is not None}

    def report(self, **kw: Any) -> Any:
        """Stop (or wait for ``seconds``), then audit what was captured (``audit_lines``)."""
        from slotlab.audit import audit_lines

        self.wait()
        return audit_lines(self.lines, source="monitor", **kw)

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()


def _kept(ep: _Endpoint) -> list[tuple[float, bytes]]:
    """The endpoint's lines without those of its drain connection (its AUTH, CLIENT SETINFO)."""
    client = ep.drain_client
    if client is None:
        return ep.lines
    tail = b" " + client + b"] "
    return ep.lines[: ep.drain_from] + [
        item for item in ep.lines[ep.drain_from :] if tail not in item[1][:200]
    ]


def _endpoints(target: Any, password: str | None) -> list[_Endpoint]:
    from slotlab.lab import Lab

    if isinstance(target, Lab):
        pw = target.password
        return [_Endpoint(n.host, n.port, pw, None) for n in target.topology().masters]
    if isinstance(target, RedisCluster):
        kw = target.get_default_node().redis_connection.connection_pool.connection_kwargs
        return [_Endpoint(n.host, n.port, kw.get("password"), kw.get("username"))
                for n in target.get_primaries()]  # fmt: skip
    if isinstance(target, redis.Redis):
        kw = target.connection_pool.connection_kwargs
        if "host" not in kw:
            raise BadInput("capture needs a TCP client (host and port), not a Unix socket one")
        return [_Endpoint(kw["host"], kw["port"], kw.get("password"), kw.get("username"))]
    if isinstance(target, str):
        url = urlparse(target)
        if url.scheme not in ("redis", "") or not url.hostname:
            raise BadInput(f"{target!r}: give a redis://host:port URL, a client, or a Lab")
        return [_Endpoint(url.hostname, url.port or 6379, url.password or password,
                          url.username or None)]  # fmt: skip
    if isinstance(target, Iterable):
        return [ep for t in target for ep in _endpoints(t, password)]
    raise BadInput(f"capture cannot read from {type(target).__name__}: give a Lab, a "
                   f"redis.Redis, a RedisCluster or a redis:// URL")  # fmt: skip


def capture(target: Any, seconds: float | None = None, *, password: str | None = None) -> Capture:
    """Start ``MONITOR`` on ``target`` and return the running :class:`Capture`.

    ``target``: a ``Lab`` (every master), a ``RedisCluster`` (every primary), a ``redis.Redis``
    (its server: e.g. ``lab.standalone_client()``), a ``redis://`` URL, or a list of these.
    ``seconds``: stop by itself after this long (``cap.report()`` then waits for it); without
    it, the capture runs until :meth:`Capture.stop` or the end of a ``with`` block.
    """
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be more than 0, not {seconds!r}")
    return Capture(_endpoints(target, password), seconds)
