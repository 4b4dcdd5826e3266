"""Slots on the move: a slot migrated the way ``redis-cli --cluster reshard`` does it, a tally of
what clients meet meanwhile, and a retry with backoff for a batch that meets it.

Moving one slot from a source master to a target master takes these steps
(``clusterManagerMoveSlot`` and ``clusterManagerMigrateKeysInSlot`` in ``src/redis-cli.c``):

1. ``CLUSTER SETSLOT <slot> IMPORTING <source-id>`` on the target;
2. ``CLUSTER SETSLOT <slot> MIGRATING <target-id>`` on the source;
3. ``CLUSTER GETKEYSINSLOT <slot> <batch>`` on the source, then
   ``MIGRATE <host> <port> "" 0 <timeout> KEYS <key>...`` to move that batch, until no key is
   left (redis-cli's ``--cluster-pipeline`` is 10 by default, its timeout 60000 ms);
4. ``CLUSTER SETSLOT <slot> NODE <target-id>`` on the target first, then on the source, then on
   every other master.

Between steps 2 and 4 the slot's keys are split between two nodes: the source answers ``ASK``
for a key it no longer holds, and ``TRYAGAIN`` for a multi-key command whose keys are split.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from slotlab.resp import RequestReader

MIGRATE_TIMEOUT_MS = 60000
"""MIGRATE's timeout, as ``redis-cli --cluster reshard`` sends it (``--cluster-timeout``)."""

MIGRATE_PIPELINE = 10
"""Keys per GETKEYSINSLOT and MIGRATE, as ``redis-cli`` moves them (``--cluster-pipeline``)."""


@dataclass(frozen=True)
class MigrationStep:
    """One step of moving a slot, done: which command went to which node, and what it moved."""

    action: str
    """``importing``, ``migrating``, ``migrate`` (one batch of keys) or ``node``."""
    slot: int
    node: int
    """The index of the node the command was sent to (as ``lab.node_client(i)`` numbers it)."""
    command: tuple[str, ...]
    keys: tuple[str, ...] = ()
    """The keys this MIGRATE moved (empty for the other steps)."""

    def __str__(self) -> str:
        if self.action == "migrate":
            # MIGRATE <host> <port> "" <db> <timeout> KEYS ...: the address shown as host:port.
            _name, host, port, _key, db, timeout = self.command[:6]
            return (
                f'node {self.node}: MIGRATE <{host}:{port}> "" {db} {timeout} '
                f"KEYS <{len(self.keys)} keys>"
            )
        return f"node {self.node}: {' '.join(self.command)}"


@dataclass(frozen=True)
class Migration:
    """A finished slot migration: from which node to which, and how many keys moved."""

    slot: int
    source: int
    target: int
    keys_moved: int
    steps: tuple[MigrationStep, ...]

    def __str__(self) -> str:
        return (
            f"slot {self.slot} moved from node {self.source} to node {self.target}: "
            f"{self.keys_moved} key(s) in {sum(s.action == 'migrate' for s in self.steps)} "
            f"MIGRATE batch(es), {len(self.steps)} steps"
        )


@dataclass(frozen=True)
class Recovery:
    """How a failover went: which replica took over from which master, and how long the
    cluster took until every live node reported ``cluster_state:ok`` and agreed on the owner."""

    kind: str
    """``planned`` (CLUSTER FAILOVER on the replica) or ``unplanned`` (the master was killed)."""
    old_master: int
    new_master: int
    slots: tuple[tuple[int, int], ...]
    seconds: float

    def __str__(self) -> str:
        ranges = ", ".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in self.slots)
        return (
            f"{self.kind} failover: node {self.new_master} took over slots {ranges} from node "
            f"{self.old_master}; the cluster was ok again after {self.seconds:.2f} s"
        )


# --------------------------------------------------------------------------------------------
# Counting what a client meets on the wire
# --------------------------------------------------------------------------------------------


_ERROR_WORDS: tuple[tuple[type[BaseException], str], ...] = (
    (redis.exceptions.MovedError, "MOVED"),  # before AskError: MovedError is a kind of it
    (redis.exceptions.AskError, "ASK"),
    (redis.exceptions.TryAgainError, "TRYAGAIN"),
    (redis.exceptions.ClusterDownError, "CLUSTERDOWN"),
    (redis.exceptions.NoScriptError, "NOSCRIPT"),
)


