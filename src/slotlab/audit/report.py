"""What an audit found: :class:`Report`, its :class:`Hazard` groups and their :class:`Verdict`\\ s,
as text, JSON or JUnit XML."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Final
from xml.sax.saxutils import escape, quoteattr

__all__ = ["KINDS", "SETTINGS", "Hazard", "Report", "Verdict"]

KINDS: Final = (
    "crossslot",
    "fan-out",
    "multi-crossslot",
    "script-zero-keys",
    "script-undeclared-key",
    "script-hidden-key",
    "script-no-cluster",
    "select",
    "swapdb",
    "move",
    "sort-pattern",
)
"""Every kind of hazard the auditor reports, in the order a report lists their meaning."""

KIND_MEANING: Final = {
    "crossslot": "a multi-key command whose keys live in different slots",
    "fan-out": "a command a proxy splits over its nodes (fine there, not atomic); a native "
    "cluster refuses it (CROSSSLOT) or answers for one node only",
    "multi-crossslot": "a MULTI/EXEC block whose keys live in different slots",
    "script-zero-keys": "a script called with no keys (numkeys 0)",
    "script-undeclared-key": "a script that touches keys it was not given in KEYS "
    "(found by running it)",
    "script-hidden-key": "a script whose key arguments are not written KEYS[n] "
    "(Alibaba's static script check rejects it)",
    "script-no-cluster": "a script whose shebang says flags=no-cluster",
    "select": "SELECT of a database other than 0 (a cluster has database 0 only)",
    "swapdb": "SWAPDB (a cluster has database 0 only)",
    "move": "MOVE to another database (a cluster has database 0 only)",
    "sort-pattern": "SORT (or SORT_RO) with a BY pattern or a GET option (refused by a cluster)",
}

SETTINGS: Final = (
    "native cluster",
    "redis-py RedisCluster",
    "go-redis ClusterClient",
    "alibaba proxy",
    "alibaba proxy, script check off",
    "passthrough proxy",
)
"""The settings every hazard gets a verdict for."""


@dataclass(frozen=True)
class Verdict:
    """What one setting does with a hazard's example: ``outcome`` in a few words (a server's
    or vendor's error text where one answers), ``ok`` when the command works as written,
    ``why`` where the outcome comes from."""

    setting: str
    outcome: str
    ok: bool
    why: str = ""


@dataclass
class Hazard:
    """One group of lines of the same shape (kind, command, key templates) that fail somewhere."""

    kind: str
    command: str
    example: str
    line_no: int
    count: int
    keys: list[str]
    slots: list[int]
    nodes: list[str]
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    fix: str = ""
    #: one sentence: what is wrong with this line
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["verdicts"] = {k: asdict(v) for k, v in self.verdicts.items()}
        return out

    def text(self) -> str:
        shown = self.example if len(self.example) <= 300 else self.example[:297] + "..."
        lines = [
            f"[{self.kind}] {self.command}: {self.count} line(s), first at line {self.line_no}",
            f"  {shown}",
        ]
        if self.detail:
            lines.append(f"  what: {self.detail}")
        if self.keys:
            width = min(len(self.keys), 8)
            shown_keys = list(zip(self.keys, self.slots, self.nodes, strict=True))[:width]
            for key, slot, node in shown_keys:
                lines.append(f"  key {key!r}: slot {slot}, {node}")
            if len(self.keys) > width:
                lines.append(f"  ... and {len(self.keys) - width} more key(s)")
        for v in self.verdicts.values():
            mark = "ok  " if v.ok else "FAIL"
            lines.append(f"  {mark} {v.setting}: {v.outcome}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)


@dataclass
class Report:
    """Every hazard found, ordered by first line; ``ok`` when there is none."""

    hazards: list[Hazard]
    lines_read: int
    commands: int = 0
    notes: list[str] = field(default_factory=list)
    #: where key nodes come from: a layout given, or the default 3-master layout
    layout: str = ""

    @property
    def ok(self) -> bool:
        """True when no hazard was found."""
        return not self.hazards

    def text(self) -> str:
        """The report for a person: one block per hazard."""
        head = (f"slotlab audit: {self.lines_read} line(s), {self.commands} command(s), "
                f"{len(self.hazards)} hazard(s)")  # fmt: skip
        parts = [head]
        if self.layout:
            parts.append(f"nodes: {self.layout}")
        parts.extend(h.text() for h in self.hazards)
        parts.extend(f"note: {n}" for n in self.notes)
        if self.ok:
            parts.append("no cross-slot hazard found")
        return "\n\n".join(parts) + "\n"

    def to_json(self) -> str:
        """The report as JSON: ``ok``, ``lines_read``, ``commands``, ``hazards``, ``notes``."""
        return json.dumps(
            {"ok": self.ok, "lines_read": self.lines_read, "commands": self.commands,
             "layout": self.layout, "hazards": [h.to_dict() for h in self.hazards],
             "notes": self.notes},  # fmt: skip
            indent=2,
        )

    def junit(self) -> str:
        """The report as JUnit XML: one test case per hazard (failed), or one passing case."""
        cases = []
        for h in self.hazards:
            name = quoteattr(f"line {h.line_no}: {h.kind} {h.command}")
            message = quoteattr(f"{h.kind}: {h.command} ({h.count} line(s))")
            cases.append(f'  <testcase classname="slotlab.audit" name={name}>\n'
                         f'    <failure message={message}>{escape(h.text())}</failure>\n'
                         f'  </testcase>')  # fmt: skip
        if not cases:
            cases.append('  <testcase classname="slotlab.audit" name="no cross-slot hazard"/>')
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<testsuite name="slotlab audit" tests="{max(len(self.hazards), 1)}" '
            f'failures="{len(self.hazards)}">\n' + "\n".join(cases) + "\n</testsuite>\n"
        )
