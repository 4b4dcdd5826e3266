"""MONITOR on the emulated backend, line for line against a real redis-server 7.

The same commands go to a real server and to the emulated one, each watched by MONITOR (through
``slotlab.audit.capture``); the lines must be equal once the timestamp and the client's port
(which differ by nature) are masked. Then: nothing is left connected after a capture stops.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from conftest import real_server_or_skip

from slotlab.audit import capture
from slotlab.lab import Lab, start_lab
from slotlab.resp import encode_command
from slotlab.slots import key_slot

_VOLATILE = re.compile(r"^\d+\.\d{6} \[(\d+) (127\.0\.0\.1:\d+|lua)\]")


def _masked(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        m = _VOLATILE.match(line)
        assert m is not None, f"not a MONITOR line: {line!r}"
        who = "lua" if m.group(2) == "lua" else "client"
        out.append(f"[{m.group(1)} {who}]" + line[m.end():])
    return out


@pytest.fixture(scope="module", params=["real", "emulated"])
def any_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    if request.param == "real":
        real_server_or_skip()
    lab = start_lab(masters=3, backend=request.param)  # with a password: AUTH is redacted
    yield lab
    lab.stop()


def _send(conn: redis.Connection, *args: object) -> object:
    conn.send_command(*args)
    try:
        return conn.read_response()
    except redis.ResponseError as exc:
        return exc


def _watch(target: object, traffic: Callable[[], None]) -> list[str]:
    with capture(target) as cap:
        time.sleep(0.2)
        traffic()
        time.sleep(0.3)
    return _masked(cap.lines)


STANDALONE = [
    ("AUTH", "{pw}"), ("AUTH", "default", "{pw}"),
    ("HELLO", "2", "AUTH", "default", "{pw}", "SETNAME", "x"), ("PING",),
    ("CONFIG", "GET", "maxmemory"),  # admin: not shown
    ("NOSUCHCOMMAND", "x"), ("GET",),  # refused before running: not shown
    ("CLIENT", "SETNAME", "n"),
    ("SET", b"k\x00\xff\"\\\n\t\r", b"\x07\x08 \x7f~"), ("GET", "caf\xc3\xa9"),
    ("SELECT", "1"), ("SET", "in:db1", "1"), ("SELECT", "0"),
    ("MULTI",), ("SET", "a", "1"), ("INCR", "n"), ("EXEC",),
    ("MULTI",), ("SET", "b", "1"), ("DISCARD",),
    ("LPUSH", "l", "1"), ("LPOP", "l"), ("MSET", "x", "1", "y", "2"),
    ("EVAL", "return 1", "0"),
]  # fmt: skip


def _run(port: int, password: str | None, script: list[tuple[object, ...]]) -> None:
    conn = redis.Connection(host="127.0.0.1", port=port, protocol=2)
    conn.connect()
    try:
        for args in script:
            _send(conn, *[password if a == "{pw}" else a for a in args])
    finally:
        conn.disconnect()


#: What redis-server 7.0.15 showed for STANDALONE (a real run, copied here); the real and the
#: emulated backend must both show exactly this.
STANDALONE_LINES = [
    '[0 client] "AUTH" "(redacted)"',
    '[0 client] "AUTH" "(redacted)" "(redacted)"',
    '[0 client] "HELLO" "2" "AUTH" "(redacted)" "(redacted)" "SETNAME" "x"',
    '[0 client] "PING"',
    '[0 client] "CLIENT" "SETNAME" "n"',
    '[0 client] "SET" "k\\x00\\xff\\"\\\\\\n\\t\\r" "\\a\\b \\x7f~"',
    '[0 client] "GET" "caf\\xc3\\x83\\xc2\\xa9"',
    '[1 client] "SELECT" "1"',
    '[1 client] "SET" "in:db1" "1"',
    '[0 client] "SELECT" "0"',
    '[0 client] "MULTI"',
    '[0 client] "SET" "a" "1"',
    '[0 client] "INCR" "n"',
    '[0 client] "EXEC"',
    '[0 client] "MULTI"',
    '[0 client] "DISCARD"',
    '[0 client] "LPUSH" "l" "1"',
    '[0 client] "LPOP" "l"',
    '[0 client] "MSET" "x" "1" "y" "2"',
    '[0 client] "EVAL" "return 1" "0"',
]


def test_standalone_lines_match_real(any_lab: Lab) -> None:
    client = any_lab.standalone_client()
    port = client.connection_pool.connection_kwargs["port"]
    lines = _watch(client, lambda: _run(port, any_lab.password, STANDALONE))
    assert lines == STANDALONE_LINES


CLUSTER = [
    ("SET", "a", "1"), ("GET", "a"),
    ("MGET", "a", "b"),  # CROSSSLOT: refused before running, not shown
    ("EVAL", "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])", "1",
     "a", "v"),
    ("MULTI",), ("SET", "a", "2"), ("GET", "a"), ("EXEC",),
    ("SELECT", "1"),  # runs and fails: shown
]  # fmt: skip


def test_cluster_node_lines_match_real(any_lab: Lab) -> None:
    node = any_lab.topology().node_for_slot(15495)  # the slot of "a"
    node_client = any_lab.node_client(node.index)
    lines = _watch(node_client, lambda: _run(node.port, any_lab.password,
                                             [("AUTH", "{pw}"), *CLUSTER]))
    assert lines == [
        '[0 client] "AUTH" "(redacted)"',
        '[0 client] "SET" "a" "1"',
        '[0 client] "GET" "a"',
        '[0 client] "EVAL" "redis.call(\'SET\', KEYS[1], ARGV[1]) return redis.call(\'GET\', '
        'KEYS[1])" "1" "a" "v"',
        '[0 lua] "SET" "a" "v"',
        '[0 lua] "GET" "a"',
        '[0 client] "MULTI"',
        '[0 client] "SET" "a" "2"',
        '[0 client] "GET" "a"',
        '[0 client] "EXEC"',
        '[0 client] "SELECT" "1"',
    ]


def test_capture_leaves_no_client(any_lab: Lab) -> None:
    """The MONITOR connections are closed when the capture stops: each master has one client
    more while it runs (the monitor), and the same clients as before once it stopped."""
    masters = any_lab.topology().masters
    clients = [any_lab.node_client(n.index) for n in masters]

    def addrs() -> list[set[str]]:
        return [{c["addr"] for c in client.client_list()} for client in clients]

    before = addrs()
    with capture(any_lab) as cap:
        time.sleep(0.2)
        during = addrs()
    assert not cap.errors
    deadline = time.monotonic() + 5
    after = addrs()
    while after != before and time.monotonic() < deadline:
        time.sleep(0.05)
        after = addrs()
    assert [len(d - b) for d, b in zip(during, before, strict=True)] == [1] * len(masters)
    assert after == before



def test_stop_drains_the_lines_in_flight(any_lab: Lab) -> None:
    """Stopping right after the traffic loses nothing: stop() waits for its ECHO marker's line,
    and neither the marker nor its connection's AUTH enters the capture. The traffic is one
    burst of SETs on a raw socket whose replies are read in C-speed chunks, so that when the
    last reply is in, most MONITOR lines are still on their way to the capture's reader."""
    node = any_lab.topology().masters[0]
    n = 20_000
    tag = next(f"d{i}" for i in range(10_000) if node.owns(key_slot(f"{{d{i}}}")))
    burst = b"".join(encode_command("SET", f"{{{tag}}}:{i}", "1") for i in range(n))
    with socket.create_connection((node.host, node.port)) as sock:
        sock.sendall(encode_command("AUTH", any_lab.password or ""))
        assert sock.recv(64) == b"+OK\r\n"
        with capture(any_lab.node_client(node.index)) as cap:
            sock.sendall(burst)
            got = 0
            while got < n * 5:  # n times +OK\r\n
                got += len(sock.recv(1 << 20))
    assert not cap.errors
    sets = [line for line in cap.lines if f'"SET" "{{{tag}}}:' in line]
    assert len(sets) == n
    assert not [line for line in cap.lines if "ECHO" in line or "AUTH" in line]
