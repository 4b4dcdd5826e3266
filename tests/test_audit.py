"""slotlab.audit on MONITOR captures recorded from a real redis-server (tests/record_monitor.py),
on live captures from the lab, and the ``slotlab audit`` command line with every bad input."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from conftest import real_server_or_skip

from slotlab import audit, openim
from slotlab.audit.parse import parse_line
from slotlab.errors import (
    ALIBABA_BAD_SCRIPT,
    ALIBABA_CROSS_SLOT,
    ALIBABA_NO_KEYS,
    CROSSSLOT,
    MOVE_IN_CLUSTER,
    SCRIPT_NO_CLUSTER,
    SELECT_IN_CLUSTER,
    SORT_BY_IN_CLUSTER,
    SORT_GET_IN_CLUSTER,
    SWAPDB_IN_CLUSTER,
)
from slotlab.lab import Lab, start_lab

DATA = pathlib.Path(__file__).parent / "data"
HAZARDS = DATA / "monitor_hazards.txt"


@pytest.fixture(scope="module")
def hazards() -> audit.Report:
    return audit.audit_file(HAZARDS)


def _by_line(report: audit.Report) -> dict[tuple[str, str], audit.Hazard]:
    return {(h.kind, h.command): h for h in report.hazards}


def _line_of(text: str) -> int:
    """The number of the first line of the recorded capture that contains ``text``."""
    for n, line in enumerate(HAZARDS.read_text().splitlines(), 1):
        if text in line:
            return n
    raise AssertionError(f"{text!r} is not in the capture")


# ---- every hazard kind, on the real capture ---------------------------------------------------


def test_every_kind_is_found_in_the_real_capture(hazards: audit.Report) -> None:
    assert {h.kind for h in hazards.hazards} == set(audit.KINDS)
    assert not hazards.ok
    assert hazards.lines_read == len(HAZARDS.read_text().splitlines())


def test_clean_traffic_is_not_flagged(hazards: audit.Report) -> None:
    flagged = {h.line_no for h in hazards.hazards}
    for clean in ('"SET" "user:1" "alice"', '"MGET" "{user:1}:name"', '"INCRBY" "{cart:7}',
                  "\"EVAL\" \"return redis.call('GET', KEYS[1])\"", '"SORT" "list:ids"\n'):
        n = _line_of(clean.rstrip("\n"))
        if clean.endswith("\n"):
            n = len(HAZARDS.read_text().splitlines())  # the last line: SORT without a pattern
        assert n not in flagged, clean
    assert _line_of('"MULTI"') not in flagged  # the one-slot transaction


def test_crossslot(hazards: audit.Report) -> None:
    h = _by_line(hazards)[("crossslot", "SUNIONSTORE")]
    assert h.line_no == _line_of('"SUNIONSTORE"')
    assert h.keys == ["group:42:everyone", "group:42:members", "group:42:admins"]
    assert len(set(h.slots)) == 3
    v = h.verdicts
    assert v["native cluster"].outcome == CROSSSLOT
    assert v["alibaba proxy"].outcome == ALIBABA_CROSS_SLOT.format(cmd="SUNIONSTORE")
    assert "refused client-side" in v["redis-py RedisCluster"].outcome
    assert CROSSSLOT in v["go-redis ClusterClient"].outcome
    assert not any(x.ok for x in v.values())
    assert "{group:42}" in h.fix and "'{group:42}:everyone'" in h.fix


def test_fan_out(hazards: audit.Report) -> None:
    found = _by_line(hazards)
    mget, dele = found[("fan-out", "MGET")], found[("fan-out", "DEL")]
    assert mget.verdicts["native cluster"].outcome == CROSSSLOT
    assert mget.verdicts["alibaba proxy"].ok and dele.verdicts["alibaba proxy"].ok
    assert "mget_nonatomic" in mget.verdicts["redis-py RedisCluster"].outcome
    assert dele.verdicts["redis-py RedisCluster"].outcome.startswith("split, not atomic")
    assert "pipeline single-key commands" in mget.fix
    keys = found[("fan-out", "KEYS")]
    assert keys.keys == [] and "own keys only" in keys.verdicts["native cluster"].outcome
    assert ("fan-out", "DBSIZE") in found


def test_multi_block_grouped_by_client(hazards: audit.Report) -> None:
    h = _by_line(hazards)[("multi-crossslot", "MULTI")]
    # the other client's SET order:9 came in between; it is not part of the block
    assert h.keys == ["order:1", "orders:count"]
    assert h.line_no == _line_of('"MULTI"\n'[:-1]) or h.example.endswith('"MULTI"')
    assert h.verdicts["native cluster"].outcome.startswith("EXECABORT")
    assert "CrossSlotTransactionError" in h.verdicts["redis-py RedisCluster"].outcome
    assert "one per slot" in h.verdicts["alibaba proxy"].outcome


def test_scripts(hazards: audit.Report) -> None:
    found = {(h.kind, h.line_no): h for h in hazards.hazards}
    zero = found[("script-zero-keys", _line_of("'config:limits')\" \"0\""))]
    assert zero.keys == ["config:limits"]  # found by running the script
    assert zero.verdicts["alibaba proxy"].outcome == ALIBABA_NO_KEYS
    undeclared = found[("script-undeclared-key", _line_of("'stats:' .. ARGV[1]"))]
    assert undeclared.keys == ["user:1:logins", "stats:logins"]
    assert "stats:logins" in undeclared.detail
    hidden = found[("script-hidden-key", _line_of("ipairs(KEYS)"))]
    assert hidden.verdicts["alibaba proxy"].outcome == ALIBABA_BAD_SCRIPT
    assert hidden.verdicts["alibaba proxy, script check off"].ok
    assert hidden.verdicts["native cluster"].ok  # its two keys share {g1}
    no_cluster = found[("script-no-cluster", _line_of("flags=no-cluster"))]
    assert no_cluster.verdicts["native cluster"].outcome == SCRIPT_NO_CLUSTER


def test_evalsha_resolved_from_script_load(hazards: audit.Report) -> None:
    h = _by_line(hazards)[("crossslot", "EVALSHA")]
    assert h.keys == ["user:1", "user:2"]
    assert h.verdicts["native cluster"].outcome == CROSSSLOT
    assert not hazards.notes or not any("was not loaded" in n for n in hazards.notes)


def test_databases_and_sort(hazards: audit.Report) -> None:
    found = _by_line(hazards)
    assert found[("select", "SELECT")].verdicts["native cluster"].outcome == SELECT_IN_CLUSTER
    assert found[("move", "MOVE")].verdicts["native cluster"].outcome == MOVE_IN_CLUSTER
    swapdb = found[("swapdb", "SWAPDB")]
    assert swapdb.count == 2 and swapdb.verdicts["native cluster"].outcome == SWAPDB_IN_CLUSTER
    sort = found[("sort-pattern", "SORT")]
    assert sort.keys == ["list:ids"] and "BY weight_*" in sort.detail
    assert sort.verdicts["native cluster"].outcome == SORT_BY_IN_CLUSTER  # the emulator's


@pytest.mark.parametrize(
    ("line", "refused"),
    [("SORT l GET #", SORT_GET_IN_CLUSTER),
     ("SORT l LIMIT 0 10 BY w_* GET o_*", SORT_BY_IN_CLUSTER),
     ("SORT_RO l GET #", SORT_GET_IN_CLUSTER), ("SORT l BY {l}w_*", SORT_BY_IN_CLUSTER),
     ("SORT l BY nosort", None), ("SORT_RO l ALPHA", None), ('SORT l BY "a\\x00*"', None),
     ("SORT_RO l STORE d BY w_*", None), ("SORT l FOO BY w_*", None)],
)  # fmt: skip
def test_sort_options_as_a_cluster_reads_them(line: str, refused: str | None) -> None:
    """What a real 7.0 cluster node answers (the fidelity cases sort-* check the emulator's
    rule against redis-server 7.0.15): any GET, even GET #, and BY with a '*' (before any NUL)
    are refused; BY without one means "do not sort"; an option sort.c cannot read (STORE in
    SORT_RO, FOO) ends its reading with a syntax error before any pattern is seen."""
    report = audit.audit_lines([line], source="commands")
    if refused is None:
        assert report.ok
    else:
        assert report.hazards[0].verdicts["native cluster"].outcome == refused


def test_unresolved_evalsha_is_a_note() -> None:
    report = audit.audit_lines(["EVALSHA " + "a" * 40 + " 2 user:1 user:2"])
    assert [h.kind for h in report.hazards] == ["crossslot"]  # its declared keys still count
    assert "was not loaded in this capture" in report.notes[0]


# ---- OpenIM: exactly 3.8's batch paths --------------------------------------------------------

BATCH_SCRIPTS = {openim.TAG_AS_DELETED_BATCH_SCRIPT, openim.READ_BATCH_SCRIPT,
                 openim.SET_BATCH_SCRIPT}  # fmt: skip


def _script_of(example: str) -> str:
    cmd = parse_line(example.encode(), 1, "monitor")
    assert cmd is not None
    return cmd.argv[1].decode()


def test_openim_38_batch_delete_and_read_flagged_37_loop_clean() -> None:
    r38 = audit.audit_file(DATA / "monitor_openim_38.txt")
    flagged = {_script_of(h.example) for h in r38.hazards}
    assert flagged == BATCH_SCRIPTS  # the batch delete, the batch read and its write-back
    lines = (DATA / "monitor_openim_38.txt").read_text().splitlines()
    batch_lines = {n for n, line in enumerate(lines, 1)
                   if line.split("] ", 1)[1].startswith('"EVAL"')
                   and _script_of(line) in BATCH_SCRIPTS}  # fmt: skip
    counted = {h.line_no for h in r38.hazards}
    assert counted <= batch_lines
    delete = [h for h in r38.hazards if h.kind == "crossslot"
              and _script_of(h.example) == openim.TAG_AS_DELETED_BATCH_SCRIPT]  # fmt: skip
    assert delete and delete[0].verdicts["alibaba proxy"].outcome == ALIBABA_CROSS_SLOT.format(
        cmd="EVAL")
    r37 = audit.audit_file(DATA / "monitor_openim_37.txt")
    assert r37.ok and r37.hazards == []
    assert r37.commands > 100  # the loop did run: one EVAL per key


@pytest.fixture(scope="module", params=["real", "emulated"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    if request.param == "real":
        real_server_or_skip()
    lab = start_lab(masters=3, backend=request.param)
    yield lab
    lab.stop()


def test_openim_live_capture_from_the_lab(lab: Lab) -> None:
    """A capture taken from the lab's standalone server while the flows run, on both backends."""
    client = lab.standalone_client()
    keys = openim.create_group_keys("g7", "u1", ["u2", "u3"])
    reads = openim.joined_group_list_reads("u1", ["g7", "g8"])
    for version, expect_clean in (("3.7", True), ("3.8", False)):
        client.flushall()
        with audit.capture(client) as cap:
            time.sleep(0.2)
            (openim.v3_8_by_slot if version == "3.8" else openim.v3_7_per_key)(client, keys)
            openim.read_flow(client, reads, version)
            time.sleep(0.3)
        report = cap.report(nodes=lab.topology())
        assert report.ok is expect_clean, report.text()
        if not expect_clean:
            assert {_script_of(h.example) for h in report.hazards} == BATCH_SCRIPTS
            assert any(n in {m.address for m in lab.topology().masters}
                       for h in report.hazards for n in h.nodes)  # fmt: skip


