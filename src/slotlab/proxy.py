"""A proxy-mode endpoint: one address in front of a Redis Cluster, as managed clouds offer it.

A cloud "proxy mode" endpoint hides the cluster behind one address, so the application uses a
plain, non-cluster client. The proxy routes each command to the node that owns its keys, follows
MOVED and ASK itself, and applies rules of its own. Real proxies are closed source; slotlab's
:class:`Proxy` models their *published* rules closely enough to reproduce OpenIM's bug exactly:
one Lua EVAL whose keys span several slots fails with ``ERR 'EVAL' command keys must in same
slot``, while a DEL of the same keys works.

Start one in front of a lab (``lab.proxy_client("alibaba")``) or any cluster::

    with Proxy(["127.0.0.1:7000"], personality="alibaba") as px:
        r = redis.Redis(px.host, px.port)

The proxy is an asyncio server on a loopback port chosen by the OS, running in a background
thread so that notebooks can use it synchronously. It runs on uvloop when that is installed (it
is a dependency except on Windows; the loop in C makes a round trip through the proxy about 1.6
times a direct one instead of 2, see docs/proxy.md) and on asyncio's own loop otherwise.

Personalities
=============

``alibaba`` models Alibaba Cloud's ApsaraDB for Redis / Tair cluster instance in proxy mode. Its
rules and where each comes from:

1. **Routing.** A command whose keys are in one slot goes to the master that owns the slot. The
   proxy follows ``MOVED`` (and refreshes its slot map with ``CLUSTER SLOTS``) and ``ASK`` (it
   sends ``ASKING`` first) itself, so the client never sees a redirect. *Source: what any proxy
   does; Alibaba, "Command limitations for cluster architecture": "proxy mode uses a middle
   layer to hide the details of the cluster architecture".*
2. **Fan-out.** ``DEL``, ``UNLINK``, ``EXISTS``, ``TOUCH``, ``MGET`` and ``MSET`` whose keys span
   slots are split per slot, sent to the owners, and the replies combined in key order (a sum for
   DEL/UNLINK/EXISTS/TOUCH, the values in key order for MGET, ``OK`` for MSET). Not atomic, as on
   the real service. *Source: same page, "proxy nodes support cross-slot multi-key operations for
   commands such as DEL, EXISTS" and its command table (MGET, MSET, UNLINK, TOUCH marked as
   cross-slot capable).* The real service fans out more commands than these (SUNION, SINTER,
   ...); slotlab does not model them: other multi-key commands across slots get
   ``ERR '<CMD>' command keys must in same slot`` (the vendor's wire format for EVAL, applied to
   other commands by inference).
3. **Lua scripts** (EVAL, EVALSHA and their ``_RO`` forms). *Source: Alibaba, "Lua scripting:
   limits for cluster architecture" / the vendor's Lua limits page, quoted in FACTS.md section 3,
   and the wire texts users report.* Checked in this order:

   a. at least one key, else ``ERR for redis cluster, eval/evalsha number of keys can't be
      negative or zero`` (vendor text);
   b. all KEYS in one slot, else ``ERR 'EVAL' command keys must in same slot`` (``'EVALSHA'``
      likewise; the wire text in user reports and OpenIM issue #2333; the docs print
      ``ERR eval/evalsha command keys must be in same slot``);
   c. unless ``script_check_enable`` is off, a static check of the script (see
      :func:`check_script`): every key argument of ``redis.call``/``redis.pcall`` must be written
      ``KEYS[<number>]``, else ``ERR bad lua script for redis cluster, all the keys that the
      script uses should be passed using the KEYS array, and KEYS should not be in expression``
      (vendor text, newer wording).

   The order a, b, c is an inference from the reports: OpenIM's batch delete (keys in many
   slots, a script that loops over KEYS) got the slot error (#2333), while its batch read in
   one slot got the script error (#2894); so the slot check runs first.

   The proxy keeps the bodies of scripts it has seen (EVAL, SCRIPT LOAD) so it can check
   EVALSHA too; an EVALSHA of a script it never saw is not checked (the real checker's
   behaviour there is not published). ``SCRIPT LOAD``, ``SCRIPT FLUSH``, ``SCRIPT EXISTS`` and
   ``SCRIPT KILL`` go to every master. When a node answers an EVALSHA with ``NOSCRIPT`` and the
   proxy knows the body, it resends the script as EVAL (slotlab's choice: the client sees what
   it would see on one server).
4. **Transactions.** MULTI ... EXEC keeps transaction semantics only within one slot. The proxy
   queues the commands itself (answering ``QUEUED``) and at EXEC splits them by slot into
   sub-transactions, one MULTI/EXEC per slot, and returns the replies in the order sent.
   Commands in the same slot are atomic together; commands in different slots are not.
   A command whose own keys span slots cannot be queued (``ERR '<CMD>' command keys must in
   same slot``, our inference of the vendor format) and the EXEC then fails with EXECABORT, as
   a server does. WATCH needs all its keys in one slot, and a WATCHed transaction must keep all
   its keys in that slot (else ``ERR slotlab proxy: ...``, our text). *Source: Alibaba's command
   limits page, "limits on transactions": same slot, transaction semantics; different slots but
   each command within one slot, executed, semantics only among commands of one slot; a command
   whose keys span slots, not executed. An older version of the page: with WATCH the keys must
   be in one slot.* Keyless commands in a transaction run with the first slot's part.
5. **What the proxy answers itself.** ``CLUSTER KEYSLOT`` (computed here); other ``CLUSTER``
   subcommands are not exposed (``ERR slotlab proxy: 'CLUSTER SLOTS' is not supported in proxy
   mode``, our text; so ``RedisCluster`` cannot be pointed at a proxy). ``PING``, ``ECHO``,
   ``SELECT 0`` (other DBs: an error, our text; Alibaba maps DBs, slotlab does not),
   ``CLIENT SETINFO/SETNAME/GETNAME``, ``HELLO`` (2 or 3: redis-py 8 sends ``HELLO 3`` on
   connect; the proxy then opens its node connections in RESP3 too and passes replies through
   unchanged), ``QUIT``, ``RESET``. ``FLUSHALL``/``FLUSHDB`` go to every master, ``DBSIZE`` sums,
   ``KEYS`` concatenates, ``SCAN`` walks the masters one after another (the cursor says which),
   ``RANDOMKEY`` asks every master. Other keyless commands (``INFO``, ``TIME``, ``COMMAND``,
   ...) go to one master. Pub/Sub, MONITOR, replication and cluster-management commands are not
   supported (our text).

``passthrough`` forwards every command to the master that owns its FIRST key (a random master
for keyless commands), as go-redis's ClusterClient routes; it follows MOVED/ASK, and every other
error of the node reaches the client unchanged, CROSSSLOT included. A transaction is pinned to
the node of its first key (or of the WATCHed key), so a key on another node gets ``MOVED`` and
EXEC ``EXECABORT``, as FACTS.md section 2 shows. Compare the two to see what the cloud proxy
adds.

Errors the proxy makes up itself (all start ``ERR slotlab proxy:`` so they cannot be mistaken
for a server's or a vendor's):

- ``ERR slotlab proxy: node 127.0.0.1:PORT is unreachable (Connection refused)``: the node
  cannot be reached; ``(connection lost ...)`` when it went away while a command was waiting
  (the command may or may not have run). The proxy reconnects on the next command, so it serves
  again as soon as the node is back.
- ``ERR slotlab proxy: '<CMD>' is not supported in proxy mode``;
- ``ERR slotlab proxy: DB index is out of range (the cluster behind this proxy has only DB 0)``;
- ``ERR slotlab proxy: a WATCHed transaction must keep all its keys in the WATCHed slot``.

The proxy answers a client that sends bytes that are not RESP with the server's protocol error
text and closes that connection; every other client keeps being served.

Connections: each client connection gets its own connection to each node it needs (opened on
first use, returned to a small idle pool when the client leaves), speaking the client's RESP
version. That keeps pipelining and stateful commands (WATCH, blocking pops) correct with no
bookkeeping: one client's commands to one node go down one connection in order, replies come
back in that order, and the proxy puts them back in the client's order. Replies are forwarded
byte for byte; the proxy only finds where each one ends.

The hot path: a read that holds exactly one plain single-key command (GET, SET, HGET...) for a
node this client is connected to goes to that node in one write, with no callback per request;
a node read that is exactly one reply, next in its client's order, is written straight back.
A pipeline is split into its requests all at once (``RequestReader.get_requests``), and each
node gets its share of every 256 requests in one write. Scripts have a hot path too: an EVAL
(or EVALSHA) whose script the proxy has already seen and checked (the verdict is kept per
script body), with all its keys in one slot, goes straight to the node the same way, and its
reply's place in line follows MOVED, ASK and NOSCRIPT itself. Anything else goes through the
personality's rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import logging
import os
import random
import re
import socket
import threading
import time
import weakref
from binascii import crc_hqx
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Final, cast

import hiredis
import redis

from slotlab import commands
from slotlab.resp import ProtocolError, RequestReader, bulk, encode_command
from slotlab.slots import SLOT_COUNT, key_slot

__all__ = [
    "EVENT_LOOPS",
    "PERSONALITIES",
    "Proxy",
    "ProxyClient",
    "ProxyError",
    "ScriptProblem",
    "check_script",
]

Addr = tuple[str, int]
Callback = Callable[[bytes], None]

PERSONALITIES: Final = ("alibaba", "passthrough")

_log = logging.getLogger(__name__)

# ---- error texts ------------------------------------------------------------------------------
# The vendor's (Alibaba Cloud's), as its documentation and user reports give them:
ERR_SCRIPT_CROSS_SLOT: Final = "ERR '{cmd}' command keys must in same slot"
ERR_SCRIPT_NO_KEYS: Final = (
    "ERR for redis cluster, eval/evalsha number of keys can't be negative or zero"
)
ERR_BAD_SCRIPT: Final = (
    "ERR bad lua script for redis cluster, all the keys that the script uses should be passed "
    "using the KEYS array, and KEYS should not be in expression"
)
# Ours (no vendor text is published for these situations):
ERR_UNREACHABLE: Final = "ERR slotlab proxy: node {addr} is unreachable ({why})"
ERR_UNSUPPORTED: Final = "ERR slotlab proxy: '{cmd}' is not supported in proxy mode"
ERR_DB_RANGE: Final = (
    "ERR slotlab proxy: DB index is out of range (the cluster behind this proxy has only DB 0)"
)
ERR_WATCH_SLOT: Final = (
    "ERR slotlab proxy: a WATCHed transaction must keep all its keys in the WATCHed slot"
)
# The server's own texts, for situations the proxy answers itself:
_EXECABORT: Final = b"-EXECABORT Transaction discarded because of previous errors.\r\n"

MAX_REDIRECTS: Final = 5  # MOVED/ASK hops per command before the redirect reaches the client
MAX_INFLIGHT: Final = 4096  # replies a client may have outstanding before we stop parsing
_BATCH: Final = 256  # requests parsed at once before the nodes get what they hold
CONNECT_TIMEOUT: Final = 2.0  # seconds to connect to a node
DOWN_BACKOFF: Final = 0.1  # after a failed connect, fail fast for this long before retrying
IDLE_PER_NODE: Final = 8  # idle node connections kept for the next client
REFRESH_INTERVAL: Final = 0.5  # seconds between slot map reads caused by unreachable nodes

_OK: Final = b"+OK\r\n"
_QUEUED: Final = b"+QUEUED\r\n"
_NULL: Final = b"$-1\r\n"
_NULL3: Final = b"_\r\n"
_HELLO3: Final = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"
_ASKING: Final = b"*1\r\n$6\r\nASKING\r\n"
_MULTI: Final = b"*1\r\n$5\r\nMULTI\r\n"
_EXEC: Final = b"*1\r\n$4\r\nEXEC\r\n"
_UNWATCH: Final = b"*1\r\n$7\r\nUNWATCH\r\n"


class ProxyError(RuntimeError):
    """The proxy could not start (no node answered) or was used after it stopped."""


EVENT_LOOPS: Final = ("auto", "asyncio", "uvloop")


def _new_event_loop(kind: str) -> tuple[asyncio.AbstractEventLoop, str]:
    """A new event loop for the proxy's thread, and its name.

    uvloop (libuv, in C) when it is installed and ``kind`` allows it: it runs the loop itself
    several microseconds faster per request than asyncio's loop, which is written in Python.
    Without it the proxy works the same, on asyncio's loop.
    """
    if kind != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if kind == "uvloop":
                raise ProxyError("event_loop='uvloop' but uvloop is not installed") from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop, "uvloop"
    return asyncio.new_event_loop(), "asyncio"


def _err(text: str) -> bytes:
    """An error reply: ``-`` and the full text (code first), on one line."""
    return b"-" + text.replace("\r", " ").replace("\n", " ").encode() + b"\r\n"


def _encode(args: Sequence[bytes]) -> bytes:
    """A request as clients send it: an array of bulk strings."""
    return encode_command(*args)


def _ignore(raw: bytes) -> None:
    """A reply nobody waits for (the +OK of ASKING, of MULTI in a sub-transaction)."""


def _is_error(raw: bytes) -> bool:
    return raw[:1] in (b"-", b"!")


def _is_null(raw: bytes) -> bool:
    """RESP2's null bulk string and null array, and RESP3's null."""
    return raw in (b"$-1\r\n", b"*-1\r\n", b"_\r\n")


def _nodelay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY: a small reply or command goes out at once, never held back by Nagle."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _one_reply(data: bytes) -> bool:
    """True when ``data`` is exactly one reply of a simple kind: one line or one bulk string."""
    t = data[0]
    if t == 0x24:  # '$'
        nl = data.find(b"\r\n")
        if nl < 0:
            return False
        size = _SIZES.get(data[1:nl])
        if size is None:
            text = data[1:nl]
            if not text.isdigit():
                return False
            size = int(text)
        return nl + 4 + size == len(data)
    return t in _LINES and len(data) > 2 and data.find(b"\r\n") == len(data) - 2


_SIZES: Final[dict[bytes, int]] = {b"%d" % i: i for i in range(1024)}
_SLOT_MASK: Final = SLOT_COUNT - 1


def _key_slot(key: bytes) -> int:
    """``slotlab.slots.key_slot`` for a bytes key, in fewer steps."""
    tag = key.find(b"{")
    if tag >= 0:
        end = key.find(b"}", tag + 1)
        if end > tag + 1:
            key = key[tag + 1 : end]
    return crc_hqx(key, 0) & _SLOT_MASK


def _shown(name: bytes) -> str:
    return name.decode("utf-8", "replace")


def _arity_error(name: str) -> bytes:
    return _err(f"ERR wrong number of arguments for '{name}' command")


def _unknown_command(args: Sequence[bytes]) -> bytes:
    """The server's text for a command it does not know (Redis 7.0, ``processCommand``)."""
    shown = ""
    for a in args[1:]:
        if len(shown) >= 128:
            break
        shown += "'" + _shown(a)[: 128 - len(shown)] + "' "
    return _err(f"ERR unknown command '{_shown(args[0])[:128]}', with args beginning with: {shown}")


