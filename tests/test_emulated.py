"""The emulated backend on its own: lifecycle, the Lab on top of it, clients that misbehave,
blocking commands, resharding, and the tools (redis-cli, RedisCluster) that must work unchanged.

Cross-checks against a real server live in test_fidelity.py; the few here that need one skip
(or fail under SLOTLAB_REQUIRE_REAL=1) through ``real_server_or_skip``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

import slotlab
from slotlab import commands
from slotlab.backends.emulated import EmulatedBackend, parse_shebang
from slotlab.lab import Lab, start_lab
from slotlab.resp import ErrorReply, RequestReader
from tests.conftest import real_server_or_skip

ROOT = Path(__file__).resolve().parents[1]


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("slotlab-emulated")}


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def lab() -> Iterator[Lab]:
    # No password: these tests speak raw RESP to the nodes (tests/test_auth.py covers AUTH).
    with start_lab(masters=3, backend="emulated", password=None) as lab:
        yield lab


# ---- lifecycle ---------------------------------------------------------------------------------


def test_starts_fast_and_stops_clean() -> None:
    before = _threads()
    t0 = time.perf_counter()
    backend = EmulatedBackend(masters=3)
    started = time.perf_counter() - t0
    ports = [n.port for n in backend.nodes]
    assert started < 1.0, f"took {started:.3f} s"
    assert len(set(ports)) == 3 and all(p > 0 for p in ports)
    assert all(len(n.node_id) == 40 and int(n.node_id, 16) >= 0 for n in backend.nodes)
    assert backend.alive()
    with redis.Redis(port=ports[0]) as r:
        assert r.ping()
    backend.stop()
    backend.stop()  # twice is fine
    assert not backend.alive()
    assert all(_port_closed(p) for p in ports)
    assert _threads() == before


def test_stop_returns_while_a_client_blocks_forever() -> None:
    before = _threads()
    backend = EmulatedBackend(masters=1)
    port = backend.nodes[0].port
    errors: list[BaseException] = []

    def block() -> None:
        try:
            # No retries: redis-py would reconnect (refused) with backoff for seconds.
            no_retry = Retry(NoBackoff(), 0)
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, retry=no_retry) as r:
                r.blpop(["nothing"], timeout=0)
        except redis.ConnectionError:
            pass
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=block)
    t.start()
    deadline = time.monotonic() + 10  # until the BLPOP waits (a loaded machine may be slow)
    while backend.blocked_clients == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.blocked_clients == 1
    t0 = time.perf_counter()
    backend.stop()
    assert time.perf_counter() - t0 < 5
    t.join(10)
    assert not t.is_alive() and not errors
    assert _threads() <= before


def test_node_ids_and_roles_with_replicas() -> None:
    with start_lab(masters=2, replicas=1, backend="emulated") as lab:
        topo = lab.topology()
        assert [n.role for n in topo] == ["master", "master", "replica", "replica"]
        assert topo.nodes[2].master_id == topo.nodes[0].node_id
        assert topo.nodes[3].master_id == topo.nodes[1].node_id
        assert [n.slots for n in topo.masters] == [((0, 8191),), ((8192, 16383),)]
        rc = lab.cluster_client()
        rc.set("foo", "bar")
        replica = lab.node_client(2 if topo.node_for_slot(12182).index == 0 else 3)
        replica.execute_command("READONLY")
        assert replica.get("foo") == "bar"  # a replica always holds its master's data
        lab.reset()
        assert rc.get("foo") is None


# ---- the Lab on the emulated backend ----------------------------------------------------------


def test_lab_topology_reset_and_routing(lab: Lab) -> None:
    assert lab.backend_name == "emulated"
    topo = lab.topology()
    assert [n.slots for n in topo] == [((0, 5460),), ((5461, 10922),), ((10923, 16383),)]
    rc = lab.cluster_client()
    rc.set("foo", "1")
    rc.eval("return 1", 0)
    owner = lab.node_client_for("foo")
    assert owner.get("foo") == "1"
    with pytest.raises(redis.exceptions.MovedError):
        lab.node_client_for("b").get("foo")
    sha = owner.script_load("return 2")
    lab.reset()
    assert rc.get("foo") is None
    assert owner.script_exists(sha) == [False]
    assert "emulated" in repr(lab)


def test_start_lab_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTLAB_BACKEND", "emulated")
    with slotlab.start_lab(masters=1) as lab:
        assert lab.backend_name == "emulated"


def test_auto_picks_emulated_without_a_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("SLOTLAB_BACKEND", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CONDA_PREFIX", str(tmp_path))
    monkeypatch.delenv("SLOTLAB_REDIS_SERVER", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    with slotlab.start_lab(masters=1) as lab:
        assert lab.backend_name == "emulated"
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "emulated" in lines[0]


# ---- clients that misbehave -------------------------------------------------------------------


def _raw(port: int, data: bytes, expect_close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
            if not expect_close:
                break
        return out


@pytest.mark.parametrize(
    ("garbage", "reply"),
    [
        (b"*1\r\n:5\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
        (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$-2\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b'GET "x\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
        (b"x" * 70000, b"-ERR Protocol error: too big inline request\r\n"),
    ],
)
def test_garbage_gets_the_servers_error_and_a_close(lab: Lab, garbage: bytes, reply: bytes) -> None:
    port = lab.nodes[0].port
    assert _raw(port, garbage) == reply
    with redis.Redis(port=port) as r:  # the listener goes on serving others
        assert r.ping()


def test_a_stalled_client_does_not_stall_the_others(lab: Lab) -> None:
    port = lab.nodes[0].port
    with socket.create_connection(("127.0.0.1", port)) as stalled:
        stalled.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$100\r\nonly-part")
        with redis.Redis(port=port, socket_timeout=2) as r:
            for _ in range(50):
                assert r.ping()
        stalled.sendall(b"x" * (100 - len(b"only-part")) + b"\r\n")
        stalled.settimeout(2)
        assert stalled.recv(100) == b"+OK\r\n"


def test_security_probe_closes_quietly(lab: Lab) -> None:
    assert _raw(lab.nodes[0].port, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n") == b""


def test_pipelined_requests_in_one_packet(lab: Lab) -> None:
    port = lab.nodes[0].port
    data = b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n1\r\n" * 3 + b"PING\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(data)
        got = b""
        while got.count(b"\r\n") < 4:
            got += s.recv(1024)
    assert got == b"+OK\r\n+OK\r\n+OK\r\n+PONG\r\n"


# ---- blocking commands ------------------------------------------------------------------------


def test_blpop_waits_without_blocking_other_clients(lab: Lab) -> None:
    owner = lab.node_client_for("b")
    result: list[object] = []

    def wait() -> None:
        result.append(lab.node_client_for("b").blpop(["b"], timeout=5))

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.1)
    t0 = time.perf_counter()
    for _ in range(20):
        owner.ping()
    assert time.perf_counter() - t0 < 1
    owner.rpush("b", "x")
    t.join(5)
    assert [list(r) for r in result] == [["b", "x"]]  # type: ignore[call-overload]


def test_blocking_inside_multi_and_script_does_not_block(lab: Lab) -> None:
    node = lab.node_client_for("b")
    pipe = node.pipeline(transaction=True)
    pipe.blpop(["b"], timeout=0)
    t0 = time.perf_counter()
    assert pipe.execute() == [None]
    node.eval("return redis.call('xread', 'STREAMS', KEYS[1], '$')", 1, "b")
    assert time.perf_counter() - t0 < 1


# ---- scripts and shebangs ---------------------------------------------------------------------


def test_parse_shebang() -> None:
    assert parse_shebang(b"return 1") == (frozenset(), True, 0)
    flags, compat, length = parse_shebang(b"#!lua flags=no-writes,allow-cross-slot-keys\nreturn 1")
    assert flags == {"no-writes", "allow-cross-slot-keys"} and not compat and length == 43
    with pytest.raises(ErrorReply, match="Unexpected flag in script shebang: nope"):
        parse_shebang(b"#!lua flags=nope\n")


def test_a_runaway_script_is_stopped(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    from slotlab.backends.emulated import scripting

    monkeypatch.setattr(scripting, "SCRIPT_TIME_LIMIT", 0.3)
    node = lab.node_client(0)
    t0 = time.perf_counter()
    with pytest.raises(redis.ResponseError, match="ran longer than 0.3 s.* on @user_script:2"):
        node.eval("local n = 0\nwhile true do n = n + 1 end", 0)
    assert time.perf_counter() - t0 < 3
    assert node.eval("return 'alive'", 0) == "alive"


def test_script_cache_is_per_node(lab: Lab) -> None:
    n0, n1 = lab.node_client(0), lab.node_client(1)
    sha = n0.script_load("return 'here'")
    assert n0.evalsha(sha, 0) == "here"
    with pytest.raises(redis.exceptions.NoScriptError):
        n1.evalsha(sha, 0)


# ---- pub/sub ----------------------------------------------------------------------------------


def test_publish_reaches_every_node_resp3(lab: Lab) -> None:
    sub = lab.node_client(1).pubsub()
    sub.subscribe("news")
    assert sub.get_message(timeout=1)["type"] == "subscribe"
    assert lab.node_client(0).publish("news", "hi") == 0  # counts this node's receivers
    msg = None
    for _ in range(20):
        msg = sub.get_message(timeout=0.1)
        if msg:
            break
    assert msg is not None and msg["data"] == "hi"
    sub.close()


# ---- resharding -------------------------------------------------------------------------------


def test_reshard_a_slot_while_the_cluster_client_works(lab: Lab) -> None:
    """Move slot 3300 (key b) from node 0 to node 1 the way redis-cli --cluster reshard does."""
    rc: RedisCluster = lab.cluster_client()
    rc.mset_nonatomic({"b": "1", "{b}2": "2"})
    src, dst = lab.node_client(0), lab.node_client(1)
    src_id, dst_id = lab.nodes[0].node_id, lab.nodes[1].node_id
    assert dst.execute_command("CLUSTER", "SETSLOT", 3300, "IMPORTING", src_id) == "OK"
    assert src.execute_command("CLUSTER", "SETSLOT", 3300, "MIGRATING", dst_id) == "OK"
    keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", 3300, 10)
    assert sorted(keys) == ["b", "{b}2"]
    assert src.execute_command("MIGRATE", "127.0.0.1", lab.nodes[1].port, "", 0, 5000,
                               "KEYS", *keys) == "OK"  # fmt: skip
    assert rc.get("b") == "1"  # follows ASK
    assert dst.execute_command("CLUSTER", "SETSLOT", 3300, "NODE", dst_id) == "OK"
    assert src.execute_command("CLUSTER", "SETSLOT", 3300, "NODE", dst_id) == "OK"
    assert rc.get("b") == "1"  # follows MOVED and refreshes its slot map
    topo = lab.topology()
    assert topo.node_for_slot(3300).index == 1
    assert topo.nodes[0].slots == ((0, 3299), (3301, 5460))
    with pytest.raises(redis.exceptions.MovedError):
        src.get("b")
    info = dst.execute_command("CLUSTER", "INFO")
    assert "cluster_current_epoch:4" in info and "cluster_my_epoch:4" in info


# ---- tools that must work unchanged -----------------------------------------------------------


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_redis_cli_follows_redirects(lab: Lab) -> None:
    port = str(lab.nodes[0].port)

    def cli(*args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", port, *args], capture_output=True, text=True, timeout=20
        )
        return done.stdout.strip()

    assert cli("-c", "SET", "foo", "bar") == "OK"
    assert cli("-c", "GET", "foo") == "bar"
    assert cli("GET", "foo").startswith("MOVED 12182 127.0.0.1:")
    crossslot = "CROSSSLOT Keys in request don't hash to the same slot"
    assert cli("-c", "MSET", "a", "1", "b", "2") == crossslot
    assert "[OK] All 16384 slots covered." in cli("--cluster", "check", f"127.0.0.1:{port}")


# ---- the command table ------------------------------------------------------------------------


def test_command_table_is_redis_7_0() -> None:
    table = commands.command_table()
    assert commands.redis_version().startswith("7.0.")
    assert len(table) > 200 and "cluster" in table and "keyslot" in table["cluster"].subcommands
    mset = table["mset"]
    assert (mset.arity, mset.first, mset.last, mset.step) == (-3, 1, -1, 2)
    argv = [b"zunionstore", b"d", b"2", b"a", b"b", b"WEIGHTS", b"1", b"2"]
    assert commands.cluster_keys(table["zunionstore"], argv) == [3, 4, 1]
    assert commands.spec_keys(table["zunionstore"], argv) == [1, 3, 4]


def test_command_table_matches_the_server() -> None:
    real_server_or_skip()
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "regen_command_table.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_request_reader_inline_and_split_packets() -> None:
    reader = RequestReader()
    for byte in b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n":
        assert reader.get_command() is None
        reader.feed(bytes([byte]))
    assert reader.get_command() == [b"ECHO", b"hi"]
    reader.feed(b'SET k "a\\x41\\n" \'b c\'\r\n')
    assert reader.get_command() == [b"SET", b"k", b"aA\n", b"b c"]


# ---- the fakeredis boundary ------------------------------------------------------------------


def test_only_compat_touches_fakeredis() -> None:
    """Every use of fakeredis (its private API above all) is in emulated/compat.py."""
    package = ROOT / "src" / "slotlab" / "backends" / "emulated"
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(package.glob("*.py"))
        if path.name != "compat.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if line.lstrip().startswith(("import fakeredis", "from fakeredis"))
        or re.search(r"\bfakeredis\.\w", line)
    ]
    assert offenders == []


def test_fakeredis_outside_the_tested_range_says_what_to_install() -> None:
    from slotlab.backends.emulated import compat

    assert compat.version_problem(compat.FAKEREDIS_VERSION) is None
    low, high = compat.TESTED
    older = ".".join(map(str, (low[0], low[1] - 1, 0)))
    newer = ".".join(map(str, high)) + ".0"
    for version, where in ((older, "older"), (newer, "newer"), ("2.26.0", "older")):
        problem = compat.version_problem(version)
        assert problem is not None and where in problem and compat.INSTALL in problem
    assert compat.version_problem(".".join(map(str, high)) + ".0rc1") is not None


def test_tested_range_is_the_declared_range() -> None:
    """compat.TESTED, pyproject.toml and environment.yml name the same fakeredis range."""
    from slotlab.backends.emulated import compat

    low, high = (".".join(map(str, v)) for v in compat.TESTED)
    low = low.removesuffix(".0")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"fakeredis[lua]>={low},<{high}"' in pyproject
    assert f"fakeredis>={low},<{high}" in (ROOT / "environment.yml").read_text()
    assert f'"fakeredis[lua]>={low},<{high}"' in compat.INSTALL
    lowest = (ROOT / "tests" / "constraints-lowest.txt").read_text()
    assert f"fakeredis=={low}" in lowest


def test_untested_fakeredis_is_refused_at_import() -> None:
    """Run in a fresh interpreter that pretends fakeredis is a release from the future."""
    code = (
        "import fakeredis; fakeredis.__version__ = '9.0.0'\n"
        "try:\n"
        "    import slotlab.backends.emulated\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SLOTLAB_UNTESTED_FAKEREDIS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
        env=env,
    ).stdout
    assert out.startswith("UntestedFakeredis ") and "pip install" in out and "9.0.0" in out


def test_blocked_clients_are_bounded(lab: Lab) -> None:
    """Each blocked client waits in a thread: past the bound the command is refused plainly,
    and the threads go away when the clients wake."""
    backend = lab.backend
    assert isinstance(backend, EmulatedBackend)
    backend.max_blocked_clients = 2
    node = lab.nodes[0]
    before = {t for t in threading.enumerate() if t.name == "slotlab-emulated-blocking"}
    waiters = [redis.Redis(host=node.host, port=node.port) for _ in range(2)]
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda r=r: results.append(r.blpop(["{b}q"], timeout=10)))
        for r in waiters
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while backend.blocked_clients < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.blocked_clients == 2
    third = lab.node_client(0)
    with pytest.raises(redis.ResponseError, match="at most 2 blocked clients at once"):
        third.blpop(["{b}q"], timeout=1)
    assert third.ping()  # the refused client still works
    blocking = {t for t in threading.enumerate() if t.name == "slotlab-emulated-blocking"}
    assert len(blocking - before) == 2
    third.rpush("{b}q", "x", "y")
    for t in threads:
        t.join(5)
    assert sorted(tuple(r) for r in results) == [(b"{b}q", b"x"), (b"{b}q", b"y")]
    deadline = time.monotonic() + 5
    while backend.blocked_clients and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.blocked_clients == 0
    assert third.blpop(["{b}q"], timeout=0.1) is None  # a slot is free again
    for r in waiters:
        r.close()
