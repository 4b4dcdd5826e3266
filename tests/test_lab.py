"""The Lab on the real backend: start, clients, topology, reset, stop, and no leftovers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

import slotlab
from slotlab.backends import real
from slotlab.backends.base import split_slots
from slotlab.backends.real import RedisServerNotFound, find_redis_server
from slotlab.lab import Lab, parse_cluster_nodes
from tests.conftest import real_server_or_skip


def _gone(pid: int) -> bool:
    """True when pid has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if not _gone(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if not _gone(p)]


def test_split_slots_matches_redis_cli() -> None:
    assert split_slots(3) == [(0, 5460), (5461, 10922), (10923, 16383)]
    assert split_slots(1) == [(0, 16383)]
    for n in (2, 4, 5, 7, 16):
        ranges = split_slots(n)
        assert ranges[0][0] == 0 and ranges[-1][1] == 16383
        assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_parse_cluster_nodes_reads_roles_slots_and_migrations() -> None:
    text = (
        "aaa 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460 [42->-bbb]\n"
        "bbb 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-16383\n"
        "ccc 127.0.0.1:7003@17003 slave aaa 0 0 1 connected\n"
    )
    topo = parse_cluster_nodes(text, ["aaa", "bbb", "ccc"])
    assert [n.role for n in topo] == ["master", "master", "replica"]
    assert topo.nodes[0].slots == ((0, 5460),)
    assert topo.nodes[2].master_id == "aaa"
    assert topo.node_for_slot(6000).node_id == "bbb"
    assert "replica of node 0" in str(topo)


def test_lab_serves_a_working_cluster(real_lab: Lab) -> None:
    topo = real_lab.topology()
    assert len(topo.masters) == 3
    assert sum(n.slot_count for n in topo.masters) == 16384
    rc = real_lab.cluster_client()
    rc.set("foo", "bar")
    assert rc.get("foo") == "bar"
    owner = real_lab.node_client_for("foo")
    assert owner.get("foo") == "bar"
    # A plain client to a node that does not own the key meets MOVED, naming slot and owner.
    other = next(i for i, n in enumerate(real_lab.nodes) if n.port != owner.connection_pool
                 .connection_kwargs["port"])
    with pytest.raises(redis.exceptions.MovedError) as moved:
        real_lab.node_client(other).get("foo")
    owner_port = owner.connection_pool.connection_kwargs["port"]
    assert str(moved.value) == f"12182 127.0.0.1:{owner_port}"


def test_reset_empties_data_and_scripts(real_lab: Lab) -> None:
    rc = real_lab.cluster_client()
    for i in range(50):
        rc.set(f"key:{i}", i)
    sha = rc.script_load("return 1")
    real_lab.reset()
    assert rc.dbsize() == 0
    for i in range(len(real_lab.nodes)):
        assert real_lab.node_client(i).script_exists(sha) == [False]


def test_node_client_rejects_a_bad_index(real_lab: Lab) -> None:
    with pytest.raises(IndexError, match="nodes 0 to 2"):
        real_lab.node_client(3)


def test_lab_with_replicas_and_context_manager(real_server: real.ServerBinary) -> None:
    with slotlab.start_lab(masters=2, replicas=1, backend="real") as lab:
        topo = lab.topology()
        assert [n.role for n in topo] == ["master", "master", "replica", "replica"]
        assert {n.master_id for n in topo if n.role == "replica"} == {
            n.node_id for n in topo.masters
        }
        pids = [n.pid for n in lab.nodes]
        workdir = lab.backend.workdir  # type: ignore[attr-defined]
    assert _wait_gone([p for p in pids if p], 5) == []
    assert not os.path.exists(workdir)
    with pytest.raises(RuntimeError, match="stopped"):
        lab.cluster_client()
    lab.stop()  # twice is fine


def test_each_node_is_our_own_process(real_lab: Lab) -> None:
    for node in real_lab.nodes:
        with redis.Redis(host=node.host, port=node.port, decode_responses=True) as r:
            assert r.info("server")["process_id"] == node.pid
            assert r.execute_command("CLUSTER", "MYID") == node.node_id


