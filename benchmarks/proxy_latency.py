"""The proxy's cost: GET/SET latency and pipelined throughput, through the proxy vs straight to
the node, same run, on the real backend (3 masters).

Latency is the median of many single round trips with a plain ``redis.Redis`` (redis-py's
default protocol, RESP3), measured in alternating rounds so that drift on a busy machine hits
both sides alike; each side reports the lowest of its rounds' medians (a burst of load from
other programs raises a round, it never lowers one).
Throughput is pipelines of 1,000 GETs on keys that the direct node owns.
Target: the proxy's median latency at most 2x the direct one, for GET and for SET. Always exits
0; read the verdict in the output.

By default the proxy runs in this process (a background thread), as it does in a notebook;
``--separate-process`` runs it in its own process instead, to show how much the two threads
sharing one interpreter cost.

    python benchmarks/proxy_latency.py [--trips N] [--rounds R] [--separate-process]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import redis

from slotlab import key_slot, start_lab
from slotlab.proxy import Proxy

TARGET_RATIO = 2.0
PIPELINE = 1000


def median_round_trip(op: Callable[[], object], trips: int) -> float:
    """Median seconds of one call of ``op``, over ``trips`` calls (after a short warm-up)."""
    for _ in range(min(500, trips)):
        op()
    times = []
    clock = time.perf_counter
    for _ in range(trips):
        t = clock()
        op()
        times.append(clock() - t)
    return statistics.median(times)


def pipelined_rate(client: redis.Redis, keys: list[str], batches: int) -> float:
    """GETs per second, in pipelines of ``PIPELINE`` commands."""
    best = 0.0
    for _ in range(batches):
        with client.pipeline(transaction=False) as p:
            for k in keys:
                p.get(k)
            t = time.perf_counter()
            p.execute()
            best = max(best, len(keys) / (time.perf_counter() - t))
    return best


def proxy_in_subprocess(nodes: list[str]) -> tuple[subprocess.Popen[str], int]:
    code = (
        "import sys\n"
        "from slotlab.proxy import Proxy\n"
        f"p = Proxy({nodes!r}).start()\n"
        "print(p.port, flush=True)\n"
        "sys.stdin.read()\n"
        "p.stop()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trips", type=int, default=4000, help="round trips per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per side")
    parser.add_argument(
        "--separate-process", action="store_true", help="run the proxy in its own process"
    )
    args = parser.parse_args()

    lab = start_lab(masters=3, backend="real")
    helper: subprocess.Popen[str] | None = None
    proxy: Proxy | None = None
    try:
        key = "bench:key"
        direct = lab.node_client_for(key)
        if args.separate_process:
            helper, port = proxy_in_subprocess([n.address for n in lab.nodes])
            where = "its own process"
        else:
            proxy = Proxy(lab.nodes).start()
            port = proxy.port
            where = "a thread of this process"
        through = redis.Redis(port=port, decode_responses=True)
        direct.set(key, "x" * 32)

        print(f"slotlab proxy latency: {lab.backend.describe()}")
        print(f"proxy (alibaba) in {where}; redis-py {redis.__version__}, RESP3 (its default)")
        print(f"median of {args.trips} round trips; lowest of {args.rounds} alternating rounds\n")
        results: dict[str, tuple[float, float]] = {}
        for name, make in (
            ("GET", lambda c: lambda: c.get(key)),
            ("SET", lambda c: lambda: c.set(key, "y" * 32)),
        ):
            d_runs, p_runs = [], []
            for _ in range(args.rounds):
                d_runs.append(median_round_trip(make(direct), args.trips))
                p_runs.append(median_round_trip(make(through), args.trips))
            results[name] = (min(d_runs), min(p_runs))

        # Pipelined GETs on keys the direct node owns, so both sides run the same commands.
        owner = lab.topology().node_for_slot(key_slot(key))
        keys = [k for k in (f"bench:{i}" for i in range(20 * PIPELINE)) if owner.owns(key_slot(k))][
            :PIPELINE
        ]
        with direct.pipeline(transaction=False) as p:
            for k in keys:
                p.set(k, "v")
            p.execute()
        d_rate = pipelined_rate(direct, keys, 20)
        p_rate = pipelined_rate(through, keys, 20)

        print(f"{'':12}{'direct':>12}{'proxy':>12}{'proxy/direct':>15}")
        met = True
        for name, (d, p) in results.items():
            ratio = p / d
            met &= ratio <= TARGET_RATIO
            print(f"{name + ' latency':12}{d * 1e6:>10.1f}us{p * 1e6:>10.1f}us{ratio:>14.2f}x")
        print(
            f"{'pipelined':12}{d_rate / 1e3:>8.0f}k/s {p_rate / 1e3:>8.0f}k/s"
            f"{d_rate / p_rate:>14.2f}x slower"
        )
        overhead = (results["GET"][1] - results["GET"][0]) * 1e6
        print(f"\nthe proxy adds {overhead:.1f} us to a GET round trip")
        verdict = "met" if met else "NOT met"
        print(
            f"target: proxy latency at most {TARGET_RATIO:.0f}x direct for GET and SET: {verdict}"
        )
        through.close()
        direct.close()
    finally:
        if proxy is not None:
            proxy.stop()
        if helper is not None:
            assert helper.stdin is not None
            helper.stdin.close()
            helper.wait(timeout=10)
        lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
