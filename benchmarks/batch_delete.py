"""Batch strategies on one CreateGroup of a 500-member group, on a real cluster: deletes, a
keys-per-slot sweep, and reads.

The keys are OpenIM 3.8's CreateGroup key set for one group with an owner and 499 members
(1508 keys over 1500 slots, from slotlab.openim). Each setting is one way an application
reaches the cluster: redis-py's cluster client, and a plain client to slotlab's Alibaba-style
proxy (with its script check on, and off). In each setting every strategy first runs once to
see whether it is correct there (it must tag EVERY key); the correct ones are then timed
(median of the runs, the strategies interleaved run by run so that a busy machine slows them
alike) and compared with per-key deletion (OpenIM 3.7's loop) in the same setting. Every
slotlab strategy sends its commands through the same machinery (slotlab.batching writes the
RESP itself for all of them), so the ratios compare round trips and keys per call only;
one_eval, and OpenIM's own reads (v3_7_read, v3_8_read), go through redis-py's eval.

Targets, per setting: the recommended strategy (pipelined_per_key) at least 5x per_key, and
within 1.5x of the fastest correct strategy; for reads, read_pipelined_per_key at least 5x
read_per_key. The sweep (1, 2, 10, 100 keys per hash tag) and the key layouts are printed for
reading, not counted. Needs redis-server 7.0+; always exits 0: read the verdict.

    python benchmarks/batch_delete.py [--members N] [--runs R]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from slotlab import batching, openim
from slotlab.lab import Lab, start_lab
from slotlab.slots import key_slots

TARGET_VS_PER_KEY = 5.0
TARGET_VS_FASTEST = 1.5


@dataclass
class Row:
    name: str
    keys: int
    median: float | None = None  # seconds per run; None when the strategy fails here
    error: str = ""

    @property
    def keys_per_second(self) -> float:
        assert self.median is not None
        return self.keys / self.median


def all_tagged(reader: Any, keys: list[str]) -> bool:
    """Every key in rockscache's deleted state, read back in one pipeline."""
    pipe = reader.pipeline(transaction=False)
    for k in keys:
        pipe.hgetall(k)
        pipe.ttl(k)
    replies = pipe.execute()
    for fields, ttl in zip(replies[::2], replies[1::2], strict=True):
        if fields.get("lockUntil") != "0" or "lockOwner" in fields or int(ttl) <= 0:
            return False
    return True


def check(name: str, run: Callable[[], object], keys: list[str], reader: Any) -> Row:
    """Run once: is the strategy correct here (no error, and EVERY key tagged)?"""
    row = Row(name, len(keys))
    try:
        run()
    except Exception as exc:  # noqa: BLE001 - a failing strategy is a result, not a crash
        first = str(exc).splitlines()[0] if str(exc) else ""
        row.error = f"{type(exc).__name__}: {first[:90]}"
        return row
    if not all_tagged(reader, keys):
        row.error = "ran, but left keys untagged"
    return row


