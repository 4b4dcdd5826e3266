"""Slots on the move, on both backends: a slot migrated as redis-cli reshard does, with a writer
and a reader running through it; ASK and TRYAGAIN equal to the server's; a retrying batch that
misses no key; failover on the real backend; clear errors for bad input."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import slotlab
from slotlab import batching, openim
from slotlab.backends.base import NotModelled
from slotlab.lab import Lab
from slotlab.migration import RetryLog, Tally, fill_cache, run_counted, with_retry
from tests.conftest import real_server_or_skip


@pytest.fixture(scope="module", params=["real", "emulated"])
def mlab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A 3-master lab of this module's own: these tests move slots, which other modules' shared
    labs must not see."""
    if request.param == "real":
        real_server_or_skip()
    lab = slotlab.start_lab(masters=3, backend=request.param)
    yield lab
    lab.stop()


def _other_master(lab: Lab, slot: int) -> int:
    source = lab.topology().node_for_slot(slot).index
    return (source + 1) % 3


# ---- the steps ------------------------------------------------------------------------------


def test_steps_follow_redis_cli_reshard(mlab: Lab) -> None:
    """IMPORTING on the target, MIGRATING on the source, MIGRATE batches, then NODE on the
    target, the source and the other master, in that order (clusterManagerMoveSlot)."""
    mlab.reset()
    rc = mlab.cluster_client()
    keys = [f"{{steps}}{i}" for i in range(25)]
    for k in keys:
        rc.set(k, k)
    slot = slotlab.key_slot("steps")
    source = mlab.topology().node_for_slot(slot).index
    target = _other_master(mlab, slot)
    other = 3 - source - target
    done = mlab.migrate_slot(slot, target, batch=10)
    ids = [n.node_id for n in mlab.nodes]
    got = [(s.action, s.node, s.command[:5] if s.action != "migrate" else len(s.keys))
           for s in done.steps]  # fmt: skip
    assert got == [
        ("importing", target, ("CLUSTER", "SETSLOT", str(slot), "IMPORTING", ids[source])),
        ("migrating", source, ("CLUSTER", "SETSLOT", str(slot), "MIGRATING", ids[target])),
        ("migrate", source, 10),
        ("migrate", source, 10),
        ("migrate", source, 5),
        ("node", target, ("CLUSTER", "SETSLOT", str(slot), "NODE", ids[target])),
        ("node", source, ("CLUSTER", "SETSLOT", str(slot), "NODE", ids[target])),
        ("node", other, ("CLUSTER", "SETSLOT", str(slot), "NODE", ids[target])),
    ]
    migrate = done.steps[2].command
    assert migrate[:6] == ("MIGRATE", "127.0.0.1", str(mlab.nodes[target].port), "", "0", "60000")
    assert migrate[6] == "KEYS"
    assert (done.source, done.target, done.keys_moved) == (source, target, 25)
    assert mlab.topology().node_for_slot(slot).index == target
    assert sorted(rc.mget(keys)) == sorted(keys)


# ---- a 500-key slot with a writer and a reader running through it ---------------------------


def test_500_key_slot_moves_with_no_acknowledged_write_lost(mlab: Lab) -> None:
    mlab.reset()
    slot_tag = "five-hundred"
    keys = [f"{{{slot_tag}}}:{i}" for i in range(500)]
    slot = slotlab.key_slot(slot_tag)
    seed = mlab.cluster_client()
    pipe = seed.pipeline(transaction=False)
    for k in keys:
        pipe.set(k, "0")
    pipe.execute()
    acked: dict[str, str] = {}
    writer_errors: list[str] = []
    reader_problems: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        rc = mlab.cluster_client()
        n = 0
        while not stop.is_set():
            n += 1
            key = keys[(n * 7) % len(keys)]
            try:
                rc.set(key, str(n))
            except redis.RedisError as exc:  # an unacknowledged write: not counted
                writer_errors.append(f"{type(exc).__name__}: {exc}")
            else:
                acked[key] = str(n)

    def reader() -> None:
        rc = mlab.cluster_client()
        i = 0
        while not stop.is_set():
            key = keys[i % len(keys)]
            i += 1
            try:
                if rc.get(key) is None:
                    reader_problems.append(f"{key} was missing")
            except redis.RedisError as exc:
                reader_problems.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    try:
        target = _other_master(mlab, slot)
        done = mlab.migrate_slot(slot, target, batch=10, pause=lambda _step: time.sleep(0.002))
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert done.keys_moved == 500
    assert len([s for s in done.steps if s.action == "migrate"]) == 50
    assert writer_errors == []
    assert reader_problems == []
    assert len(acked) > 50, "the writer should have run through the migration"
    check = mlab.cluster_client()
    final = dict(zip(keys, check.mget(keys), strict=True))
    lost = {k: (v, final[k]) for k, v in acked.items() if final[k] != v}
    assert lost == {}
    assert all(v is not None for v in final.values())
    assert mlab.node_client(target).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 500
    source = done.source
    assert mlab.node_client(source).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0


