"""Private by default: a lab's nodes, standalone server and proxy ask for its password; HTTP
requests are dropped; a client that never reads is paused in bytes (issue 11, items 1 and 2)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from slotlab import errors
from slotlab.lab import Lab, start_lab
from slotlab.resp import encode_command
from slotlab.slots import key_slot

NOAUTH = b"-" + errors.NOAUTH.encode() + b"\r\n"


@pytest.fixture(scope="module", params=["real", "emulated"])
def private_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A lab started with the default: a random password."""
    if request.param == "real":
        from tests.conftest import real_server_or_skip

        real_server_or_skip()
    lab = start_lab(masters=3, backend=request.param)
    yield lab
    lab.stop()


def _endpoints(lab: Lab) -> dict[str, int]:
    """Every port of the lab: a node, the standalone server, the proxy."""
    standalone = lab.standalone_client()
    proxy = lab.proxy_client()
    standalone.set("secret:user:1", "alice")
    proxy.set("secret:user:1", "alice")
    return {
        "node": lab.nodes[0].port,
        "standalone": standalone.connection_pool.connection_kwargs["port"],
        "proxy": proxy.proxy.port,
    }


def _ask(port: int, *commands: tuple[str, ...]) -> list[bytes]:
    """Each command on one raw socket, no AUTH; each reply's first line (b'' once closed)."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for cmd in commands:
            sock.sendall(encode_command(*cmd))
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            out.append(data.split(b"\r\n", 1)[0] + b"\r\n" if data else b"")
    return out


HOSTILE = (("GET", "secret:user:1"), ("FLUSHALL",), ("CLUSTER", "RESET", "HARD"),
           ("SHUTDOWN", "NOSAVE"), ("CONFIG", "SET", "requirepass", ""))  # fmt: skip


def test_password_is_random_and_clients_carry_it(private_lab: Lab) -> None:
    assert private_lab.password and len(private_lab.password) >= 16
    rc = private_lab.cluster_client()
    rc.set("k", "v")
    assert private_lab.node_client_for("k").get("k") == "v"
    assert private_lab.proxy_client().get("k") == "v"
    info = private_lab.connection_info(show=False)
    assert info["password"] == private_lab.password
    assert info["ports"] == [n.port for n in private_lab.nodes]
    assert f"-p {private_lab.nodes[0].port}" in info["redis_cli"]
    assert private_lab.password in info["redis_cli"]


def test_without_auth_every_endpoint_says_noauth(private_lab: Lab) -> None:
    for name, port in _endpoints(private_lab).items():
        replies = _ask(port, *HOSTILE)
        assert replies == [NOAUTH] * len(HOSTILE), name
    # nothing ran: the data and the cluster are still there
    assert private_lab.proxy_client().get("secret:user:1") == "alice"
    assert len(private_lab.topology().masters) == 3


def test_another_unix_user_cannot_touch_the_lab(private_lab: Lab) -> None:
    """A client run as ``nobody`` (a forked child that drops root) gets NOAUTH everywhere."""
    if not hasattr(os, "fork") or os.geteuid() != 0:
        pytest.skip("needs root to run a client as another Unix user (os.setuid)")
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("this machine has no user 'nobody' to run a client as")
    ports = _endpoints(private_lab)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the other user
        code = 1
        try:
            os.close(read_end)
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            ok = os.getuid() == nobody.pw_uid and all(
                _ask(port, *HOSTILE) == [NOAUTH] * len(HOSTILE) for port in ports.values()
            )
            os.write(write_end, b"ok" if ok else b"answered")
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        verdict = pipe.read()
    os.waitpid(pid, 0)
    assert verdict == b"ok"
    assert private_lab.proxy_client().get("secret:user:1") == "alice"
    assert private_lab.standalone_client().ping()
    assert len(private_lab.topology().masters) == 3


def test_password_none_is_an_explicit_choice() -> None:
    with start_lab(masters=1, backend="emulated", password=None) as lab:
        assert lab.password is None
        with redis.Redis(port=lab.nodes[0].port) as r:
            assert r.ping()
        assert lab.connection_info(show=False)["redis_cli"].startswith("redis-cli ")
    with pytest.raises(ValueError, match="password must be a non-empty string"):
        start_lab(masters=1, backend="emulated", password="")


def _http_probe(port: int, password: str | None) -> bytes:
    """An HTTP POST whose body is Redis commands; what comes back before the close."""
    body = b"AUTH " + password.encode() + b"\r\n" if password else b""
    body += b"SET pwned yes\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                     b"\r\n" + body)  # fmt: skip
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
    return got


def test_http_request_is_dropped(private_lab: Lab) -> None:
    """Redis closes a connection whose request starts with POST or Host: (a web page reaching
    a loopback port); the proxy and the emulated nodes do the same, and the SET never runs."""
    ports = _endpoints(private_lab)
    for name, port in ports.items():
        assert _http_probe(port, private_lab.password) == b"", name
    assert private_lab.proxy_client().exists("pwned") == 0
    assert private_lab.standalone_client().exists("pwned") == 0


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads RSS from /proc")
def test_proxy_pauses_a_client_that_does_not_read(private_lab: Lab) -> None:
    """300 pipelined GETs of a 1 MB value, never read: 300 MB if the proxy kept them all. The
    proxy (which runs in this process) stays far below that, and another client is served."""
    from slotlab.proxy import transport

    proxy_client = private_lab.proxy_client(decode_responses=False)
    proxy_client.set("big", b"x" * (1 << 20))
    port = proxy_client.proxy.port
    before = _rss()
    hog = socket.create_connection(("127.0.0.1", port))
    try:
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        hog.sendall(encode_command("AUTH", private_lab.password or ""))
        hog.setblocking(False)
        request = encode_command("GET", "big") * 300
        sent = 0
        deadline = time.monotonic() + 5
        while sent < len(request) and time.monotonic() < deadline:
            try:
                sent += hog.send(request[sent:])
            except BlockingIOError:
                time.sleep(0.01)  # the proxy stopped reading us: paused, as it should
        time.sleep(1.0)  # let whatever the proxy would do happen
        start = time.monotonic()
        assert proxy_client.get("big") == b"x" * (1 << 20)  # another client is served
        assert time.monotonic() - start < 5
        grown = _rss() - before
        print(f"RSS growth with a client that does not read: {grown / 2**20:.0f} MB")
        bound = transport.CLIENT_BUFFER_BYTES + transport.FIRST_WINDOW * (1 << 20)
        assert grown < 3 * bound, f"RSS grew {grown >> 20} MB"
        assert proxy_client.proxy.stats["clients_paused"] >= 1
    finally:
        hog.close()


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_redis_cli_connects_the_way_connection_info_says(private_lab: Lab) -> None:
    """The printed command works (the password in REDISCLI_AUTH, never on the command line,
    which every user can read in ``ps``); without the password, NOAUTH."""
    info = private_lab.connection_info(show=False)
    port = str(info["ports"][0])

    def cli(*args: str, password: str | None) -> str:
        env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
        if password is not None:
            env["REDISCLI_AUTH"] = password
        done = subprocess.run(["redis-cli", "-c", "-p", port, *args], capture_output=True,
                              text=True, timeout=20, env=env, check=False)  # fmt: skip
        return done.stdout.strip()

    assert cli("SET", "cli:key", "v", password=private_lab.password) == "OK"
    assert cli("GET", "cli:key", password=private_lab.password) == "v"
    assert cli("GET", "cli:key", password=None) == errors.NOAUTH


def test_the_lab_works_with_its_password(private_lab: Lab) -> None:
    """Everything that talks to nodes itself carries the password: topology, reset, a slot
    moved with its keys (MIGRATE ... AUTH), the proxy's transactions, the standalone server."""
    rc = private_lab.cluster_client()
    keys = [f"{{moving}}{i}" for i in range(25)]
    for k in keys:
        rc.set(k, "v")
    slot = key_slot(keys[0])
    owner = private_lab.topology().node_for_slot(slot).index
    moved = private_lab.migrate_slot(slot, (owner + 1) % 3)
    assert moved.keys_moved == 25
    assert all("AUTH" not in step.command for step in moved.steps)  # never shown
    assert all(private_lab.password not in str(step) for step in moved.steps)
    assert rc.get(keys[0]) == "v"
    px = private_lab.proxy_client()
    with px.pipeline(transaction=True) as pipe:
        pipe.set("{t}a", "1").incr("{t}a")
        assert pipe.execute() == [True, 2]
    private_lab.reset()
    assert rc.dbsize() == 0
    assert private_lab.standalone_client().set("x", "y")
