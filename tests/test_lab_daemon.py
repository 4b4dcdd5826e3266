"""A lab that outlives a kernel, tested from several processes as a workshop uses it.

``slotlab lab up`` runs in one process, each "kernel" (a Python process calling ``start_lab``)
in another: the rule under test is that a lab serves one kernel at a time, hands it a clean lab
in the original slot layout, and that ``slotlab lab down`` stops the lab's own processes only.
Every test has a runtime directory of its own (``$SLOTLAB_RUNTIME_DIR``).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from slotlab import start_lab
from slotlab.backends.base import NotModelled, split_slots
from tests.conftest import real_server_or_skip

SRC = str(Path(__file__).resolve().parent.parent / "src")

#: A notebook kernel, reduced to what the tests need: it starts a lab, reports what start_lab
#: said and what it got, then obeys one command a line on stdin.
KERNEL = r"""
import contextlib, io, json, os, sys
import slotlab

def start(**kw):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        lab = slotlab.start_lab(**kw)
    keys = sum(lab.node_client(i).dbsize() for i in range(len(lab.nodes)))
    print(json.dumps({"line": buf.getvalue().strip(), "ports": [n.port for n in lab.nodes],
                      "keys": keys, "pid": os.getpid(),
                      "slots": [list(n.slots) for n in lab.topology().masters]}), flush=True)
    return lab

kw = json.loads(sys.argv[1])
lab = start(**kw)
for cmd in sys.stdin:
    cmd = cmd.strip()
    if cmd == "set":
        lab.cluster_client().set("k", "v")
    elif cmd == "migrate":
        lab.cluster_client().set("{06S}x", "v")  # slot 0 holds a key, which moves with it
        lab.migrate_slot(0, 1)
    elif cmd == "stop":
        lab.stop()
    elif cmd == "again":  # the start cell run again
        old = lab
        lab = start(**kw)
        print(json.dumps({"old_stopped": old._stopped}), flush=True)
        continue
    print("ok", flush=True)
"""


def _env(runtime: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SLOTLAB_ATTACH", None)
    env.pop("SLOTLAB_LAB", None)
    env.update(SLOTLAB_RUNTIME_DIR=str(runtime), PYTHONPATH=SRC, **extra)
    return env


def _cli(runtime: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slotlab.cli", "lab", *args], env=_env(runtime),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


class Kernel:
    """A child Python process that started a lab with ``start_lab(**kw)``."""

    def __init__(self, runtime: Path, env: dict[str, str] | None = None, **kw: Any) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", KERNEL, json.dumps(kw)], env=env or _env(runtime),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.started: dict[str, Any] = self.read()

    def read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the kernel exited with {self.proc.wait()}"
        return json.loads(line) if line != "ok\n" else "ok"

    def do(self, cmd: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=60)


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def _wait_gone(pids: list[int]) -> list[int]:
    """The PIDs still alive after waiting up to 15 s for them to go (a deadline, not a timing)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _record(runtime: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((runtime / f"{name}.json").read_text())
    return data


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Path]:
    """A runtime directory of this test's own; any lab left in it is taken down afterwards."""
    path = tmp_path / "rt"
    yield path
    for rec in path.glob("*.json") if path.exists() else []:
        _cli(path, "down", "--name", rec.stem)


def _backend(request: pytest.FixtureRequest) -> str:
    if request.param == "real":
        real_server_or_skip()
    return str(request.param)


@pytest.fixture(params=["real", "emulated"])
def backend(request: pytest.FixtureRequest) -> str:
    return _backend(request)