# ---- keys, templates, formats ------------------------------------------------------------------


def test_audit_keys_and_templates() -> None:
    report = audit.audit_keys(["group:42:members", "group:42:info"], command="SUNIONSTORE")
    assert [h.kind for h in report.hazards] == ["crossslot"]
    assert audit.audit_keys(["{group:42}:members", "{group:42}:info"]).ok
    tpl = audit.audit_templates(["group:<group_id>:members", "group:<group_id>:info"])
    assert not tpl.ok and tpl.hazards[0].keys == ["group:42:members", "group:42:info"]
    assert audit.audit_templates(["{group:<group_id>}:members", "{group:<group_id>}:info"]).ok
    with pytest.raises(ValueError, match="<name>"):
        audit.audit_templates(["group:<42>:x"])
    with pytest.raises(ValueError, match="at least one key"):
        audit.audit_keys([])


def test_json_and_junit(hazards: audit.Report) -> None:
    data = json.loads(hazards.to_json())
    assert data["ok"] is False and len(data["hazards"]) == len(hazards.hazards)
    assert set(data["hazards"][0]["verdicts"]) == set(audit.SETTINGS)
    suite = ET.fromstring(hazards.junit())
    assert suite.get("failures") == str(len(hazards.hazards))
    clean = ET.fromstring(audit.audit_lines(["GET a"]).junit())
    assert clean.get("failures") == "0" and len(clean) == 1


