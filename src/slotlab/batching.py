"""Batch-delete strategies: six ways to tag many cache keys as deleted, one signature.

Every strategy is called the same way and answers the same way::

    result = strategy(client, keys, delay=10, chunk_size=50)   # -> BatchResult

``client`` is any redis-py client (``RedisCluster``, a plain client to a proxy, to a node, or to
one non-cluster server); ``keys`` a non-empty list of str or bytes keys. Each strategy tags every
key as rockscache does (see :mod:`slotlab.openim`, whose scripts these reuse) or raises the
error the setting gives. Which one works where:

=================  ===================  ==============  ==============  ===================
strategy           cluster client       Alibaba proxy   node client     one plain server
=================  ===================  ==============  ==============  ===================
per_key            yes, slowly          yes, slowly     MOVED           yes, slowly
one_eval           refused (client)     slot error      CROSSSLOT       yes
by_server_slot     yes, slowly          slot error      CROSSSLOT       yes
by_client_slot     yes, fast            script error*   MOVED           yes, fast
proxy_safe         yes, fast            yes, fast       MOVED           yes, fast
pipelined_per_key  yes, fast            yes, fast       MOVED           yes, fast
=================  ===================  ==============  ==============  ===================

\\* unless the proxy's script check is off (``script_check_enable=0``). "MOVED": a plain
client to one node of a cluster reaches only that node's slots; the keys it owns are tagged,
the rest answer MOVED. The key layouts at the end of the module change the keys instead of the
strategy: a global ``{GROUP}`` tag puts every key in one slot (one EVAL works anywhere, and one
shard carries the whole group cache); per-group ``{<gid>}`` tags put one group's keys together,
but not its members' user keys.

A fair race: every strategy but ``one_eval`` (one command, sent with redis-py's ``eval`` so that
``RedisCluster`` refuses it as it would in an application) sends its commands through the same
machinery (the RESP bytes written here, on the client's own pooled connections) and the same
script rule (a script's
first call on a node or connection is EVAL, later ones EVALSHA, and a NOSCRIPT answer is sent
again as EVAL). They differ only in what a race should measure: how many commands a round trip
carries (:data:`WINDOWS`) and how many keys one script call carries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, NoReturn, Protocol, cast

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
    DEFAULT_EXPIRE,
    EMPTY_EXPIRE,
    LOCK_EXPIRE,
    LOCK_SLEEP,
    LOCKED,
    MAX_KEYS_PER_EVAL,
    OPENIM_BATCH_SIZE,
    OPENIM_CONCURRENCY,
    READ_SCRIPT,
    SET_SCRIPT,
    TAG_AS_DELETED_BATCH_SCRIPT,
    TAG_AS_DELETED_SCRIPT,
    BatchResult,
    Client,
    Loader,
    ReadResult,
    check_batch_size,
    check_delay,
    check_keys,
    database,
    group_chat_conversation_id,
    is_cluster_client,
    v3_7_read,
    v3_8_read,
)
from slotlab.resp import bulk
from slotlab.slots import key_slot, key_slots

__all__ = [
    "GLOBAL_TAG",
    "MAX_KEYS_PER_EVAL",
    "READ_STRATEGIES",
    "RECOMMENDED",
    "STRATEGIES",
    "WINDOWS",
    "BatchResult",
    "Colocation",
    "ReadStrategy",
    "Strategy",
    "by_client_slot",
    "by_server_slot",
    "colocation_report",
    "global_tag_keys",
    "one_eval",
    "per_group_tag_keys",
    "per_key",
    "pipelined_per_key",
    "proxy_safe",
    "proxy_safe_script",
    "read_per_key",
    "read_pipelined_per_key",
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


# --------------------------------------------------------------------------------------------
# The machinery every strategy shares: script calls written as RESP, sent in windows
# --------------------------------------------------------------------------------------------
#
# A PIPELINE is many commands written before any reply is read; a ROUND TRIP is one write and
# the wait for its replies. A strategy's WINDOW is how many commands it has in flight per round
# trip: 1 for a loop (OpenIM 3.7), 3 for OpenIM 3.8 (its ``defaultConcurrentLimit``: 3 batches
# at once), all of them for a pipeline.
#
# The commands are written here as bytes and sent on the client's own pooled connections:
# redis-py's pipelines spend more client CPU per command than a server spends running the
# script (RedisCluster's pipeline about 9 us a command in routing, packing and parsing; a server
# runs one of these scripts in about 3). The bytes are the ones redis-py sends: RESP arrays of
# bulk strings, str keys in UTF-8 (as redis-py's hiredis packer, and slotlab's key_slot, encode
# them).
#
# A script's first call in a call of a strategy, per node (cluster client) or per connection
# (any other client), is an EVAL, which leaves the body in the node's script cache; its later
# calls are EVALSHAs (the server neither receives nor hashes the body again). A call answered
# NOSCRIPT (a SCRIPT FLUSH in between, a redirected EVAL that never ran, or a proxy that sent
# the EVALSHA to a node that never saw the EVAL) goes again as EVAL: one more round trip.

WINDOWS: Final = {"loop": 1, "openim_3.8": OPENIM_CONCURRENCY, "pipeline": 0}
"""Commands in flight per round trip: a loop, OpenIM 3.8's 3 concurrent batches, a whole
pipeline (0: every command of the call)."""

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
def _head(sha: bool, script: str, n: int, extra: int) -> bytes:
    """RESP of ``EVAL <script> <n>`` (``EVALSHA <sha1> <n>`` if ``sha``): the start of a script
    call whose ``n`` keys and ``extra`` arguments follow."""
    command, name = (b"EVALSHA", _sha(script)) if sha else (b"EVAL", script)
    return b"*%d\r\n" % (n + 3 + extra) + bulk(command) + bulk(name.encode()) + bulk(b"%d" % n)


def _bulks(args: Sequence[str | bytes | int]) -> bytes:
    return b"".join(bulk(a if isinstance(a, bytes) else str(a).encode()) for a in args)


class _Batch:
    """One call's keys cut into chunks (one script call each), and each chunk's command.

    ``slots`` (one per key) groups the keys: a chunk never holds keys of two slots. None
    computes them here with CRC16; a list of zeros is OpenIM 3.8's "slot 0" (no grouping)."""

    def __init__(
        self,
        keys: list[str | bytes],
        argv: Sequence[str | bytes | int],
        chunk_size: int,
        script_for: Callable[[int], str],
        slots: Sequence[int] | None = None,
        argv_per_key: Sequence[Sequence[str | bytes | int]] | None = None,
    ) -> None:
        self.keys = keys
        self.argv = list(argv)
        self.script_for = script_for
        self.argvs = [list(a) for a in argv_per_key] if argv_per_key is not None else None
        """Each key's own arguments (only with one key per chunk), instead of ``argv``."""
        encoded = [k.encode() if isinstance(k, str) else k for k in keys]
        if slots is None:
            # A handful of keys: numpy's setup costs more than a loop.
            few = len(encoded) < 32
            slots = [key_slot(k) for k in encoded] if few else key_slots(encoded).tolist()
        self.chunks: list[tuple[int, list[int]]] = []
        """(slot, its keys' indices) of every chunk: one script call each."""
        if chunk_size == 1:
            self.chunks = [(slot, [i]) for i, slot in enumerate(slots)]
        else:
            groups: dict[int, list[int]] = {}  # slot -> its keys' indices; slots as first seen
            for i, slot in enumerate(slots):
                group = groups.get(slot)
                if group is None:
                    groups[slot] = [i]
                else:
                    group.append(i)
            for slot, group in groups.items():
                if len(group) <= chunk_size:
                    self.chunks.append((slot, group))
                else:
                    self.chunks += [
                        (slot, group[lo : lo + chunk_size])
                        for lo in range(0, len(group), chunk_size)
                    ]
        self.bulks = [bulk(k) for k in encoded]
        self.tail = _bulks(self.argv)
        self.tails = [_bulks(a) for a in self.argvs] if self.argvs is not None else None
        if self.tails is not None and chunk_size != 1:
            raise ValueError("argv_per_key needs one key per chunk (chunk_size=1)")

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
        bulks = self.bulks
        if self.tails is not None and self.argvs is not None:
            out.append(_head(sha, script, 1, len(self.argvs[idx[0]])))
            out.append(bulks[idx[0]])
            out.append(self.tails[idx[0]])
            return sha
        out.append(_head(sha, script, n, len(self.argv)))
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
        name = ["EVALSHA", _sha(script)] if sha else ["EVAL", script]
        argv = self.argvs[self.chunks[c][1][0]] if self.argvs is not None else self.argv
        return [*name, len(keys), *keys, *argv]


