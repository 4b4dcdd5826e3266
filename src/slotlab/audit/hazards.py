"""The streaming auditor: one pass over the commands, bounded memory, a rule asked once per shape.

Each command is classified by its **shape** (name and argument count): which arguments are keys
comes from the server's command table (``slotlab.commands``), once per shape. A command with one
key, or none, costs a dictionary look-up and a count. A command with several keys costs their
slots (``slotlab.slots.key_slot``). Only a command whose keys span slots, a script, a MULTI
block, SELECT/SWAPDB/MOVE or a SORT pattern goes further; lines that fail the same way with the
same key templates form one :class:`Group`: its count and its FIRST example are kept, never the
lines. The verdicts of the settings are asked at the end, once per group, and cached per rule
shape (``slotlab.audit.verdicts``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from slotlab import commands
from slotlab.audit import texts
from slotlab.audit.fix import busiest_slot, suggest_fix
from slotlab.audit.parse import BadInput, Command, parse_line
from slotlab.audit.report import Hazard, Report
from slotlab.audit.sandbox import Sandbox
from slotlab.audit.verdicts import Judge, as_eval, sha1
from slotlab.backends.base import split_slots
from slotlab.proxy.rules import FanOut, StaticSlotMap, decide
from slotlab.slots import key_slot

__all__ = ["Auditor", "NodeMap"]

NodeMap = Any
"""A slot owner map: ``lab.topology()`` (anything with ``node_for_slot``), a mapping of slot to
node name, a sequence of 16384 node names, or a number of masters laid out as
``redis-cli --cluster create`` does."""

MAX_GROUPS: Final = 10_000  # distinct hazard groups; past it, lines join their kind+command group
MAX_POPULATION: Final = 200_000  # distinct keys counted for the hot-slot estimate
MAX_SCRIPTS: Final = 10_000  # script bodies remembered for EVALSHA
MAX_BLOCK: Final = 64  # commands of a MULTI block kept as its example
MAX_OPEN_MULTI: Final = 100_000  # clients with a MULTI open at once
MAX_SHAPES: Final = 100_000  # (command, argument count) shapes remembered

_DIGITS: Final = re.compile(rb"[0-9]+")

# shape classes
_NONE, _ONE, _MANY, _MOVABLE, _SPECIAL = range(5)

#: commands with subcommands (CLIENT, CLUSTER, ...): their shape includes the subcommand
_CONTAINERS: Final = frozenset(
    name.encode() for name, spec in commands.command_table().items() if spec.is_container
)


@dataclass
class Group:
    """Lines of one hazard shape: how many, and the first one."""

    kind: str
    command: str
    line: str
    line_no: int
    block: list[list[bytes]]
    multi: bool = False
    count: int = 1
    detail: str = ""
    keys: list[bytes] = field(default_factory=list)
    rule_shape: tuple[Any, ...] = ()


@dataclass
class _Multi:
    line: str
    line_no: int
    slots: set[int] = field(default_factory=set)
    block: list[list[bytes]] = field(default_factory=list)
    size: int = 0


@dataclass
class _ScriptInfo:
    """What one run of a script showed (its first example): the keys it touched, those of them
    it was not given in KEYS, its shebang flags, Alibaba's check."""

    touched: list[bytes]
    undeclared: list[bytes]
    flags: frozenset[str]
    problem: str | None


def _template(key: bytes) -> bytes:
    return _DIGITS.sub(b"<n>", key)