def test_a_port_held_by_another_program_is_skipped(
    real_server: real.ServerBinary, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    held = holder.getsockname()[1]
    original = real.free_port
    handed: list[int] = []

    def first_the_held_port(taken: set[int]) -> int:
        port = held if not handed else original(taken)
        handed.append(port)
        taken.add(port)
        return port

    monkeypatch.setattr(real, "free_port", first_the_held_port)
    try:
        with slotlab.start_lab(masters=1, backend="real") as lab:
            assert held in handed
            assert held not in [n.port for n in lab.nodes]
            assert lab.cluster_client().ping()
    finally:
        holder.close()


def test_a_redis_of_someone_else_on_our_port_is_detected(
    real_server: real.ServerBinary, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Another program's redis-server already listens where the lab would start a node.
    port = real.free_port(set())
    other = subprocess.Popen(
        [real_server.path, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        original = real.free_port
        handed: list[int] = []

        def first_the_busy_port(taken: set[int]) -> int:
            p = port if not handed else original(taken)
            handed.append(p)
            taken.add(p)
            return p

        monkeypatch.setattr(real, "free_port", first_the_busy_port)
        with slotlab.start_lab(masters=1, backend="real") as lab:
            assert port not in [n.port for n in lab.nodes]
        assert redis.Redis(port=port).ping()  # the other program's server is untouched
    finally:
        other.terminate()
        other.wait(timeout=5)


_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import slotlab
    lab = slotlab.start_lab(masters=3, backend="real")
    print(json.dumps({"pids": [n.pid for n in lab.nodes], "dir": lab.backend.workdir}),
          flush=True)
    if sys.argv[1] == "hang":
        time.sleep(600)
    """
)


def _run_child(mode: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("{"):
            return child, json.loads(line)
    raise AssertionError("the child python did not start a lab")


def test_no_server_outlives_a_sigkilled_owner(real_server: real.ServerBinary) -> None:
    child, started = _run_child("hang")
    pids = started["pids"]
    assert isinstance(pids, list) and len(pids) == 3
    assert not any(_gone(p) for p in pids)
    child.kill()  # SIGKILL: no atexit, no finalizer runs
    child.wait()
    assert _wait_gone(pids, 5) == [], "redis-server outlived its SIGKILLed owner"
    deadline = time.monotonic() + 5
    while os.path.exists(str(started["dir"])) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(str(started["dir"]))


def test_no_server_outlives_an_interpreter_that_forgot_stop(
    real_server: real.ServerBinary,
) -> None:
    child, started = _run_child("exit")
    child.wait(timeout=30)
    pids = started["pids"]
    assert isinstance(pids, list)
    assert _wait_gone(pids, 5) == []
    assert not os.path.exists(str(started["dir"]))


def test_start_lab_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        slotlab.start_lab(backend="nope")
    with pytest.raises(ValueError, match="masters must be"):
        slotlab.start_lab(masters=0, backend="real")
    with pytest.raises(ValueError, match="replicas"):
        slotlab.start_lab(replicas=-1, backend="real")


def test_a_bad_server_path_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTLAB_REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(RedisServerNotFound) as err:
        find_redis_server()
    text = str(err.value)
    assert "SLOTLAB_REDIS_SERVER" in text and "conda install" in text and "apt-get" in text
    assert "emulated" in text


def test_a_missing_server_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SLOTLAB_REDIS_SERVER", raising=False)
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(real.sys, "prefix", str(tmp_path))
    with pytest.raises(RedisServerNotFound, match="No redis-server was found") as err:
        find_redis_server()
    assert "brew install redis" in str(err.value)


def test_a_server_older_than_7_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'Redis server v=6.2.14 sha=00000000:0 bits=64'\n")
    fake.chmod(0o755)
    monkeypatch.delenv("SLOTLAB_REDIS_SERVER", raising=False)
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(real.sys, "prefix", str(tmp_path / "none"))
    with pytest.raises(RedisServerNotFound, match=r"needs redis-server 7.0 or newer.*6\.2\.14"):
        find_redis_server()
    monkeypatch.setenv("SLOTLAB_REDIS_SERVER", str(fake))
    with pytest.raises(RedisServerNotFound, match="6.2.14; slotlab needs 7.0"):
        find_redis_server()


def test_the_server_found_is_usable() -> None:
    server = real_server_or_skip()
    assert server.version >= (7, 0, 0)


def test_a_standalone_server_runs_beside_the_cluster_and_stops_with_it(
    real_server: real.ServerBinary,
) -> None:
    with slotlab.start_lab(masters=1, backend="real") as lab:
        single = lab.standalone_client()
        info = single.info("server")
        assert info["redis_mode"] == "standalone"
        # One server, no slots: a multi-key EVAL over any keys works.
        assert single.eval("return #KEYS", 2, "a", "b") == 2
        pid = int(info["process_id"])
    assert _wait_gone([pid], 5) == []


def test_the_emulated_backend_has_a_standalone_server_too() -> None:
    with slotlab.start_lab(masters=1, backend="emulated") as lab:
        single = lab.standalone_client()
        assert single.eval("return #KEYS", 2, "a", "b") == 2
        port = single.connection_pool.connection_kwargs["port"]
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, socket_connect_timeout=1).ping()


# ---- faults that explain themselves -------------------------------------------------------


def test_a_node_killed_from_outside_is_shown_down_and_explained(
    real_server: real.ServerBinary,
) -> None:
    """``kill -9`` of node 0 (the node topology() used to ask first): topology() shows it
    down, every operation that needs it names it and the way back, and restart_node(0) brings
    it back with its slots."""
    from slotlab.lab import NodeDownError

    with slotlab.start_lab(masters=3, backend="real") as lab:
        node0 = lab.node_client(0)
        cluster = lab.cluster_client()
        key = "{a}"  # slot 15495, on node 2: needs only the cluster to be up
        own = next(k for k in ("b", "c", "d", "e") if lab.topology().node_for_slot(
            slotlab.key_slot(k)).index == 0)  # fmt: skip
        pid = lab.nodes[0].pid
        assert pid is not None
        os.kill(pid, 9)
        _wait_gone([pid], 5)
        topo = lab.topology()
        assert [n.down for n in topo] == [True, False, False]
        row = str(topo).splitlines()[1]
        if topo.nodes[0].failed:  # the others flagged it already (a slow machine): their word
            assert row.split()[:3] == ["0", "master", "(failed)"]
        else:
            assert row.split()[:3] == ["0", "master", "(down)"]
            assert row.endswith("-- down: lab.restart_node(0)")
        address = lab.nodes[0].address
        way_back = (
            f"node 0 ({address}) is down, its process is gone (killed?). Bring it back with "
            "lab.restart_node(0) (real backend), or start afresh: lab.stop(), then "
            "slotlab.start_lab()"
        )
        with pytest.raises(NodeDownError) as info:
            lab.reset()
        assert str(info.value) == f"lab.reset() cannot empty it: {way_back}"
        with pytest.raises(NodeDownError) as info:
            node0.get(own)
        assert str(info.value) == f"GET failed: {way_back}"
        with pytest.raises(NodeDownError) as info:
            cluster.get(own)
        assert str(info.value) == f"GET failed: {way_back}"
        with pytest.raises(ValueError, match=r"^node 1 is running: restart_node brings back"):
            lab.restart_node(1)
        back = lab.restart_node(0)
        assert (back.index, back.role, back.down, back.slots) == (0, "master", False, ((0, 5460),))
        assert [n.down for n in lab.topology()] == [False, False, False]
        lab.reset()
        assert node0.set(own, "1") and node0.get(own) == "1"
        assert cluster.set(key, "2") and cluster.get(key) == "2"
