"""The proxy's cost: GET/SET latency and pipelined throughput, through the proxy vs straight to
the node, same run, on the real backend (3 masters).

Both sides use the same client: ``redis.Redis(host="127.0.0.1", port=..., decode_responses=True)``
(redis-py's default protocol, RESP3), to the node that owns the key and to the proxy.

Latency: single round trips, measured in many short alternating rounds (direct then proxy, then
proxy then direct, ...), so that drift on a busy machine hits both sides alike. Each side reports
the median of all its round trips; the ratio is of those medians, and the spread of the ratios
of the rounds' medians shows how stable it is.
Throughput: pipelines of 1,000 GETs on keys that the direct node owns, alternating too; the
median rate.
Checks printed with the results: what the timing loop itself costs per round trip; how much CPU
the client thread spends per round trip on each side (the same client code: what it gains
through the proxy is the cost of sharing the CPU's caches, and in this process the interpreter
lock, with the proxy); for pipelines, how busy the client is (near 100% means the client, not
the node or the proxy, sets the rate); and the added latency seen by a bare socket client.
Target: the proxy's median latency at most 3x the direct one, for GET and for SET. Always exits
0; read the verdict in the output.

Placement: by default everything (this process, so the client and a proxy thread, the proxy
process if any, and the nodes) runs on CPU 0 (``--cpu``). Both sides get the same placement, and
it is the one that is hardest on the ratio: the direct path is at its fastest there, and the
proxy's work cannot overlap anything. Left to the OS (``--cpu -1``) the figures depend on where
the scheduler puts each thread: on a small VM a wake-up across CPUs costs several microseconds,
so direct latency jumps (17.6 -> 28 us on the development machine) when client and node land on
different CPUs, and a proxy thread on a CPU of its own pays that on every hop.

By default the proxy runs in this process (a background thread), as it does in a notebook;
``--separate-process`` runs it in its own process instead. ``--loop`` chooses its event loop
(``auto``: uvloop when installed).

    python benchmarks/proxy_latency.py [--rounds R] [--trips N] [--cpu N] [--separate-process]
                                       [--loop auto|asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import redis

from slotlab import key_slot, start_lab
from slotlab.proxy import Proxy

TARGET_RATIO = 3.0
PIPELINE = 1000
HOST = "127.0.0.1"


def client(port: int) -> redis.Redis:
    """The one client configuration both sides use."""
    return redis.Redis(host=HOST, port=port, decode_responses=True)


def timed_trips(op: Callable[[], object], trips: int) -> tuple[list[float], float]:
    """Seconds of each of ``trips`` calls of ``op``, and the CPU this thread used per call."""
    times = [0.0] * trips
    clock = time.perf_counter
    cpu = time.thread_time()
    for i in range(trips):
        t = clock()
        op()
        times[i] = clock() - t
    return times, (time.thread_time() - cpu) / trips


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Side:
    """What one side (direct or proxy) measured for one command."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.round_medians: list[float] = []
        self.cpu: list[float] = []

    def add(self, times: list[float], cpu: float) -> None:
        self.times += times
        self.round_medians.append(statistics.median(times))
        self.cpu.append(cpu)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def latency(ops: dict[str, Callable[[], object]], rounds: int, trips: int) -> dict[str, Side]:
    """Alternating rounds: A B, B A, A B, ... so neither side always goes first."""
    sides = {name: Side() for name in ops}
    names = list(ops)
    for name in names:  # warm up: connections, caches, the proxy's lookups
        timed_trips(ops[name], min(500, trips))
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            sides[name].add(*timed_trips(ops[name], trips))
    return sides


def pipelined(c: redis.Redis, keys: list[str]) -> tuple[float, float]:
    """GETs per second for one pipeline of ``keys``, and the share of the time the client
    thread was busy (CPU time / wall time)."""
    with c.pipeline(transaction=False) as p:
        for k in keys:
            p.get(k)
        cpu = time.thread_time()
        t = time.perf_counter()
        p.execute()
        wall = time.perf_counter() - t
        return len(keys) / wall, (time.thread_time() - cpu) / wall