# ---- ASK and TRYAGAIN as the server answers them ----------------------------------------------


def _normalise(text: str, lab: Lab) -> str:
    for i, n in enumerate(lab.nodes):
        text = text.replace(n.node_id, f"<id{i}>").replace(f":{n.port}", f":<port{i}>")
    return text


def _midway_outcomes(lab: Lab) -> list[str]:
    """A slot halfway moved: what plain clients, ASKING and RedisCluster get, as text."""
    lab.reset()
    tag = "mid"
    slot = slotlab.key_slot(tag)
    keys = [f"{{{tag}}}{i}" for i in range(12)]
    rc = lab.cluster_client()
    for k in keys:
        rc.set(k, k)
    source = lab.topology().node_for_slot(slot).index
    target = _other_master(lab, slot)
    steps = lab.slot_migration(slot, target, batch=5)
    first = [next(steps) for _ in range(3)]
    moved = list(first[2].keys)
    stayed = [k for k in keys if k not in moved]
    src = lab.node_client(source)
    dst = lab.node_client(target)
    script = "return redis.call('MGET', KEYS[1], KEYS[2])"
    out: list[str] = []

    def run(client: Any, *args: Any) -> None:
        try:
            reply = client.execute_command(*args)
        except redis.RedisError as exc:
            reply = f"{type(exc).__name__}: {exc}"
        out.append(_normalise(repr(reply), lab))

    run(src, "GET", moved[0])  # moved: ASK
    run(src, "GET", stayed[0])  # still here: served
    run(src, "MGET", moved[0], stayed[0])  # split: TRYAGAIN
    run(src, "MGET", moved[0], moved[1])  # all moved: ASK
    run(src, "EVAL", script, 2, moved[0], stayed[0])  # a script whose keys are split: TRYAGAIN
    run(dst, "GET", moved[0])  # the target without ASKING: MOVED to the source
    run(dst, "ASKING")
    run(dst, "GET", moved[0])  # with ASKING: served
    run(dst, "GET", moved[0])  # ASKING lasts one command: MOVED again
    run(dst, "ASKING")
    run(dst, "MGET", moved[0], stayed[0])  # on the target a key is missing: TRYAGAIN
    run(dst, "ASKING")
    run(dst, "EVAL", script, 2, moved[0], moved[1])  # all there: served
    tally = Tally()
    rc2 = lab.cluster_client()
    tally.watch(rc2)
    out.append(repr(rc2.get(moved[0])))  # RedisCluster follows the ASK
    out.append(str(tally))
    for _step in steps:
        pass
    run(src, "GET", moved[0])  # over: MOVED
    run(src, "GET", stayed[0])
    return out


def test_ask_and_tryagain_equal_the_servers() -> None:
    """The emulator's replies in a half-moved slot are the server's, byte for byte as text."""
    real_server_or_skip()
    with slotlab.start_lab(masters=3, backend="real") as real, slotlab.start_lab(
        masters=3, backend="emulated"
    ) as emulated:
        # The same slot to the same node index on both (node IDs differ; normalised).
        assert _midway_outcomes(emulated) == _midway_outcomes(real)


def test_midway_replies_say_what_the_spec_says(mlab: Lab) -> None:
    """The facts lesson 6 prints, on each backend."""
    out = _midway_outcomes(mlab)
    assert out[0].startswith("'AskError: ") and "<port" in out[0]
    assert out[2] == "'TryAgainError: Multiple keys request during rehashing of slot'"
    assert out[3].startswith("'AskError: ")
    assert out[4] == "'TryAgainError: Multiple keys request during rehashing of slot'"
    assert out[5].startswith("'MovedError: ")
    assert out[7].startswith("'{mid}")
    assert out[8].startswith("'MovedError: ")
    assert out[10] == "'TryAgainError: Multiple keys request during rehashing of slot'"
    # GET to the source, ASK, then ASKING and the same GET to the target.
    assert out[14] == "2 command(s) (1 sent again), 1 ASKING, error replies: ASK 1"
    assert out[15].startswith("'MovedError: ")


# ---- batch strategies in the window ----------------------------------------------------------


