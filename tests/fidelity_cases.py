"""The fidelity table: cases that must give the same replies on the real and emulated clusters.

Each case is a short list of steps run against a fresh 3-master lab (FLUSHALL, SCRIPT FLUSH,
FUNCTION FLUSH between cases). A step is one of:

- ``N(i, *args)``: ``execute_command`` on a plain ``redis.Redis`` to node ``i`` (RESP3, as
  redis-py 8 speaks by default; ``proto=2`` for RESP2). The outcome is the decoded reply, or
  the exception's class name and message.
- ``Raw(i, *requests)``: the exact bytes of the replies, read from a raw socket (RESP2 unless
  ``proto=3``). A request is a tuple of arguments or literal bytes to send as they are.
- ``RC(method, *args)``: a method of ``redis.cluster.RedisCluster``.
- ``Fn(callable)``: anything else; ``callable(ctx)`` returns the outcome.

Node 0 serves slots 0-5460, node 1 5461-10922, node 2 10923-16383 on both backends. Node IDs,
ports and addresses are normalised before comparing (``<id0>``, ``<port1>``, ``<addr2>``).

A case the emulator cannot match carries ``diff=`` with the reason: it runs as
``xfail(strict=True)`` and is listed in docs/emulated.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from slotlab.slots import key_slot

# Keys with known homes (slot, node): checked below against CRC16.
K0, K0B, K0C = "b", "bar", "hello"  # node 0, three different slots (3300, 5061, 866)
T0A, T0B, T0C = "{b}1", "{b}2", "{b}3"  # node 0, slot 3300 (the tag "b")
K1, K1B = "c", "g"  # node 1 (7365, 7233)
T1A, T1B = "{c}1", "{c}2"  # node 1, slot 7365
K2, K2B = "foo", "a"  # node 2 (12182, 15495)
T2A, T2B = "{foo}1", "{foo}2"  # node 2, slot 12182

assert [key_slot(k) for k in (K0, K0B, K0C, T0A, K1, K1B, T1A, K2, K2B, T2A)] == [
    3300, 5061, 866, 3300, 7365, 7233, 7365, 12182, 15495, 12182,
]


@dataclass(frozen=True)
class N:
    """A command on a plain client to node ``i``."""

    node: int
    args: tuple[Any, ...]
    proto: int = 3

    def __init__(self, node: int, *args: Any, proto: int = 3) -> None:
        object.__setattr__(self, "node", node)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "proto", proto)


@dataclass(frozen=True)
class Raw:
    """Requests on a fresh raw socket to node ``i``; the outcome is the exact reply bytes."""

    node: int
    requests: tuple[Any, ...]
    proto: int = 2
    replies: int | None = None  # how many replies to read (default: one per request)

    def __init__(
        self, node: int, *requests: Any, proto: int = 2, replies: int | None = None
    ) -> None:
        object.__setattr__(self, "node", node)
        object.__setattr__(self, "requests", requests)
        object.__setattr__(self, "proto", proto)
        object.__setattr__(self, "replies", replies)


class Anon(Raw):
    """Like ``Raw``, on a socket that has NOT authenticated (``Raw`` sends AUTH first when the
    lab has a password); ``PASSWORD`` in a request stands for the lab's password."""


PASSWORD = "<the lab's password>"


@dataclass(frozen=True)
class RC:
    """A method of the lab's RedisCluster client."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __init__(self, method: str, *args: Any, **kwargs: Any) -> None:
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", kwargs)


@dataclass(frozen=True)
class Fn:
    """Anything else: ``fn(ctx)`` returns the outcome."""

    fn: Callable[[Any], Any]


Step = N | Raw | Anon | RC | Fn


@dataclass(frozen=True)
class Case:
    """One fidelity case: an id, its steps, how to normalise, whether it is known to differ."""

    id: str
    steps: tuple[Step, ...]
    diff: str | None = None  # a known difference: the reason (the case runs as strict xfail)
    normalise: Callable[[Any], Any] | None = None
    setup: tuple[Step, ...] = ()  # run first; their outcomes are not compared
    # Why the outcome depends on the redis-py release (the client decides, not the server): the
    # recorded comparison then runs only with the redis-py release the recording was made with.
    client: str | None = None


CASES: list[Case] = []


def case(
    id: str,
    *steps: Step,
    diff: str | None = None,
    normalise: Callable[[Any], Any] | None = None,
    setup: tuple[Step, ...] = (),
    client: str | None = None,
) -> None:
    """Add a case to the table."""
    assert all(c.id != id for c in CASES), f"duplicate case id {id}"
    CASES.append(Case(id, tuple(steps), diff, normalise, setup, client))


# ---- normalisers -----------------------------------------------------------------------------


def _sorted_lines(text: Any) -> Any:
    return sorted(str(text).splitlines())


def cluster_nodes_view(text: Any) -> list[list[str]]:
    """CLUSTER NODES without its timestamps, one sorted list of fields per node."""
    rows = []
    for line in str(text).splitlines():
        parts = line.split()
        parts[5] = "<pong>"
        rows.append(parts)
    return sorted(rows)


def cluster_info_view(text: Any) -> list[str]:
    """CLUSTER INFO without its message counters (they count gossip, which has no twin)."""
    return [
        line for line in str(text).splitlines() if not line.startswith("cluster_stats_messages")
    ]


def no_offsets(value: Any) -> Any:
    """Replication offsets and times vary with traffic: keep the shape, not the numbers."""
    if isinstance(value, dict):
        return {
            k: ("<n>" if k in ("replication-offset", "create-time", "send-buffer-allocated",
                               "send-buffer-used") else no_offsets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [no_offsets(v) for v in value]
    return value


def sorted_list(value: Any) -> Any:
    """For replies whose order is a hash table's (SMEMBERS, CLUSTER SHARDS, ...)."""
    return sorted(value, key=repr) if isinstance(value, (list, set, tuple)) else value


def hello_view(value: Any) -> Any:
    """HELLO without the connection id."""
    if isinstance(value, dict):
        return {k: ("<id>" if k == "id" else v) for k, v in value.items()}
    if isinstance(value, list):
        return [("<id>" if i > 0 and value[i - 1] == "id" else v) for i, v in enumerate(value)]
    return value


_ID_FIELD = re.compile(rb"\$2\r\nid\r\n:\d+\r\n")


def raw_lines(outcome: Any) -> Any:
    """A raw reply as a sorted list of its lines: for replies in hash-table order."""
    return [sorted(x.split(b"\r\n")) if isinstance(x, bytes) else x for x in outcome]


