"""``EmulatedBackend``: the emulated cluster's nodes, served by one asyncio loop thread."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from typing import Any

from slotlab.backends.base import Backend, NodeAddress, note_started, split_slots
from slotlab.backends.emulated.client import _Client, _InternalClient
from slotlab.backends.emulated.cluster import _Cluster, _Node
from slotlab.backends.emulated.compat import FAKEREDIS_VERSION, start_standalone
from slotlab.backends.emulated.helpers import HOST, REDIS_VERSION, EmulatorStartError


class EmulatedBackend(Backend):
    """A Redis Cluster emulated in this process: fakeredis stores behind loopback listeners.

    ``masters`` nodes share the 16384 slots the way ``redis-cli --cluster create`` splits them;
    each has ``replicas`` replicas that always hold the same data. One background thread serves
    every node; ``stop()`` closes the listeners and ends the thread. With a ``password`` every
    node asks for it as a server with ``requirepass`` does (``NOAUTH`` until ``AUTH``).
    """

    name = "emulated"
    #: At most this many clients wait in blocking commands at once, each in a thread of its own
    #: (the server has no such limit; the threads are this emulator's cost of blocking).
    max_blocked_clients = 128

    def __init__(self, masters: int = 3, replicas: int = 0, password: str | None = None) -> None:
        if masters < 1:
            raise ValueError(f"masters must be at least 1, not {masters}")
        if replicas < 0:
            raise ValueError(f"replicas (per master) must be 0 or more, not {replicas}")
        self.masters = masters
        self.replicas = replicas
        #: Every node and the standalone server ask for it (AUTH), as ``requirepass`` does.
        self.password = password
        self.cluster = _Cluster()
        self._ids = itertools.count(1)
        self._stopped = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.pending: set[asyncio.Future[Any]] = set()
        #: Clients whose blocking command waits in a worker thread now (loop thread only).
        self.blocked_clients = 0
        self._internal: dict[str, _InternalClient] = {}
        self._standalone: list[Any] = []  # plain fakeredis servers (start_standalone)
        self._ready = threading.Event()
        self._stop_event = asyncio.Event()  # set on the loop's thread by stop()
        note_started(self)
        self._build()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def internal(self, node: _Node) -> _InternalClient:
        """A connection-less client on ``node``, for one node acting on another."""
        client = self._internal.get(node.node_id)
        if client is None:
            client = self._internal[node.node_id] = _InternalClient(self, node)
        return client

    def _build(self) -> None:
        cluster = self.cluster
        masters = [_Node(cluster, i) for i in range(self.masters)]
        for i, (lo, hi) in enumerate(split_slots(self.masters)):
            node = masters[i]
            node.config_epoch = i + 1
            for s in range(lo, hi + 1):
                cluster.assign(s, node)
        cluster.current_epoch = self.masters
        cluster.nodes = list(masters)
        index = self.masters
        for k in range(self.masters * self.replicas):
            cluster.nodes.append(_Node(cluster, index, master=masters[k % self.masters]))
            index += 1

    def _start(self) -> None:
        ready = self._ready
        failure: list[str] = []

        def serve() -> None:
            try:
                loop = asyncio.new_event_loop()
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(str(exc) or type(exc).__name__)  # no traceback kept alive
                ready.set()
                return
            self.loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(str(exc) or type(exc).__name__)
                del exc
                with contextlib.suppress(BaseException):  # the listeners opened before it
                    loop.run_until_complete(self._close_all())
                loop.close()
                ready.set()
                return
            ready.set()
            try:
                # stop() may have come first (an interrupt while the listeners opened): then
                # the loop must not wait; else it serves until stop() sets _stop_event.
                if not self._stopped:
                    loop.run_until_complete(self._stop_event.wait())
            finally:
                loop.run_until_complete(self._close_all())
                loop.close()

        self._thread = threading.Thread(target=serve, name="slotlab-emulated-cluster", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise EmulatorStartError("the emulated cluster did not start within 30 s")
        if failure:
            raise EmulatorStartError(f"the emulated cluster could not start: {failure[0]}")

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        for node in self.cluster.nodes:
            server = await loop.create_server(
                lambda node=node: _Client(self, node),  # type: ignore[misc]
                host=HOST,
                port=0,
            )
            node.listener = server
            node.port = int(server.sockets[0].getsockname()[1])

    async def _close_all(self) -> None:
        for node in self.cluster.nodes:
            if node.listener is not None:
                node.listener.close()
        for node in self.cluster.nodes:
            self._wake_blocked(node)
            for client in list(node.clients):
                if client.transport is not None:
                    client.transport.abort()
        if self.pending:
            await asyncio.wait(list(self.pending), timeout=10)
        for node in self.cluster.nodes:
            if node.listener is not None:
                await node.listener.wait_closed()
        await asyncio.sleep(0)

    @staticmethod
    def _wake_blocked(node: _Node) -> None:
        """Time out every client blocked in a worker thread on this node (at stop)."""
        for client in list(node.clients):
            client.unblock()

    # ---- the Backend interface ------------------------------------------------------------

    @property
    def nodes(self) -> list[NodeAddress]:
        return [NodeAddress(HOST, n.port, n.node_id, None) for n in self.cluster.nodes]

    def alive(self) -> bool:
        return not self._stopped and self._thread is not None and self._thread.is_alive()

    def describe(self) -> str:
        return (
            f"emulated: fakeredis {FAKEREDIS_VERSION} as Redis {REDIS_VERSION} cluster, "
            f"{self.masters} masters, {self.replicas} replica(s) per master, on loopback"
        )

    def add_node(self) -> NodeAddress:
        """A new empty master on its own listener. Every emulated node shares one view of the
        cluster, so it is known to all at once: no CLUSTER MEET, no gossip to wait for."""
        loop = self.loop
        if self._stopped or loop is None:
            raise RuntimeError("this backend was stopped")
        node = _Node(self.cluster, len(self.cluster.nodes))

        async def listen() -> None:
            server = await asyncio.get_running_loop().create_server(
                lambda: _Client(self, node), host=HOST, port=0
            )
            node.listener = server
            node.port = int(server.sockets[0].getsockname()[1])
            self.cluster.nodes.append(node)  # on the loop's thread, between two commands

        asyncio.run_coroutine_threadsafe(listen(), loop).result(timeout=10)
        self.masters += 1
        return NodeAddress(HOST, node.port, node.node_id, None)

    def start_standalone(self) -> tuple[str, int]:
        """A plain fakeredis server (no cluster) on a loopback port; it stops with the lab."""
        if self._stopped:
            raise RuntimeError("this backend was stopped")
        server, port = start_standalone(HOST, self.password)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._standalone.append(server)
        return HOST, port

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for server in self._standalone:
            server.shutdown()
            server.server_close()
        thread = self._thread
        if thread is not None and thread.is_alive():
            # The loop thread may still be opening listeners: wait until it has (or failed), so
            # that it sees _stopped and closes them, or runs the loop we now stop.
            self._ready.wait(30)
            loop = self.loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed already
                    loop.call_soon_threadsafe(self._stop_event.set)
            thread.join(timeout=10)
