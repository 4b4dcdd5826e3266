"""Alibaba Cloud's proxy mode (ApsaraDB for Redis / Tair, cluster instance), rule by rule.

Sources (FACTS.md section 3): Alibaba Cloud, "Limits on commands supported by cluster and
read/write splitting instances" (help.aliyun.com/document_detail/145968), its Lua limits for
cluster instances (Aliyun developer article 645851), and the wire texts users report (OpenIM
issues #2333 and #2894). The real proxy is closed source: this is a model of the published rules.

1. **Routing.** Keys in one slot: the request goes whole to the slot's master ("proxy mode uses a
   middle layer to hide the details of the cluster architecture").
2. **Fan-out.** DEL, UNLINK, EXISTS, TOUCH, MGET and MSET across slots are split per slot and the
   replies merged in key order ("proxy nodes support cross-slot multi-key operations for
   commands such as DEL, EXISTS"; the command table marks MGET, MSET, UNLINK, TOUCH). Other
   multi-key commands across slots get ``ERR '<CMD>' command keys must in same slot`` (the
   vendor's wire format for EVAL, applied to other commands by inference).
3. **Lua scripts** (EVAL, EVALSHA and their ``_RO`` forms), checked in this order (inferred from
   #2333, slot error, and #2894, script error): a. at least one key (``ERR for redis cluster,
   eval/evalsha number of keys can't be negative or zero``); b. all KEYS in one slot (``ERR
   'EVAL' command keys must in same slot``; the docs print ``ERR eval/evalsha command keys must
   be in same slot``); c. unless ``script_check_enable`` is off, the static check of
   :func:`slotlab.proxy.check_script` (``ERR bad lua script for redis cluster, all the keys
   that the script uses should be passed using the KEYS array, and KEYS should not be in
   expression``). Bodies seen (EVAL, SCRIPT LOAD) are kept so EVALSHA is checked too, and
   resent as EVAL when a node answers NOSCRIPT (slotlab's choice).
4. **Transactions.** MULTI ... EXEC keeps transaction semantics only within one slot: the proxy
   queues the commands and at EXEC runs one MULTI/EXEC per slot ("limits on transactions").
   A command whose own keys span slots cannot be queued (EXEC then answers EXECABORT). WATCH
   needs its keys in one slot and the transaction must stay in it (an older version of the
   page; the error text is ours).
5. **What the proxy answers itself.** CLUSTER KEYSLOT; the connection commands; FLUSHALL and
   FLUSHDB go to every master, DBSIZE sums, KEYS concatenates, SCAN walks the masters in turn,
   RANDOMKEY asks every master. Pub/Sub, MONITOR, replication and cluster management are not
   supported (our text).
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Sequence
from typing import Final

from slotlab import commands, errors
from slotlab.proxy.rules import (
    OK,
    QUEUED,
    Answer,
    Decision,
    FanOut,
    Forward,
    Rules,
    SessionState,
    SlotMap,
    Transaction,
    err,
    key_positions,
    shown,
    slot_of,
)
from slotlab.proxy.script_check import check_script
from slotlab.resp import bulk, error_reply, split_array
from slotlab.slots import key_slot

_FAN_OUT: Final = frozenset({b"del", b"unlink", b"exists", b"touch", b"mget", b"mset"})
SCRIPTS: Final = frozenset({b"eval", b"evalsha", b"eval_ro", b"evalsha_ro"})
_EVERY_MASTER: Final = frozenset({b"flushall", b"flushdb", b"dbsize", b"keys", b"randomkey"})
#: Commands with a handler that may still be queued in MULTI (sent with the transaction).
_QUEUEABLE: Final = _FAN_OUT | {b"ping", b"echo", b"unwatch"}


def _cross_slot(argv: Sequence[bytes]) -> Answer:
    return err(errors.ALIBABA_CROSS_SLOT.format(cmd=shown(argv[0]).upper()))


def _is_error(raw: bytes) -> bool:
    return raw[:1] in (b"-", b"!")


def _sum(replies: list[bytes]) -> bytes:
    """The sum of integer replies, as one integer reply."""
    return b":%d\r\n" % sum(int(raw[1:-2]) for raw in replies)


def _first_error_or_first(replies: list[bytes]) -> bytes:
    return next((raw for raw in replies if _is_error(raw)), replies[0])


@functools.lru_cache(maxsize=10000)
def _rejected(body: bytes) -> bool:
    """True when the static script check rejects ``body`` (the verdict is kept)."""
    return bool(check_script(body))


def _by_slot(keys: Sequence[bytes]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(key_slot(k), []).append(i)
    return groups


class Alibaba(Rules):
    """Alibaba Cloud's proxy mode (see the module docstring for each rule and its source)."""

    name = "alibaba"
    not_supported = Rules.not_supported | {
        b"asking", b"readonly", b"readwrite", b"wait", b"waitaof", b"migrate", b"replicaof",
        b"slaveof", b"shutdown", b"failover", b"swapdb", b"move", b"debug", b"pubsub",
        b"publish", b"spublish",
    }  # fmt: skip

    def __init__(self, script_check_enable: bool = True) -> None:
        super().__init__()
        self.script_check_enable = script_check_enable
        self.scripts: dict[str, bytes] = {}  # SHA1 -> body of every script seen
        h = self.handlers
        h.update(dict.fromkeys(_FAN_OUT, self.fan_out))
        h.update(dict.fromkeys(SCRIPTS, self.script_call))
        h.update(dict.fromkeys(_EVERY_MASTER, self.every_master))
        h.update({b"cluster": self.cluster, b"script": self.script, b"multi": self.multi,
                  b"exec": self.exec_, b"discard": self.discard, b"watch": self.watch,
                  b"unwatch": self.unwatch, b"scan": self.scan})  # fmt: skip

    def decide(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        name = argv[0].lower()
        if state.in_multi and name not in self.tx_control:
            return self.queue(argv, state)
        if name in self.handlers:
            return self.handle(name, argv, state, slots)
        return self.route(argv)

    # -- rule 1: single-slot commands go to the owner --
    def route(self, argv: list[bytes]) -> Decision:
        positions = key_positions(argv)
        if not positions:
            return Forward(None)
        slot = slot_of(argv, positions)
        return _cross_slot(argv) if slot is None else Forward(slot)

    # -- rule 2: fan-out --
    def fan_out(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        """DEL, UNLINK, EXISTS, TOUCH, MGET, MSET across slots: one request per slot, the
        replies merged (a sum; the values in key order for MGET; OK for MSET)."""
        name, null = argv[0].lower(), state.null
        step = 2 if name == b"mset" else 1
        if step == 2 and len(argv) % 2 == 0:  # a key without a value
            return err(commands.arity_error("mset"))
        items = [argv[i : i + step] for i in range(1, len(argv), step)]
        groups = _by_slot([item[0] for item in items])
        if len(groups) <= 1:
            return self.route(argv)
        order = list(groups.values())
        parts = tuple(
            (slots.node_for(slot), [argv[0], *(a for i in idx for a in items[i])])
            for slot, idx in groups.items()
        )
        expected = {b"mget": b"*", b"mset": b"+"}.get(name, b":")

        def merge(replies: list[bytes]) -> bytes:
            for raw in replies:
                if raw[:1] != expected:
                    return raw  # the first error
            if name == b"mset":
                return replies[0]
            if name != b"mget":
                return _sum(replies)
            values: list[bytes] = [null] * len(items)
            for idx, raw in zip(order, replies, strict=True):
                for i, value in zip(idx, split_array(raw) or [], strict=False):
                    values[i] = value
            return b"*%d\r\n" % len(items) + b"".join(values)

        return FanOut(parts, merge, "fanouts")

    # -- rule 3: Lua scripts --
    def remember(self, body: bytes) -> None:
        if len(self.scripts) > 10000:
            self.scripts.clear()
        self.scripts[hashlib.sha1(body).hexdigest()] = body

    def script_error(self, argv: list[bytes]) -> tuple[Answer | None, int, bytes | None]:
        """Check an EVAL-family command: (an error or None, its slot, the script body)."""
        name = argv[0].lower()
        if len(argv) < 3:
            return err(commands.arity_error(shown(name))), 0, None
        numkeys = commands.string2ll(argv[2])
        if numkeys is None:
            return err(errors.NOT_INTEGER), 0, None
        if numkeys <= 0:
            return err(errors.ALIBABA_NO_KEYS), 0, None
        if numkeys > len(argv) - 3:
            return err(errors.NUMKEYS_TOO_MANY), 0, None
        slot = slot_of(argv, range(3, 3 + numkeys))
        if slot is None:
            return _cross_slot(argv), 0, None
        body: bytes | None
        if name in (b"eval", b"eval_ro"):
            body = argv[1]
            self.remember(body)
        else:
            body = self.scripts.get(argv[1].decode("ascii", "replace").lower())
        if self.script_check_enable and body is not None and _rejected(body):
            rejected = Answer(error_reply(errors.ALIBABA_BAD_SCRIPT), counts_as="scripts_rejected")
            return rejected, slot, body
        return None, slot, body

    def script_call(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        error, slot, body = self.script_error(argv)
        if error is not None:
            return error
        evalsha = argv[0].lower().startswith(b"evalsha")
        return Forward(slot, script=body if evalsha else None)

    def script(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        sub = argv[1].lower() if len(argv) > 1 else b""
        masters = slots.masters
        everywhere = tuple((m, argv) for m in masters)
        if sub == b"load":
            self.remember(argv[2])
            return FanOut(everywhere, _first_error_or_first)
        if sub == b"flush":
            self.scripts.clear()
            return FanOut(everywhere, _first_error_or_first)
        if sub == b"exists":
            shas = [a.decode("ascii", "replace").lower() for a in argv[2:]]
            known = self.scripts

            def exists(replies: list[bytes]) -> bytes:  # known here, or on every master
                if any(_is_error(raw) for raw in replies):
                    return _first_error_or_first(replies)
                nodes = [split_array(raw) or [] for raw in replies]
                found = [
                    sha in known or all(n[i] == b":1\r\n" for n in nodes)
                    for i, sha in enumerate(shas)
                ]
                return b"*%d\r\n" % len(found) + b"".join(b":%d\r\n" % f for f in found)

            return FanOut(everywhere, exists)
        if sub == b"kill":
            return FanOut(everywhere, lambda replies: OK if OK in replies else replies[0])
        return self.unsupported(argv, state, slots)

    # -- rule 4: transactions --
    def multi(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        state.tx = []
        state.tx_error = False
        return Answer(OK)

    def queue_error(self, argv: list[bytes]) -> Answer | None:
        """Why this command cannot be queued in a transaction, or None."""
        name = argv[0].lower()
        if name in SCRIPTS:
            return self.script_error(argv)[0]
        spec, problem = commands.check_command(argv)
        if problem is not None:
            return err(problem)
        if name in self.handlers and name not in _QUEUEABLE:
            what = shown(argv[0]).upper() + " inside MULTI"
            return err(errors.PROXY_UNSUPPORTED.format(cmd=what))
        positions = key_positions(argv)
        if positions and slot_of(argv, positions) is None:
            return _cross_slot(argv)
        return None

    def queue(self, argv: list[bytes], state: SessionState) -> Decision:
        problem = self.queue_error(argv)
        if problem is not None:
            state.tx_error = True
            return problem
        assert state.tx is not None
        state.tx.append(argv)
        return Answer(QUEUED)

    def discard(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        state.tx = None
        return self._end_watch(state, OK)

    def _end_watch(self, state: SessionState, reply: bytes) -> Answer:
        pinned = state.pinned
        state.pinned = False
        state.watch_slot = None
        return Answer(reply, unpin=pinned)

    def watch(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        slot = slot_of(argv, range(1, len(argv)))
        if slot is None:
            return err(errors.ALIBABA_CROSS_SLOT.format(cmd="WATCH"))
        if state.watch_slot is not None and slot != state.watch_slot:
            return err(errors.PROXY_WATCH_SLOT)
        pinned = state.pinned
        state.watch_slot = slot
        state.pinned = True
        return Forward(slot, pinned=pinned, pin=not pinned)

    def unwatch(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        if state.in_multi:  # UNWATCH inside MULTI is queued by a server; it changes nothing
            return self.queue(argv, state)
        return self._end_watch(state, OK)

    def exec_(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        queued, failed, watch_slot = state.tx or [], state.tx_error, state.watch_slot
        state.tx = None
        state.tx_error = False
        if failed:
            return self._end_watch(state, error_reply(errors.EXECABORT))
        # Split by slot, keeping the first-seen order; keyless commands join the first part.
        groups: dict[int | None, list[int]] = {}
        keyless: list[int] = []
        for i, cmd in enumerate(queued):
            positions = key_positions(cmd)
            if positions:
                groups.setdefault(key_slot(cmd[positions[0]]), []).append(i)
            else:
                keyless.append(i)
        if watch_slot is not None and any(slot != watch_slot for slot in groups):
            return self._end_watch(state, error_reply(errors.PROXY_WATCH_SLOT))
        watched = state.pinned
        state.pinned = False  # EXEC ends a WATCH, whatever happens
        state.watch_slot = None
        if not groups:
            groups[watch_slot] = []
        first = next(iter(groups))
        groups[first] = sorted(groups[first] + keyless)
        parts = tuple(
            (slot, tuple(idx), tuple(queued[i] for i in idx)) for slot, idx in groups.items()
        )
        return Transaction(parts, len(queued), watched)

    # -- rule 5: what the proxy answers itself, and commands for every master --
    def cluster(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        sub = argv[1].lower() if len(argv) > 1 else b""
        if sub == b"keyslot":
            return Answer(b":%d\r\n" % key_slot(argv[2]))
        return self.unsupported(argv, state, slots)

    def every_master(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        """FLUSHALL, FLUSHDB, DBSIZE, KEYS, RANDOMKEY: ask every master, merge the replies."""
        null, name = state.null, argv[0].lower()

        def merge(replies: list[bytes]) -> bytes:
            if name in (b"flushall", b"flushdb") or any(_is_error(raw) for raw in replies):
                return _first_error_or_first(replies)
            if name == b"dbsize":
                return _sum(replies)
            if name == b"keys":
                items = [item for raw in replies for item in split_array(raw) or []]
                return b"*%d\r\n" % len(items) + b"".join(items)
            found = [raw for raw in replies if raw not in (b"$-1\r\n", b"_\r\n")]  # RANDOMKEY
            return random.choice(found) if found else null

        return FanOut(tuple((m, argv) for m in slots.masters), merge)

    def scan(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        """SCAN walks the masters in turn; the cursor is ``node_cursor * masters + node``."""
        masters = list(slots.masters)
        cursor = commands.string2ll(argv[1]) if argv[1] != b"-0" else None
        if cursor is None or cursor < 0:
            return err(errors.INVALID_CURSOR)
        count = len(masters)
        node, node_cursor = cursor % count, cursor // count

        def reply(replies: list[bytes]) -> bytes:
            raw = replies[0]
            parts = split_array(raw)
            if not parts or len(parts) != 2:
                return raw
            nxt = int(parts[0][parts[0].index(b"\n") + 1 : -2])
            # next cursor: more on this node, else the next node from its start, else done
            proxy_next = nxt * count + node if nxt else (node + 1) % count
            return b"*2\r\n" + bulk(b"%d" % proxy_next) + parts[1]

        request = [argv[0], b"%d" % node_cursor, *argv[2:]]
        return FanOut(((masters[node], request),), reply)
