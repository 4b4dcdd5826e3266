"""No leak, whatever the timing: a start interrupted anywhere, a start that fails, and an owner
killed by SIGTERM leave no process, no ``slotlab-*`` directory, no thread and no socket.

Interrupts come two ways: a KeyboardInterrupt raised right after the N-th real call of
``subprocess.Popen`` / ``Thread.start`` / ``socket.socket`` (the moment a process, thread or
socket exists but the caller has not recorded it yet), and a real SIGINT from a timer at many
offsets across a start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from slotlab import start_lab
from slotlab.backends.emulated import helpers as emulated_helpers
from tests.conftest import real_server_or_skip
from tests.test_lab import _run_child, _wait_gone

BACKENDS = ["real", "emulated"]


def _children() -> set[int]:
    """Live (non-zombie) processes whose parent is this process."""
    me, found = str(os.getpid()), set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            found.add(int(name))
    return found


def _lab_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("slotlab-*")}


def _sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # an fd closed meanwhile
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def _state() -> tuple[set[int], set[str], set[int], int]:
    return _children(), _lab_dirs(), {t.ident or 0 for t in threading.enumerate()}, _sockets()


def _leaks(before: tuple[set[int], set[str], set[int], int]) -> list[str]:
    """What exists now and did not before, after a moment for threads and processes to end."""
    deadline = time.monotonic() + 5
    while True:
        children, dirs, threads, sockets = _state()
        found = []
        if children - before[0]:
            found.append(f"processes {sorted(children - before[0])}")
        if dirs - before[1]:
            new = sorted(dirs - before[1])
            inside = [sorted(os.listdir(Path(tempfile.gettempdir()) / d)) for d in new]
            found.append(f"directories {new} holding {inside}")
        if threads - before[2]:
            names = [t.name for t in threading.enumerate() if t.ident in threads - before[2]]
            found.append(f"threads {names}")
        if sockets > before[3]:
            found.append(f"{sockets - before[3]} sockets")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _need(backend: str) -> None:
    if backend == "real":
        real_server_or_skip()


@pytest.fixture(autouse=True)
def _own_tempdir_and_warm_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[None]:
    """Labs make their directories in a temporary directory of this test only (other programs
    may start labs in the shared one meanwhile), and everything a start imports is imported
    first, so that imports are not counted as leaks."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    start_lab(masters=1, backend="emulated").stop()
    yield


def _interrupt_after_call(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, nth: int
) -> list[int]:
    """Patch ``owner.name`` so that its ``nth`` call in the main thread runs, then raises
    KeyboardInterrupt (Python delivers SIGINT to the main thread only; a failure in another
    thread is the subject of the test of a node that fails to come up)."""
    real = getattr(owner, name)
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if threading.current_thread() is not threading.main_thread():
            return result
        calls[0] += 1
        if calls[0] == nth:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(owner, name, wrapper)
    return calls


@pytest.mark.parametrize(
    ("backend", "owner", "name"),
    [
        ("real", subprocess, "Popen"),  # the reaper, each redis-server (and --version)
        ("real", socket, "socket"),  # free_port() and every client socket
        ("emulated", threading.Thread, "start"),  # the loop thread
    ],
    ids=["real-Popen", "real-socket", "emulated-Thread.start"],
)
def test_an_interrupt_right_after_any_start_step_leaks_nothing(
    monkeypatch: pytest.MonkeyPatch, backend: str, owner: Any, name: str
) -> None:
    _need(backend)
    nth, interrupted = 1, 0
    while True:
        before = _state()
        with monkeypatch.context() as patch:
            calls = _interrupt_after_call(patch, owner, name, nth)
            try:
                lab = start_lab(masters=2, replicas=1 if backend == "real" else 0,
                                backend=backend)
            except KeyboardInterrupt:
                interrupted += 1
            else:
                lab.stop()
        assert _leaks(before) == [], f"{backend}: interrupt after {name} call {nth}"
        if calls[0] < nth:  # the start made fewer calls than nth: every point was tried
            break
        nth += 1
    assert interrupted == nth - 1 >= 1  # every call but the last one past the end


def _start_duration(backend: str) -> float:
    """The median of three starts: on a busy machine one start says little, and the longest
    (a cold first start) spreads the offsets so far that too few of them cut a start."""
    took = []
    for _ in range(3):
        t = time.monotonic()
        start_lab(masters=2, backend=backend).stop()
        took.append(time.monotonic() - t)
    return sorted(took)[1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigint_at_any_moment_of_a_start_leaks_nothing(backend: str) -> None:
    """A real Ctrl-C, sent by a timer at 24 offsets spread over one start."""
    _need(backend)
    duration = _start_duration(backend)
    armed = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if armed.is_set():
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    main = threading.main_thread().ident
    assert main is not None
    interrupted = 0
    try:
        for k in range(24):
            before = _state()
            armed.set()
            timer = threading.Timer(duration * k / 20, signal.pthread_kill, (main, signal.SIGINT))
            lab = None
            try:
                timer.start()
                lab = start_lab(masters=2, backend=backend)
                armed.clear()
            except KeyboardInterrupt:
                interrupted += 1
            finally:
                armed.clear()
                timer.cancel()
                timer.join()
                if lab is not None:
                    lab.stop()
            lab = None
            assert _leaks(before) == [], f"{backend}: SIGINT at {duration * k / 20:.3f} s"
        assert interrupted >= 6  # a quarter of the offsets at least cut a start in two
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_node_that_fails_to_come_up_leaks_nothing(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    _need(backend)
    before = _state()
    if backend == "real":
        from slotlab.backends import real

        states = iter(["ready", "failed"])
        original: Callable[..., str] = real.RealBackend._wait_ready

        def second_fails(self: real.RealBackend, srv: Any, deadline: float) -> str:
            state = original(self, srv, deadline)
            return next(states, state) if state == "ready" else state

        monkeypatch.setattr(real.RealBackend, "_wait_ready", second_fails)
        with pytest.raises(real.LabStartError, match="did not start"):
            start_lab(masters=3, backend="real")
    else:
        opened = [0]

        import asyncio

        loop_class = asyncio.SelectorEventLoop
        real_create = loop_class.create_server

        async def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
            opened[0] += 1
            if opened[0] == 3:
                raise OSError("no port left")
            return await real_create(self, *args, **kwargs)

        monkeypatch.setattr(loop_class, "create_server", patched)
        with pytest.raises(emulated_helpers.EmulatorStartError, match="no port left"):
            start_lab(masters=3, backend="emulated")
    assert _leaks(before) == []


def test_no_server_outlives_a_sigtermed_owner() -> None:
    real_server_or_skip()
    child, started = _run_child("hang")
    pids = started["pids"]
    assert isinstance(pids, list) and len(pids) == 3
    child.terminate()  # SIGTERM: Python's default is to die without atexit
    child.wait()
    assert _wait_gone(pids, 5) == [], "redis-server outlived its SIGTERMed owner"
    deadline = time.monotonic() + 5
    while os.path.exists(str(started["dir"])) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(str(started["dir"]))