@dataclass
class Tally:
    """What a client sent and which error replies it read, counted on its connections.

    Redis-py follows ``ASK`` and ``MOVED`` and tries ``TRYAGAIN`` again by itself, so a caller
    sees none of them; the tally does. ``commands`` counts every command written (``ASKING``
    counted apart, in ``asking``); ``errors`` counts error replies by their first word.
    """

    commands: int = 0
    asking: int = 0
    retries: int = 0
    """Commands sent again: the same command (byte for byte) as one sent before."""
    errors: Counter[str] = field(default_factory=Counter)
    _seen: set[bytes] = field(default_factory=set, repr=False)

    def reset(self) -> None:
        """Start counting from zero again."""
        self.commands = self.asking = self.retries = 0
        self.errors.clear()
        self._seen.clear()

    def copy(self) -> Tally:
        """A snapshot of the counts so far."""
        return Tally(self.commands, self.asking, self.retries, Counter(self.errors))

    def _sent(self, data: bytes) -> None:
        reader = RequestReader()
        reader.feed(data)
        while (argv := reader.get_command()) is not None:
            if argv and argv[0].upper() == b"ASKING":
                self.asking += 1
            elif argv:
                self.commands += 1
                request = b"\0".join(argv)
                if request in self._seen:
                    self.retries += 1
                else:
                    self._seen.add(request)

    def _error(self, error: BaseException) -> None:
        # redis-py drops the first word of the errors it knows (ASK, MOVED, ...): name them back.
        for kind, word in _ERROR_WORDS:
            if isinstance(error, kind):
                self.errors[word] += 1
                return
        first = str(error).split(" ", 1)[0]
        self.errors[first if first.isupper() and first.isalpha() else "ERR"] += 1

    def watch(self, client: redis.Redis | RedisCluster) -> None:
        """Count on every connection ``client`` makes from now on (its idle ones are dropped).

        Works for a plain ``redis.Redis`` and for a ``RedisCluster`` (every node it knows now or
        learns later).
        """
        if isinstance(client, RedisCluster):
            manager = client.nodes_manager
            for node in list(manager.nodes_cache.values()):
                if node.redis_connection is not None:
                    self._watch_pool(node.redis_connection.connection_pool)
            create: Callable[..., redis.Redis] = manager.create_redis_node

            def counted(host: str, port: int, **kwargs: Any) -> redis.Redis:
                r: redis.Redis = create(host, port, **kwargs)
                self._watch_pool(r.connection_pool)
                return r

            manager.create_redis_node = counted  # type: ignore[method-assign]
        else:
            self._watch_pool(client.connection_pool)

    def _watch_pool(self, pool: Any) -> None:
        base = pool.connection_class
        if getattr(base, "_slotlab_tally", None) is self:
            return
        tally = self

        class Counted(base):  # type: ignore[misc, valid-type]
            _slotlab_tally = tally
            _handshake = False  # the connection's own setup (HELLO, CLIENT SETINFO): not counted

            def on_connect_check_health(self, *args: Any, **kwargs: Any) -> None:
                self._handshake = True
                try:
                    super().on_connect_check_health(*args, **kwargs)
                finally:
                    self._handshake = False

            def send_packed_command(self, command: Any, check_health: bool = True) -> None:
                if self._handshake:
                    super().send_packed_command(command, check_health)
                    return
                if isinstance(command, (bytes, bytearray, memoryview)):
                    data = bytes(command)
                elif isinstance(command, str):
                    data = command.encode()
                else:
                    data = b"".join(bytes(c) for c in command)
                tally._sent(data)
                super().send_packed_command(command, check_health)

            def read_response(self, *args: Any, **kwargs: Any) -> Any:
                try:
                    return super().read_response(*args, **kwargs)
                except ResponseError as exc:
                    if not self._handshake:
                        tally._error(exc)
                    raise

        pool.connection_class = Counted
        pool.reset()

    def __str__(self) -> str:
        errs = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"{self.commands} command(s) ({self.retries} sent again), {self.asking} ASKING, "
            f"error replies: {errs}"
        )


# --------------------------------------------------------------------------------------------
# A retry with backoff around any batch strategy
# --------------------------------------------------------------------------------------------


