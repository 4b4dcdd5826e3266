"""key_slots (numpy, many keys at once) vs a Python loop over redis-py's key_slot, same run.

Keys: a fixed seed, half with a hash tag, lengths 1 to 40 bytes. Both sides get the same keys
and must return the same slots. Target: key_slots at least 2x faster than the loop (median
of the runs). The same is then measured for str keys, where the loop has to encode each key.
Always exits 0; read the verdict in the output.

    python benchmarks/key_slots.py [--keys N] [--runs R] [--seed S]
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import redis
from redis.crc import key_slot as redis_key_slot

from slotlab.slots import key_slots

TARGET = 2.0
ALPHABET = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-."


def make_keys(n: int, seed: int) -> list[bytes]:
    """``n`` keys of 1 to 40 bytes; about half (chosen at random) hold a ``{tag}``."""
    rng = random.Random(seed)
    keys: list[bytes] = []
    for _ in range(n):
        if rng.random() < 0.5:
            keys.append(bytes(rng.choices(ALPHABET, k=rng.randint(1, 40))))
            continue
        length = rng.randint(3, 40)
        tag = rng.randint(1, length - 2)
        before = rng.randint(0, length - 2 - tag)
        after = length - 2 - tag - before
        keys.append(
            bytes(rng.choices(ALPHABET, k=before))
            + b"{"
            + bytes(rng.choices(ALPHABET, k=tag))
            + b"}"
            + bytes(rng.choices(ALPHABET, k=after))
        )
    return keys


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Seconds one call of ``fn`` takes (garbage collector off, as timeit does), and its result."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        result = fn()
        return time.perf_counter() - start, result
    finally:
        gc.enable()


def compare(
    label: str, keys: Sequence[str | bytes], baseline: Callable[[], list[int]], runs: int
) -> float:
    """Time both sides ``runs`` times, alternating; check they agree; print; return the ratio."""
    base_times: list[float] = []
    ours_times: list[float] = []
    expected: object = None
    got: object = None
    for _ in range(runs):
        t, expected = timed(baseline)
        base_times.append(t)
        t, got = timed(lambda: key_slots(keys))
        ours_times.append(t)
    same = np.array_equal(np.asarray(got), np.asarray(expected))
    base_med, ours_med = statistics.median(base_times), statistics.median(ours_times)
    ratio = base_med / ours_med
    print(f"\n{label}: {len(keys):,} keys, {runs} runs each, alternating")
    print(f"  baseline loop  median {base_med:.4f} s   best {min(base_times):.4f} s")
    print(f"  key_slots      median {ours_med:.4f} s   best {min(ours_times):.4f} s")
    print(f"  results equal: {'yes' if same else 'NO'}")
    best_ratio = min(base_times) / min(ours_times)
    verdict = "MET" if ratio >= TARGET and same else "NOT MET"
    print(
        f"  speed-up (median): {ratio:.2f}x (best vs best: {best_ratio:.2f}x)"
        f"  -> target {TARGET:.0f}x {verdict}"
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="how many keys (1,000,000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per side (5)")
    parser.add_argument("--seed", type=int, default=20240601, help="random seed for the keys")
    args = parser.parse_args(argv)

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, redis-py {redis.__version__}"
    )
    t0 = time.perf_counter()
    keys = make_keys(args.keys, args.seed)
    tagged = sum(1 for k in keys if b"{" in k)
    print(f"built {len(keys):,} keys ({tagged:,} with a tag) in {time.perf_counter() - t0:.1f} s")

    key_slots(keys[:50_000])  # warm up: build the lookup tables once
    compare(
        "bytes keys (baseline: [redis.crc.key_slot(k) for k in keys])",
        keys,
        lambda: [redis_key_slot(k) for k in keys],
        args.runs,
    )
    text = [k.decode() for k in keys]
    compare(
        "str keys (baseline: [redis.crc.key_slot(k.encode()) for k in keys])",
        text,
        lambda: [redis_key_slot(k.encode()) for k in text],
        args.runs,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
