"""Every use of fakeredis's private API in one place, and the fakeredis releases it is tested with.

The emulator builds on fakeredis's internals: its per-connection ``FakeSocket`` (command lookup,
arity, transactions, pub/sub, CLIENT REPLY, its Lua runtime) and its server's databases (keys,
expiry times, the lock and condition variables that blocking commands wait on). None of that is
fakeredis's public API, so a fakeredis release may change it without notice. This module is the
only one in slotlab that imports fakeredis: the rest of the emulator calls the small interface
below (``Store``, ``NodeSocket``, the reply types), so a new fakeredis means changing this file.

At import it checks the installed fakeredis against the range the tests pass with
(``TESTED``, the same as in pyproject.toml) and refuses any other release with a message that
says what to install. Set ``SLOTLAB_UNTESTED_FAKEREDIS=1`` to try an untested release anyway
(a warning instead of the error), for example to test a new fakeredis before widening the range.
"""

from __future__ import annotations

import logging
import os
import re
import select
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import fakeredis
import redis

from slotlab import commands, errors
from slotlab.backends.emulated.long_double import incr_float
from slotlab.backends.emulated.monitor import ConnectionFeed, Monitors, redacted
from slotlab.resp import ProtocolError, RequestReader, encode_command, error_reply

#: The fakeredis releases the emulator is tested with: from the first to below the second.
#: pyproject.toml and environment.yml declare the same range; CI tests both ends. 2.39 lacks
#: ``FakeSocket._functions`` (FCALL); 2.38 and older lack the ``fakeredis._socket`` package.
TESTED: tuple[tuple[int, ...], tuple[int, ...]] = ((2, 40, 0), (2, 42))
#: What to install when the installed fakeredis is outside ``TESTED``.
INSTALL = 'pip install "fakeredis[lua]>=2.40,<2.42"'
#: The installed fakeredis release (``fakeredis.__version__``).
FAKEREDIS_VERSION: str = fakeredis.__version__


class UntestedFakeredis(ImportError):
    """The installed fakeredis is outside the range the emulated backend is tested with."""


def _release(version: str) -> tuple[int, ...]:
    """``"2.41.0"`` -> ``(2, 41, 0)``; a pre-release or local part ends the release."""
    parts: list[int] = []
    for piece in version.split("+")[0].split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits[0]))
        if digits[0] != piece:  # "0rc1": the release stops here
            break
    return tuple(parts)


def version_problem(version: str) -> str | None:
    """Why this fakeredis release is not one the emulator is tested with, or None if it is."""
    low, high = TESTED
    release = _release(version)
    if low <= release < high:
        return None
    where = "older" if release < low else "newer"
    low_text = ".".join(map(str, low))
    high_text = ".".join(map(str, high))
    return (
        f"slotlab's emulated backend is tested with fakeredis {low_text} up to (not including) "
        f"{high_text}, and this environment has fakeredis {version}, which is {where}: the "
        f"emulator reaches into fakeredis internals that change between releases. Install a "
        f"tested release: {INSTALL} (or set SLOTLAB_UNTESTED_FAKEREDIS=1 to try this one)."
    )


_PROBLEM = version_problem(FAKEREDIS_VERSION)
if _PROBLEM is not None:
    if os.environ.get("SLOTLAB_UNTESTED_FAKEREDIS", "") in ("", "0"):
        raise UntestedFakeredis(_PROBLEM)
    warnings.warn(_PROBLEM, RuntimeWarning, stacklevel=2)

try:
    from fakeredis._clients._tcp_server import TCPFakeRequestHandler
    from fakeredis._helpers import NoResponse, SimpleError, SimpleString
    from fakeredis._socket._fakesocket import FakeSocket
    from fakeredis._socket._resp import extract_command
except ImportError as exc:  # only reachable with SLOTLAB_UNTESTED_FAKEREDIS=1
    raise UntestedFakeredis(
        f"fakeredis {FAKEREDIS_VERSION} lacks an internal the emulator uses ({exc}). "
        f"Install a tested release: {INSTALL}"
    ) from exc

#: fakeredis's reply types: an error (``-ERR ...``), a status (``+OK``), no reply at all.
FakeError = SimpleError
FakeStatus = SimpleString
FakeNoResponse = NoResponse

__all__ = [
    "FAKEREDIS_VERSION",
    "INSTALL",
    "TESTED",
    "FakeError",
    "FakeNoResponse",
    "FakeStatus",
    "NodeSocket",
    "NotInFakeredis",
    "SocketOwner",
    "Store",
    "UntestedFakeredis",
    "start_standalone",
    "version_problem",
]


