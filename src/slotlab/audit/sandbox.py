"""Throwaway emulated clusters the auditor runs commands on: to see which keys a script really
touches, and what a native cluster answers.

Nothing here decides a rule: the emulated nodes do (``slotlab.backends.emulated``: the same
``node_checks`` and script checks every emulated lab uses). The auditor only asks them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from slotlab import commands
from slotlab.commands import CommandSpec
from slotlab.resp import ErrorReply

if TYPE_CHECKING:  # the emulator (fakeredis) loads only when a script or a verdict needs it
    from slotlab.backends.emulated.backend import EmulatedBackend
    from slotlab.backends.emulated.cluster import _Node

__all__ = ["Sandbox", "ScriptRun"]


@cache
def _recorder_class() -> type[Any]:
    from slotlab.backends.emulated.client import _InternalClient

    class _Recorder(_InternalClient):
        """A client that writes down every key a running script's ``redis.call`` names.

        Discovery only: it lets a script go on past its first cross-slot key
        (``allow_cross_slot``), so that every key it touches is seen; verdicts come from
        :meth:`Sandbox.native`, which does not."""

        touched: list[bytes]

        def node_by_query(
            self, spec: CommandSpec, argv: Sequence[bytes]
        ) -> tuple[_Node | None, int, str | None]:
            if self.run is not None:
                self.touched.extend(
                    argv[p] for p in commands.cluster_keys(spec, argv) if p < len(argv)
                )
                self.run.allow_cross_slot = True
            return super().node_by_query(spec, argv)

    return _Recorder


class ScriptRun:
    """What running a script once showed: the keys it touched, its reply or error."""

    def __init__(self, touched: list[bytes], reply: Any) -> None:
        self.touched = touched
        self.error = reply.args[0] if isinstance(reply, ErrorReply) and reply.args else (
            str(reply) if isinstance(reply, ErrorReply) else None)  # fmt: skip


class Sandbox:
    """Two emulated clusters, started on first use: one master (every slot local, to discover
    a script's keys) and ``masters`` masters laid out as the audited cluster (for verdicts)."""

    def __init__(self, owners: Callable[[int], int] | None = None, masters: int = 3) -> None:
        self.masters = masters
        self.owners = owners
        self._one: EmulatedBackend | None = None
        self._many: EmulatedBackend | None = None
        self._lock = threading.Lock()

    def _backend(self, many: bool) -> EmulatedBackend:
        from slotlab.backends.emulated.backend import EmulatedBackend

        if many:
            if self._many is None:
                self._many = EmulatedBackend(masters=self.masters)
                if self.owners is not None:
                    nodes = self._many.cluster.masters()
                    for slot in range(16384):
                        self._many.cluster.assign(slot, nodes[self.owners(slot) % len(nodes)])
            return self._many
        if self._one is None:
            self._one = EmulatedBackend(masters=1)
        return self._one

    def run_script(self, argv: list[bytes]) -> ScriptRun:
        """Run an EVAL (EVALSHA given as EVAL) on an empty one-master cluster; its keys."""
        with self._lock:
            backend = self._backend(False)
            node = backend.cluster.masters()[0]
            client = _recorder_class()(backend, node)
            try:
                client.process([b"FLUSHALL"])
                client.process([b"SCRIPT", b"FLUSH"])
                client.touched = []
                reply = client.process(list(argv))
                return ScriptRun(client.touched, reply)
            finally:
                client.close()

    def native(self, block: Sequence[list[bytes]], first_key: bytes | None) -> Any:
        """What the node that owns ``first_key`` (any master if None) answers to ``block``: one
        command, or MULTI, commands, EXEC (the EXEC's reply). Data starts empty."""
        from slotlab.backends.emulated.client import _InternalClient

        with self._lock:
            backend = self._backend(True)
            cluster = backend.cluster
            if first_key is not None:
                from slotlab.slots import key_slot

                node = cluster.slots[key_slot(first_key)] or cluster.masters()[0]
            else:
                node = cluster.masters()[0]
            client = _InternalClient(backend, node)
            try:
                for n in cluster.masters():
                    _InternalClient(backend, n).process([b"FLUSHALL"])
                reply: Any = None
                for argv in block:
                    spec = commands.lookup(argv)
                    if spec is not None and "blocking" in spec.flags and len(block) == 1:
                        target, slot, error = client.node_by_query(spec, argv)
                        return ErrorReply(error) if error is not None else b"(would block)"
                    reply = client.process(list(argv))
                return reply
            finally:
                client.close()

    def node_address(self, slot: int) -> str:
        backend = self._backend(True)
        node = backend.cluster.slots[slot]
        return node.address if node is not None else "?"

    def close(self) -> None:
        for backend in (self._one, self._many):
            if backend is not None:
                backend.stop()
        self._one = self._many = None