@dataclass
class RetryLog:
    """What :func:`with_retry` did: how many attempts, and the error each failed one raised."""

    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    waited: float = 0.0


RETRYABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.ClusterError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.AskError,  # MovedError too
)
"""Errors a slot migration or a failover can cause that a later try may not meet."""


def with_retry(
    strategy: Callable[..., Any],
    *,
    attempts: int = 5,
    backoff: float = 0.05,
    factor: float = 2.0,
    sleep: Callable[[float], Any] = time.sleep,
    log: RetryLog | None = None,
) -> Callable[..., Any]:
    """``strategy`` tried again, up to ``attempts`` times, after ``backoff`` s, then ``backoff *
    factor`` s, ... when it raises an error a moving slot causes (:data:`RETRYABLE`).

    Tagging a key as deleted twice does no harm (rockscache's tag is idempotent), so trying a
    whole batch again is safe. ``sleep`` is called with each wait (``time.sleep`` by default);
    ``log`` (a :class:`RetryLog`) records the attempts.
    """
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"attempts must be a whole number, 1 or more, not {attempts!r}")
    if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 0:
        raise ValueError(f"backoff must be a number of seconds, 0 or more, not {backoff!r}")
    record = log if log is not None else RetryLog()

    def retrying(client: Any, keys: Sequence[str | bytes], **kwargs: Any) -> Any:
        wait = float(backoff)
        for attempt in range(1, attempts + 1):
            record.attempts += 1
            try:
                return strategy(client, keys, **kwargs)
            except RETRYABLE as exc:
                record.errors.append(f"{type(exc).__name__}: {exc}")
                if attempt == attempts:
                    raise
                record.waited += wait
                sleep(wait)
                wait *= factor
        raise AssertionError("unreachable")  # pragma: no cover

    retrying.__name__ = f"{getattr(strategy, '__name__', 'strategy')}_with_retry"
    retrying.__doc__ = f"{retrying.__name__}: {strategy.__name__} with a retry and backoff."
    return retrying


# --------------------------------------------------------------------------------------------
# A batch of cache deletes run against a slot in migration
# --------------------------------------------------------------------------------------------


def fill_cache(client: Any, keys: Sequence[str | bytes]) -> None:
    """Give every key a live rockscache entry (a hash: a value, ``lockUntil`` 1, no TTL), so a
    later "tag as deleted" has something to tag and a test can tell tagged from not."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hset(key, mapping={"value": "cached", "lockUntil": "1"})
        pipe.persist(key)
    pipe.execute()


@dataclass(frozen=True)
class WindowRun:
    """One batch delete, counted on the wire: what a strategy met while a slot moved."""

    strategy: str
    tally: Tally
    raised: str
    """The class of the error the strategy raised to its caller, or ``""``."""
    missed: int
    """Keys left untagged (checked afterwards through a cluster client)."""
    keys: int

    @property
    def error_replies(self) -> int:
        """Every error reply a node sent the client, followed or not."""
        return sum(self.tally.errors.values())

    HEADER = (
        f"{'strategy':<27}{'error replies':<30}{'retries':>7}  {'raised to the app':<23}"
        "keys missed"
    )
    """The column titles for :meth:`row`."""

    def row(self) -> str:
        """One line under :attr:`HEADER`: error replies by kind, retries, raised, keys missed."""
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.tally.errors.items()))
        replies = f"{self.error_replies} ({kinds})" if kinds else "0"
        return (
            f"{self.strategy:<27}{replies:<30}{self.tally.retries:>7}  {self.raised or '-':<23}"
            f"{self.missed} of {self.keys}"
        )


def run_counted(
    name: str,
    strategy: Callable[..., Any],
    client: RedisCluster,
    keys: Sequence[str],
    reader: Any,
) -> WindowRun:
    """Run ``strategy(client, keys)`` once with a :class:`Tally` on ``client``, catch what it
    raises, and count with ``reader`` the keys it left untagged."""
    from slotlab.openim import tagged_as_deleted

    tally = Tally()
    tally.watch(client)
    raised = ""
    try:
        strategy(client, list(keys))
    except Exception as exc:  # noqa: BLE001 - the point is to count what reaches the caller
        raised = type(exc).__name__
    counted = tally.copy()
    missed = sum(not tagged_as_deleted(reader, k) for k in keys)
    return WindowRun(name, counted, raised, missed, len(keys))
