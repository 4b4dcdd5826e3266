"""Soak: a lab and its proxy under mixed load from 16 clients for minutes, with a node restart.

A real lab of 3 masters with 1 replica each. Eight clients are cluster clients (redis-py's
RedisCluster, routing by the slot map) and eight talk to one proxy (the alibaba personality)
in front of the same cluster. Each client loops over a mix: SET of a new key of its own (the
acknowledgement is recorded), GET of a key it wrote before (checked), INCR, a same-slot MGET
and a one-key EVAL. Halfway, master 1 is killed (SIGKILL, as a crash: its replica takes over)
and then brought back with ``lab.restart_node(1)`` (it rejoins as a replica).

Printed at the end: commands served, errors by kind, acknowledged writes lost -- every key a
client saw acknowledged is read back through a fresh cluster client -- split into outside and
inside the restart window (from 1 s before the kill, the replication lag we allow, to 2 s
after the node is back), and the peak RSS (VmHWM) of every process: this Python process (the
clients and the proxy thread), each redis-server, the reaper. Outside the window no
acknowledged write may be lost: the script exits 1 if one is.

    python benchmarks/soak.py --seconds 180
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from slotlab import start_lab
from slotlab.lab import Lab

CLIENTS = 16
WINDOW_BEFORE = 1.0  # replication is asynchronous: a write acked just before the kill may go
WINDOW_AFTER = 2.0


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM: the most memory the process ever had resident, in KiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Worker:
    """One client: its own keys, what it saw acknowledged, and what went wrong."""

    name: str
    client: redis.Redis | RedisCluster
    rnd: random.Random
    acked: dict[str, tuple[str, float]] = field(default_factory=dict)
    served: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    wrong_reads: int = 0

    def run(self, stop: threading.Event) -> None:
        n = 0
        written: list[str] = []
        while not stop.is_set():
            op = self.rnd.random()
            try:
                if op < 0.4 or not written:
                    n += 1
                    key, value = f"soak:{{{self.name}:{n % 512}}}:{n}", f"v{n}"
                    if self.client.set(key, value):
                        self.acked[key] = (value, time.monotonic())
                        written.append(key)
                elif op < 0.7:
                    key = self.rnd.choice(written[-200:])
                    got = self.client.get(key)
                    if got is not None and got != self.acked[key][0]:
                        self.wrong_reads += 1
                elif op < 0.8:
                    self.client.incr(f"soak:{{{self.name}}}:counter")
                elif op < 0.9:
                    tag = self.name
                    self.client.mget(f"soak:{{{tag}}}:a", f"soak:{{{tag}}}:b")
                else:
                    self.client.eval("return redis.call('GET', KEYS[1])", 1,
                                     f"soak:{{{self.name}}}:counter")
                self.served += 1
            except redis.RedisError as exc:
                words = " ".join(str(exc).split()[:5])  # the kind, without keys and ports
                self.errors[f"{type(exc).__name__}: {words}"] += 1
                time.sleep(0.01)


def _wait_for_takeover(lab: Lab, slot: int, since: float, timeout: float = 30.0) -> float:
    """Seconds from ``since`` until a live node other than node 1 serves ``slot``."""
    while time.monotonic() - since < timeout:
        try:
            owner = lab.topology().node_for_slot(slot)
            if owner.index != 1 and not owner.down:
                return time.monotonic() - since
        except (redis.RedisError, LookupError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"no replica took over slot {slot} within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="how long (default 180)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    lab: Lab = start_lab(masters=3, replicas=1, backend="real")
    with lab:
        proxy_client = lab.proxy_client("alibaba")
        pool_kwargs = proxy_client.connection_pool.connection_kwargs
        proxy_kwargs = {k: pool_kwargs[k] for k in ("host", "port", "password") if k in pool_kwargs}
        workers: list[Worker] = []
        for i in range(CLIENTS):
            client: redis.Redis | RedisCluster
            if i < CLIENTS // 2:
                client = lab.cluster_client()
            else:
                client = (proxy_client if i == CLIENTS // 2
                          else redis.Redis(**proxy_kwargs, decode_responses=True))
            kind = "cluster" if i < CLIENTS // 2 else "proxy"
            workers.append(Worker(f"{kind}{i}", client, random.Random(args.seed + i)))
        pids = {f"redis-server node {i}": n.pid for i, n in enumerate(lab.nodes)}
        reaper = getattr(getattr(lab.backend, "_reaper", None), "proc", None)
        if reaper is not None:
            pids["reaper"] = reaper.pid
        pids["python (16 clients + proxy)"] = os.getpid()
        peaks: dict[str, int] = {}

        def sample() -> None:
            for name, pid in pids.items():
                if pid is not None:
                    kib = peak_rss_kib(pid)
                    if kib is not None:
                        peaks[name] = max(peaks.get(name, 0), kib)

        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in workers]
        start = time.monotonic()
        for t in threads:
            t.start()
        end = start + args.seconds
        kill_at = start + args.seconds / 2
        window: tuple[float, float] | None = None
        restart_took = failover_took = 0.0
        while time.monotonic() < end:
            sample()
            if window is None and time.monotonic() >= kill_at:
                victim = lab.nodes[1]
                assert victim.pid is not None
                sample()
                killed = time.monotonic()
                slot = lab.topology().nodes[1].slots[0][0]
                os.kill(victim.pid, signal.SIGKILL)
                # Wait for its replica to be elected (node timeout 2 s, then the election):
                # a master restarted before that comes back empty AND still owning its slots,
                # and its replica then copies the empty data set (as Redis without persistence
                # does), which would lose every key of those slots.
                failover_took = _wait_for_takeover(lab, slot, killed)
                back = time.monotonic()
                lab.restart_node(1)
                restart_took = time.monotonic() - back
                pids["redis-server node 1 (restarted)"] = lab.nodes[1].pid
                window = (killed - WINDOW_BEFORE, time.monotonic() + WINDOW_AFTER)
            time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        sample()
        elapsed = time.monotonic() - start

        # Read back every acknowledged write through a fresh cluster client.
        reader = lab.cluster_client()
        lost_out, lost_in, acked_in, acked_total = 0, 0, 0, 0
        for w in workers:
            keys = list(w.acked)
            for lo in range(0, len(keys), 500):
                chunk = keys[lo : lo + 500]
                with reader.pipeline() as p:
                    for k in chunk:
                        p.get(k)
                    values = p.execute()
                for k, got in zip(chunk, values, strict=True):
                    value, when = w.acked[k]
                    inside = window is not None and window[0] <= when <= window[1]
                    acked_total += 1
                    acked_in += inside
                    if got != value:
                        if inside:
                            lost_in += 1
                        else:
                            lost_out += 1

    served = sum(w.served for w in workers)
    errors: Counter[str] = Counter()
    for w in workers:
        errors.update(w.errors)
    print(f"soak: {elapsed:.0f} s, {CLIENTS} clients (8 cluster clients, 8 through the proxy), "
          "3 masters + 3 replicas, real backend")
    print(f"commands served: {served} ({served / elapsed:.0f}/s); "
          f"cluster clients {sum(w.served for w in workers[:8])}, "
          f"proxy clients {sum(w.served for w in workers[8:])}")
    if window is not None:
        print(f"node 1 killed at {window[0] + WINDOW_BEFORE - start:.1f} s; its replica took "
              f"over {failover_took:.1f} s later; restart_node(1) "
              f"took {restart_took:.1f} s; restart window "
              f"{window[0] - start:.1f}-{window[1] - start:.1f} s")
    print("errors by kind:" + ("" if errors else " none"))
    for kind, count in errors.most_common():
        print(f"  {count:7d}  {kind}")
    print(f"wrong values read: {sum(w.wrong_reads for w in workers)}")
    print(f"acknowledged writes: {acked_total}; lost outside the restart window: {lost_out}; "
          f"inside it: {lost_in} of {acked_in}")
    print("peak RSS (VmHWM):")
    for name, kib in peaks.items():
        print(f"  {kib / 1024:8.1f} MiB  {name}")
    return 1 if lost_out else 0


if __name__ == "__main__":
    sys.exit(main())
