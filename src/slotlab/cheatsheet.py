"""The one-page cheat sheet: each cluster rule, what breaks it, and what everyone says about it.

For every rule, :func:`rows` breaks it on a running lab and records what comes back: from the
server (a node, on the wire, the error text exactly as sent), from redis-py's ``RedisCluster``
(what an application sees), and from our two proxy models (``alibaba`` and ``passthrough``,
on the wire). Then it runs the fix through the cluster client and both proxy models, and
refuses to print a fix that fails anywhere. Nothing in the sheet is typed by hand but the rule,
the fix's wording and the commands, so the sheet cannot drift from the server.

``python -m slotlab.cheatsheet`` writes ``docs/cheatsheet.md`` (a test checks it matches a
fresh run, on both backends); :func:`table` gives the same table for a notebook.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hiredis
import redis

from slotlab import batching
from slotlab.lab import Lab
from slotlab.resp import encode_command

#: Addresses change from run to run; the sheet shows where one goes.
_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}:\d+\b")
PROXIES = ("alibaba", "passthrough")


def _shown(value: Any) -> str:
    """A reply as the sheet shows it: bytes as text, addresses as ``<host:port>``."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    if isinstance(value, list):
        value = [_shown(v) for v in value]
        return "[" + ", ".join(v if v == "nil" else repr(v) for v in value) + "]"
    if value is None:
        return "nil"
    return _ADDRESS.sub("<host:port>", str(value))


def on_the_wire(host: str, port: int, password: str | None, *command: str | int) -> str:
    """Send ``command`` on a new connection; the reply as the peer sent it: an error reply
    whole (``-CROSSSLOT ...``), anything else as ``works → value``."""
    reader = hiredis.Reader()
    auth = encode_command("AUTH", password) if password is not None else b""
    replies: list[Any] = []
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(auth + encode_command(*command))
        while len(replies) < (2 if auth else 1):
            data = s.recv(65536)
            if not data:
                break
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                replies.append(reply)
    reply = replies[-1]
    if isinstance(reply, hiredis.ReplyError):
        return f"`-{_shown(reply)}`"
    return f"works → `{_shown(reply)}`"


def redis_py(call: Callable[[], Any]) -> str:
    """What an application calling redis-py sees: the value, or the exception it raises."""
    try:
        value = call()
    except (redis.RedisError, redis.exceptions.RedisClusterException) as error:
        return f"`{type(error).__name__}: {_shown(error)}`"
    return f"works → `{_shown(value)}`"


@dataclass(frozen=True)
class Row:
    """One rule of the sheet, and what each party says when it is broken."""

    rule: str
    breaks_it: str
    server: str
    redis_py: str
    proxies: tuple[str, ...]
    fix: str

    def cells(self) -> list[str]:
        return [self.rule, self.breaks_it, self.server, self.redis_py, *self.proxies, self.fix]


HEADER = ["rule", "what breaks it", "the server says", "redis-py's `RedisCluster` says",
          "our Alibaba proxy model says", "our passthrough proxy model says", "the fix"]


