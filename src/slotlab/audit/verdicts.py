"""The verdict of each setting on one hazard's example, asked of the code that decides it.

- native cluster: a throwaway emulated cluster runs the example on the node that owns its first
  key (``slotlab.backends.emulated``: ``node_checks``, SORT's refusal of BY patterns and GET,
  and the script checks every lab uses);
- redis-py RedisCluster: what redis-py's ``RedisCluster`` does, read from its source
  (``redis/cluster.py`` and ``redis/commands/cluster.py``, redis-py 5 to 8): ``determine_slot``
  refuses a command whose keys span slots before sending it, except DEL, UNLINK, EXISTS and
  TOUCH, which ``_split_command_across_slots`` sends as one command per slot (not atomic);
  MGET and MSET have ``mget_nonatomic``/``mset_nonatomic`` for that; a transaction pipeline
  whose keys span slots raises ``CrossSlotTransactionError``;
- go-redis ClusterClient: go-redis routes a command by its FIRST key (``cmdSlot`` in
  cluster.go, as its documentation says), so the node of that key answers; a MULTI block is a
  ``TxPipeline``, which older go-redis releases split by slot (``mapCmdsBySlot``) and newer v9
  releases refuse (``ErrCrossSlot``), both read from go-redis's cluster.go;
- the proxies: ``slotlab.proxy.rules.decide`` with the personality, the one copy of our
  model's rules (real proxies are closed source).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from slotlab import commands
from slotlab.audit import texts
from slotlab.audit.report import Verdict
from slotlab.audit.sandbox import Sandbox
from slotlab.proxy.rules import (
    Answer,
    FanOut,
    Forward,
    SessionState,
    SlotMap,
    Transaction,
    decide,
    rules_for,
)
from slotlab.resp import ErrorReply
from slotlab.slots import key_slot

__all__ = ["Judge"]

#: redis-py's RedisCluster sends these as one command per slot (``_split_command_across_slots``).
REDIS_PY_SPLITS = frozenset({b"del", b"unlink", b"exists", b"touch"})


def _first_line(raw: bytes) -> str:
    return raw.split(b"\r\n", 1)[0][1:].decode("utf-8", "replace")


def _outcome_of(reply: Any) -> tuple[str, bool]:
    if isinstance(reply, ErrorReply):
        text = str(reply.args[0]) if reply.args else str(reply)
        return text, False
    if isinstance(reply, list) and any(isinstance(r, ErrorReply) for r in reply):
        bad = next(r for r in reply if isinstance(r, ErrorReply))
        return texts.EXEC_PART_FAILED.format(error=bad.args[0] if bad.args else bad), False
    return texts.FINE, True


class Judge:
    """Asks every setting about one example; remembers each answer per command shape."""

    def __init__(self, sandbox: Sandbox, slot_map: SlotMap, node_name: Callable[[int], str],
                 masters: int) -> None:  # fmt: skip
        self.sandbox = sandbox
        self.slot_map = slot_map
        self.node_name = node_name
        self.masters = masters
        self.cache: dict[tuple[Any, ...], dict[str, Verdict]] = {}

    # ---- one hazard -------------------------------------------------------------------------

    def verdicts(self, kind: str, block: Sequence[list[bytes]], multi: bool,
                 shape: tuple[Any, ...]) -> dict[str, Verdict]:  # fmt: skip
        """The verdicts for ``block`` (one command, or a MULTI block's commands), cached by
        ``shape`` (what the rules can see: kind, names, key-slot pattern)."""
        cached = self.cache.get(shape)
        if cached is not None:
            return cached
        keys = [a[p] for a in block for p in _keys(a)]
        first = keys[0] if keys else None
        native_text, native_ok = self._native(kind, block, multi, first)
        out = {
            "native cluster": Verdict("native cluster", native_text, native_ok,
                                      texts.WHY_NATIVE),
            "redis-py RedisCluster": self._redis_py(kind, block, multi, native_text, native_ok),
            "go-redis ClusterClient": self._go_redis(kind, block, multi, first, native_text,
                                                     native_ok),
        }  # fmt: skip
        for setting, rules in (
            ("alibaba proxy", rules_for("alibaba")),
            ("alibaba proxy, script check off", rules_for("alibaba", script_check_enable=False)),
            ("passthrough proxy", rules_for("passthrough")),
        ):
            out[setting] = self._proxy(setting, rules, block, multi, native_text, native_ok)
        if len(self.cache) < 4096:
            self.cache[shape] = out
        return out

    # ---- the settings -----------------------------------------------------------------------

    def _native(self, kind: str, block: Sequence[list[bytes]], multi: bool,
                first: bytes | None) -> tuple[str, bool]:  # fmt: skip
        if kind == "fan-out" and not _keys(block[0]):
            return texts.NATIVE_ONE_NODE.format(masters=self.masters), False
        run = [[b"MULTI"], *block, [b"EXEC"]] if multi else list(block)
        reply = self.sandbox.native(run, first)
        return _outcome_of(reply)

    def _redis_py(self, kind: str, block: Sequence[list[bytes]], multi: bool,
                  native_text: str, native_ok: bool) -> Verdict:  # fmt: skip
        setting = "redis-py RedisCluster"
        if multi:
            return Verdict(setting, texts.REDIS_PY_TX, False, texts.WHY_REDIS_PY)
        argv = block[0]
        name = argv[0].lower()
        slots = {key_slot(argv[p]) for p in _keys(argv)}
        if len(slots) > 1:
            if name in REDIS_PY_SPLITS:
                return Verdict(setting, texts.SPLIT_NOT_ATOMIC, True, texts.WHY_REDIS_PY)
            hint = texts.REDIS_PY_NONATOMIC if name in (b"mget", b"mset") else ""
            return Verdict(setting, texts.REDIS_PY_REFUSED + hint, False, texts.WHY_REDIS_PY)
        if not slots and kind in ("select", "swapdb"):
            return Verdict(setting, texts.REDIS_PY_NO_KEY, False, texts.WHY_REDIS_PY)
        if not slots and kind == "fan-out":
            return Verdict(setting, texts.REDIS_PY_POLICY, True, texts.WHY_REDIS_PY)
        return Verdict(setting, texts.SENT_TO_OWNER.format(outcome=native_text), native_ok,
                       texts.WHY_REDIS_PY)  # fmt: skip

    def _go_redis(self, kind: str, block: Sequence[list[bytes]], multi: bool,
                  first: bytes | None, native_text: str, native_ok: bool) -> Verdict:  # fmt: skip
        setting = "go-redis ClusterClient"
        if multi:
            return Verdict(setting, texts.GO_TX, False, texts.WHY_GO_TX)
        if first is None:
            where = texts.GO_ANY_NODE
        else:
            where = texts.GO_FIRST_KEY.format(node=self.node_name(key_slot(first)))
        if kind == "fan-out" and first is None:
            return Verdict(setting, where + texts.GO_ONE_NODE, False, texts.WHY_GO_REDIS)
        return Verdict(setting, f"{where}: {native_text}", native_ok, texts.WHY_GO_REDIS)

    def _proxy(self, setting: str, rules: Any, block: Sequence[list[bytes]], multi: bool,
               native_text: str, native_ok: bool) -> Verdict:  # fmt: skip
        state = SessionState()
        requests = [[b"MULTI"], *block, [b"EXEC"]] if multi else list(block)
        decision: Any = None
        for argv in requests:
            decision = decide(rules, argv, state, self.slot_map)
            if isinstance(decision, Answer) and decision.reply[:1] == b"-":
                return Verdict(setting, _first_line(decision.reply), False, texts.WHY_PROXY)
        if isinstance(decision, FanOut):
            # one request per slot (or per master): the nodes are the requests' addresses,
            # which the slot map gave from the audited layout
            nodes = len({addr for addr, _argv in decision.parts})
            parts = len(decision.parts)
            said = texts.PROXY_FANOUT if parts == nodes else texts.PROXY_FANOUT_PER_SLOT
            text = said.format(parts=parts, nodes=nodes)
            return Verdict(setting, text, True, texts.WHY_PROXY)
        if isinstance(decision, Transaction):
            if len(decision.parts) > 1:
                text = texts.PROXY_TX_SPLIT.format(parts=len(decision.parts))
                return Verdict(setting, text, False, texts.WHY_PROXY)
            return Verdict(setting, texts.FINE, True, texts.WHY_PROXY)
        if isinstance(decision, Forward):
            where = texts.PROXY_FORWARD if decision.slot is not None else texts.PROXY_FORWARD_ANY
            return Verdict(setting, where.format(outcome=native_text), native_ok, texts.WHY_PROXY)
        return Verdict(setting, texts.FINE, True, texts.WHY_PROXY)


def _keys(argv: Sequence[bytes]) -> list[int]:
    spec = commands.lookup(argv)
    if spec is None or not spec.check_arity(len(argv)):
        return []
    return [p for p in commands.cluster_keys(spec, argv) if p < len(argv)]


def as_eval(argv: list[bytes], body: bytes | None) -> list[bytes]:
    """An EVALSHA given as the EVAL of its body (when the body is known)."""
    name = argv[0].lower()
    if body is None or not name.startswith(b"evalsha"):
        return argv
    return [b"EVAL_RO" if name.endswith(b"_ro") else b"EVAL", body, *argv[2:]]


def sha1(body: bytes) -> bytes:
    return hashlib.sha1(body).hexdigest().encode()
