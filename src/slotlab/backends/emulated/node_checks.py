"""Node checks: which node serves a command, as ``getNodeByQuery`` decides (cluster.c).

Slot ownership, ``MOVED``, ``ASK`` during a migration, ``TRYAGAIN`` for multi-key requests on a
slot being moved, ``CROSSSLOT`` for keys in different slots, and ``CLUSTERDOWN``; a script's
shebang flags replace EVAL's own (``getCommandFlags``); and the one check a cluster node makes
inside a command, SORT's refusal of BY patterns and GET (``sort_refusal``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from slotlab import commands, errors
from slotlab.backends.emulated.cluster import _Node
from slotlab.backends.emulated.helpers import key_slot
from slotlab.backends.emulated.scripting import parse_shebang
from slotlab.commands import CommandSpec
from slotlab.resp import ErrorReply

if TYPE_CHECKING:
    from slotlab.backends.emulated.client import _Client


def command_flags(c: _Client, spec: CommandSpec, argv: Sequence[bytes]) -> frozenset[str]:
    """``getCommandFlags``: a script's shebang flags replace EVAL's write/denyoom/stale."""
    if not spec.name.startswith("eval"):
        return spec.flags
    evalsha = spec.name.startswith("evalsha")
    if evalsha and len(argv[1]) != 40:
        return spec.flags
    sha = argv[1].lower() if evalsha else hashlib.sha1(argv[1]).hexdigest().encode()
    script = c.node.scripts.get(sha)
    if script is None:
        if evalsha:
            return spec.flags
        try:
            sflags, compat, _ = parse_shebang(argv[1])
        except ErrorReply:
            return spec.flags
    else:
        sflags, compat = script.flags, script.compat
    if compat:
        return spec.flags
    out = set(spec.flags) - {"stale", "denyoom", "write", "may_replicate"}
    if not sflags & {"allow-oom", "no-writes"}:
        out.add("denyoom")
    if "no-writes" not in sflags:
        out.add("write")
    if "allow-stale" in sflags:
        out.add("stale")
    return frozenset(out)


def sort_options(argv: Sequence[bytes]) -> Iterator[tuple[int, bytes]]:
    """SORT's (or SORT_RO's) options as ``sortCommandGeneric`` (sort.c) reads them, left to
    right: (index, option in lower case). It stops before an option it cannot read (a syntax
    error, a LIMIT that is not a number, STORE in SORT_RO): the command answers that error."""
    readonly = argv[0].lower() == b"sort_ro"
    j, argc = 2, len(argv)
    while j < argc:
        option = argv[j].lower()
        left = argc - j - 1
        if option in (b"asc", b"desc", b"alpha"):
            yield j, option
        elif option == b"limit" and left >= 2:
            if commands.string2ll(argv[j + 1]) is None or commands.string2ll(argv[j + 2]) is None:
                return
            yield j, option
            j += 2
        elif (option == b"store" and not readonly or option in (b"by", b"get")) and left >= 1:
            yield j, option
            j += 1
        else:
            return
        j += 1


def sort_pattern(pattern: bytes) -> bool:
    """True for a BY pattern that names other keys: it holds a ``*`` before any NUL byte
    (sort.c's ``strchr``); any other BY only means "do not sort"."""
    return b"*" in pattern.split(b"\0", 1)[0]


def sort_refusal(argv: Sequence[bytes]) -> tuple[int, str] | None:
    """The option a cluster node refuses in SORT or SORT_RO, and its error: (index, text).

    In cluster mode ``sortCommandGeneric`` (sort.c, Redis 7.0) refuses the first ``BY`` with a
    pattern (:func:`sort_pattern`) and ANY ``GET``, even ``GET #``, whatever hash tag the
    pattern has, before it looks the key up. None: no such option before the first one it
    cannot read.
    """
    for j, option in sort_options(argv):
        if option == b"by" and sort_pattern(argv[j + 1]):
            return j, errors.SORT_BY_IN_CLUSTER
        if option == b"get":
            return j, errors.SORT_GET_IN_CLUSTER
    return None


def node_by_query(
    c: _Client, spec: CommandSpec, argv: Sequence[bytes]
) -> tuple[_Node | None, int, str | None]:
    """Which node serves this command, as ``getNodeByQuery`` decides (cluster.c).

    Returns (node, slot, error text). No keys: (this node, -1, None).
    """
    node = c.node
    cluster = node.cluster
    if spec.name == "exec":
        if c.multi is None:
            return node, -1, None
        batch: list[tuple[CommandSpec, Sequence[bytes]]] = [(q[0], q[1]) for q in c.multi]
    else:
        batch = [(spec, argv)]
    pubsubshard = spec.name in ("ssubscribe", "sunsubscribe", "spublish")
    first: bytes | None = None
    slot = 0
    owner: _Node | None = None
    migrating = importing = multiple = False
    missing = existing = 0
    for mspec, margv in batch:
        for pos in commands.cluster_keys(mspec, margv):
            key = margv[pos]
            this_slot = key_slot(key)
            if first is None:
                first, slot = key, this_slot
                owner = cluster.slots[slot]
                if owner is None:
                    return None, slot, errors.CLUSTERDOWN_UNBOUND
                if owner is node and slot in node.migrating:
                    migrating = True
                elif slot in node.importing:
                    importing = True
            elif key != first:
                if slot != this_slot:
                    return None, slot, errors.CROSSSLOT
                multiple = True
            if (migrating or importing) and not pubsubshard:
                if node.key_exists(key):
                    existing += 1
                else:
                    missing += 1
    if owner is None:
        return node, -1, None
    flags = command_flags(c, spec, argv)
    if not cluster.ok:
        return None, slot, errors.CLUSTERDOWN
    if (migrating or importing) and spec.name == "migrate":
        return node, slot, None
    if migrating and missing:
        if existing:
            return None, slot, errors.TRYAGAIN
        target = node.migrating[slot]
        return None, slot, errors.ASK.format(slot=slot, addr=target.address)
    if importing and (c.asking or "asking" in flags):
        if multiple and missing:
            return None, slot, errors.TRYAGAIN
        return node, slot, None
    is_write = "write" in flags or (
        spec.name == "exec"
        and c.multi is not None
        and any("write" in q[2] for q in c.multi)
    )
    if (
        (c.readonly or pubsubshard)
        and not is_write
        and node.is_replica
        and node.master is owner
    ):
        return node, slot, None
    return owner, slot, None