def _first_error(replies: Sequence[Any], among: Sequence[int]) -> int | None:
    return next((c for c in among if isinstance(replies[c], Exception)), None)


def _raise(client: Client, reply: Exception, position: int, args: list[Any]) -> NoReturn:
    """Raise ``reply`` (the answer to command ``position`` of a pipeline, 0-based), its message
    prefixed as redis-py's pipelines prefix it."""
    client.pipeline(transaction=False).annotate_exception(reply, position + 1, args)
    raise reply


def _window_ranges(count: int, window: int) -> list[range]:
    step = window if window > 0 else max(count, 1)
    return [range(lo, min(lo + step, count)) for lo in range(0, count, step)]


def _send_to_cluster(rc: RedisCluster, batch: _Batch, window: int) -> tuple[list[Any], int, int]:
    """Every chunk to the master of its slot, ``window`` chunks per round trip (0: all): per
    round, one pipeline per node, all written before any is read. Chunks answered with a
    redirect, TRYAGAIN, CLUSTERDOWN, NOSCRIPT or a connection error go again, as EVAL, through
    ``RedisCluster``'s own pipeline, which follows redirects: one more round trip. Stops after
    the first round that leaves an error. Returns (replies, round trips, commands)."""
    chunks = batch.chunks
    manager = rc.nodes_manager
    # slots_cache[slot][0] is the slot's master, what get_node_from_slot() answers after taking
    # a lock (about 1 us a call). A stale entry costs a MOVED, which is followed below.
    owners = manager.slots_cache
    node_of: list[ClusterNode] = []
    for slot, _idx in chunks:
        nodes = owners.get(slot)
        node_of.append(nodes[0] if nodes else manager.get_node_from_slot(slot))

    replies: list[Any] = [None] * len(chunks)
    as_sha = [False] * len(chunks)
    with_body: dict[str, set[str]] = {}  # node -> scripts it has been sent this call
    round_trips = commands = 0
    for part in _window_ranges(len(chunks), window):
        per_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        for c in part:
            node = node_of[c]
            entry = per_node.get(node.name)
            if entry is None:
                per_node[node.name] = (node, [c])
            else:
                entry[1].append(c)
        held: list[tuple[Any, Any]] = []  # (pool, connection): given back at the end
        written: list[tuple[Any, list[int]]] = []  # (connection, its chunks): replies to read
        done = 0  # connections of `written` read to the end
        try:
            for node, cs in per_node.values():
                out: list[bytes] = []
                seen = with_body.setdefault(node.name, set())
                for c in cs:
                    as_sha[c] = batch.write(out, c, seen)
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
        round_trips += 1
        commands += len(part)
        redo = [c for c in part if isinstance(replies[c], _REDO_THROUGH_CLUSTER)]
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
        first = _first_error(replies, part)
        if first is not None:
            _raise(rc, replies[first], first - part.start, batch.args(first, as_sha[first]))
    return replies, round_trips, commands


