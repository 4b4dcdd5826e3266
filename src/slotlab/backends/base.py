"""What every backend provides to a Lab: node addresses it started, and a way to stop them."""

from __future__ import annotations

import abc
import contextlib
import signal
import threading
from collections.abc import Iterator
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


_local = threading.local()


@contextlib.contextmanager
def owning_starts() -> Iterator[list[Backend]]:
    """Stop every backend constructed inside the block if the block does not complete.

    ``start_lab`` starts a backend and then wraps it in a Lab; an interrupt landing between the
    two (after the backend's ``__init__`` returned, before anyone holds it) would leak its
    nodes. Each backend calls :func:`note_started` first thing, so the block knows it.
    """
    outer = getattr(_local, "started", None)
    started: list[Backend] = []
    _local.started = started
    try:
        yield started
    except BaseException:
        for backend in started:
            with contextlib.suppress(Exception):
                backend.stop()
        raise
    finally:
        _local.started = outer


def note_started(backend: Backend) -> None:
    """Record ``backend`` with the innermost :func:`owning_starts` block, if any."""
    started = getattr(_local, "started", None)
    if started is not None:
        started.append(backend)


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) for a few lines that must not be cut in two, such as starting a
    process and recording its PID; the interrupt is raised right after them.

    Only the main thread receives signals in Python; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt


class NotModelled(NotImplementedError):
    """The emulated backend cannot show this faithfully; the real backend can.

    The message names what is missing and how to start a real lab.
    """


def not_modelled(what: str, why: str) -> NotModelled:
    """The error for a part of Redis Cluster the emulator does not model (docs/emulated.md)."""
    return NotModelled(
        f"{what} needs the real backend: the emulated backend {why}. Start a lab on real "
        "redis-server processes with slotlab.start_lab(..., backend='real') (or "
        "SLOTLAB_BACKEND=real); docs/emulated.md lists what the emulator cannot model."
    )


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

    # ---- changing the cluster while it runs -----------------------------------------------

    def add_node(self) -> NodeAddress:
        """Start one more node, an empty master, and have the cluster know it (CLUSTER MEET)."""
        raise NotImplementedError(f"the {self.name} backend cannot add a node")

    def failover(self, replica: int) -> None:
        """Send ``CLUSTER FAILOVER`` to node ``replica`` (a replica), as an operator does."""
        raise not_modelled(
            "a failover",
            "has no cluster bus, so no failure reports, no replica election and no gossip: any "
            "failover time it printed would be made up",
        )

    def kill_node(self, index: int) -> None:
        """Kill node ``index`` at once (SIGKILL), as a crash would: no goodbye to the cluster."""
        raise not_modelled(
            "killing a node",
            "has no cluster bus, so no node can notice another one is gone and no replica can "
            "be elected in its place",
        )

    def is_down(self, index: int) -> bool:
        """True for a node that is not running (killed by ``kill_node`` or from outside)."""
        return False

    def restart_node(self, index: int) -> NodeAddress:
        """Start node ``index`` again after it died, with its node ID and slots."""
        raise not_modelled(
            "restarting a node",
            "runs every node in this process, so no node can die on its own",
        )