class NotInFakeredis(Exception):
    """fakeredis has no implementation of this command."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


# ---- a node's data ----------------------------------------------------------------------------


class Store:
    """One node's data: a fakeredis server (its databases) and the lock every command takes.

    A replica's store shares its master's databases and lock: it is always in sync.
    """

    def __init__(self, version: tuple[int, ...], master: Store | None = None) -> None:
        server: Any = fakeredis.FakeServer(version=version, server_type="redis")
        # An RLock lets a transaction hold the store while each queued command takes it again;
        # the databases' condition variables (blocking commands) are built on this lock.
        server.lock = threading.RLock()
        if master is not None:
            server.dbs = master.server.dbs
            server.lock = master.server.lock
        self.server: Any = server

    @property
    def lock(self) -> Any:
        """The lock around every command on this store (shared with its replicas)."""
        return self.server.lock

    def _db0(self) -> Any:
        return self.server.dbs[0]

    def set_time(self, now: float) -> None:
        """fakeredis reads the clock of a command from its databases: set it before one runs."""
        for db in self.server.dbs.values():
            db.time = now

    def wake_blocked(self) -> None:
        """Wake every command waiting on this store's databases (BLPOP and friends)."""
        with self.server.lock:
            for db in self.server.dbs.values():
                db.condition.notify_all()

    def live_items(self, now: float) -> Iterator[tuple[bytes, float | None]]:
        """(key, expiry time or None) for every live key of db 0, in the store's order."""
        for key, item in self._db0()._dict.items():
            if item.expireat is None or item.expireat >= now:
                yield key, item.expireat

    def key_exists(self, key: bytes, now: float) -> bool:
        """True when db 0 holds a live key, without touching it (``LOOKUP_NOTOUCH``)."""
        item = self._db0()._dict.get(key)
        return item is not None and not (item.expireat is not None and item.expireat < now)

    def key_count(self) -> int:
        """The keys of db 0 as DBSIZE counts them."""
        return len(self._db0())

    def stored_count(self) -> int:
        """Every key db 0 holds, expired or not (CLUSTER FLUSHSLOTS needs an empty store)."""
        return len(self._db0()._dict)

    def expires_count(self) -> int:
        """The keys of db 0 with an expiry time (INFO keyspace's ``expires``)."""
        return sum(1 for item in self._db0()._dict.values() if item.expireat is not None)

    def set_script_socket(self, sock: NodeSocket) -> None:
        """The connection whose script is about to run (fakeredis's Lua calls reach it)."""
        self.server._lua_current_socket[0] = sock

    def release(self, sock: NodeSocket) -> None:
        """Close a connection and let fakeredis forget it (watches, subscriptions)."""
        server = self.server
        with server.lock:
            sock.close()
            while server.closed_sockets:
                ref = server.closed_sockets.pop()
                closed = ref()
                if closed is not None:
                    closed._cleanup(server)


# ---- one connection's state -------------------------------------------------------------------


class SocketOwner(Protocol):
    """What a ``NodeSocket`` calls back into: the emulator's client connection."""

    peer: str
    local: str
    fd: int

    @property
    def in_script(self) -> bool: ...

    def on_push(self, msg: Any) -> None: ...

    def script_call(self, lua_runtime: Any, raw: Sequence[Any]) -> Any: ...

    def function_call(self, lua_runtime: Any, raw: Sequence[Any]) -> Any: ...