def _shown(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


class Auditor:
    """Feed it commands (:meth:`feed_line` or :meth:`feed`), then ask for the :meth:`report`."""

    def __init__(self, nodes: NodeMap = None, source: str = "auto") -> None:
        self.source = source
        self.lines_read = 0
        self.commands = 0
        self._shapes: dict[tuple[bytes, int], tuple[int, Any]] = {}
        self._groups: dict[tuple[Any, ...], Group] = {}
        self._population: dict[bytes, int] = {}
        self._multi: dict[bytes, _Multi] = {}
        self._scripts: dict[bytes, bytes] = {}
        self._script_info: dict[tuple[bytes, int], _ScriptInfo] = {}
        self._unresolved: dict[bytes, list[Any]] = {}
        self._xs_kind: dict[tuple[bytes, int], str] = {}
        self._owner, self._node_name, self._masters, self.layout = _layout(nodes)
        self._slot_map = StaticSlotMap(
            [("127.0.0.1", 7000 + i) for i in range(self._masters)],
            {s: ("127.0.0.1", 7000 + self._owner(s)) for s in range(16384)},
        )
        self.sandbox = Sandbox(self._owner, self._masters)

    # ---- input ------------------------------------------------------------------------------

    def feed_lines(self, lines: Iterable[bytes | str], first_line_no: int = 1) -> None:
        """Audit every line (bytes or str), numbering them from ``first_line_no``."""
        n = first_line_no - 1
        parse = parse_line
        source = self.source
        feed = self.feed
        for n, raw in enumerate(lines, first_line_no):  # noqa: B007 - n is read after the loop
            line = (raw if isinstance(raw, bytes) else _as_bytes(raw, n)).rstrip(b"\r\n")
            if b"\0" in line:
                raise BadInput(
                    f"line {n}: binary data (a NUL byte); give a MONITOR capture or a text file "
                    f"of commands", n)  # fmt: skip
            cmd = parse(line, n, source)
            if cmd is not None:
                feed(cmd, line, n)
        self.lines_read = n

    def feed(self, cmd: Command, line: bytes, line_no: int) -> None:
        """One command (``line`` is its text, kept if it is the first of a hazard group)."""
        self.commands += 1
        argv = cmd.argv
        name = argv[0].lower()
        if name in _CONTAINERS and len(argv) > 1:
            shape = self._shapes.get((name + b"|" + argv[1].lower(), len(argv)))
        else:
            shape = self._shapes.get((name, len(argv)))
        if shape is None:
            shape = self._shape(name, argv)
        cls, info = shape
        if cls == _ONE:
            key = argv[info]
            pop = self._population
            if key in pop:
                pop[key] += 1
            elif len(pop) < MAX_POPULATION:
                pop[key] = 1
            if self._multi and not cmd.from_script:
                self._in_multi(cmd.client, argv, (key,))
            return
        if cls == _NONE:
            if self._multi and not cmd.from_script:
                self._in_multi(cmd.client, argv, ())
            return
        if cls in (_MANY, _MOVABLE):
            positions = info if cls == _MANY else _positions(argv)
            keys = [argv[p] for p in positions]
            self._count(keys)
            if cmd.from_script:
                return
            if self._multi:
                self._in_multi(cmd.client, argv, keys)
            if len(keys) > 1:
                first = key_slot(keys[0])
                for k in keys:
                    if key_slot(k) != first:
                        self._crossslot(name, argv, line, line_no, keys)
                        break
            return
        info(self, cmd, line, line_no)

    # ---- shapes -----------------------------------------------------------------------------

    def _shape(self, name: bytes, argv: list[bytes]) -> tuple[int, Any]:
        special = _SPECIAL_HANDLERS.get(name)
        if special is not None:
            shape: tuple[int, Any] = (_SPECIAL, special)
        else:
            spec = commands.lookup(argv)
            if spec is None or not spec.check_arity(len(argv)):
                shape = (_NONE, None)
            elif "movablekeys" in spec.flags:
                shape = (_MOVABLE, None)
            else:
                positions = [p for p in commands.cluster_keys(spec, argv) if p < len(argv)]
                if not positions:
                    fans = isinstance(decide("alibaba", argv, None, self._slot_map), FanOut)
                    shape = (_SPECIAL, Auditor._keyless_fanout) if fans else (_NONE, None)
                elif len(positions) == 1:
                    shape = (_ONE, positions[0])
                else:
                    shape = (_MANY, tuple(positions))
        if name in _CONTAINERS and len(argv) > 1:
            name = name + b"|" + argv[1].lower()  # the subcommand is part of the shape
        if len(self._shapes) < MAX_SHAPES:
            self._shapes[(name, len(argv))] = shape
        return shape

    # ---- bookkeeping ------------------------------------------------------------------------

    def _count(self, keys: Iterable[bytes]) -> None:
        pop = self._population
        for key in keys:
            if key in pop:
                pop[key] += 1
            elif len(pop) < MAX_POPULATION:
                pop[key] = 1

    def _group(self, kind: str, argv: list[bytes], line: bytes, line_no: int,
               keys: list[bytes], detail: str = "", block: list[list[bytes]] | None = None,
               multi: bool = False, extra: tuple[Any, ...] = ()) -> None:  # fmt: skip
        command = _shown(argv[0]).upper()
        templates = tuple(sorted({_template(k) for k in keys}))
        gkey: tuple[Any, ...] = (kind, command, templates, extra)
        group = self._groups.get(gkey)
        if group is None and len(self._groups) >= MAX_GROUPS:
            gkey = (kind, command)
            group = self._groups.get(gkey)
        if group is not None:
            group.count += 1
            return
        slots = [key_slot(k) for k in keys]
        pattern = tuple(slots.index(s) for s in slots)
        names = tuple(a[0].lower() for a in (block or [argv]))
        self._groups[gkey] = Group(
            kind, command, _shown(line.rstrip(b"\r\n")), line_no, block or [argv], multi,
            detail=detail, keys=list(keys),
            rule_shape=(kind, names, tuple(len(a) for a in (block or [argv])), pattern) + extra,
        )  # fmt: skip

    def _crossslot(self, name: bytes, argv: list[bytes], line: bytes, line_no: int,
                   keys: list[bytes]) -> None:  # fmt: skip
        kind = self._xs_kind.get((name, len(argv)))
        if kind is None:
            fans = isinstance(decide("alibaba", argv, None, self._slot_map), FanOut)
            kind = self._xs_kind[(name, len(argv))] = "fan-out" if fans else "crossslot"
        n = len({key_slot(k) for k in keys})
        self._group(kind, argv, line, line_no, keys, texts.DETAIL[kind].format(n=n))

    def _in_multi(self, client: bytes, argv: list[bytes], keys: Iterable[bytes]) -> None:
        m = self._multi.get(client)
        if m is None:
            return
        m.size += 1
        if len(m.block) < MAX_BLOCK:
            m.block.append(argv)
        for k in keys:
            m.slots.add(key_slot(k))

    # ---- special commands -------------------------------------------------------------------

    def _multi_cmd(self, cmd: Command, line: bytes, line_no: int) -> None:
        if cmd.from_script or len(self._multi) >= MAX_OPEN_MULTI:
            return
        self._multi[cmd.client] = _Multi(_shown(line.rstrip(b"\r\n")), line_no)

    def _exec_cmd(self, cmd: Command, line: bytes, line_no: int) -> None:
        m = self._multi.pop(cmd.client, None)
        if m is None or len(m.slots) < 2:
            return
        keys = _distinct(a[p] for a in m.block for p in _positions(a))
        detail = texts.DETAIL["multi-crossslot"].format(cmds=m.size, n=len(m.slots))
        self._group("multi-crossslot", [b"MULTI"], m.line.encode("utf-8", "surrogateescape"),
                    m.line_no, keys, detail, block=m.block, multi=True)  # fmt: skip

    def _discard_cmd(self, cmd: Command, line: bytes, line_no: int) -> None:
        self._multi.pop(cmd.client, None)

    def _db_cmd(self, cmd: Command, line: bytes, line_no: int) -> None:
        argv = cmd.argv
        name = argv[0].lower()
        if self._multi and not cmd.from_script:
            self._in_multi(cmd.client, argv, argv[1:2] if name == b"move" else ())
        if name == b"select":
            if len(argv) != 2 or argv[1] == b"0":
                return
            self._group("select", argv, line, line_no, [],
                        texts.DETAIL["select"].format(db=_shown(argv[1])), extra=(argv[1],))
        elif name == b"swapdb":
            self._group("swapdb", argv, line, line_no, [], texts.DETAIL["swapdb"])
        elif len(argv) == 3:
            self._count(argv[1:2])
            self._group("move", argv, line, line_no, [argv[1]],
                        texts.DETAIL["move"].format(db=_shown(argv[2])))

    def _sort_cmd(self, cmd: Command, line: bytes, line_no: int) -> None:
        argv = cmd.argv
        if len(argv) < 2:
            return
        keys = [argv[p] for p in _positions(argv)]
        self._count(keys)
        if cmd.from_script:
            return
        if self._multi:
            self._in_multi(cmd.client, argv, keys)
        for i in range(2, len(argv) - 1):
            option = argv[i].lower()
            # BY without a '*' means "do not sort" (sort.c): it reads no other key
            if (option == b"get" and argv[i + 1] != b"#") or (
                option == b"by" and b"*" in argv[i + 1]
            ):
                detail = texts.DETAIL["sort-pattern"].format(
                    option=_shown(option).upper(), pattern=_shown(argv[i + 1]))
                self._group("sort-pattern", argv, line, line_no, keys, detail)
                return
        if len(keys) > 1 and len({key_slot(k) for k in keys}) > 1:
            self._crossslot(argv[0].lower(), argv, line, line_no, keys)

    def _script_load_cmd(self, cmd: Command, line: bytes, line_no: int) -> None:
        argv = cmd.argv
        if len(argv) == 3 and argv[1].lower() == b"load" and len(self._scripts) < MAX_SCRIPTS:
            self._scripts[sha1(argv[2])] = argv[2]

    def _keyless_fanout(self, cmd: Command, line: bytes, line_no: int) -> None:
        if cmd.from_script:
            return
        if self._multi:
            self._in_multi(cmd.client, cmd.argv, ())
        self._group("fan-out", cmd.argv, line, line_no, [], texts.DETAIL["fan-out-keyless"])

    def _eval_cmd(self, cmd: Command, line: bytes, line_no: int) -> None:
        argv = cmd.argv
        name = argv[0].lower()
        numkeys = commands.string2ll(argv[2]) if len(argv) > 2 else None
        if numkeys is None or not 0 <= numkeys <= len(argv) - 3:
            return  # the server refused it
        declared = argv[3 : 3 + numkeys]
        self._count(declared)
        if self._multi and not cmd.from_script:
            self._in_multi(cmd.client, argv, declared)
        if name.startswith(b"evalsha"):
            sha = argv[1].lower()
            body = self._scripts.get(sha)
        else:
            body = argv[1]
            sha = sha1(body)
            if len(self._scripts) < MAX_SCRIPTS:
                self._scripts[sha] = body
        if numkeys == 0:
            info = self._script(sha, body, argv) if body is not None else None
            touched = info.touched if info is not None else []
            shown = "" if not touched else f", yet it touches {len(set(touched))} key(s)"
            self._group("script-zero-keys", argv, line, line_no, _distinct(touched),
                        texts.DETAIL["script-zero-keys"].format(touched=shown),
                        extra=(sha,))  # fmt: skip
        slots = {key_slot(k) for k in declared}
        if len(slots) > 1:
            self._group("crossslot", argv, line, line_no, list(declared),
                        texts.DETAIL["crossslot"].format(n=len(slots)), extra=(sha,))
        if body is None:
            entry = self._unresolved.get(sha)
            if entry is None:
                if len(self._unresolved) < MAX_SCRIPTS:
                    self._unresolved[sha] = [_shown(argv[0]).upper(), 1, line_no]
            else:
                entry[1] += 1
            return
        info = self._script(sha, body, argv)
        if "no-cluster" in info.flags:
            self._group("script-no-cluster", argv, line, line_no, list(declared),
                        texts.DETAIL["script-no-cluster"], extra=(sha,))
        if info.problem is not None:
            self._group("script-hidden-key", argv, line, line_no, list(declared),
                        texts.DETAIL["script-hidden-key"].format(problem=info.problem),
                        extra=(sha,))  # fmt: skip
        if numkeys:
            undeclared = info.undeclared
            if undeclared:
                shown_keys = ", ".join(repr(_shown(k)) for k in undeclared[:5])
                detail = texts.DETAIL["script-undeclared-key"].format(
                    undeclared=len(undeclared), keys=shown_keys)
                self._group("script-undeclared-key", argv, line, line_no,
                            list(declared) + undeclared, detail, extra=(sha,))

    def _script(self, sha: bytes, body: bytes, argv: list[bytes]) -> _ScriptInfo:
        """Run the script once per (script, number of keys): the keys it touches, its flags,
        and what Alibaba's static check says of it."""
        numkeys = commands.string2ll(argv[2]) or 0
        cached = self._script_info.get((sha, numkeys))
        if cached is not None:
            return cached
        from slotlab.backends.emulated.scripting import parse_shebang
        from slotlab.proxy.script_check import check_script
        from slotlab.resp import ErrorReply

        try:
            flags, _compat, _len = parse_shebang(body)
        except ErrorReply:
            flags = frozenset()
        run = self.sandbox.run_script(as_eval(argv, body))
        problems = check_script(body)
        declared = set(argv[3 : 3 + numkeys])
        undeclared = [k for k in _distinct(run.touched) if k not in declared]
        info = _ScriptInfo(run.touched, undeclared, flags, str(problems[0]) if problems else None)
        if len(self._script_info) < MAX_SCRIPTS:
            self._script_info[(sha, numkeys)] = info
        return info

    # ---- the report -------------------------------------------------------------------------

    def report(self) -> Report:
        """The hazards found so far, with every setting's verdict and a fix for each."""
        judge = Judge(self.sandbox, self._slot_map, self._node_name, self._masters)
        hazards: list[Hazard] = []
        busiest = busiest_slot(self._population) if self._groups else (0, 0)
        try:
            for g in sorted(self._groups.values(), key=lambda g: g.line_no):
                block = [as_eval(a, self._scripts.get(a[1].lower()) if len(a) > 1 else None)
                         for a in g.block]  # fmt: skip
                verdicts = judge.verdicts(g.kind, block, g.multi, g.rule_shape)
                slots = [key_slot(k) for k in g.keys]
                hazards.append(Hazard(
                    kind=g.kind, command=g.command, example=g.line, line_no=g.line_no,
                    count=g.count, keys=[_shown(k) for k in g.keys], slots=slots,
                    nodes=[self._node_name(s) for s in slots], verdicts=verdicts,
                    fix=suggest_fix(g.kind, g.keys, self._population, busiest), detail=g.detail,
                ))  # fmt: skip
        finally:
            self.sandbox.close()
        notes = [texts.NOTE_UNRESOLVED.format(name=v[0], sha=_shown(k), count=v[1],
                                              line_no=v[2]) for k, v in self._unresolved.items()]
        if self._script_info:
            notes.append(texts.NOTE_EMPTY_RUN)
        return Report(hazards, self.lines_read, self.commands, notes, self.layout)


def _distinct(keys: Iterable[bytes]) -> list[bytes]:
    return list(dict.fromkeys(keys))


def _positions(argv: list[bytes]) -> list[int]:
    spec = commands.lookup(argv)
    if spec is None or not spec.check_arity(len(argv)):
        return []
    return [p for p in commands.cluster_keys(spec, argv) if p < len(argv)]


def _as_bytes(line: str, n: int) -> bytes:
    try:
        return line.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise BadInput(f"line {n}: cannot be read as text ({exc.reason})", n) from None


def _layout(nodes: NodeMap) -> tuple[Callable[[int], int], Callable[[int], str], int, str]:
    """Who owns each slot: (slot -> master index, slot -> node name, masters, how said)."""
    if nodes is None or isinstance(nodes, int):
        masters = 3 if nodes is None else nodes
        ranges = split_slots(masters)
        bounds = [hi for _lo, hi in ranges]

        def owner(slot: int) -> int:
            for i, hi in enumerate(bounds):
                if slot <= hi:
                    return i
            return len(bounds) - 1

        def name(slot: int) -> str:
            i = owner(slot)
            lo, hi = ranges[i]
            return f"node {i} (slots {lo}-{hi})"

        return owner, name, masters, texts.LAYOUT_DEFAULT.format(masters=masters)
    if hasattr(nodes, "node_for_slot"):
        names = [nodes.node_for_slot(s).address for s in range(16384)]
    elif isinstance(nodes, Mapping):
        names = [str(nodes[s]) for s in range(16384)]
    else:
        names = [str(n) for n in nodes]
        if len(names) != 16384:
            raise ValueError(f"nodes must name the owner of all 16384 slots, not {len(names)}")
    order = list(dict.fromkeys(names))
    index = {n: i for i, n in enumerate(order)}
    return ((lambda s: index[names[s]]), (lambda s: names[s]), len(order),
            texts.LAYOUT_GIVEN.format(masters=len(order)))  # fmt: skip


_SPECIAL_HANDLERS: Final[dict[bytes, Callable[[Auditor, Command, bytes, int], None]]] = {
    b"multi": Auditor._multi_cmd,
    b"exec": Auditor._exec_cmd,
    b"discard": Auditor._discard_cmd,
    b"reset": Auditor._discard_cmd,
    b"select": Auditor._db_cmd,
    b"swapdb": Auditor._db_cmd,
    b"move": Auditor._db_cmd,
    b"sort": Auditor._sort_cmd,
    b"sort_ro": Auditor._sort_cmd,
    b"script": Auditor._script_load_cmd,
    b"eval": Auditor._eval_cmd,
    b"evalsha": Auditor._eval_cmd,
    b"eval_ro": Auditor._eval_cmd,
    b"evalsha_ro": Auditor._eval_cmd,
}