# ---- RESP2 replies from the nodes, kept as raw bytes ------------------------------------------


class _ReplyScanner:
    """Finds where one RESP2 or RESP3 reply ends in a buffer, resuming where it stopped.

    The proxy forwards a node's reply byte for byte (``+OK`` stays a status reply, ``*-1`` a null
    array, a RESP3 map stays a map), so it only needs to know where each reply ends. Resuming
    matters for big replies that arrive in many pieces: nothing is parsed twice.
    """

    __slots__ = ("_stack", "_off")

    def __init__(self) -> None:
        self._stack: list[int] = []  # elements still missing, per nesting level
        self._off = 0  # how far into the current reply we got last time

    def end(self, buf: bytes | bytearray, start: int) -> int:
        """The index just past the reply that starts at ``start``, or -1 if it is incomplete."""
        n = len(buf)
        stack = self._stack
        if stack:
            p = start + self._off
        else:
            p = start
            stack.append(1)
        while p < n:
            t = buf[p]
            nl = buf.find(b"\r\n", p)
            if nl < 0:
                break
            if t in _LENGTH_PREFIXED:  # $ bulk string; RESP3 ! blob error, = verbatim string
                size = int(buf[p + 1 : nl])
                if size >= 0:
                    e = nl + 4 + size
                    if e > n:
                        break
                    p = e
                else:
                    p = nl + 2
                stack[-1] -= 1
            elif t in _AGGREGATES:  # * array; RESP3 ~ set, > push, % map, | attribute
                count = int(buf[p + 1 : nl]) * (2 if t in (37, 124) else 1)
                p = nl + 2
                if t != 124:  # an attribute is a prefix: the reply that follows is the element
                    stack[-1] -= 1
                if count > 0:
                    stack.append(count)
                    continue
            elif t in _LINES:  # + status, - error, : integer; RESP3 _ null, # , ( scalars
                p = nl + 2
                stack[-1] -= 1
            else:
                raise ValueError(f"not a RESP reply: type byte {t!r}")
            while stack and stack[-1] == 0:
                stack.pop()
            if not stack:
                self._off = 0
                return p
        self._off = p - start
        return -1


_LENGTH_PREFIXED: Final = frozenset(b"$!=")
_AGGREGATES: Final = frozenset(b"*~>%|")
_LINES: Final = frozenset(b"+-:_#,(")


def _split_array(raw: bytes) -> list[bytes] | None:
    """The elements of an array reply, each as its raw bytes; None for a null array."""
    nl = raw.find(b"\r\n")
    if raw[:1] not in (b"*", b"~"):
        return None
    count = int(raw[1:nl])
    if count < 0:
        return None
    out: list[bytes] = []
    p = nl + 2
    for _ in range(count):
        e = _ReplyScanner().end(raw, p)
        out.append(raw[p:e])
        p = e
    return out


def _int_reply(raw: bytes) -> int:
    return int(raw[1:-2])


# ---- where the keys are -----------------------------------------------------------------------


class _KeyFinder:
    """Key positions of a command, from the server's command table (``slotlab.commands``).

    Caches the table lookup per command name, since the same few names arrive all the time.
    """

    def __init__(self) -> None:
        self._cache: dict[bytes, commands.CommandSpec | None] = {}
        self._single: dict[bytes, int] = {}

    def spec(self, args: Sequence[bytes]) -> commands.CommandSpec | None:
        """The command (or subcommand) ``args`` runs, or None if the server does not know it."""
        name = args[0]
        try:
            spec = self._cache[name]
        except KeyError:
            spec = commands.command_table().get(name.decode("utf-8", "replace").lower())
            if len(self._cache) < 4096:
                self._cache[name] = spec
        if spec is not None and spec.subcommands and len(args) > 1:
            return spec.subcommands.get(args[1].decode("utf-8", "replace").lower())
        return spec

    def single_key(self, name: bytes) -> int:
        """For a command with exactly one key at a fixed place (GET, SET, HSET...), that place.

        0 for every other command. The hot path uses it to skip the general key search.
        """
        try:
            return self._single[name]
        except KeyError:
            pass
        spec = self.spec([name])
        place = 0
        if (
            spec is not None
            and not spec.subcommands
            and "movablekeys" not in spec.flags
            and spec.first > 0
            and spec.first == spec.last
        ):
            # SET and BITFIELD have getkeys procedures of their own, but those only decide how
            # the key is accessed: the key is still the first argument. Check that the cluster's
            # own key search agrees, so a command whose procedure moves the key never passes.
            sample = [name] + [b"k"] * max(abs(spec.arity) - 1, spec.first)
            if commands.cluster_keys(spec, sample) == [spec.first]:
                place = spec.first
        if len(self._single) < 4096:
            self._single[name] = place
        return place

    def positions(self, args: Sequence[bytes]) -> list[int]:
        """Where the keys are in ``args``, as the cluster finds them; [] for none or unknown."""
        spec = self.spec(args)
        if spec is None or not spec.check_arity(len(args)):
            return []  # the node will answer with its own error
        return [p for p in commands.cluster_keys(spec, args) if p < len(args)]


_KEYS: Final = _KeyFinder()


# ---- the Lua script check ---------------------------------------------------------------------

_LUA_TOKEN = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<lcomment>--\[(?P<lceq>=*)\[.*?\](?P=lceq)\])
    | (?P<comment>--[^\n]*)
    | (?P<lstring>\[(?P<lseq>=*)\[.*?\](?P=lseq)\])
    | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    | (?P<number>0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>\.\.\.|\.\.|==|~=|<=|>=|::|//|<<|>>|[-+*/%^\#&~|<>=(){}\[\];:,.])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    at: int


class _LuaSyntax(Exception):
    pass


def _lua_tokens(src: str) -> list[_Tok]:
    pos = 0
    if src.startswith("#!"):  # a shebang line (#!lua flags=...) is not Lua
        nl = src.find("\n")
        pos = len(src) if nl < 0 else nl + 1
    out: list[_Tok] = []
    n = len(src)
    while pos < n:
        m = _LUA_TOKEN.match(src, pos)
        if m is None:
            raise _LuaSyntax(f"unexpected character {src[pos]!r}")
        kind = m.lastgroup or ""
        if kind not in ("ws", "comment", "lcomment"):
            out.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    return out


@dataclass(frozen=True)
class ScriptProblem:
    """One ``redis.call``/``redis.pcall`` that the proxy's script check rejects, and why."""

    line: int
    call: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.call}: {self.reason}"


_SENTINELS: Final = (b"\x00expr-1", b"\x00expr-2")


def _arg_text(toks: Sequence[_Tok]) -> str:
    text = " ".join(t.text for t in toks)
    text = re.sub(r" ?([\[\](),.]) ?", r"\1", text).replace(",", ", ")
    return text if len(text) <= 40 else text[:37] + "..."


def _literal(toks: Sequence[_Tok], sentinel: bytes) -> bytes:
    if len(toks) == 1:
        t = toks[0]
        if t.kind == "string":
            return t.text[1:-1].encode("utf-8", "surrogateescape")
        if t.kind == "lstring":
            return t.text[t.text.index("[", 1) + 1 : t.text.rindex("]", 0, -1)].encode()
        if t.kind == "number":
            return t.text.encode()
    return sentinel


def _is_keys_index(toks: Sequence[_Tok]) -> bool:
    """True for exactly ``KEYS[<whole number>]``."""
    return (
        len(toks) == 4
        and toks[0].kind == "name"
        and toks[0].text == "KEYS"
        and toks[1].text == "["
        and toks[2].kind == "number"
        and toks[2].text.isdigit()
        and toks[3].text == "]"
    )


def _call_args(toks: Sequence[_Tok], start: int) -> tuple[list[list[_Tok]], int]:
    """Split the arguments of a call whose ``(`` is just before ``start``; return them and ``)``."""
    depth = 0
    args: list[list[_Tok]] = []
    cur: list[_Tok] = []
    j = start
    while j < len(toks):
        t = toks[j]
        if t.kind == "op" and t.text in "([{":
            depth += 1
        elif t.kind == "op" and t.text in ")]}":
            if depth == 0:
                if cur or args:
                    args.append(cur)
                return args, j
            depth -= 1
        elif t.kind == "op" and t.text == "," and depth == 0:
            args.append(cur)
            cur = []
            j += 1
            continue
        cur.append(t)
        j += 1
    raise _LuaSyntax("unbalanced parentheses")


