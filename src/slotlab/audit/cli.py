"""``slotlab audit FILE|- [--format text|json|junit] [--nodes N|redis://host:port]``.

Exit status: 0 no hazard, 1 hazards found, 2 bad input (one line on stderr naming the problem,
and the line number for a malformed line).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

FORMATS: Final = ("text", "json", "junit")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``audit`` subcommand's arguments."""
    parser.add_argument("file", metavar="FILE",
                        help="a MONITOR capture or one command per line; - reads stdin")
    parser.add_argument("--format", default="text", metavar="text|json|junit",
                        help="how to print the report (default: text)")
    parser.add_argument("--nodes", default=None, metavar="N|redis://host:port",
                        help="the slot layout: N masters split as redis-cli --cluster create "
                             "does (default 3), or a live cluster node to read CLUSTER SLOTS "
                             "from")  # fmt: skip
    parser.add_argument("--source", default="auto", metavar="auto|monitor|commands",
                        help="the input's format (default: auto, told apart per line)")


def _nodes(spec: str | None) -> Any:
    if spec is None:
        return None
    if spec.isdigit():
        n = int(spec)
        if not 1 <= n <= 16384:
            raise ValueError(f"--nodes {spec}: a cluster has 1 to 16384 masters")
        return n
    if spec.startswith("redis://"):
        import redis

        client = redis.Redis.from_url(spec, socket_timeout=5)
        try:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        except redis.RedisError as exc:
            raise ValueError(f"--nodes {spec}: cannot read CLUSTER SLOTS ({exc})") from None
        finally:
            client.close()
        names = ["(unassigned)"] * 16384
        for lo, hi, master, *_replicas in ranges:
            host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
            for slot in range(int(lo), int(hi) + 1):
                names[slot] = f"{host}:{int(master[1])}"
        return names
    raise ValueError(f"--nodes {spec!r}: give a number of masters or a redis://host:port URL")


def run(args: argparse.Namespace) -> int:
    """Audit ``args.file``; print the report; the exit status."""
    from slotlab.audit import BadInput, audit_file, audit_lines

    if args.format not in FORMATS:
        raise ValueError(f"--format {args.format!r}: choose one of {', '.join(FORMATS)}")
    nodes = _nodes(args.nodes)
    name = "stdin" if args.file == "-" else args.file
    try:
        if args.file == "-":
            report = audit_lines(sys.stdin.buffer, nodes=nodes, source=args.source)
        else:
            report = audit_file(args.file, nodes=nodes, source=args.source)
    except BadInput as exc:
        text = str(exc)
        raise ValueError(f"{name}: {text}" if text.startswith("line ") else text) from None
    if report.commands == 0:
        raise ValueError(f"{name}: no command in it (empty, or only blank lines and comments); "
                         f"record one with redis-cli MONITOR")  # fmt: skip
    out = {"text": report.text, "json": report.to_json, "junit": report.junit}[args.format]()
    sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return 0 if report.ok else 1
