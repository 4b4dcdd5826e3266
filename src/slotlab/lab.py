"""The Lab: one running cluster per notebook, and the clients to talk to it.

``start_lab()`` picks a backend and forms a cluster; the Lab hands out a cluster client (what a
cluster-aware application uses), plain clients to single nodes (what go-redis does when it routes
a command by its first key), and shows which node owns which slots.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from slotlab.backends.base import Backend, NodeAddress
from slotlab.slots import SLOT_COUNT, key_slot

BACKENDS = ("auto", "real", "emulated")


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
            rows.append((str(n.index), n.role, n.address, what))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
            for r in rows
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython display
        p.text(str(self))


def parse_cluster_nodes(text: str, order: list[str] | None = None) -> Topology:
    """Read ``CLUSTER NODES`` output into a Topology, numbering nodes in ``order`` of IDs."""
    entries: list[tuple[str, str, int, str, str | None, tuple[tuple[int, int], ...]]] = []
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
        entries.append((node_id, host, int(port), role, master_id, tuple(sorted(slots))))
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

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._clients: list[redis.Redis | RedisCluster] = []
        self._stopped = False
        self._finalizer = weakref.finalize(self, Lab._finalize, backend, self._clients)
        atexit.register(self._finalizer)

    # ---- what is running ------------------------------------------------------------------

    @property
    def backend_name(self) -> str:
        """Which backend runs the cluster: ``real`` or ``emulated``."""
        return self.backend.name

    @property
    def nodes(self) -> list[NodeAddress]:
        """Every node's address, masters first, in the order ``node_client(i)`` numbers them."""
        return self.backend.nodes

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else f"{len(self.nodes)} nodes"
        return f"<Lab {self.backend.describe()} ({state})>"

    def _check_running(self) -> None:
        if self._stopped:
            raise RuntimeError("this lab was stopped; start a new one with slotlab.start_lab()")

    # ---- clients --------------------------------------------------------------------------

    def cluster_client(self, **kwargs: Any) -> RedisCluster:
        """A ``redis.cluster.RedisCluster``: follows the slot map, as a cluster-aware app does.

        Replies are decoded to ``str`` unless you pass ``decode_responses=False``.
        """
        self._check_running()
        kwargs.setdefault("decode_responses", True)
        startup = [ClusterNode(n.host, n.port) for n in self.nodes]
        rc = RedisCluster(startup_nodes=startup, **kwargs)
        self._clients.append(rc)
        return rc

    def node_client(self, index: int, **kwargs: Any) -> redis.Redis:
        """A plain ``redis.Redis`` to node ``index``: no routing, so you meet MOVED yourself."""
        self._check_running()
        nodes = self.nodes
        if not isinstance(index, int) or not 0 <= index < len(nodes):
            raise IndexError(
                f"node index {index!r} is out of range: this lab has nodes 0 to {len(nodes) - 1}"
            )
        kwargs.setdefault("decode_responses", True)
        node = nodes[index]
        client = redis.Redis(host=node.host, port=node.port, **kwargs)
        self._clients.append(client)
        return client

    def standalone_client(self, **kwargs: Any) -> redis.Redis:
        """A plain client to a new single Redis server, not a cluster, of this lab's backend.

        Many applications start on one server and move to a cluster later; compare the two.
        The server stops with the lab.
        """
        self._check_running()
        host, port = self.backend.start_standalone()
        kwargs.setdefault("decode_responses", True)
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

        proxy = Proxy(self.nodes, personality, script_check_enable=script_check_enable).start()
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
        first = self.nodes[0]
        with redis.Redis(host=first.host, port=first.port, decode_responses=True) as r:
            text = r.execute_command("CLUSTER", "NODES")
        return parse_cluster_nodes(str(text), [n.node_id for n in self.nodes])

    def reset(self) -> None:
        """Empty every node (FLUSHALL) and its script cache (SCRIPT FLUSH); the cluster stays."""
        self._check_running()
        topo = self.topology()
        for info in topo:
            with redis.Redis(host=info.host, port=info.port) as r:
                if info.role == "master":
                    r.flushall()
                r.script_flush()

    def stop(self) -> None:
        """Stop the cluster and close every client this lab handed out. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._finalizer()

    @staticmethod
    def _finalize(backend: Backend, clients: list[redis.Redis | RedisCluster]) -> None:
        for c in clients:
            with contextlib.suppress(Exception):  # closing must not stop the shutdown
                c.close()
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


def start_lab(masters: int = 3, replicas: int = 0, backend: str | None = None) -> Lab:
    """Start a Redis Cluster for this notebook and return its Lab.

    ``backend`` is ``"real"`` (redis-server processes), ``"emulated"`` (fakeredis stores behind
    loopback listeners, no server needed), or ``"auto"`` (the default, also read from
    ``$SLOTLAB_BACKEND``): real when a redis-server 7.0+ is found, else emulated. It prints one
    line saying which backend started.
    """
    choice = (backend or os.environ.get("SLOTLAB_BACKEND") or "auto").strip().lower()
    if choice not in BACKENDS:
        raise ValueError(
            f"unknown backend {choice!r}: choose one of {', '.join(BACKENDS)} "
            "(argument backend= or $SLOTLAB_BACKEND)"
        )
    if not isinstance(masters, int) or masters < 1 or masters > SLOT_COUNT:
        raise ValueError(f"masters must be a whole number from 1 to {SLOT_COUNT}, not {masters!r}")
    if not isinstance(replicas, int) or replicas < 0:
        raise ValueError(f"replicas (per master) must be 0 or more, not {replicas!r}")
    from slotlab.backends.real import RealBackend, RedisServerNotFound, find_redis_server

    if choice == "auto":
        try:
            server = find_redis_server()
        except RedisServerNotFound:
            choice = "emulated"
            note = " (no redis-server 7.0+ was found)"
        else:
            choice, note = "real", ""
    else:
        server, note = None, ""
    lab: Lab
    if choice == "emulated":
        from slotlab.backends.emulated import EmulatedBackend

        lab = Lab(EmulatedBackend(masters=masters, replicas=replicas))
    else:
        lab = Lab(RealBackend(masters=masters, replicas=replicas, server=server))
    # One line, so a learner always knows which backend answers (the sanitizer folds it, so
    # stored outputs are the same on every backend).
    print(f"slotlab: {lab.backend.describe()}{note}")
    return lab