def check_script(script: str | bytes) -> list[ScriptProblem]:
    """What the proxy's static script check finds wrong in ``script``; [] means accepted.

    The rule (Alibaba's Lua limits page): "all keys should be passed by the KEYS array; the key
    position in a redis.call/pcall command must be the KEYS array (a Lua variable must not
    replace KEYS)", and in the newer error text "KEYS should not be in expression". The real
    checker is closed source; this one is an APPROXIMATION. It reads every ``redis.call(...)``
    and ``redis.pcall(...)``, finds which arguments are keys from the server's command table,
    and accepts a key argument only when it is literally ``KEYS[<number>]``.

    Accepted::

        redis.call('SET', KEYS[1], ARGV[1])            -- a key written KEYS[n]
        redis.call('HSET', KEYS[1], 'f', KEYS[2])      -- KEYS used as a VALUE is not a key
        redis.call('PING')                             -- no keys at all

    Rejected::

        redis.call('GET', 'literal')                   -- a key the proxy cannot see in KEYS
        local k = KEYS[1]; redis.call('GET', k)        -- a variable (vendor: not allowed)
        redis.call('GET', KEYS[1] .. ':x')             -- KEYS in an expression
        for i = 1, #KEYS do redis.call('DEL', KEYS[i]) end
                                                       -- KEYS[i]: Alibaba's support answer says
                                                       -- "KEYS[i] is not supported"
        for _, key in ipairs(KEYS) do redis.call('HSET', key, ...) end
                                                       -- rockscache's batch scripts (OpenIM
                                                       -- issue #2894 shows the real checker
                                                       -- rejecting the batch read script)
        redis.call('DEL', unpack(KEYS))                -- keys hidden in an expansion
        redis.call(cmd, KEYS[1])                       -- command not literal: keys unknowable

    Not seen by this check (the real one may differ): calls through an alias
    (``local call = redis.call``), ``redis.call`` written with a table or string argument
    instead of parentheses. A script that does not tokenize is accepted here; the node then
    reports its compile error.
    """
    src = script.decode("utf-8", "surrogateescape") if isinstance(script, bytes) else script
    try:
        toks = _lua_tokens(src)
    except _LuaSyntax:
        return []
    problems: list[ScriptProblem] = []
    i = 0
    while i + 3 < len(toks):
        t = toks[i]
        if not (
            t.kind == "name"
            and t.text == "redis"
            and toks[i + 1].text == "."
            and toks[i + 2].kind == "name"
            and toks[i + 2].text in ("call", "pcall")
            and toks[i + 3].text == "("
            and (i == 0 or toks[i - 1].text not in (".", ":"))
        ):
            i += 1
            continue
        try:
            args, _end = _call_args(toks, i + 4)
        except _LuaSyntax:
            return problems
        line = src.count("\n", 0, t.at) + 1
        problem = _check_call(args)
        if problem:
            shown = ", ".join(_arg_text(a) for a in args[:3]) + (", ..." if len(args) > 3 else "")
            problems.append(ScriptProblem(line, f"redis.{toks[i + 2].text}({shown})", problem))
        i += 4  # nested calls inside the arguments are checked on their own
    return problems


def _check_call(args: list[list[_Tok]]) -> str | None:
    if not args:
        return None
    name = _literal(args[0], b"")
    if not name:
        return "the command name is not a literal string, so its keys cannot be checked"
    argvs = [[name] + [_literal(a, s) for a in args[1:]] for s in _SENTINELS]
    spec = _KEYS.spec(argvs[0])
    if spec is None:
        return None  # not a command the server knows: it will fail at run time anyway
    positions = commands.cluster_keys(spec, argvs[0])
    if "movablekeys" in spec.flags and positions != commands.cluster_keys(spec, argvs[1]):
        return "which arguments are keys depends on values computed at run time"
    last = args[-1]
    expands = last and (last[-1].text == ")" or (len(last) == 1 and last[0].text == "..."))
    if (
        expands
        and len(args) > 1
        and spec.first > 0
        and (spec.last < 0 or len(args) - 1 <= spec.last)
    ):
        return f"keys may come from the expansion {_arg_text(last)}, not from KEYS[n]"
    for p in positions:
        if p < len(args) and not _is_keys_index(args[p]):
            what = _arg_text(args[p])
            if any(tok.text == "KEYS" for tok in args[p]):
                return f"the key {what} uses KEYS in an expression; write KEYS[n] itself"
            return f"the key {what} is not written KEYS[n]"
    return None


# ---- connections to the nodes -----------------------------------------------------------------


class _NodeConn(asyncio.Protocol):
    """One connection to one node. Replies come back in order, so callbacks wait in a FIFO."""

    def __init__(self, proxy: Proxy, addr: Addr, proto: int = 2) -> None:
        self.proxy = proxy
        self.addr = addr
        self.proto = proto  # 3: HELLO 3 goes first, so replies come in RESP3 for a RESP3 client
        self.transport: asyncio.Transport | None = None
        self.pending: deque[Callback] = deque()
        self.out: list[bytes] = []
        self.dead = False
        self.stateful = False  # carried WATCH or a pinned MULTI: never reuse for another client
        self.corked = False
        self._buf = bytearray()
        self._scan = _ReplyScanner()
        self._why = ""

    # -- lifecycle --
    def start(self) -> None:
        self.proxy._spawn(self._connect())

    def fail_now(self, why: str) -> None:
        """Mark this connection unusable: every command sent to it gets the error ``why``."""
        self.dead = True
        self._why = why

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.addr
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: self, host, port), CONNECT_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError) as exc:
            if isinstance(exc, asyncio.TimeoutError):
                why = "connect timed out"
            elif exc.errno:  # "Connection refused", whichever event loop runs the proxy
                why = os.strerror(exc.errno)
            else:
                why = exc.strerror or str(exc) or type(exc).__name__
            self.proxy._mark_down(self.addr, why)
            self.proxy._schedule_refresh()  # a failover may have given its slots to a replica
            self._fail(why)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.dead:  # closed while connecting
            transport.close()
            return
        self.transport = cast(asyncio.Transport, transport)
        _nodelay(transport)
        self.proxy._down.pop(self.addr, None)
        if self.proto == 3:
            self.pending.appendleft(_ignore)
            self.out.insert(0, _HELLO3)
        if self.out:
            self.transport.write(b"".join(self.out))
            self.out.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail("connection lost; the command may or may not have run")

    def close(self) -> None:
        """Close the connection; commands still waiting get the 'unreachable' error."""
        self.dead = True
        self._why = self._why or "connection closed by the proxy"
        if self.transport is not None:
            self.transport.close()
        else:
            self._fail(self._why)

    def _fail(self, why: str) -> None:
        self.dead = True
        self._why = self._why or why
        if not self.pending:
            return
        err = _err(ERR_UNREACHABLE.format(addr=f"{self.addr[0]}:{self.addr[1]}", why=self._why))
        self.proxy.stats["unreachable"] += 1
        with self.proxy._batch():
            while self.pending:
                self.pending.popleft()(err)

    # -- sending --
    def send(self, payload: bytes, cb: Callback) -> None:
        """Send one command; ``cb`` gets its raw reply (or the unreachable error)."""
        if self.dead:
            cb(_err(ERR_UNREACHABLE.format(addr=f"{self.addr[0]}:{self.addr[1]}", why=self._why)))
            return
        self.pending.append(cb)
        self._write(payload)

    def send_many(self, payload: bytes, cbs: Iterable[Callback]) -> None:
        """Send several commands at once (``payload`` holds them all), one callback each."""
        cbs = list(cbs)
        if self.dead:
            err = _err(ERR_UNREACHABLE.format(addr=f"{self.addr[0]}:{self.addr[1]}", why=self._why))
            for cb in cbs:
                cb(err)
            return
        self.pending.extend(cbs)
        self._write(payload)

    def _write(self, payload: bytes) -> None:
        proxy = self.proxy
        if self.transport is not None and not proxy._depth:
            self.transport.write(payload)
            return
        self.out.append(payload)
        if self.transport is not None and not self.corked:
            self.corked = True
            proxy._corked.append(self)

    def uncork(self) -> None:
        self.corked = False
        if self.transport is not None and self.out:
            self.transport.write(b"".join(self.out) if len(self.out) > 1 else self.out[0])
            self.out.clear()

    # -- receiving --
    def data_received(self, data: bytes) -> None:
        pending = self.pending
        if not self._buf and pending and _one_reply(data):
            # The usual case: this read is exactly one reply (a line or a bulk string, never a
            # RESP3 push) to the oldest command. Its callback runs outside a batch, so a reply
            # that is next in its client's order is written to the client at once.
            pending.popleft()(data)
            return
        buf = self._buf
        src: bytes | bytearray
        if not buf:
            src = data  # replies are sliced straight out of the bytes received
        elif len(buf) < 4096:
            src = bytes(buf) + data  # the small rest of a read cut inside a reply
            buf.clear()
        else:
            buf += data  # a big reply arriving in pieces: the scanner resumes where it was
            src = buf
        proxy = self.proxy
        proxy._depth += 1
        try:
            pos = self._take(src)
            if src is buf:
                if pos:
                    del buf[:pos]
            elif pos < len(src):
                buf += memoryview(src)[pos:]
            if buf and not pending:
                raise ValueError("a reply nobody asked for")
        except ValueError:
            self._why = "it sent something that is not a RESP reply"
            if self.transport is not None:
                self.transport.abort()
        finally:
            proxy._depth -= 1
            if not proxy._depth:
                proxy._drain()

    def _take(self, src: bytes | bytearray) -> int:
        """Hand each whole reply at the start of ``src`` to its callback, oldest first; return
        how far that got. Lines (``+OK``, ``:0``, ``_``, errors...) and bulk strings under 1 KB
        are measured here; the scanner finds the end of anything else, and resumes a reply it
        has begun in an earlier read."""
        pending = self.pending
        scanner = self._scan
        scan = scanner.end
        lines = _LINES
        sizes = _SIZES
        n = len(src)
        pos = 0
        while pending and pos < n:
            if scanner._stack:  # a reply begun in an earlier read
                end = scan(src, pos)
            else:
                t = src[pos]
                if t in lines:
                    end = src.find(b"\r\n", pos) + 2
                    if end == 1:
                        break
                elif t == 0x24:  # '$'
                    nl = src.find(b"\r\n", pos)
                    if nl < 0:
                        break
                    text = src[pos + 1 : nl]
                    size = sizes.get(text if isinstance(text, bytes) else bytes(text))
                    if size is None:
                        end = scan(src, pos)
                    else:
                        end = nl + 4 + size
                        if end > n:
                            break
                else:
                    end = scan(src, pos)
            if end < 0:
                break
            raw = src[pos:end]
            pos = end
            if not isinstance(raw, bytes):
                raw = bytes(raw)
            if raw[:1] == b">":
                continue  # a RESP3 push is out of band: it answers no command
            pending.popleft()(raw)
        return pos


# ---- client connections -----------------------------------------------------------------------


class _Reply:
    """One place in a client's reply order; calling it with the reply bytes fills it in.

    A command sent by the hot path waits for its reply here directly (no callback of its own):
    ``addr`` and ``payload`` say where it went and what it was, so a ``MOVED`` or ``ASK`` reply
    can be followed.
    """

    __slots__ = ("data", "session", "addr", "payload")

    def __init__(
        self,
        session: _Session,
        data: bytes | None = None,
        addr: Addr | None = None,
        payload: bytes | None = None,
    ) -> None:
        self.session = session
        self.data = data
        self.addr = addr
        self.payload = payload

    def __call__(self, data: bytes) -> None:
        s = self.session
        if self.payload is not None and data[0] == 0x2D and s.redirect(self, data):  # '-'
            return
        queue = s.queue
        if not queue or queue[0] is not self:
            self.data = data  # replies before it are still missing: it waits its turn
        elif (
            len(queue) == 1
            and not s.proxy._depth
            and s.transport is not None
            and not (s.closing or s.stalled or s.closed)
        ):
            queue.popleft()  # the next reply in order, none behind it: straight out
            s.transport.write(data)
        else:
            self.data = data
            s._mark()


