"""Fidelity: every case of ``tests/fidelity_cases.py`` gives the same outcome on both backends.

The real cluster (redis-server 7.0+) is the reference, twice over:

- live: where a redis-server runs, each case runs on a real cluster and on an emulated one and
  the outcomes must be equal (without a server these skip with one line, except under
  ``SLOTLAB_REQUIRE_REAL=1`` (CI), where they fail);
- recorded: on every machine, each case's outcome on the emulated cluster must equal the real
  server's outcome recorded in ``tests/data/fidelity_recorded.json`` (``tests/regen_fidelity.py``
  writes it from a real cluster), normalised the same way. ``test_recording_is_current`` fails
  when a case changed without a new recording.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from slotlab.lab import Lab, start_lab
from slotlab.resp import encode_command
from tests import regen_fidelity
from tests.fidelity_cases import CASES, PASSWORD, RC, REPLICA_CASES, Anon, Case, Fn, N, Raw, Step

# ---- running a case --------------------------------------------------------------------------


def read_reply(sock: socket.socket, buf: bytearray) -> bytes | None:
    """Read exactly one RESP2/RESP3 reply; its bytes, or None if the server closed first."""

    def need(n: int) -> bool:
        while len(buf) < n:
            chunk = sock.recv(1 << 16)
            if not chunk:
                return False
            buf.extend(chunk)
        return True

    def line(pos: int) -> int | None:
        while True:
            end = buf.find(b"\r\n", pos)
            if end != -1:
                return end
            chunk = sock.recv(1 << 16)
            if not chunk:
                return None
            buf.extend(chunk)

    def skip(pos: int) -> int | None:
        if not need(pos + 1):
            return None
        kind = bytes(buf[pos : pos + 1])
        end = line(pos)
        if end is None:
            return None
        head = bytes(buf[pos + 1 : end])
        nxt = end + 2
        if kind in (b"+", b"-", b":", b"_", b",", b"#", b"("):
            return nxt
        if kind in (b"$", b"=", b"!"):
            n = int(head)
            if n < 0:
                return nxt
            return nxt + n + 2 if need(nxt + n + 2) else None
        if kind in (b"*", b"~", b">", b"%", b"|"):
            n = int(head)
            if kind in (b"%", b"|"):
                n *= 2
            for _ in range(max(n, 0)):
                p = skip(nxt)
                if p is None:
                    return None
                nxt = p
            return nxt
        raise AssertionError(f"not RESP: {bytes(buf[pos:pos + 40])!r}")

    end = skip(0)
    if end is None:
        return None
    data = bytes(buf[:end])
    del buf[:end]
    return data


def _with_password(request: Any, password: str | None) -> Any:
    """``PASSWORD`` in a request's arguments stands for the lab's password."""
    if isinstance(request, bytes):
        return request
    return tuple(password or "" if a == PASSWORD else a for a in request)


def _wire(request: Any) -> bytes:
    if isinstance(request, bytes):
        return request
    return encode_command(*request)


class Ctx:
    """One backend's lab, its clients, and how to run and normalise a case on it."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.nodes = lab.nodes
        self._plain: dict[tuple[int, int], redis.Redis] = {}
        self.rc: RedisCluster = lab.cluster_client()
        self._resetters = [
            redis.Redis(host=n.host, port=n.port, protocol=2, password=lab.password)
            for n in self.nodes
        ]
        self._subs = self._substitutions()

    # helpers the cases use
    def plain(self, i: int, proto: int = 3, fresh: bool = False) -> redis.Redis:
        """A plain client to node i (kept open across steps unless ``fresh``)."""
        node = self.nodes[i]
        if fresh:
            return redis.Redis(
                host=node.host, port=node.port, protocol=proto, decode_responses=True,
                password=self.lab.password,
            )
        key = (i, proto)
        if key not in self._plain:
            self._plain[key] = redis.Redis(
                host=node.host, port=node.port, protocol=proto, decode_responses=True,
                password=self.lab.password,
            )
        return self._plain[key]

    def node_id(self, i: int) -> str:
        return self.nodes[i].node_id

    def port(self, i: int) -> int:
        return self.nodes[i].port

    @staticmethod
    def outcome(fn: Callable[[], Any]) -> Any:
        """The value fn returns, or ("error", class name, message) for what it raises."""
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - the error is the outcome
            return ("error", type(exc).__name__, str(exc))

    def rc_pipeline(self, calls: list[tuple[Any, ...]], transaction: bool = False) -> Any:
        def run() -> Any:
            pipe = self.rc.pipeline(transaction=transaction)
            for name, *args in calls:
                getattr(pipe, name)(*args)
            return pipe.execute()

        return self.outcome(run)

    # running
    def reset(self) -> None:
        """FLUSHALL, SCRIPT FLUSH, FUNCTION FLUSH on every node; fresh client connections."""
        for r in self._resetters:
            pipe = r.pipeline(transaction=False)
            pipe.execute_command("FLUSHALL")  # a replica refuses; its master's flush reaches it
            pipe.execute_command("SCRIPT", "FLUSH")
            pipe.execute_command("FUNCTION", "FLUSH")
            pipe.execute(raise_on_error=False)
        for client in self._plain.values():
            client.connection_pool.disconnect()

    def step(self, step: Step) -> Any:
        if isinstance(step, N):
            client = self.plain(step.node, step.proto)
            return self.outcome(lambda: client.execute_command(*step.args))
        if isinstance(step, Raw):
            return self._raw(step)
        if isinstance(step, RC):
            return self.outcome(lambda: getattr(self.rc, step.method)(*step.args, **step.kwargs))
        if isinstance(step, Fn):
            return self.outcome(lambda: step.fn(self))
        raise TypeError(step)

    def _raw(self, step: Raw) -> list[Any]:
        node = self.nodes[step.node]
        out: list[Any] = []
        with socket.create_connection((node.host, node.port), timeout=5) as sock:
            buf = bytearray()
            password = self.lab.password
            if password is not None and not isinstance(step, Anon):
                sock.sendall(_wire(("AUTH", password)))
                read_reply(sock, buf)
            if step.proto == 3:
                sock.sendall(_wire(("HELLO", "3")))
                read_reply(sock, buf)
            sock.sendall(b"".join(_wire(_with_password(r, password)) for r in step.requests))
            count = step.replies if step.replies is not None else len(step.requests)
            for _ in range(count):
                reply = read_reply(sock, buf)
                out.append(reply if reply is not None else "<closed>")
            # After a protocol error (or QUIT) the server closes the connection: show it.
            try:
                sock.sendall(_wire(("PING", "still-open?")))
                after = read_reply(sock, buf)
                out.append("<closed>" if after is None else "<open>")
            except (ConnectionResetError, BrokenPipeError):
                out.append("<closed>")
        return out

    def run(self, case: Case) -> Any:
        self.reset()
        for step in case.setup:
            self.step(step)
        outcomes = self.normalise([self.step(s) for s in case.steps])
        if case.normalise is not None:
            outcomes = case.normalise(outcomes)
        return outcomes

    # normalising
    def _substitutions(self) -> list[tuple[str, str]]:
        subs = []
        for i, n in enumerate(self.nodes):
            subs.append((n.node_id, f"<id{i}>"))
            subs.append((f"{n.host}:{n.port}", f"<addr{i}>"))
        return subs

    def normalise(self, value: Any) -> Any:
        if isinstance(value, Exception):  # an error inside an EXEC or pipeline reply
            return ("error", type(value).__name__, self.normalise(str(value)))
        if isinstance(value, str):
            for old, new in self._subs:
                value = value.replace(old, new)
            return re.sub(r"@\d+\b", "@<bus>", value)
        if isinstance(value, bytes):
            for old, new in self._subs:
                value = value.replace(old.encode(), new.encode())
            for i, n in enumerate(self.nodes):
                value = value.replace(b":%d\r\n" % n.port, b":<port%d>\r\n" % i)
                value = value.replace(b"\r\n%d\r\n" % n.port, b"\r\n<port%d>\r\n" % i)
            return value
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            for i, n in enumerate(self.nodes):
                if value == n.port and value > 16383:
                    return f"<port{i}>"
            return value
        if isinstance(value, (list, tuple)):
            return type(value)(self.normalise(v) for v in value)
        if isinstance(value, dict):
            return {self.normalise(k): self.normalise(v) for k, v in value.items()}
        if isinstance(value, (set, frozenset)):
            return sorted((self.normalise(v) for v in value), key=repr)
        return value

    def close(self) -> None:
        for c in [*self._plain.values(), *self._resetters]:
            c.close()


