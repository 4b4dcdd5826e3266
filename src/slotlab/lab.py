"""The Lab: one running cluster per notebook, and the clients to talk to it.

``start_lab()`` picks a backend and forms a cluster; the Lab hands out a cluster client (what a
cluster-aware application uses), plain clients to single nodes (what go-redis does when it routes
a command by its first key), and shows which node owns which slots.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import itertools
import os
import secrets
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, ParamSpec

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ClusterError

from slotlab.backends.base import Backend, NodeAddress, owning_starts
from slotlab.migration import (
    MIGRATE_PIPELINE,
    MIGRATE_TIMEOUT_MS,
    Migration,
    MigrationStep,
    Recovery,
)
from slotlab.slots import SLOT_COUNT, key_slot

BACKENDS = ("auto", "real", "emulated")

#: Upper bounds sized for a laptop. Every node is a process (real backend) that gossips with
#: every other node over the cluster bus, so the cost grows with the square of the node count.
MAX_MASTERS = 32
MAX_REPLICAS = 3
MAX_NODES = 64


class NodeDownError(redis.ConnectionError):
    """A node this operation needs is not running; the message names it and the way back."""


class LabStoppedError(redis.ConnectionError, RuntimeError):
    """This lab (or the lab this client came from) was stopped; the message says by what."""


def _node_down_text(index: int, address: str, doing: str) -> str:
    return (
        f"{doing}: node {index} ({address}) is down, its process is gone (killed?). Bring it "
        f"back with lab.restart_node({index}) (real backend), or start afresh: lab.stop(), "
        "then slotlab.start_lab()"
    )


@dataclass(frozen=True)
class NodeInfo:
    """One node as the cluster itself reports it (from ``CLUSTER NODES``)."""

    index: int
    node_id: str
    host: str
    port: int
    role: str  # "master" or "replica"
    master_id: str | None
    slots: tuple[tuple[int, int], ...]
    failed: bool = False
    """True when the cluster has marked this node as failed (``fail`` in its flags)."""
    down: bool = False
    """True when the node's process is not running: ``lab.restart_node(index)`` restarts it."""

    @property
    def address(self) -> str:
        """``host:port``, as in MOVED replies."""
        return f"{self.host}:{self.port}"

    @property
    def slot_count(self) -> int:
        """How many of the 16384 slots this node serves."""
        return sum(hi - lo + 1 for lo, hi in self.slots)

    def owns(self, slot: int) -> bool:
        """True when this node serves ``slot``."""
        return any(lo <= slot <= hi for lo, hi in self.slots)


@dataclass(frozen=True)
class Topology:
    """Which node owns which slots, as the cluster reports it."""

    nodes: tuple[NodeInfo, ...]
    masters: tuple[NodeInfo, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "masters", tuple(n for n in self.nodes if n.role == "master")
        )

    def __iter__(self) -> Iterator[NodeInfo]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def node_for_slot(self, slot: int) -> NodeInfo:
        """The master that serves ``slot``."""
        for n in self.masters:
            if n.owns(slot):
                return n
        raise LookupError(f"no master serves slot {slot}: the cluster is not fully covered")

    def __str__(self) -> str:
        by_id = {n.node_id: n.index for n in self.nodes}
        rows = [("node", "role", "address", "slots")]
        for n in self.nodes:
            if n.role == "master":
                ranges = ", ".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in n.slots)
                what = f"{ranges} ({n.slot_count} slots)" if n.slots else "(none)"
            else:
                what = f"replica of node {by_id.get(n.master_id or '', '?')}"
            # The cluster's own word first: "failed" once the others have flagged it.
            state = " (failed)" if n.failed else " (down)" if n.down else ""
            if n.down and not n.failed:
                what += f"  -- down: lab.restart_node({n.index})"
            rows.append((str(n.index), n.role + state, n.address, what))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
            for r in rows
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython display
        p.text(str(self))