def timed(run: Callable[[], object]) -> float:
    """Seconds one run takes, with the garbage collector off (as timeit does)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start
    finally:
        gc.enable()


def time_interleaved(
    rows: list[Row],
    cases: Sequence[tuple[str, Callable[[], object], list[str]]],
    runs: int,
    setup: Callable[[], object] | None,
) -> list[Row]:
    """Time every case whose check passed ``runs`` times, INTERLEAVED (one run of each per
    round), so that a busy machine slows them all alike; keep each median in its row."""
    times: dict[str, list[float]] = {r.name: [] for r in rows if not r.error}
    for _ in range(runs):
        for name, run, _keys in cases:
            if name in times:
                if setup is not None:
                    setup()
                times[name].append(timed(run))
    for r in rows:
        if r.name in times:
            r.median = statistics.median(times[r.name])
    return rows


def measure(
    cases: Sequence[tuple[str, Callable[[], object], list[str]]],
    reader: Any,
    runs: int,
    setup: Callable[[], object] | None = None,
) -> list[Row]:
    """Check every case, then time the correct ones ``runs`` times, INTERLEAVED (one run of
    each per round), so that a busy machine slows them all alike; keep each median. ``setup``
    runs before every timed run (untimed)."""
    rows = [check(name, run, keys, reader) for name, run, keys in cases]
    return time_interleaved(rows, cases, runs, setup)


def print_setting(
    title: str,
    rows: list[Row],
    recommended: str | None,
    baseline: str = "per_key",
    unit: str = "keys/s",
) -> bool | None:
    """Print one setting's table; return whether the targets are met (None: nothing to judge)."""
    print(f"\n{title}")
    base = next((r for r in rows if r.name == baseline and r.median is not None), None)
    width = max(len(r.name) for r in rows)
    for r in rows:
        if r.median is None:
            print(f"  {r.name:<{width}}  fails here: {r.error}")
            continue
        ratio = f"{base.median / r.median:6.1f}x {baseline}" if base and base.median else ""
        print(
            f"  {r.name:<{width}}  {r.keys_per_second:>10,.0f} {unit}  "
            f"{r.median * 1000:8.2f} ms  {ratio}"
        )
    if recommended is None or base is None or base.median is None:
        return None
    rec = next(r for r in rows if r.name == recommended)
    if rec.median is None:
        print(f"  target: {recommended} is not correct here ({rec.error}): NOT MET")
        return False
    fastest = min(r.median for r in rows if r.median is not None)
    vs_base = base.median / rec.median
    vs_fastest = rec.median / fastest
    ok = vs_base >= TARGET_VS_PER_KEY and vs_fastest <= TARGET_VS_FASTEST
    print(
        f"  target: {recommended} >= {TARGET_VS_PER_KEY:g}x {baseline} ({vs_base:.1f}x) and within "
        f"{TARGET_VS_FASTEST:g}x of the fastest correct ({vs_fastest:.2f}x): "
        f"{'met' if ok else 'NOT MET'}"
    )
    return ok


def settings_for_sweep(settings: list[tuple[str, Any, str | None]]) -> list[tuple[str, Any]]:
    """The cluster client and the proxy with its script check on."""
    return [("cluster client", settings[0][1])] + (
        [("proxy", settings[1][1])] if len(settings) > 1 else []
    )


def check_read(name: str, run: Callable[[], Any], keys: list[str]) -> Row:
    """Run a read once: correct here if no error and every value is the loader's."""
    row = Row(name, len(keys))
    try:
        result = run()
    except Exception as exc:  # noqa: BLE001 - a failing strategy is a result, not a crash
        first = str(exc).splitlines()[0] if str(exc) else ""
        row.error = f"{type(exc).__name__}: {first[:90]}"
        return row
    if result.values != openim.database(keys):
        row.error = "ran, but returned wrong values"
    return row