def each(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Apply a normaliser to every step's outcome."""
    return lambda outcomes: [fn(o) for o in outcomes]


def last(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Apply a normaliser to the last step's outcome only."""
    return lambda outcomes: [*outcomes[:-1], fn(outcomes[-1])]


# ---- strings ---------------------------------------------------------------------------------

case("set-get-owned", N(0, "SET", K0, "v"), N(0, "GET", K0))
case("get-foreign-moved", N(0, "GET", K2))
case("set-foreign-moved", N(1, "SET", K0, "v"))
case("get-missing", N(0, "GET", K0))
case("set-options", N(0, "SET", K0, "v", "NX", "GET"), N(0, "SET", K0, "w", "XX", "GET"),
     N(0, "SET", K0, "x", "PX", "100000", "KEEPTTL"))
case("mget-same-slot", N(0, "SET", T0A, "1"), N(0, "MGET", T0A, T0B, T0C))
case("mget-cross-slot-one-node", N(0, "MGET", K0, K0B))
case("mget-cross-slot-two-nodes", N(0, "MGET", K0, K2))
case("mget-cross-slot-foreign-first", N(0, "MGET", K2, K0))
case("mget-all-foreign-same-slot", N(0, "MGET", T2A, T2B))
case("mget-duplicate-key", N(0, "MGET", K0, K0))
case("mset-same-slot", N(0, "MSET", T0A, "1", T0B, "2"), N(0, "MGET", T0A, T0B))
case("mset-cross-slot", N(0, "MSET", K0, "1", K0B, "2"))
case("mset-odd-args-same-slot", N(0, "MSET", T0A, "1", T0B))
case("mset-odd-args-cross-slot", N(0, "MSET", K0, "1", K0B))
case("msetnx-same-slot", N(0, "MSETNX", T0A, "1", T0B, "2"), N(0, "MSETNX", T0A, "1", T0C, "3"))
case("msetnx-cross-slot", N(0, "MSETNX", K0, "1", K0B, "2"))
case("incr-family", N(0, "INCR", K0), N(0, "INCRBY", K0, "10"), N(0, "DECR", K0),
     N(0, "INCRBYFLOAT", K0, "0.1"), N(0, "INCR", K0))
case("incrbyfloat-resp2-raw", Raw(0, ("INCRBYFLOAT", K0, "1.5"), ("INCRBYFLOAT", K0, "0.1")))
case("append-strlen-getrange", N(0, "APPEND", K0, "hello"), N(0, "APPEND", K0, " world"),
     N(0, "STRLEN", K0), N(0, "GETRANGE", K0, "0", "4"), N(0, "SETRANGE", K0, "6", "W"),
     N(0, "GET", K0))
case("getdel-getex", N(0, "SET", K0, "v"), N(0, "GETEX", K0, "PERSIST"), N(0, "GETDEL", K0),
     N(0, "GETDEL", K0))
case("lcs-same-slot", N(0, "MSET", T0A, "ohmytext", T0B, "mynewtext"),
     N(0, "LCS", T0A, T0B), N(0, "LCS", T0A, T0B, "LEN"))
case("lcs-cross-slot", N(0, "LCS", K0, K0B))
case("incr-wrongtype", N(0, "LPUSH", K0, "x"), N(0, "INCR", K0), N(0, "GET", K0))
case("incr-not-integer", N(0, "SET", K0, "abc"), N(0, "INCR", K0))

# ---- keys ------------------------------------------------------------------------------------

case("del-same-slot", N(0, "MSET", T0A, "1", T0B, "2"), N(0, "DEL", T0A, T0B, T0C))
case("del-cross-slot", N(0, "DEL", K0, K0B))
case("del-foreign", N(0, "DEL", K2))
case("unlink-same-slot", N(0, "SET", T0A, "1"), N(0, "UNLINK", T0A, T0B))
case("unlink-cross-slot", N(0, "UNLINK", K0, K2))
case("exists-same-slot-duplicates", N(0, "SET", T0A, "1"), N(0, "EXISTS", T0A, T0A, T0B))
case("exists-cross-slot", N(0, "EXISTS", K0, K0B))
case("touch-same-slot", N(0, "SET", T0A, "1"), N(0, "TOUCH", T0A, T0B, T0A))
case("touch-cross-slot", N(0, "TOUCH", K0, K0C))
case("rename-same-slot", N(0, "SET", T0A, "1"), N(0, "RENAME", T0A, T0B), N(0, "GET", T0B))
case("rename-cross-slot", N(0, "SET", K0, "1"), N(0, "RENAME", K0, K0B))
case("rename-missing", N(0, "RENAME", T0A, T0B))
case("renamenx-same-slot", N(0, "MSET", T0A, "1", T0B, "2"), N(0, "RENAMENX", T0A, T0B))
case("renamenx-cross-slot", N(0, "RENAMENX", K0, K2))
case("copy-same-slot", N(0, "SET", T0A, "1"), N(0, "COPY", T0A, T0B), N(0, "GET", T0B))
case("copy-cross-slot", N(0, "COPY", K0, K0B))
case("copy-to-db", N(0, "SET", T0A, "1"), N(0, "COPY", T0A, T0B, "DB", "1"))
case("type-ttl-expire-persist", N(0, "SET", K0, "v"), N(0, "TYPE", K0), N(0, "TTL", K0),
     N(0, "EXPIRE", K0, "100"), N(0, "TTL", K0), N(0, "PERSIST", K0), N(0, "TTL", K0),
     N(0, "TYPE", K0B))
case("keys-are-node-local", N(0, "SET", K0, "1"), N(1, "SET", K1, "1"), N(0, "KEYS", "*"),
     N(1, "KEYS", "*"), N(2, "KEYS", "*"), N(0, "DBSIZE"), N(2, "DBSIZE"))
case("scan-node-local", N(0, "SET", K0, "1"), N(0, "SCAN", "0"), N(2, "SCAN", "0"))
case("randomkey-empty", N(0, "RANDOMKEY"))
case("sort-store-same-slot", N(0, "RPUSH", T0A, "3", "1", "2"), N(0, "SORT", T0A, "STORE", T0B),
     N(0, "LRANGE", T0B, "0", "-1"))
case("sort-store-cross-slot", N(0, "RPUSH", K0, "3", "1"), N(0, "SORT", K0, "STORE", K0B))
case("sort-ro", N(0, "RPUSH", K0, "3", "1", "2"), N(0, "SORT_RO", K0, "DESC"))
# sort.c refuses, in cluster mode, a BY pattern with '*' (even with the list's own hash tag)
# and any GET (even GET #), as it reads the options left to right; BY without '*' means "do
# not sort"; strchr stops at a NUL byte.
case("sort-by-pattern-in-cluster", N(0, "RPUSH", K0, "3", "1", "2"), N(0, "SORT", K0, "BY", "w_*"),
     N(0, "SORT", K0, "BY", "{b}w_*"), N(0, "SORT", K0, "BY", "nosort"),
     N(0, "SORT", K0, "BY", b"a\x00*"), N(0, "SORT", "nokey", "BY", "w_*"),
     N(0, "SORT", K0, "BY", "w_*", "BY", "nosort"), N(0, "SORT", K0, "STORE", T0A, "BY", "w_*"),
     N(0, "EXISTS", T0A))
case("sort-get-in-cluster", N(0, "RPUSH", K0, "3", "1", "2"), N(0, "SORT", K0, "GET", "#"),
     N(0, "SORT", K0, "GET", "o_*"), N(0, "SORT", K0, "ALPHA", "DESC", "BY", "nosort", "GET", "#"),
     N(0, "SORT", K0, "LIMIT", "0", "1", "GET", "o_*"), N(0, "SORT", K0, "BY", "w_*", "GET", "#"))
case("sort-ro-patterns-in-cluster", N(0, "RPUSH", K0, "3", "1", "2"),
     N(0, "SORT_RO", K0, "BY", "w_*"), N(0, "SORT_RO", K0, "GET", "#"),
     N(0, "SORT_RO", K0, "BY", "nosort"), N(0, "SORT_RO", K0, "STORE", "d", "BY", "w_*"))
case("sort-bad-option-before-pattern", N(0, "RPUSH", K0, "3", "1", "2"),
     N(0, "SORT", K0, "LIMIT", "a", "1", "BY", "w_*"), N(0, "SORT", K0, "FOO", "BY", "w_*"),
     N(0, "SORT", K0, "BY", "w_*", "FOO"), N(0, "SORT", K0, "BY"), N(0, "SORT", K0, "GET"))
case("sort-pattern-in-script-and-multi", N(0, "RPUSH", K0, "3", "1", "2"),
     N(0, "EVAL", "return redis.call('SORT', KEYS[1], 'BY', 'w_*')", "1", K0),
     N(0, "EVAL", "return redis.call('SORT', KEYS[1], 'GET', '#')", "1", K0),
     Raw(0, ("MULTI",), ("SORT", K0, "BY", "w_*"), ("SORT", K0, "BY", "nosort"), ("EXEC",)))
case("select-in-cluster", N(0, "SELECT", "0"), N(0, "SELECT", "1"), N(0, "SELECT", "x"))
case("swapdb-in-cluster", N(0, "SWAPDB", "0", "1"))
case("move-in-cluster", N(0, "SET", K0, "1"), N(0, "MOVE", K0, "1"))
case("object-encoding", N(0, "SET", K0, "1"), N(0, "OBJECT", "ENCODING", K0),
     diff="fakeredis has no OBJECT ENCODING (it does not model encodings)")

# ---- sets ------------------------------------------------------------------------------------

case("sadd-smembers", N(0, "SADD", K0, "x", "y", "x"), N(0, "SMEMBERS", K0),
     N(0, "SISMEMBER", K0, "y"), N(0, "SMISMEMBER", K0, "x", "z"), N(0, "SCARD", K0),
     normalise=each(sorted_list))
case("smembers-resp3-raw", N(0, "SADD", K0, "only"), Raw(0, ("SMEMBERS", K0), proto=3))
case("smembers-resp2-raw", N(0, "SADD", K0, "only"), Raw(0, ("SMEMBERS", K0), proto=2))
case("sunion-same-slot", N(0, "SADD", T0A, "1", "2"), N(0, "SADD", T0B, "2", "3"),
     N(0, "SUNION", T0A, T0B), N(0, "SINTER", T0A, T0B), N(0, "SDIFF", T0A, T0B),
     normalise=each(sorted_list))
case("sunion-cross-slot", N(0, "SUNION", K0, K0B))
case("sinter-cross-slot", N(0, "SINTER", K0, K2))
case("sdiff-cross-slot", N(0, "SDIFF", K0, K0C))
case("sunionstore-same-slot", N(0, "SADD", T0A, "1", "2"), N(0, "SUNIONSTORE", T0C, T0A, T0B),
     N(0, "SINTERSTORE", T0C, T0A, T0B), N(0, "SDIFFSTORE", T0C, T0A, T0B))
case("sunionstore-dest-cross-slot", N(0, "SUNIONSTORE", K0B, T0A, T0B))
case("sinterstore-cross-slot", N(0, "SINTERSTORE", T0A, K0, K2))
case("sdiffstore-cross-slot", N(0, "SDIFFSTORE", K0, K0B))
case("smove-same-slot", N(0, "SADD", T0A, "m"), N(0, "SMOVE", T0A, T0B, "m"),
     N(0, "SMEMBERS", T0B))
case("smove-cross-slot", N(0, "SMOVE", K0, K0B, "m"))
case("sintercard-same-slot", N(0, "SADD", T0A, "1", "2", "3"), N(0, "SADD", T0B, "2", "3"),
     N(0, "SINTERCARD", "2", T0A, T0B), N(0, "SINTERCARD", "2", T0A, T0B, "LIMIT", "1"))
case("sintercard-cross-slot", N(0, "SINTERCARD", "2", K0, K0B))
case("sintercard-bad-numkeys", N(0, "SINTERCARD", "0", K0), N(0, "SINTERCARD", "5", K0),
     N(0, "SINTERCARD", "x", K0))
case("spop-count-resp3", N(0, "SADD", K0, "one"), Raw(0, ("SPOP", K0, "5"), proto=3))

# ---- sorted sets -----------------------------------------------------------------------------

case("zadd-zrange-withscores", N(0, "ZADD", K0, "1", "a", "2.5", "b"),
     N(0, "ZRANGE", K0, "0", "-1", "WITHSCORES"), N(0, "ZSCORE", K0, "b"),
     N(0, "ZINCRBY", K0, "0.1", "a"))
case("zscore-raw-both-protocols", N(0, "ZADD", K0, "0.1", "m"),
     Raw(0, ("ZSCORE", K0, "m"), proto=2), Raw(0, ("ZSCORE", K0, "m"), proto=3))
case("zrange-withscores-raw-resp3", N(0, "ZADD", K0, "1", "a", "2", "b"),
     Raw(0, ("ZRANGE", K0, "0", "-1", "WITHSCORES"), proto=3))
case("zunion-same-slot", N(0, "ZADD", T0A, "1", "x"), N(0, "ZADD", T0B, "2", "x", "3", "y"),
     N(0, "ZUNION", "2", T0A, T0B, "WITHSCORES"), N(0, "ZINTER", "2", T0A, T0B),
     N(0, "ZDIFF", "2", T0B, T0A))
case("zunion-cross-slot", N(0, "ZUNION", "2", K0, K0B))
case("zinter-cross-slot", N(0, "ZINTER", "2", K0, K2))
case("zdiff-cross-slot", N(0, "ZDIFF", "2", K0, K0C))
case("zunionstore-same-slot", N(0, "ZADD", T0A, "1", "x"), N(0, "ZADD", T0B, "2", "x"),
     N(0, "ZUNIONSTORE", T0C, "2", T0A, T0B, "WEIGHTS", "1", "2"),
     N(0, "ZRANGE", T0C, "0", "-1", "WITHSCORES"))
case("zunionstore-dest-cross-slot", N(0, "ZUNIONSTORE", K0B, "2", T0A, T0B))
case("zinterstore-cross-slot", N(0, "ZINTERSTORE", T0A, "2", T0B, K2))
case("zdiffstore-cross-slot", N(0, "ZDIFFSTORE", K0, "1", K0B))
case("zunionstore-numkeys-zero", N(0, "ZUNIONSTORE", T0A, "0", T0B))
case("zunion-numkeys-too-big", N(0, "ZUNION", "3", T0A, T0B))
case("zrangestore-same-slot", N(0, "ZADD", T0A, "1", "x", "2", "y"),
     N(0, "ZRANGESTORE", T0B, T0A, "0", "0"), N(0, "ZRANGE", T0B, "0", "-1"))
case("zrangestore-cross-slot", N(0, "ZRANGESTORE", K0, K0B, "0", "-1"))
case("zintercard-same-and-cross", N(0, "ZADD", T0A, "1", "x"), N(0, "ZADD", T0B, "1", "x"),
     N(0, "ZINTERCARD", "2", T0A, T0B), N(0, "ZINTERCARD", "2", K0, K0B))
case("zmpop-same-and-cross", N(0, "ZADD", T0B, "1", "x", "2", "y"),
     N(0, "ZMPOP", "2", T0A, T0B, "MIN", "COUNT", "1"), N(0, "ZMPOP", "2", K0, K0B, "MAX"))
case("bzmpop-data-present", N(0, "ZADD", T0B, "1", "x"),
     N(0, "BZMPOP", "0.05", "2", T0A, T0B, "MIN"))
case("bzpopmin-cross-slot", N(0, "BZPOPMIN", K0, K0B, "0.01"))

# ---- lists -----------------------------------------------------------------------------------

case("lpush-lrange", N(0, "LPUSH", K0, "a", "b"), N(0, "RPUSH", K0, "c"),
     N(0, "LRANGE", K0, "0", "-1"), N(0, "LPOS", K0, "c"), N(0, "LLEN", K0))
case("lmove-same-slot", N(0, "RPUSH", T0A, "1", "2"), N(0, "LMOVE", T0A, T0B, "LEFT", "RIGHT"),
     N(0, "LRANGE", T0B, "0", "-1"))
case("lmove-cross-slot", N(0, "LMOVE", K0, K0B, "LEFT", "RIGHT"))
case("rpoplpush-same-slot", N(0, "RPUSH", T0A, "1"), N(0, "RPOPLPUSH", T0A, T0B),
     N(0, "RPOPLPUSH", T0A, T0B))
case("rpoplpush-cross-slot", N(0, "RPOPLPUSH", K0, K2))
case("blmove-same-slot-data", N(0, "RPUSH", T0A, "1"),
     N(0, "BLMOVE", T0A, T0B, "RIGHT", "LEFT", "0.05"))
case("blmove-cross-slot", N(0, "BLMOVE", K0, K0B, "RIGHT", "LEFT", "0.01"))
case("blpop-timeout", N(0, "BLPOP", T0A, T0B, "0.02"))
case("blpop-timeout-raw-resp2", Raw(0, ("BLPOP", K0, "0.02")))
case("blpop-cross-slot", N(0, "BLPOP", K0, K0B, "0.01"))
case("brpoplpush-cross-slot", N(0, "BRPOPLPUSH", K0, K2, "0.01"))
case("lmpop-same-slot", N(0, "RPUSH", T0B, "1", "2", "3"),
     N(0, "LMPOP", "2", T0A, T0B, "LEFT", "COUNT", "2"), N(0, "LMPOP", "1", T0A, "LEFT"))
case("lmpop-cross-slot", N(0, "LMPOP", "2", K0, K0B, "LEFT"))
case("blmpop-same-slot-data", N(0, "RPUSH", T0A, "1"),
     N(0, "BLMPOP", "0.05", "2", T0A, T0B, "RIGHT"))
case("blmpop-cross-slot", N(0, "BLMPOP", "0.01", "2", K0, K2, "RIGHT"))
case("lpop-missing-raw-resp3", Raw(0, ("LPOP", K0), ("LPOP", K0, "2"), proto=3))

# ---- streams ---------------------------------------------------------------------------------

case("xadd-xrange", N(0, "XADD", K0, "1-1", "f", "v"), N(0, "XADD", K0, "1-2", "g", "w"),
     N(0, "XRANGE", K0, "-", "+"), N(0, "XLEN", K0))
case("xread-same-slot", N(0, "XADD", T0A, "1-1", "f", "v"), N(0, "XADD", T0B, "2-1", "f", "w"),
     N(0, "XREAD", "COUNT", "5", "STREAMS", T0A, T0B, "0", "0"))
case("xread-cross-slot", N(0, "XREAD", "STREAMS", K0, K0B, "0", "0"))
case("xread-foreign", N(0, "XREAD", "STREAMS", K2, "0"))
case("xread-block-timeout", N(0, "XREAD", "BLOCK", "20", "STREAMS", K0, "$"))
case("xreadgroup-same-slot", N(0, "XADD", T0A, "1-1", "f", "v"),
     N(0, "XGROUP", "CREATE", T0A, "g", "0"),
     N(0, "XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", T0A, ">"))
case("xreadgroup-cross-slot", N(0, "XREADGROUP", "GROUP", "g", "c", "STREAMS", K0, K0B, ">", ">"))

# ---- bitmaps, hyperloglog, hashes, geo ------------------------------------------------------

case("bitop-same-slot", N(0, "SET", T0A, "ab"), N(0, "SET", T0B, "cd"),
     N(0, "BITOP", "AND", T0C, T0A, T0B), N(0, "GET", T0C), N(0, "BITCOUNT", T0C))
case("bitop-cross-slot", N(0, "BITOP", "OR", K0, K0B, K0C))
case("setbit-getbit-bitfield-ro", N(0, "SETBIT", K0, "7", "1"), N(0, "GETBIT", K0, "7"),
     N(0, "BITFIELD_RO", K0, "GET", "u8", "0"), N(0, "BITFIELD_RO", K0, "SET", "u8", "0", "1"))
case("pfadd-pfcount-same-slot", N(0, "PFADD", T0A, "a", "b"), N(0, "PFADD", T0B, "b", "c"),
     N(0, "PFCOUNT", T0A, T0B), N(0, "PFMERGE", T0C, T0A, T0B), N(0, "PFCOUNT", T0C))
case("pfcount-cross-slot", N(0, "PFCOUNT", K0, K0B))
case("pfmerge-cross-slot", N(0, "PFMERGE", K0, K2))
case("hset-hgetall", N(0, "HSET", K0, "f", "1", "g", "2"), N(0, "HGETALL", K0),
     N(0, "HINCRBYFLOAT", K0, "f", "0.5"), N(0, "HMGET", K0, "f", "nope"))
case("hgetall-raw-resp3", N(0, "HSET", K0, "f", "1"), Raw(0, ("HGETALL", K0), proto=3))
case("hgetall-raw-resp2", N(0, "HSET", K0, "f", "1"), Raw(0, ("HGETALL", K0), proto=2))
_SICILY = ("13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania")
case("geo-same-slot", N(0, "GEOADD", T0A, *_SICILY),
     N(0, "GEOSEARCHSTORE", T0B, T0A, "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km"),
     N(0, "ZCARD", T0B))
case("geodist-precision", N(0, "GEOADD", K0, *_SICILY), N(0, "GEODIST", K0, "Palermo", "Catania"),
     diff="fakeredis stores GEO points as a 50-bit base32 geohash, Redis as a 52-bit integer "
     "geohash: decoded points, hence distances, differ after the 3rd decimal")
case("geosearchstore-cross-slot", N(0, "GEOSEARCHSTORE", K0, K0B, "FROMLONLAT", "15", "37",
                                    "BYRADIUS", "200", "km"))
case("georadius-store-cross-slot", N(0, "GEORADIUS", K0, "15", "37", "200", "km", "STORE", K0B))

# ---- hash tags and CLUSTER KEYSLOT (FACTS.md section 1) --------------------------------------

for _key, _slot in [
    ("123456789", 12739), ("foo", 12182), ("a", 15495), ("b", 3300), ("bar", 5061),
    ("hello", 866), ("user1000", 3443), ("{user1000}.following", 3443),
    ("{user1000}.followers", 3443), ("{}", 15257), ("foo{}{bar}", 8363),
    ("foo{{bar}}zap", 4015), ("foo{bar}{zap}", 5061), ("}{", 12793), ("", 0),
    ("user:1000", 1649), ("GROUP_INFO:g1", 1310), ("GROUP_MEMBER_IDS:g1", 13721),
]:
    case(f"keyslot[{_key}]", N(0, "CLUSTER", "KEYSLOT", _key))
case("hash-tag-colocates-mset", N(0, "MSET", "{user1000}.following", "1",
                                  "{user1000}.followers", "2"),
     N(0, "MGET", "{user1000}.following", "{user1000}.followers"))
case("empty-hash-tag-is-whole-key", N(2, "MSET", "{}", "1", "{}x", "2"))

# ---- MULTI / EXEC ----------------------------------------------------------------------------

case("multi-exec-same-slot", N(0, "MULTI"), N(0, "SET", T0A, "1"), N(0, "INCR", T0B),
     N(0, "EXEC"))
case("multi-exec-cross-slot-same-node", N(0, "MULTI"), N(0, "SET", K0, "1"), N(0, "SET", K0B, "2"),
     N(0, "EXEC"), N(0, "GET", K0))
case("multi-foreign-key-execabort", N(0, "MULTI"), N(0, "SET", K2, "1"), N(0, "EXEC"))
case("multi-crossslot-command-execabort", N(0, "MULTI"), N(0, "MGET", K0, K0B), N(0, "EXEC"))
case("multi-unknown-command-execabort", N(0, "MULTI"), N(0, "NOSUCH", "x"), N(0, "EXEC"))
case("multi-wrong-arity-execabort", N(0, "MULTI"), N(0, "GET"), N(0, "EXEC"))
case("multi-runtime-error-inside", N(0, "SET", K0, "x"), N(0, "MULTI"), N(0, "INCR", K0),
     N(0, "SET", T0B, "ok"), N(0, "EXEC"))
case("exec-without-multi", N(0, "EXEC"), N(0, "DISCARD"))
case("multi-nested", N(0, "MULTI"), N(0, "MULTI"), N(0, "EXEC"))
case("multi-discard", N(0, "MULTI"), N(0, "SET", K0, "1"), N(0, "DISCARD"), N(0, "GET", K0))
case("exec-with-argument", N(0, "MULTI"), N(0, "SET", K0, "1"), N(0, "EXEC", "x"), N(0, "GET", K0))
case("watch-inside-multi", N(0, "MULTI"), N(0, "WATCH", K0), N(0, "EXEC"))
case("multi-no-keys", N(0, "MULTI"), N(0, "PING"), N(0, "ECHO", "hi"), N(0, "EXEC"))
case("multi-keyless-then-keyed-foreign", N(0, "MULTI"), N(0, "PING"), N(0, "GET", K1),
     N(0, "EXEC"))
case("multi-exec-raw-resp2", Raw(0, ("MULTI",), ("SET", K0, "1"), ("GET", K0), ("EXEC",)))
case("multi-eval-inside", N(0, "MULTI"),
     N(0, "EVAL", "return redis.call('incr', KEYS[1])", "1", K0),
     N(0, "GET", K0), N(0, "EXEC"))
_CLUSTER_TX = "redis-py 6.0's RedisCluster refuses transaction=True pipelines itself"
case("pipeline-transaction-cross-slot",
     Fn(lambda ctx: ctx.rc_pipeline([("set", K0, "1"), ("set", K2, "2")], transaction=True)),
     client=_CLUSTER_TX)
case("pipeline-transaction-same-slot",
     Fn(lambda ctx: ctx.rc_pipeline([("set", T0A, "1"), ("get", T0A)], transaction=True)),
     client=_CLUSTER_TX)
case("pipeline-no-transaction-many-nodes",
     Fn(lambda ctx: ctx.rc_pipeline([("set", K0, "1"), ("set", K2, "2"), ("get", K0)])))


def _watch_then_touch(ctx: Any) -> Any:
    """WATCH a key, change it from another connection, then EXEC: the transaction is void."""
    conn = ctx.plain(0, fresh=True)
    other = ctx.plain(0, fresh=True)
    try:
        out = [conn.execute_command("WATCH", K0), other.execute_command("SET", K0, "changed")]
        out += [conn.execute_command("MULTI"), conn.execute_command("SET", K0, "mine")]
        out += [conn.execute_command("EXEC"), conn.execute_command("GET", K0)]
        return out
    finally:
        conn.close()
        other.close()


case("watch-dirty-exec-null", Fn(_watch_then_touch))
case("watch-dirty-exec-raw", Raw(0, ("WATCH", K0), ("SET", K0, "x"), ("MULTI",), ("EXEC",)),
     diff=None)

# ---- scripts ---------------------------------------------------------------------------------

def sha(script: str) -> str:
    """The SHA1 a script is cached under."""
    return hashlib.sha1(script.encode()).hexdigest()


GET1 = "return redis.call('get', KEYS[1])"
SET1 = "return redis.call('set', KEYS[1], ARGV[1])"
TOUCH_ARGV = "return redis.call('get', ARGV[1])"
LUA_CROSS = "#!lua\nreturn redis.call('get', ARGV[1])"
LUA_ALLOW = "#!lua flags=allow-cross-slot-keys\nreturn redis.call('get', ARGV[1])"

case("eval-no-keys", N(0, "EVAL", "return 1", "0"), N(1, "EVAL", "return {1, 'two', false}", "0"))
case("eval-one-key-owned", N(0, "EVAL", SET1, "1", K0, "v"), N(0, "EVAL", GET1, "1", K0))
case("eval-one-key-foreign", N(0, "EVAL", GET1, "1", K2))
case("eval-many-keys-same-slot", N(0, "EVAL", "return #KEYS", "3", T0A, T0B, T0C))
case("eval-many-keys-cross-slot", N(0, "EVAL", "return #KEYS", "3", K0, K0B, K0C))
case("eval-many-keys-cross-node", N(0, "EVAL", "return #KEYS", "2", K0, K2))
case("eval-numkeys-errors", N(0, "EVAL", "return 1", "3", K0), N(0, "EVAL", "return 1", "-1"),
     N(0, "EVAL", "return 1", "x"))
case("eval-undeclared-same-slot", N(0, "SET", T0B, "v"), N(0, "EVAL", TOUCH_ARGV, "1", T0A, T0B))
case("eval-undeclared-other-local-slot-legacy", N(0, "SET", K0B, "v"),
     N(0, "EVAL", TOUCH_ARGV, "1", K0, K0B))
case("eval-undeclared-remote-key", N(0, "EVAL", TOUCH_ARGV, "1", K0, K2))
case("eval-undeclared-remote-key-no-keys", N(0, "EVAL", TOUCH_ARGV, "0", K2))
case("eval-undeclared-local-key-no-keys", N(0, "SET", K0, "v"), N(0, "EVAL", TOUCH_ARGV, "0", K0))
case("eval-two-undeclared-slots-no-keys", N(0, "EVAL",
     "redis.call('get', ARGV[1]); return redis.call('get', ARGV[2])", "0", K0, K0B))
case("shebang-undeclared-other-slot", N(0, "EVAL", LUA_CROSS, "1", K0, K0B))
case("shebang-undeclared-same-slot", N(0, "EVAL", LUA_CROSS, "1", T0A, T0B))
case("shebang-two-undeclared-slots", N(0, "EVAL",
     "#!lua\nredis.call('get', ARGV[1])\nreturn redis.call('get', ARGV[2])", "0", K0, K0B))
case("shebang-allow-cross-slot-local", N(0, "SET", K0B, "v"), N(0, "EVAL", LUA_ALLOW, "1", K0, K0B))
case("shebang-allow-cross-slot-remote", N(0, "EVAL", LUA_ALLOW, "1", K0, K2))
case("shebang-allow-cross-slot-declared-keys", N(0, "EVAL", LUA_ALLOW, "2", K0, K0B, K0))
case("shebang-no-writes", N(0, "EVAL", "#!lua flags=no-writes\n" + SET1, "1", K0, "v"),
     N(0, "EVAL", "#!lua flags=no-writes\n" + GET1, "1", K0))
case("shebang-no-cluster", N(0, "EVAL", "#!lua flags=no-cluster\nreturn 1", "0"))
case("shebang-allow-oom-allow-stale",
     N(0, "EVAL", "#!lua flags=allow-oom,allow-stale\nreturn 1", "0"))
case("shebang-errors", N(0, "EVAL", "#!python\nreturn 1", "0"),
     N(0, "EVAL", "#!lua flags=bogus\nreturn 1", "0"), N(0, "EVAL", "#!lua foo=bar\nreturn 1", "0"),
     N(0, "EVAL", "#!lua", "0"))
case("shebang-keeps-line-numbers", N(0, "EVAL", "#!lua\n\nerror('line three')", "0"))
case("eval-ro-write", N(0, "EVAL_RO", SET1, "1", K0, "v"), N(0, "EVAL_RO", GET1, "1", K0))
case("eval-ro-shebang-write-flag", N(0, "EVAL_RO", "#!lua\nreturn 1", "0"))
case("evalsha-same-node", N(0, "SCRIPT", "LOAD", GET1), N(0, "SET", K0, "v"),
     N(0, "EVALSHA", sha(GET1), "1", K0))
case("evalsha-other-node-noscript", N(0, "SCRIPT", "LOAD", GET1),
     N(1, "EVALSHA", sha(GET1), "1", K1))
case("evalsha-uppercase-sha", N(0, "SCRIPT", "LOAD", "return 7"),
     N(0, "EVALSHA", sha("return 7").upper(), "0"))
case("evalsha-bad-length", N(0, "EVALSHA", "abc", "0"))
case("script-exists-per-node", N(0, "SCRIPT", "LOAD", "return 7"),
     N(0, "SCRIPT", "EXISTS", sha("return 8"), sha("return 7")),
     N(1, "SCRIPT", "EXISTS", sha("return 7")))
case("script-load-compile-error", N(0, "SCRIPT", "LOAD", "return +"))
case("script-flush-and-noscript", N(0, "SCRIPT", "LOAD", "return 7"), N(0, "SCRIPT", "FLUSH"),
     N(0, "EVALSHA", sha("return 7"), "0"),
     N(0, "SCRIPT", "FLUSH", "BAD"))
case("script-kill-notbusy", N(0, "SCRIPT", "KILL"))
case("script-error-call", N(0, "EVAL", "error('boom')", "0"))
case("script-error-table", N(0, "EVAL", "error({err='MYCODE custom'})", "0"))
case("script-wrongtype-raises", N(0, "LPUSH", K0, "x"), N(0, "EVAL", GET1, "1", K0))
case("script-pcall-returns-error", N(0, "LPUSH", K0, "x"),
     N(0, "EVAL", "return redis.pcall('get', KEYS[1])", "1", K0))
case("script-pcall-error-is-a-table", N(0, "LPUSH", K0, "x"),
     N(0, "EVAL", "local r = redis.pcall('get', KEYS[1]); return r['err']", "1", K0))
case("script-error-reply", N(0, "EVAL", "return redis.error_reply('MY err')", "0"),
     N(0, "EVAL", "return redis.error_reply('plain')", "0"))
case("script-status-reply", N(0, "EVAL", "return redis.status_reply('FINE')", "0"))
case("script-unknown-command", N(0, "EVAL", "return redis.call('nosuch')", "0"))
case("script-wrong-arity", N(0, "EVAL", "return redis.call('get')", "0"))
case("script-noscript-command", N(0, "EVAL", "return redis.call('multi')", "0"))
case("script-crossslot-inside-call", N(0, "EVAL", "return redis.call('mget', ARGV[1], ARGV[2])",
                                       "0", K0, K0B))
case("script-nonexistent-global", N(0, "EVAL", "return nosuch", "0"))
case("script-set-global", N(0, "EVAL", "x = 1\nreturn 1", "0"))
case("script-compile-error", N(0, "EVAL", "return +", "0"))
case("script-return-types", N(0, "EVAL", "return {1, 2.9, 'x', true, false, {3}}", "0"),
     N(0, "EVAL", "return 3.99", "0"), N(0, "EVAL", "return nil", "0"))
case("script-return-types-raw", Raw(0, ("EVAL", "return {1, 'x', false, {ok='S'}}", "0")))
case("script-setresp3-map", N(0, "HSET", K0, "f", "v"),
     N(0, "EVAL", "redis.setresp(3); return redis.call('hgetall', KEYS[1])", "1", K0))
_NUMBERS = (
    "redis.call('set', KEYS[1], 0.1); redis.call('set', KEYS[2], 10); "
    "redis.call('set', KEYS[3], 1e20); redis.call('set', KEYS[4], 1/3); "
    "return redis.call('mget', KEYS[1], KEYS[2], KEYS[3], KEYS[4])"
)
case("script-number-arguments", N(0, "EVAL", _NUMBERS, "4", T0A, T0B, T0C, "{b}4"),
     N(0, "EVAL", "return redis.call('set', KEYS[1], true)", "1", K0))
case("script-sha1hex-and-version", N(0, "EVAL", "return redis.sha1hex('')", "0"),
     N(0, "EVAL", "return redis.REDIS_VERSION", "0"))
case("script-cluster-keyslot-inside", N(0, "EVAL", "return redis.call('cluster', 'keyslot', 'foo')",
                                        "0"))
case("script-blocking-command-inside",
     N(0, "EVAL", "return redis.call('blpop', KEYS[1], 0)", "1", K0),
     N(0, "EVAL", "return redis.call('xread', 'BLOCK', 0, 'STREAMS', KEYS[1], '$')", "1", K0))
case("script-xread-no-data", N(0, "EVAL", "return redis.call('xread', 'STREAMS', KEYS[1], '$')",
                               "1", K0),
     N(0, "EVAL", "return redis.call('xread', 'STREAMS', KEYS[1], '0')", "1", K0),
     N(0, "XREAD", "STREAMS", K0, "0"), Raw(0, ("XREAD", "STREAMS", K0, "0")),
     Raw(0, ("XREAD", "STREAMS", K0, "0"), proto=3))
case("script-unpack-8000-keys", Fn(lambda ctx: ctx.plain(0).execute_command(
    "EVAL", "return #{unpack(KEYS)}", 8000, *[f"{{t}}{i}" for i in range(8000)])))
case("script-unpack-chunked", Fn(lambda ctx: ctx.plain(0).execute_command(
    "EVAL", "local n = 0 for i = 1, #KEYS, 1000 do n = n + #{unpack(KEYS, i, math.min(i + 999, "
    "#KEYS))} end return n", 8000, *[f"{{t}}{i}" for i in range(8000)])))
case("rc-eval-cross-slot-client-refuses", RC("eval", GET1, 2, K0, K2))
case("rc-eval-same-slot", RC("eval", "return #KEYS", 2, T0A, T0B))
case("rc-evalsha-after-script-load", RC("script_load", "return 42"),
     RC("evalsha", sha("return 42"), 0))


_LIB = (
    "#!lua name=slotlab\n"
    "redis.register_function('first', function(keys, args) return keys[1] end)"
)

case("fcall-same-slot", N(0, "FUNCTION", "LOAD", "REPLACE", _LIB),
     N(0, "FCALL", "first", "2", T0A, T0B))
case("fcall-cross-slot", N(0, "FUNCTION", "LOAD", "REPLACE", _LIB),
     N(0, "FCALL", "first", "2", K0, K0B))
case("fcall-foreign", N(0, "FCALL", "first", "1", K2))
case("fcall-function-per-node", N(0, "FUNCTION", "LOAD", "REPLACE", _LIB),
     N(1, "FCALL", "first", "1", K1))

# ---- CLUSTER ---------------------------------------------------------------------------------

case("cluster-myid", N(0, "CLUSTER", "MYID"), N(2, "CLUSTER", "MYID"))
case("cluster-nodes", N(1, "CLUSTER", "NODES"), normalise=each(cluster_nodes_view))
case("cluster-slots", N(0, "CLUSTER", "SLOTS"), N(2, "CLUSTER", "SLOTS"))
case("cluster-slots-raw-resp3", Raw(0, ("CLUSTER", "SLOTS"), proto=3))
case("cluster-slots-raw-resp2", Raw(1, ("CLUSTER", "SLOTS"), proto=2))
case("cluster-shards", N(0, "CLUSTER", "SHARDS"),
     normalise=each(lambda v: sorted_list(no_offsets(v))))
case("cluster-info", N(0, "CLUSTER", "INFO"), normalise=each(cluster_info_view))
case("cluster-countkeysinslot", N(0, "MSET", T0A, "1", T0B, "2"),
     N(0, "CLUSTER", "COUNTKEYSINSLOT", "3300"), N(1, "CLUSTER", "COUNTKEYSINSLOT", "3300"),
     N(0, "CLUSTER", "COUNTKEYSINSLOT", "16384"), N(0, "CLUSTER", "COUNTKEYSINSLOT", "x"),
     N(0, "CLUSTER", "COUNTKEYSINSLOT", "-1"))
case("cluster-getkeysinslot-order", N(0, "SET", T0A, "1"), N(0, "SET", T0B, "2"),
     N(0, "SET", T0C, "3"), N(0, "SET", T0A, "again"),
     N(0, "CLUSTER", "GETKEYSINSLOT", "3300", "10"), N(0, "CLUSTER", "GETKEYSINSLOT", "3300", "1"),
     N(0, "CLUSTER", "GETKEYSINSLOT", "3300", "-1"), N(0, "CLUSTER", "GETKEYSINSLOT", "x", "1"))
case("cluster-getkeysinslot-after-delete", N(0, "SET", T0A, "1"), N(0, "SET", T0B, "2"),
     N(0, "DEL", T0A), N(0, "SET", T0A, "3"), N(0, "CLUSTER", "GETKEYSINSLOT", "3300", "10"))
case("cluster-unknown-subcommand", N(0, "CLUSTER", "NOPE"), N(0, "CLUSTER"),
     N(0, "CLUSTER", "KEYSLOT"), N(0, "CLUSTER", "NODES", "extra"))
case("cluster-help", N(0, "CLUSTER", "HELP"))
case("cluster-setslot-errors", N(0, "CLUSTER", "SETSLOT", "99999", "STABLE"),
     N(0, "CLUSTER", "SETSLOT", "6000", "MIGRATING", "0" * 40),
     N(0, "CLUSTER", "SETSLOT", "100", "MIGRATING", "0" * 40),
     N(0, "CLUSTER", "SETSLOT", "100", "IMPORTING", "0" * 40),
     N(0, "CLUSTER", "SETSLOT", "100", "NODE", "0" * 40),
     N(0, "CLUSTER", "SETSLOT", "100", "BOGUS"),
     N(0, "CLUSTER", "SETSLOT", "100", "MIGRATING"))
case("cluster-setslot-stable-noop", N(0, "CLUSTER", "SETSLOT", "100", "STABLE"))
case("cluster-replicas-of-master", Fn(lambda ctx: ctx.plain(0).execute_command(
    "CLUSTER", "REPLICAS", ctx.node_id(1))))
case("cluster-replicas-unknown", N(0, "CLUSTER", "REPLICAS", "0" * 40))
case("cluster-count-failure-reports", Fn(lambda ctx: ctx.plain(0).execute_command(
    "CLUSTER", "COUNT-FAILURE-REPORTS", ctx.node_id(2))),
    N(0, "CLUSTER", "COUNT-FAILURE-REPORTS", "x"))
case("cluster-links-shape", N(0, "CLUSTER", "LINKS"),
     normalise=each(lambda v: sorted_list(no_offsets(v))))
case("cluster-addslots-busy", N(0, "CLUSTER", "ADDSLOTS", "100"),
     N(0, "CLUSTER", "ADDSLOTS", "x"), N(0, "CLUSTER", "DELSLOTSRANGE", "5", "1"))
case("cluster-flushslots-not-empty", N(0, "SET", K0, "1"), N(0, "CLUSTER", "FLUSHSLOTS"))
case("asking-readonly-readwrite", N(0, "ASKING"), N(0, "READONLY"), N(0, "READWRITE"))
case("readonly-on-master-still-moves", N(0, "READONLY"), N(0, "GET", K2))


def _migration(ctx: Any) -> list[Any]:
    """Slot 3300 (key b) halfway from node 0 to node 1: ASK, TRYAGAIN, ASKING, MIGRATE."""
    n0, n1 = ctx.plain(0, fresh=True), ctx.plain(1, fresh=True)
    id0, id1 = ctx.node_id(0), ctx.node_id(1)
    out: list[Any] = []

    def run(conn: Any, *args: Any) -> None:
        out.append(ctx.outcome(lambda: conn.execute_command(*args)))

    try:
        run(n0, "SET", K0, "here")
        run(n0, "CLUSTER", "SETSLOT", "3300", "MIGRATING", id1)
        run(n1, "CLUSTER", "SETSLOT", "3300", "IMPORTING", id0)
        run(n0, "GET", K0)  # present on the source: served there
        run(n0, "GET", T0A)  # missing on the source: ASK
        run(n0, "MGET", K0, T0A)  # some present, some not: TRYAGAIN
        run(n0, "MGET", T0A, T0B)  # none present: ASK
        run(n1, "GET", T0A)  # the target without ASKING: MOVED back to the owner
        run(n1, "ASKING")
        run(n1, "GET", T0A)  # with ASKING: served
        run(n1, "GET", T0A)  # ASKING lasted one command
        run(n1, "ASKING")
        run(n1, "MGET", T0A, T0B)  # several keys, all missing on the target: TRYAGAIN
        run(n1, "ASKING")
        run(n1, "SET", T0A, "new")  # a write to the target with ASKING
        auth = ("AUTH", ctx.lab.password) if ctx.lab.password else ()  # the target asks too
        run(n0, "MIGRATE", "127.0.0.1", str(ctx.port(1)), "", "0", "5000", *auth, "KEYS", K0)
        run(n0, "GET", K0)  # gone from the source now: ASK
        run(n0, "EXISTS", K0)
        run(n0, "CLUSTER", "COUNTKEYSINSLOT", "3300")
        run(n1, "CLUSTER", "COUNTKEYSINSLOT", "3300")
        for conn in (n0, n1):
            text = conn.execute_command("CLUSTER", "NODES")
            out.append(cluster_nodes_view(ctx.normalise(text)))
        rc = ctx.rc
        out.append(ctx.outcome(lambda: rc.get(K0)))  # RedisCluster follows the ASK
        out.append(ctx.outcome(lambda: rc.get(T0A)))
        run(n0, "CLUSTER", "SETSLOT", "3300", "MIGRATING", id1)
        run(n0, "CLUSTER", "SETSLOT", "3300", "STABLE")
        return out
    finally:
        for conn, _ in ((n0, id0), (n1, id1)):
            conn.execute_command("CLUSTER", "SETSLOT", "3300", "STABLE")
            conn.close()


def _migrate_errors(ctx: Any) -> list[Any]:
    n0 = ctx.plain(0, fresh=True)
    out = []
    try:
        n0.execute_command("SET", K0, "v")
        port = str(ctx.port(1))
        auth = ("AUTH", ctx.lab.password) if ctx.lab.password else ()
        for args in (
            ("MIGRATE", "127.0.0.1", port, "", "0", "1000", "KEYS", T0A),
            ("MIGRATE", "127.0.0.1", port, K0, "0", "1000", "KEYS", K0),
            ("MIGRATE", "127.0.0.1", port, K0, "0", "1000", "BOGUS"),
            ("MIGRATE", "127.0.0.1", port, K0, "0", "1000", *auth),  # not importing: MOVED
            # a wrong password, a wrong user (AUTH2). Not "no AUTH": the server keeps its
            # connection to a target for 10 s (migrateGetSocket), so that depends on timing.
            ("MIGRATE", "127.0.0.1", port, K0, "0", "1000", "AUTH", "nope"),
            ("MIGRATE", "127.0.0.1", port, K0, "0", "1000", "AUTH2", "someone", "nope"),
        ):
            out.append(ctx.outcome(lambda a=args: n0.execute_command(*a)))
        return out
    finally:
        n0.close()


case("migration-ask-tryagain-migrate", Fn(_migration))
case("migrate-errors", Fn(_migrate_errors))

# ---- RedisCluster ----------------------------------------------------------------------------

case("rc-set-get-three-nodes", RC("set", K0, "0"), RC("set", K1, "1"), RC("set", K2, "2"),
     RC("get", K0), RC("get", K1), RC("get", K2))
case("rc-mget-cross-slot-client-refuses", RC("mget", K0, K2))
case("rc-mset-cross-slot-client-refuses", RC("mset", {K0: "1", K2: "2"}))
case("rc-delete-cross-slot-splits", RC("mset_nonatomic", {K0: "1", K1: "2", K2: "3"}),
     RC("delete", K0, K1, K2, K0B))
case("rc-exists-touch-unlink-split", RC("set", K0, "1"), RC("exists", K0, K2),
     RC("touch", K0, K2), RC("unlink", K0, K2))
case("rc-mget-nonatomic", RC("mset_nonatomic", {K0: "1", K2: "2"}),
     RC("mget_nonatomic", K0, K1, K2))
case("rc-sunion-cross-slot", RC("sunion", K0, K2))
case("rc-keyslot", RC("keyslot", "user:1000"), RC("keyslot", "{user1000}.followers"))
case("rc-cluster-keyslot-command", RC("cluster_keyslot", "foo"))
case("rc-cluster-countkeysinslot", RC("set", K2, "1"), RC("cluster_countkeysinslot", 12182))

# ---- connection, server, bad input -----------------------------------------------------------

case("ping-echo", N(0, "PING"), N(0, "PING", "hi"), N(0, "ECHO", "x"), N(0, "PING", "a", "b"))
case("unknown-command", N(0, "FOO", "x", "y"), N(0, "NOSUCH"))
case("unknown-command-raw", Raw(0, ("FOO", "x"), ("FOO",), ("FOO", "a" * 200, "b")))
case("unknown-command-raw-crlf-in-name", Raw(0, (b"FO\r\nO", b"a\nb")))
case("wrong-arity", N(0, "GET"), N(0, "SET", K0), N(0, "GET", K0, K0B))
case("wrong-arity-raw", Raw(0, ("GET",), ("cluster", "keyslot"), ("CLUSTER",)))
case("inline-commands", Raw(0, b"PING\r\n", b"SET b \"a b\"\r\n", b"GET b\r\n", b"  \r\n",
                            b"ECHO 'q\\'s'\n", replies=4))
case("inline-unbalanced-quotes", Raw(0, b"GET \"b\r\n", replies=1))
case("garbage-expected-dollar", Raw(0, b"*1\r\n:5\r\n", replies=1))
case("garbage-bad-multibulk-length", Raw(0, b"*x\r\n", replies=1))
case("garbage-negative-bulk-length", Raw(0, b"*1\r\n$-5\r\n", replies=1))
case("garbage-empty-multibulk", Raw(0, b"*0\r\n", b"*-1\r\n", ("PING",), replies=1))
case("garbage-keeps-other-clients", Raw(0, b"*1\r\n:5\r\n", replies=1), N(0, "PING"))
case("hello-3-raw", Raw(0, ("HELLO", "3"), proto=2), Raw(0, ("HELLO", "2"), proto=3),
     normalise=each(lambda v: [_ID_FIELD.sub(b"$2\r\nid\r\n:<n>\r\n", x)
                               if isinstance(x, bytes) else x for x in v]))
case("hello-variants", N(0, "HELLO", "2"), N(0, "HELLO", "4"), N(0, "HELLO", "x"),
     N(0, "HELLO", "3", "BOGUS"), N(0, "HELLO", "3", "SETNAME", "me"),
     normalise=each(hello_view))
case("command-count", N(0, "COMMAND", "COUNT"))
case("command-info-raw-resp2", Raw(0, ("COMMAND", "INFO", "get", "nosuch", "cluster|keyslot")))
case("command-info-raw-resp3", Raw(0, ("COMMAND", "INFO", "mset", "eval", "xread"), proto=3))
case("command-info-container-raw", Raw(0, ("COMMAND", "INFO", "config")),
     normalise=each(raw_lines))
for _cmd in [
    ("mset", "a", "1", "b", "2"), ("eval", "return 1", "2", "a", "b", "c"),
    ("eval", "return 1", "0"), ("zunionstore", "d", "2", "a", "b", "WEIGHTS", "1", "2"),
    ("xread", "COUNT", "2", "STREAMS", "a", "b", "0", "0"), ("sort", "a", "BY", "x", "STORE", "d"),
    ("migrate", "h", "1", "", "0", "5", "KEYS", "a", "b"), ("lmpop", "2", "a", "b", "LEFT"),
    ("blmpop", "0", "2", "a", "b", "LEFT"), ("sintercard", "2", "a", "b"),
    ("georadius", "a", "0", "0", "1", "km", "STORE", "d"), ("set", "a", "b", "GET"),
    ("get",), ("ping",), ("nosuch", "a"), ("zunionstore", "d", "0", "a"), ("lcs", "a", "b"),
    ("xreadgroup", "GROUP", "g", "c", "STREAMS", "a", ">"), ("bitop", "AND", "d", "a", "b"),
    ("memory", "usage", "a"), ("object", "encoding", "a"), ("fcall", "f", "1", "k", "x"),
]:
    case("command-getkeys[" + " ".join(_cmd) + "]", N(0, "COMMAND", "GETKEYS", *_cmd))
case("command-getkeysandflags",
     N(0, "COMMAND", "GETKEYSANDFLAGS", "lmove", "a", "b", "left", "left"),
     N(0, "COMMAND", "GETKEYSANDFLAGS", "set", "a", "b"),
     N(0, "COMMAND", "GETKEYSANDFLAGS", "sort", "a", "STORE", "b"))
case("command-list-pattern", Raw(0, ("COMMAND", "LIST", "FILTERBY", "PATTERN", "cluster|*")),
     Raw(0, ("COMMAND", "LIST", "FILTERBY", "ACLCAT", "scripting")), normalise=each(raw_lines))
case("client-setinfo-is-7-2", N(0, "CLIENT", "SETINFO", "LIB-NAME", "x"))
case("debug-is-protected", N(0, "DEBUG", "SLEEP", "0"))
case("info-cluster-raw", Raw(0, ("INFO", "cluster"), proto=2), Raw(0, ("INFO", "cluster"), proto=3))
case("info-keyspace", N(0, "SET", K0, "1"), N(0, "INFO", "keyspace"))
case("quit", Raw(0, ("QUIT",), ("PING",), replies=2))
case("reset", N(0, "MULTI"), N(0, "RESET"), N(0, "EXEC"))
case("client-reply-skip-off-on", Raw(0, ("CLIENT", "REPLY", "SKIP"), ("PING", "a"), ("PING", "b"),
                                     ("CLIENT", "REPLY", "OFF"), ("PING", "c"),
                                     ("CLIENT", "REPLY", "ON"), ("PING", "d"), replies=3))
case("client-id-is-int", Fn(lambda ctx: isinstance(ctx.plain(0).client_id(), int)))
case("time-shape", Fn(lambda ctx: [type(x).__name__ for x in ctx.plain(0).time()]))
case("flushall-is-node-local", N(0, "SET", K0, "1"), N(2, "SET", K2, "1"), N(0, "FLUSHALL"),
     N(0, "DBSIZE"), N(2, "DBSIZE"))

# ---- more errors, RESP2 clients, raw error lines --------------------------------------------

case("wrongtype-errors", N(0, "LPUSH", K0, "x"), N(0, "GET", K0), N(0, "SADD", K0, "m"),
     N(0, "HGET", K0, "f"))
case("syntax-errors", N(0, "SET", K0, "v", "NX", "XX"), N(0, "SET", K0, "v", "EX", "0"),
     N(0, "SET", K0, "v", "EX", "x"), N(0, "ZADD", K0, "x", "m"))
case("not-integer-errors", N(0, "INCRBY", K0, "x"), N(0, "EXPIRE", K0, "x"),
     N(0, "LRANGE", K0, "a", "1"))
case("raw-moved-crossslot-lines", Raw(0, ("GET", K2), ("MGET", K0, K0B), ("SET", K1, "v")))
case("raw-moved-crossslot-lines-resp3", Raw(0, ("GET", K2), ("MGET", K0, K0B), proto=3))
case("raw-execabort-lines", Raw(0, ("MULTI",), ("GET", K2), ("EXEC",), ("MULTI",),
                                ("SET", K0, "1"), ("SET", K0B, "1"), ("EXEC",)))
case("raw-noscript-line", Raw(0, ("EVALSHA", sha("return 1"), "0"), ("EVALSHA", "x", "0")))
case("raw-script-error-line", Raw(0, ("EVAL", "return redis.call('get', ARGV[1])", "0", K2)))
case("raw-get-set-resp2", Raw(0, ("SET", K0, "v"), ("GET", K0), ("GET", K0B), ("MGET", T0A, T0B)))
case("raw-get-set-resp3", Raw(0, ("SET", K0, "v"), ("GET", K0), ("GET", K0B), ("MGET", T0A, T0B),
                              proto=3))
case("raw-eval-table-resp3", Raw(0, ("EVAL", "return {1, 'x', false, {err='E e'}}", "0"), proto=3))
case("resp2-client-set-get", N(0, "SET", K0, "v", proto=2), N(0, "GET", K0, proto=2),
     N(0, "MGET", K0, K0B, proto=2))
case("resp2-client-hgetall-zrange", N(0, "HSET", K0, "f", "1", proto=2),
     N(0, "HGETALL", K0, proto=2), N(0, "ZADD", K0B, "1.5", "m", proto=2),
     N(0, "ZRANGE", K0B, "0", "-1", "WITHSCORES", proto=2))
case("resp2-client-cluster-slots", N(0, "CLUSTER", "SLOTS", proto=2))
case("resp2-client-errors", N(0, "GET", K2, proto=2), N(0, "MGET", K0, K0B, proto=2),
     N(0, "EVAL", "return #KEYS", "2", K0, K0B, proto=2))
case("client-setname-getname", N(0, "CLIENT", "SETNAME", "me"), N(0, "CLIENT", "GETNAME"),
     N(0, "CLIENT", "SETNAME", "has space"))
case("config-get", N(0, "CONFIG", "GET", "cluster-enabled"),
     diff="fakeredis has no CONFIG GET; the emulator answers that it does not implement it")
case("info-server-fields", Fn(lambda ctx: {k: v for k, v in ctx.plain(0).info("server").items()
                                           if k in ("redis_version", "redis_mode")}),
     Fn(lambda ctx: ctx.plain(0).info("cluster")))
case("expire-missing-and-ttl", N(0, "EXPIRE", K0, "10"), N(0, "TTL", K0), N(0, "PTTL", K0),
     N(0, "SET", K0, "v", "PX", "50000"), N(0, "EXPIRETIME", K0B))
case("flushall-async-and-dbsize", N(0, "SET", K0, "1"), N(0, "FLUSHALL", "ASYNC"), N(0, "DBSIZE"))
case("scan-with-match-count", N(0, "MSET", T0A, "1", T0B, "2"),
     Fn(lambda ctx: sorted(ctx.plain(0).scan_iter(match="{b}*", count=100))))
case("sscan-hscan-zscan", N(0, "SADD", K0, "m"), N(0, "SSCAN", K0, "0"),
     N(0, "HSET", K0B, "f", "v"),
     N(0, "HSCAN", K0B, "0"), N(0, "ZADD", K0C, "1", "z"), N(0, "ZSCAN", K0C, "0"))
case("getkeysinslot-across-nodes", N(0, "SET", K0, "1"),
     N(2, "CLUSTER", "GETKEYSINSLOT", "3300", "5"),
     N(2, "CLUSTER", "COUNTKEYSINSLOT", "3300"))


def _pubsub_across_nodes(ctx: Any) -> list[Any]:
    """PUBLISH on one node reaches a subscriber on another (the cluster bus carries it)."""
    sub = ctx.plain(0, fresh=True).pubsub()
    try:
        sub.subscribe("news")
        first = sub.get_message(timeout=1)
        receivers = ctx.plain(2).publish("news", "hello")
        msg = None
        for _ in range(20):
            msg = sub.get_message(timeout=0.1)
            if msg:
                break
        return [first, receivers, msg]
    finally:
        sub.close()


case("pubsub-across-nodes", Fn(_pubsub_across_nodes))
# Found by the proxy's random-command test: with nothing subscribed, the server still answers.
case("unsubscribe-all-with-nothing-subscribed-raw",
     Raw(0, ("PUNSUBSCRIBE",), ("UNSUBSCRIBE",), ("SUNSUBSCRIBE",), ("PING",)))
case("spublish-keyed-by-channel", N(0, "SPUBLISH", K2, "m"), N(2, "SPUBLISH", K2, "m"),
     N(0, "SSUBSCRIBE", K0, K0B, proto=2))


# ---- a cluster with replicas (its own table: nodes 3-5 replicate nodes 0-2) -------------------

REPLICA_CASES: list[Case] = []


def replica_case(id: str, *steps: Step, diff: str | None = None,
                 normalise: Callable[[Any], Any] | None = None) -> None:
    """Add a case that runs on 3 masters with one replica each (node 3 replicates node 0)."""
    REPLICA_CASES.append(Case(id, tuple(steps), diff, normalise))


replica_case("replica-get-moves-to-master", N(0, "SET", K0, "v"), N(3, "GET", K0))
replica_case("replica-readonly-get", N(0, "SET", K0, "v"), N(3, "READONLY"), N(3, "GET", K0),
             N(3, "MGET", T0A, T0B))
replica_case("replica-readonly-write-moves", N(3, "READONLY"), N(3, "SET", K0, "v"))
replica_case("replica-readonly-other-shard-moves", N(3, "READONLY"), N(3, "GET", K2))
replica_case("replica-readwrite-moves-again", N(3, "READONLY"), N(3, "READWRITE"), N(3, "GET", K0))
replica_case("replica-flushall-refused", N(3, "FLUSHALL"), N(3, "SCRIPT", "FLUSH"))
replica_case("replica-eval-readonly-key", N(0, "SET", K0, "v"), N(3, "READONLY"),
             N(3, "EVAL", GET1, "1", K0))
replica_case("replica-eval-writes-inside", N(3, "READONLY"), N(3, "EVAL", SET1, "1", K0, "v"))
replica_case("replica-eval-shebang-no-writes", N(0, "SET", K0, "v"), N(3, "READONLY"),
             N(3, "EVAL", "#!lua flags=no-writes\n" + GET1, "1", K0))
replica_case("replica-eval-shebang-write-no-keys", N(3, "EVAL", "#!lua\nreturn 1", "0"))
replica_case("replica-eval-shebang-write-key", N(3, "READONLY"),
             N(3, "EVAL", "#!lua\n" + GET1, "1", K0))
replica_case("replica-cluster-nodes", N(3, "CLUSTER", "NODES"), N(0, "CLUSTER", "NODES"),
             normalise=each(cluster_nodes_view))
replica_case("replica-cluster-slots", N(0, "CLUSTER", "SLOTS"), N(4, "CLUSTER", "SLOTS"))
replica_case("replica-cluster-shards", N(5, "CLUSTER", "SHARDS"),
             normalise=each(lambda v: sorted_list(no_offsets(v))))
replica_case("replica-cluster-replicas", Fn(lambda ctx: sorted(
    line.split()[2]
    for line in ctx.plain(0).execute_command("CLUSTER", "REPLICAS", ctx.node_id(0)))),
    Fn(lambda ctx: ctx.outcome(lambda: ctx.plain(0).execute_command(
        "CLUSTER", "REPLICAS", ctx.node_id(3)))))
replica_case("replica-hello-and-role",
             Fn(lambda ctx: ctx.plain(3).execute_command("HELLO", "3")["role"]),
             Fn(lambda ctx: ctx.plain(3).execute_command("ROLE")[0]),
             Fn(lambda ctx: ctx.plain(0).execute_command("ROLE")[0]))
replica_case("replica-info-replication-role",
             Fn(lambda ctx: ctx.plain(3).info("replication")["role"]),
             Fn(lambda ctx: ctx.plain(0).info("replication")["connected_slaves"]))
replica_case("replica-wait", N(0, "SET", K0, "v"), N(0, "WAIT", "1", "1000"),
             N(3, "WAIT", "1", "0"))
replica_case("replica-setslot-refused", N(3, "CLUSTER", "SETSLOT", "1", "STABLE"))
replica_case("replica-myid-and-keyslot", N(3, "CLUSTER", "MYID"), N(3, "CLUSTER", "KEYSLOT", "foo"))

# ---- the OpenIM / rockscache delete script (FACTS.md section 4) ------------------------------

ROCKSCACHE_BATCH_DELETE = """
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'lockUntil', 0)
  redis.call('HDEL', key, 'lockOwner')
  redis.call('EXPIRE', key, ARGV[1])
end
return #KEYS
"""
_GROUP_KEYS = ["GROUP_INFO:g1", "GROUP_MEMBER_IDS:g1", "GROUP_MEMBERS_HASH2:g1",
               "GROUP_MEMBER_NUM_CACHE:g1"]
case("rockscache-batch-delete-cross-slot", Fn(lambda ctx: ctx.outcome(
    lambda: ctx.plain(0).execute_command("EVAL", ROCKSCACHE_BATCH_DELETE, len(_GROUP_KEYS),
                                         *_GROUP_KEYS, "10"))))
case("rockscache-batch-delete-one-tag", N(0, "EVAL", ROCKSCACHE_BATCH_DELETE, "3",
                                          "{GROUP}INFO:g1", "{GROUP}IDS:g1", "{GROUP}NUM:g1",
                                          "10"),
     N(2, "EVAL", ROCKSCACHE_BATCH_DELETE, "3", "{GROUP}INFO:g1", "{GROUP}IDS:g1",
       "{GROUP}NUM:g1", "10"),
     N(2, "TTL", "{GROUP}NUM:g1"), N(2, "HGETALL", "{GROUP}NUM:g1"))
case("rockscache-per-key-eval", *[N(i, "EVAL", ROCKSCACHE_BATCH_DELETE, "1", k, "10")
                                  for k, i in (("GROUP_INFO:g1", 0), ("GROUP_MEMBER_IDS:g1", 2))])
case("rc-eval-rockscache-cross-slot", RC("eval", ROCKSCACHE_BATCH_DELETE, len(_GROUP_KEYS),
                                         *_GROUP_KEYS, "10"))

_LIB2 = """#!lua name=slotlab2
redis.register_function('peek', function(keys, args) return redis.call('get', args[1]) end)
redis.register_function{function_name='peek_cross', callback=function(keys, args)
  return redis.call('get', args[1]) end, flags={'allow-cross-slot-keys'}}
redis.register_function('boom', function(keys, args) return redis.call('nosuch') end)
"""
case("fcall-undeclared-remote-key", N(0, "FUNCTION", "LOAD", "REPLACE", _LIB2),
     N(0, "FCALL", "peek", "1", K0, K2))
case("fcall-undeclared-other-slot", N(0, "FUNCTION", "LOAD", "REPLACE", _LIB2),
     N(0, "FCALL", "peek", "1", K0, K0B), N(0, "FCALL", "peek_cross", "1", K0, K0B))
case("fcall-error-line", N(0, "FUNCTION", "LOAD", "REPLACE", _LIB2), N(0, "FCALL", "boom", "0"))


def _cluster_down(ctx: Any) -> list[Any]:
    """Node 0 gives up slot 100: it answers CLUSTERDOWN until it serves the slot again."""
    n0 = ctx.plain(0, fresh=True)
    out: list[Any] = []
    try:
        n0.execute_command("SET", K0, "v")
        for args in (
            ("CLUSTER", "DELSLOTS", "100"),
            ("CLUSTER", "DELSLOTS", "100"),
            ("GET", K0),
            ("GET", "{user1000}"),
            ("PING",),
            ("CLUSTER", "COUNTKEYSINSLOT", "100"),
        ):
            out.append(ctx.outcome(lambda a=args: n0.execute_command(*a)))
        info = n0.execute_command("CLUSTER", "INFO")
        out.append([line for line in info.splitlines() if "slots_assigned" in line or
                    "state" in line])
        out.append(ctx.outcome(lambda: n0.execute_command("CLUSTER", "ADDSLOTS", "100")))
        out.append(ctx.outcome(lambda: n0.execute_command("GET", K0)))
        return out
    finally:
        with contextlib.suppress(redis.ResponseError):
            n0.execute_command("CLUSTER", "ADDSLOTS", "100")
        n0.close()


case("cluster-down-after-delslots", Fn(_cluster_down))


# ---- private by default: AUTH (server.c processCommand, acl.c authCommand, HELLO AUTH) -------
case("auth-noauth", Anon(0, ("GET", K0), ("FOO",), ("GET",), ("SET", K0, "pwned"), ("FLUSHALL",),
                         ("CLUSTER", "RESET", "HARD"), ("SHUTDOWN", "NOSAVE"), ("PING",)),
     N(0, "GET", K0))
case("auth-wrongpass", Anon(0, ("AUTH", "nope"), ("AUTH", "default", "nope"),
                            ("AUTH", "someone", PASSWORD), ("AUTH", "a", "b", "c"), ("GET", K0)))
case("auth-ok", Anon(0, ("AUTH", PASSWORD), ("GET", K0), ("AUTH", "nope"), ("GET", K0),
                     ("RESET",), ("GET", K0), ("AUTH", "default", PASSWORD), ("PING",)))
case("hello-auth", Anon(0, ("HELLO", "3"), ("HELLO", "2", "AUTH", "default", "nope"),
                        ("HELLO", "2", "AUTH", "default", PASSWORD), ("GET", K0)),
     normalise=each(lambda v: [_ID_FIELD.sub(b"$2\r\nid\r\n:<n>\r\n", x)
                               if isinstance(x, bytes) else x for x in v]))
case("http-request-closes", Anon(0, b"POST / HTTP/1.1\r\nHost: example.com\r\n\r\n",
                                 ("AUTH", PASSWORD), ("SET", K0, "pwned"), replies=1),
     N(0, "GET", K0))

# ---- CONFIG SET of a protected or immutable config (config.c configSetCommand) -------------
case("config-set-protected", N(0, "CONFIG", "SET", "dir", "/etc"),
     N(0, "CONFIG", "SET", "dbfilename", "x.rdb"),
     N(0, "CONFIG", "SET", "enable-module-command", "yes"),
     N(0, "CONFIG", "SET", "enable-debug-command", "yes"),
     N(0, "CONFIG", "SET", "maxmemory-policy", "noeviction", "dir", "/etc"))