def _group_keys() -> tuple[list[str], int]:
    group = "g6"
    members = [f"u{i}" for i in range(1, 13)]
    keys = batching.per_group_tag_keys(openim.create_group_keys(group, "u0", members), group)
    return keys, slotlab.key_slot(group)


def test_every_strategy_is_counted_in_the_window(mlab: Lab) -> None:
    mlab.reset()
    keys, slot = _group_keys()
    reader = mlab.cluster_client()
    fill_cache(reader, keys)
    steps = mlab.slot_migration(slot, _other_master(mlab, slot), batch=10)
    for _ in range(3):
        next(steps)
    try:
        runs = {}
        for name, strategy in batching.STRATEGIES.items():
            fill_cache(reader, keys)
            runs[name] = run_counted(name, strategy, mlab.cluster_client(), keys, reader)
    finally:
        for _step in steps:
            pass
    moved = 10  # the first MIGRATE batch
    for name in ("per_key", batching.RECOMMENDED["cluster"]):
        # Single-key calls: each moved key's call meets ASK in slotlab's pipeline, in redis-py's
        # pipeline, and once more sent alone, when redis-py follows it with ASKING.
        assert runs[name].tally.errors == {"ASK": 3 * moved}
        assert (runs[name].raised, runs[name].missed) == ("", 0)
    in_slot = sum(slotlab.key_slot(k) == slot for k in keys)
    ttl = redis.cluster.RedisCluster.RedisClusterRequestTTL
    for name in ("by_server_slot", "by_client_slot", "proxy_safe"):
        # One EVAL for the slot's split keys: TRYAGAIN in both pipelines, then redis-py's 16.
        assert runs[name].tally.errors["TRYAGAIN"] == 2 + ttl
        assert runs[name].raised == "ClusterError"
        assert runs[name].missed >= in_slot
    for name in ("by_client_slot", "proxy_safe"):
        assert runs[name].missed == in_slot  # every other slot's keys were tagged


def _held_window(lab: Lab, slot: int) -> Iterator[Any]:
    """The slot's migration, stopped after its first MIGRATE batch: its keys split in two."""
    steps = lab.slot_migration(slot, _other_master(lab, slot), batch=10)
    for _ in range(3):
        next(steps)
    return steps


@pytest.mark.parametrize("name", ["by_client_slot", "proxy_safe", "by_server_slot"])
def test_retrying_grouping_strategy_meets_tryagain_and_misses_no_key(mlab: Lab, name: str) -> None:
    """A strategy that sends one script for the slot's keys fails in the window (lesson 6's
    table); wrapped in a retry it tries again once the slot has moved and tags every key."""
    mlab.reset()
    keys, slot = _group_keys()
    reader = mlab.cluster_client()
    fill_cache(reader, keys)
    target = _other_master(mlab, slot)
    steps = _held_window(mlab, slot)

    def finish_migration(seconds: float) -> None:
        time.sleep(seconds)
        for _step in steps:
            pass

    log = RetryLog()
    retrying = with_retry(batching.STRATEGIES[name], sleep=finish_migration, log=log)
    try:
        run = run_counted(name, retrying, mlab.cluster_client(), keys, reader)
    finally:
        finish_migration(0)
    assert run.tally.errors["TRYAGAIN"] > 0
    assert log.errors and log.errors[0].startswith("ClusterError")  # redis-py gave up: TTL
    assert log.attempts == 2
    assert (run.raised, run.missed) == ("", 0)
    assert mlab.topology().node_for_slot(slot).index == target  # the retry's wait ended it


@pytest.mark.parametrize("retry", [False, True], ids=["alone", "with_retry"])
def test_recommended_strategy_misses_no_key_in_the_window(mlab: Lab, retry: bool) -> None:
    """The recommended strategy sends single-key calls only: in the window it meets ASK, which
    redis-py follows, raises nothing and misses no key, with or without a retry."""
    mlab.reset()
    keys, slot = _group_keys()
    reader = mlab.cluster_client()
    fill_cache(reader, keys)
    name = batching.RECOMMENDED["cluster"]
    log = RetryLog()
    strategy = batching.STRATEGIES[name]
    if retry:
        strategy = with_retry(strategy, sleep=lambda _s: pytest.fail("no try should fail"), log=log)
    steps = _held_window(mlab, slot)
    try:
        run = run_counted(name, strategy, mlab.cluster_client(), keys, reader)
    finally:
        for _step in steps:
            pass
    assert run.tally.errors["ASK"] > 0 and set(run.tally.errors) == {"ASK"}
    assert (run.raised, run.missed) == ("", 0)
    assert log.attempts == (1 if retry else 0) and log.errors == []


