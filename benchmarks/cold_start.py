"""Cold start: slotlab's start_lab() vs `redis-cli --cluster create`, 3 masters, same run;
and beside them, start_lab() attaching to a lab that `slotlab lab up` started.

Both cold sides spawn the same redis-server processes and stop the clock when every node
reports cluster_state:ok, knows every other node and agrees on CLUSTER SLOTS; only the way the
cluster is formed differs. Target: median start at most 2.3 s and at most 0.7 of redis-cli's.
The attach is timed whole, as a notebook pays it: start_lab() returning a Lab on an emptied
cluster in the original layout, then lab.stop() (a detach) outside the clock. Target: at most
0.1 s.

    python benchmarks/cold_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from slotlab import lab_daemon, start_lab
from slotlab.backends.real import RealBackend, find_redis_server

TARGET_SECONDS = 2.3
TARGET_RATIO = 0.7
TARGET_ATTACH_SECONDS = 0.1


class RedisCliBackend(RealBackend):
    """The baseline: the same servers, formed by `redis-cli --cluster create`."""

    #: Seconds that redis-cli itself ran, in each start.
    cli_seconds: list[float] = []

    def _form(self) -> None:
        started = time.perf_counter()
        beside = Path(self.server.path).with_name("redis-cli")
        cli = str(beside) if beside.exists() else (shutil.which("redis-cli") or "redis-cli")
        addresses = [f"127.0.0.1:{s.port}" for s in self._servers]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
             "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=60,
        )  # fmt: skip
        RedisCliBackend.cli_seconds.append(time.perf_counter() - started)
        clients = [redis.Redis(port=s.port, decode_responses=True) for s in self._servers]
        try:
            self._wait_agreement(clients, time.monotonic() + 30)
        finally:
            for c in clients:
                c.close()


def time_start(kind: type[RealBackend]) -> float:
    """Seconds from spawning the servers to a converged cluster."""
    start = time.perf_counter()
    backend = kind(masters=3)
    elapsed = time.perf_counter() - start
    backend.stop()
    return elapsed


def time_attach() -> float:
    """Seconds for start_lab() to attach to the running lab ``bench`` (its line is not shown)."""
    with contextlib.redirect_stdout(io.StringIO()) as said:
        start = time.perf_counter()
        lab = start_lab(masters=3, backend="real", name="bench")
        elapsed = time.perf_counter() - start
        lab.stop()
    if "(attached to lab bench," not in said.getvalue():
        raise RuntimeError(f"start_lab did not attach: {said.getvalue().strip()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="starts of each kind (default 5)")
    args = parser.parse_args()
    server = find_redis_server()
    if not shutil.which("redis-cli"):
        print("redis-cli is not on PATH: the baseline cannot run", file=sys.stderr)
        return 1
    print(f"redis-server {server.version_text}, 3 masters, {args.runs} runs each (interleaved)")
    ours: list[float] = []
    theirs: list[float] = []
    attached: list[float] = []
    # A lab directory of the benchmark's own, so that it never touches a lab of yours.
    runtime = tempfile.mkdtemp(prefix="slotlab-bench-rt-")
    os.environ["SLOTLAB_RUNTIME_DIR"] = runtime
    lab_daemon.up("bench", masters=3, backend="real", out=io.StringIO())
    try:
        for i in range(args.runs):
            ours.append(time_start(RealBackend))
            theirs.append(time_start(RedisCliBackend))
            attached.append(time_attach())
            print(f"  run {i + 1}: start_lab {ours[-1]:.3f} s, redis-cli {theirs[-1]:.3f} s, "
                  f"attach {attached[-1]:.3f} s", flush=True)  # fmt: skip
    finally:
        lab_daemon.down("bench", out=io.StringIO())
        shutil.rmtree(runtime, ignore_errors=True)
    a, b = statistics.median(ours), statistics.median(theirs)
    ratio = a / b
    print(f"median start_lab():              {a:.3f} s")
    print(f"median redis-cli --cluster create: {b:.3f} s")
    print(f"ratio start_lab / redis-cli:     {ratio:.2f}")
    cli_own = statistics.median(RedisCliBackend.cli_seconds)
    print(f"median time redis-cli itself ran: {cli_own:.3f} s")
    print(
        "note: a node answers CLUSTERDOWN until 2.0 s after it started (the server's fixed\n"
        "      CLUSTER_WRITABLE_DELAY), so neither side can finish sooner than that."
    )
    met = a <= TARGET_SECONDS and ratio <= TARGET_RATIO
    print(
        f"target (<= {TARGET_SECONDS} s and <= {TARGET_RATIO} of redis-cli): "
        + ("met" if met else "NOT met")
    )
    c = statistics.median(attached)
    print(f"median start_lab() attaching to `slotlab lab up`: {c:.3f} s "
          f"({c / a:.3f} of a cold start_lab)")  # fmt: skip
    print(f"target attach (<= {TARGET_ATTACH_SECONDS} s): "
          + ("met" if c <= TARGET_ATTACH_SECONDS else "NOT met"))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