class _ShaReply(_Reply):
    """The place in line of an EVALSHA sent by the hot path whose script the proxy knows: if the
    node answers NOSCRIPT (after any MOVED/ASK), the script goes to the first node again as
    EVAL, as ``_Alibaba.script_call`` does, and that reply fills the place."""

    __slots__ = ("home", "args", "body")

    def __init__(self, session: _Session, addr: Addr, payload: bytes, args: list[bytes],
                 body: bytes) -> None:  # fmt: skip
        super().__init__(session, None, addr, payload)
        self.home = addr
        self.args = args
        self.body: bytes | None = body

    def __call__(self, data: bytes) -> None:
        body = self.body
        if body is not None and data.startswith(b"-NOSCRIPT"):
            self.body = None
            self.payload = None  # the EVAL's own redirects are followed by request()
            args = self.args
            name = b"eval" if args[0].lower() == b"evalsha" else b"eval_ro"
            self.session.request(self.home, _encode([name, body, *args[2:]]), self)
            return
        super().__call__(data)


class _Session(asyncio.Protocol):
    """One client connection: parses its commands, keeps its replies in order."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.rules = proxy._rules
        self.id = proxy._next_id()
        self.transport: asyncio.Transport | None = None
        self.reader = RequestReader()
        self.queue: deque[_Reply] = deque()
        self.conns: dict[Addr, _NodeConn] = {}
        self.closed = False
        self.closing = False  # close once every reply so far is written (QUIT, bad RESP)
        self.stalled = False
        self.pumping = False
        self.raw: bytes | None = None  # the current request exactly as the client sent it
        self.dirty = False
        self.name: bytes | None = None
        self.proto = 2  # RESP version the client chose with HELLO
        self.null = _NULL
        # transactions
        self.tx: list[list[bytes]] | None = None  # queued commands while in MULTI
        self.tx_error = False
        self.watch_addr: Addr | None = None
        self.watch_slot: int | None = None
        self.pinned: Addr | None = None  # passthrough: node of a live transaction or WATCH
        self.tx_live = False  # passthrough: MULTI already sent to the pinned node

    # -- asyncio --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        _nodelay(transport)
        self.proxy._sessions.add(self)
        self.proxy.stats["connections"] += 1

    def data_received(self, data: bytes) -> None:
        if self.closing or self.closed:
            return
        if self.stalled or len(self.queue) >= MAX_INFLIGHT:
            self.reader.feed(data)
        else:
            # The commonest case: the read is one whole request and nothing is pending.
            args = self.reader.feed_single(data)
            if args is not None:
                self.proxy.stats["commands"] += 1
                if not self.send_fast(args, data, False):
                    self.dispatch_one(args, data)
                return
        proxy = self.proxy
        proxy._depth += 1
        try:
            self.pump()
        finally:
            proxy._depth -= 1
            if not proxy._depth and (proxy._dirty or proxy._corked):
                proxy._drain()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy._sessions.discard(self)
        self.queue.clear()
        for conn in self.conns.values():
            self.proxy._release(conn)
        self.conns.clear()

    # -- commands in --
    def pump(self) -> None:
        """Parse and dispatch the commands received so far, in order.

        Plain multibulk requests (what clients send) are taken from the buffer up to _BATCH at
        a time, and what a batch holds for the nodes is written before the next batch is
        parsed, so that the nodes work on a long pipeline while the proxy is still reading it.
        Anything else is read one request at a time by the server-exact parser.
        """
        if self.pumping:
            return
        self.pumping = True
        reader = self.reader
        queue = self.queue
        stats = self.proxy.stats
        try:
            while not self.closing and not self.closed:
                room = MAX_INFLIGHT - len(queue)
                if room <= 0:
                    self.stalled = True
                    break
                # A pipeline: the plain requests at the front of the buffer, split at once.
                batch = reader.get_requests(min(room, _BATCH))
                if batch:
                    last = batch[-1]
                    send_fast = self.send_fast
                    for request in batch:
                        args, payload = request
                        stats["commands"] += 1
                        more = request is not last or reader.pending() > 0
                        if not send_fast(args, payload, more):
                            self.dispatch(args, payload)
                        if self.closing or self.closed:
                            break  # QUIT: what follows is never read, as below
                    # Send what this batch holds now, so the nodes work while we parse on.
                    corked = self.proxy._corked
                    while corked:
                        corked.pop().uncork()
                    continue
                try:
                    got = reader.get_request()
                except ProtocolError as exc:
                    self.local(_err(f"ERR {exc}"))
                    self.closing = True
                    break
                if got is None:
                    break
                args, raw = got  # raw: the request's own bytes, forwarded as they are
                if not args:
                    continue  # an empty inline line: the server ignores it too
                stats["commands"] += 1
                if raw is None or not self.send_fast(args, raw, reader.pending() > 0):
                    self.dispatch(args, raw)
        finally:
            self.pumping = False

    def send_fast(self, args: list[bytes], raw: bytes, more: bool) -> bool:
        """The hot path: send ``raw`` if it is a plain command with one key at a fixed place
        (GET, SET, HGET...), outside a transaction, to a node this client is connected to; a
        script command (EVAL, EVALSHA...) if the rules' ``send_script`` sends it.

        It takes the route ``dispatch`` would take, in fewer steps: the bytes go to the node at
        once (with ``more`` commands to come in this read, in one write at the end of it), and
        the reply's place in line waits for the reply itself. False: use ``dispatch``.
        """
        rules = self.rules
        entry = rules.fast.get(args[0])
        if entry is None:
            entry = rules.fast_entry(args[0])
        place, arity = entry
        if place <= 0:  # -1: a script (EVAL, EVALSHA...), which the rules may send as fast
            return place < 0 and rules.send_script(self, args, raw, more, arity)
        n = len(args)
        if (n != arity if arity > 0 else n < -arity) or self.tx is not None or self.tx_live:
            return False
        key = args[place]
        tag = key.find(b"{")  # the hash tag rule, as in slotlab.slots.key_slot
        if tag >= 0:
            end = key.find(b"}", tag + 1)
            if end > tag + 1:
                key = key[tag + 1 : end]
        proxy = self.proxy
        addr = proxy._slots[crc_hqx(key, 0) & _SLOT_MASK] or proxy._any_master()
        conn = self.conns.get(addr)
        if conn is None or conn.transport is None or conn.dead:
            return False  # dispatch opens the connection
        r = _Reply(self, None, addr, raw)
        self.queue.append(r)
        conn.pending.append(r)
        if more:
            conn.out.append(raw)
            if not conn.corked:
                conn.corked = True
                proxy._corked.append(conn)
        elif conn.out:  # after commands held back in this read: all of them, in order
            conn.out.append(raw)
            conn.uncork()
        else:
            conn.transport.write(raw)
        return True

    def dispatch(self, args: list[bytes], raw: bytes | None) -> None:
        """Apply the personality's rules to one command (``raw``: its bytes, if known)."""
        self.raw = raw
        queued = len(self.queue)
        try:
            self.rules.dispatch(self, args)
        except Exception as exc:  # noqa: BLE001 - a bug must not stall this client
            self.internal_error(exc, queued)
        finally:
            self.raw = None

    def dispatch_one(self, args: list[bytes], raw: bytes) -> None:
        """``dispatch`` for a read that held just this command, with writes batched."""
        proxy = self.proxy
        proxy._depth += 1
        self.pumping = True  # nothing else is waiting to be parsed
        try:
            self.dispatch(args, raw)
        finally:
            self.pumping = False
            proxy._depth -= 1
            if not proxy._depth and (proxy._dirty or proxy._corked):
                proxy._drain()

    def internal_error(self, exc: Exception, first: int | None = None) -> bytes:
        """A bug in the proxy: log it, count it, and answer with an error instead of hanging.

        With ``first``, the replies this command added from that place on are filled in too.
        """
        self.proxy.stats["internal_errors"] += 1
        _log.exception("slotlab proxy: internal error", exc_info=exc)
        error = _err(f"ERR slotlab proxy: internal error ({type(exc).__name__}: {exc})")
        if first is not None:
            unfinished = [r for r in list(self.queue)[first:] if r.data is None]
            for r in unfinished:
                r(error)
            if len(self.queue) == first:
                self.local(error)
        return error

    def safely(self, make: Callable[[], bytes]) -> bytes:
        """``make()``, or an internal-error reply if it raises."""
        try:
            return make()
        except Exception as exc:  # noqa: BLE001 - a bug must not stall this client
            return self.internal_error(exc)

    # -- replies out --
    def new_reply(self) -> _Reply:
        r = _Reply(self)
        self.queue.append(r)
        return r

    def local(self, data: bytes) -> None:
        """A reply the proxy makes itself."""
        self.queue.append(_Reply(self, data))
        self._mark()

    def complete(self, r: _Reply, data: bytes) -> None:
        r(data)

    def _mark(self) -> None:
        if self.proxy._depth:
            if not self.dirty:
                self.dirty = True
                self.proxy._dirty.append(self)
        else:
            self.flush()

    def flush(self) -> None:
        """Write every reply that is ready and has nothing unready before it."""
        self.dirty = False
        transport = self.transport
        if self.closed or transport is None:
            return
        queue = self.queue
        if queue:
            data = queue[0].data
            if data is not None:
                queue.popleft()
                if queue and queue[0].data is not None:
                    out = [data]
                    while queue:
                        more = queue[0].data
                        if more is None:
                            break
                        out.append(more)
                        queue.popleft()
                    data = b"".join(out)
                transport.write(data)
        if self.closing and not queue:
            transport.close()
            return
        if self.stalled and len(queue) < MAX_INFLIGHT // 2:
            self.stalled = False
            with self.proxy._batch():
                self.pump()

    # -- talking to nodes --
    def redirect(self, r: _Reply, raw: bytes) -> bool:
        """The hot path's command got ``raw``: if it is MOVED/ASK, follow it (as ``request``)."""
        if not (raw.startswith(b"-MOVED ") or raw.startswith(b"-ASK ")):
            return False
        addr, payload = r.addr, r.payload
        assert addr is not None and payload is not None
        r.payload = None  # later replies fill it in; request() follows any further hops
        moved = raw[1] == 0x4D  # 'M'
        target = self.proxy._redirect(raw, addr, moved)
        if target is None:
            return False
        self.proxy.stats["redirects"] += 1
        self.request(target, payload, r, 1, not moved)
        return True

    def conn_for(self, addr: Addr) -> _NodeConn:
        conn = self.conns.get(addr)
        if conn is None or conn.dead:
            conn = self.proxy._acquire(addr, self.proto)
            if not conn.dead:
                self.conns[addr] = conn
        return conn

    def request(
        self,
        addr: Addr,
        payload: bytes,
        cb: Callback,
        hops: int = 0,
        asking: bool = False,
        landed: Callable[[Addr], None] | None = None,
    ) -> None:
        """Send ``payload`` to ``addr``, following MOVED/ASK; ``cb`` gets the final reply."""
        if self.closed:
            return

        def on_reply(raw: bytes) -> None:
            if (
                raw[:1] == b"-"
                and hops < MAX_REDIRECTS
                and (raw.startswith(b"-MOVED ") or raw.startswith(b"-ASK "))
            ):
                moved = raw[1:2] == b"M"
                target = self.proxy._redirect(raw, addr, moved)
                if target is not None:
                    self.proxy.stats["redirects"] += 1
                    self.request(target, payload, cb, hops + 1, not moved, landed)
                    return
            if landed is not None:
                landed(addr)
            cb(raw)

        conn = self.conn_for(addr)
        if asking:
            conn.send_many(_ASKING + payload, (_ignore, on_reply))
        else:
            conn.send(payload, on_reply)

    def forward(self, addr: Addr, args: Sequence[bytes]) -> None:
        """Send a command to ``addr`` and let its reply take the next place in line."""
        r = self.new_reply()
        self.request(addr, _encode(args), r)

    def forward_current(self, addr: Addr, args: Sequence[bytes]) -> None:
        """Like ``forward`` for the command being dispatched, unchanged: its own bytes go."""
        r = self.new_reply()
        raw = self.raw
        self.request(addr, raw if raw is not None else _encode(args), r)

    def switch_protocol(self, proto: int) -> None:
        """HELLO changed the RESP version: node connections must speak it too."""
        if proto == self.proto:
            return
        self.proto = proto
        self.null = _NULL3 if proto == 3 else _NULL
        for conn in self.conns.values():
            self.proxy._release(conn)
        self.conns.clear()

    def gather(
        self,
        requests: Sequence[tuple[Addr, bytes]],
        finish: Callable[[list[bytes]], bytes],
    ) -> None:
        """Send several requests; when all replies are in, ``finish`` makes the one reply."""
        r = self.new_reply()
        results: list[bytes] = [b""] * len(requests)
        left = [len(requests)]

        def put(i: int, raw: bytes) -> None:
            results[i] = raw
            left[0] -= 1
            if not left[0]:
                self.complete(r, self.safely(lambda: finish(results)))

        if not requests:
            self.complete(r, self.safely(lambda: finish(results)))
        for i, (addr, payload) in enumerate(requests):
            self.request(addr, payload, partial(put, i))