def raw_round_trip(port: int, trips: int) -> float:
    """Median GET round trip of a bare socket client (no redis-py), for reference."""
    with socket.create_connection((HOST, port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = b"*2\r\n$3\r\nGET\r\n$9\r\nbench:key\r\n"

        def get() -> None:
            s.sendall(request)
            s.recv(65536)  # the reply (38 bytes) comes in one piece on loopback

        return statistics.median(timed_trips(get, trips)[0][min(500, trips) :])


def proxy_in_subprocess(nodes: list[str], loop: str) -> tuple[subprocess.Popen[str], int]:
    code = (
        "import sys\n"
        "from slotlab.proxy import Proxy\n"
        f"p = Proxy({nodes!r}, event_loop={loop!r}).start()\n"
        "print(p.port, p.loop_kind, flush=True)\n"
        "sys.stdin.read()\n"
        "p.stop()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line:
        raise SystemExit("the proxy process did not start")
    proc.loop_kind = line[1]  # type: ignore[attr-defined]
    return proc, int(line[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="alternating rounds per command")
    parser.add_argument("--trips", type=int, default=1000, help="round trips per side per round")
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
        help="the proxy's event loop (auto: uvloop when installed)",
    )  # fmt: skip
    parser.add_argument(
        "--separate-process", action="store_true", help="run the proxy in its own process"
    )
    parser.add_argument(
        "--cpu", type=int, default=0,
        help="run everything (client, proxy, nodes) on this one CPU; -1: where the OS likes",
    )  # fmt: skip
    args = parser.parse_args()

    pinned = args.cpu >= 0 and hasattr(os, "sched_setaffinity")
    if pinned:  # the nodes and the proxy (thread or process) inherit it
        os.sched_setaffinity(0, {args.cpu})
    # No password: the bare-socket reference client speaks raw RESP, and AUTH costs one round
    # trip per connection, not per command, so it would not change what is measured.
    lab = start_lab(masters=3, backend="real", password=None)
    helper: subprocess.Popen[str] | None = None
    proxy: Proxy | None = None
    try:
        key = "bench:key"
        owner = lab.topology().node_for_slot(key_slot(key))
        node_port = owner.port
        if args.separate_process:
            helper, port = proxy_in_subprocess([n.address for n in lab.nodes], args.loop)
            where, loop_kind = "its own process", helper.loop_kind  # type: ignore[attr-defined]
        else:
            proxy = Proxy(lab.nodes, event_loop=args.loop).start()
            port, where, loop_kind = proxy.port, "a thread of this process", proxy.loop_kind
        direct, through = client(node_port), client(port)
        direct.set(key, "x" * 32)

        print(f"slotlab proxy latency: {lab.backend.describe()}")
        print(f"proxy (alibaba) in {where}, on the {loop_kind} event loop")
        print(
            f"all on CPU {args.cpu} of {os.cpu_count()}"
            if pinned
            else f"on the CPUs the OS picks, of {os.cpu_count()}"
        )
        print(
            f"both sides: redis.Redis(host={HOST!r}, decode_responses=True), redis-py "
            f"{redis.__version__}, RESP3 (its default)"
        )
        print(
            f"{args.rounds} alternating rounds of {args.trips} round trips per side and command; "
            f"medians of all {args.rounds * args.trips}\n"
        )
        results: dict[str, dict[str, Side]] = {}
        cases: dict[str, Callable[[redis.Redis], Callable[[], object]]] = {
            "GET": lambda c: lambda: c.get(key),
            "SET": lambda c: lambda: c.set(key, "y" * 32),
        }
        for name, make in cases.items():
            ops = {"direct": make(direct), "proxy": make(through)}
            results[name] = latency(ops, args.rounds, args.trips)
        loop_cost = statistics.median(timed_trips(lambda: None, 20000)[0])

        # Pipelined GETs on keys the direct node owns, so both sides run the same commands.
        keys = [k for k in (f"bench:{i}" for i in range(20 * PIPELINE)) if owner.owns(key_slot(k))][
            :PIPELINE
        ]
        with direct.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.set(k, "v")
            pipe.execute()
        rates: dict[str, list[tuple[float, float]]] = {"direct": [], "proxy": []}
        for i in range(21):
            for side in ("direct", "proxy") if i % 2 else ("proxy", "direct"):
                rates[side].append(pipelined(direct if side == "direct" else through, keys))
        d_rate, d_busy = (statistics.median(x) for x in zip(*rates["direct"][1:], strict=True))
        p_rate, p_busy = (statistics.median(x) for x in zip(*rates["proxy"][1:], strict=True))

        print(f"{'':12}{'direct':>10}{'proxy':>11}{'proxy/direct':>15}   rounds' ratios p10..p90")
        met = True
        for name, sides in results.items():
            d, p = sides["direct"], sides["proxy"]
            # The ratio of each round's medians, direct and proxy measured next to each other;
            # its median is the verdict (robust to the machine changing pace between rounds).
            per_round = [b / a for a, b in zip(d.round_medians, p.round_medians, strict=True)]
            ratio = statistics.median(per_round)
            met &= ratio <= TARGET_RATIO
            print(
                f"{name + ' latency':12}{d.median * 1e6:>8.1f}us{p.median * 1e6:>9.1f}us"
                f"{ratio:>14.2f}x   {quantile(per_round, 0.1):.2f}..{quantile(per_round, 0.9):.2f}"
            )
        print(
            f"{'pipelined':12}{d_rate / 1e3:>6.0f}k/s {p_rate / 1e3:>7.0f}k/s"
            f"{d_rate / p_rate:>14.2f}x slower"
        )
        get = results["GET"]
        added = (get["proxy"].median - get["direct"].median) * 1e6
        raw_added = (raw_round_trip(port, 5000) - raw_round_trip(node_port, 5000)) * 1e6
        print(
            f"\nthe proxy adds {added:.1f} us to a GET round trip "
            f"({raw_added:.1f} us with a bare socket client instead of redis-py)"
        )
        d_cpu = statistics.median(get["direct"].cpu) * 1e6
        p_cpu = statistics.median(get["proxy"].cpu) * 1e6
        print(
            f"checks: the timing loop costs {loop_cost * 1e6:.2f} us per round trip; "
            f"the client thread's CPU per GET: direct {d_cpu:.1f} us, proxy {p_cpu:.1f} us"
        )
        print(
            f"        pipelined: the client thread is busy {d_busy:.0%} of the time direct, "
            f"{p_busy:.0%} through the proxy"
        )
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
