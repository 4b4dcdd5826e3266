"""The cluster's state: its nodes (each a fakeredis store) and who serves each slot."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING

from slotlab.backends.emulated.compat import Store
from slotlab.backends.emulated.helpers import _VERSION_TUPLE, HOST, SLOTS, key_slot

if TYPE_CHECKING:
    from slotlab.backends.emulated.client import _Client
    from slotlab.backends.emulated.scripting import _LuaBridge, _Script


class _Node:
    """One cluster node: a fakeredis store, its slot states, its script cache, its listener."""

    def __init__(self, cluster: _Cluster, index: int, master: _Node | None = None) -> None:
        self.cluster = cluster
        self.index = index
        self.node_id = secrets.token_hex(20)
        self.port = 0
        self.master = master
        self.replicas: list[_Node] = []
        self.config_epoch = 0
        # A replica is always in sync: it reads its master's data (and shares its lock).
        self.store: Store = Store(_VERSION_TUPLE, master.store if master is not None else None)
        if master is not None:
            master.replicas.append(self)
        self.migrating: dict[int, _Node] = {}
        self.importing: dict[int, _Node] = {}
        self.scripts: dict[bytes, _Script] = {}
        self.lua: _LuaBridge | None = None
        self.listener: asyncio.AbstractServer | None = None
        self.clients: set[_Client] = set()
        self.started = time.time()
        self.stat_commands = 0

    @property
    def is_replica(self) -> bool:
        """True for a replica node (it redirects keyed commands to its master)."""
        return self.master is not None

    @property
    def address(self) -> str:
        """``host:port`` as MOVED replies write it."""
        return f"{HOST}:{self.port}"

    @property
    def cport(self) -> int:
        """The cluster bus port shown in CLUSTER NODES (the emulator has no bus; port+10000)."""
        return self.port + 10000 if self.port + 10000 <= 65535 else self.port - 10000

    def owned_slots(self) -> list[tuple[int, int]]:
        """The slot ranges this node serves, merged."""
        ranges: list[tuple[int, int]] = []
        start = -1
        owners = self.cluster.slots
        for slot in range(SLOTS + 1):
            mine = slot < SLOTS and owners[slot] is self
            if mine and start == -1:
                start = slot
            elif not mine and start != -1:
                ranges.append((start, slot - 1))
                start = -1
        return ranges

    def key_exists(self, key: bytes) -> bool:
        """True when db 0 holds a live key, without touching it (``LOOKUP_NOTOUCH``)."""
        return self.store.key_exists(key, time.time())

    def keys_in_slot(self, slot: int) -> list[bytes]:
        """The live keys of db 0 in ``slot``, newest first as the server lists them."""
        found = [k for k, _ in self.store.live_items(time.time()) if key_slot(k) == slot]
        found.reverse()
        return found

    def repl_offset(self) -> int:
        """A replication offset that grows with writes (0 for a master without replicas)."""
        shard = self.master or self
        return 14 + shard.stat_commands if shard.replicas else 0


class _Cluster:
    """What every node agrees on: the nodes, who owns each slot, the epoch."""

    def __init__(self) -> None:
        self.nodes: list[_Node] = []
        self.slots: list[_Node | None] = [None] * SLOTS
        self.assigned = 0
        self.current_epoch = 0

    def assign(self, slot: int, node: _Node | None) -> None:
        """Give ``slot`` to ``node`` (None: unassign it), as every node will see it."""
        self.assigned += (node is not None) - (self.slots[slot] is not None)
        self.slots[slot] = node

    @property
    def ok(self) -> bool:
        """``cluster_state:ok``: every slot is served (cluster-require-full-coverage yes)."""
        return self.assigned == SLOTS

    def lookup(self, node_id: bytes) -> _Node | None:
        """``clusterLookupNode``: an exact 40-character node ID, else None."""
        if len(node_id) != 40:
            return None
        text = node_id.decode("ascii", "replace")
        return next((n for n in self.nodes if n.node_id == text), None)

    def masters(self) -> list[_Node]:
        return [n for n in self.nodes if not n.is_replica]
