"""The CLUSTER command: topology replies, slot assignment, SETSLOT for migrations."""

from __future__ import annotations

import time
from typing import Any

from slotlab import commands, errors
from slotlab.backends.emulated.client import _Client
from slotlab.backends.emulated.cluster import _Cluster, _Node
from slotlab.backends.emulated.helpers import HOST, SLOTS, _ll, _text, key_slot
from slotlab.backends.emulated.registry import _handles
from slotlab.commands import CommandSpec
from slotlab.resp import (
    OK,
    ErrorReply,
    SimpleString,
    Verbatim,
)

_CLUSTER_HELP = [
    "ADDSLOTS <slot> [<slot> ...]",
    "    Assign slots to current node.",
    "ADDSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
    "    Assign slots which are between <start-slot> and <end-slot> to current node.",
    "BUMPEPOCH",
    "    Advance the cluster config epoch.",
    "COUNT-FAILURE-REPORTS <node-id>",
    "    Return number of failure reports for <node-id>.",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "DELSLOTS <slot> [<slot> ...]",
    "    Delete slots information from current node.",
    "DELSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
    "    Delete slots information which are between <start-slot> and <end-slot> from current node.",
    "FAILOVER [FORCE|TAKEOVER]",
    "    Promote current replica node to being a master.",
    "FORGET <node-id>",
    "    Remove a node from the cluster.",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "FLUSHSLOTS",
    "    Delete current node own slots information.",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MEET <ip> <port> [<bus-port>]",
    "    Connect nodes into a working cluster.",
    "MYID",
    "    Return the node id.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "REPLICATE <node-id>",
    "    Configure current node as replica to <node-id>.",
    "RESET [HARD|SOFT]",
    "    Reset current node (default: soft).",
    "SET-CONFIG-EPOCH <epoch>",
    "    Set config epoch of current node.",
    "SETSLOT <slot> (IMPORTING <node-id>|MIGRATING <node-id>|STABLE|NODE <node-id>)",
    "    Set slot state.",
    "REPLICAS <node-id>",
    "    Return <node-id> replicas.",
    "SAVECONFIG",
    "    Force saving cluster configuration on disk.",
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "LINKS",
    "    Return information about all network links between this node and its peers.",
    "    Output format is an array where each array element is a map containing attributes of "
    "a link",
]


def _help(argv: list[bytes], lines: list[str]) -> list[SimpleString]:
    head = f"{_text(argv[0]).upper()} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    return [SimpleString(x) for x in (head, *lines, "HELP", "    Prints this help.")]