@pytest.mark.parametrize(
    ("name", "retry"),
    [(batching.RECOMMENDED["cluster"], False), (batching.RECOMMENDED["cluster"], True),
     ("by_client_slot", True)],
    ids=["recommended", "recommended_with_retry", "by_client_slot_with_retry"],
)  # fmt: skip
def test_strategy_misses_no_key_while_a_slot_moves(mlab: Lab, name: str, retry: bool) -> None:
    """The strategy run again and again while a migration runs in another thread: every run
    tags every key."""
    mlab.reset()
    keys, slot = _group_keys()
    reader = mlab.cluster_client()
    fill_cache(reader, keys)
    log = RetryLog()
    strategy = batching.STRATEGIES[name]
    if retry:
        strategy = with_retry(strategy, attempts=10, backoff=0.02, log=log)
    client = mlab.cluster_client()
    done = threading.Event()
    failure: list[BaseException] = []

    def migrate() -> None:
        try:
            mlab.migrate_slot(slot, _other_master(mlab, slot), batch=2,
                              pause=lambda _s: time.sleep(0.01))  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - reported below
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=migrate)
    thread.start()
    runs = 0
    try:
        while not done.is_set() or runs < 3:
            fill_cache(reader, keys)
            strategy(client, keys)
            runs += 1
            missed = [k for k in keys if not openim.tagged_as_deleted(reader, k)]
            assert missed == []
    finally:
        thread.join(30)
    assert failure == []
    assert runs >= 3


def test_with_retry_gives_up_after_its_attempts() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def always_tryagain(client: Any, keys: Any, **kw: Any) -> None:
        calls.append(1)
        raise redis.exceptions.TryAgainError("Multiple keys request during rehashing of slot")

    retrying = with_retry(always_tryagain, attempts=3, backoff=0.01, sleep=waits.append)
    with pytest.raises(redis.exceptions.TryAgainError):
        retrying(None, ["a"])
    assert len(calls) == 3
    assert waits == [0.01, 0.02]
    with pytest.raises(ValueError, match="attempts"):
        with_retry(always_tryagain, attempts=0)
    with pytest.raises(ValueError, match="attempts"):
        with_retry(always_tryagain, attempts=True)


def test_tally_counts_what_redis_py_hides(mlab: Lab) -> None:
    mlab.reset()
    rc = mlab.cluster_client()
    tally = Tally()
    tally.watch(rc)
    rc.set("a", 1)
    rc.get("a")
    assert (tally.commands, tally.retries, dict(tally.errors)) == (2, 0, {})
    plain = mlab.node_client(0)
    tally2 = Tally()
    tally2.watch(plain)
    with pytest.raises(redis.exceptions.MovedError):
        plain.get("foo")  # slot 12182: node 2's
    assert dict(tally2.errors) == {"MOVED": 1}


# ---- growing the cluster -------------------------------------------------------------------


def test_add_node_then_a_small_rebalance_keeps_every_key(mlab: Lab) -> None:
    mlab.reset()
    rc = mlab.cluster_client()
    keys = [f"k{i}" for i in range(300)]
    for k in keys:
        rc.set(k, k)
    before = len(mlab.nodes)
    new = mlab.add_node()
    assert new == before
    topo = mlab.topology()
    assert topo.nodes[new].role == "master" and topo.nodes[new].slot_count == 0
    moves = mlab.rebalance({new: 0.02})
    topo = mlab.topology()
    got = topo.nodes[new].slot_count
    assert got == sum(count for _s, dst, count in moves if dst == new)
    assert 90 <= got <= 120  # 2% of an even share of 16384 among 3.02 weights: about 108
    assert sum(m.slot_count for m in topo.masters) == slotlab.SLOT_COUNT
    assert mlab.rebalance({new: 0.02}) == []  # within the 2% threshold now
    fresh = mlab.cluster_client()
    assert fresh.mget_nonatomic(keys) == keys


# ---- failover: real backend only -----------------------------------------------------------


