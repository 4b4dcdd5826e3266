"""Server introspection: INFO, COMMAND (from the server's own table), ROLE, WAIT."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from typing import Any

from slotlab import commands, errors
from slotlab.backends.emulated.client import _Client
from slotlab.backends.emulated.compat import FAKEREDIS_VERSION
from slotlab.backends.emulated.helpers import HOST, REDIS_VERSION, _from_fake, _ll, _text
from slotlab.backends.emulated.registry import _handles
from slotlab.commands import CommandSpec
from slotlab.resp import (
    ErrorReply,
    RespSet,
    SimpleString,
    Verbatim,
)


@_handles("wait")
def _wait(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if _ll(argv[1]) is None or _ll(argv[2]) is None:
        return ErrorReply(errors.NOT_INTEGER)
    if c.node.is_replica:
        return ErrorReply(errors.WAIT_ON_REPLICA)
    return len(c.node.replicas)


@_handles("role")
def _role(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    node = c.node
    if node.master is not None:
        return [b"slave", HOST.encode(), node.master.port, b"connected", node.repl_offset()]
    return [
        b"master",
        node.repl_offset(),
        [[HOST.encode(), str(r.port).encode(), str(r.repl_offset()).encode()]
         for r in node.replicas],
    ]  # fmt: skip




@_handles("config|set")
def _config_set(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    """CONFIG SET: the server refuses immutable and protected configs (``dir``,
    ``enable-module-command``...); the rest goes to fakeredis."""
    refused = commands.config_set_refusal(argv)
    if refused is not None:
        return ErrorReply(refused)
    return _from_fake(c.fake(argv))


def _spec_by_name(name: bytes) -> CommandSpec | None:
    """``lookupCommandBySds``: ``get`` or ``config|get``."""
    parts = name.lower().split(b"|")
    if len(parts) > 2:
        return None
    base = commands.command_table().get(parts[0].decode("utf-8", "replace"))
    if base is None or len(parts) == 1:
        return base
    return base.subcommands.get(parts[1].decode("utf-8", "replace"))


@_handles("command")
def _command(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return [s.reply() for s in commands.command_table().values()]


@_handles("command|count")
def _command_count(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return len(commands.command_table())


@_handles("command|info")
def _command_info(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    if len(argv) == 2:
        return _command(c, spec, argv)
    out = []
    for name in argv[2:]:
        found = _spec_by_name(name)
        out.append(found.reply() if found is not None else None)
    return out


@_handles("command|docs")
def _command_docs(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    return {}  # the emulator carries no documentation (see docs/emulated.md)


@_handles("command|list")
def _command_list(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    import fnmatch

    every: list[CommandSpec] = []
    for top in commands.command_table().values():
        every.append(top)
        every.extend(top.subcommands.values())
    if len(argv) == 2:
        return [s.name.encode() for s in every]
    if len(argv) != 5 or argv[2].lower() != b"filterby":
        return ErrorReply(errors.SYNTAX)
    kind, value = argv[3].lower(), argv[4]
    if kind == b"module":
        return []
    if kind == b"aclcat":
        cat = "@" + _text(value).lower()
        return [s.name.encode() for s in every if cat in s.acl_categories]
    if kind == b"pattern":
        pattern = _text(value)
        return [s.name.encode() for s in every if fnmatch.fnmatchcase(s.name, pattern)]
    return ErrorReply(errors.SYNTAX)


@_handles("command|getkeys", "command|getkeysandflags")
def _command_getkeys(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    inner = argv[2:]
    cmd = commands.lookup(inner)
    if cmd is None:
        return ErrorReply(errors.GETKEYS_INVALID_COMMAND)
    if not commands.has_keys(cmd):
        return ErrorReply(errors.GETKEYS_NO_KEYS)
    if not cmd.check_arity(len(inner)):
        return ErrorReply(errors.GETKEYS_ARITY)
    positions = commands.spec_keys(cmd, inner)
    if not positions:
        if "no_mandatory_keys" in cmd.flags:
            return []
        return ErrorReply(errors.GETKEYS_INVALID_ARGS)
    if spec.name == "command|getkeys":
        return [inner[p] for p in positions]
    out = []
    for p in positions:
        flags = _key_flags(cmd, inner, p)
        out.append([inner[p], RespSet(SimpleString(f) for f in flags)])
    return out


_FLAG_ORDER = ("RO", "RW", "OW", "RM", "access", "update", "insert", "delete", "not_key",
               "incomplete", "variable_flags")  # fmt: skip


def _key_flags(cmd: CommandSpec, argv: Sequence[bytes], pos: int) -> list[str]:
    """The access flags COMMAND GETKEYSANDFLAGS reports for the key at ``pos``."""
    name = cmd.name
    if name == "set":
        get = any(a.lower() == b"get" for a in argv[3:])
        wanted = {"RW", "access", "update"} if get else {"OW", "update"}
    elif name == "bitfield":
        wanted = {"RO", "access"} if all(
            a.lower() in (b"get", b"overflow") or not a.isalpha() for a in argv[2:]
        ) else {"RW", "access", "update"}
    elif name in ("sort", "sort_ro"):
        wanted = {"RO", "access"} if pos == 1 else {"OW", "update"}
    elif name == "migrate":
        wanted = {"RW", "access", "delete"}
    else:
        for ks in cmd.key_specs:
            if ks.begin == "index" and ks.index == pos and ks.find == "range":
                wanted = set(ks.flags)
                break
        else:
            wanted = set(cmd.key_specs[-1].flags) if cmd.key_specs else set()
        wanted.discard("variable_flags")
        wanted.discard("incomplete")
    return [f for f in _FLAG_ORDER if f in wanted]




def _info_sections(c: _Client) -> dict[str, list[str]]:
    node = c.node
    uptime = int(time.time() - node.started)
    with node.store.lock:
        keys = node.store.key_count()
        expires = node.store.expires_count()
    role = "slave" if node.is_replica else "master"
    replication = [f"role:{role}"]
    if node.master is not None:
        replication += [
            f"master_host:{HOST}",
            f"master_port:{node.master.port}",
            "master_link_status:up",
            "master_last_io_seconds_ago:0",
            "master_sync_in_progress:0",
            f"slave_read_repl_offset:{node.repl_offset()}",
            f"slave_repl_offset:{node.repl_offset()}",
            "slave_priority:100",
            "slave_read_only:1",
            "replica_announced:1",
            "connected_slaves:0",
        ]
    else:
        replication.append(f"connected_slaves:{len(node.replicas)}")
        for i, r in enumerate(node.replicas):
            replication.append(
                f"slave{i}:ip={HOST},port={r.port},state=online,offset={r.repl_offset()},lag=0"
            )
    replication += [
        "master_failover_state:no-failover",
        f"master_repl_offset:{node.repl_offset()}",
    ]
    return {
        "server": [
            f"redis_version:{REDIS_VERSION}",
            "redis_git_sha1:00000000",
            "redis_git_dirty:0",
            "redis_mode:cluster",
            f"os:slotlab emulated cluster (fakeredis {FAKEREDIS_VERSION})",
            f"process_id:{os.getpid()}",
            f"run_id:{hashlib.sha1(node.node_id.encode()).hexdigest()}",
            f"tcp_port:{node.port}",
            f"uptime_in_seconds:{uptime}",
            f"uptime_in_days:{uptime // 86400}",
            "executable:slotlab-emulated",
            "config_file:",
        ],
        "clients": [f"connected_clients:{len(node.clients)}", "blocked_clients:0"],
        "memory": ["used_memory:0", "used_memory_human:0B", "maxmemory:0",
                   "maxmemory_policy:noeviction"],  # fmt: skip
        "persistence": ["loading:0", "rdb_changes_since_last_save:0", "aof_enabled:0"],
        "stats": [f"total_commands_processed:{node.stat_commands}"],
        "replication": replication,
        "cpu": [],
        "modules": [],
        "errorstats": [],
        "cluster": ["cluster_enabled:1"],
        "keyspace": [f"db0:keys={keys},expires={expires},avg_ttl=0"] if keys else [],
    }


_INFO_DEFAULT = ("server", "clients", "memory", "persistence", "stats", "replication", "cpu",
                 "modules", "errorstats", "cluster", "keyspace")  # fmt: skip


@_handles("info")
def _info(c: _Client, spec: CommandSpec, argv: list[bytes]) -> Any:
    sections = _info_sections(c)
    wanted: list[str] = []
    for a in argv[1:] or [b"default"]:
        name = _text(a).lower()
        if name in ("default", "all", "everything"):
            wanted += [s for s in _INFO_DEFAULT if s not in wanted]
        elif name in sections and name not in wanted:
            wanted.append(name)
    parts = []
    for name in wanted:
        title = name.capitalize() if name != "cpu" else "CPU"
        if name == "errorstats":
            title = "Errorstats"
        parts.append("# " + title + "\r\n" + "".join(line + "\r\n" for line in sections[name]))
    return Verbatim("\r\n".join(parts))