@pytest.fixture(scope="session")
def emulated_lab() -> Iterator[Lab]:
    """One 3-master emulated cluster for the session (it starts in milliseconds)."""
    lab = start_lab(masters=3, backend="emulated")
    yield lab
    lab.stop()


@pytest.fixture(scope="session")
def emu_ctx(emulated_lab: Lab) -> Iterator[Ctx]:
    ctx = Ctx(emulated_lab)
    yield ctx
    ctx.close()


@pytest.fixture(scope="session")
def real_ctx(real_server: Any) -> Iterator[Ctx]:
    """A real lab of its own, started as labs start by default (with a password), like the
    emulated one: the AUTH cases send SHUTDOWN and CLUSTER RESET without it."""
    lab = start_lab(masters=3, backend="real")
    ctx = Ctx(lab)
    yield ctx
    ctx.close()
    lab.stop()


def _params(cases: list[Case] = CASES) -> list[Any]:
    params = []
    for c in cases:
        marks = [pytest.mark.xfail(strict=True, reason=c.diff)] if c.diff else []
        params.append(pytest.param(c, id=c.id, marks=marks))
    return params


@pytest.mark.real
@pytest.mark.parametrize("case", _params())
def test_same_outcome_on_both_backends(case: Case, real_ctx: Ctx, emu_ctx: Ctx) -> None:
    expected = real_ctx.run(case)
    got = emu_ctx.run(case)
    assert got == expected