def test_bounded_memory_groups_lines() -> None:
    lines = [f"MGET user:{i} user:{i + 1}" for i in range(5000)]
    report = audit.audit_lines(lines)
    assert len(report.hazards) == 1 and report.hazards[0].count == 5000
    assert report.hazards[0].line_no == 1 and report.hazards[0].example == lines[0]


def test_nodes_layout() -> None:
    one = audit.audit_lines(["MGET a b"], nodes=1)
    assert one.hazards[0].nodes == ["node 0 (slots 0-16383)"] * 2
    named = audit.audit_lines(["MGET a b"], nodes={s: "n1" if s < 8192 else "n2"
                                                   for s in range(16384)})  # fmt: skip
    assert named.hazards[0].nodes == ["n2", "n1"] and "given" in named.layout


# ---- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "client", "argv"),
    [
        ('1.000001 [0 127.0.0.1:5] "SET" "a\\"b\\\\" "\\x00\\xffé"', b"127.0.0.1:5",
         [b"SET", b'a"b\\', b"\x00\xff\xc3\xa9"]),
        ('1.000001 [3 lua] "get" "k"', b"lua", [b"get", b"k"]),
        ('1.000001 [0 unix:/tmp/redis.sock] "PING"', b"unix:/tmp/redis.sock", [b"PING"]),
        ('1.000001 [0 [::1]:6379] "GET" "a b"', b"[::1]:6379", [b"GET", b"a b"]),
        ('SET "a b" \'c\'', b"cli", [b"SET", b"a b", b"c"]),
    ],
)  # fmt: skip
def test_parse_line(line: str, client: bytes, argv: list[bytes]) -> None:
    cmd = parse_line(line.encode(), 1)
    assert cmd is not None and cmd.client == client and cmd.argv == argv


