"""A proxy that only routes: every command to the master of its FIRST key, as go-redis's
ClusterClient routes (a random master for keyless commands).

It follows MOVED and ASK; every other error of the node reaches the client unchanged, CROSSSLOT
included. A transaction is pinned to the node of its first key (or of the WATCHed key), so a key
on another node gets ``MOVED`` and EXEC ``EXECABORT``, as FACTS.md section 2 shows. Compare it
with ``alibaba`` to see what a cloud proxy adds. It has no texts of its own.
"""

from __future__ import annotations

import random

from slotlab.proxy.rules import (
    OK,
    QUEUED,
    Answer,
    Decision,
    Forward,
    Rules,
    SessionState,
    SlotMap,
    key_positions,
)
from slotlab.slots import key_slot


class Passthrough(Rules):
    """Route by the first key; the node's errors reach the client."""

    name = "passthrough"

    def __init__(self) -> None:
        super().__init__()
        self.handlers.update({b"multi": self.multi, b"exec": self.exec_, b"discard": self.discard,
                              b"watch": self.watch, b"unwatch": self.unwatch})  # fmt: skip

    def decide(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        name = argv[0].lower()
        if state.in_multi and name not in self.tx_control:
            return self.in_multi(argv, state)
        if name in self.handlers:
            return self.handle(name, argv, state, slots)
        positions = key_positions(argv)
        return Forward(key_slot(argv[positions[0]]) if positions else None)

    # A transaction is pinned to one node: the WATCHed one, else the first key's.
    def multi(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        if state.pinned:
            state.tx_live = True
            return Forward(None, pinned=True)
        state.tx = []
        return Answer(OK)

    def in_multi(self, argv: list[bytes], state: SessionState) -> Decision:
        if state.tx_live:
            return Forward(None, pinned=True)
        assert state.tx is not None
        positions = key_positions(argv)
        if not positions:
            state.tx.append(argv)
            return Answer(QUEUED)
        return self._pin(state, key_slot(argv[positions[0]]))

    def _pin(self, state: SessionState, slot: int | None) -> Decision:
        """Open the transaction on the node of ``slot``: MULTI and what was queued before."""
        prelude = ([b"MULTI"], *(state.tx or []))
        state.tx = None
        state.pinned = state.tx_live = True
        return Forward(slot, pin=True, prelude=prelude)

    def exec_(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        if not state.tx_live:
            return self._end(state, self._pin(state, random.randrange(16384)))
        return self._end(state, Forward(None, pinned=True))

    @staticmethod
    def _end(state: SessionState, decision: Decision) -> Decision:
        state.tx = None
        state.tx_live = state.pinned = False
        return decision

    def discard(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        if state.tx_live:
            return self._end(state, Forward(None, pinned=True))
        return self._end(state, Answer(OK))

    def watch(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        if state.pinned:
            return Forward(None, pinned=True)
        state.pinned = True
        return Forward(key_slot(argv[1]), pin=True)

    def unwatch(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        if state.pinned:
            state.pinned = False
            return Forward(None, pinned=True)
        return Answer(OK)
