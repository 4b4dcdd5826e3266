"""Per-command latency through RedisCluster: the emulated cluster against a real one.

Run it::

    python benchmarks/emulated_latency.py [--ops 3000]

It starts a 3-master emulated lab and, when a redis-server 7.0+ is found, a 3-master real lab
in the same run, then times SET, GET and a 10-key same-slot MGET through
``redis.cluster.RedisCluster`` (one command per round trip, as a notebook sends them). It prints
the median latency per command on each backend and the ratio emulated / real. The target is
that the emulator is at most 3x slower; the script says whether that is met and exits 0 either
way (it is a measurement, not a test).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from redis.cluster import RedisCluster  # noqa: E402

from slotlab.backends.real import RedisServerNotFound, find_redis_server  # noqa: E402
from slotlab.lab import Lab, start_lab  # noqa: E402

TARGET_RATIO = 3.0
MGET_KEYS = [f"{{bench}}:{i}" for i in range(10)]


def _workloads(rc: RedisCluster) -> dict[str, Callable[[], object]]:
    rc.mset({k: "v" * 16 for k in MGET_KEYS})
    rc.set("bench:key", "v" * 16)
    return {
        "SET": lambda: rc.set("bench:key", "v" * 16),
        "GET": lambda: rc.get("bench:key"),
        "MGET x10 (one slot)": lambda: rc.mget(MGET_KEYS),
    }


def measure(lab: Lab, ops: int) -> dict[str, float]:
    """Median microseconds per call for each workload, after a warm-up."""
    rc = lab.cluster_client()
    medians: dict[str, float] = {}
    for name, fn in _workloads(rc).items():
        for _ in range(min(200, ops)):
            fn()
        samples = []
        for _ in range(ops):
            t0 = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - t0)
        medians[name] = statistics.median(samples) / 1000.0
    rc.close()
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000, help="timed calls per command")
    args = parser.parse_args()

    with start_lab(masters=3, backend="emulated") as lab:
        emulated = measure(lab, args.ops)
    try:
        server = find_redis_server()
    except RedisServerNotFound as exc:
        print(f"no real backend to compare with ({str(exc).splitlines()[0]})")
        print(f"{'command':<22}{'emulated (median)':>20}")
        for name, value in emulated.items():
            print(f"{name:<22}{value:>17.1f} us")
        return 0
    with start_lab(masters=3, backend="real") as lab:
        real = measure(lab, args.ops)

    print(f"RedisCluster round trips, {args.ops} timed calls each; redis-server "
          f"{server.version_text} vs the emulated cluster")  # fmt: skip
    print(f"{'command':<22}{'real':>12}{'emulated':>12}{'ratio':>9}")
    worst = 0.0
    for name in emulated:
        ratio = emulated[name] / real[name]
        worst = max(worst, ratio)
        print(f"{name:<22}{real[name]:>9.1f} us{emulated[name]:>9.1f} us{ratio:>8.2f}x")
    verdict = "met" if worst <= TARGET_RATIO else "NOT met"
    print(f"target: emulated at most {TARGET_RATIO:.0f}x slower -> {verdict} (worst {worst:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