class _Sheet:
    """A lab, its clients, and the helpers each row uses."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.rc = lab.cluster_client()
        self.proxies = {name: lab.proxy_client(name) for name in PROXIES}

    def close(self) -> None:
        self.rc.close()
        for client in self.proxies.values():
            client.close()

    def node_of(self, key: str) -> int:
        return self.lab.topology().node_for_slot(int(self.rc.cluster_keyslot(key))).index

    def server(self, node: int, *command: str | int) -> str:
        address = self.lab.nodes[node]
        return on_the_wire(address.host, address.port, self.lab.password, *command)

    def says(self, rule: str, breaks_it: str, node: int, command: tuple[str | int, ...],
             call: Callable[[], Any], fix: str, keys: tuple[str, ...] = ()) -> Row:
        """A row: ``command`` sent to node ``node`` and to each proxy model on the wire,
        ``call`` made through redis-py; ``keys`` are written afresh before each of them."""
        self.fill(*keys)
        server = self.server(node, *command)
        self.fill(*keys)
        said_by_redis_py = redis_py(call)
        proxies = []
        for client in self.proxies.values():
            self.fill(*keys)
            kwargs = client.connection_pool.connection_kwargs
            proxies.append(on_the_wire(kwargs["host"], kwargs["port"], self.lab.password,
                                       *command))
        return Row(rule, breaks_it, server, said_by_redis_py, tuple(proxies), fix)

    def fix_works(self, fix: Callable[[Any], Any], what: str) -> str:
        """Run ``fix`` through the cluster client and both proxy models; the sheet's fix cell.
        A fix that fails anywhere stops the sheet: it must never print advice that breaks."""
        for name, client in [("RedisCluster", self.rc), *self.proxies.items()]:
            try:
                fix(client)
            except (redis.RedisError, redis.exceptions.RedisClusterException) as error:
                raise RuntimeError(f"the fix {what!r} fails through {name}: {error}") from error
        return what

    def fill(self, *keys: str) -> None:
        for key in keys:
            self.rc.set(key, "v")


_LOOP_SCRIPT = "for _, k in ipairs(KEYS) do redis.call('DEL', k) end"
_COUNT_SCRIPT = "return #KEYS"


def _fixed_script(client: Any) -> Any:
    return client.eval("return redis.call('DEL', KEYS[1])", 1, "user:1")


def _pipelined_dels(client: Any) -> Any:
    pipe = client.pipeline(transaction=False)
    for key in ("user:1", "user:2"):
        pipe.delete(key)
    return pipe.execute()


def _pipelined_scripts(client: Any) -> Any:
    for key in ("user:1", "user:2"):
        client.delete(key)  # rockscache's script keeps a hash per key
    return batching.pipelined_per_key(client, ["user:1", "user:2"])


def _rows(sheet: _Sheet) -> Iterator[Row]:
    """Every row, in the order of the course."""
    rc, lab = sheet.rc, sheet.lab
    one, two = "user:1", "user:2"
    tagged = ("user:{1}:name", "user:{1}:email")

    yield sheet.says(
        "the keys of one command share one slot", f"`MGET {one} {two}`",
        sheet.node_of(one), ("MGET", one, two), lambda: rc.mget(one, two),
        sheet.fix_works(lambda c: c.mget(*tagged),
                        "a hash tag per entity: `MGET user:{1}:name user:{1}:email`"),
        (one, two),
    )
    yield sheet.says(
        "the keys of one command share one slot", f"`DEL {one} {two}`",
        sheet.node_of(one), ("DEL", one, two), lambda: rc.delete(one, two),
        sheet.fix_works(_pipelined_dels, "one `DEL` per key, pipelined"), (one, two),
    )
    yield sheet.says(
        "a script's keys share one slot", f'`EVAL "{_COUNT_SCRIPT}" 2 {one} {two}`',
        sheet.node_of(one), ("EVAL", _COUNT_SCRIPT, 2, one, two),
        lambda: rc.eval(_COUNT_SCRIPT, 2, one, two),
        sheet.fix_works(_pipelined_scripts,
                        "one script per key, pipelined: `batching.pipelined_per_key`"),
    )
    yield sheet.says(
        "our Alibaba proxy model's script check: every key is written `KEYS[n]`",
        f'`EVAL "{_LOOP_SCRIPT}" 1 {one}`',
        sheet.node_of(one), ("EVAL", _LOOP_SCRIPT, 1, one), lambda: rc.eval(_LOOP_SCRIPT, 1, one),
        sheet.fix_works(_fixed_script, "name each key `KEYS[n]`: `redis.call('DEL', KEYS[1])`"),
        (one,),
    )
    yield sheet.says(
        "our Alibaba proxy model routes a script by its keys: at least one",
        '`EVAL "return 1" 0`',
        0, ("EVAL", "return 1", 0), lambda: rc.eval("return 1", 0),
        sheet.fix_works(_fixed_script, "pass the keys the script uses as KEYS"),
    )
    home = sheet.node_of(one)
    yield sheet.says(
        "a slot is served by one master",
        f"`GET {one}` sent to a master that does not serve its slot",
        (home + 1) % len(lab.topology().masters), ("GET", one), lambda: rc.get(one),
        sheet.fix_works(lambda c: c.get(one),
                        "nothing to do through a client that routes by slot: `RedisCluster` "
                        "and both proxy models follow `MOVED`; a plain client to one node "
                        "does not"),
        (one,),
    )
    with _half_moved(lab) as (source, moved, stayed):
        yield sheet.says(
            "while a slot moves, a key the source no longer has is asked for over there, once",
            "`GET` of a key already migrated, sent to the slot's source",
            source, ("GET", moved), lambda: rc.get(moved),
            "nothing to do: `RedisCluster` and both proxy models follow `ASK` (`ASKING`, "
            "then the command again)",
        )
        tryagain = sheet.says(
            "while a slot moves, a command's keys must all be on one node",
            "`MGET` of a migrated key and one not yet migrated",
            source, ("MGET", moved, stayed), lambda: rc.mget(moved, stayed), "",
        )
    # the move is over: the same MGET, once more, is what a retry with backoff sends
    yield dataclasses.replace(tryagain, fix=sheet.fix_works(
        lambda c: c.mget(moved, stayed),
        "retry with backoff (`slotlab.migration.with_retry`): the same `MGET` works once "
        "the slot has moved; or send single-key commands"))


@contextmanager
def _half_moved(lab: Lab) -> Iterator[tuple[int, str, str]]:
    """A slot with two keys, moved one key of the way; put back where it was afterwards."""
    keys = ("{cheat}:a", "{cheat}:b")
    rc = lab.cluster_client()
    try:
        for key in keys:
            rc.set(key, "v")
        slot = int(rc.cluster_keyslot(keys[0]))
    finally:
        rc.close()
    topology = lab.topology()
    source = topology.node_for_slot(slot).index
    target = next(m.index for m in topology.masters if m.index != source)
    steps = lab.slot_migration(slot, target, batch=1)
    for _ in range(3):  # IMPORTING, MIGRATING, one MIGRATE of one key
        step = next(steps)
    moved = step.keys[0]
    stayed = next(k for k in keys if k != moved)
    try:
        yield source, moved, stayed
    finally:
        for _ in steps:
            pass
    lab.migrate_slot(slot, source)


def rows(lab: Lab) -> list[Row]:
    """Break each rule on ``lab`` and record what everyone says; fixes checked on ``lab``."""
    sheet = _Sheet(lab)
    try:
        return list(_rows(sheet))
    finally:
        sheet.close()


def table(lab: Lab) -> str:
    """The sheet's table, as Markdown (in a notebook: ``IPython.display.Markdown(table(lab))``)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows(lab):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row.cells()) + " |")
    return "\n".join(lines)


INTRO = """\
# Cheat sheet: the cluster's rules, and what everyone says when one is broken

Generated by `python -m slotlab.cheatsheet` from a running lab: every reply below is what the
lab answered (the server's and our proxy models' replies on the wire, exactly as sent;
redis-py's as an application sees it), and every fix was run through `RedisCluster` and both
proxy models, and worked, before it was printed (a fix that fails stops the script). A test
regenerates this page on the real and the emulated backend and fails when it differs. Addresses
change from run to run and show as `<host:port>`. The proxies are **our models**
([docs/proxy.md](proxy.md)): real proxies are closed source. redis-py's column is redis-py
{redis_version}'s.
"""


def page(lab: Lab) -> str:
    """The whole of ``docs/cheatsheet.md``."""
    return INTRO.format(redis_version=redis.__version__) + "\n" + table(lab) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write ``docs/cheatsheet.md`` (or the path given) from a new lab."""
    from slotlab.lab import start_lab

    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else Path("docs") / "cheatsheet.md"
    with start_lab(masters=3) as lab:
        text = page(lab)
    target.write_text(text, encoding="utf-8")
    print("wrote", target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