def _send_to_one_address(
    client: redis.Redis, batch: _Batch, window: int
) -> tuple[list[Any], int, int]:
    """Every chunk down one connection of a plain client (to a proxy, a node, one server),
    ``window`` chunks per round trip (0: all, one pipeline); a round is tried again on a lost
    connection as redis-py tries a pipeline again. Chunks answered NOSCRIPT go again as EVAL
    (one more round trip). Stops after the first round that leaves an error. Returns (replies,
    round trips, commands)."""
    chunks = batch.chunks
    replies: list[Any] = [None] * len(chunks)
    as_sha = [False] * len(chunks)
    with_body: set[str] = set()
    pool = client.connection_pool
    conn = pool.get_connection()

    def exchange(cs: Sequence[int], sha: bool | None) -> None:
        out: list[bytes] = []
        for c in cs:
            as_sha[c] = batch.write(out, c, with_body if sha is None else sha)
        packed = b"".join(out)

        def once() -> None:
            conn.send_packed_command([packed])
            try:
                for c in cs:
                    try:
                        replies[c] = conn.read_response()
                    except ResponseError as exc:
                        replies[c] = exc
            except BaseException:
                conn.disconnect()  # replies left unread would reach the connection's next user
                raise

        conn.retry.call_with_retry(once, lambda _error: conn.disconnect())

    round_trips = commands = 0
    try:
        for part in _window_ranges(len(chunks), window):
            exchange(part, None)
            round_trips += 1
            commands += len(part)
            again = [c for c in part if isinstance(replies[c], NoScriptError)]
            if again:
                exchange(again, False)
                round_trips += 1
                commands += len(again)
            first = _first_error(replies, part)
            if first is not None:
                _raise(client, replies[first], first - part.start, batch.args(first, as_sha[first]))
    finally:
        pool.release(conn)
    return replies, round_trips, commands


