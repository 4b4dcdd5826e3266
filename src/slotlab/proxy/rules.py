"""What a proxy does with a command, decided without a network: the rules half of the proxy.

:func:`decide` takes one request (or, at EXEC, the MULTI block queued before it), the client's
:class:`SessionState` and the slot map, and returns a **decision**:

- :class:`Answer`: the proxy answers here, with this reply (``+PONG``, a vendor's error...);
- :class:`Forward`: send the request whole to the node that owns slot ``S``;
- :class:`FanOut`: send a part to each of these nodes and merge the replies into one;
- :class:`Transaction`: run the queued commands as one MULTI/EXEC per slot, replies in order.

The transport (``slotlab.proxy.transport``) carries decisions out: connections, redirects,
NOSCRIPT. An auditor can ask "what would this proxy do with this command?" by calling
:func:`decide` with a slot map of its own::

    >>> from slotlab.proxy.rules import SessionState, StaticSlotMap, decide
    >>> decision = decide("alibaba", [b"EVAL", b"return 1", b"2", b"a", b"b"], SessionState(),
    ...                   StaticSlotMap([("127.0.0.1", 7000)]))
    >>> decision.reply
    b"-ERR 'EVAL' command keys must in same slot\\r\\n"

A personality is one file (``alibaba.py``, ``passthrough.py``) with a subclass of
:class:`Rules`; this module holds what every proxy answers the same way: the connection
commands (PING, ECHO, QUIT, HELLO, SELECT, CLIENT, RESET), and the server's own checks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from slotlab import commands, errors
from slotlab.resp import bulk, encode, error_reply
from slotlab.slots import key_slot

__all__ = [
    "Addr", "Answer", "Decision", "FanOut", "Forward", "Rules", "SessionState", "SlotMap",
    "StaticSlotMap", "Transaction", "decide", "rules_for",
]  # fmt: skip

Addr = tuple[str, int]

_log = logging.getLogger("slotlab.proxy")

OK: Final = b"+OK\r\n"
QUEUED: Final = b"+QUEUED\r\n"
NULL: Final = {2: b"$-1\r\n", 3: b"_\r\n"}


@dataclass(frozen=True)
class Answer:
    """Answer here with ``reply`` (raw RESP). ``close``: then close the connection (QUIT).
    ``unpin``: the connection's WATCH/transaction on its node ends (UNWATCH/DISCARD it)."""

    reply: bytes
    close: bool = False
    unpin: bool = False
    #: which counter in ``Proxy.stats`` this counts in, if any
    counts_as: str = ""


@dataclass(frozen=True)
class Forward:
    """Send the request to the owner of ``slot`` (None: any master), its reply to the client.

    ``pinned``: send it to the node this connection is pinned to (a WATCH or a transaction lives
    there), redirects not followed. ``pin``: pin the connection to wherever the request lands.
    ``prelude``: commands sent first whose replies the client never sees. ``script``: the body
    of an EVALSHA, sent as EVAL if the node answers NOSCRIPT.
    """

    slot: int | None
    pinned: bool = False
    pin: bool = False
    prelude: tuple[list[bytes], ...] = ()
    script: bytes | None = None


@dataclass(frozen=True)
class FanOut:
    """Send ``argv`` of each part to its node; ``merge`` makes the client's one reply."""

    parts: tuple[tuple[Addr, list[bytes]], ...]
    merge: Callable[[list[bytes]], bytes]
    #: which counter in ``Proxy.stats`` this counts in, if any
    counts_as: str = ""


@dataclass(frozen=True)
class Transaction:
    """EXEC of a split transaction: one MULTI/EXEC per slot (``(slot, indexes, commands)``);
    the replies go back in the order queued. ``watched``: run on the pinned (WATCHed) node."""

    parts: tuple[tuple[int | None, tuple[int, ...], tuple[list[bytes], ...]], ...]
    size: int
    watched: bool = False


Decision = Answer | Forward | FanOut | Transaction


