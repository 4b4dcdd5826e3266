"""Alibaba's static Lua script check, as slotlab models it: which keys a script names how.

The vendor's Lua limits page (FACTS.md section 3) says every key a script touches must be passed
in KEYS and written ``KEYS[n]`` at the key position of ``redis.call``/``redis.pcall``. The real
checker is closed source; :func:`check_script` is an approximation that reads the script's tokens
and finds the key positions from the server's command table (``slotlab.commands``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from slotlab import commands

__all__ = ["ScriptProblem", "check_script"]


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
    | (?P<bad>.)
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
    for m in _LUA_TOKEN.finditer(src, pos):
        kind = m.lastgroup or ""
        if kind == "bad":
            raise _LuaSyntax(f"unexpected character {m.group()!r}")
        if kind not in ("ws", "comment", "lcomment"):
            out.append(_Tok(kind, m.group(), m.start()))
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
_CALLS: Final = (["redis", ".", "call", "("], ["redis", ".", "pcall", "("])


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
    texts = [t.text for t in toks]  # a string token keeps its quotes: 'KEYS' is not KEYS
    return len(texts) == 4 and texts[:2] == ["KEYS", "["] and texts[2].isdigit() and texts[3] == "]"


def _call_args(toks: Sequence[_Tok], start: int) -> list[list[_Tok]]:
    """Split the arguments of a call whose ``(`` is just before ``start``, up to its ``)``."""
    depth = 0
    args: list[list[_Tok]] = []
    cur: list[_Tok] = []
    for j in range(start, len(toks)):  # an index, not toks[start:]: no copy of the rest
        t = toks[j]
        op = t.text if t.kind == "op" else ""
        if depth == 0 and op in (")", "]", "}"):
            return [*args, cur] if cur or args else args
        if depth == 0 and op == ",":
            args.append(cur)
            cur = []
            continue
        depth += (op in ("(", "[", "{")) - (op in (")", "]", "}"))
        cur.append(t)
    raise _LuaSyntax("unbalanced parentheses")


def check_script(script: str | bytes) -> list[ScriptProblem]:
    """What the proxy's static script check finds wrong in ``script``; [] means accepted.

    The rule (Alibaba's Lua limits page): "all keys should be passed by the KEYS array; the key
    position in a redis.call/pcall command must be the KEYS array (a Lua variable must not
    replace KEYS)", and in the newer error text "KEYS should not be in expression". The real
    checker is closed source; this one is an APPROXIMATION. It reads every ``redis.call(...)``
    and ``redis.pcall(...)``, finds which arguments are keys from the server's command table,
    and accepts a key argument only when it is literally ``KEYS[<number>]``.

    Accepted: ``redis.call('SET', KEYS[1], ARGV[1])``; ``KEYS[2]`` as a VALUE; no keys at all.
    Rejected: a literal key, a variable (``local k = KEYS[1]``), ``KEYS[1] .. ':x'``,
    ``KEYS[i]`` in a loop (Alibaba's support answer: "KEYS[i] is not supported"), rockscache's
    ``for _, key in ipairs(KEYS)`` batch scripts (OpenIM issue #2894 shows the real checker
    rejecting one), ``unpack(KEYS)``, a command name that is not a literal. docs/proxy.md has
    the whole table.

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
    i = counted = 0
    line = 1
    while i + 3 < len(toks):
        t = toks[i]
        texts = [x.text for x in toks[i : i + 4]]
        if texts not in _CALLS or (i and toks[i - 1].text in (".", ":")):  # not x.redis.call
            i += 1
            continue
        try:
            args = _call_args(toks, i + 4)
        except _LuaSyntax:
            return problems
        line += src.count("\n", counted, t.at)  # counted on from the last call, not from 0
        counted = t.at
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
    spec = commands.lookup(argvs[0])
    if spec is None:
        return None  # not a command the server knows: it will fail at run time anyway
    last = args[-1]
    expands = last and (last[-1].text == ")" or (len(last) == 1 and last[0].text == "..."))
    if not spec.check_arity(len(args)):
        # Too few arguments to find keys in: an expansion fills them in at run time, or the
        # server refuses the call then (its arity check comes before its key lookup).
        return f"keys may come from the expansion {_arg_text(last)}, not from KEYS[n]" if (
            expands and len(args) > 1
        ) else None
    positions = commands.cluster_keys(spec, argvs[0])
    if "movablekeys" in spec.flags and positions != commands.cluster_keys(spec, argvs[1]):
        return "which arguments are keys depends on values computed at run time"
    fixed_keys = spec.first > 0 and (spec.last < 0 or len(args) <= spec.last + 1)
    if expands and len(args) > 1 and fixed_keys:
        return f"keys may come from the expansion {_arg_text(last)}, not from KEYS[n]"
    for p in positions:
        if p < len(args) and not _is_keys_index(args[p]):
            what = _arg_text(args[p])
            if any(tok.text == "KEYS" for tok in args[p]):
                return f"the key {what} uses KEYS in an expression; write KEYS[n] itself"
            return f"the key {what} is not written KEYS[n]"
    return None