# ---- the command line: exit codes and every bad input --------------------------------------------


def _cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "slotlab.cli", "audit", *args], input=stdin,
                          capture_output=True, timeout=120, check=False)  # fmt: skip


def test_cli_exit_codes(tmp_path: pathlib.Path) -> None:
    hazards = _cli(str(HAZARDS), "--format", "json")
    assert hazards.returncode == 1 and json.loads(hazards.stdout)["ok"] is False
    clean = tmp_path / "clean.txt"
    clean.write_text("GET a\nSET {u}:a 1\nMGET {u}:a {u}:b\n")
    assert _cli(str(clean)).returncode == 0
    piped = _cli("-", "--format", "junit", stdin=b"MGET a b\n")
    assert piped.returncode == 1 and b"<testsuite" in piped.stdout


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, ["missing.txt"], "no such file"),
        (None, ["."], "is a directory"),
        (b"GET a\n\x89PNG\x00\x00", ["{f}"], "line 2: binary data"),
        (b'GET a\n1.5 [0 127.0.0.1:1 "GET" "a"\n', ["{f}"], "line 2: a malformed MONITOR"),
        (b'1.5 [0 127.0.0.1:1] GET a\n', ["{f}"], "line 1: a malformed MONITOR"),
        (b'GET "a\n', ["{f}"], "line 1: the quotes of this command do not close"),
        (b"GET a\n", ["{f}", "--format", "xml"], "--format 'xml': choose one of"),
        (b"GET a\n", ["{f}", "--nodes", "lots"], "--nodes 'lots'"),
        (b"", ["{f}"], "no command in it"),
        (b"# only a comment\n\n", ["{f}"], "no command in it"),
        (b'1.5 [0 127.0.0.1:1] "GET" "a"\nGET b\n', ["{f}", "--source", "monitor"],
         "line 2: a malformed MONITOR"),
        (b"GET a\n", ["{f}", "--source", "xml"], "source must be one of"),
    ],
)  # fmt: skip
def test_cli_bad_input(tmp_path: pathlib.Path, content: bytes | None, args: list[str],
                       message: str) -> None:  # fmt: skip
    f = tmp_path / "capture.txt"
    if content is not None:
        f.write_bytes(content)
    argv = [str(f) if a == "{f}" else str(tmp_path / a) if a in ("missing.txt", ".") else a
            for a in args]  # fmt: skip
    result = _cli(*argv)
    assert result.returncode == 2, result.stdout
    err = result.stderr.decode()
    assert message in err and err.count("\n") == 1, err
    assert result.stdout == b""


def test_cli_bad_stdin() -> None:
    result = _cli("-", stdin=b'GET a\n1.5 [0 x "GET"\n')
    assert result.returncode == 2 and b"stdin: line 2" in result.stderr


def test_fan_out_counts_nodes_not_slots() -> None:
    """Two keys in two slots of ONE node: one node, two requests; the next line, the same
    shape on two nodes, gets its own verdict (the verdicts are cached per slot AND node
    pattern)."""
    one, two = audit.audit_lines(
        ["MSET stock:apple 1 stock:pear 2", "MSET user:1 1 user:4 2"]
    ).hazards
    assert one.nodes[0] == one.nodes[1] and two.nodes[0] != two.nodes[1]
    assert one.verdicts["alibaba proxy"].outcome.startswith(
        "fanned out as 2 requests, one per slot, to 1 node(s)")
    assert two.verdicts["alibaba proxy"].outcome.startswith("fanned out to 2 node(s)")
    first = two.verdicts["go-redis ClusterClient"].outcome
    assert first.startswith(f"routed by its first key to {two.nodes[0]}")


def test_templates_give_each_placeholder_its_own_value() -> None:
    """<group_id> and <user_id> are different ids: they never share a value (so no tag common
    to group and user keys is proposed); the same name is the same value everywhere."""
    keys = ["group:<group_id>:members", "user:<user_id>:groups", "group:<group_id>:info"]
    (h,) = audit.audit_templates(keys).hazards
    assert h.keys == ["group:42:members", "user:43:groups", "group:42:info"]
    assert "no common part of all 3 keys" in h.fix and "{group:42} (2 of 3 keys)" in h.fix
    (h,) = audit.audit_templates(["a:<x>", "b:<y>"], value="id").hazards
    assert h.keys == ["a:id", "b:id2"] and "no common part" in h.fix