class NodeSocket(FakeSocket):
    """fakeredis's per-connection state, with replies and ``redis.call`` routed to the client."""

    def __init__(self, store: Store, owner: SocketOwner) -> None:
        super().__init__(
            store.server,
            0,
            client_class=redis.Redis,
            client_info={"addr": owner.peer, "laddr": owner.local, "fd": owner.fd},
        )
        self._slotlab = owner

    # ---- what fakeredis calls ---------------------------------------------------------------

    def put_response(self, msg: Any) -> None:
        self._slotlab.on_push(msg)

    # Redis computes these in long double; fakeredis in double.
    def incrbyfloat(self, key: Any, amount: float) -> bytes:
        encoded = _long_double(key.get(b"0"), repr(amount).encode())
        key.update(encoded)
        return encoded

    def hincrbyfloat(self, key: Any, field: bytes, amount: bytes) -> bytes:
        encoded = _long_double(key.value.get(field, b"0"), amount)
        key.value.update({field: encoded}, clear_expiration=False)
        key.updated()
        self.add_subkey_event(b"hincrbyfloat", key.key, (field,))
        return encoded

    def _lua_redis_call(self, lua_runtime: Any, expected_globals: Any, op: Any, *args: Any) -> Any:
        return self._slotlab.script_call(lua_runtime, (op, *args))

    def _function_redis_call(self, lua_runtime: Any, read_only: bool, *args: Any) -> Any:
        """``redis.call`` inside a FUNCTION (FCALL): the same checks as in an EVAL script."""
        if not self._slotlab.in_script:
            return super()._function_redis_call(lua_runtime, read_only, *args)
        return self._slotlab.function_call(lua_runtime, args)

    def _lua_redis_pcall(self, lua_runtime: Any, expected_globals: Any, op: Any, *args: Any) -> Any:
        try:
            return self._slotlab.script_call(lua_runtime, (op, *args))
        except Exception as exc:  # noqa: BLE001 - pcall turns any error into an error table
            return lua_runtime.table_from({b"err": str(exc).encode()})

    # ---- what the emulator calls ------------------------------------------------------------

    def run_command(self, argv: Sequence[bytes]) -> Any:
        """Run one command on fakeredis (the store's lock held); fakeredis's raw reply value.

        Raises NotInFakeredis when fakeredis has no such command.
        """
        cmd, args = extract_command(list(argv))
        try:
            func, sig = self._name_to_func(cmd)
        except SimpleError:
            func = sig = None
        if func is None or sig is None:
            raise NotInFakeredis(str(cmd))
        try:
            sig.check_arity(args, self.version)
        except SimpleError as exc:
            return exc
        return self._run_command(func, sig, args, False)

    @property
    def blocked(self) -> bool:
        """True while a blocking command of this connection waits."""
        return bool(self._blocked)

    def time_out_block(self) -> None:
        """Make the blocking command that waits return as on its timeout (store lock held)."""
        if self._blocked:
            self._unblock_reason = b"timeout"

    def take_reply_suppressed(self) -> bool:
        """CLIENT REPLY OFF|SKIP: whether this reply is dropped; SKIP moves on to the next."""
        suppressed = bool(self._reply_off or self._reply_skip)
        self._reply_skip, self._reply_skip_next = self._reply_skip_next, False
        return suppressed

    def reset_reply_mode(self) -> None:
        """CLIENT REPLY ON (RESET)."""
        self._reply_off = self._reply_skip = self._reply_skip_next = False

    @property
    def subscriptions(self) -> int:
        """How many channels and patterns this connection is subscribed to."""
        return int(getattr(self, "_pubsub", 0))

    @property
    def client_id(self) -> Any:
        return self._client_info.get("id", 1)

    def set_client_name(self, name: str | None) -> None:
        """CLIENT SETNAME as CLIENT LIST shows it (None: no name)."""
        if name is None:
            self._client_info.pop("name", None)
        else:
            self._client_info["name"] = name

    def set_protocol(self, version: int) -> None:
        """The protocol CLIENT INFO shows (HELLO, RESET)."""
        self._client_info["resp"] = version

    @property
    def watch_notified(self) -> bool:
        """True when a watched key changed since WATCH (EXEC must fail)."""
        return bool(self._watch_notified)

    def clear_watches(self) -> None:
        self._clear_watches()

    @property
    def in_transaction(self) -> bool:
        """While True, blocking commands do not block (inside EXEC, a script, a function)."""
        return bool(self._in_transaction)

    @in_transaction.setter
    def in_transaction(self, value: bool) -> None:
        self._in_transaction = value

    def lua_runtime(self) -> Any:
        """The store's Lua runtime (one per fakeredis server)."""
        return self._get_server_runtime(self._server)

    def run_lua(self, fn: Any, keys: Any, args: Any, runner: Any) -> Any:
        """Call ``runner(fn, keys, args)`` with fakeredis set up for a RESP2 script."""
        self._script_resp = 2
        try:
            return runner(fn, keys, args)
        finally:
            self._script_resp = None

    def convert_lua_result(self, result: Any) -> Any:
        """A script's Lua return value as fakeredis's reply value."""
        return self._convert_lua_result(result, nested=False)

    def convert_redis_result(self, lua_runtime: Any, result: Any) -> Any:
        """A command's reply value as ``redis.call`` returns it to Lua."""
        return self._convert_redis_result(lua_runtime, result)

    def function_flags(self, name: bytes) -> set[bytes] | None:
        """The flags of a loaded FUNCTION, or None when there is no such function."""
        function = self._functions().find(name)
        return None if function is None else set(function.flags)


def _long_double(current: bytes, increment: bytes) -> bytes:
    try:
        return incr_float(current, increment)
    except ValueError as exc:
        raise SimpleError(str(exc)) from None


_LOG = logging.getLogger("slotlab.emulated")