def _skip_if_another_client(case: Case) -> None:
    """A case whose outcome the client library decides is compared with its recording only
    through the redis-py release that made it (the live comparison covers the others)."""
    recorded = regen_fidelity.load_cached()["redis_py"]
    if case.client is not None and redis.__version__ != recorded:
        pytest.skip(f"recorded through redis-py {recorded}, this is {redis.__version__}: "
                    f"{case.client}")


@pytest.mark.parametrize("case", _params())
def test_same_outcome_as_recorded(case: Case, emu_ctx: Ctx) -> None:
    """The emulator against the real server's recorded outcome: no server needed."""
    _skip_if_another_client(case)
    expected = regen_fidelity.recorded_outcome("masters", case)
    got = emu_ctx.run(case)
    assert got == expected


# ---- with replicas ---------------------------------------------------------------------------


def _wait_for_replicas(lab: Lab, timeout: float = 30.0) -> None:
    """A new replica is listed in CLUSTER SLOTS only once it has synced and the other nodes
    have heard so through gossip: wait until every node lists every replica."""
    deadline = time.monotonic() + timeout
    for node in lab.nodes:
        with redis.Redis(host=node.host, port=node.port, password=lab.password) as r:
            while not all(len(e) >= 4 for e in r.execute_command("CLUSTER", "SLOTS")):
                if time.monotonic() > deadline:
                    raise AssertionError("the replicas did not sync in time")
                time.sleep(0.05)


@pytest.fixture(scope="session")
def real_replica_ctx(real_server: Any) -> Iterator[Ctx]:
    # start_lab returns once every node lists every replica in CLUSTER SLOTS (about 2 s).
    lab = start_lab(masters=3, replicas=1, backend="real")
    try:
        _wait_for_replicas(lab)
        ctx = Ctx(lab)
        yield ctx
        ctx.close()
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def emu_replica_ctx() -> Iterator[Ctx]:
    lab = start_lab(masters=3, replicas=1, backend="emulated")
    ctx = Ctx(lab)
    yield ctx
    ctx.close()
    lab.stop()


@pytest.mark.real
@pytest.mark.parametrize("case", _params(REPLICA_CASES))
def test_same_outcome_with_replicas(
    case: Case, real_replica_ctx: Ctx, emu_replica_ctx: Ctx
) -> None:
    expected = real_replica_ctx.run(case)
    got = emu_replica_ctx.run(case)
    assert got == expected


@pytest.mark.parametrize("case", _params(REPLICA_CASES))
def test_same_outcome_as_recorded_with_replicas(case: Case, emu_replica_ctx: Ctx) -> None:
    _skip_if_another_client(case)
    expected = regen_fidelity.recorded_outcome("replicas", case)
    got = emu_replica_ctx.run(case)
    assert got == expected


# ---- the recording ---------------------------------------------------------------------------


def test_recording_is_current() -> None:
    """Every case has a recorded outcome taken from the case as it is now (fingerprint)."""
    recorded = regen_fidelity.load()["cases"]
    fix = "run `python tests/regen_fidelity.py` on a machine with redis-server 7.0"
    for table, cases in regen_fidelity.TABLES.items():
        entries = recorded.get(table, {})
        ids = [c.id for c in cases]
        assert sorted(entries) == sorted(ids), f"{table}: cases added or removed: {fix}"
        stale = [
            c.id for c in cases if entries[c.id]["fingerprint"] != regen_fidelity.fingerprint(c)
        ]
        assert stale == [], f"{table}: these cases changed since the recording: {fix}"


def test_recording_round_trips() -> None:
    """The JSON encoding keeps every type a comparison can tell apart."""
    value = [None, True, 1, 1.5, "s", b"\xff\r\n", ("error", "E", "m"), {"k": [b"v"]}, {1: 2}]
    assert regen_fidelity.decode(regen_fidelity.encode(value)) == value
    assert type(regen_fidelity.decode(regen_fidelity.encode((1,)))) is tuple
    with pytest.raises(TypeError, match="teach"):
        regen_fidelity.encode(object())


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)