def test_failover_and_kill_on_the_real_backend() -> None:
    real_server_or_skip()
    with slotlab.start_lab(masters=3, replicas=1, backend="real") as lab:
        rc = lab.cluster_client()
        keys = [f"fo{i}" for i in range(200)]
        for k in keys:
            rc.set(k, k)
        planned = lab.failover(0)
        assert (planned.kind, planned.old_master, planned.new_master) == ("planned", 0, 3)
        assert planned.seconds > 0
        topo = lab.topology()
        assert topo.nodes[3].role == "master" and topo.nodes[3].slots == ((0, 5460),)
        assert topo.nodes[0].role == "replica"
        # A planned failover loses nothing.
        assert lab.cluster_client().mget_nonatomic(keys) == keys
        unplanned = lab.kill_node(1)
        assert (unplanned.kind, unplanned.old_master, unplanned.new_master) == (
            "unplanned", 1, 4,
        )  # fmt: skip
        assert unplanned.seconds > planned.seconds  # the failure has to be noticed first
        topo = lab.topology()
        assert topo.nodes[1].failed and topo.nodes[4].slots == ((5461, 10922),)
        with pytest.raises(ValueError, match="master 1 is down"):
            lab.failover(1)
        assert lab.cluster_client().get("fo0") == "fo0"


def test_emulated_backend_refuses_failover_naming_the_real_one() -> None:
    with slotlab.start_lab(masters=3, replicas=1, backend="emulated") as lab:
        for call in (lambda: lab.failover(0), lambda: lab.kill_node(1)):
            with pytest.raises(NotModelled, match=r"backend='real'"):
                call()
        with pytest.raises(ValueError, match="is a replica"):
            lab.migrate_slot(0, 3)


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((16384, "OTHER"), {}, ValueError, "slot 16384 is out of range: slots are 0 to 16383"),
        ((-1, "OTHER"), {}, ValueError, "out of range"),
        ((True, "OTHER"), {}, TypeError, "slot must be a whole number .* not bool"),
        (("100", "OTHER"), {}, TypeError, "slot must be a whole number .* not str"),
        ((100, 9), {}, IndexError, "to_node 9 is out of range: this lab has nodes 0 to"),
        ((100, True), {}, TypeError, "to_node must be a node index.* not bool"),
        ((100, "OWNER"), {}, ValueError, "already served by node OWNER: nothing to move"),
        ((100, "OTHER"), {"batch": 0}, ValueError, "batch .* 1 or more"),
        ((100, "OTHER"), {"batch": True}, ValueError, "batch"),
        ((100, "OTHER"), {"pause": 3}, TypeError, "pause must be a function"),
    ],
)
def test_bad_input_gets_a_clear_error(
    mlab: Lab, args: tuple[Any, ...], kwargs: dict[str, Any], error: type, match: str
) -> None:
    owner = mlab.topology().node_for_slot(100).index
    names = {"OWNER": owner, "OTHER": (owner + 1) % 3}
    args = tuple(names.get(a, a) if isinstance(a, str) else a for a in args)
    with pytest.raises(error, match=match.replace("OWNER", str(owner))):
        mlab.migrate_slot(*args, **kwargs)
    assert mlab.topology().node_for_slot(100).index == owner  # nothing was started


def test_failover_without_replicas_says_how_to_get_them(mlab: Lab) -> None:
    if mlab.backend_name != "real":
        with pytest.raises(NotModelled):
            mlab.failover(0)
        return
    with pytest.raises(ValueError, match=r"replicas=1"):
        mlab.failover(0)
    with pytest.raises(TypeError, match="not bool"):
        mlab.kill_node(False)


# ---- lesson 6 on a machine without redis-server ----------------------------------------------


def test_lesson_6_tags_every_cell_that_uses_the_real_failover_lab() -> None:
    """notebooks/conftest.py skips cells tagged needs-redis-server where no server exists; a cell
    that starts or uses the failover lab (``ha``) without the tag would fail nbval there."""
    import json
    import re
    from pathlib import Path

    notebook = Path(__file__).parent.parent / "notebooks" / "06_slots_on_the_move.ipynb"
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    uses_real = re.compile(r"\bha\b|backend=\"real\"")
    untagged = [
        i for i, cell in enumerate(cells)
        if cell["cell_type"] == "code"
        and uses_real.search("".join(cell["source"]))
        and "needs-redis-server" not in cell.get("metadata", {}).get("tags", [])
    ]  # fmt: skip
    assert untagged == [], f"cells {untagged} need a redis-server but lack the tag"
    assert sum("needs-redis-server" in c.get("metadata", {}).get("tags", []) for c in cells) >= 5


def test_jupyter_shows_a_missing_server_as_its_message_alone() -> None:
    """IPython renders an exception with ``_render_traceback_`` as the lines it returns: the
    message naming how to get a redis-server, not slotlab's frames."""
    from slotlab.backends.real import RedisServerNotFound

    error = RedisServerNotFound("No redis-server was found.\nGet one: brew install redis")
    assert error._render_traceback_() == [
        "RedisServerNotFound: No redis-server was found.",
        "Get one: brew install redis",
    ]