@dataclass
class SessionState:
    """What the rules remember about one client connection between its commands."""

    protocol: int = 2  # the RESP version chosen with HELLO
    name: bytes | None = None  # CLIENT SETNAME
    tx: list[list[bytes]] | None = None  # commands queued since MULTI
    tx_error: bool = False  # a command failed to queue: EXEC answers EXECABORT
    watch_slot: int | None = None  # alibaba: the WATCHed slot
    pinned: bool = False  # a WATCH or a transaction lives on one node (the transport knows it)
    tx_live: bool = False  # passthrough: MULTI was sent to the pinned node
    id: int = 0  # the client id HELLO reports
    version: str = "7.0.0"  # the server version HELLO reports (the proxy reads it from a node)
    authenticated: bool = True  # False until AUTH when the proxy has a password

    @property
    def null(self) -> bytes:
        return NULL[self.protocol]

    @property
    def in_multi(self) -> bool:
        """Between MULTI and EXEC or DISCARD (queued here, or live on the pinned node)."""
        return self.tx is not None or self.tx_live


class SlotMap(Protocol):
    """The part of the cluster's layout the rules read."""

    @property
    def masters(self) -> list[Addr]: ...

    def node_for(self, slot: int) -> Addr: ...


@dataclass
class StaticSlotMap:
    """A slot map for asking the rules offline: every slot on the first master."""

    masters: list[Addr]
    slots: dict[int, Addr] = field(default_factory=dict)

    def node_for(self, slot: int) -> Addr:
        return self.slots.get(slot, self.masters[0])


def err(text: str) -> Answer:
    return Answer(error_reply(text))


def shown(name: bytes) -> str:
    return name.decode("utf-8", "replace")


def key_positions(argv: Sequence[bytes]) -> list[int]:
    """Where the keys are in ``argv``, as the cluster finds them; [] for none or unknown."""
    spec = commands.lookup(argv)
    if spec is None or not spec.check_arity(len(argv)):
        return []  # the node will answer with its own error
    return [p for p in commands.cluster_keys(spec, argv) if p < len(argv)]


def slot_of(argv: Sequence[bytes], positions: Sequence[int]) -> int | None:
    """The one slot of the keys at these positions, or None when they span slots."""
    slots = {key_slot(argv[p]) for p in positions}
    return slots.pop() if len(slots) == 1 else None


#: The server's rules for the transaction commands: refused inside MULTI (True) or outside it.
_MULTI_RULES: Final = {
    b"multi": (True, errors.MULTI_NESTED), b"watch": (True, errors.WATCH_IN_MULTI),
    b"exec": (False, errors.EXEC_WITHOUT_MULTI), b"discard": (False, errors.DISCARD_WITHOUT_MULTI),
}  # fmt: skip

Handler = Callable[[list[bytes], SessionState, SlotMap], "Decision"]