# ---- personalities ----------------------------------------------------------------------------

Handler = Callable[[_Session, list[bytes]], None]

_NOT_SUPPORTED: Final = frozenset(
    {
        b"subscribe", b"psubscribe", b"ssubscribe", b"unsubscribe", b"punsubscribe",
        b"sunsubscribe", b"monitor", b"sync", b"psync", b"replconf",
    }
)  # fmt: skip
"""Commands that would switch the connection into a mode the proxy cannot follow."""

_ALIBABA_NOT_SUPPORTED: Final = _NOT_SUPPORTED | frozenset(
    {
        b"asking", b"readonly", b"readwrite", b"wait", b"waitaof", b"migrate", b"replicaof",
        b"slaveof", b"shutdown", b"failover", b"swapdb", b"move", b"debug", b"pubsub",
        b"publish", b"spublish",
    }
)  # fmt: skip


class _Personality:
    """Rules shared by every personality: the connection-level commands a proxy answers itself."""

    name = "base"

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.handlers: dict[bytes, Handler] = {
            b"ping": self.ping,
            b"echo": self.echo,
            b"quit": self.quit,
            b"hello": self.hello,
            b"select": self.select,
            b"client": self.client,
            b"reset": self.reset,
        }
        for name in _NOT_SUPPORTED:
            self.handlers[name] = self.unsupported
        #: Command name as sent -> (key place, arity) for the session's hot path; (0, 0): none.
        self.fast: dict[bytes, tuple[int, int]] = {}

    def dispatch(self, s: _Session, args: list[bytes]) -> None:
        raise NotImplementedError

    def send_script(
        self, s: _Session, args: list[bytes], raw: bytes, more: bool, kind: int
    ) -> bool:
        """The hot path for a script command (``fast_entry`` gave ``(-1, kind)``): send it if
        ``dispatch`` would send it unchanged to one node, else return False."""
        return False

    def fast_entry(self, name: bytes) -> tuple[int, int]:
        """``(place, arity)`` when ``dispatch`` would send every command ``name`` with a valid
        arity, outside a transaction, unchanged to the owner of its key at ``place`` (GET, SET,
        HGET...); ``(0, 0)`` for commands with a handler of their own or other key layouts."""
        entry = (0, 0)
        if name.lower() not in self.handlers:
            place = _KEYS.single_key(name)
            spec = _KEYS.spec([name])
            if place and spec is not None and abs(spec.arity) > place:
                entry = (place, spec.arity)
        if len(self.fast) < 4096:
            self.fast[name] = entry
        return entry

    # -- helpers --
    def node_for(self, slot: int) -> Addr:
        return self.proxy._slots[slot] or self.proxy._any_master()

    def unsupported(self, s: _Session, args: list[bytes]) -> None:
        shown = _shown(args[0]).upper()
        if len(args) > 1 and args[0].lower() in (b"cluster", b"client", b"script"):
            shown += " " + _shown(args[1]).upper()
        s.local(_err(ERR_UNSUPPORTED.format(cmd=shown)))

    # -- connection commands --
    def ping(self, s: _Session, args: list[bytes]) -> None:
        if len(args) == 1:
            s.local(b"+PONG\r\n")
        elif len(args) == 2:
            s.local(bulk(args[1]))
        else:
            s.local(_arity_error("ping"))

    def echo(self, s: _Session, args: list[bytes]) -> None:
        s.local(bulk(args[1]) if len(args) == 2 else _arity_error("echo"))

    def quit(self, s: _Session, args: list[bytes]) -> None:
        s.local(_OK)
        s.closing = True

    def hello(self, s: _Session, args: list[bytes]) -> None:
        """HELLO answers like a standalone server; HELLO 3 switches the client to RESP3."""
        version = s.proto
        if len(args) > 1:
            parsed = commands.string2ll(args[1])
            if parsed is None:
                s.local(_err("ERR Protocol version is not an integer or out of range"))
                return
            if parsed not in (2, 3):
                s.local(_err("NOPROTO unsupported protocol version"))
                return
            version = parsed
            i = 2
            while i < len(args):
                opt = args[i].lower()
                if opt == b"auth" and i + 2 < len(args):
                    s.local(_err("WRONGPASS invalid username-password pair or user is disabled."))
                    return
                if opt == b"setname" and i + 1 < len(args):
                    s.name = args[i + 1]
                    i += 2
                    continue
                s.local(_err(f"ERR Syntax error in HELLO option '{_shown(args[i])}'"))
                return
        s.switch_protocol(version)
        reply = [
            bulk(b"server"), bulk(b"redis"),
            bulk(b"version"), bulk(self.proxy.server_version.encode()),
            bulk(b"proto"), b":%d\r\n" % version,
            bulk(b"id"), b":%d\r\n" % s.id,
            bulk(b"mode"), bulk(b"standalone"),
            bulk(b"role"), bulk(b"master"),
            bulk(b"modules"), b"*0\r\n",
        ]  # fmt: skip
        s.local((b"%7\r\n" if version == 3 else b"*14\r\n") + b"".join(reply))

    def select(self, s: _Session, args: list[bytes]) -> None:
        if len(args) != 2:
            s.local(_arity_error("select"))
            return
        db = commands.string2ll(args[1])
        if db is None:
            s.local(_err("ERR value is not an integer or out of range"))
        elif db != 0:
            s.local(_err(ERR_DB_RANGE))
        else:
            s.local(_OK)

    def client(self, s: _Session, args: list[bytes]) -> None:
        sub = args[1].lower() if len(args) > 1 else b""
        if sub == b"setinfo" and len(args) == 4:
            s.local(_OK)
        elif sub == b"setname" and len(args) == 3:
            if any(c <= 32 or c >= 127 for c in args[2]):
                s.local(
                    _err("ERR Client names cannot contain spaces, newlines or special characters.")
                )
            else:
                s.name = args[2] or None
                s.local(_OK)
        elif sub == b"getname" and len(args) == 2:
            s.local(bulk(s.name) if s.name else s.null)
        elif sub in (b"setinfo", b"setname", b"getname") or not sub:
            s.local(_arity_error("client|" + _shown(sub) if sub else "client"))
        else:
            self.unsupported(s, args)

    def reset(self, s: _Session, args: list[bytes]) -> None:
        s.tx = None
        s.tx_error = False
        s.name = None
        for addr in {a for a in (s.watch_addr, s.pinned) if a is not None}:
            s.conn_for(addr).send_many(b"*1\r\n$7\r\nDISCARD\r\n" + _UNWATCH, (_ignore, _ignore))
        s.watch_addr = s.pinned = None
        s.watch_slot = None
        s.tx_live = False
        s.local(b"+RESET\r\n")


