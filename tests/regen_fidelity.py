"""Record the real server's outcome of every fidelity case in ``tests/data/fidelity_recorded.json``.

The fidelity tests compare the emulated cluster with a live real one where a redis-server runs.
Where none runs, they compare it with this recording instead, case by case and just as strictly:
the outcomes here are normalised exactly as the live comparison normalises them (node IDs,
addresses and ports become ``<id0>``, ``<addr1>``, ``<port2>``; each case's own normaliser).

Run it with a redis-server 7.0 on PATH (or ``$SLOTLAB_REDIS_SERVER``) after changing a case::

    python tests/regen_fidelity.py            # runs every case on a real cluster, writes the file
    python tests/regen_fidelity.py --check    # exit 1 if a fresh recording differs from the file

Each entry keeps a fingerprint of its case (its steps, arguments and the source of its
functions); ``test_recording_is_current`` fails when a case changed or was added or removed
without a new recording, as ``regen_command_table.py --check`` does for the command table.

JSON encoding of an outcome (lossless for what cases return): ``null``, booleans, integers and
text are themselves; lists are lists; ``{"b": latin-1 text}`` is bytes, ``{"t": [...]}`` a
tuple, ``{"f": repr}`` a float, ``{"d": [[k, v], ...]}`` a dict.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import sys
import textwrap
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from tests.fidelity_cases import CASES, REPLICA_CASES, Case  # noqa: E402

RECORDING = ROOT / "tests" / "data" / "fidelity_recorded.json"
#: The two tables of cases and the lab each runs on.
TABLES: dict[str, list[Case]] = {"masters": CASES, "replicas": REPLICA_CASES}


# ---- encoding outcomes -----------------------------------------------------------------------


def encode(value: Any) -> Any:
    """An outcome as JSON, keeping every type the comparison can tell apart."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, bytes):
        return {"b": value.decode("latin-1")}
    if isinstance(value, float):
        return {"f": repr(value)}
    if isinstance(value, tuple):
        return {"t": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {"d": [[encode(k), encode(v)] for k, v in value.items()]}
    raise TypeError(
        f"a fidelity outcome holds a {type(value).__name__} ({value!r}); teach "
        "tests/regen_fidelity.py's encode() and decode() to store it"
    )


def decode(data: Any) -> Any:
    """The outcome ``encode`` stored."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if isinstance(data, dict):
        ((kind, body),) = data.items()
        if kind == "b":
            return body.encode("latin-1")
        if kind == "f":
            return float(body)
        if kind == "t":
            return tuple(decode(v) for v in body)
        if kind == "d":
            return {_hashable(decode(k)): decode(v) for k, v in body}
        raise ValueError(f"unknown tag {kind!r} in {RECORDING.name}")
    return data


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


# ---- fingerprints ----------------------------------------------------------------------------


def _stable(obj: Any) -> Any:
    """A description of a case that changes when the case does, the same on every Python."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return [type(obj).__name__, *[[f.name, _stable(getattr(obj, f.name))] for f in fields(obj)]]
    if isinstance(obj, (list, tuple)):
        return [_stable(v) for v in obj]
    if isinstance(obj, dict):
        return [[_stable(k), _stable(v)] for k, v in sorted(obj.items(), key=repr)]
    if callable(obj) and hasattr(obj, "__code__"):
        try:
            source = textwrap.dedent(inspect.getsource(obj)).strip()
        except (OSError, TypeError):
            source = obj.__qualname__
        cells = [_stable(c.cell_contents) for c in (obj.__closure__ or ())]
        return ["fn", source, cells, _stable(obj.__defaults__ or ())]
    if isinstance(obj, bytes):
        return ["bytes", obj.hex()]
    return repr(obj)


def fingerprint(case: Case) -> str:
    """SHA-1 of the case's description (``diff=`` is left out: it says how the emulator does)."""
    text = json.dumps(
        _stable([case.id, case.steps, case.normalise, case.setup]), sort_keys=True
    )
    return hashlib.sha1(text.encode()).hexdigest()


# ---- recording -------------------------------------------------------------------------------


def load() -> dict[str, Any]:
    """The committed recording: ``{"server", "redis_py", "cases": {table: {case id: entry}}}``."""
    return dict(json.loads(RECORDING.read_text()))


def recorded_outcome(table: str, case: Case) -> Any:
    """The real server's outcome of ``case`` as recorded."""
    return decode(load_cached()["cases"][table][case.id]["outcome"])


_CACHE: dict[str, Any] = {}


def load_cached() -> dict[str, Any]:
    if "data" not in _CACHE:
        _CACHE["data"] = load()
    return _CACHE["data"]  # type: ignore[no-any-return]


def record() -> dict[str, Any]:
    """Run every case on real clusters (3 masters; 3 masters with a replica each)."""
    import redis

    from slotlab.backends.real import find_redis_server
    from slotlab.lab import start_lab
    from tests.test_fidelity import Ctx, _wait_for_replicas

    server = find_redis_server()
    out: dict[str, Any] = {
        "server": ".".join(map(str, server.version)),
        "redis_py": redis.__version__,
        "cases": {},
    }
    for table, cases in TABLES.items():
        lab = start_lab(masters=3, replicas=1 if table == "replicas" else 0, backend="real")
        try:
            if table == "replicas":
                _wait_for_replicas(lab)
            ctx = Ctx(lab)
            try:
                out["cases"][table] = {
                    case.id: {"fingerprint": fingerprint(case), "outcome": encode(ctx.run(case))}
                    for case in cases
                }
            finally:
                ctx.close()
        finally:
            lab.stop()
    return out


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=False, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a fresh recording differs from the file"
    )
    args = parser.parse_args()
    fresh = dump(record())
    if args.check:
        if RECORDING.exists() and RECORDING.read_text() == fresh:
            print(f"{RECORDING.relative_to(ROOT)} is current")
            return 0
        print(f"{RECORDING.relative_to(ROOT)} differs from the server: run "
              "python tests/regen_fidelity.py")
        return 1
    RECORDING.parent.mkdir(parents=True, exist_ok=True)
    RECORDING.write_text(fresh)
    total = sum(len(v) for v in json.loads(fresh)["cases"].values())
    print(f"wrote {total} outcomes to {RECORDING.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
