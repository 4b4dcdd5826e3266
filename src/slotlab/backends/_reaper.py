"""Kill a lab's redis-servers if the lab's owner dies without stopping them.

Run as a separate process by the real backend, with only the standard library (``python -I -S``).
It reads lines on stdin: ``dir PATH`` (the lab's temporary directory), ``pid N`` (a server to
watch) and ``done`` (the owner stopped everything itself). When stdin closes without ``done`` --
the owner exited or was killed, even by SIGKILL -- it terminates every watched server, kills
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


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    pids: list[int] = []
    workdir = ""
    for raw in sys.stdin:
        word, _, arg = raw.strip().partition(" ")
        if word == "pid":
            pids.append(int(arg))
        elif word == "dir":
            workdir = arg
        elif word == "done":
            return
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
    if workdir and os.path.basename(workdir).startswith("slotlab-"):
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
