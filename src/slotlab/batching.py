"""Batch-delete strategies: five ways to tag many cache keys as deleted, one signature.

Every strategy is called the same way and answers the same way::

    result = strategy(client, keys, delay=10, chunk_size=50)   # -> BatchResult

``client`` is any redis-py client (``RedisCluster``, a plain client to a proxy, to a node, or to
one non-cluster server); ``keys`` a non-empty list of str or bytes keys. Each strategy tags every
key as rockscache does (see :mod:`slotlab.openim`, whose scripts these reuse) or raises the
error the setting gives. Which one works where:

================  ===================  ==============  ==============  ===================
strategy          cluster client       Alibaba proxy   node client     one plain server
================  ===================  ==============  ==============  ===================
per_key           yes, slowly          yes, slowly     MOVED           yes, slowly
one_eval          refused (client)     slot error      CROSSSLOT       yes
by_server_slot    yes, slowly          slot error      CROSSSLOT       yes
by_client_slot    yes, fast            script error*   MOVED           yes, fast
proxy_safe        yes, fast            yes, fast       MOVED           yes, fast
================  ===================  ==============  ==============  ===================

\\* unless the proxy's script check is off (``script_check_enable=0``). The key layouts at the
end of the module change the keys instead of the strategy: a global ``{GROUP}`` tag puts every
key in one slot (one EVAL works anywhere, and one shard carries the whole group cache);
per-group ``{<gid>}`` tags put one group's keys together, but not its members' user keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Protocol, cast

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from slotlab.openim import (
    DEFAULT_DELAY,
    MAX_KEYS_PER_EVAL,
    OPENIM_BATCH_SIZE,
    TAG_AS_DELETED_BATCH_SCRIPT,
    BatchResult,
    Client,
    check_batch_size,
    check_delay,
    check_keys,
    group_chat_conversation_id,
    is_cluster_client,
    v3_3_batch,
    v3_7_per_key,
    v3_8_by_slot,
)
from slotlab.resp import bulk
from slotlab.slots import key_slot, key_slots

__all__ = [
    "GLOBAL_TAG",
    "MAX_KEYS_PER_EVAL",
    "RECOMMENDED",
    "STRATEGIES",
    "BatchResult",
    "Colocation",
    "Strategy",
    "by_client_slot",
    "by_server_slot",
    "colocation_report",
    "global_tag_keys",
    "one_eval",
    "per_group_tag_keys",
    "per_key",
    "proxy_safe",
    "proxy_safe_script",
]


class Strategy(Protocol):
    """What every batch-delete strategy looks like."""

    def __call__(
        self,
        client: Client,
        keys: Sequence[str | bytes],
        *,
        delay: int = DEFAULT_DELAY,
        chunk_size: int = OPENIM_BATCH_SIZE,
    ) -> BatchResult: ...


def _named(result: BatchResult, name: str) -> BatchResult:
    return dataclasses.replace(result, name=name)


# --------------------------------------------------------------------------------------------
# The historical strategies: OpenIM's own delete paths under the common signature
# --------------------------------------------------------------------------------------------


def per_key(
    client: Client,
    keys: Sequence[str | bytes],
    *,
    delay: int = DEFAULT_DELAY,
    chunk_size: int = OPENIM_BATCH_SIZE,
) -> BatchResult:
    """One single-key EVAL per key, one round trip each (OpenIM 3.7): right everywhere, slow.

    ``chunk_size`` is checked but unused: every EVAL holds one key. Like 3.7 it tries each key
    up to 5 times, 100 ms apart (see :func:`slotlab.openim.v3_7_per_key`), then raises.
    """
    check_batch_size(chunk_size, "chunk_size")
    return _named(v3_7_per_key(client, keys, delay), "per_key")


def one_eval(
    client: Client,
    keys: Sequence[str | bytes],
    *,
    delay: int = DEFAULT_DELAY,
    chunk_size: int = OPENIM_BATCH_SIZE,
) -> BatchResult:
    """ONE EVAL with every key (OpenIM up to 3.3.2): the bug, whenever the keys span slots.

    ``chunk_size`` is checked but unused: there is one EVAL, whatever its size. It works only
    where all keys share a slot (one plain server, or keys under one hash tag).
    """
    check_batch_size(chunk_size, "chunk_size")
    return _named(v3_3_batch(client, keys, delay), "one_eval")


def by_server_slot(
    client: Client,
    keys: Sequence[str | bytes],
    *,
    delay: int = DEFAULT_DELAY,
    chunk_size: int = OPENIM_BATCH_SIZE,
) -> BatchResult:
    """Group by the slot the SERVER reports (``CLUSTER KEYSLOT`` per key), then one EVAL per
    chunk (OpenIM 3.8's ``ProcessKeysBySlot``).

    It needs a cluster client (``RedisCluster``) to be right. Given any other client it falls
    back exactly as 3.8 does: every key in one "slot 0" group, cut into chunks of
    ``chunk_size`` keys, which a proxy or a cluster node rejects when the chunk spans slots
    (against one non-cluster server that is harmless). The chunks go one after another, one
    round trip each, after one pipelined round of ``CLUSTER KEYSLOT``.
    """
    chunk_size = check_batch_size(chunk_size, "chunk_size")
    return _named(v3_8_by_slot(client, keys, delay, chunk_size), "by_server_slot")


# --------------------------------------------------------------------------------------------
# The fixes: group by slot on the client (CRC16), send every chunk in ONE pipeline
# --------------------------------------------------------------------------------------------
#
# Both fixes write the pipeline's bytes themselves and send them on the client's own pooled
# connections: redis-py's pipelines spend more client CPU per command than a server spends
# running the script (RedisCluster's pipeline about 9 us a command in routing, packing and
# parsing; a server runs one of these scripts in about 3). The bytes are the ones redis-py
# sends: RESP arrays of bulk strings, str keys in UTF-8 (as redis-py's hiredis packer, and
# slotlab's key_slot, encode them).
#
# Through a cluster client a node's first chunk of a script is an EVAL, which leaves the body
# in that node's script cache; its later chunks of that script are EVALSHAs down the same
# connection, so they run after it (the server neither receives nor hashes the body again). A
# chunk answered NOSCRIPT (a SCRIPT FLUSH from elsewhere in between, or a redirected EVAL that
# never ran) goes again as EVAL. Through any other client every chunk is an EVAL, body
# included, as rockscache sends it: a plain client cannot tell which node a command reaches,
# and a proxy checks the body it sees.

_REDO_THROUGH_CLUSTER: Final = (
    AskError,  # MovedError too: redis-py makes MovedError a kind of AskError
    TryAgainError,
    ClusterDownError,
    NoScriptError,
    RedisConnectionError,
    RedisTimeoutError,
)
"""Replies to the per-node pipelines that send a chunk again through ``RedisCluster``."""


@lru_cache(maxsize=256)
def _sha(script: str) -> str:
    """The SHA1 that names ``script`` on a server (EVALSHA's argument)."""
    return hashlib.sha1(script.encode()).hexdigest()


@lru_cache(maxsize=512)
def _head(sha: bool, script: str, n: int) -> bytes:
    """RESP of ``EVAL <script> <n>`` (``EVALSHA <sha1> <n>`` if ``sha``): the start of a script
    call whose ``n`` keys and one argument, the delay, follow."""
    command, name = (b"EVALSHA", _sha(script)) if sha else (b"EVAL", script)
    return b"*%d\r\n" % (n + 4) + bulk(command) + bulk(name.encode()) + bulk(b"%d" % n)


class _Batch:
    """One call's keys grouped by slot and cut into chunks, and each chunk's command."""

    def __init__(
        self,
        keys: list[str | bytes],
        delay: int,
        chunk_size: int,
        script_for: Callable[[int], str],
    ) -> None:
        self.keys = keys
        self.delay = delay
        self.script_for = script_for
        encoded = [k.encode() if isinstance(k, str) else k for k in keys]
        # A handful of keys: numpy's setup costs more than a loop.
        few = len(encoded) < 32
        slots = [key_slot(k) for k in encoded] if few else key_slots(encoded).tolist()
        groups: dict[int, list[int]] = {}  # slot -> its keys' indices; slots as first seen
        for i, slot in enumerate(slots):
            group = groups.get(slot)
            if group is None:
                groups[slot] = [i]
            else:
                group.append(i)
        self.chunks: list[tuple[int, list[int]]] = []
        """(slot, its keys' indices) of every chunk: one EVAL each."""
        for slot, group in groups.items():
            if len(group) <= chunk_size:
                self.chunks.append((slot, group))
            else:
                self.chunks += [
                    (slot, group[lo : lo + chunk_size]) for lo in range(0, len(group), chunk_size)
                ]
        self.bulks = [bulk(k) for k in encoded]
        self.tail = bulk(b"%d" % delay)

    def write(self, out: list[bytes], c: int, sha: bool | set[str]) -> bool:
        """Append chunk ``c``'s command to ``out``: EVALSHA if ``sha`` is True, or is a set that
        holds the chunk's script already; else EVAL (and the script joins the set). True for
        EVALSHA."""
        idx = self.chunks[c][1]
        n = len(idx)
        script = self.script_for(n)
        if isinstance(sha, set):
            seen = sha
            sha = script in seen
            seen.add(script)
        out.append(_head(sha, script, n))
        bulks = self.bulks
        if n == 1:
            out.append(bulks[idx[0]])
        else:
            out += [bulks[i] for i in idx]
        out.append(self.tail)
        return sha

    def args(self, c: int, sha: bool) -> list[Any]:
        """Chunk ``c``'s command as redis-py's ``execute_command`` takes it."""
        keys = [self.keys[i] for i in self.chunks[c][1]]
        script = self.script_for(len(keys))
        if sha:
            return ["EVALSHA", _sha(script), len(keys), *keys, self.delay]
        return ["EVAL", script, len(keys), *keys, self.delay]


def _raise_first_error(
    client: Client, replies: Sequence[Any], args_of: Callable[[int], list[Any]]
) -> None:
    """Raise the first error among ``replies`` (reply ``p`` answers the pipeline's command
    ``p``), its message prefixed as redis-py's pipelines prefix it."""
    for p, reply in enumerate(replies):
        if isinstance(reply, Exception):
            client.pipeline(transaction=False).annotate_exception(reply, p + 1, args_of(p))
            raise reply


def _send_to_cluster(rc: RedisCluster, batch: _Batch) -> tuple[int, int]:
    """Every chunk to the master of its slot: one pipeline per node, all written before any is
    read, so one round trip. Chunks answered with a redirect, TRYAGAIN, CLUSTERDOWN, NOSCRIPT or
    a connection error go again, as EVAL, through ``RedisCluster``'s own pipeline, which
    follows redirects: one more round trip. Returns (round trips, commands)."""
    chunks = batch.chunks
    manager = rc.nodes_manager
    # slots_cache[slot][0] is the slot's master, what get_node_from_slot() answers after taking
    # a lock (about 1 us a call). A stale entry costs a MOVED, which is followed below.
    owners = manager.slots_cache
    per_node: dict[str, tuple[ClusterNode, list[int]]] = {}
    for c, (slot, _idx) in enumerate(chunks):
        nodes = owners.get(slot)
        node = nodes[0] if nodes else manager.get_node_from_slot(slot)
        entry = per_node.get(node.name)
        if entry is None:
            per_node[node.name] = (node, [c])
        else:
            entry[1].append(c)

    replies: list[Any] = [None] * len(chunks)
    as_sha = [False] * len(chunks)
    held: list[tuple[Any, Any]] = []  # (pool, connection): given back at the end
    written: list[tuple[Any, list[int]]] = []  # (connection, its chunks): replies to read
    done = 0  # connections of `written` read to the end
    try:
        for node, cs in per_node.values():
            out: list[bytes] = []
            with_body: set[str] = set()
            for c in cs:
                as_sha[c] = batch.write(out, c, with_body)
            try:
                pool = rc.get_redis_connection(node).connection_pool
                conn = pool.get_connection()
                held.append((pool, conn))
                conn.send_packed_command([b"".join(out)])
            except (RedisConnectionError, RedisTimeoutError) as exc:
                for c in cs:
                    replies[c] = exc
                continue
            written.append((conn, cs))
        for conn, cs in written:
            for k, c in enumerate(cs):
                try:
                    replies[c] = conn.read_response()
                except ResponseError as exc:
                    replies[c] = exc
                except (RedisConnectionError, RedisTimeoutError) as exc:  # conn is closed
                    for rest in cs[k:]:
                        replies[rest] = exc
                    break
            done += 1
    finally:
        for conn, _cs in written[done:]:
            conn.disconnect()  # replies left unread would reach the connection's next user
        for pool, conn in held:
            pool.release(conn)

    round_trips, commands = 1, len(chunks)
    redo = [c for c, reply in enumerate(replies) if isinstance(reply, _REDO_THROUGH_CLUSTER)]
    if redo:
        pipe = rc.pipeline(transaction=False)
        for c in redo:
            target = manager.get_node_from_slot(chunks[c][0])
            pipe.execute_command(*batch.args(c, sha=False), target_nodes=target)
        for c, reply in zip(redo, pipe.execute(raise_on_error=False), strict=True):
            replies[c] = reply
            as_sha[c] = False
        round_trips += 1
        commands += len(redo)
    _raise_first_error(rc, replies, lambda c: batch.args(c, as_sha[c]))
    return round_trips, commands


def _send_to_one_address(client: redis.Redis, batch: _Batch) -> tuple[int, int]:
    """Every chunk's EVAL down one connection of a plain client (to a proxy, a node, one
    server), in one pipeline: one round trip, tried again on a lost connection as redis-py
    tries a pipeline again. Returns (round trips, commands)."""
    out: list[bytes] = []
    for c in range(len(batch.chunks)):
        batch.write(out, c, sha=False)
    packed, count = b"".join(out), len(batch.chunks)
    pool = client.connection_pool
    conn = pool.get_connection()

    def exchange() -> list[Any]:
        conn.send_packed_command([packed])
        replies: list[Any] = [None] * count
        try:
            for k in range(count):
                try:
                    replies[k] = conn.read_response()
                except ResponseError as exc:
                    replies[k] = exc
        except BaseException:
            conn.disconnect()  # replies left unread would reach the connection's next user
            raise
        return replies

    try:
        replies: list[Any] = conn.retry.call_with_retry(exchange, lambda _error: conn.disconnect())
    finally:
        pool.release(conn)
    _raise_first_error(client, replies, lambda c: batch.args(c, sha=False))
    return 1, count


def _by_client_slot(
    client: Client,
    keys: Sequence[str | bytes],
    delay: int,
    chunk_size: int,
    script_for: Callable[[int], str],
    name: str,
) -> BatchResult:
    key_list = check_keys(keys)
    delay = check_delay(delay)
    chunk_size = check_batch_size(chunk_size, "chunk_size")
    start = time.perf_counter()
    batch = _Batch(key_list, delay, chunk_size, script_for)
    if is_cluster_client(client):
        trips, evals = _send_to_cluster(cast(RedisCluster, client), batch)
    else:
        trips, evals = _send_to_one_address(cast(redis.Redis, client), batch)
    return BatchResult(name, len(key_list), trips, evals, evals, time.perf_counter() - start)


def _batch_script(n: int) -> str:
    return TAG_AS_DELETED_BATCH_SCRIPT


def by_client_slot(
    client: Client,
    keys: Sequence[str | bytes],
    *,
    delay: int = DEFAULT_DELAY,
    chunk_size: int = OPENIM_BATCH_SIZE,
) -> BatchResult:
    """Group by slot computed HERE (CRC16, :func:`slotlab.slots.key_slots`), chunk each slot's
    keys (``chunk_size``, 1 to 7999), and send every chunk's EVAL in ONE pipeline.

    No EVAL spans slots, so it is right on a cluster, behind a proxy and on one plain server,
    and one pipeline costs one round trip however many EVALs it carries (not a transaction:
    chunks are tagged independently). Through ``RedisCluster`` each EVAL is sent to the node
    that owns its slot, one pipeline per node, all written before any is read (one round trip);
    a node's later chunks of the script go as EVALSHA (counted among ``evals``). Chunks answered
    with a redirect, TRYAGAIN, CLUSTERDOWN, NOSCRIPT or a lost connection go again through
    ``RedisCluster``'s pipeline, which follows redirects (one more round trip, and its EVALs,
    counted); then the first error left, if any, is raised. It uses rockscache's batch script,
    whose loop variable an Alibaba-style proxy's script check rejects: behind such a proxy use
    :func:`proxy_safe` (or turn the check off). A plain client to ONE node of a cluster fails
    with MOVED for the other nodes' slots (the chunks that node owns are tagged).
    """
    return _by_client_slot(client, keys, delay, chunk_size, _batch_script, "by_client_slot")


@lru_cache(maxsize=256)
def proxy_safe_script(n: int) -> str:
    """The batch "tag as deleted" script for exactly ``n`` keys, written out key by key.

    Every key argument is literally ``KEYS[i]`` (no loop variable, no expression), the form
    Alibaba's static script check accepts (see :func:`slotlab.proxy.check_script`). One script
    per chunk length, so a server caches at most one per length used.
    """
    n = check_batch_size(n, "n")
    lines = [
        f"-- slotlab: tag {n} key(s) as deleted; every key written KEYS[i] for a proxy's check",
    ]
    for i in range(1, n + 1):
        lines.append(f"redis.call('HSET', KEYS[{i}], 'lockUntil', 0)")
        lines.append(f"redis.call('HDEL', KEYS[{i}], 'lockOwner')")
        lines.append(f"redis.call('EXPIRE', KEYS[{i}], ARGV[1])")
    return "\n".join(lines) + "\n"


def proxy_safe(
    client: Client,
    keys: Sequence[str | bytes],
    *,
    delay: int = DEFAULT_DELAY,
    chunk_size: int = OPENIM_BATCH_SIZE,
) -> BatchResult:
    """:func:`by_client_slot` with a script a cloud proxy's static check accepts.

    Same grouping, chunking and single pipeline; the script is :func:`proxy_safe_script` for the
    chunk's length, which names every key as ``KEYS[i]``. Works wherever by_client_slot works,
    and behind Alibaba's proxy with its script check on.
    """
    return _by_client_slot(client, keys, delay, chunk_size, proxy_safe_script, "proxy_safe")


STRATEGIES: Final[dict[str, Strategy]] = {
    "per_key": per_key,
    "one_eval": one_eval,
    "by_server_slot": by_server_slot,
    "by_client_slot": by_client_slot,
    "proxy_safe": proxy_safe,
}
"""Every strategy by name, oldest idea first."""

RECOMMENDED: Final = {"cluster": "by_client_slot", "proxy": "proxy_safe"}
"""The strategy slotlab recommends behind a cluster client, and behind a cloud proxy."""


# --------------------------------------------------------------------------------------------
# Key layouts: change the keys so that fewer slots are involved
# --------------------------------------------------------------------------------------------

GLOBAL_TAG: Final = "GROUP"
"""The tag OpenIM issue #2333 suggested (``{GROUP}``); never merged into OpenIM."""

# Keys of ONE group: "<prefix><gid>" exactly, or "<prefix><gid>-<rest>".
_GROUP_WHOLE: Final = (
    "GROUP_INFO:",
    "GROUP_MEMBER_IDS:",
    "GROUP_MEMBERS_HASH2:",
    "GROUP_MEMBER_NUM_CACHE:",
    "GROUP_MEMBER_MAX_VERSION:",
)
_GROUP_DASH: Final = ("GROUP_MEMBER_INFO:", "GROUP_ROLE_LEVEL_MEMBER_IDS:")
# Keys of ONE user, with why they cannot carry one group's tag.
_USER_KEYS: Final = {
    "JOIN_GROUPS_KEY:": "lists every group the user joined",
    "GROUP_JOIN_MAX_VERSION:": "versions every group the user joined",
    "CONVERSATION_IDS:": "lists every conversation of the user",
    "CONVERSATION_IDS_HASH:": "hashes every conversation of the user",
    "CONVERSATION_USER_MAX:": "versions every conversation of the user",
}


def _str_keys(keys: object) -> list[str]:
    key_list = check_keys(keys)
    for i, key in enumerate(key_list):
        if not isinstance(key, str):
            raise TypeError(f"keys[{i}] is bytes; key layouts rewrite OpenIM's text keys (str)")
    return cast(list[str], key_list)


def _tag_text(what: str, tag: object) -> str:
    if not isinstance(tag, str):
        raise TypeError(f"{what} must be a str, not {type(tag).__name__}")
    if not tag or "}" in tag:
        raise ValueError(
            f"{what} {tag!r} cannot be a hash tag: it must be non-empty and contain no '}}'"
        )
    return tag


def global_tag_keys(keys: Sequence[str], tag: str = GLOBAL_TAG) -> list[str]:
    """Every key behind one global hash tag: ``GROUP_INFO:g1`` -> ``{GROUP}GROUP_INFO:g1``.

    All keys then hash to the slot of ``tag`` (13516 for ``GROUP``), so one EVAL works on any
    cluster or proxy; the price is that one shard holds, and serves, the whole group cache.
    """
    tag = _tag_text("tag", tag)
    return ["{" + tag + "}" + key for key in _str_keys(keys)]


def _group_part(key: str, group_id: str) -> str | None:
    """The key rewritten with ``{gid}`` around its group ID, or None if it is not gid's key."""
    for prefix in _GROUP_WHOLE:
        if key == prefix + group_id:
            return prefix + "{" + group_id + "}"
    for prefix in _GROUP_DASH:
        if key.startswith(prefix + group_id + "-"):
            return prefix + "{" + group_id + "}" + key[len(prefix) + len(group_id) :]
    cid = group_chat_conversation_id(group_id)
    if key == "CONVERSATION_NOT_RECEIVE_MESSAGE_USER_IDS:" + cid:
        return "CONVERSATION_NOT_RECEIVE_MESSAGE_USER_IDS:sg_{" + group_id + "}"
    if key.startswith("CONVERSATION:") and key.endswith(":" + cid) and key.count(":") >= 2:
        return key[: -len(group_id)] + "{" + group_id + "}"
    return None


@dataclass(frozen=True)
class Colocation:
    """Which keys of a key set can share one group's ``{<gid>}`` tag, and which cannot."""

    group_id: str
    colocated: tuple[str, ...]
    """Keys of the group: with the tag they all land in the group's one slot."""
    apart: tuple[tuple[str, str], ...]
    """``(key, why)`` for every key that cannot carry the group's tag."""

    def __str__(self) -> str:
        lines = [
            f"group {self.group_id}: {len(self.colocated)} key(s) can share the tag "
            f"{{{self.group_id}}}, {len(self.apart)} cannot"
        ]
        lines += [f"  together  {k}" for k in self.colocated]
        lines += [f"  apart     {k}  ({why})" for k, why in self.apart]
        return "\n".join(lines)


def colocation_report(keys: Sequence[str], group_id: str) -> Colocation:
    """Split a key set (say, :func:`slotlab.openim.create_group_keys`) into the keys of group
    ``group_id``, which a ``{<gid>}`` tag can put in one slot, and the rest, with the reason.

    A user key such as ``JOIN_GROUPS_KEY:<uid>`` cannot join them: a user is in many groups, and
    one key cannot carry every group's tag. So per-group tags shrink a CreateGroup's slots from
    about one per key to one for the group plus the members' user keys, never to one.
    """
    group_id = _tag_text("group_id", group_id)
    together: list[str] = []
    apart: list[tuple[str, str]] = []
    for key in _str_keys(keys):
        if _group_part(key, group_id) is not None:
            together.append(key)
            continue
        for prefix, why in _USER_KEYS.items():
            if key.startswith(prefix):
                apart.append((key, f"a user key: it {why}, so no one group's tag fits it"))
                break
        else:
            apart.append((key, f"not a key of group {group_id} that slotlab knows"))
    return Colocation(group_id, tuple(together), tuple(apart))


def per_group_tag_keys(keys: Sequence[str], group_id: str) -> list[str]:
    """The keys with ``{<gid>}`` around the group ID in every key of group ``group_id``:
    ``GROUP_INFO:g1`` -> ``GROUP_INFO:{g1}``, ``GROUP_MEMBER_INFO:g1-u2`` ->
    ``GROUP_MEMBER_INFO:{g1}-u2``; every other key (a user's, see :func:`colocation_report`)
    is left as it is. The group's keys then share the slot of ``group_id``.
    """
    group_id = _tag_text("group_id", group_id)
    return [_group_part(key, group_id) or key for key in _str_keys(keys)]
