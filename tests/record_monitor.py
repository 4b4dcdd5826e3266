"""Record the MONITOR captures in tests/data/ from a REAL redis-server (run it again to redo them).

    PYTHONPATH=src python tests/record_monitor.py

It starts a real lab (redis-server 7.0+), takes the lab's standalone server (one plain server,
as an application uses before it moves to a cluster: every command runs there, so MONITOR sees
them all; a cluster node would refuse the cross-slot ones before MONITOR shows them), and
records with ``slotlab.audit.capture``:

- ``monitor_hazards.txt``: clean traffic and every hazard kind the auditor knows, with two
  clients interleaved inside a MULTI block and a script loaded with SCRIPT LOAD, run by EVALSHA;
- ``monitor_openim_38.txt``: OpenIM 3.8's CreateGroup batch delete (``v3_8_by_slot``) and
  ``get_joined_group_list``'s reads (``read_flow`` 3.8: the batch reads), through a plain client;
- ``monitor_openim_37.txt``: the same flows as 3.7 sends them (one single-key EVAL per key).
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable

import redis

from slotlab import openim
from slotlab.audit import capture
from slotlab.lab import start_lab

DATA = pathlib.Path(__file__).parent / "data"


def _record(client: redis.Redis, name: str, traffic: Callable[[], None]) -> None:
    with capture(client) as cap:
        time.sleep(0.2)  # MONITOR is on before the first command
        traffic()
        time.sleep(0.3)  # the last lines have arrived
    lines = [line for line in cap.lines if '"MONITOR"' not in line]
    (DATA / name).write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
    print(f"{name}: {len(lines)} lines")


def hazards(client: redis.Redis, other: redis.Redis, db1: redis.Redis) -> None:
    """Clean traffic, then one example of every hazard kind."""
    client.set("user:1", "alice")
    client.get("user:1")
    client.mset({"{user:1}:name": "alice", "{user:1}:mail": "a@example.com"})
    client.mget("{user:1}:name", "{user:1}:mail")
    with client.pipeline(transaction=True) as p:  # one slot: clean
        p.incr("{cart:7}:count").sadd("{cart:7}:items", "book").execute()
    client.eval("return redis.call('GET', KEYS[1])", 1, "user:1")  # clean script
    # crossslot
    client.sadd("group:42:members", "u1", "u2")
    client.sadd("group:42:admins", "u1")
    client.sunionstore("group:42:everyone", "group:42:members", "group:42:admins")
    # fan-out (a proxy splits these; a native cluster refuses or answers for one node)
    client.mget("user:1", "user:2")
    client.delete("session:1", "session:2", "session:3")
    client.keys("user:*")
    client.dbsize()
    # multi-crossslot, with another client's command in between
    a = client.connection_pool.get_connection()
    b = other.connection_pool.get_connection()
    try:
        for conn, args in (
            (a, ("MULTI",)), (a, ("SET", "order:1", "new")), (b, ("SET", "order:9", "x")),
            (a, ("INCR", "orders:count")), (a, ("EXEC",)),
        ):  # fmt: skip
            conn.send_command(*args)
            conn.read_response()
    finally:
        client.connection_pool.release(a)
        other.connection_pool.release(b)
    # scripts
    client.eval("return redis.call('GET', 'config:limits')", 0)  # zero keys
    client.eval(
        "redis.call('INCR', KEYS[1]) return redis.call('INCR', 'stats:' .. ARGV[1])",
        1, "user:1:logins", "logins",
    )  # fmt: skip  undeclared key, in another slot
    client.eval(
        "for _, k in ipairs(KEYS) do redis.call('DEL', k) end return 1",
        2, "{g1}:info", "{g1}:members",
    )  # fmt: skip  keys in one slot, but not written KEYS[n]: Alibaba's check
    client.eval("#!lua flags=no-cluster\nreturn redis.call('GET', KEYS[1])", 1, "user:1")
    sha = client.script_load("return redis.call('MGET', KEYS[1], KEYS[2])")
    client.evalsha(sha, 2, "user:1", "user:2")  # EVALSHA across slots, resolved by SCRIPT LOAD
    # databases
    db1.set("cache:1", "x")  # the client of db 1 sends SELECT 1 first
    client.set("tmp:1", "x")
    client.move("tmp:1", 1)
    client.swapdb(0, 1)
    client.swapdb(0, 1)
    # SORT with patterns
    client.rpush("list:ids", 3, 1, 2)
    client.mset({"weight_1": 3, "weight_2": 2, "weight_3": 1, "obj_1": "a", "obj_2": "b"})
    client.sort("list:ids", by="weight_*", get=["obj_*", "#"])
    client.sort("list:ids")  # no pattern: clean


def openim_flows(client: redis.Redis, version: str) -> None:
    """CreateGroup's cache delete, then get_joined_group_list's reads, as ``version`` sends."""
    keys = openim.create_group_keys("g1", "u1", ["u2", "u3"], version)
    if version == "3.8":
        openim.v3_8_by_slot(client, keys)
    else:
        openim.v3_7_per_key(client, keys)
    reads = openim.joined_group_list_reads("u1", ["g1", "g2", "g3"])
    openim.read_flow(client, reads, version)


def main() -> None:
    DATA.mkdir(exist_ok=True)
    lab = start_lab(masters=3, backend="real", password=None)
    try:
        client = lab.standalone_client(decode_responses=False)
        port = client.connection_pool.connection_kwargs["port"]
        other = redis.Redis(host="127.0.0.1", port=port)
        db1 = redis.Redis(host="127.0.0.1", port=port, db=1)
        _record(client, "monitor_hazards.txt", lambda: hazards(client, other, db1))
        client.flushall()
        _record(client, "monitor_openim_38.txt", lambda: openim_flows(client, "3.8"))
        client.flushall()
        _record(client, "monitor_openim_37.txt", lambda: openim_flows(client, "3.7"))
        for c in (other, db1):
            c.close()
    finally:
        lab.stop()


if __name__ == "__main__":
    main()