class _Alibaba(_Personality):
    """Alibaba Cloud's proxy mode, rule by rule (see the module docstring for the sources)."""

    name = "alibaba"

    _FANOUT_SUM: Final = frozenset({b"del", b"unlink", b"exists", b"touch"})
    _SCRIPTS: Final = frozenset({b"eval", b"evalsha", b"eval_ro", b"evalsha_ro"})
    # Commands with a handler that may still be queued in MULTI (sent with the transaction):
    _QUEUEABLE: Final = _FANOUT_SUM | {b"mget", b"mset", b"ping", b"echo", b"unwatch"}

    def __init__(self, proxy: Proxy) -> None:
        super().__init__(proxy)
        h = self.handlers
        for name in _ALIBABA_NOT_SUPPORTED:
            h[name] = self.unsupported
        for name in self._FANOUT_SUM:
            h[name] = self.fanout_sum
        for name in self._SCRIPTS:
            h[name] = self.script_call
        h.update(
            {
                b"mget": self.mget,
                b"mset": self.mset,
                b"cluster": self.cluster,
                b"script": self.script,
                b"multi": self.multi,
                b"exec": self.exec_,
                b"discard": self.discard,
                b"watch": self.watch,
                b"unwatch": self.unwatch,
                b"flushall": self.all_masters_ok,
                b"flushdb": self.all_masters_ok,
                b"dbsize": self.dbsize,
                b"keys": self.keys,
                b"scan": self.scan,
                b"randomkey": self.randomkey,
            }
        )
        self._tx_control = {b"multi", b"exec", b"discard", b"watch", b"quit", b"reset"}

    def fast_entry(self, name: bytes) -> tuple[int, int]:
        """As the base class; and ``(-1, 1)`` for EVAL/EVAL_RO, ``(-1, 2)`` for EVALSHA and
        EVALSHA_RO, while ``script_call`` handles them: see ``send_script``."""
        lower = name.lower()
        if lower in self._SCRIPTS and self.handlers.get(lower) == self.script_call:
            entry = (-1, 2 if lower.startswith(b"evalsha") else 1)
            if len(self.fast) < 4096:
                self.fast[name] = entry
            return entry
        return super().fast_entry(name)

    def send_script(
        self, s: _Session, args: list[bytes], raw: bytes, more: bool, kind: int
    ) -> bool:
        """Rule 3's hot path: a script command that passes every check, with a script the
        proxy has already remembered (and checked, when the check is on), to a node this client
        is connected to. It does what ``script_call`` does, in fewer steps: the client's bytes
        go to the node (batched like ``send_fast``'s) and the reply's place in line follows
        MOVED/ASK itself, and for an EVALSHA whose body the proxy knows, NOSCRIPT too.

        False for anything else (an error to answer, a script not seen yet or rejected, a
        transaction, no connection yet): ``dispatch`` then applies the rules as usual.
        """
        n = len(args)
        if n < 4 or s.tx is not None:
            return False
        numkeys = _SIZES.get(args[2])  # what commands.string2ll gives, for 0 to 1023
        if not numkeys or numkeys > n - 3:
            return False
        key = args[3]
        tag = key.find(b"{")  # the hash tag rule, as in _key_slot
        if tag >= 0:
            end = key.find(b"}", tag + 1)
            if end > tag + 1:
                key = key[tag + 1 : end]
        slot = crc_hqx(key, 0) & _SLOT_MASK
        if numkeys > 1:
            for i in range(4, 3 + numkeys):
                if _key_slot(args[i]) != slot:
                    return False
        proxy = self.proxy
        body: bytes | None
        if kind == 1:
            body = args[1]
        else:
            body = proxy._scripts.get(args[1].decode("ascii", "replace").lower())
        if body is not None:
            # Known bodies only: one in _bodies is remembered (its SHA is in _scripts), and its
            # verdict is there once the check ran.
            try:
                bad = proxy._bodies[body]
            except KeyError:
                return False
            if bad is not False and proxy.script_check_enable:
                return False
        addr = proxy._slots[slot] or proxy._any_master()
        conn = s.conns.get(addr)
        if conn is None or conn.transport is None or conn.dead:
            return False
        r = (
            _Reply(s, None, addr, raw)
            if kind == 1 or body is None
            else _ShaReply(s, addr, raw, args, body)
        )
        s.queue.append(r)
        conn.pending.append(r)
        if more:
            conn.out.append(raw)
            if not conn.corked:
                conn.corked = True
                proxy._corked.append(conn)
        elif conn.out:
            conn.out.append(raw)
            conn.uncork()
        else:
            conn.transport.write(raw)
        return True

    def dispatch(self, s: _Session, args: list[bytes]) -> None:
        name = args[0].lower()
        if s.tx is not None and name not in self._tx_control:
            self.queue_tx(s, args, name)
            return
        handler = self.handlers.get(name)
        if handler is not None:
            handler(s, args)
            return
        place = _KEYS.single_key(args[0])
        if place and len(args) > place:  # the hot path: one key, one slot, one node
            addr = self.proxy._slots[key_slot(args[place])] or self.proxy._any_master()
            s.forward_current(addr, args)
        else:
            self.route(s, args)

    # -- rule 1: single-slot commands go to the owner --
    def slot_of(self, args: Sequence[bytes], positions: Sequence[int]) -> int | None:
        """The one slot of these keys, or None when they span slots."""
        slot = key_slot(args[positions[0]])
        for p in positions[1:]:
            if key_slot(args[p]) != slot:
                return None
        return slot

    def route(self, s: _Session, args: list[bytes]) -> None:
        positions = _KEYS.positions(args)
        if not positions:
            s.forward_current(self.proxy._any_master(), args)
            return
        slot = self.slot_of(args, positions)
        if slot is None:
            s.local(_err(ERR_SCRIPT_CROSS_SLOT.format(cmd=_shown(args[0]).upper())))
            return
        s.forward_current(self.node_for(slot), args)

    # -- rule 2: fan-out --
    def _by_slot(self, keys: Sequence[bytes]) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for i, k in enumerate(keys):
            groups.setdefault(key_slot(k), []).append(i)
        return groups

    def fanout_sum(self, s: _Session, args: list[bytes]) -> None:
        keys = args[1:]
        groups = self._by_slot(keys)
        if len(groups) <= 1:
            self.route(s, args)
            return
        self.proxy.stats["fanouts"] += 1
        reqs = [
            (self.node_for(slot), _encode([args[0], *(keys[i] for i in idx)]))
            for slot, idx in groups.items()
        ]

        def finish(replies: list[bytes]) -> bytes:
            for raw in replies:
                if not raw.startswith(b":"):
                    return raw
            return b":%d\r\n" % sum(_int_reply(raw) for raw in replies)

        s.gather(reqs, finish)

    def mget(self, s: _Session, args: list[bytes]) -> None:
        keys = args[1:]
        groups = self._by_slot(keys)
        if len(groups) <= 1:
            self.route(s, args)
            return
        self.proxy.stats["fanouts"] += 1
        order = list(groups.values())
        reqs = [
            (self.node_for(slot), _encode([args[0], *(keys[i] for i in idx)]))
            for slot, idx in groups.items()
        ]

        def finish(replies: list[bytes]) -> bytes:
            values: list[bytes] = [s.null] * len(keys)
            for idx, raw in zip(order, replies, strict=True):
                if not raw.startswith(b"*"):
                    return raw
                for i, v in zip(idx, _split_array(raw) or [], strict=False):
                    values[i] = v
            return b"*%d\r\n" % len(keys) + b"".join(values)

        s.gather(reqs, finish)

    def mset(self, s: _Session, args: list[bytes]) -> None:
        if len(args) < 3 or len(args) % 2 == 0:
            s.local(_arity_error(_shown(args[0]).lower()))
            return
        pairs = [(args[i], args[i + 1]) for i in range(1, len(args), 2)]
        groups = self._by_slot([k for k, _ in pairs])
        if len(groups) <= 1:
            self.route(s, args)
            return
        self.proxy.stats["fanouts"] += 1
        reqs = []
        for slot, idx in groups.items():
            flat = [args[0]]
            for i in idx:
                flat += pairs[i]
            reqs.append((self.node_for(slot), _encode(flat)))

        def finish(replies: list[bytes]) -> bytes:
            for raw in replies:
                if _is_error(raw):
                    return raw
            return _OK

        s.gather(reqs, finish)

    # -- rule 3: Lua scripts --
    def script_error(self, args: list[bytes]) -> tuple[bytes | None, int, bytes | None]:
        """Check an EVAL-family command: (error reply or None, its slot, the script body)."""
        name = args[0].lower()
        if len(args) < 3:
            return _arity_error(_shown(name)), 0, None
        numkeys = commands.string2ll(args[2])
        if numkeys is None:
            return _err("ERR value is not an integer or out of range"), 0, None
        if numkeys <= 0:
            return _err(ERR_SCRIPT_NO_KEYS), 0, None
        if numkeys > len(args) - 3:
            return _err("ERR Number of keys can't be greater than number of args"), 0, None
        slot = self.slot_of(args, range(3, 3 + numkeys))
        if slot is None:
            return _err(ERR_SCRIPT_CROSS_SLOT.format(cmd=_shown(args[0]).upper())), 0, None
        body: bytes | None
        if name in (b"eval", b"eval_ro"):
            body = args[1]
            self.proxy._remember_script(body)
        else:
            body = self.proxy._scripts.get(args[1].decode("ascii", "replace").lower())
        if self.proxy.script_check_enable and body is not None and self.proxy._script_bad(body):
            self.proxy.stats["scripts_rejected"] += 1
            return _err(ERR_BAD_SCRIPT), slot, body
        return None, slot, body

    def script_call(self, s: _Session, args: list[bytes]) -> None:
        error, slot, body = self.script_error(args)
        if error is not None:
            s.local(error)
            return
        addr = self.node_for(slot)
        name = args[0].lower()
        if name in (b"eval", b"eval_ro") or body is None:
            s.forward(addr, args)
            return
        # EVALSHA: if the node lacks the script but we know it, send the body instead.
        r = s.new_reply()
        as_eval = [b"eval" if name == b"evalsha" else b"eval_ro", body, *args[2:]]

        def on_reply(raw: bytes) -> None:
            if raw.startswith(b"-NOSCRIPT"):
                s.request(addr, _encode(as_eval), r)
            else:
                s.complete(r, raw)

        s.request(addr, _encode(args), on_reply)

    def script(self, s: _Session, args: list[bytes]) -> None:
        sub = args[1].lower() if len(args) > 1 else b""
        masters = self.proxy._masters
        if sub == b"load" and len(args) == 3:
            self.proxy._remember_script(args[2])
            s.gather([(m, _encode(args)) for m in masters], self._first_error_or_first)
        elif sub == b"flush" and len(args) <= 3:
            self.proxy._forget_scripts()
            self.proxy._verdicts.clear()
            self.all_masters_ok(s, args)
        elif sub == b"exists" and len(args) >= 3:
            shas = [a.decode("ascii", "replace").lower() for a in args[2:]]

            def exists(replies: list[bytes]) -> bytes:
                for raw in replies:
                    if _is_error(raw):
                        return raw
                per_node = [_split_array(raw) or [] for raw in replies]
                out = [
                    b":1\r\n"
                    if sha in self.proxy._scripts or all(node[i] == b":1\r\n" for node in per_node)
                    else b":0\r\n"
                    for i, sha in enumerate(shas)
                ]
                return b"*%d\r\n" % len(out) + b"".join(out)

            s.gather([(m, _encode(args)) for m in masters], exists)
        elif sub == b"kill" and len(args) == 2:

            def killed(replies: list[bytes]) -> bytes:
                return _OK if _OK in replies else replies[0]

            s.gather([(m, _encode(args)) for m in masters], killed)
        elif sub in (b"load", b"flush", b"exists", b"kill") or not sub:
            s.local(_arity_error("script|" + _shown(sub) if sub else "script"))
        else:
            self.unsupported(s, args)

    # -- rule 4: transactions --
    def multi(self, s: _Session, args: list[bytes]) -> None:
        if s.tx is not None:
            s.local(_err("ERR MULTI calls can not be nested"))
            return
        s.tx = []
        s.tx_error = False
        s.local(_OK)

    def queue_error(self, args: list[bytes], name: bytes) -> bytes | None:
        """Why this command cannot be queued in a transaction, or None."""
        if name in self._SCRIPTS:
            return self.script_error(args)[0]
        if name in self.handlers and name not in self._QUEUEABLE:
            return _err(ERR_UNSUPPORTED.format(cmd=_shown(args[0]).upper() + " inside MULTI"))
        spec = _KEYS.spec(args)
        if spec is None:
            return _unknown_command(args)
        if not spec.check_arity(len(args)):
            return _arity_error(spec.name)
        positions = _KEYS.positions(args)
        if positions and self.slot_of(args, positions) is None:
            return _err(ERR_SCRIPT_CROSS_SLOT.format(cmd=_shown(args[0]).upper()))
        return None

    def queue_tx(self, s: _Session, args: list[bytes], name: bytes) -> None:
        problem = self.queue_error(args, name)
        if problem is not None:
            s.tx_error = True
            s.local(problem)
            return
        assert s.tx is not None
        s.tx.append(args)
        s.local(_QUEUED)

    def discard(self, s: _Session, args: list[bytes]) -> None:
        if s.tx is None:
            s.local(_err("ERR DISCARD without MULTI"))
            return
        s.tx = None
        self._drop_watch(s)
        s.local(_OK)

    def _drop_watch(self, s: _Session) -> None:
        if s.watch_addr is not None:
            s.conn_for(s.watch_addr).send(_UNWATCH, _ignore)
        s.watch_addr = None
        s.watch_slot = None

    def watch(self, s: _Session, args: list[bytes]) -> None:
        if s.tx is not None:
            s.local(_err("ERR WATCH inside MULTI is not allowed"))
            return
        if len(args) < 2:
            s.local(_arity_error("watch"))
            return
        slot = self.slot_of(args, range(1, len(args)))
        if slot is None:
            s.local(_err(ERR_SCRIPT_CROSS_SLOT.format(cmd="WATCH")))
            return
        if s.watch_slot is not None and slot != s.watch_slot:
            s.local(_err(ERR_WATCH_SLOT))
            return
        s.watch_slot = slot
        addr = self.node_for(slot)
        s.watch_addr = addr
        conn = s.conn_for(addr)
        conn.stateful = True

        def landed(final: Addr) -> None:
            s.watch_addr = final
            s.conn_for(final).stateful = True

        r = s.new_reply()
        s.request(addr, _encode(args), r, landed=landed)

    def unwatch(self, s: _Session, args: list[bytes]) -> None:
        if s.tx is not None:  # UNWATCH inside MULTI is queued by a server; it changes nothing
            self.queue_tx(s, args, b"unwatch")
            return
        self._drop_watch(s)
        s.local(_OK)

    def exec_(self, s: _Session, args: list[bytes]) -> None:
        if s.tx is None:
            s.local(_err("ERR EXEC without MULTI"))
            return
        queued, failed = s.tx, s.tx_error
        s.tx = None
        s.tx_error = False
        watch_addr, watch_slot = s.watch_addr, s.watch_slot
        s.watch_addr = s.watch_slot = None  # EXEC ends a WATCH, whatever happens
        if failed:
            if watch_addr is not None:
                s.conn_for(watch_addr).send(_UNWATCH, _ignore)
            s.local(_EXECABORT)
            return
        # Split by slot, keeping the first-seen order; keyless commands join the first part.
        groups: dict[int | None, list[int]] = {}
        keyless: list[int] = []
        for i, cmd in enumerate(queued):
            positions = _KEYS.positions(cmd)
            if positions:
                groups.setdefault(key_slot(cmd[positions[0]]), []).append(i)
            else:
                keyless.append(i)
        if watch_slot is not None and any(slot != watch_slot for slot in groups):
            assert watch_addr is not None
            s.conn_for(watch_addr).send(_UNWATCH, _ignore)
            s.local(_err(ERR_WATCH_SLOT))
            return
        if not groups:
            groups[watch_slot] = []
        first = next(iter(groups))
        groups[first] = sorted(groups[first] + keyless)
        if len(groups) > 1:
            self.proxy.stats["split_transactions"] += 1
        r = s.new_reply()
        n = len(queued)
        results: list[bytes] = [b""] * n
        left = [len(groups)]
        aborted = [False]

        def done(idx: list[int], replies: list[bytes] | None) -> None:
            if replies is None:
                aborted[0] = True
            else:
                for i, raw in zip(idx, replies, strict=True):
                    results[i] = raw
            left[0] -= 1
            if not left[0]:
                nil = b"*-1\r\n" if s.proto == 2 else _NULL3
                reply = nil if aborted[0] else b"*%d\r\n" % n + b"".join(results)
                s.complete(r, reply)

        for slot, idx in groups.items():
            addr = watch_addr if watch_addr is not None else self.node_for(slot or 0)
            self._sub_transaction(
                s, addr, slot, [queued[i] for i in idx], partial(done, idx), watched=watch_addr
            )

    def _sub_transaction(
        self,
        s: _Session,
        addr: Addr,
        slot: int | None,
        cmds: list[list[bytes]],
        done: Callable[[list[bytes] | None], None],
        attempt: int = 0,
        watched: Addr | None = None,
    ) -> None:
        """MULTI, the commands, EXEC on one node; retried when the slot moved meanwhile.

        A WATCHed transaction is never retried elsewhere: the WATCH lives on its node.
        """
        queued: list[bytes] = []

        def on_queued(raw: bytes) -> None:
            queued.append(raw)

        def on_exec(raw: bytes) -> None:
            try:
                finish(raw)
            except Exception as exc:  # noqa: BLE001 - a bug must not stall this client
                error = s.internal_error(exc)
                done([error] * len(cmds))

        def finish(raw: bytes) -> None:
            if raw.startswith(b"*-1") or raw == _NULL3:
                done(None)
                return
            if raw.startswith(b"*"):
                done(_split_array(raw) or [])
                return
            moved = [q for q in queued[1:] if q.startswith(b"-MOVED ")]
            if moved and attempt < 3 and slot is not None and watched is None:
                target = self.proxy._redirect(moved[0], addr, True)
                if target is not None:
                    self._sub_transaction(s, target, slot, cmds, done, attempt + 1)
                    return
            per_command = [q if _is_error(q) else raw for q in queued[1 : 1 + len(cmds)]]
            done(per_command + [raw] * (len(cmds) - len(per_command)))

        payload = _MULTI + b"".join(_encode(c) for c in cmds) + _EXEC
        s.conn_for(addr).send_many(payload, [on_queued] * (len(cmds) + 1) + [on_exec])

    # -- rule 5: what the proxy answers itself, and commands for every master --
    def cluster(self, s: _Session, args: list[bytes]) -> None:
        sub = args[1].lower() if len(args) > 1 else b""
        if sub == b"keyslot":
            if len(args) != 3:
                s.local(_arity_error("cluster|keyslot"))
            else:
                s.local(b":%d\r\n" % key_slot(args[2]))
        elif not sub:
            s.local(_arity_error("cluster"))
        else:
            self.unsupported(s, args)

    @staticmethod
    def _first_error_or_first(replies: list[bytes]) -> bytes:
        for raw in replies:
            if _is_error(raw):
                return raw
        return replies[0]

    def all_masters_ok(self, s: _Session, args: list[bytes]) -> None:
        s.gather([(m, _encode(args)) for m in self.proxy._masters], self._first_error_or_first)

    def dbsize(self, s: _Session, args: list[bytes]) -> None:
        if len(args) != 1:
            s.local(_arity_error("dbsize"))
            return

        def total(replies: list[bytes]) -> bytes:
            for raw in replies:
                if _is_error(raw):
                    return raw
            return b":%d\r\n" % sum(_int_reply(raw) for raw in replies)

        s.gather([(m, _encode(args)) for m in self.proxy._masters], total)

    def keys(self, s: _Session, args: list[bytes]) -> None:
        if len(args) != 2:
            s.local(_arity_error("keys"))
            return

        def concat(replies: list[bytes]) -> bytes:
            items: list[bytes] = []
            for raw in replies:
                if _is_error(raw):
                    return raw
                items += _split_array(raw) or []
            return b"*%d\r\n" % len(items) + b"".join(items)

        s.gather([(m, _encode(args)) for m in self.proxy._masters], concat)

    def randomkey(self, s: _Session, args: list[bytes]) -> None:
        if len(args) != 1:
            s.local(_arity_error("randomkey"))
            return

        def pick(replies: list[bytes]) -> bytes:
            found = [raw for raw in replies if not _is_null(raw) and not _is_error(raw)]
            errors = [raw for raw in replies if _is_error(raw)]
            if found:
                return random.choice(found)
            return errors[0] if errors else s.null

        s.gather([(m, _encode(args)) for m in self.proxy._masters], pick)

    def scan(self, s: _Session, args: list[bytes]) -> None:
        """SCAN walks the masters in turn; the cursor is ``node_cursor * masters + node``."""
        if len(args) < 2:
            s.local(_arity_error("scan"))
            return
        masters = list(self.proxy._masters)
        cursor = commands.string2ll(args[1]) if args[1] != b"-0" else None
        if cursor is None or cursor < 0:
            s.local(_err("ERR invalid cursor"))
            return
        count = len(masters)
        node, node_cursor = cursor % count, cursor // count
        r = s.new_reply()

        def reply(raw: bytes) -> bytes:
            parts = _split_array(raw) if raw.startswith(b"*") else None
            if not parts or len(parts) != 2:
                return raw
            nxt = int(parts[0][parts[0].index(b"\n") + 1 : -2])
            # next cursor: more on this node, else the next node from its start, else done
            proxy_next = nxt * count + node if nxt else (node + 1) % count
            return b"*2\r\n" + bulk(b"%d" % proxy_next) + parts[1]

        def on_reply(raw: bytes) -> None:
            s.complete(r, s.safely(lambda: reply(raw)))

        s.request(masters[node], _encode([args[0], b"%d" % node_cursor, *args[2:]]), on_reply)