def _send(client: Client, batch: _Batch, window: int) -> tuple[list[Any], int, int]:
    if is_cluster_client(client):
        return _send_to_cluster(cast(RedisCluster, client), batch, window)
    return _send_to_one_address(cast(redis.Redis, client), batch, window)


def _tag(
    name: str,
    client: Client,
    keys: Sequence[str | bytes],
    delay: int,
    chunk_size: int,
    *,
    per_call: int | None,
    window: int,
    script_for: Callable[[int], str],
    client_slots: bool = True,
) -> BatchResult:
    """Tag ``keys`` as deleted: ``per_call`` keys per script call (None: ``chunk_size`` keys of
    one slot), ``window`` calls per round trip. ``client_slots=False`` computes no slot unless
    the client is a cluster client, which routes by slot."""
    key_list = check_keys(keys)
    delay = check_delay(delay)
    chunk_size = check_batch_size(chunk_size, "chunk_size")
    start = time.perf_counter()
    slots = None if client_slots or is_cluster_client(client) else [0] * len(key_list)
    batch = _Batch(key_list, [delay], per_call or chunk_size, script_for, slots)
    _replies, trips, commands = _send(client, batch, window)
    return BatchResult(name, len(key_list), trips, commands, commands, time.perf_counter() - start)


def _one_key_script(n: int) -> str:
    return TAG_AS_DELETED_SCRIPT


def _batch_script(n: int) -> str:
    return TAG_AS_DELETED_BATCH_SCRIPT


# --------------------------------------------------------------------------------------------
# The historical strategies: OpenIM's own delete paths, through the shared machinery
# --------------------------------------------------------------------------------------------


def per_key(
    client: Client,
    keys: Sequence[str | bytes],
    *,
    delay: int = DEFAULT_DELAY,
    chunk_size: int = OPENIM_BATCH_SIZE,
) -> BatchResult:
    """One single-key script call per key, one round trip each (OpenIM 3.7's loop): right
    everywhere, slow.

    ``chunk_size`` is checked but unused: every call holds one key. 3.7 tries a failing key 5
    times, 100 ms apart, logs the last error and goes on (:func:`slotlab.openim.v3_7_per_key`);
    this strategy stops at the first error and raises it.
    """
    return _tag(
        "per_key", client, keys, delay, chunk_size,
        per_call=1, window=WINDOWS["loop"], script_for=_one_key_script, client_slots=False,
    )  # fmt: skip