def test_up_attach_private_detach_down(runtime: Path, backend: str) -> None:
    up = _cli(runtime, "up", "--name", "w", "--backend", backend)
    assert up.returncode == 0, up.stderr
    assert "attached: none (free)" in up.stdout
    # The record holds the password: the directory and the file are the owner's alone.
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    assert stat.S_IMODE((runtime / "w.json").stat().st_mode) == 0o600
    rec = _record(runtime, "w")
    ports = [n[1] for n in rec["nodes"]]
    assert rec["backend"] == backend and f"-p {ports[0]}" in up.stdout

    a = Kernel(runtime, name="w", backend=backend)  # a second process attaches...
    try:
        assert "(attached to lab w," in a.started["line"]
        assert a.started["line"].startswith(f"slotlab: {backend}: ")  # the sanitizer folds it
        assert a.started["ports"] == ports  # ... to the very nodes `lab up` started
        a.do("set")
        shown = _cli(runtime, "status", "--name", "w")
        assert f"attached: kernel pid {a.started['pid']}" in shown.stdout
        assert "1 keys" in shown.stdout

        # A third process while the second holds the lab: a private lab, and it says why.
        c = Kernel(runtime, name="w", backend=backend)
        c.close()
        assert f"lab w is in use by another kernel (pid {a.started['pid']})" in c.started["line"]
        assert not set(c.started["ports"]) & set(ports)

        a.do("stop")  # detaches: the shared lab stays
        with redis.Redis(port=ports[0], password=rec["password"]) as r:
            assert r.ping()
        assert "attached: none (free)" in _cli(runtime, "status", "--name", "w").stdout
    finally:
        a.close()

    d = Kernel(runtime, name="w", backend=backend)
    assert "(attached to lab w," in d.started["line"]
    assert d.started["ports"] == ports and d.started["keys"] == 0  # the key a set is gone
    d.kill()  # a kernel that dies lets go of the lab: the next one attaches
    e = Kernel(runtime, name="w", backend=backend)
    e.close()
    assert "(attached to lab w," in e.started["line"]

    pids = [rec["daemon_pid"]] + [n[3] for n in rec["nodes"] if n[3]]
    down = _cli(runtime, "down", "--name", "w")
    assert down.returncode == 0, down.stderr
    assert "lab w stopped" in down.stdout
    assert _wait_gone(pids) == []
    assert not list(runtime.glob("w.*"))


def test_attach_restores_the_slot_layout(runtime: Path, backend: str) -> None:
    """Lesson 6 moves slots; the next kernel still gets the layout `lab up` made."""
    assert _cli(runtime, "up", "--name", "m", "--backend", backend).returncode == 0
    a = Kernel(runtime, name="m", backend=backend)
    a.do("migrate")
    a.kill()
    b = Kernel(runtime, name="m", backend=backend)
    b.close()
    assert "(attached to lab m," in b.started["line"]
    assert b.started["slots"] == [[list(r)] for r in split_slots(3)]
    assert b.started["keys"] == 0


def test_start_cell_run_again_attaches_anew(runtime: Path) -> None:
    assert _cli(runtime, "up", "--name", "r", "--backend", "emulated").returncode == 0
    k = Kernel(runtime, name="r")
    again = k.do("again")
    assert "(attached to lab r," in again["line"]
    assert "this kernel's lab 1 let go of it" in again["line"]
    assert k.read() == {"old_stopped": True}
    k.close()


def test_what_does_not_attach(runtime: Path) -> None:
    """Another shape, SLOTLAB_ATTACH=0, a password asked for: a private lab, said so."""
    assert _cli(runtime, "up", "--backend", "emulated").returncode == 0  # named "default"
    other = Kernel(runtime, masters=2, backend="emulated")
    other.close()
    assert (
        "(lab default runs emulated, 3 masters, 0 replica(s); this start asks for emulated, "
        "2 masters, 0 replica(s): this lab is private)"
    ) in other.started["line"]
    off = Kernel(runtime, env=_env(runtime, SLOTLAB_ATTACH="0"), backend="emulated")
    off.close()
    assert "attached" not in off.started["line"]
    own = Kernel(runtime, backend="emulated", password="pw")
    own.close()
    assert "a password was asked for" in own.started["line"]
    same = Kernel(runtime, backend="emulated")  # the default name, from nothing but the shape
    same.close()
    assert "(attached to lab default," in same.started["line"]
    by_env = Kernel(runtime, env=_env(runtime, SLOTLAB_LAB="nope"), backend="emulated")
    by_env.close()
    assert "no lab nope is running: this lab is private" in by_env.started["line"]


def test_stale_record(runtime: Path, backend: str) -> None:
    assert _cli(runtime, "up", "--name", "s", "--backend", backend).returncode == 0
    rec = _record(runtime, "s")
    os.kill(rec["daemon_pid"], signal.SIGKILL)
    # Its redis-servers go with it (the reaper watches the daemon).
    assert _wait_gone([rec["daemon_pid"]] + [n[3] for n in rec["nodes"] if n[3]]) == []
    shown = _cli(runtime, "status", "--name", "s")
    assert "lab s's record was stale: its process" in shown.stdout
    assert shown.returncode == 1 and "no lab named s is running" in shown.stdout
    assert not (runtime / "s.json").exists()
    k = Kernel(runtime, name="s", backend=backend)  # a notebook asking for it starts its own
    k.close()
    assert "no lab s is running: this lab is private" in k.started["line"]


