"""Bad input, a clear error each: every row is one bad input to the public API or the CLI and
the exact error (type and whole message) it must give. None of them may start a lab."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from slotlab import key_slot, key_slots, start_lab
from slotlab.backends.base import NotModelled
from slotlab.backends.real import _HOW_TO_GET, RedisServerNotFound
from slotlab.cli import main
from slotlab.lab import Lab, LabStoppedError
from slotlab.slots import hash_tag

_TOO_MANY_MASTERS = (
    "masters=1000 is more than a lab allows (32): every node is a server that gossips with "
    "every other node, so the load grows with the square of the node count and 1000 masters "
    "would swamp a laptop. The lessons use 3."
)
_NOT_MODELLED_RESTART = (
    "restarting a node needs the real backend: the emulated backend runs every node in this "
    "process, so no node can die on its own. Start a lab on real redis-server processes with "
    "slotlab.start_lab(..., backend='real') (or SLOTLAB_BACKEND=real); docs/emulated.md lists "
    "what the emulator cannot model."
)
_KEY_TYPE = "; bytearray and memoryview keys are hashed as raw bytes"

# (id, call, exception type, exact message); the call gets a running 3-master emulated lab.
START_CASES: list[tuple[str, Callable[[], Any], type[BaseException], str]] = [
    ("masters-bool", lambda: start_lab(masters=True), TypeError,  # type: ignore[arg-type]
     "masters must be a whole number (an int), not bool True"),
    ("masters-str", lambda: start_lab(masters="3"), TypeError,  # type: ignore[arg-type]
     "masters must be a whole number (an int), not str '3'"),
    ("masters-float", lambda: start_lab(masters=2.0), TypeError,  # type: ignore[arg-type]
     "masters must be a whole number (an int), not float 2.0"),
    ("masters-none", lambda: start_lab(masters=None), TypeError,  # type: ignore[arg-type]
     "masters must be a whole number (an int), not NoneType None"),
    ("masters-zero", lambda: start_lab(masters=0), ValueError, "masters must be 1 or more, not 0"),
    ("masters-negative", lambda: start_lab(masters=-2), ValueError,
     "masters must be 1 or more, not -2"),
    ("masters-1000", lambda: start_lab(masters=1000), ValueError, _TOO_MANY_MASTERS),
    ("replicas-bool", lambda: start_lab(replicas=False), TypeError,
     "replicas must be a whole number (an int), not bool False"),
    ("replicas-str", lambda: start_lab(replicas="1"), TypeError,  # type: ignore[arg-type]
     "replicas must be a whole number (an int), not str '1'"),
    ("replicas-negative", lambda: start_lab(replicas=-1), ValueError,
     "replicas must be 0 or more, not -1"),
    ("replicas-too-many", lambda: start_lab(replicas=4), ValueError,
     "replicas=4 per master is more than a lab allows (3): each replica is one more server per "
     "master, and one is enough to show a failover."),
    ("nodes-too-many", lambda: start_lab(masters=32, replicas=2), ValueError,
     "masters=32 with replicas=2 makes 96 nodes, more than a lab allows (64): the load grows "
     "with the square of the node count. Use fewer masters or replicas."),
    ("backend-int", lambda: start_lab(backend=3), TypeError,  # type: ignore[arg-type]
     "backend must be a name, one of 'auto', 'real', 'emulated', not int 3"),
    ("backend-bool", lambda: start_lab(backend=True), TypeError,  # type: ignore[arg-type]
     "backend must be a name, one of 'auto', 'real', 'emulated', not bool True"),
    ("backend-unknown", lambda: start_lab(backend="redis"), ValueError,
     "unknown backend 'redis': choose one of auto, real, emulated (argument backend= or "
     "$SLOTLAB_BACKEND)"),
]

LAB_CASES: list[tuple[str, Callable[[Lab], Any], type[BaseException], str]] = [
    ("node_client-bool", lambda lab: lab.node_client(True), TypeError,
     "index must be a node index, a whole number from 0 to 2, not bool True"),
    ("node_client-str", lambda lab: lab.node_client("0"), TypeError,  # type: ignore[arg-type]
     "index must be a node index, a whole number from 0 to 2, not str '0'"),
    ("node_client-float", lambda lab: lab.node_client(1.0), TypeError,  # type: ignore[arg-type]
     "index must be a node index, a whole number from 0 to 2, not float 1.0"),
    ("node_client-none", lambda lab: lab.node_client(None), TypeError,  # type: ignore[arg-type]
     "index must be a node index, a whole number from 0 to 2, not NoneType None"),
    ("node_client-negative", lambda lab: lab.node_client(-1), IndexError,
     "index -1 is out of range: this lab has nodes 0 to 2"),
    ("node_client-too-big", lambda lab: lab.node_client(3), IndexError,
     "index 3 is out of range: this lab has nodes 0 to 2"),
    ("proxy-personality", lambda lab: lab.proxy_client("twemproxy"), ValueError,
     "unknown personality 'twemproxy': choose one of 'alibaba', 'passthrough'"),
    ("migrate-slot-str", lambda lab: lab.migrate_slot("1", 1), TypeError,  # type: ignore[arg-type]
     "slot must be a whole number from 0 to 16383, not str '1'"),
    ("migrate-slot-bool", lambda lab: lab.migrate_slot(True, 1), TypeError,
     "slot must be a whole number from 0 to 16383, not bool True"),
    ("migrate-slot-negative", lambda lab: lab.migrate_slot(-1, 1), ValueError,
     "slot -1 is out of range: slots are 0 to 16383"),
    ("migrate-slot-16384", lambda lab: lab.migrate_slot(16384, 1), ValueError,
     "slot 16384 is out of range: slots are 0 to 16383"),
    ("migrate-to-self", lambda lab: lab.migrate_slot(0, 0), ValueError,
     "slot 0 is already served by node 0: nothing to move"),
    ("migrate-to-node-range", lambda lab: lab.migrate_slot(0, 5), IndexError,
     "to_node 5 is out of range: this lab has nodes 0 to 2"),
    ("migrate-to-node-str", lambda lab: lab.migrate_slot(0, "1"), TypeError,  # type: ignore[arg-type]
     "to_node must be a node index, a whole number from 0 to 2, not str '1'"),
    ("migrate-batch-zero", lambda lab: lab.migrate_slot(0, 1, batch=0), ValueError,
     "batch (keys per MIGRATE) must be a whole number, 1 or more, not 0"),
    ("migrate-pause", lambda lab: lab.migrate_slot(0, 1, pause=3), TypeError,  # type: ignore[arg-type]
     "pause must be a function of one step, or None, not 3"),
    ("rebalance-threshold", lambda lab: lab.rebalance(threshold=-1), ValueError,
     "threshold must be a percentage, 0 or more, not -1"),
    ("rebalance-weight", lambda lab: lab.rebalance({1: -1}), ValueError,
     "the weight of node 1 must be a number, 0 or more, not -1"),
    ("restart-running-emulated", lambda lab: lab.restart_node(0), NotModelled,
     _NOT_MODELLED_RESTART),
    ("restart-str", lambda lab: lab.restart_node("0"), TypeError,  # type: ignore[arg-type]
     "index must be a node index, a whole number from 0 to 2, not str '0'"),
    ("restart-range", lambda lab: lab.restart_node(7), IndexError,
     "index 7 is out of range: this lab has nodes 0 to 2"),
]

KEY_CASES: list[tuple[str, Callable[[], Any], type[BaseException], str]] = [
    ("key_slots-str", lambda: key_slots("abc"), TypeError,  # type: ignore[arg-type]
     "key_slots() takes a sequence of keys, not one str key (which would be hashed character "
     "by character): for one key use key_slot('abc'), or key_slots(['abc'])"),
    ("key_slots-bytes", lambda: key_slots(b"ab"), TypeError,  # type: ignore[arg-type]
     "key_slots() takes a sequence of keys, not one bytes key (which would be hashed character "
     "by character): for one key use key_slot(b'ab'), or key_slots([b'ab'])"),
    ("key_slot-int", lambda: key_slot(42), TypeError,  # type: ignore[arg-type]
     "key_slot() takes a str or bytes key, not int (encode numbers first, e.g. str(42))"
     + _KEY_TYPE),
    ("key_slot-none", lambda: key_slot(None), TypeError,  # type: ignore[arg-type]
     "key_slot() takes a str or bytes key, not None" + _KEY_TYPE),
    ("key_slots-item", lambda: key_slots(["a", 1.5]), TypeError,  # type: ignore[list-item]
     "key_slots() takes str or bytes keys, but item 1 is float (encode numbers first, e.g. "
     "str(1.5))" + _KEY_TYPE),
    ("hash_tag-list", lambda: hash_tag(["a"]), TypeError,  # type: ignore[arg-type]
     "hash_tag() takes a str or bytes key, not list" + _KEY_TYPE),
    ("key_slot-lone-surrogate", lambda: key_slot("a\ud800"), UnicodeEncodeError,
     "'utf-8' codec can't encode character '\\ud800' in position 1: key_slot() cannot hash its "
     "key: a lone surrogate is not a character any client can send; pass the key as bytes"),
]


def _check(call: Callable[[], Any], kind: type[BaseException], message: str) -> None:
    with pytest.raises(BaseException) as info:
        call()
    assert type(info.value) is kind, f"{type(info.value).__name__}: {info.value}"
    assert str(info.value) == message


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with start_lab(masters=3, backend="emulated") as running:
        yield running


@pytest.mark.parametrize(("call", "kind", "message"), [c[1:] for c in START_CASES],
                         ids=[c[0] for c in START_CASES])
def test_start_lab_bad_input(
    call: Callable[[], Any], kind: type[BaseException], message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _check(call, kind, message)
    assert "slotlab:" not in capsys.readouterr().out  # refused before any backend started


@pytest.mark.parametrize(("call", "kind", "message"), [c[1:] for c in LAB_CASES],
                         ids=[c[0] for c in LAB_CASES])
def test_lab_bad_input(
    lab: Lab, call: Callable[[Lab], Any], kind: type[BaseException], message: str
) -> None:
    _check(lambda: call(lab), kind, message)


@pytest.mark.parametrize(("call", "kind", "message"), [c[1:] for c in KEY_CASES],
                         ids=[c[0] for c in KEY_CASES])
def test_key_bad_input(call: Callable[[], Any], kind: type[BaseException], message: str) -> None:
    _check(call, kind, message)


def test_unknown_backend_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTLAB_BACKEND", "fast")
    _check(start_lab, ValueError, "unknown backend 'fast': choose one of auto, real, emulated "
           "(argument backend= or $SLOTLAB_BACKEND)")


@pytest.mark.parametrize("backend", ["auto", "real"])
def test_wrong_redis_server_binary_is_an_error_not_a_fallback(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setenv("SLOTLAB_REDIS_SERVER", "/bin/true")
    _check(lambda: start_lab(backend=backend), RedisServerNotFound,
           "SLOTLAB_REDIS_SERVER='/bin/true' is not a redis-server that runs (`/bin/true "
           f"--version` failed). Fix or unset it.\n{_HOW_TO_GET}")


def test_a_stopped_lab_says_it_was_stopped_and_by_what() -> None:
    stopped = start_lab(masters=1, backend="emulated")
    client = stopped.node_client(0)
    stopped.stop()
    by = f"lab {stopped.number}) was stopped by lab.stop()"
    _check(stopped.topology, LabStoppedError,
           f"this lab ({by}; start a new one with slotlab.start_lab()")
    _check(lambda: client.get("k"), LabStoppedError,
           f"the lab this client belonged to ({by}; take a new client from a running lab "
           "(slotlab.start_lab() starts one)")


def test_rebinding_a_lab_says_which_lab_it_stops(capsys: pytest.CaptureFixture[str]) -> None:
    first = start_lab(masters=1, backend="emulated")
    number, client = first.number, first.node_client(0)
    first = start_lab(masters=1, backend="emulated")  # as a start cell run twice does
    out = capsys.readouterr().out
    assert f"slotlab: stopping lab {number} (emulated: " in out
    assert out.endswith("): nothing refers to it any more\n")
    _check(lambda: client.get("k"), LabStoppedError,
           f"the lab this client belonged to (lab {number}) was stopped by slotlab when nothing "
           "referred to it any more (a start cell ran again?); take a new client from a "
           "running lab (slotlab.start_lab() starts one)")
    first.stop()


# ---- the command line: a clear line on stderr and an exit code, never a traceback ----------

def _cli(
    *args: str | bytes, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "slotlab.cli", *args], capture_output=True, timeout=60,
        env={**os.environ, **(env or {})}, check=False,
    )


CLI_CASES: list[tuple[str, list[str | bytes], dict[str, str], int, bytes, bytes]] = [
    ("keyslot-no-key", ["keyslot"], {}, 2, b"",
     b"usage: slotlab keyslot [-h] KEY [KEY ...]\n"
     b"slotlab keyslot: error: the following arguments are required: KEY\n"),
    ("unknown-command", ["keysot"], {}, 2, b"",
     b"usage: slotlab [-h] {backends,doctor,keyslot,audit} ...\nslotlab: error: argument command: "
     b"invalid choice: 'keysot' (choose from 'backends', 'doctor', 'keyslot', 'audit')\n"),
    ("keyslot-not-utf8", ["keyslot", b"\xff\xfe"], {}, 0, b" 3374  \\xff\\xfe  (whole key)\n",
     b""),
    ("backends-wrong-server", ["backends"], {"SLOTLAB_REDIS_SERVER": "/bin/true"}, 2, b"",
     ("slotlab backends: SLOTLAB_REDIS_SERVER='/bin/true' is not a redis-server that runs "
      f"(`/bin/true --version` failed). Fix or unset it.\n{_HOW_TO_GET}\n").encode()),
]


@pytest.mark.parametrize(("args", "env", "code", "out", "err"), [c[1:] for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(
    args: list[str | bytes], env: dict[str, str], code: int, out: bytes, err: bytes
) -> None:
    done = _cli(*args, env=env)
    assert (done.returncode, done.stdout, done.stderr) == (code, out, err)


def test_cli_key_with_a_lone_surrogate_gives_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keyslot", "\ud800"]) == 2
    assert capsys.readouterr().err == (
        "slotlab keyslot: 'utf-8' codec can't encode character '\\ud800' in position 0: "
        "hash_tag() cannot hash its key: a lone surrogate is not a character any client can "
        "send; pass the key as bytes\n"
    )

