"""Random input, nothing breaks: random RESP frames and random bytes, many per connection, to an
emulated node and to the proxy in front of it. Neither may crash or hang, and another client,
connected all along, keeps being served. (Replies from a node cut at every byte boundary are
the property test ``test_node_replies_split_at_every_byte_boundary_pass_through_intact`` in
tests/test_proxy.py.)

Frames name commands of the real command table with random arguments. Left out are the
commands whose point is to stop or reshape the server for everyone (SHUTDOWN, DEBUG, CLUSTER,
CONFIG, CLIENT, MONITOR, FAILOVER...) and the blocking ones (a BLPOP with timeout 0 blocks its
connection by design: that is waiting, not hanging).
"""

from __future__ import annotations

import random
import socket
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slotlab import start_lab
from slotlab.commands import command_table
from slotlab.lab import Lab
from slotlab.proxy import Proxy
from slotlab.resp import encode_command as cmd

FRAMES_PER_CONNECTION = 120
EXAMPLES = 90  # x 120 frames: 10,800 per target

_LEFT_OUT = {
    "shutdown", "debug", "cluster", "config", "client", "monitor", "failover", "replicaof",
    "slaveof", "sync", "psync", "save", "bgsave", "bgrewriteaof", "module", "acl", "quit",
    "wait", "latency", "memory", "object", "lastsave", "sentinel",
}
_COMMANDS = sorted(
    name.encode() for name, spec in command_table().items()
    if name not in _LEFT_OUT and "blocking" not in spec.flags and "noscript" not in name
)
_ARGS = [b"k", b"{a}k", b"{a}j", b"0", b"1", b"-1", b"2.5", b"EX", b"NX", b"KEYS", b"COUNT",
         b"", b"9223372036854775808", b"*", b"\x00\xff", b"LIMIT", b"WITHSCORES", b"+inf"]
_MALFORMED = [
    b"*-1\r\n", b"*0\r\n", b"$-1\r\n", b"*1\r\n$-5\r\n", b"*99999999999\r\n", b"*1\r\n$99999\r\n",
    b"*2\r\n$3\r\nGET\r\n:1\r\n", b"\r\n", b"*1\r\n$3\r\nGETX\r\n", b"PING\r\n", b"  \r\n",
    b"GET k\r\n", b'SET "unbalanced\r\n', b"*1\r\n", b"$3\r\nGET\r\n", b"*a\r\n", b"\n",
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv", b"*1\r\n$4\r\nPING\r\n" * 3,
]


def _frame(rnd: random.Random) -> bytes:
    kind = rnd.random()
    if kind < 0.75:  # a well-formed command of the table with random arguments
        name = rnd.choice(_COMMANDS)
        args = [rnd.choice(_ARGS) if rnd.random() < 0.8 else rnd.randbytes(rnd.randrange(9))
                for _ in range(rnd.randrange(5))]
        if rnd.random() < 0.3:  # a container's subcommand
            args.insert(0, rnd.choice([b"HELP", b"LOAD", b"FLUSH", b"EXISTS", b"LIST", b"INFO"]))
        return cmd(name.decode(), *args)
    if kind < 0.80:  # an unknown command
        return cmd(rnd.randbytes(rnd.randrange(1, 6)).decode("latin-1"), "x")
    if kind < 0.90:  # a malformed or inline frame
        return rnd.choice(_MALFORMED)
    return rnd.randbytes(rnd.randrange(1, 64))  # random bytes


def _send_batch(port: int, frames: list[bytes]) -> None:
    """Send every frame on one connection, then read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(b"".join(frames))
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return  # the server closed on a protocol error: it may
        deadline = time.monotonic() + 10
        while True:
            try:
                if not sock.recv(1 << 16):
                    return
            except ConnectionResetError:
                return
            assert time.monotonic() < deadline, "the server neither answered nor closed"


def _ping(sock: socket.socket) -> None:
    sock.sendall(cmd("PING"))
    assert sock.recv(64) == b"+PONG\r\n"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    # Raw frames, no AUTH first: this lab is started without a password, explicitly.
    with start_lab(masters=3, backend="emulated", password=None) as running:
        yield running


@pytest.mark.parametrize("target", ["node", "proxy"])
def test_random_frames_break_nothing(lab: Lab, target: str) -> None:
    proxy = Proxy(lab.nodes, "alibaba").start() if target == "proxy" else None
    port = proxy.port if proxy is not None else lab.nodes[0].port
    sent: Counter[str] = Counter()
    observer = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(rnd=st.randoms(use_true_random=False))
        def one_connection(rnd: random.Random) -> None:
            frames = [_frame(rnd) for _ in range(FRAMES_PER_CONNECTION)]
            _send_batch(port, frames)
            sent["frames"] += len(frames)
            sent["random bytes"] += sum(1 for f in frames if f[:1] not in b"*$+-:")
            _ping(observer)  # another client, connected all along, is still served

        one_connection()
        assert sent["frames"] >= 10_000 and sent["random bytes"] >= 500
        _ping(observer)
        # "{b}" hashes to slot 3300, on node 0: no MOVED either way.
        observer.sendall(cmd("SET", "{b}done", "1") + cmd("GET", "{b}done"))
        deadline = time.monotonic() + 5
        got = b""
        while got.count(b"\r\n") < 3 and time.monotonic() < deadline:
            got += observer.recv(64)
        assert got.endswith(b"$1\r\n1\r\n")
    finally:
        observer.close()
        if proxy is not None:
            proxy.stop()