@_handles("cluster|help")
def _cluster_help(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return _help(argv, _CLUSTER_HELP)


@_handles("cluster|myid")
def _cluster_myid(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return c.node.node_id.encode()


@_handles("cluster|keyslot")
def _cluster_keyslot(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return key_slot(argv[2])


@_handles("cluster|countkeysinslot")
def _cluster_countkeysinslot(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    slot = _ll(argv[2])
    if slot is None:
        return ErrorReply(errors.NOT_INTEGER)
    if slot < 0 or slot >= SLOTS:
        return ErrorReply(errors.INVALID_SLOT)
    with c.node.store.lock:
        return len(c.node.keys_in_slot(slot))


@_handles("cluster|getkeysinslot")
def _cluster_getkeysinslot(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    slot, count = _ll(argv[2]), None
    if slot is None:
        return ErrorReply(errors.NOT_INTEGER)
    count = _ll(argv[3])
    if count is None:
        return ErrorReply(errors.NOT_INTEGER)
    if slot < 0 or slot >= SLOTS or count < 0:
        return ErrorReply(errors.INVALID_SLOT_OR_KEYS)
    with c.node.store.lock:
        return c.node.keys_in_slot(slot)[:count]


def _node_line(node: _Node, myself: _Node) -> str:
    """One line of CLUSTER NODES (``clusterGenNodeDescription``)."""
    flags = ("myself," if node is myself else "") + ("slave" if node.is_replica else "master")
    master = node.master.node_id if node.master is not None else "-"
    epoch = node.master.config_epoch if node.master is not None else node.config_epoch
    pong = int(time.time()) * 1000 if node is myself else int(time.time() * 1000)
    line = f"{node.node_id} {node.address}@{node.cport} {flags} {master} 0 {pong} {epoch} connected"
    for lo, hi in node.owned_slots():
        line += f" {lo}" if lo == hi else f" {lo}-{hi}"
    if node is myself:
        for slot in range(SLOTS):
            if slot in node.migrating:
                line += f" [{slot}->-{node.migrating[slot].node_id}]"
            elif slot in node.importing:
                line += f" [{slot}-<-{node.importing[slot].node_id}]"
    return line


@_handles("cluster|nodes")
def _cluster_nodes(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    text = "".join(_node_line(n, c.node) + "\n" for n in c.node.cluster.nodes)
    return Verbatim(text)


def _slot_ranges(cluster: _Cluster) -> list[tuple[int, int, _Node]]:
    ranges: list[tuple[int, int, _Node]] = []
    start = 0
    owner = cluster.slots[0]
    for slot in range(1, SLOTS + 1):
        here = cluster.slots[slot] if slot < SLOTS else None
        if slot == SLOTS or here is not owner:
            if owner is not None:
                ranges.append((start, slot - 1, owner))
            start, owner = slot, here
    return ranges


def _node_entry(node: _Node) -> list[Any]:
    return [HOST.encode(), node.port, node.node_id.encode(), {}]


@_handles("cluster|slots")
def _cluster_slots(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    out = []
    for lo, hi, owner in _slot_ranges(c.node.cluster):
        entry: list[Any] = [lo, hi, _node_entry(owner)]
        entry += [_node_entry(r) for r in owner.replicas if r.repl_offset() != 0]
        out.append(entry)
    return out


def _shard_node(node: _Node) -> dict[bytes, Any]:
    offset = node.repl_offset()
    return {
        b"id": node.node_id.encode(),
        b"port": node.port,
        b"ip": HOST.encode(),
        b"endpoint": HOST.encode(),
        b"role": b"replica" if node.is_replica else b"master",
        b"replication-offset": offset,
        b"health": b"loading" if node.is_replica and offset == 0 else b"online",
    }


@_handles("cluster|shards")
def _cluster_shards(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    out = []
    for master in c.node.cluster.masters():
        slots: list[int] = []
        for lo, hi in master.owned_slots():
            slots += [lo, hi]
        out.append(
            {
                b"slots": slots,
                b"nodes": [_shard_node(master)] + [_shard_node(r) for r in master.replicas],
            }
        )
    return out


@_handles("cluster|info")
def _cluster_info(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    cluster = c.node.cluster
    assigned = cluster.assigned
    node = c.node
    my_epoch = node.master.config_epoch if node.master is not None else node.config_epoch
    size = sum(1 for m in cluster.masters() if m.owned_slots())
    known = len(cluster.nodes)
    pings = max(1, int(time.time() - node.started)) * (known - 1)
    lines = [
        f"cluster_state:{'ok' if assigned == SLOTS else 'fail'}",
        f"cluster_slots_assigned:{assigned}",
        f"cluster_slots_ok:{assigned}",
        "cluster_slots_pfail:0",
        "cluster_slots_fail:0",
        f"cluster_known_nodes:{known}",
        f"cluster_size:{size}",
        f"cluster_current_epoch:{cluster.current_epoch}",
        f"cluster_my_epoch:{my_epoch}",
    ]
    if known > 1:
        lines += [
            f"cluster_stats_messages_ping_sent:{pings}",
            f"cluster_stats_messages_pong_sent:{pings}",
            f"cluster_stats_messages_sent:{2 * pings}",
            f"cluster_stats_messages_ping_received:{pings}",
            f"cluster_stats_messages_pong_received:{pings}",
            f"cluster_stats_messages_received:{2 * pings}",
        ]
    else:
        lines += ["cluster_stats_messages_sent:0", "cluster_stats_messages_received:0"]
    lines.append("total_cluster_links_buffer_limit_exceeded:0")
    return Verbatim("".join(line + "\r\n" for line in lines))


def _lookup_node(c: _Client, node_id: bytes, unknown: str) -> _Node | ErrorReply:
    node = c.node.cluster.lookup(node_id)
    return node if node is not None else ErrorReply(unknown.format(node=_text(node_id)))


@_handles("cluster|replicas", "cluster|slaves")
def _cluster_replicas(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    node = _lookup_node(c, argv[2], errors.NO_SUCH_NODE)
    if isinstance(node, ErrorReply):
        return node
    if node.is_replica:
        return ErrorReply(errors.NOT_A_MASTER)
    return [_node_line(r, c.node) for r in node.replicas]


@_handles("cluster|count-failure-reports")
def _cluster_cfr(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    node = _lookup_node(c, argv[2], errors.NO_SUCH_NODE)
    return node if isinstance(node, ErrorReply) else 0


@_handles("cluster|saveconfig")
def _cluster_saveconfig(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return OK


@_handles("cluster|links")
def _cluster_links(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    links = []
    for other in c.node.cluster.nodes:
        if other is c.node:
            continue
        for direction in (b"to", b"from"):
            links.append(
                {
                    b"direction": direction,
                    b"node": other.node_id.encode(),
                    b"create-time": int(c.node.started * 1000),
                    b"events": b"r",
                    b"send-buffer-allocated": 0,
                    b"send-buffer-used": 0,
                }
            )
    return links


def _bump_epoch(node: _Node) -> bool:
    """``clusterBumpConfigEpochWithoutConsensus``."""
    cluster = node.cluster
    max_epoch = max([cluster.current_epoch] + [n.config_epoch for n in cluster.nodes])
    if node.config_epoch == 0 or node.config_epoch != max_epoch:
        cluster.current_epoch += 1
        node.config_epoch = cluster.current_epoch
        return True
    return False


@_handles("cluster|bumpepoch")
def _cluster_bumpepoch(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    bumped = _bump_epoch(c.node)
    return SimpleString(f"{'BUMPED' if bumped else 'STILL'} {c.node.config_epoch}")


def _slot_arg(data: bytes) -> int | None:
    slot = _ll(data)
    return slot if slot is not None and 0 <= slot < SLOTS else None


@_handles("cluster|setslot")
def _cluster_setslot(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    node = c.node
    cluster = node.cluster
    if node.is_replica:
        return ErrorReply(errors.SETSLOT_ON_REPLICA)
    slot = _slot_arg(argv[2])
    if slot is None:
        return ErrorReply(errors.SLOT_OUT_OF_RANGE)
    action = argv[3].lower()
    if action == b"migrating" and len(argv) == 5:
        if cluster.slots[slot] is not node:
            return ErrorReply(errors.NOT_SLOT_OWNER.format(slot=slot))
        target = _lookup_node(c, argv[4], errors.UNKNOWN_NODE)
        if isinstance(target, ErrorReply):
            return target
        if target.is_replica:
            return ErrorReply(errors.TARGET_NOT_MASTER)
        node.migrating[slot] = target
    elif action == b"importing" and len(argv) == 5:
        if cluster.slots[slot] is node:
            return ErrorReply(errors.ALREADY_SLOT_OWNER.format(slot=slot))
        source = _lookup_node(c, argv[4], errors.UNKNOWN_NODE)
        if isinstance(source, ErrorReply):
            return source
        if source.is_replica:
            return ErrorReply(errors.TARGET_NOT_MASTER)
        node.importing[slot] = source
    elif action == b"stable" and len(argv) == 4:
        node.importing.pop(slot, None)
        node.migrating.pop(slot, None)
    elif action == b"node" and len(argv) == 5:
        target = _lookup_node(c, argv[4], errors.NO_SUCH_NODE)
        if isinstance(target, ErrorReply):
            return target
        if target.is_replica:
            return ErrorReply(errors.TARGET_NOT_MASTER)
        with node.store.lock:
            keys_here = len(node.keys_in_slot(slot))
        if cluster.slots[slot] is node and target is not node and keys_here:
            return ErrorReply(errors.SLOT_STILL_HAS_KEYS.format(slot=slot))
        if keys_here == 0 and slot in node.migrating:
            del node.migrating[slot]
        # Every emulated node sees the new owner at once: there is no gossip to wait for.
        cluster.assign(slot, target)
        if target is node and slot in node.importing:
            _bump_epoch(node)
            del node.importing[slot]
    else:
        return ErrorReply(errors.SETSLOT_SYNTAX)
    return OK


def _parse_slots(argv: list[bytes], ranges: bool) -> list[int] | ErrorReply:
    slots: list[int] = []
    if ranges:
        for j in range(2, len(argv), 2):
            lo, hi = _slot_arg(argv[j]), _slot_arg(argv[j + 1])
            if lo is None or hi is None:
                return ErrorReply(errors.SLOT_OUT_OF_RANGE)
            if lo > hi:
                return ErrorReply(errors.SLOT_RANGE_ORDER.format(lo=lo, hi=hi))
            slots += range(lo, hi + 1)
    else:
        for a in argv[2:]:
            s = _slot_arg(a)
            if s is None:
                return ErrorReply(errors.SLOT_OUT_OF_RANGE)
            slots.append(s)
    return slots


@_handles("cluster|addslots", "cluster|addslotsrange", "cluster|delslots", "cluster|delslotsrange")
def _cluster_addslots(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    ranges = spec.name.endswith("range")
    delete = "|del" in spec.name
    if ranges and len(argv) % 2 == 1:
        return ErrorReply(commands.arity_error(spec.name))
    slots = _parse_slots(argv, ranges)
    if isinstance(slots, ErrorReply):
        return slots
    cluster = c.node.cluster
    seen: set[int] = set()
    for s in slots:
        if delete and cluster.slots[s] is None:
            return ErrorReply(errors.SLOT_UNASSIGNED.format(slot=s))
        if not delete and cluster.slots[s] is not None:
            return ErrorReply(errors.SLOT_BUSY.format(slot=s))
        if s in seen:
            return ErrorReply(errors.SLOT_TWICE.format(slot=s))
        seen.add(s)
    for s in slots:
        cluster.assign(s, None if delete else c.node)
        if not delete:
            c.node.importing.pop(s, None)
    return OK


@_handles("cluster|flushslots")
def _cluster_flushslots(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if c.node.store.stored_count():
        return ErrorReply(errors.FLUSHSLOTS_NOT_EMPTY)
    cluster = c.node.cluster
    for s in range(SLOTS):
        if cluster.slots[s] is c.node:
            cluster.assign(s, None)
    return OK


@_handles(
    "cluster|meet", "cluster|forget", "cluster|replicate", "cluster|failover",
    "cluster|set-config-epoch", "cluster|reset",
)  # fmt: skip
def _cluster_unsupported(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return ErrorReply(errors.EMULATOR_FIXED_TOPOLOGY.format(sub=_text(argv[1]).upper()))