class Rules:
    """What every proxy answers itself: PING, ECHO, QUIT, HELLO, SELECT, CLIENT, RESET."""

    name = "base"
    #: Control commands that run even inside MULTI (everything else is queued).
    tx_control = frozenset({b"multi", b"exec", b"discard", b"watch", b"quit", b"reset"})

    #: What a client must AUTH with (None: no password), as a server's ``requirepass``.
    password: str | None = None
    #: Commands answered "not supported": these would switch the connection into a mode the
    #: proxy cannot follow.
    not_supported = frozenset({b"subscribe", b"psubscribe", b"ssubscribe", b"unsubscribe",
                               b"punsubscribe", b"sunsubscribe", b"monitor", b"sync", b"psync",
                               b"replconf"})  # fmt: skip

    def __init__(self) -> None:
        self.handlers: dict[bytes, Handler] = {
            b"ping": self.ping, b"echo": self.echo, b"quit": self.quit, b"hello": self.hello,
            b"select": self.select, b"client": self.client, b"reset": self.reset,
        }  # fmt: skip
        self.handlers.update(dict.fromkeys(self.not_supported, self.unsupported))

    def decide(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        """The decision for one request (see the module docstring)."""
        raise NotImplementedError

    def admit(self, argv: list[bytes], state: SessionState) -> Decision | None:
        """The server's checks that come before any proxy rule, or None when they pass: an HTTP
        request (``POST``, ``Host:``) is logged and its connection closed, with no reply and
        nothing after it read; AUTH is answered here; a client that has not authenticated gets
        the server's lookup and arity errors, then ``NOAUTH`` (``slotlab.commands``)."""
        if commands.is_security_attack(argv):
            commands.security_warning(_log)
            return Answer(b"", close=True)
        if argv[0].lower() == b"auth":
            problem = commands.check_command(argv)[1] or commands.check_auth(argv, self.password)
            if problem is not None:
                return err(problem)
            state.authenticated = True
            return Answer(OK)
        if not state.authenticated:
            spec, problem = commands.check_command(argv)
            if problem is None and spec is not None:
                problem = commands.auth_required(spec, False)
            if problem is not None:
                return err(problem)
        return None

    def handle(self, name: bytes, argv: list[bytes], state: SessionState,
               slots: SlotMap) -> Decision:  # fmt: skip
        """A command the proxy answers itself: the server's existence and arity checks first
        (``commands.check_command``), its MULTI rules, then its handler."""
        problem = commands.check_command(argv)[1]
        refused_in_multi, multi_error = _MULTI_RULES.get(name, (None, ""))
        if problem is None and refused_in_multi == state.in_multi:
            problem = multi_error
        return err(problem) if problem is not None else self.handlers[name](argv, state, slots)

    # -- the connection commands --
    def unsupported(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        cmd = shown(argv[0]).upper()
        if len(argv) > 1 and argv[0].lower() in (b"cluster", b"client", b"script"):
            cmd += " " + shown(argv[1]).upper()
        return err(errors.PROXY_UNSUPPORTED.format(cmd=cmd))

    def ping(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        if len(argv) > 2:
            return err(commands.arity_error("ping"))
        return Answer(b"+PONG\r\n" if len(argv) == 1 else bulk(argv[1]))

    def echo(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        return Answer(bulk(argv[1]))

    def quit(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        return Answer(OK, close=True)

    def hello(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        """HELLO answers like a standalone server; HELLO 3 switches the client to RESP3."""
        hello = commands.parse_hello(argv, self.password, state.authenticated)
        if isinstance(hello, str):
            return err(hello)
        state.authenticated = state.authenticated or hello.authenticated
        if hello.name is not None:
            state.name = hello.name or None
        version = hello.protocol or state.protocol
        state.protocol = version
        reply = {b"server": b"redis", b"version": state.version.encode(), b"proto": version,
                 b"id": state.id, b"mode": b"standalone", b"role": b"master", b"modules": []}
        return Answer(encode(reply, version))  # a map in RESP3, a flat array in RESP2

    def select(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        db = commands.string2ll(argv[1])
        if db is None:
            return err(errors.NOT_INTEGER)
        return Answer(OK) if db == 0 else err(errors.PROXY_DB_RANGE)

    def client(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        sub = argv[1].lower()
        if sub == b"setinfo":
            return Answer(OK)
        if sub == b"setname":
            if commands.bad_client_name(argv[2]):
                return err(errors.CLIENT_NAME)
            state.name = argv[2] or None
            return Answer(OK)
        if sub == b"getname":
            return Answer(bulk(state.name) if state.name else state.null)
        return self.unsupported(argv, state, slots)

    def reset(self, argv: list[bytes], state: SessionState, slots: SlotMap) -> Decision:
        pinned = state.pinned
        state.tx = state.name = state.watch_slot = None
        state.tx_error = state.pinned = state.tx_live = False
        state.authenticated = commands.authenticated_after_reset(self.password)
        return Answer(b"+RESET\r\n", unpin=pinned)


def rules_for(
    personality: str, script_check_enable: bool = True, password: str | None = None
) -> Rules:
    """A new rules object for ``personality`` ("alibaba" or "passthrough"); clients must AUTH
    with ``password`` when it is not None."""
    from slotlab.proxy.alibaba import Alibaba
    from slotlab.proxy.passthrough import Passthrough

    if personality not in ("alibaba", "passthrough"):
        raise ValueError(
            f"unknown personality {personality!r}: choose one of 'alibaba', 'passthrough'"
        )
    rules = Alibaba(script_check_enable) if personality == "alibaba" else Passthrough()
    rules.password = password
    return rules


def decide(personality: str | Rules, argv: Sequence[bytes | str],
           state: SessionState | None = None, slots: SlotMap | None = None) -> Decision:
    """What the proxy with ``personality`` does with one request, without any network.

    ``state`` is the client connection's state (a new connection's if not given; a MULTI
    block is decided by sending MULTI, the commands and EXEC with one state). ``slots`` says
    which node serves which slot (every slot on one made-up node if not given). Returns an
    :class:`Answer`, :class:`Forward`, :class:`FanOut` or :class:`Transaction`.
    """
    rules = rules_for(personality) if isinstance(personality, str) else personality
    args = [a.encode() if isinstance(a, str) else bytes(a) for a in argv]
    slots = slots or StaticSlotMap([("127.0.0.1", 7000)])
    state = state if state is not None else SessionState()
    return rules.admit(args, state) or rules.decide(args, state, slots)
