"""Kill a lab's redis-servers if the lab's owner dies without stopping them.

Run as a separate process by the real backend, with only the standard library (``python -I -S``),
as ``_reaper.py DIR`` (the lab's temporary directory). It reads lines on stdin: ``pid N`` (a
server to watch) and ``done`` (the owner stopped everything itself). When stdin closes without
``done`` -- the owner exited or was killed, even by SIGKILL -- it terminates every watched
server and every other process working in DIR (one whose PID an interrupt kept from us), kills
those still alive after a second, and removes the directory.
"""

import contextlib
import os
import shutil
import signal
import sys
import time


def _alive(pid: int) -> bool:
    """True while pid runs; a zombie (exited, not yet reaped by its new parent) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _in_dir(pid: int, workdir: str) -> bool:
    """True when process ``pid`` works in ``workdir`` (its cwd, even once deleted) or names it
    in its command line (a process just started, before redis-server renames its title)."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = ""
    if cwd in (workdir, workdir + " (deleted)"):
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return os.fsencode(workdir) in args


def lab_processes(workdir: str, spare: int) -> list[int]:
    """Every process of ours (same user) working in ``workdir``, except ``spare``."""
    if not workdir or not os.path.isdir("/proc"):
        return []
    found = []
    uid = os.getuid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (spare, os.getpid()):
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
        except OSError:
            continue
        if _in_dir(int(name), workdir) and _alive(int(name)):
            found.append(int(name))
    return found


def sweep(workdir: str, spare: int) -> None:
    """Stop every process of ours working in ``workdir`` (see :func:`lab_processes`)."""
    _stop(lab_processes(workdir, spare))


def _stop(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL for those still alive after a second."""
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.02)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    workdir = sys.argv[1] if len(sys.argv) > 1 else ""
    pids: list[int] = []
    for raw in sys.stdin:
        word, _, arg = raw.strip().partition(" ")
        if word == "pid":
            pids.append(int(arg))
        elif word == "done":
            return
    _stop(pids)
    if workdir and os.path.basename(workdir).startswith("slotlab-"):
        sweep(workdir, spare=os.getpid())
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