class _Passthrough(_Personality):
    """Route by the first key, like go-redis's ClusterClient; the node's errors reach you."""

    name = "passthrough"

    def __init__(self, proxy: Proxy) -> None:
        super().__init__(proxy)
        self.handlers.update(
            {
                b"multi": self.multi,
                b"exec": self.exec_,
                b"discard": self.discard,
                b"watch": self.watch,
                b"unwatch": self.unwatch,
            }
        )

    def dispatch(self, s: _Session, args: list[bytes]) -> None:
        name = args[0].lower()
        if s.tx is not None or s.tx_live:
            if name in (b"exec", b"discard", b"multi", b"watch", b"quit", b"reset"):
                self.handlers[name](s, args)
            else:
                self.in_multi(s, args)
            return
        handler = self.handlers.get(name)
        if handler is not None:
            handler(s, args)
        else:
            s.forward_current(self.first_key_node(args), args)

    def first_key_node(self, args: Sequence[bytes]) -> Addr:
        positions = _KEYS.positions(args)
        if positions:
            return self.node_for(key_slot(args[positions[0]]))
        return random.choice(self.proxy._masters)

    # A transaction is pinned to one node: the WATCHed one, else the first key's.
    def multi(self, s: _Session, args: list[bytes]) -> None:
        if s.tx is not None or s.tx_live:
            s.local(_err("ERR MULTI calls can not be nested"))
            return
        if s.pinned is not None:
            s.tx_live = True
            s.forward(s.pinned, args)
        else:
            s.tx = []
            s.local(_OK)

    def in_multi(self, s: _Session, args: list[bytes]) -> None:
        if s.tx_live:
            assert s.pinned is not None
            r = s.new_reply()
            s.conn_for(s.pinned).send(_encode(args), r)
            return
        assert s.tx is not None
        positions = _KEYS.positions(args)
        if not positions:
            s.tx.append(args)
            s.local(_QUEUED)
            return
        addr = self.node_for(key_slot(args[positions[0]]))
        self._pin(s, addr)
        r = s.new_reply()
        s.conn_for(addr).send(_encode(args), r)

    def _pin(self, s: _Session, addr: Addr) -> None:
        """Open the transaction on ``addr``: MULTI and what was queued before the first key."""
        buffered = s.tx or []
        s.tx = None
        s.pinned = addr
        s.tx_live = True
        conn = s.conn_for(addr)
        conn.stateful = True
        payload = _MULTI + b"".join(_encode(c) for c in buffered)
        conn.send_many(payload, [_ignore] * (1 + len(buffered)))

    def exec_(self, s: _Session, args: list[bytes]) -> None:
        if s.tx is None and not s.tx_live:
            s.local(_err("ERR EXEC without MULTI"))
            return
        if not s.tx_live:
            self._pin(s, random.choice(self.proxy._masters))
        assert s.pinned is not None
        r = s.new_reply()
        s.conn_for(s.pinned).send(_encode(args), r)
        s.pinned = None
        s.tx_live = False

    def discard(self, s: _Session, args: list[bytes]) -> None:
        if s.tx is None and not s.tx_live:
            s.local(_err("ERR DISCARD without MULTI"))
            return
        if s.tx_live and s.pinned is not None:
            r = s.new_reply()
            s.conn_for(s.pinned).send(_encode(args), r)
        else:
            s.local(_OK)
        s.tx = None
        s.tx_live = False
        s.pinned = None

    def watch(self, s: _Session, args: list[bytes]) -> None:
        if s.tx is not None or s.tx_live:
            s.local(_err("ERR WATCH inside MULTI is not allowed"))
            return
        if len(args) < 2:
            s.local(_arity_error("watch"))
            return
        addr = s.pinned or self.node_for(key_slot(args[1]))
        s.pinned = addr
        s.conn_for(addr).stateful = True
        r = s.new_reply()
        s.conn_for(addr).send(_encode(args), r)

    def unwatch(self, s: _Session, args: list[bytes]) -> None:
        if s.pinned is not None:
            s.forward(s.pinned, args)
            s.pinned = None
        else:
            s.local(_OK)


_RULES: Final[dict[str, type[_Personality]]] = {"alibaba": _Alibaba, "passthrough": _Passthrough}


# ---- the proxy --------------------------------------------------------------------------------


