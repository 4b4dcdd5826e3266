"""Reading a command log: ``MONITOR`` lines (Redis 6, 7, 8 and Valkey) or one command per line.

A ``MONITOR`` line, as ``replicationFeedMonitors`` (replication.c) writes it::

    1796313005.738450 [0 127.0.0.1:47808] "SET" "a\\"b" "v v"
    1796313005.739068 [0 lua] "set" "{a}x" "1"

a timestamp, ``[db client]`` (``lua`` for a command a script ran, ``unix:/path`` for a Unix
socket client), then every argument quoted the way ``sdscatrepr`` quotes it: ``\\"``, ``\\\\``,
``\\n``, ``\\r``, ``\\t``, ``\\a``, ``\\b`` and ``\\xHH`` for any other byte that is not printable
ASCII. A line without a backslash therefore holds printable ASCII only, and its arguments are
the pieces between ``" "``: :func:`parse_line` splits those without a regular expression.

Any other line is a command in ``redis-cli`` syntax (``SET "a b" 1``), split the way the server
splits an inline command (``slotlab.resp.split_args``). Blank lines, ``#`` comments and the
``OK`` that ``redis-cli MONITOR`` prints first are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from slotlab.resp import split_args

__all__ = ["BadInput", "Command", "parse_line", "SOURCES"]

SOURCES: Final = ("auto", "monitor", "commands")
"""What ``source=`` accepts: tell the formats apart per line, or insist on one."""


class BadInput(ValueError):
    """The input cannot be audited; the message names the line and the fix."""

    def __init__(self, message: str, line_no: int | None = None) -> None:
        super().__init__(message)
        self.line_no = line_no


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed command: who sent it (``client``; ``"lua"`` inside a script), its arguments."""

    client: bytes
    db: int
    argv: list[bytes]

    @property
    def from_script(self) -> bool:
        """True for a command a script ran (``[0 lua]`` in ``MONITOR``)."""
        return self.client == b"lua"


_MONITOR_HEAD: Final = re.compile(rb"(\d+)\.(\d+) \[(\d+) ")
_ESCAPE: Final = re.compile(rb'\\x([0-9a-fA-F]{2})|\\(.)', re.DOTALL)
_SIMPLE: Final = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b",
                  b'"': b'"', b"\\": b"\\"}  # fmt: skip
_QUOTED: Final = re.compile(rb'"((?:[^"\\]|\\.)*)"( |$)', re.DOTALL)


def _unescape_one(m: re.Match[bytes]) -> bytes:
    if m.group(1) is not None:
        return bytes([int(m.group(1), 16)])
    return _SIMPLE.get(m.group(2), m.group(2))


def _monitor_args(rest: bytes, line_no: int) -> list[bytes]:
    """The quoted arguments after ``] `` of a MONITOR line."""
    if b"\\" not in rest:
        if len(rest) < 2 or rest[0] != 0x22 or rest[-1] != 0x22:
            raise BadInput(_malformed(line_no, "its arguments are not quoted"), line_no)
        return rest[1:-1].split(b'" "')
    out: list[bytes] = []
    pos = 0
    n = len(rest)
    while pos < n:
        m = _QUOTED.match(rest, pos)
        if m is None:
            raise BadInput(_malformed(line_no, "an argument's quotes do not close"), line_no)
        raw = m.group(1)
        out.append(_ESCAPE.sub(_unescape_one, raw) if b"\\" in raw else raw)
        pos = m.end()
    return out


def _malformed(line_no: int, why: str) -> str:
    return (f"line {line_no}: a malformed MONITOR line ({why}); each line must look like "
            f'1700000000.000000 [0 127.0.0.1:50000] "SET" "key" "value"')  # fmt: skip


def parse_line(line: bytes, line_no: int, source: str = "auto") -> Command | None:
    """One line of a capture as a :class:`Command`; None for a line with no command.

    Raises :class:`BadInput` naming ``line_no`` for a line that cannot be read.
    """
    if source == "monitor" or (source == "auto" and line[:1].isdigit()):
        m = _MONITOR_HEAD.match(line)
        if m is not None:
            end = line.find(b"] ", m.end())
            if end < 0:
                raise BadInput(_malformed(line_no, "no ']' closes the client"), line_no)
            client = line[m.end() : end]
            argv = _monitor_args(line[end + 2 :], line_no)
            if not argv or not argv[0]:
                raise BadInput(_malformed(line_no, "no command name"), line_no)
            return Command(client, int(m.group(3)), argv)
        stripped = line.strip()
        if source == "monitor" and (not stripped or stripped == b"OK"):
            return None
        why = "it does not start with a timestamp and [db client]"
        raise BadInput(_malformed(line_no, why), line_no)
    stripped = line.strip()
    if not stripped or stripped.startswith(b"#") or stripped in (b"OK", b"+OK"):
        return None
    args = split_args(stripped)
    if args is None:
        raise BadInput(
            f"line {line_no}: the quotes of this command do not close; write one command per "
            f"line in redis-cli syntax, e.g. SET \"my key\" value",
            line_no,
        )
    if not args:
        return None
    return Command(b"cli", 0, args)
