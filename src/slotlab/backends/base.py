"""What every backend provides to a Lab: node addresses it started, and a way to stop them."""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True)
class NodeAddress:
    """Where one cluster node listens, and what the backend knows about it."""

    host: str
    port: int
    node_id: str
    pid: int | None = None

    @property
    def address(self) -> str:
        """``host:port``, as Redis writes it in MOVED replies and CLUSTER NODES."""
        return f"{self.host}:{self.port}"


def split_slots(masters: int, slot_count: int = 16384) -> list[tuple[int, int]]:
    """Divide the slots among masters the way ``redis-cli --cluster create`` does.

    >>> split_slots(3)
    [(0, 5460), (5461, 10922), (10923, 16383)]
    """
    if masters < 1:
        raise ValueError(f"a cluster needs at least one master, not {masters}")
    per_node = slot_count / masters
    ranges: list[tuple[int, int]] = []
    first = 0
    cursor = 0.0
    for i in range(masters):
        last = int(cursor + per_node - 1 + 0.5)  # C's lround for positive values
        if last > slot_count or i == masters - 1:
            last = slot_count - 1
        last = max(last, first)
        ranges.append((first, last))
        first = last + 1
        cursor += per_node
    return ranges


class Backend(abc.ABC):
    """A source of cluster nodes. Masters come first in ``nodes``, then replicas."""

    name: str = "backend"

    @property
    @abc.abstractmethod
    def nodes(self) -> list[NodeAddress]:
        """Every node of the cluster, masters first."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every node this backend started. Safe to call twice."""

    def start_standalone(self) -> tuple[str, int]:
        """Start one plain, non-cluster server of this backend's kind; return (host, port).

        It stops with the backend. For comparing a cluster with the single server an
        application may have started on.
        """
        raise NotImplementedError(f"the {self.name} backend cannot start a standalone server")

    def alive(self) -> bool:
        """True while every node this backend started is still running."""
        return True

    def describe(self) -> str:
        """One line for the learner: which backend, and what it runs."""
        return self.name