class _GuardedHandler(TCPFakeRequestHandler):
    """fakeredis's TCP connection with the server's first checks in front of it, in the server's
    order (``processCommand``): an HTTP request drops the connection, then lookup and arity, then
    NOAUTH until the client authenticates. AUTH, HELLO's AUTH option and RESET are answered here
    with the rule the emulated nodes use (``slotlab.commands``); everything else runs on
    fakeredis as before, one command at a time, so the replies keep their order."""

    server: _GuardedServer

    def setup(self) -> None:
        super().setup()
        self._requests = RequestReader()
        self._authenticated = commands.authenticated_after_reset(self.server.password)
        host, port = self.client_address[:2]
        self._feed = ConnectionFeed(self.server.monitors, f"{host}:{port}")
        self._open = True
        self._write_lock = threading.Lock()

    def finish(self) -> None:
        self._open = False
        super().finish()

    def _send_line(self, line: bytes) -> None:
        with self._write_lock:
            self.connection.sendall(line)

    def _send_error(self, text: str) -> None:
        self.wfile.write(error_reply(text))
        self.wfile.flush()

    def _drain(self) -> None:
        conn = self.current_client
        while conn.can_read():
            try:
                response = conn.read_response()
            except redis.RedisError as exc:  # an error reply, raised the way redis-py does
                response = exc
            self.writer.dump(response)

    def _run(self, argv: list[bytes]) -> None:
        self.current_client.get_socket().sendall(encode_command(*argv))
        self._drain()

    def _command(self, argv: list[bytes]) -> bool:
        """One request; False when the connection must close."""
        if commands.is_security_attack(argv):
            commands.security_warning(_LOG)
            return False
        name = argv[0].lower()
        password = self.server.password
        if not self._authenticated:
            spec, problem = commands.check_command(argv)
            if problem is None and spec is not None:
                problem = commands.auth_required(spec, False)
            if problem is not None:
                self._send_error(problem)
                return True
        if name == b"config" and len(argv) > 1 and argv[1].lower() == b"set":
            refused = commands.config_set_refusal(argv)
            if refused is not None:
                self._send_error(refused)
                return True
        if name == b"auth":
            problem = commands.check_auth(argv, password)
            if problem is not None:
                self._send_error(problem)
            else:
                self._authenticated = True
                self.wfile.write(b"+OK\r\n")
                self.wfile.flush()
            if self._feed.monitors:
                self._feed.after(commands.lookup(argv), redacted(argv))
            return True
        if name == b"hello":
            hello = commands.parse_hello(argv, password, self._authenticated)
            if isinstance(hello, str):
                self._send_error(hello)
                return True
            self._authenticated = self._authenticated or hello.authenticated
            plain = [argv[0]] + ([str(hello.protocol).encode()] if hello.protocol else [])
            if hello.name is not None:
                plain += [b"SETNAME", hello.name]
            self._run(plain)  # fakeredis's own HELLO, without the credentials
            if self._feed.monitors:
                self._feed.after(commands.lookup(argv), redacted(argv))
            return True
        if name == b"monitor":
            self.wfile.write(self._feed.start(self._send_line, lambda: self._open))
            return True
        feed = self._feed if self._feed.monitors else None
        if feed is not None:
            spec, problem = commands.check_command(argv)
            feed.before(spec if problem is None else None, argv)
        self._run(argv)
        if feed is not None:
            feed.after(spec if problem is None else None, argv)
        if name == b"reset":
            self._authenticated = commands.authenticated_after_reset(password)
        return name != b"quit"

    def handle(self) -> None:
        sock = self.connection
        while not self.server._shutdown_event.is_set():
            try:
                if self.current_client.can_read():  # a reply fakeredis pushed by itself
                    self._drain()
                    continue
                readable, _, _ = select.select([sock], [], [], 0.01)
                if not readable:
                    continue
                try:
                    data = sock.recv(1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    return
                self._requests.feed(data)
                while True:
                    try:
                        argv = self._requests.get_command()
                    except ProtocolError as exc:
                        self._send_error(errors.PROTOCOL_ERROR.format(reason=exc))
                        return
                    if argv is None:
                        break
                    if argv and not self._command(argv):
                        return
            except (ConnectionError, OSError):
                return


class _GuardedServer(fakeredis.TcpFakeServer):
    """fakeredis's TCP server whose connections ask for ``password`` (None: no password)."""

    def __init__(self, address: tuple[str, int], password: str | None) -> None:
        self.password = password
        self.monitors = Monitors()  # MONITOR clients (slotlab.backends.emulated.monitor)
        super().__init__(address, server_version=(7, 0))
        self.RequestHandlerClass = _GuardedHandler


def start_standalone(host: str, password: str | None = None) -> tuple[Any, int]:
    """A plain fakeredis server (no cluster) on a free port of ``host``: (server, port). With a
    ``password`` it asks for it as a server with ``requirepass`` does.

    The caller runs ``server.serve_forever`` in a thread and stops it with ``shutdown()``.
    """
    server = _GuardedServer((host, 0), password)
    return server, int(server.server_address[1])
