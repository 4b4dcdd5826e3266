"""Find the cross-slot hazards in your own traffic, before a cluster or a proxy does.

Give the auditor what your application sends (a ``MONITOR`` capture of Redis 6, 7, 8 or Valkey,
a file of one command per line, a key set, key templates, or a live server for N seconds) and
it tells you, for every line that would fail somewhere: the command, its first line and how many
times it came, its keys with their slots and nodes, what each setting does with it (a native
cluster, redis-py's ``RedisCluster``, go-redis's ``ClusterClient``, the ``alibaba`` proxy with and
without its script check, the ``passthrough`` proxy) and the fix to consider::

    >>> from slotlab import audit
    >>> report = audit.audit_lines(['MGET user:1 user:2'])
    >>> [h.kind for h in report.hazards], report.ok
    (['fan-out'], False)

The verdicts are asked of the code that decides them (the proxy's ``decide``, the emulated
cluster's node checks, redis-py's source), never written again here. Scripts are RUN in a
throwaway emulated node to see the keys they touch.

**Key templates** (:func:`audit_templates`) name the variable parts of a key in angle brackets,
``group:<group_id>:members``, so that braces keep their one meaning, the hash tag:
``{group:<group_id>}:members`` is a template whose keys share the tag.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence

from slotlab.audit.capture import Capture, capture
from slotlab.audit.hazards import Auditor, NodeMap
from slotlab.audit.parse import SOURCES, BadInput
from slotlab.audit.report import KINDS, SETTINGS, Hazard, Report, Verdict

__all__ = [
    "KINDS", "SETTINGS", "BadInput", "Capture", "Hazard", "Report", "Verdict", "audit_file",
    "audit_keys", "audit_lines", "audit_templates", "capture",
]  # fmt: skip


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")


def audit_lines(lines: Iterable[str | bytes], *, nodes: NodeMap = None,
                source: str = "auto") -> Report:  # fmt: skip
    """Audit a command log, one pass: MONITOR lines or commands in redis-cli syntax.

    ``source``: ``"auto"`` tells the two apart per line; ``"monitor"`` or ``"commands"`` insist.
    ``nodes``: who owns each slot (``lab.topology()``, a mapping slot -> name, or 16384 names);
    without it, the default 3-master layout. Raises :class:`BadInput` naming a malformed line.
    """
    _check_source(source)
    auditor = Auditor(nodes, source)
    auditor.feed_lines(lines)
    return auditor.report()


def audit_file(path: str | os.PathLike[str], *, nodes: NodeMap = None,
               source: str = "auto") -> Report:  # fmt: skip
    """:func:`audit_lines` on a file, read once in binary. Raises :class:`BadInput` for a file
    that is missing, a directory, or not text."""
    _check_source(source)
    p = os.fspath(path)
    if os.path.isdir(p):
        raise BadInput(f"{p} is a directory; give the capture file inside it")
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise BadInput(f"{p}: no such file; record one with redis-cli MONITOR > {p}") from None
    except OSError as exc:
        raise BadInput(f"{p}: cannot be read ({exc.strerror})") from None
    with f:
        auditor = Auditor(nodes, source)
        auditor.feed_lines(f)
    return auditor.report()


def audit_keys(keys: Iterable[str | bytes], *, nodes: NodeMap = None,
               command: str = "MGET") -> Report:  # fmt: skip
    """What a multi-key operation on ``keys`` would do in every setting: ``command`` (MGET,
    DEL, EVAL with these keys...) over all of them, as one line."""
    key_list = [k.encode() if isinstance(k, str) else bytes(k) for k in keys]
    if not key_list:
        raise ValueError("audit_keys needs at least one key")
    name = command.upper().encode()
    if name in (b"EVAL", b"EVAL_RO"):
        body = b"for _, k in ipairs(KEYS) do redis.call('EXISTS', k) end"
        argv = [name, body, str(len(key_list)).encode(), *key_list]
    elif name == b"MSET":
        argv = [name, *(a for k in key_list for a in (k, b"1"))]
    else:
        argv = [name, *key_list]
    return audit_lines([b" ".join(_quote(a) for a in argv)], nodes=nodes, source="commands")


def _quote(arg: bytes) -> bytes:
    """``arg`` in redis-cli syntax: double-quoted, with \\xHH for what is not printable."""
    out = bytearray(b'"')
    for c in arg:
        if c in b'"\\':
            out += b"\\" + bytes([c])
        elif 32 <= c <= 126:
            out.append(c)
        else:
            out += b"\\x%02x" % c
    return bytes(out + b'"')


_PLACEHOLDER = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")


def audit_templates(templates: Sequence[str], *, nodes: NodeMap = None, value: str = "42",
                    command: str = "MGET") -> Report:  # fmt: skip
    """Audit key templates: ``<name>`` marks a variable part (``group:<group_id>:members``);
    braces stay hash tags (``{group:<group_id>}:members``). Each distinct placeholder name is
    filled with its own value, the same one wherever the name recurs: the first name seen
    with ``value``, the next ones with ``value`` + 1, + 2... (``value`` followed by 2, 3...
    when it is not a number), so ``<group_id>`` and ``<user_id>`` never look alike. All the
    keys go in one ``command``: the report says whether one id's keys share a slot, what each
    setting does if they do not, and a tag only where the keys share an id."""
    for template in templates:
        if "<" in template.replace("<n>", "") and not _PLACEHOLDER.search(template):
            raise ValueError(
                f"template {template!r}: write a variable part as <name> (letters, digits, _)"
            )
    values: dict[str, str] = {}

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            i = len(values)
            if i == 0:
                values[name] = value
            else:
                values[name] = str(int(value) + i) if value.isdigit() else f"{value}{i + 1}"
        return values[name]

    keys = [_PLACEHOLDER.sub(fill, t) for t in templates]
    return audit_keys(keys, nodes=nodes, command=command)