def one_eval(
    client: Client,
    keys: Sequence[str | bytes],
    *,
    delay: int = DEFAULT_DELAY,
    chunk_size: int = OPENIM_BATCH_SIZE,
) -> BatchResult:
    """ONE EVAL with every key (OpenIM up to 3.3.2): the bug, whenever the keys span slots.

    ``chunk_size`` is checked but unused: there is one EVAL, whatever its size. It works only
    where all keys share a slot (one plain server, or keys under one hash tag). Sent through
    redis-py's ``eval``, as an application would: ``RedisCluster`` refuses it before sending.
    """
    from slotlab.openim import v3_3_batch

    check_batch_size(chunk_size, "chunk_size")
    return dataclasses.replace(v3_3_batch(client, keys, delay), name="one_eval")


def _server_slots(rc: RedisCluster, keys: list[str | bytes]) -> list[int]:
    """Every key's slot as the cluster computes it: ``CLUSTER KEYSLOT`` per key, all in one
    pipeline to one node (any node answers for any key)."""
    node = rc.get_default_node()
    pool = rc.get_redis_connection(node).connection_pool
    conn = pool.get_connection()
    head = b"*3\r\n" + bulk(b"CLUSTER") + bulk(b"KEYSLOT")
    try:
        out = [head + bulk(k.encode() if isinstance(k, str) else k) for k in keys]
        conn.send_packed_command([b"".join(out)])
        try:
            return [int(conn.read_response()) for _ in keys]
        except BaseException:
            conn.disconnect()
            raise
    finally:
        pool.release(conn)