def test_down_of_a_missing_lab(runtime: Path) -> None:
    done = _cli(runtime, "down", "--name", "nope")
    assert done.returncode == 1
    assert "no lab named nope is running" in done.stderr
    assert _cli(runtime, "status").returncode == 1


def test_up_twice(runtime: Path) -> None:
    assert _cli(runtime, "up", "--name", "t", "--backend", "emulated").returncode == 0
    again = _cli(runtime, "up", "--name", "t", "--backend", "emulated")
    assert again.returncode == 1 and "lab t is already running" in again.stderr


@pytest.mark.parametrize("name", ["../x", "a b", "", "-x", "x" * 33])
def test_bad_names(runtime: Path, name: str) -> None:
    done = _cli(runtime, "up", f"--name={name}", "--backend", "emulated")
    assert done.returncode == 2
    assert f"bad lab name {name!r}" in done.stderr
    assert not runtime.exists() or not list(runtime.iterdir())


def test_bad_name_in_start_lab(runtime: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTLAB_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("SLOTLAB_ATTACH")  # tests/conftest.py sets it to 0 for every other test
    with pytest.raises(ValueError, match="bad lab name '../x'"):
        start_lab(backend="emulated", name="../x")
    with pytest.raises(TypeError, match="a lab name must be a string"):
        start_lab(backend="emulated", name=3)  # type: ignore[arg-type]


def test_a_runtime_dir_others_can_read_is_refused(runtime: Path) -> None:
    runtime.mkdir(mode=0o755)
    runtime.chmod(0o755)
    done = _cli(runtime, "up", "--backend", "emulated")
    assert done.returncode == 1 and "must belong to you and be private" in done.stderr


def test_node_changes_go_through_the_daemon(
    runtime: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lesson 6 attached: the daemon owns the servers, so it kills and restarts them."""
    real_server_or_skip()
    assert _cli(runtime, "up", "--replicas", "1", "--backend", "real").returncode == 0
    monkeypatch.setenv("SLOTLAB_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("SLOTLAB_ATTACH")  # tests/conftest.py sets it to 0 for every other test
    lab = start_lab(masters=3, replicas=1)
    try:
        assert lab.backend.name == "real" and lab.backend_name == "real"
        recovery = lab.kill_node(0)
        assert recovery.new_master == 3 and lab.topology().nodes[0].down
        assert lab.restart_node(0).role == "replica"  # its replica took its slots meanwhile
        assert lab.backend.alive()
    finally:
        lab.stop()
    again = start_lab(masters=3, replicas=1)  # the layout `lab up` made, with node 0 a master
    try:
        assert [m.slots for m in again.topology().masters] == [(r,) for r in split_slots(3)]
    finally:
        again.stop()


def test_what_the_emulator_cannot_do_is_said_attached(
    runtime: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _cli(runtime, "up", "--replicas", "1", "--backend", "emulated").returncode == 0
    monkeypatch.setenv("SLOTLAB_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("SLOTLAB_ATTACH")  # tests/conftest.py sets it to 0 for every other test
    lab = start_lab(masters=3, replicas=1, backend="emulated")
    try:
        with pytest.raises(NotModelled, match="a failover needs the real backend"):
            lab.failover(0)
        assert lab.add_node() == 6 and lab.topology().nodes[6].role == "master"
        plain = lab.standalone_client()  # the kernel's own, stopped when it detaches
        plain.set("x", "1")
        assert plain.get("x") == "1"
    finally:
        lab.stop()


def test_a_daemon_that_does_not_answer(runtime: Path) -> None:
    """Its socket gone (a daemon in trouble): the notebook goes on with a private lab, and
    `lab down` still stops the daemon, by its PID, after checking it is this lab's."""
    assert _cli(runtime, "up", "--name", "q", "--backend", "emulated").returncode == 0
    rec = _record(runtime, "q")
    (runtime / "q.sock").unlink()
    k = Kernel(runtime, name="q", backend="emulated")
    k.close()
    assert "(lab q did not answer (" in k.started["line"]
    assert "this lab is private" in k.started["line"]
    down = _cli(runtime, "down", "--name", "q")
    assert down.returncode == 0
    assert "lab q's daemon did not answer" in down.stdout
    assert _wait_gone([rec["daemon_pid"]]) == []