def parse_cluster_nodes(text: str, order: list[str] | None = None) -> Topology:
    """Read ``CLUSTER NODES`` output into a Topology, numbering nodes in ``order`` of IDs."""
    entries: list[
        tuple[str, str, int, str, str | None, tuple[tuple[int, int], ...], bool]
    ] = []
    for line in text.strip().splitlines():
        parts = line.split()
        node_id, addr, flags, master = parts[0], parts[1], parts[2].split(","), parts[3]
        hostport = addr.split("@", 1)[0]
        host, _, port = hostport.rpartition(":")
        slots: list[tuple[int, int]] = []
        for item in parts[8:]:
            if item.startswith("["):
                continue  # a slot being migrated or imported: [slot->-id] / [slot-<-id]
            lo, _, hi = item.partition("-")
            slots.append((int(lo), int(hi or lo)))
        role = "master" if "master" in flags else "replica"
        master_id = None if master == "-" else master
        failed = "fail" in flags
        entries.append(
            (node_id, host, int(port), role, master_id, tuple(sorted(slots)), failed)
        )
    if order:
        rank = {nid: i for i, nid in enumerate(order)}
        entries.sort(key=lambda e: rank.get(e[0], len(rank)))
    else:
        entries.sort(key=lambda e: (e[3] != "master", e[5][:1] or ((SLOT_COUNT, 0),), e[2]))
    return Topology(
        tuple(NodeInfo(i, *e) for i, e in enumerate(entries))
    )