def _parse_node(node: Any) -> Addr:
    if isinstance(node, tuple) and len(node) == 2:
        return (str(node[0]), int(node[1]))
    if isinstance(node, str):
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a node address must look like 'host:port', not {node!r}")
        return (host.strip("[]"), int(port))
    node_host, node_port = getattr(node, "host", None), getattr(node, "port", None)
    if node_host is None or node_port is None:
        raise TypeError(f"cannot read a node address from {node!r}: give 'host:port' strings")
    return (str(node_host), int(node_port))


class Proxy:
    """A loopback proxy-mode endpoint in front of a Redis Cluster (see the module docstring).

    ``nodes`` are the cluster nodes to start from (``"host:port"`` strings, ``(host, port)``
    tuples, or a lab's ``lab.nodes``); the proxy reads the slot map from them with
    ``CLUSTER SLOTS``. ``personality`` is ``"alibaba"`` or ``"passthrough"``.
    ``script_check_enable`` is the Alibaba console parameter: False turns the static script check
    off (the slot and key-count checks stay). The proxy listens on ``host`` (loopback by default)
    at a port the OS picks unless you give one. ``event_loop`` is ``"auto"`` (uvloop when it is
    installed, else asyncio's own loop), ``"asyncio"`` or ``"uvloop"``; ``loop_kind`` says which
    one runs.
    """

    def __init__(
        self,
        nodes: Iterable[Any],
        personality: str = "alibaba",
        script_check_enable: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        event_loop: str = "auto",
    ) -> None:
        if personality not in _RULES:
            raise ValueError(
                f"unknown personality {personality!r}: choose one of {', '.join(PERSONALITIES)}"
            )
        if event_loop not in EVENT_LOOPS:
            raise ValueError(
                f"unknown event_loop {event_loop!r}: choose one of {', '.join(EVENT_LOOPS)}"
            )
        self.event_loop = event_loop
        #: The loop that runs the proxy, once started: "uvloop" or "asyncio".
        self.loop_kind = ""
        self.seeds: list[Addr] = [_parse_node(n) for n in nodes]
        if not self.seeds:
            raise ValueError("give the proxy at least one cluster node to start from")
        self.personality = personality
        self.script_check_enable = bool(script_check_enable)
        self.host = host
        self.port = port
        self.server_version = "7.0.0"
        #: Counters a notebook can print: commands, fanouts, redirects, scripts_rejected, ...
        self.stats: dict[str, int] = dict.fromkeys(
            ("commands", "connections", "fanouts", "redirects", "scripts_rejected",
             "split_transactions", "unreachable", "slot_map_refreshes", "internal_errors"),
            0,
        )  # fmt: skip
        self._rules: _Personality = _RULES[personality](self)
        self._slots: list[Addr | None] = [None] * SLOT_COUNT
        self._masters: list[Addr] = []
        self._scripts: dict[str, bytes] = {}
        self._verdicts: dict[bytes, bool] = {}
        #: Bodies remembered in _scripts (under their SHA), and their verdict once checked.
        self._bodies: dict[bytes, bool | None] = {}
        self._sessions: set[_Session] = set()
        self._idle: dict[tuple[Addr, int], list[_NodeConn]] = {}
        self._down: dict[Addr, tuple[float, str]] = {}
        self._depth = 0
        self._dirty: list[_Session] = []
        self._corked: list[_NodeConn] = []
        self._ids = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refreshing = False
        self._refreshed_at = 0.0
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # ---- public -------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` of the proxy, once started."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._loop is not None and self._server is not None

    def __repr__(self) -> str:
        state = f"on {self.address}" if self.running else "stopped"
        return (
            f"<Proxy {self.personality} script_check_enable={self.script_check_enable} {state}, "
            f"{len(self._masters)} masters>"
        )

    def start(self) -> Proxy:
        """Read the slot map and start listening; returns self. Raises ProxyError on failure."""
        if self.running:
            return self
        loop, self.loop_kind = _new_event_loop(self.event_loop)
        thread = threading.Thread(
            target=self._run_loop, args=(loop,), name=f"slotlab-proxy-{self.personality}",
            daemon=True,
        )  # fmt: skip
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._startup(), loop).result(timeout=30)
        except BaseException as exc:
            self._stop_loop()
            if isinstance(exc, ProxyError):
                raise
            raise ProxyError(f"the proxy could not start: {exc}") from exc
        self._finalizer = weakref.finalize(self, Proxy._stop_at_exit, loop, thread)
        return self

    def stop(self) -> None:
        """Close every client connection and node connection, and the listener. Safe twice."""
        loop = self._loop
        if loop is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        if loop.is_running() and threading.current_thread() is not self._thread:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        self._stop_loop()

    def refresh_slot_map(self) -> None:
        """Read the slot map again now (the proxy also does this by itself after MOVED)."""
        if self._loop is None:
            raise ProxyError("the proxy is not running")
        asyncio.run_coroutine_threadsafe(self._load_slot_map(), self._loop).result(timeout=30)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- the event loop thread ----------------------------------------------------------------

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        self._server = None
        if loop is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        if not loop.is_running():
            loop.close()

    @staticmethod
    def _stop_at_exit(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)

    async def _startup(self) -> None:
        await self._load_slot_map()
        version = await self._ask_any([b"INFO", b"server"])
        if isinstance(version, bytes):
            m = re.search(rb"redis_version:([0-9.]+)", version)
            if m:
                self.server_version = m[1].decode()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Session(self), self.host, self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for s in list(self._sessions):
            if s.transport is not None:
                s.transport.abort()
        await asyncio.sleep(0)  # let the sessions' connection_lost release their node conns
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0.01)  # let the transports close their sockets

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- talking to the cluster outside client traffic ----------------------------------------

    async def _ask(self, addr: Addr, args: Sequence[bytes]) -> Any:
        """One command on a short-lived connection; the reply parsed by hiredis."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(addr[0], addr[1]), CONNECT_TIMEOUT
        )
        try:
            writer.write(_encode(args))
            parser = hiredis.Reader()
            while True:
                data = await asyncio.wait_for(reader.read(1 << 16), 5)
                if not data:
                    raise ConnectionError("the node closed the connection")
                parser.feed(data)
                reply = parser.gets()
                if reply is not False:
                    if isinstance(reply, hiredis.ReplyError):
                        raise redis.ResponseError(str(reply))
                    return reply
        finally:
            writer.close()

    async def _ask_any(self, args: Sequence[bytes]) -> Any:
        problems = []
        for addr in dict.fromkeys([*self._masters, *self.seeds]):
            try:
                return await self._ask(addr, args)
            except (OSError, asyncio.TimeoutError, redis.RedisError) as exc:
                problems.append(f"{addr[0]}:{addr[1]}: {exc or type(exc).__name__}")
        raise ProxyError("no node answered " + _shown(args[0]) + ": " + "; ".join(problems))

    async def _load_slot_map(self) -> None:
        """Read ``CLUSTER SLOTS`` from the first node that answers; build slot -> master."""
        reply = await self._ask_any([b"CLUSTER", b"SLOTS"])
        slots: list[Addr | None] = [None] * SLOT_COUNT
        ranges: list[tuple[int, Addr]] = []
        for entry in reply:
            lo, hi, master = int(entry[0]), int(entry[1]), entry[2]
            host = master[0].decode() if master[0] else ""
            addr = (host or self.seeds[0][0], int(master[1]))
            slots[lo : hi + 1] = [addr] * (hi - lo + 1)
            ranges.append((lo, addr))
        if not ranges:
            raise ProxyError("the cluster serves no slots (CLUSTER SLOTS is empty)")
        self._slots = slots
        self._masters = list(dict.fromkeys(addr for _, addr in sorted(ranges)))
        self.stats["slot_map_refreshes"] += 1

    async def _refresh(self) -> None:
        try:
            await self._load_slot_map()
        except (ProxyError, OSError, asyncio.TimeoutError):
            pass
        finally:
            self._refreshing = False

    def _redirect(self, raw: bytes, via: Addr, moved: bool) -> Addr | None:
        """The node a MOVED/ASK reply points to; MOVED also updates the slot map."""
        try:
            _, slot_text, target = raw[1:].rstrip(b"\r\n").split(b" ", 2)
            host, _, port = target.rpartition(b":")
            addr = (host.decode() or via[0], int(port))
            slot = int(slot_text)
        except ValueError:
            return None
        if moved:
            self._slots[slot] = addr
            if addr not in self._masters:
                self._masters.append(addr)
            self._schedule_refresh(at_once=True)
        return addr

    def _schedule_refresh(self, at_once: bool = False) -> None:
        """Read the slot map again soon: after MOVED at once, after a failed connect at most
        every REFRESH_INTERVAL seconds."""
        now = time.monotonic()
        if self._refreshing or (not at_once and now - self._refreshed_at < REFRESH_INTERVAL):
            return
        self._refreshing = True
        self._refreshed_at = now
        self._spawn(self._refresh())

    def _any_master(self) -> Addr:
        return self._masters[0]

    # ---- node connections ---------------------------------------------------------------------

    def _acquire(self, addr: Addr, proto: int) -> _NodeConn:
        idle = self._idle.get((addr, proto))
        while idle:
            conn = idle.pop()
            if not conn.dead:
                return conn
        conn = _NodeConn(self, addr, proto)
        down = self._down.get(addr)
        if down is not None and time.monotonic() < down[0]:
            conn.fail_now(down[1])
            return conn
        conn.start()
        return conn

    def _release(self, conn: _NodeConn) -> None:
        """A client left: keep its clean node connection for the next client, or close it."""
        idle = self._idle.setdefault((conn.addr, conn.proto), [])
        if (
            self._closing
            or conn.dead
            or conn.stateful
            or conn.pending
            or conn.transport is None
            or len(idle) >= IDLE_PER_NODE
        ):
            conn.close()
        else:
            idle.append(conn)

    def _mark_down(self, addr: Addr, why: str) -> None:
        self._down[addr] = (time.monotonic() + DOWN_BACKOFF, why)

    # ---- batching writes within one event ------------------------------------------------------

    @contextlib.contextmanager
    def _batch(self) -> Any:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth:
                self._drain()

    def _drain(self) -> None:
        """End of an event: write every client's ready replies and every node's queued commands."""
        self._depth = 1
        try:
            while self._dirty or self._corked:
                while self._dirty:
                    self._dirty.pop().flush()
                while self._corked:
                    self._corked.pop().uncork()
        finally:
            self._depth = 0

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    # ---- scripts ------------------------------------------------------------------------------

    def _remember_script(self, body: bytes) -> None:
        if body in self._bodies:
            return  # remembered already: its SHA is in _scripts
        if len(self._scripts) > 10000:
            self._forget_scripts()
        self._scripts[hashlib.sha1(body).hexdigest()] = body
        self._bodies[body] = self._verdicts.get(body)

    def _forget_scripts(self) -> None:
        self._scripts.clear()
        self._bodies.clear()

    def _script_bad(self, body: bytes) -> bool:
        verdict = self._verdicts.get(body)
        if verdict is None:
            verdict = bool(check_script(body))
            if len(self._verdicts) > 10000:
                self._verdicts.clear()
            self._verdicts[body] = verdict
        if body in self._bodies:
            self._bodies[body] = verdict
        return verdict


class ProxyClient(redis.Redis):
    """A plain ``redis.Redis`` connected to a :class:`Proxy`; closing it stops the proxy.

    ``client.proxy`` is the proxy itself (its address, personality and ``stats``).
    """

    def __init__(self, proxy: Proxy, **kwargs: Any) -> None:
        self.proxy = proxy
        super().__init__(host=proxy.host, port=proxy.port, **kwargs)

    def close(self) -> None:
        """Close the client's connections, then stop its proxy."""
        try:
            super().close()
        finally:
            proxy = getattr(self, "proxy", None)
            if proxy is not None:
                proxy.stop()
