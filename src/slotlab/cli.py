"""The ``slotlab`` command: which backends this machine has, and where keys live.

    slotlab backends          the backends this machine can run, one a line
    slotlab doctor            what slotlab found, and how to get what is missing
    slotlab keyslot KEY...    each key's hash slot, computed the way the server does
    slotlab lab up|status|down  a lab that outlives a notebook's kernel (notebooks attach to it)
    slotlab audit FILE|-      the cross-slot hazards in a MONITOR capture (exit 0, 1 or 2)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from slotlab.backends.real import RedisServerNotFound, find_redis_server
from slotlab.slots import hash_tag, key_slot


def available_backends() -> list[str]:
    """The backends that can start here: ``real`` when a redis-server 7.0+ is found, and
    ``emulated`` when its module is present."""
    found: list[str] = []
    try:
        find_redis_server()
        found.append("real")
    except RedisServerNotFound:
        if os.environ.get("SLOTLAB_REDIS_SERVER"):
            raise  # a server asked for by name that does not run: say so, never fall back
    if importlib.util.find_spec("slotlab.backends.emulated") is not None:
        found.append("emulated")
    return found


def _backends(_: argparse.Namespace) -> int:
    found = available_backends()
    if "real" not in found and os.environ.get("SLOTLAB_REQUIRE_REAL", "") not in ("", "0"):
        try:
            find_redis_server()
        except RedisServerNotFound as exc:
            print(f"slotlab: SLOTLAB_REQUIRE_REAL is set, but {exc}", file=sys.stderr)
        return 1
    if not found:
        print("slotlab: no backend can start on this machine", file=sys.stderr)
        return 1
    print("\n".join(found))
    return 0


def _doctor(_: argparse.Namespace) -> int:
    from slotlab.doctor import run

    return run()


def _keyslot(args: argparse.Namespace) -> int:
    # The shell passes bytes; Python reads those that are not UTF-8 as surrogates
    # (surrogateescape), and key_slot hashes them back as the very bytes the server would get.
    for key in args.keys:
        tag = hash_tag(key)
        how = f"hash tag {tag.decode(errors='backslashreplace')!r}" if tag else "whole key"
        shown = key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        print(f"{key_slot(key):5d}  {shown}  ({how})")
    return 0


def _lab(args: argparse.Namespace) -> int:
    from slotlab import lab_daemon

    try:
        if args.action == "up":
            lab_daemon.up(args.name, args.masters, args.replicas, args.backend)
            return lab_daemon.status(args.name)
        if args.action == "status":
            return lab_daemon.status(args.name)
        return lab_daemon.down(args.name)
    except (lab_daemon.LabNotFound, FileExistsError, RuntimeError, PermissionError) as exc:
        print(f"slotlab lab {args.action}: {exc}", file=sys.stderr)
        return 1


def _add_lab_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = sub.add_parser("lab", help="start, show or stop a lab that outlives a kernel")
    actions = lab.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start a lab that stays until `slotlab lab down`")
    up.add_argument("--masters", type=int, default=3)
    up.add_argument("--replicas", type=int, default=0, help="per master")
    up.add_argument("--backend", help="real, emulated or auto (default: $SLOTLAB_BACKEND or auto)")
    st = actions.add_parser("status", help="nodes, slots, keys, who is attached, how to connect")
    dn = actions.add_parser("down", help="stop a lab: its own processes only")
    for p, default in ((up, "default"), (st, None), (dn, "default")):
        p.add_argument("--name", default=default,
                       help="the lab's name (default: " + (default or "every lab") + ")")
    lab.set_defaults(func=_lab)


def _audit(args: argparse.Namespace) -> int:
    from slotlab.audit import cli as audit_cli

    return audit_cli.run(args)


def main(argv: list[str] | None = None) -> int:
    """Run the ``slotlab`` command line."""
    parser = argparse.ArgumentParser(prog="slotlab", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backends", help="list the backends this machine can run").set_defaults(
        func=_backends
    )
    sub.add_parser("doctor", help="check what the course needs, say what to fix").set_defaults(
        func=_doctor
    )
    ks = sub.add_parser("keyslot", help="print each key's hash slot")
    ks.add_argument("keys", nargs="+", metavar="KEY")
    ks.set_defaults(func=_keyslot)
    _add_lab_parser(sub)
    from slotlab.audit.cli import add_arguments as audit_arguments

    au = sub.add_parser("audit", help="find the cross-slot hazards in a command capture")
    audit_arguments(au)
    au.set_defaults(func=_audit)
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except (ValueError, TypeError, RedisServerNotFound) as exc:
        # A clear line, never a traceback: the message names the problem and the fix.
        print(f"slotlab {args.command}: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
