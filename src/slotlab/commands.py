"""Where each Redis command keeps its keys, read from the server's own command table.

A cluster node must find the keys of every command before it runs it: all keys must hash to one
slot (else ``CROSSSLOT``) and that slot must be served here (else ``MOVED``). Redis 7 publishes
how it finds them through ``COMMAND``: the legacy *first key, last key, step* triple and the
richer *key specs*. ``command_table.json`` is that reply from a real Redis 7.0 server
(regenerate it with ``tests/regen_command_table.py``); this module reads it and finds keys the
way the server does:

- ``cluster_keys()`` mirrors ``getKeysFromCommand()`` (db.c), what the cluster code uses: the
  command's *getkeys procedure* where it has one (EVAL, ZUNIONSTORE, XREAD, SORT, MIGRATE, ...),
  else the legacy range. Procedures are code in the server, not data, so they are mirrored here.
- ``spec_keys()`` mirrors ``getKeysFromCommandWithSpecs()``, what ``COMMAND GETKEYS`` answers.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from slotlab import errors
from slotlab.resp import RespSet, SimpleString

__all__ = [
    "CommandSpec",
    "KeySpec",
    "cluster_keys",
    "command_table",
    "from_json",
    "lookup",
    "redis_version",
    "spec_keys",
]


def from_json(node: Any) -> Any:
    """Turn the table's typed JSON back into reply values for ``slotlab.resp.encode``.

    ``"$x"`` is a bulk string, ``"+x"`` a simple string, ``{"%": [...]}`` a map (a dict),
    ``{"~": [...]}`` a set (``RespSet``, which keeps the server's order).
    """
    if isinstance(node, str):
        return SimpleString(node[1:]) if node[0] == "+" else node[1:].encode()
    if isinstance(node, list):
        return [from_json(x) for x in node]
    if isinstance(node, dict):
        if "%" in node:
            items = node["%"]
            return {from_json(items[i]): from_json(items[i + 1]) for i in range(0, len(items), 2)}
        return RespSet(from_json(x) for x in node["~"])
    return node


def _plain(node: Any) -> Any:
    """The typed JSON as plain Python (str for both string kinds), for reading specs."""
    if isinstance(node, str):
        return node[1:]
    if isinstance(node, list):
        return [_plain(x) for x in node]
    if isinstance(node, dict):
        if "%" in node:
            items = node["%"]
            return {_plain(items[i]): _plain(items[i + 1]) for i in range(0, len(items), 2)}
        return [_plain(x) for x in node["~"]]
    return node


@dataclass(frozen=True)
class KeySpec:
    """One key spec: where to start looking (an index or a keyword) and how to take keys."""

    flags: frozenset[str]
    begin: str  # "index", "keyword" or "unknown"
    index: int = 0
    keyword: bytes = b""
    startfrom: int = 0
    find: str = "unknown"  # "range", "keynum" or "unknown"
    lastkey: int = 0
    keystep: int = 1
    limit: int = 0
    keynumidx: int = 0
    firstkey: int = 0


@dataclass(frozen=True)
class CommandSpec:
    """A command (or subcommand) as ``COMMAND`` describes it."""

    name: str  # full name, e.g. "get" or "cluster|keyslot"
    arity: int
    flags: frozenset[str]
    first: int
    last: int
    step: int
    acl_categories: tuple[str, ...]
    key_specs: tuple[KeySpec, ...]
    subcommands: dict[str, CommandSpec] = field(default_factory=dict, compare=False)
    raw: Any = field(default=None, compare=False, repr=False)

    @property
    def is_container(self) -> bool:
        """True for commands such as CLUSTER and CONFIG that only dispatch to subcommands."""
        return bool(self.subcommands)

    @property
    def has_key_specs(self) -> bool:
        """True when the cluster must check this command's keys (``key_specs_num > 0``)."""
        return bool(self.key_specs)

    def check_arity(self, argc: int) -> bool:
        """The server's arity rule: exactly ``arity`` args, or at least ``-arity`` when negative."""
        return not ((self.arity > 0 and self.arity != argc) or argc < -self.arity)

    def reply(self) -> Any:
        """This command's entry in the ``COMMAND`` / ``COMMAND INFO`` reply."""
        return from_json(self.raw)


def _key_spec(m: dict[str, Any]) -> KeySpec:
    bs, fk = m["begin_search"], m["find_keys"]
    spec: dict[str, Any] = {"flags": frozenset(m.get("flags", [])), "begin": bs["type"]}
    if bs["type"] == "index":
        spec["index"] = bs["spec"]["index"]
    elif bs["type"] == "keyword":
        spec["keyword"] = bs["spec"]["keyword"].encode()
        spec["startfrom"] = bs["spec"]["startfrom"]
    spec["find"] = fk["type"]
    if fk["type"] == "range":
        spec.update(
            lastkey=fk["spec"]["lastkey"], keystep=fk["spec"]["keystep"], limit=fk["spec"]["limit"]
        )
    elif fk["type"] == "keynum":
        spec.update(
            keynumidx=fk["spec"]["keynumidx"],
            firstkey=fk["spec"]["firstkey"],
            keystep=fk["spec"]["keystep"],
        )
    return KeySpec(**spec)


def _command(raw: list[Any]) -> CommandSpec:
    plain = _plain(raw)
    subs = {}
    if isinstance(raw[9], list):
        for sub_raw in raw[9]:
            sub = _command(sub_raw)
            subs[sub.name.split("|", 1)[1]] = sub
    return CommandSpec(
        name=plain[0],
        arity=plain[1],
        flags=frozenset(plain[2]),
        first=plain[3],
        last=plain[4],
        step=plain[5],
        acl_categories=tuple(plain[6]),
        key_specs=tuple(_key_spec(m) for m in plain[8]),
        subcommands=subs,
        raw=raw,
    )


@lru_cache(maxsize=1)
def _load() -> tuple[str, dict[str, CommandSpec]]:
    text = resources.files("slotlab").joinpath("command_table.json").read_text()
    data = json.loads(text)
    table = {}
    for raw in data["commands"]:
        spec = _command(raw)
        table[spec.name] = spec
    return data["redis_version"], table


def command_table() -> dict[str, CommandSpec]:
    """Every top-level command of the Redis version the table came from, by lower-case name."""
    return _load()[1]


def redis_version() -> str:
    """The version of the server whose ``COMMAND`` reply the table holds, e.g. ``7.0.15``."""
    return _load()[0]


def _lower(name: bytes) -> str:
    return name.decode("utf-8", "replace").lower()


def lookup(argv: Sequence[bytes]) -> CommandSpec | None:
    """The command ``argv`` runs, as the server's ``lookupCommand()`` finds it.

    A container (CLUSTER, CONFIG, ...) with no subcommand argument is returned itself (its arity
    then fails); an unknown subcommand gives None.
    """
    base = command_table().get(_lower(argv[0]))
    if base is None or len(argv) == 1 or not base.subcommands:
        return base
    return base.subcommands.get(_lower(argv[1]))


def is_container(name: bytes) -> bool:
    """True when ``name`` is a command with subcommands (for the 'unknown subcommand' error)."""
    base = command_table().get(_lower(name))
    return base is not None and base.is_container


# ---- the server's number parsing --------------------------------------------------------------

_LL = re.compile(rb"-?[1-9][0-9]*|0")


def string2ll(data: bytes) -> int | None:
    """Redis's strict integer parse (``string2ll``): no spaces, no '+', no leading zeros."""
    if not _LL.fullmatch(data):
        return None
    value = int(data)
    return value if -(2**63) <= value < 2**63 else None


def atoi(data: bytes) -> int:
    """C's ``atoi``: leading spaces, a sign, then digits; anything else stops it (0 if none)."""
    m = re.match(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)", data)
    if not m:
        return 0
    value = int(m[1])
    return max(min(value, 2**31 - 1), -(2**31))


# ---- getkeys procedures (db.c), mirrored ------------------------------------------------------


def _generic(store: int, count_at: int, first: int, step: int, argv: Sequence[bytes]) -> list[int]:
    """``genericGetKeys``: a numkeys argument, then that many keys, plus an optional store key."""
    argc = len(argv)
    num = atoi(argv[count_at])
    if num < 1 or num > (argc - first) // step:
        return []
    keys = [first + i * step for i in range(num)]
    if store:
        keys.append(store)
    return keys


def _sort_keys(argv: Sequence[bytes]) -> list[int]:
    keys = [1]
    store = 0
    skip = {b"limit": 2, b"get": 1, b"by": 1}
    i = 2
    argc = len(argv)
    while i < argc:
        arg = argv[i].lower()
        if arg in skip:
            i += skip[arg]
        elif arg == b"store" and i + 1 < argc:
            store = i + 1
        i += 1
    return keys + ([store] if store else [])


def _migrate_keys(argv: Sequence[bytes]) -> list[int]:
    argc = len(argv)
    first, num = 3, 1
    if argc > 6:
        skip = {b"copy": 0, b"replace": 0, b"auth": 1, b"auth2": 2}
        i = 6
        while i < argc:
            arg = argv[i].lower()
            if arg == b"keys":
                if len(argv[3]) > 0:
                    num = 0
                else:
                    first = i + 1
                    num = argc - first
                break
            i += skip.get(arg, 0)
            i += 1
    return [first + i for i in range(num)]


def _georadius_keys(argv: Sequence[bytes]) -> list[int]:
    stored = -1
    i = 5
    argc = len(argv)
    while i < argc:
        if argv[i].lower() in (b"store", b"storedist") and i + 1 < argc:
            stored = i + 1
            i += 1
        i += 1
    return [1] if stored == -1 else [1, stored]


def _xread_keys(argv: Sequence[bytes]) -> list[int]:
    argc = len(argv)
    streams = -1
    i = 1
    while i < argc:
        arg = argv[i].lower()
        if arg in (b"block", b"count"):
            i += 1
        elif arg == b"group":
            i += 2
        elif arg == b"noack":
            pass
        elif arg == b"streams":
            streams = i
            break
        else:
            break
        i += 1
    num = argc - streams - 1 if streams != -1 else 0
    if streams == -1 or num == 0 or num % 2 != 0:
        return []
    num //= 2
    return list(range(streams + 1, argc - num))


_PROCS: dict[str, Callable[[Sequence[bytes]], list[int]]] = {
    "bitfield": lambda argv: [1],
    "set": lambda argv: [1],
    "sintercard": lambda argv: _generic(0, 1, 2, 1, argv),
    "zunion": lambda argv: _generic(0, 1, 2, 1, argv),
    "zinter": lambda argv: _generic(0, 1, 2, 1, argv),
    "zdiff": lambda argv: _generic(0, 1, 2, 1, argv),
    "zintercard": lambda argv: _generic(0, 1, 2, 1, argv),
    "zunionstore": lambda argv: _generic(1, 2, 3, 1, argv),
    "zinterstore": lambda argv: _generic(1, 2, 3, 1, argv),
    "zdiffstore": lambda argv: _generic(1, 2, 3, 1, argv),
    "eval": lambda argv: _generic(0, 2, 3, 1, argv),
    "evalsha": lambda argv: _generic(0, 2, 3, 1, argv),
    "eval_ro": lambda argv: _generic(0, 2, 3, 1, argv),
    "evalsha_ro": lambda argv: _generic(0, 2, 3, 1, argv),
    "fcall": lambda argv: _generic(0, 2, 3, 1, argv),
    "fcall_ro": lambda argv: _generic(0, 2, 3, 1, argv),
    "lmpop": lambda argv: _generic(0, 1, 2, 1, argv),
    "blmpop": lambda argv: _generic(0, 2, 3, 1, argv),
    "zmpop": lambda argv: _generic(0, 1, 2, 1, argv),
    "bzmpop": lambda argv: _generic(0, 2, 3, 1, argv),
    "sort": _sort_keys,
    "sort_ro": lambda argv: [1],
    "migrate": _migrate_keys,
    "georadius": _georadius_keys,
    "georadiusbymember": _georadius_keys,
    "xread": _xread_keys,
    "xreadgroup": _xread_keys,
}
"""Commands with a getkeys procedure in Redis 7.0 (``src/commands.c``), by name."""


def _legacy_range(spec: CommandSpec, argc: int) -> list[int]:
    """``getKeysUsingLegacyRangeSpec``: COMMAND's first/last/step; no keys if args run out."""
    if spec.first == 0:
        return []
    last = spec.last if spec.last >= 0 else argc + spec.last
    keys = []
    for j in range(spec.first, last + 1, spec.step):
        if j >= argc:
            return []  # a variadic command given too few arguments: it will report the error
        keys.append(j)
    return keys


def cluster_keys(spec: CommandSpec, argv: Sequence[bytes]) -> list[int]:
    """Positions in ``argv`` of the keys the cluster checks (``getKeysFromCommand``)."""
    proc = _PROCS.get(spec.name)
    if proc is not None:
        return proc(argv)
    return _legacy_range(spec, len(argv))


class _InvalidSpec(Exception):
    pass


def _from_key_specs(spec: CommandSpec, argv: Sequence[bytes]) -> list[tuple[int, KeySpec]]:
    """``getKeysUsingKeySpecs``: raises _InvalidSpec where the server returns -1."""
    argc = len(argv)
    found: list[tuple[int, KeySpec]] = []
    for ks in spec.key_specs:
        if "not_key" in ks.flags:
            continue
        if ks.begin == "index":
            first = ks.index
        elif ks.begin == "keyword":
            first = 0
            start = ks.startfrom if ks.startfrom > 0 else argc + ks.startfrom
            end = argc - 1 if ks.startfrom > 0 else 1
            i = start
            while i != end:
                if i >= argc or i < 1:
                    break
                if argv[i].lower() == ks.keyword.lower():
                    first = i + 1
                    break
                i = i + 1 if start <= end else i - 1
            if not first:
                continue
        else:
            raise _InvalidSpec
        if ks.find == "range":
            step = ks.keystep
            if ks.lastkey >= 0:
                last = first + ks.lastkey
            elif not ks.limit:
                last = argc + ks.lastkey
            else:
                last = first + ((argc - first) // ks.limit + ks.lastkey)
        elif ks.find == "keynum":
            step = ks.keystep
            if ks.keynumidx >= argc or first + ks.keynumidx >= argc:
                raise _InvalidSpec
            numkeys = string2ll(argv[first + ks.keynumidx])
            if numkeys is None or numkeys < 0:
                raise _InvalidSpec
            first += ks.firstkey
            last = first + numkeys - 1
        else:
            raise _InvalidSpec
        if last >= argc or last < first or first >= argc:
            raise _InvalidSpec
        for i in range(first, last + 1, step):
            if i >= argc:
                continue
            found.append((i, ks))
        if "incomplete" in ks.flags:
            raise _InvalidSpec
    return found


def spec_keys(spec: CommandSpec, argv: Sequence[bytes]) -> list[int]:
    """Positions of the keys as ``COMMAND GETKEYS`` finds them (``getKeysFromCommandWithSpecs``)."""
    has_keyspec = any("not_key" not in ks.flags for ks in spec.key_specs)
    has_varflags = any("variable_flags" in ks.flags for ks in spec.key_specs)
    if has_keyspec and not has_varflags:
        try:
            return [pos for pos, _ in _from_key_specs(spec, argv)]
        except _InvalidSpec:
            pass
    proc = _PROCS.get(spec.name)
    return proc(argv) if proc is not None else []


def has_keys(spec: CommandSpec) -> bool:
    """``doesCommandHaveKeys``: a getkeys procedure, or a key spec that is a real key."""
    return spec.name in _PROCS or any("not_key" not in ks.flags for ks in spec.key_specs)


# ---- processCommand's checks, HELLO and client names: shared by the emulator and the proxy ----


def c_string(data: bytes) -> str:
    """Bytes from the client as text for an error message (C-string semantics: stop at NUL)."""
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def existence_error(argv: Sequence[bytes]) -> str:
    """``processCommand``'s text for a command (or subcommand) the server does not know."""
    if is_container(argv[0]) and len(argv) > 1:
        return errors.UNKNOWN_SUBCOMMAND.format(
            sub=c_string(argv[1][:128]), container=c_string(argv[0]).upper()
        )
    args = b""
    for a in argv[1:]:
        if len(args) >= 128:
            break
        args += b"'" + a.split(b"\0", 1)[0][: 128 - len(args)] + b"' "
    return errors.UNKNOWN_COMMAND.format(
        name=c_string(argv[0][:128]), args=args.decode("utf-8", "replace")
    )


def arity_error(name: str) -> str:
    """The server's text for a wrong number of arguments (``name`` as COMMAND spells it)."""
    return errors.WRONG_ARITY.format(name=name)


def check_command(argv: Sequence[bytes]) -> tuple[CommandSpec | None, str | None]:
    """``processCommand``'s first two checks: the command exists, with a valid arity.

    Returns the command and None, or None/the command and the server's error text.
    """
    spec = lookup(argv)
    if spec is None:
        return None, existence_error(argv)
    if not spec.check_arity(len(argv)):
        return spec, arity_error(spec.name)
    return spec, None


def bad_client_name(name: bytes) -> bool:
    """``clientSetNameOrReply``: a name is printable ASCII without spaces (or empty)."""
    return any(ch < 0x21 or ch > 0x7E for ch in name)


# ---- authentication: one rule for the emulated nodes, the emulated standalone and the proxy ----


def is_security_attack(argv: Sequence[bytes]) -> bool:
    """``processCommand``'s first check: a request whose first word is ``POST`` or ``Host:`` is an
    HTTP request (a web page reaching a loopback port): the server logs
    ``errors.SECURITY_ATTACK_LOG`` and drops the connection, before any other check or reply."""
    return bool(argv) and argv[0].lower() in (b"post", b"host:")


_last_security_warning = [0.0]


def security_warning(log: logging.Logger) -> None:
    """``securityWarningCommand``: log the server's warning, at most once a minute."""
    now = time.monotonic()
    if not _last_security_warning[0] or now - _last_security_warning[0] > 60:
        _last_security_warning[0] = now
        log.warning("%s", errors.SECURITY_ATTACK_LOG)


def credentials_ok(user: bytes, given: bytes, password: str | None) -> bool:
    """``ACLCheckUserCredentials`` for the one user a slotlab server has, ``default``: with no
    password (``nopass``) any password passes; else it must be ``password``."""
    if user != b"default":
        return False
    if password is None:
        return True
    return hmac.compare_digest(given, password.encode())


def auth_required(spec: CommandSpec, authenticated: bool) -> str | None:
    """``processCommand``'s check after lookup and arity: a client that has not authenticated may
    run only the ``no_auth`` commands (AUTH, HELLO, QUIT, RESET); the server's text otherwise."""
    if authenticated or "no_auth" in spec.flags:
        return None
    return errors.NOAUTH


def check_auth(argv: Sequence[bytes], password: str | None) -> str | None:
    """``authCommand``: ``AUTH <password>`` or ``AUTH <user> <password>``. None when the client is
    now authenticated, else the server's error text (the client's state does not change)."""
    if len(argv) > 3:
        return errors.SYNTAX
    if len(argv) == 2:
        if password is None:
            return errors.AUTH_NO_PASSWORD
        user, given = b"default", argv[1]
    else:
        user, given = argv[1], argv[2]
    return None if credentials_ok(user, given, password) else errors.WRONGPASS


def authenticated_after_reset(password: str | None) -> bool:
    """``clientSetDefaultAuth`` (RESET, a new connection): authenticated only with no password."""
    return password is None


# ---- CONFIG SET: the configs a running server refuses to change (config.c, 7.0) -----------------

#: ``IMMUTABLE_CONFIG``: set only at startup.
IMMUTABLE_CONFIGS: frozenset[str] = frozenset({
    "rdbchecksum", "daemonize", "io-threads-do-reads", "always-show-logo", "set-proc-title",
    "syslog-enabled", "cluster-enabled", "disable-thp", "aclfile", "unixsocket", "pidfile",
    "cluster-config-file", "syslog-ident", "appendfilename", "appenddirname", "server_cpulist",
    "bio_cpulist", "aof_rewrite_cpulist", "bgsave_cpulist", "logfile", "supervised",
    "syslog-facility", "enable-protected-configs", "enable-debug-command",
    "enable-module-command", "databases", "io-threads", "tcp-backlog", "cluster-port",
    "unixsocketperm", "socket-mark-id", "replicaof", "slaveof",
})  # fmt: skip
#: ``PROTECTED_CONFIG`` (with ``enable-protected-configs no``, the default): where the server
#: writes files, so a client cannot make it write one elsewhere (``CONFIG SET dir /etc``).
PROTECTED_CONFIGS: frozenset[str] = frozenset({"dir", "dbfilename"})


def config_set_refusal(argv: Sequence[bytes]) -> str | None:
    """``configSetCommand``'s refusal of an immutable or protected config, or None.

    Only the first refused name counts, as in the server; other problems (an odd number of
    arguments, an unknown name before it) are left to the config code itself.
    """
    if len(argv) % 2:
        return None
    for i in range(2, len(argv), 2):
        name = argv[i].decode("utf-8", "replace").lower()
        if name in IMMUTABLE_CONFIGS:
            why = errors.CONFIG_IMMUTABLE
        elif name in PROTECTED_CONFIGS:
            why = errors.CONFIG_PROTECTED
        else:
            continue
        return errors.CONFIG_SET_REFUSED.format(name=c_string(argv[i]), why=why)
    return None


@dataclass(frozen=True)
class Hello:
    """What a valid HELLO asks for: the protocol (0: keep the current one) and a name."""

    protocol: int
    name: bytes | None
    #: True when HELLO's AUTH option authenticated the client
    authenticated: bool = False


def parse_hello(
    argv: Sequence[bytes], password: str | None = None, authenticated: bool = True
) -> Hello | str:
    """``helloCommand``'s checks, in the server's order: a Hello, or the server's error text.

    ``AUTH <user> <pass>`` passes for the ``default`` user with ``password`` (any password when
    it is None); a client not ``authenticated`` before must authenticate this way.
    """
    logged_in = False
    version = 0
    j = 1
    if len(argv) >= 2:
        v = string2ll(argv[1])
        if v is None:
            return errors.HELLO_PROTO_NOT_INT
        if v < 2 or v > 3:
            return errors.NOPROTO
        version = v
        j = 2
    name: bytes | None = None
    while j < len(argv):
        more = len(argv) - 1 - j
        opt = argv[j].lower()
        if opt == b"auth" and more >= 2:
            if not credentials_ok(argv[j + 1], argv[j + 2], password):
                return errors.WRONGPASS
            logged_in = True
            j += 2
        elif opt == b"setname" and more:
            name = argv[j + 1]
            if bad_client_name(name):
                return errors.CLIENT_NAME
            j += 1
        else:
            return errors.HELLO_SYNTAX.format(option=c_string(argv[j]))
        j += 1
    if not (authenticated or logged_in):
        return errors.HELLO_NOAUTH
    return Hello(version, name, logged_in)
