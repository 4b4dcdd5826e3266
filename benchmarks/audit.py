"""How fast ``slotlab.audit`` reads a MONITOR capture, against simply reading and splitting it.

    PYTHONPATH=src python benchmarks/audit.py [--lines 1000000]

Writes a capture of ``--lines`` MONITOR lines to a temporary directory (a web application's
mix: single-key reads and writes, tagged multi-key reads, cross-slot MGET and DEL, scripts,
transactions, 200,000 distinct users), then times, in the same run and interleaved:

- the baseline: read the file in binary and split every line (``line.split()``);
- the audit: ``slotlab.audit.audit_file`` (one streaming pass, report included).

- for reference, reading every line and splitting it into its arguments as MONITOR quotes
  them (``slotlab.audit.parse.parse_line``), which the audit does only for the lines it must.

Prints lines per second of each, the ratios (target: at least 100,000 lines/s, at most 5x the
baseline), the process's peak resident memory, and tracemalloc's peak for 100,000 and 200,000
lines (bounded memory: the second is not twice the first).
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from slotlab.audit import audit_file, audit_lines
from slotlab.audit.parse import parse_line

USERS = 200_000
SCRIPT = "return redis.call('GET', KEYS[1])"
BATCH = "for _, k in ipairs(KEYS) do redis.call('DEL', k) end"


def write_capture(path: Path, lines: int, seed: int = 7) -> None:
    """A synthetic MONITOR capture of ``lines`` lines (MONITOR's own format)."""
    rng = random.Random(seed)
    t = 1_700_000_000.0
    with path.open("w", encoding="ascii") as f:
        n = 0
        while n < lines:
            t += 0.000013
            client = f"127.0.0.1:{40000 + rng.randrange(64)}"
            head = f"{t:.6f} [0 {client}]"
            u = rng.randrange(USERS)
            r = rng.random()
            if r < 0.55:
                out = [f'{head} "GET" "user:{u}:profile"']
            elif r < 0.80:
                out = [f'{head} "SET" "session:{u}" "token-{u}" "EX" "3600"']
            elif r < 0.88:
                out = [f'{head} "HGETALL" "{{user:{u}}}:cart"']
            elif r < 0.93:
                out = [f'{head} "MGET" "{{user:{u}}}:name" "{{user:{u}}}:mail"']
            elif r < 0.95:
                out = [f'{head} "MGET" "user:{u}:name" "user:{u}:mail"']
            elif r < 0.96:
                out = [f'{head} "DEL" "session:{u}" "session:{u + 1}"']
            elif r < 0.98:
                out = [f'{head} "EVAL" "{SCRIPT}" "1" "user:{u}:profile"',
                       f'{t:.6f} [0 lua] "GET" "user:{u}:profile"']
            elif r < 0.99:
                out = [f'{head} "EVAL" "{BATCH}" "2" "group:{u}:info" "group:{u}:members"']
            else:
                out = [f'{head} "MULTI"', f'{head} "INCR" "orders:{u}"',
                       f'{head} "SADD" "orders:{u}:items" "book"', f'{head} "EXEC"']
            f.write("\n".join(out) + "\n")
            n += len(out)


def baseline(path: Path) -> int:
    """Read the file and split every line: the least any reader of it must do."""
    n = 0
    with path.open("rb") as f:
        for line in f:
            line.split()
            n += 1
    return n


def parse_all(path: Path) -> int:
    """Read the file and split every line into its arguments, as MONITOR quotes them."""
    n = 0
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            parse_line(line.rstrip(b"\r\n"), n)
    return n


def timed(fn: object, *args: object) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "capture.txt"
        write_capture(path, args.lines)
        size = path.stat().st_size
        with path.open("rb") as f:
            total = sum(1 for _ in f)
        print(f"capture: {total:,} lines, {size / 1e6:.1f} MB")
        base_times, parse_times, audit_times = [], [], []
        report = None
        for _ in range(args.rounds):  # interleaved, so all see the same machine
            t, _n = timed(baseline, path)
            base_times.append(t)
            t, _n = timed(parse_all, path)
            parse_times.append(t)
            t, report = timed(audit_file, path)
            audit_times.append(t)
        assert report is not None
        base, parsed, aud = min(base_times), min(parse_times), min(audit_times)
        print(f"baseline (read + split):     {total / base:12,.0f} lines/s  ({base:.2f} s)")
        print(f"read + split into arguments: {total / parsed:12,.0f} lines/s  ({parsed:.2f} s)")
        print(f"audit_file (whole report):   {total / aud:12,.0f} lines/s  ({aud:.2f} s)")
        print(f"ratio audit/baseline:        {aud / base:12.2f}x  (target: at most 5x)")
        print(f"ratio audit/argument split:  {aud / parsed:12.2f}x")
        print(f"hazard groups: {len(report.hazards)}; lines in them: "  # type: ignore[attr-defined]
              f"{sum(h.count for h in report.hazards):,}")  # type: ignore[attr-defined]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak resident memory of this process: {rss:,.0f} MB")
        with path.open("rb") as f:
            head = [next(f) for _ in range(min(total, 200_000))]
        peaks = []
        for part in (len(head) // 2, len(head)):
            tracemalloc.start()
            audit_lines(head[:part])
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        print(f"tracemalloc peak: {peaks[0] / 1e6:.1f} MB for {len(head) // 2:,} lines, "
              f"{peaks[1] / 1e6:.1f} MB for {len(head):,} (the lines themselves not counted: "
              f"they were read before)")
        ok = total / aud >= 100_000 and aud / base <= 5
        print("targets met" if ok else "targets NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
