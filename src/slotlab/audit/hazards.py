"""The streaming auditor: one pass over the commands, bounded memory, a rule asked once per shape.

Lines are read in batches. In a batch of MONITOR lines one regular expression reads every
command name (in C); a command whose one key is its first argument and that has no rule of its
own (GET, SET, HGETALL...: most of real traffic) is only counted, and one such line in
:data:`SAMPLE` is parsed for the key population (the hot-slot estimate). Every other line is
classified by its **shape** (name and argument count): which arguments are keys comes from the
server's command table (``slotlab.commands``), once per shape. A command with several keys costs
their slots (``slotlab.slots.key_slot``). Only a command whose keys span slots, a script, a
MULTI block, SELECT/SWAPDB/MOVE or a SORT pattern goes further; lines that fail the same way
with the same key templates form one :class:`Group`: its count and its FIRST example are kept,
never the lines. The verdicts of the settings are asked at the end, once per group, and cached
per rule shape (``slotlab.audit.verdicts``).
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Final

from slotlab import commands
from slotlab.audit import texts
from slotlab.audit.fix import Advisor
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
MAX_POPULATION: Final = 100_000  # distinct keys counted for the hot-slot estimate
MAX_SCRIPTS: Final = 10_000  # script bodies remembered for EVALSHA
MAX_BLOCK: Final = 64  # commands of a MULTI block kept as its example
MAX_OPEN_MULTI: Final = 100_000  # clients with a MULTI open at once
MAX_SHAPES: Final = 100_000  # (command, argument count) shapes remembered

_DIGITS: Final = re.compile(rb"[0-9]+")

_BATCH: Final = 4096  # lines read at once
#: The command name of each MONITOR line (one match a line, or the batch goes line by line).
_NAME: Final = re.compile(rb'^[0-9][0-9.]* \[[0-9]+ [^\]\n]*\] "([^"\n]*)"', re.MULTILINE)
SAMPLE: Final = 16
"""One in SAMPLE lines of a single-key command is parsed, its key counted SAMPLE times."""

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
        #: the same, by the command's name as written (no lower()): feed_lines's fast path
        self._fast: dict[tuple[bytes, int], tuple[int, Any]] = {}
        self._boring, self._keyed = _boring_names()
        self._sample_at = 0
        self._groups: dict[tuple[Any, ...], Group] = {}
        #: key -> uses (for the hot-slot estimate); past 2 x MAX_POPULATION keys, the
        #: MAX_POPULATION most used are kept
        self._population: Counter[bytes] = Counter()
        self._multi: dict[bytes, _Multi] = {}
        self._scripts: dict[bytes, bytes] = {}
        self._script_info: dict[tuple[bytes, int], _ScriptInfo] = {}
        self._unresolved: dict[bytes, list[Any]] = {}
        self._xs_kind: dict[tuple[bytes, int], str] = {}
        self._owner, self._node_name, self._masters, self.layout = _layout(nodes)
        given = nodes is not None and not isinstance(nodes, int)
        addrs = [("127.0.0.1", 7000 + i) for i in range(self._masters)]
        self._slot_map = StaticSlotMap(
            addrs, dict(enumerate(map(addrs.__getitem__, map(self._owner, range(16384)))))
        )
        # the default layout is the emulator's own: no slot to reassign
        self.sandbox = Sandbox(self._owner if given else None, self._masters)

    # ---- input ------------------------------------------------------------------------------

    def feed_lines(self, lines: Iterable[bytes | str], first_line_no: int = 1) -> None:
        """Audit every line (bytes or str), numbering them from ``first_line_no``.

        Lines are read in batches. In a batch of MONITOR lines one regular expression finds
        every line's command name (in C); a line whose command has one key, its first argument,
        and no rule of its own is not parsed at all: one in :data:`SAMPLE` of them is, for the
        key population. The other lines (several keys, scripts, transactions, SELECT...) and
        every line while a transaction is open go through :meth:`_feed_each`."""
        n = first_line_no - 1
        it = iter(lines)
        boring, keyed = self._boring, self._keyed
        monitor = self.source != "commands"
        while True:
            given = list(islice(it, _BATCH))
            if not given:
                break
            try:
                batch: list[bytes] = given  # type: ignore[assignment]
                blob = b"\n".join(batch)  # lines of a binary file: already bytes
            except TypeError:
                batch = [b if isinstance(b, bytes) else _as_bytes(b, n + i + 1)
                         for i, b in enumerate(given)]  # fmt: skip
                blob = b"\n".join(batch)
            names = _NAME.findall(blob) if monitor and b"\0" not in blob else []
            if len(names) != len(batch):  # not all plain MONITOR lines: one by one
                self._feed_each(enumerate(batch, n + 1))
                n += len(batch)
                continue
            todo = [i for i, name in enumerate(names) if name not in boring]
            self._sample(batch, names, keyed, n)
            self.commands += len(batch) - len(todo)
            self._feed_each(self._picked(batch, names, todo, n))
            n += len(batch)
        self.lines_read = n

    def _picked(self, batch: list[bytes], names: list[bytes], todo: list[int],
                n: int) -> Iterator[tuple[int, bytes]]:  # fmt: skip
        """The lines of ``todo``, and while a transaction is open every line (the consumer
        audits each line before it asks for the next, so ``self._multi`` is up to date)."""
        multis = self._multi
        boring = self._boring
        i = 0
        for nxt in [*todo, len(batch)]:
            while multis and i < nxt:
                if names[i] in boring:
                    self.commands -= 1  # counted in bulk, and again by _feed_each
                yield n + i + 1, batch[i]
                i += 1
            if nxt < len(batch):
                yield n + nxt + 1, batch[nxt]
            i = nxt + 1

    def _sample(self, batch: list[bytes], names: list[bytes], keyed: frozenset[bytes],
                n: int) -> None:  # fmt: skip
        """Count the key of one in SAMPLE single-key lines (weight SAMPLE) in the population."""
        pop = self._population
        for i in range(self._sample_at, len(batch), SAMPLE):
            if names[i] in keyed:
                cmd = parse_line(batch[i].rstrip(b"\r\n"), n + i + 1, "monitor")
                if cmd is not None and len(cmd.argv) > 1:
                    pop[cmd.argv[1]] += SAMPLE
        self._sample_at = (self._sample_at - len(batch)) % SAMPLE

    def _feed_each(self, numbered: Iterable[tuple[int, bytes | str]]) -> None:
        """Audit lines one by one: (line number, line) pairs."""
        n = 0
        parse = parse_line
        source = self.source
        feed = self.feed
        fast = self._fast
        pop = self._population
        multis = self._multi
        monitor = source != "commands"
        quick = 0
        try:
            for n, raw in numbered:
                line = (raw if isinstance(raw, bytes) else _as_bytes(raw, n)).rstrip(b"\r\n")
                if b"\0" in line:
                    raise BadInput(
                        f"line {n}: binary data (a NUL byte); give a MONITOR capture or a text "
                        f"file of commands", n)  # fmt: skip
                if monitor and line[-1:] == b'"' and b"\\" not in line and line[:1].isdigit():
                    end = line.find(b'] "')
                    if end > 0:
                        argv = line[end + 3 : -1].split(b'" "')
                        shape = fast.get((argv[0], len(argv)))
                        if shape is not None and not multis:
                            cls, info = shape
                            if cls == _ONE:
                                quick += 1
                                key = argv[info]
                                pop[key] += 1
                                continue
                            if cls == _NONE:
                                quick += 1
                                continue
                            if cls == _MANY and line[end - 4 : end] != b" lua":
                                quick += 1
                                keys = [argv[p] for p in info]
                                pop.update(keys)
                                first = key_slot(keys[0])
                                for key in keys[1:]:
                                    if key_slot(key) != first:
                                        self._crossslot(argv[0].lower(), argv, line, n, keys)
                                        break
                                continue
                        head = line.find(b" [")
                        gap = line.find(b" ", head + 2)
                        if 0 < head < gap < end and line[head + 2 : gap].isdigit():
                            cmd = Command(line[gap + 1 : end], int(line[head + 2 : gap]), argv)
                            if argv[0]:
                                feed(cmd, line, n)
                                continue
                parsed = parse(line, n, source)
                if parsed is not None:
                    feed(parsed, line, n)
        finally:
            self.commands += quick

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
            if name not in _CONTAINERS and len(self._fast) < MAX_SHAPES:
                self._fast[(argv[0], len(argv))] = shape
        cls, info = shape
        if cls == _ONE:
            key = argv[info]
            self._population[key] += 1
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
        self._population.update(keys)

    def _group(self, kind: str, argv: list[bytes], line: bytes, line_no: int,
               keys: list[bytes], detail: str | Callable[[], str] = "",
               block: list[list[bytes]] | None = None, multi: bool = False,
               extra: tuple[Any, ...] = ()) -> None:  # fmt: skip
        """Count a line in its group, or start the group (``detail``: its text, or a function
        that makes it, called only for a new group)."""
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
        # which keys share a slot, and which node owns each: the verdicts name nodes
        pattern = tuple(slots.index(s) for s in slots)
        owners = tuple(self._owner(s) for s in slots)
        names = tuple(a[0].lower() for a in (block or [argv]))
        self._groups[gkey] = Group(
            kind, command, _shown(line.rstrip(b"\r\n")), line_no, block or [argv], multi,
            detail=detail if isinstance(detail, str) else detail(), keys=list(keys),
            rule_shape=(kind, names, tuple(len(a) for a in (block or [argv])), pattern, owners)
            + extra,
        )  # fmt: skip

    def _crossslot(self, name: bytes, argv: list[bytes], line: bytes, line_no: int,
                   keys: list[bytes]) -> None:  # fmt: skip
        kind = self._xs_kind.get((name, len(argv)))
        if kind is None:
            fans = isinstance(decide("alibaba", argv, None, self._slot_map), FanOut)
            kind = self._xs_kind[(name, len(argv))] = "fan-out" if fans else "crossslot"
        self._group(kind, argv, line, line_no, keys,
                    lambda: texts.DETAIL[kind].format(n=len({key_slot(k) for k in keys})))

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
        option = sort_pattern_option(argv)
        if option is not None:
            i, name = option
            detail = texts.DETAIL["sort-pattern"].format(option=name, pattern=_shown(argv[i + 1]))
            self._group("sort-pattern", argv, line, line_no, keys, detail, extra=(name,))
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
        advisor = Advisor(self._population)
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
                    fix=advisor.fix(g.kind, g.keys), detail=g.detail,
                ))  # fmt: skip
        finally:
            self.sandbox.close()
        notes = [texts.NOTE_UNRESOLVED.format(name=v[0], sha=_shown(k), count=v[1],
                                              line_no=v[2]) for k, v in self._unresolved.items()]
        if self._script_info:
            notes.append(texts.NOTE_EMPTY_RUN)
        return Report(hazards, self.lines_read, self.commands, notes, self.layout)


def _boring_names() -> tuple[frozenset[bytes], frozenset[bytes]]:
    """Names (as upper and lower case bytes) of the commands whose one key is their first
    argument and that need no rule of their own: such a line only counts its key."""
    keyed: set[bytes] = set()
    for name, spec in commands.command_table().items():
        raw = name.encode()
        if (spec.is_container or "movablekeys" in spec.flags or raw in _SPECIAL_HANDLERS
                or spec.first != 1 or spec.last != 1 or len(spec.key_specs) != 1):  # fmt: skip
            continue
        keyed.update((raw.upper(), raw))
    return frozenset(keyed), frozenset(keyed)


def sort_pattern_option(argv: list[bytes]) -> tuple[int, str] | None:
    """The SORT option a cluster node refuses (a BY pattern, any GET): (index, its name), as
    the emulator's one copy of sort.c's rule decides (``node_checks.sort_refusal``)."""
    from slotlab.backends.emulated.node_checks import sort_refusal  # loads the emulator

    refused = sort_refusal(argv)
    return None if refused is None else (refused[0], _shown(argv[refused[0]]).upper())


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
        owners = [i for i, (lo, hi) in enumerate(ranges) for _slot in range(lo, hi + 1)]
        labels = [f"node {i} (slots {lo}-{hi})" for i, (lo, hi) in enumerate(ranges)]
        return (owners.__getitem__, (lambda s: labels[owners[s]]), masters,
                texts.LAYOUT_DEFAULT.format(masters=masters))  # fmt: skip
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
    owners = [index[n] for n in names]
    return (owners.__getitem__, names.__getitem__, len(order),
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
