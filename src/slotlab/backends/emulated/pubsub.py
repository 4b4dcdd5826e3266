"""PUBLISH and SPUBLISH: messages cross nodes as the cluster bus would carry them."""

from __future__ import annotations

from typing import Any

from slotlab.backends.emulated.client import _Client
from slotlab.backends.emulated.helpers import _from_fake
from slotlab.backends.emulated.registry import _handles
from slotlab.commands import CommandSpec


@_handles("publish")
def _publish(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    """PUBLISH reaches subscribers on every node (the cluster bus carries it); the reply counts
    this node's receivers only."""
    local = _from_fake(c.fake(argv))
    for node in c.node.cluster.nodes:
        if node is not c.node:
            c.backend.internal(node).fake(argv)
    return local


@_handles("spublish")
def _spublish(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    """SPUBLISH reaches the shard's nodes: the master that serves the slot and its replicas."""
    local = _from_fake(c.fake(argv))
    master = c.node.master or c.node
    for node in [master, *master.replicas]:
        if node is not c.node:
            c.backend.internal(node).fake(argv)
    return local