class Lab:
    """A running Redis Cluster for one notebook, and the clients to talk to it.

    Use ``start_lab()`` to make one. A Lab is a context manager, and stops its cluster when the
    interpreter exits if you forget to.
    """

    _numbers = itertools.count(1)

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        #: The lab's password (every node, the standalone server and the proxy ask for it), or
        #: None for a lab started with ``start_lab(password=None)``. Clients the lab hands out
        #: carry it; ``connection_info()`` says how to connect with redis-cli.
        self.password: str | None = getattr(backend, "password", None)
        self.number = next(Lab._numbers)
        """Labs of this process are numbered from 1, so that messages can say which one."""
        self._clients: list[redis.Redis | RedisCluster] = []
        self._stopped = False
        self._stopped_by: dict[str, str] = {}  # shared with the finalizer
        self._finalizer = weakref.finalize(
            self, Lab._finalize, backend, self._clients, self._stopped_by, self.number
        )
        atexit.register(functools.partial(Lab._at_exit, self._finalizer, self._stopped_by))

    @staticmethod
    def _at_exit(finalizer: Callable[[], Any], stopped_by: dict[str, str]) -> None:
        stopped_by.setdefault("by", "the end of the Python process")
        finalizer()

    # ---- what is running ------------------------------------------------------------------

    @property
    def backend_name(self) -> str:
        """Which backend runs the cluster: ``real`` or ``emulated``."""
        return self.backend.name

    @property
    def nodes(self) -> list[NodeAddress]:
        """Every node's address in the order ``node_client(i)`` numbers them: the masters the lab
        started with, their replicas, then any node ``add_node()`` added."""
        return self.backend.nodes

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else f"{len(self.nodes)} nodes"
        return f"<Lab {self.backend.describe()} ({state})>"

    def _check_running(self) -> None:
        if self._stopped:
            raise LabStoppedError(
                f"this lab (lab {self.number}) was stopped by {self._stopped_by.get('by', '?')}; "
                "start a new one with slotlab.start_lab()"
            )

    def _index_arg(self, what: str, index: object) -> int:
        """``index`` as a node index of this lab (running or not), or a clear error."""
        count = len(self.nodes)
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(
                f"{what} must be a node index, a whole number from 0 to {count - 1}, "
                f"not {type(index).__name__} {index!r}"
            )
        if not 0 <= index < count:
            raise IndexError(
                f"{what} {index} is out of range: this lab has nodes 0 to {count - 1}"
            )
        return index

    def _down(self) -> list[int]:
        return [i for i in range(len(self.nodes)) if self.backend.is_down(i)]

    def _guard(self, client: Any, node: int | None) -> None:
        """Make ``client``'s commands explain a down node: a connection error while a node it
        needs is down becomes a NodeDownError naming the node and the way back."""
        inner = client.execute_command
        lab_ref = weakref.ref(self)

        def execute_command(*args: Any, **options: Any) -> Any:
            try:
                return inner(*args, **options)
            except (redis.ConnectionError, redis.TimeoutError, ClusterError) as exc:
                lab = lab_ref()
                if lab is None or lab._stopped or isinstance(exc, LabStoppedError):
                    raise
                down = lab._down() if node is None else [node] if lab.backend.is_down(node) else []
                if not down:
                    raise
                i = down[0]
                what = " ".join(str(a) for a in args[:1])
                raise NodeDownError(
                    _node_down_text(i, lab.nodes[i].address, f"{what} failed")
                ) from exc

        client.execute_command = execute_command

    # ---- clients --------------------------------------------------------------------------

    def cluster_client(self, **kwargs: Any) -> RedisCluster:
        """A ``redis.cluster.RedisCluster``: follows the slot map, as a cluster-aware app does.

        Replies are decoded to ``str`` unless you pass ``decode_responses=False``.
        """
        self._check_running()
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("password", self.password)
        startup = [ClusterNode(n.host, n.port) for n in self.nodes]
        try:
            rc = RedisCluster(startup_nodes=startup, **kwargs)
        except redis.RedisError as exc:
            down = self._down()
            if not down:
                raise
            i = down[0]
            raise NodeDownError(
                _node_down_text(i, self.nodes[i].address, "cluster_client() could not connect")
            ) from exc
        self._clients.append(rc)
        self._guard(rc, None)
        return rc

    def node_client(self, index: int, **kwargs: Any) -> redis.Redis:
        """A plain ``redis.Redis`` to node ``index``: no routing, so you meet MOVED yourself."""
        self._check_running()
        nodes = self.nodes
        index = self._index_arg("index", index)
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("password", self.password)
        node = nodes[index]
        client = redis.Redis(host=node.host, port=node.port, **kwargs)
        self._clients.append(client)
        self._guard(client, index)
        return client

    def standalone_client(self, **kwargs: Any) -> redis.Redis:
        """A plain client to a new single Redis server, not a cluster, of this lab's backend.

        Many applications start on one server and move to a cluster later; compare the two.
        The server stops with the lab.
        """
        self._check_running()
        host, port = self.backend.start_standalone()
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("password", self.password)
        client = redis.Redis(host=host, port=port, **kwargs)
        self._clients.append(client)
        return client

    def node_client_for(self, key: str | bytes, **kwargs: Any) -> redis.Redis:
        """A plain client to the master that owns ``key``'s slot.

        This is how go-redis's ClusterClient routes EVAL: by its first key, to one node, which
        then checks every other key itself.
        """
        owner = self.topology().node_for_slot(key_slot(key))
        return self.node_client(self._index_of(owner.node_id), **kwargs)

    def proxy_client(
        self, personality: str = "alibaba", script_check_enable: bool = True, **kwargs: Any
    ) -> redis.Redis:
        """A plain ``redis.Redis`` to a new proxy-mode endpoint in front of this cluster.

        ``personality`` is ``"alibaba"`` (a cloud proxy's rules) or ``"passthrough"`` (route by
        the first key, as go-redis does); see ``slotlab.proxy``. The proxy is ``client.proxy``;
        it stops when the client is closed or the lab stops. Replies are decoded to ``str``
        unless you pass ``decode_responses=False``.
        """
        self._check_running()
        from slotlab.proxy import Proxy, ProxyClient

        proxy = Proxy(self.nodes, personality, script_check_enable=script_check_enable,
                      password=self.password).start()  # fmt: skip
        kwargs.setdefault("decode_responses", True)
        client = ProxyClient(proxy, **kwargs)
        self._clients.append(client)
        return client

    def _index_of(self, node_id: str) -> int:
        for i, n in enumerate(self.nodes):
            if n.node_id == node_id:
                return i
        raise LookupError(f"node {node_id} is not one of this lab's nodes")

    # ---- the cluster ----------------------------------------------------------------------

    def topology(self) -> Topology:
        """Which node owns which slots, read from the cluster (``CLUSTER NODES``)."""
        self._check_running()
        nodes = self.nodes
        down = self._down()
        for i, node in enumerate(nodes):  # the first live node answers
            if i in down:
                continue
            try:
                with redis.Redis(
                    host=node.host, port=node.port, password=self.password,
                    decode_responses=True,
                    socket_timeout=5, socket_connect_timeout=2,
                ) as r:  # fmt: skip
                    text = r.execute_command("CLUSTER", "NODES")
            except redis.ConnectionError:
                continue  # it died a moment ago: ask the next one
            topo = parse_cluster_nodes(str(text), [n.node_id for n in nodes])
            down = self._down()
            if not down:
                return topo
            # The others may still list a dead node as a healthy master for a while
            # (cluster-node-timeout): say what this process knows, that it is down.
            return Topology(
                tuple(dataclasses.replace(n, down=n.index in down) for n in topo.nodes)
            )
        raise NodeDownError(
            "topology(): every node of this lab is down. Bring one back with "
            "lab.restart_node(0) (real backend), or start afresh: lab.stop(), then "
            "slotlab.start_lab()"
        )

    def reset(self) -> None:
        """Empty every node (FLUSHALL) and its script cache (SCRIPT FLUSH); the cluster stays."""
        self._check_running()
        topo = self.topology()
        for info in topo:
            if info.down and info.role == "master" and info.slots:
                raise NodeDownError(
                    _node_down_text(info.index, info.address, "lab.reset() cannot empty it")
                )
        for info in topo:
            if info.down:
                continue  # a replica, or a master whose slots a replica took over
            with redis.Redis(host=info.host, port=info.port, password=self.password) as r:
                if info.role == "master":
                    r.flushall()
                r.script_flush()

    # ---- slots on the move ----------------------------------------------------------------

    def _check_index(self, what: str, index: object) -> int:
        """``index`` as a node index of this lab, or a clear error."""
        self._index_arg(what, index)
        assert isinstance(index, int)
        if self.backend.is_down(index):
            raise ValueError(
                f"{what} {index} is down (its process is gone); pick a live node, or bring it "
                f"back with lab.restart_node({index})"
            )
        return index

    def _master_index(self, what: str, index: object, topo: Topology) -> int:
        i = self._check_index(what, index)
        info = topo.nodes[i]
        if info.role != "master":
            master = self._index_of(info.master_id or "")
            raise ValueError(
                f"{what} {i} is a replica (of node {master}); slots live on masters: "
                f"pick one of {', '.join(str(m.index) for m in topo.masters if not m.failed)}"
            )
        return i

    def slot_migration(
        self, slot: int, to_node: int, batch: int = MIGRATE_PIPELINE
    ) -> Iterator[MigrationStep]:
        """Move ``slot`` to master ``to_node`` one step at a time, as ``redis-cli --cluster
        reshard`` does; each ``next()`` does one step and returns it (see
        :mod:`slotlab.migration` for the steps).

        Between steps the lab is live: run commands and watch ``ASK`` and ``TRYAGAIN``. Finish
        what you start (iterate to the end): a slot left half-moved keeps answering ``ASK``.
        Arguments are checked at once, before any step.
        """
        self._check_running()
        if isinstance(slot, bool) or not isinstance(slot, int):
            raise TypeError(
                f"slot must be a whole number from 0 to {SLOT_COUNT - 1}, "
                f"not {type(slot).__name__} {slot!r}"
            )
        if not 0 <= slot < SLOT_COUNT:
            raise ValueError(f"slot {slot} is out of range: slots are 0 to {SLOT_COUNT - 1}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(
                f"batch (keys per MIGRATE) must be a whole number, 1 or more, not {batch!r}"
            )
        topo = self.topology()
        target = self._master_index("to_node", to_node, topo)
        source_info = topo.node_for_slot(slot)
        source = source_info.index
        if source == target:
            raise ValueError(f"slot {slot} is already served by node {target}: nothing to move")
        others = [
            m.index for m in topo.masters if not m.failed and m.index not in (source, target)
        ]
        return self._migration_steps(slot, source, target, others, batch, None)

    def _migration_steps(
        self,
        slot: int,
        source: int,
        target: int,
        others: list[int],
        batch: int,
        conns: dict[int, redis.Redis] | None,
    ) -> Iterator[MigrationStep]:
        nodes = self.nodes
        src_id, dst_id = nodes[source].node_id, nodes[target].node_id
        dst = nodes[target]
        own = conns is None
        clients: dict[int, redis.Redis] = {} if conns is None else conns

        def send(index: int, *args: str | int) -> Any:
            client = clients.get(index)
            if client is None:
                node = nodes[index]
                client = clients[index] = redis.Redis(
                    host=node.host, port=node.port, password=self.password
                )
            return client.execute_command(*args)

        try:
            yield from self._steps(
                slot, source, target, others, batch, send, src_id, dst_id, dst, self.password
            )
        finally:
            if own:
                for c in clients.values():
                    c.close()

    @staticmethod
    def _steps(
        slot: int,
        source: int,
        target: int,
        others: list[int],
        batch: int,
        send: Callable[..., Any],
        src_id: str,
        dst_id: str,
        dst: NodeAddress,
        password: str | None = None,
    ) -> Iterator[MigrationStep]:

        def step(action: str, index: int, *args: str | int) -> MigrationStep:
            send(index, *args)
            return MigrationStep(action, slot, index, tuple(str(a) for a in args))

        yield step("importing", target, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        yield step("migrating", source, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while True:
            keys = send(source, "CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            head = ("MIGRATE", dst.host, str(dst.port), "", "0", str(MIGRATE_TIMEOUT_MS))
            # The target asks for the lab's password too; the step shown leaves it out.
            auth = ("AUTH", password) if password is not None else ()
            send(source, *head, *auth, "KEYS", *keys)
            names = tuple(k.decode("utf-8", "backslashreplace") for k in keys)
            yield MigrationStep("migrate", slot, source, (*head, "KEYS", *names), names)
        # The target first, so that the slot always has an owner that knows it (redis/redis
        # #7116); the source may have become a replica by then (#9223): redis-cli accepts that.
        yield step("node", target, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        try:
            yield step("node", source, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        except redis.ResponseError as exc:
            if "Please use SETSLOT only with masters" not in str(exc):
                raise
        for index in others:
            yield step("node", index, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)

    def migrate_slot(
        self,
        slot: int,
        to_node: int,
        batch: int = MIGRATE_PIPELINE,
        pause: Callable[[MigrationStep], object] | None = None,
    ) -> Migration:
        """Move ``slot`` (and its keys) to master ``to_node``, as ``redis-cli --cluster reshard``
        does, ``batch`` keys per MIGRATE; ``pause(step)`` is called after every step.

        ``pause`` is where a lesson looks at the half-moved slot, or slows the move down while
        another thread writes. :meth:`slot_migration` gives the same steps one at a time.
        """
        if pause is not None and not callable(pause):
            raise TypeError(f"pause must be a function of one step, or None, not {pause!r}")
        done: list[MigrationStep] = []
        for step in self.slot_migration(slot, to_node, batch):
            done.append(step)
            if pause is not None:
                pause(step)
        source = next(s.node for s in done if s.action == "migrating")
        moved = sum(len(s.keys) for s in done)
        return Migration(slot, source, to_node, moved, tuple(done))

    def add_node(self) -> int:
        """Start one more node, an empty master that serves no slot yet; return its index.

        ``rebalance()`` then gives it its share of the slots.
        """
        self._check_running()
        self.backend.add_node()
        return len(self.nodes) - 1

    def rebalance(
        self, weights: dict[int, float] | None = None, threshold: float = 2.0
    ) -> list[tuple[int, int, int]]:
        """Share the slots among the live masters, empty ones included, in proportion to their
        ``weights`` (1 for a master not named), as ``redis-cli --cluster rebalance
        --cluster-use-empty-masters [--cluster-weight <node>=<w>]`` does
        (``clusterManagerCommandRebalance``): nothing moves while every master is within
        ``threshold`` percent of its share.

        A small weight for a new node makes a small reshard: ``rebalance({3: 0.05})`` gives
        node 3 about 5% of an even share. Returns ``(source, target, slots moved)`` for each pair
        of nodes, in the order moved; every slot moves with its keys, as in :meth:`migrate_slot`.
        """
        self._check_running()
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold < 0:
            raise ValueError(f"threshold must be a percentage, 0 or more, not {threshold!r}")
        topo = self.topology()
        masters = [m for m in topo.masters if not m.failed]
        if not masters:
            raise RuntimeError("no live master to rebalance")
        weight = {m.index: 1.0 for m in masters}
        for index, w in (weights or {}).items():
            i = self._master_index("a node in weights", index, topo)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                raise ValueError(f"the weight of node {i} must be a number, 0 or more, not {w!r}")
            weight[i] = float(w)
        total_weight = sum(weight.values())
        if total_weight <= 0:
            raise ValueError("at least one master needs a weight above 0")
        balance: dict[int, int] = {}
        over = False
        for m in masters:
            expected = int(SLOT_COUNT / total_weight * weight[m.index])
            balance[m.index] = m.slot_count - expected
            if m.slot_count:
                over |= abs(100 - 100.0 * expected / m.slot_count) > threshold
            elif expected > 1:
                over = True
        if not over:
            return []
        total = sum(balance.values())
        while total > 0:  # rounding: every slot given must be taken
            for m in masters:
                if balance[m.index] <= 0 and total > 0:
                    balance[m.index] -= 1
                    total -= 1
        order = sorted(balance, key=lambda i: balance[i])  # takers first, givers last
        slots_of = {m.index: [s for lo, hi in m.slots for s in range(lo, hi + 1)] for m in masters}
        moves: list[tuple[int, int, int]] = []
        conns: dict[int, redis.Redis] = {}
        try:
            self._rebalance_moves(order, balance, slots_of, masters, moves, conns)
        finally:
            for c in conns.values():
                c.close()
        return moves

    def _rebalance_moves(
        self,
        order: list[int],
        balance: dict[int, int],
        slots_of: dict[int, list[int]],
        masters: list[NodeInfo],
        moves: list[tuple[int, int, int]],
        conns: dict[int, redis.Redis],
    ) -> None:
        """Move slots from the last of ``order`` (givers) to the first (takers), as redis-cli."""
        dst_i, src_i = 0, len(order) - 1
        while dst_i < src_i:
            dst, src = order[dst_i], order[src_i]
            count = min(abs(balance[dst]), abs(balance[src]))
            if count > 0:
                others = [m.index for m in masters if m.index not in (src, dst)]
                for slot in slots_of[src][:count]:
                    for _step in self._migration_steps(
                        slot, src, dst, others, MIGRATE_PIPELINE, conns
                    ):
                        pass
                slots_of[src] = slots_of[src][count:]
                moves.append((src, dst, count))
            balance[dst] += count
            balance[src] -= count
            if balance[dst] == 0:
                dst_i += 1
            if balance[src] == 0:
                src_i -= 1

    # ---- failover (real backend) ------------------------------------------------------------

    def failover(self, master: int, timeout: float = 30.0) -> Recovery:
        """Fail master ``master`` over to its replica with ``CLUSTER FAILOVER`` (a planned,
        manual failover: the replica catches up first, so no acknowledged write is lost).

        Returns how long until every live node said ``cluster_state:ok`` and agreed the replica
        serves the slots. Needs replicas (``start_lab(replicas=1)``) and the real backend: the
        emulated one raises ``NotModelled``.
        """
        self._check_running()
        topo = self.topology()
        i = self._master_index("master", master, topo)
        replica = self._replica_of(topo, i)
        old = topo.nodes[i]
        start = time.monotonic()
        self.backend.failover(replica)
        return self._await_takeover("planned", i, replica, old.slots, start, timeout)

    def kill_node(self, index: int, timeout: float = 30.0) -> Recovery:
        """Kill master ``index`` at once (SIGKILL, an unplanned failure) and wait for its replica
        to be elected in its place.

        Returns how long until every live node said ``cluster_state:ok`` again with the replica
        serving the slots: the failure must first be noticed (``cluster-node-timeout``, 2 s in
        this lab), then the replicas elect one. Needs replicas and the real backend.
        """
        self._check_running()
        topo = self.topology()
        i = self._master_index("index", index, topo)
        replica = self._replica_of(topo, i)
        old = topo.nodes[i]
        start = time.monotonic()
        self.backend.kill_node(i)
        return self._await_takeover("unplanned", i, replica, old.slots, start, timeout)

    def _replica_of(self, topo: Topology, master: int) -> int:
        master_id = topo.nodes[master].node_id
        for n in topo.nodes:
            if n.master_id == master_id and not n.failed and not self.backend.is_down(n.index):
                return n.index
        if self.backend.name != "real":
            self.backend.failover(-1)  # raises NotModelled, naming the real backend
        raise ValueError(
            f"node {master} has no live replica to take over: start the lab with replicas, "
            "e.g. slotlab.start_lab(masters=3, replicas=1)"
        )

    def _await_takeover(
        self,
        kind: str,
        old: int,
        new: int,
        slots: tuple[tuple[int, int], ...],
        start: float,
        timeout: float,
    ) -> Recovery:
        nodes = self.nodes
        new_id = nodes[new].node_id
        probe = slots[0][0] if slots else None
        live = [n for i, n in enumerate(nodes) if not self.backend.is_down(i)]
        while True:
            ok = True
            for node in live:
                try:
                    with redis.Redis(
                        host=node.host, port=node.port, decode_responses=True,
                        password=self.password, socket_timeout=1, socket_connect_timeout=1,
                    ) as r:  # fmt: skip
                        info = str(r.execute_command("CLUSTER", "INFO"))
                        if "cluster_state:ok" not in info:
                            ok = False
                            break
                        if probe is not None:
                            view = parse_cluster_nodes(str(r.execute_command("CLUSTER", "NODES")))
                            if view.node_for_slot(probe).node_id != new_id:
                                ok = False
                                break
                except (redis.RedisError, LookupError):
                    ok = False
                    break
            if ok:
                return Recovery(kind, old, new, slots, time.monotonic() - start)
            if time.monotonic() - start > timeout:
                raise TimeoutError(
                    f"the cluster was not ok with node {new} serving node {old}'s slots within "
                    f"{timeout:.0f} s"
                )
            time.sleep(0.01)

    def restart_node(self, index: int) -> NodeInfo:
        """Start node ``index`` again after it died (``kill_node``, or ``kill -9`` from a
        shell), and wait until every node knows it again; returns how the cluster sees it.

        On the real backend the node comes back with its node ID and its slots (unless a
        replica took them over meanwhile; then it rejoins as that replica's replica), but empty
        of keys: this lab keeps nothing on disk. The emulated backend's nodes cannot die.
        """
        self._check_running()
        i = self._index_arg("index", index)
        if not self.backend.is_down(i):
            if self.backend.name != "real":
                self.backend.restart_node(i)  # raises NotModelled, naming the real backend
            raise ValueError(
                f"node {i} is running: restart_node brings back a node that is down "
                "(lab.topology() shows which are)"
            )
        self.backend.restart_node(i)
        return self.topology().nodes[i]

    # ---- connecting from outside ----------------------------------------------------------

    def connection_info(self, show: bool = True) -> dict[str, Any]:
        """How to reach this lab from a terminal: host, node ports, password, and a redis-cli
        command. Printed unless ``show=False``; returned as a dict either way.

        The password is put in ``REDISCLI_AUTH``, not after ``-a``: a command line is visible to
        every user of the machine (``ps``), an environment variable is not.
        """
        self._check_running()
        nodes = self.nodes
        first = nodes[0]
        auth = f"REDISCLI_AUTH='{self.password}' " if self.password is not None else ""
        info: dict[str, Any] = {
            "host": first.host,
            "ports": [n.port for n in nodes],
            "password": self.password,
            "redis_cli": f"{auth}redis-cli -c -h {first.host} -p {first.port}",
        }
        if show:
            print(f"host:      {info['host']} (loopback only)")
            print(f"ports:     {', '.join(map(str, info['ports']))}")
            print(f"password:  {self.password if self.password is not None else '(none)'}")
            print(f"redis-cli: {info['redis_cli']}")
        return info

    def stop(self) -> None:
        """Stop the cluster and close every client this lab handed out. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._stopped_by.setdefault("by", "lab.stop()")
        self._finalizer()

    @staticmethod
    def _finalize(
        backend: Backend,
        clients: list[redis.Redis | RedisCluster],
        stopped_by: dict[str, str],
        number: int,
    ) -> None:
        if "by" not in stopped_by:
            # Nothing refers to the lab any more: most often a start cell ran again and
            # rebound `lab`. Say so, since the old clients stop working now.
            stopped_by["by"] = (
                "slotlab when nothing referred to it any more (a start cell ran again?)"
            )
            print(f"slotlab: stopping lab {number} ({backend.describe()}): nothing refers "
                  "to it any more")
        message = (
            f"the lab this client belonged to (lab {number}) was stopped by "
            f"{stopped_by['by']}; take a new client from a running lab "
            "(slotlab.start_lab() starts one)"
        )
        for c in clients:
            with contextlib.suppress(Exception):  # closing must not stop the shutdown
                c.close()
            _refuse_commands(c, message)
        clients.clear()
        backend.stop()

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Random:
    """The default of ``start_lab(password=...)``: a new random password for each lab."""

    def __repr__(self) -> str:
        return "<a random password>"


RANDOM_PASSWORD: Final = _Random()


def _refuse_commands(client: Any, message: str) -> None:
    """Make every later command of ``client`` raise LabStoppedError(message) instead of
    redis-py's connection error about a server that is no longer there."""

    def refuse(*args: Any, **options: Any) -> Any:
        raise LabStoppedError(message)

    client.execute_command = refuse
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        pool.get_connection = refuse


def check_start_args(masters: object, replicas: object, backend: object) -> str:
    """The backend choice ("auto", "real" or "emulated") for ``start_lab``'s arguments, or a
    clear error naming the bad one and the fix."""
    if backend is not None and not isinstance(backend, str):
        raise TypeError(
            f"backend must be a name, one of {', '.join(map(repr, BACKENDS))}, "
            f"not {type(backend).__name__} {backend!r}"
        )
    choice = (backend or os.environ.get("SLOTLAB_BACKEND") or "auto").strip().lower()
    if choice not in BACKENDS:
        raise ValueError(
            f"unknown backend {choice!r}: choose one of {', '.join(BACKENDS)} "
            "(argument backend= or $SLOTLAB_BACKEND)"
        )
    for name, value, low in (("masters", masters, 1), ("replicas", replicas, 0)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(
                f"{name} must be a whole number (an int), not {type(value).__name__} {value!r}"
            )
        if value < low:
            raise ValueError(f"{name} must be {low} or more, not {value}")
    assert isinstance(masters, int) and isinstance(replicas, int)
    if masters > MAX_MASTERS:
        raise ValueError(
            f"masters={masters} is more than a lab allows ({MAX_MASTERS}): every node is a "
            "server that gossips with every other node, so the load grows with the square of "
            f"the node count and {masters} masters would swamp a laptop. The lessons use 3."
        )
    if replicas > MAX_REPLICAS:
        raise ValueError(
            f"replicas={replicas} per master is more than a lab allows ({MAX_REPLICAS}): each "
            "replica is one more server per master, and one is enough to show a failover."
        )
    if masters * (1 + replicas) > MAX_NODES:
        raise ValueError(
            f"masters={masters} with replicas={replicas} makes {masters * (1 + replicas)} "
            f"nodes, more than a lab allows ({MAX_NODES}): the load grows with the square of "
            "the node count. Use fewer masters or replicas."
        )
    return choice


_P = ParamSpec("_P")


def _advise_when_it_cannot_start(start: Callable[_P, Lab]) -> Callable[_P, Lab]:
    """A lab that cannot start (no server, a node that will not come up, no free port) shows,
    in a notebook, the doctor's advice instead of a traceback (slotlab.doctor.attach_advice);
    the error itself, and its type, stay as they were for code that catches it."""

    @functools.wraps(start)
    def starting(*args: _P.args, **kwargs: _P.kwargs) -> Lab:
        try:
            return start(*args, **kwargs)
        except Exception as error:
            from slotlab.backends.real import LabStartError, RedisServerNotFound

            if isinstance(error, (RedisServerNotFound, LabStartError, OSError, ImportError)):
                from slotlab.doctor import attach_advice

                attach_advice(error)
            raise

    return starting


@_advise_when_it_cannot_start
def start_lab(
    masters: int = 3,
    replicas: int = 0,
    backend: str | None = None,
    password: str | None | _Random = RANDOM_PASSWORD,
    name: str | None = None,
) -> Lab:
    """Start a Redis Cluster for this notebook and return its Lab.

    Private by default: every node (and the standalone server, and the proxy) asks for a random
    password, so another user of the machine cannot read or stop the lab; the clients the Lab
    hands out carry it, and ``lab.connection_info()`` shows it. ``password="..."`` sets it;
    ``password=None`` starts a lab without one (anyone on this machine can then use it).

    ``backend`` is ``"real"`` (redis-server processes), ``"emulated"`` (fakeredis stores behind
    loopback listeners, no server needed), or ``"auto"`` (the default, also read from
    ``$SLOTLAB_BACKEND``): real when a redis-server 7.0+ is found, else emulated. It prints one
    line saying which backend started.

    When ``slotlab lab up`` started a lab of this shape, ``start_lab()`` attaches to it instead
    (in about a hundredth of the time), emptied and in its original slot layout, and says so;
    ``name=`` (or ``$SLOTLAB_LAB``) picks a named lab, ``SLOTLAB_ATTACH=0`` never attaches. A
    lab serves one kernel at a time: when another kernel holds it, this one starts a private
    lab. See ``slotlab.lab_daemon``.
    """
    choice = check_start_args(masters, replicas, backend)
    from slotlab.lab_daemon import attach

    attached, shared_note = attach(name, masters, replicas, choice, password)
    if attached is not None:
        return attached
    if isinstance(password, _Random):
        password = secrets.token_urlsafe(16)
    elif password is not None and (not isinstance(password, str) or not password):
        raise ValueError(
            f"password must be a non-empty string, or None for a lab without one, not {password!r}"
        )
    from slotlab.backends.real import RealBackend, RedisServerNotFound, find_redis_server

    if choice == "auto":
        try:
            server = find_redis_server()
        except RedisServerNotFound:
            if os.environ.get("SLOTLAB_REDIS_SERVER"):
                raise  # asked for a server by name: falling back would hide the mistake
            choice = "emulated"
            note = " (no redis-server 7.0+ was found)"
        else:
            choice, note = "real", ""
    else:
        server, note = None, ""
    lab: Lab
    # Whatever interrupts the start (Ctrl-C, a node that fails to come up), the nodes started
    # so far stop: owning_starts() stops every backend constructed inside it if it fails.
    with owning_starts():
        if choice == "emulated":
            from slotlab.backends.emulated import EmulatedBackend

            lab = Lab(EmulatedBackend(masters=masters, replicas=replicas, password=password))
        else:
            real = RealBackend(masters=masters, replicas=replicas, server=server, password=password)
            lab = Lab(real)
    # One line, so a learner always knows which backend answers (the sanitizer folds it, so
    # stored outputs are the same on every backend).
    print(f"slotlab: {lab.backend.describe()}{note}{shared_note}")
    return lab
