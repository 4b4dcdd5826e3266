"""Each batch-delete strategy while the group's slot migrates: errors, retries, keys missed.

One group's CreateGroup key set (OpenIM 3.8, an owner and N members, per-group ``{gid}`` tags so
the group's keys share one slot) is tagged as deleted by every strategy of
``slotlab.batching.STRATEGIES``, and by two of them wrapped in a retry with backoff
(``slotlab.migration.with_retry``): the recommended one (``batching.RECOMMENDED["cluster"]``,
single-key calls, which meet only ASK) and ``by_client_slot`` (one script per slot, which meets
TRYAGAIN), each time while a thread moves the group's slot to another master as ``redis-cli
--cluster reshard`` does (``Lab.migrate_slot``, slowed by a pause after each step,
``--pause-ms``). Every strategy starts once the first keys have moved, so it meets a split slot.

Printed per strategy, summed over the runs: the error replies the nodes sent (by kind), the
commands sent again (retries), how many runs raised an error to the caller, the keys left
untagged, and the strategy's median time against its median on a still cluster measured in the
same run (the ratio; the check for untagged keys is not timed). With short pauses redis-py's own
tries (16 per command) often outlast the split and nothing reaches the caller; the default
100 ms keeps a slot split longer than that. Targets: the retrying by_client_slot misses no key
(its failed tries are printed, to show the retry had errors to meet), and the recommended
strategy misses no key, alone and with the retry. Always exits 0: read the verdicts.

    python benchmarks/migration.py [--members N] [--runs R] [--pause-ms P] [--backend real|emulated]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from slotlab import batching, openim
from slotlab.lab import Lab, start_lab
from slotlab.migration import RetryLog, fill_cache, run_counted, with_retry
from slotlab.slots import key_slot


def still_run(lab: Lab, strategy: Callable[..., Any], keys: list[str]) -> float:
    """Seconds for one run on a still cluster (errors ignored: some strategies always fail)."""
    reader = lab.cluster_client()
    fill_cache(reader, keys)
    client = lab.cluster_client()
    start = time.perf_counter()
    # A strategy that fails on a still cluster (one_eval) fails in the window too.
    with contextlib.suppress(Exception):
        strategy(client, keys)
    return time.perf_counter() - start


def window_run(
    lab: Lab, name: str, strategy: Callable[..., Any], keys: list[str], slot: int, pause_s: float
) -> tuple[Any, float]:
    """One run while the slot moves to the next master; returns (WindowRun, seconds)."""
    reader = lab.cluster_client()
    fill_cache(reader, keys)
    client = lab.cluster_client()
    client.exists(keys[0])  # the client's slot map is read now, before the move starts
    owner = lab.topology().node_for_slot(slot).index
    masters = [m.index for m in lab.topology().masters if not m.failed]
    target = masters[(masters.index(owner) + 1) % len(masters)]
    opened = threading.Event()
    failure: list[BaseException] = []

    def pause(step: Any) -> None:
        if step.action == "migrate":
            opened.set()
        time.sleep(pause_s)

    def migrate() -> None:
        try:
            lab.migrate_slot(slot, target, batch=10, pause=pause)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            failure.append(exc)
        finally:
            opened.set()

    thread = threading.Thread(target=migrate)
    thread.start()
    opened.wait(30)
    spent: list[float] = []

    def timed(client_: Any, keys_: list[str]) -> Any:
        start = time.perf_counter()
        try:
            return strategy(client_, keys_)
        finally:
            spent.append(time.perf_counter() - start)

    run = run_counted(name, timed, client, keys, reader)
    thread.join(60)
    if failure:
        raise failure[0]
    return run, spent[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", default="real", choices=("real", "emulated"))
    parser.add_argument(
        "--pause-ms", type=float, default=100.0,
        help="pause after each migration step: the longer, the longer the slot stays split",
    )  # fmt: skip
    args = parser.parse_args()
    group = "g1"
    members = [f"u{i}" for i in range(1, args.members)]
    keys = batching.per_group_tag_keys(openim.create_group_keys(group, "u0", members), group)
    slot = key_slot(group)
    in_slot = sum(key_slot(k) == slot for k in keys)
    recommended = batching.RECOMMENDED["cluster"]
    grouping = "by_client_slot"
    logs = {name: RetryLog() for name in (grouping, recommended)}
    strategies: dict[str, Callable[..., Any]] = dict(batching.STRATEGIES)
    for name, log in logs.items():
        strategies[f"{name}+retry"] = with_retry(
            batching.STRATEGIES[name], attempts=10, backoff=0.05, log=log
        )
    with start_lab(masters=3, backend=args.backend) as lab:
        print(
            f"{len(keys)} keys, {in_slot} of them in the moving slot {slot}; "
            f"{args.runs} run(s) per strategy, each during its own migration "
            f"({args.pause_ms:g} ms pause after each step)"
        )
        still = {
            name: statistics.median(still_run(lab, s, keys) for _ in range(args.runs))
            for name, s in strategies.items()
        }
        for log in logs.values():  # count the tries made during migrations only
            log.attempts, log.waited = 0, 0.0
            log.errors.clear()
        header = (
            f"{'strategy':<25}{'error replies':<36}{'retries':>8}{'raised':>8}"
            f"{'missed':>8}{'ms still':>10}{'ms moving':>11}{'ratio':>7}"
        )
        print(header)
        missed_by: dict[str, int] = {}
        for name, strategy in strategies.items():
            errors: Counter[str] = Counter()
            retries = raised = missed = 0
            times: list[float] = []
            for _ in range(args.runs):
                run, seconds = window_run(lab, name, strategy, keys, slot, args.pause_ms / 1000)
                errors.update(run.tally.errors)
                retries += run.tally.retries
                raised += bool(run.raised)
                missed += run.missed
                times.append(seconds)
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "0"
            moving = statistics.median(times)
            print(
                f"{name:<25}{kinds:<36}{retries:>8}{raised:>8}{missed:>8}"
                f"{still[name] * 1000:>10.1f}{moving * 1000:>11.1f}{moving / still[name]:>7.1f}"
            )
            missed_by[name] = missed
        for name, log in logs.items():
            kinds = Counter(error.split(":")[0] for error in log.errors)
            failed = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"
            print(f"{name}+retry: {log.attempts} tries during migrations, failed tries: {failed}")
        met = len(logs[grouping].errors)
        ok = missed_by[f"{grouping}+retry"] == 0
        print(
            f"verdict: the retrying {grouping} met {met} failed tries and missed "
            f"{missed_by[f'{grouping}+retry']} key(s) over {args.runs} migration(s): "
            f"{'PASS' if ok else 'FAIL'}"
            + ("" if met else " (no try failed: the retry was not tested; raise --pause-ms)")
        )
        for name in (recommended, f"{recommended}+retry"):
            print(
                f"verdict: {name} missed {missed_by[name]} key(s) over {args.runs} "
                f"migration(s): {'PASS' if missed_by[name] == 0 else 'FAIL'}"
            )


if __name__ == "__main__":
    main()