def measure_reads(
    cases: Sequence[tuple[str, Callable[[], Any], list[str]]],
    client: Any,
    runs: int,
    setup: Callable[[], object] | None,
) -> list[Row]:
    """As :func:`measure`, for reads: check each once (after ``setup``), then time them."""
    rows = []
    for name, run, keys in cases:
        if setup is not None:
            setup()
        rows.append(check_read(name, run, keys))
    return time_interleaved(rows, cases, runs, setup)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=500, help="group size, owner included")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per strategy")
    args = parser.parse_args()

    members = [f"u{i}" for i in range(1, args.members)]
    keys = openim.create_group_keys("g1", "u0", members, "3.8")
    slots = len(set(key_slots(keys).tolist()))
    print(
        f"CreateGroup of {args.members} members (OpenIM 3.8 key set): {len(keys)} keys over "
        f"{slots} slots; median of {args.runs} runs; Python {sys.version.split()[0]}"
    )
    try:
        lab: Lab = start_lab(masters=3, backend="real")
    except Exception as exc:  # noqa: BLE001 - no server: say so and exit 0
        print(f"cannot start a real cluster: {exc}")
        return 0
    verdicts: list[bool] = []
    try:
        rc = lab.cluster_client()
        settings: list[tuple[str, Any, str | None]] = [
            ("cluster client (redis-py RedisCluster)", rc, batching.RECOMMENDED["cluster"])
        ]
        try:
            settings.append(
                (
                    "Alibaba-style proxy (plain client, script check on)",
                    lab.proxy_client("alibaba"),
                    batching.RECOMMENDED["proxy"],
                )
            )
            settings.append(
                (
                    "Alibaba-style proxy (plain client, script_check_enable=0)",
                    lab.proxy_client("alibaba", script_check_enable=False),
                    batching.RECOMMENDED["proxy"],
                )
            )
        except ImportError as exc:
            print(f"(no proxy settings: slotlab.proxy is not importable: {exc})")
        for title, client, recommended in settings:
            lab.reset()
            cases = [
                (name, partial(strategy, client, keys), keys)
                for name, strategy in batching.STRATEGIES.items()
            ]
            verdict = print_setting(title, measure(cases, rc, args.runs), recommended)
            if verdict is not None:
                verdicts.append(verdict)

        # Sweep: what grouping buys as keys per slot grow (other keys: for reading).
        print("\nkeys per slot: pipelined_per_key against proxy_safe (50 keys a call), 1200 keys")
        for title, client in settings_for_sweep(settings):
            for per_tag in (1, 2, 10, 100):
                tagged = [
                    f"{{grp{g}}}:k{i}" for g in range(1200 // per_tag) for i in range(per_tag)
                ]
                rows = measure(
                    [
                        (name, partial(batching.STRATEGIES[name], client, tagged), tagged)
                        for name in ("pipelined_per_key", "proxy_safe")
                    ],
                    rc,
                    args.runs,
                    lab.reset,
                )
                one, grouped = rows
                if one.median is None or grouped.median is None:
                    print(f"  {title}: {per_tag} per tag: fails ({one.error or grouped.error})")
                    continue
                print(
                    f"  {title:<16} {per_tag:>3} keys per tag: pipelined_per_key "
                    f"{one.keys_per_second:>8,.0f} keys/s, proxy_safe "
                    f"{grouped.keys_per_second:>8,.0f} keys/s: grouping buys "
                    f"{one.median / grouped.median:4.2f}x"
                )

        # Reads: GetGroupsInfo of 500 groups, warm and right after a delete.
        info_keys = openim.get_groups_info_keys([f"g{i}" for i in range(500)])
        for title, client, _rec in settings[:2]:
            for state in ("warm cache", "after a delete"):
                lab.reset()
                batching.read_pipelined_per_key(client, info_keys)

                def tag_all(c: Any = client) -> None:
                    batching.pipelined_per_key(c, info_keys)

                setup = tag_all if state == "after a delete" else None
                read_cases = [
                    (name, partial(read, client, info_keys), info_keys)
                    for name, read in batching.READ_STRATEGIES.items()
                ]
                rows = measure_reads(read_cases, client, args.runs, setup)
                verdict = print_setting(
                    f"reads, {len(info_keys)} GROUP_INFO keys, {state}: {title}",
                    rows,
                    "read_pipelined_per_key",
                    baseline="read_per_key",
                )
                if verdict is not None:
                    verdicts.append(verdict)

        # Layouts: other keys, so not part of the targets.
        lab.reset()
        global_keys = batching.global_tag_keys(keys)
        group_keys = batching.per_group_tag_keys(keys, "g1")
        layout_rows = measure(
            [
                (
                    "one_eval, global {GROUP} tag",
                    partial(batching.one_eval, rc, global_keys),
                    global_keys,
                ),
                (
                    "by_client_slot, global {GROUP} tag",
                    partial(batching.by_client_slot, rc, global_keys),
                    global_keys,
                ),
                (
                    "by_client_slot, per-group {g1} tags",
                    partial(batching.by_client_slot, rc, group_keys),
                    group_keys,
                ),
            ],
            rc,
            args.runs,
        )
        print_setting(
            "key layouts through the cluster client (other keys: for reading, not targets)",
            layout_rows,
            None,
        )
        hot = len(set(key_slots(group_keys).tolist()))
        print(
            f"  global tag: all {len(keys)} keys in slot 13516 (one shard serves the group "
            f"cache); per-group tags: {hot} slots (the members' user keys stay apart)"
        )
    finally:
        lab.stop()
    if verdicts:
        print(f"\nall targets met: {'yes' if all(verdicts) else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