def by_server_slot(
    client: Client,
    keys: Sequence[str | bytes],
    *,
    delay: int = DEFAULT_DELAY,
    chunk_size: int = OPENIM_BATCH_SIZE,
) -> BatchResult:
    """Group by the slot the SERVER reports (``CLUSTER KEYSLOT`` per key), then one EVAL per
    chunk, 3 chunks at a time (OpenIM 3.8's ``ProcessKeysBySlot``).

    It needs a cluster client (``RedisCluster``) to be right. Given any other client it falls
    back exactly as 3.8 does: every key in one "slot 0" group, cut into chunks of
    ``chunk_size`` keys, which a proxy or a cluster node rejects when the chunk spans slots
    (against one non-cluster server that is harmless). The ``CLUSTER KEYSLOT`` round is one
    pipeline; then 3.8 runs up to 3 batches at once (``defaultConcurrentLimit``), modelled here
    as 3 script calls per round trip; it stops at the first error.
    """
    key_list = check_keys(keys)
    delay = check_delay(delay)
    chunk_size = check_batch_size(chunk_size, "chunk_size")
    start = time.perf_counter()
    trips = asked = 0
    if is_cluster_client(client) and len(key_list) > 1:
        slots = _server_slots(cast(RedisCluster, client), key_list)
        trips, asked = 1, len(key_list)
    else:
        slots = [0] * len(key_list)  # "If not a cluster client, put all keys in the same slot"
    batch = _Batch(key_list, [delay], chunk_size, _batch_script, slots)
    _replies, more, evals = _send(client, batch, WINDOWS["openim_3.8"])
    return BatchResult(
        "by_server_slot", len(key_list), trips + more, asked + evals, evals,
        time.perf_counter() - start,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# The fixes: send every script call in ONE pipeline
# --------------------------------------------------------------------------------------------


def pipelined_per_key(
    client: Client,
    keys: Sequence[str | bytes],
    *,
    delay: int = DEFAULT_DELAY,
    chunk_size: int = OPENIM_BATCH_SIZE,
) -> BatchResult:
    """OpenIM 3.7's one-key script for every key, all the calls in ONE pipeline.

    No slot code and no script rewrite: each call holds one key, so it can never span slots,
    and its script names its key ``KEYS[1]``, which a proxy's script check accepts. Through a
    plain client (a proxy, one server) it computes no slot at all; through ``RedisCluster`` each
    call goes to its key's master, as the client routes any command. ``chunk_size`` is checked
    but unused. The first call per node (or connection) is EVAL, the rest EVALSHA; a NOSCRIPT
    answer is sent again as EVAL (one more round trip).
    """
    return _tag(
        "pipelined_per_key", client, keys, delay, chunk_size,
        per_call=1, window=WINDOWS["pipeline"], script_for=_one_key_script, client_slots=False,
    )  # fmt: skip


def by_client_slot(
    client: Client,
    keys: Sequence[str | bytes],
    *,
    delay: int = DEFAULT_DELAY,
    chunk_size: int = OPENIM_BATCH_SIZE,
) -> BatchResult:
    """Group by slot computed HERE (CRC16, :func:`slotlab.slots.key_slots`), cut each slot's
    keys into chunks of ``chunk_size``, and send every chunk's EVAL in ONE pipeline.

    No EVAL spans slots, so it is right on a cluster, behind a proxy (with its script check
    off) and on one plain server, and one pipeline costs one round trip however many EVALs it
    carries (not a transaction: chunks are tagged independently). Through ``RedisCluster`` each
    EVAL goes to the node that owns its slot, one pipeline per node, all written before any is
    read. Chunks answered with a redirect, TRYAGAIN, CLUSTERDOWN, NOSCRIPT or a lost connection
    go again through ``RedisCluster``'s pipeline, which follows redirects (one more round trip);
    then the first error left, if any, is raised. It uses rockscache's batch script, whose loop
    variable an Alibaba-style proxy's script check rejects: behind such a proxy use
    :func:`proxy_safe` or :func:`pipelined_per_key`. A plain client to ONE node of a cluster
    fails with MOVED for the other nodes' slots (the chunks that node owns are tagged).
    """
    return _tag(
        "by_client_slot", client, keys, delay, chunk_size,
        per_call=None, window=WINDOWS["pipeline"], script_for=_batch_script,
    )  # fmt: skip


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
    return _tag(
        "proxy_safe", client, keys, delay, chunk_size,
        per_call=None, window=WINDOWS["pipeline"], script_for=proxy_safe_script,
    )  # fmt: skip


STRATEGIES: Final[dict[str, Strategy]] = {
    "per_key": per_key,
    "one_eval": one_eval,
    "by_server_slot": by_server_slot,
    "by_client_slot": by_client_slot,
    "proxy_safe": proxy_safe,
    "pipelined_per_key": pipelined_per_key,
}
"""Every strategy by name, oldest idea first."""

RECOMMENDED: Final = {"cluster": "pipelined_per_key", "proxy": "pipelined_per_key"}
"""The strategy slotlab recommends behind a cluster client, and behind a cloud proxy, for keys
that spread about one per slot (OpenIM's): grouping buys little there, pipelining buys it all."""


# --------------------------------------------------------------------------------------------
# Reads: rockscache's one-key read, in a loop or pipelined
# --------------------------------------------------------------------------------------------


class ReadStrategy(Protocol):
    """What every batch-read strategy looks like (the signature of ``openim.v3_8_read``)."""

    def __call__(
        self,
        client: Client,
        keys: Sequence[str | bytes],
        load: Loader = database,
        *,
        expire: int = DEFAULT_EXPIRE,
    ) -> ReadResult: ...


def _read_script(n: int) -> str:
    return READ_SCRIPT


def _set_script(n: int) -> str:
    return SET_SCRIPT


def _answer_text(value: object) -> str | None:
    if value is None or value is False:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _read(
    name: str,
    client: Client,
    keys: Sequence[str | bytes],
    load: Loader,
    expire: int,
    window: int,
) -> ReadResult:
    """rockscache's strong read of every key with its one-key scripts, ``window`` calls per
    round trip: read (and lock what is missing or stale), ask ``load`` once for every key this
    reader locked, write those back; a key another reader holds is asked again after
    ``LOCK_SLEEP``, as rockscache does."""
    key_list = [
        k.decode("utf-8") if isinstance(k, bytes) else k for k in dict.fromkeys(check_keys(keys))
    ]
    if not callable(load):
        raise TypeError(
            "load must be a function from a list of keys to their values, such as "
            f"slotlab.openim.database, not {load!r}"
        )
    if isinstance(expire, bool) or not isinstance(expire, int) or expire <= DEFAULT_DELAY:
        raise ValueError(
            f"expire must be a whole number of seconds above the {DEFAULT_DELAY} s delay, "
            f"such as {DEFAULT_EXPIRE}, not {expire!r}"
        )
    start = time.perf_counter()
    owner = uuid.uuid4().hex
    values: dict[str, str | None] = {}
    to_load: list[str] = []
    trips = commands = 0
    pending: list[str] = list(key_list)
    deadline = time.monotonic() + 10 * LOCK_EXPIRE
    while pending:
        now = int(time.time())
        slots = None if is_cluster_client(client) else [0] * len(pending)
        batch = _Batch(list(pending), [now, now + LOCK_EXPIRE, owner], 1, _read_script, slots)
        replies, t, c = _send(client, batch, window)
        trips += t
        commands += c
        held: list[str] = []
        for key, (value, lock) in zip(pending, replies, strict=True):
            lock_text = _answer_text(lock)
            if lock_text is None or time.monotonic() > deadline:
                values[key] = _answer_text(value) or None
            elif lock_text == LOCKED:
                to_load.append(key)
            else:  # another reader holds the key's lock: ask again shortly
                held.append(key)
        pending = held
        if pending:
            time.sleep(LOCK_SLEEP)
    if to_load:
        rows = load(list(to_load))
        fresh = [rows.get(key, "") for key in to_load]
        argvs: list[list[str | bytes | int]] = [
            [value, owner, expire - DEFAULT_DELAY if value else EMPTY_EXPIRE] for value in fresh
        ]
        slots = None if is_cluster_client(client) else [0] * len(to_load)
        batch = _Batch(list(to_load), [], 1, _set_script, slots, argv_per_key=argvs)
        _replies, t, c = _send(client, batch, window)
        trips += t
        commands += c
        for key, value in zip(to_load, fresh, strict=True):
            values[key] = value or None
    return ReadResult(
        name,
        len(key_list),
        len(to_load),
        trips,
        commands,
        commands,
        time.perf_counter() - start,
        {k: values[k] for k in key_list},
    )


def read_per_key(
    client: Client,
    keys: Sequence[str | bytes],
    load: Loader = database,
    *,
    expire: int = DEFAULT_EXPIRE,
) -> ReadResult:
    """Read each key with rockscache's one-key read script, one round trip each (OpenIM 3.7's
    loop, as :func:`slotlab.openim.v3_7_read`, through this module's machinery): right
    everywhere, slow. The keys that missed are loaded once and written back, one call each."""
    return _read("read_per_key", client, keys, load, expire, WINDOWS["loop"])


def read_pipelined_per_key(
    client: Client,
    keys: Sequence[str | bytes],
    load: Loader = database,
    *,
    expire: int = DEFAULT_EXPIRE,
) -> ReadResult:
    """Read every key with rockscache's one-key read script, all the calls in ONE pipeline; the
    misses are loaded once and written back in a second pipeline.

    The fix for 3.8's batch read (:func:`slotlab.openim.v3_8_read`, one EVAL over all KEYS):
    each call holds one key written ``KEYS[1]``, so neither the slot rule nor a proxy's script
    check can object, on a cluster, behind a proxy or on one server. Round trips: 1 on a warm
    cache, 2 when keys were missing or tagged as deleted.
    """
    return _read("read_pipelined_per_key", client, keys, load, expire, WINDOWS["pipeline"])


READ_STRATEGIES: Final[dict[str, ReadStrategy]] = {
    "v3_7_read": v3_7_read,
    "v3_8_read": v3_8_read,
    "read_per_key": read_per_key,
    "read_pipelined_per_key": read_pipelined_per_key,
}
"""Every read strategy by name: OpenIM's two (sent through redis-py's own ``eval``, one call
per round trip), then slotlab's two (through this module's machinery)."""


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
