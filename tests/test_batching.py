"""slotlab.batching: six batch-delete strategies with one signature, and two key layouts.

Every strategy runs in every setting (cluster client, Alibaba-style proxy with and without its
script check, a plain client to one node, one plain non-cluster server) on the real and the
emulated backend. Each either tags EVERY key or fails with the error the setting gives
(FACTS.md sections 2 and 3); the table below is the module docstring's table, checked.
"""

from __future__ import annotations

import inspect
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.exceptions import (
    ClusterCrossSlotError,
    MovedError,
    RedisClusterException,
    ResponseError,
)

from slotlab import batching, openim
from slotlab.lab import Lab, start_lab
from slotlab.slots import key_slot, key_slots
from tests.conftest import Clients, assert_all_tagged, move_empty_slot, real_server_or_skip

KEYS = openim.create_group_keys("g1", "u1", ["u2"])  # the 14 keys of FACTS.md section 4
BIG = openim.create_group_keys("g1", "u0", [f"u{i}" for i in range(1, 500)])  # 1508 keys

CROSSSLOT = (ClusterCrossSlotError, "Keys in request don't hash to the same slot")
REFUSED = (RedisClusterException, "EVAL - all keys must map to the same key slot")
PROXY_SLOT = (ResponseError, "'EVAL' command keys must in same slot")
PROXY_SCRIPT = (
    ResponseError,
    "bad lua script for redis cluster, all the keys that the script uses should be passed "
    "using the KEYS array, and KEYS should not be in expression",
)
MOVED = (MovedError, "")
OK = None

# setting -> strategy -> None (tags every key) or (error class, text the message contains)
EXPECTED: dict[str, dict[str, tuple[type[Exception], str] | None]] = {
    "cluster": {
        "per_key": OK,
        "one_eval": REFUSED,
        "by_server_slot": OK,
        "by_client_slot": OK,
        "proxy_safe": OK,
        "pipelined_per_key": OK,
    },
    "alibaba": {
        "per_key": OK,
        "one_eval": PROXY_SLOT,
        "by_server_slot": PROXY_SLOT,
        "by_client_slot": PROXY_SCRIPT,
        "proxy_safe": OK,
        "pipelined_per_key": OK,
    },
    "alibaba_no_script_check": {
        "per_key": OK,
        "one_eval": PROXY_SLOT,
        "by_server_slot": PROXY_SLOT,
        "by_client_slot": OK,
        "proxy_safe": OK,
        "pipelined_per_key": OK,
    },
    "node": {
        "per_key": MOVED,
        "one_eval": CROSSSLOT,
        "by_server_slot": CROSSSLOT,
        "by_client_slot": MOVED,
        "proxy_safe": MOVED,
        "pipelined_per_key": MOVED,
    },
    "plain_server": {name: OK for name in batching.STRATEGIES},
}


# --------------------------------------------------------------------------------------------
# Labs and clients (the same fixtures as tests/test_openim.py)
# --------------------------------------------------------------------------------------------


def distinct_slots(keys: list[str]) -> int:
    return len(set(key_slots(keys).tolist()))


# --------------------------------------------------------------------------------------------
# Every strategy in every setting
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", list(EXPECTED))
@pytest.mark.parametrize("name", list(batching.STRATEGIES))
def test_strategy_in_setting(clients: Clients, setting: str, name: str) -> None:
    strategy = batching.STRATEGIES[name]
    through, reader = clients.setting(setting, KEYS)
    expected = EXPECTED[setting][name]
    if expected is None:
        result = strategy(through, KEYS)
        assert result.tagged == len(KEYS) == 14
        assert result.name == name
        assert_all_tagged(reader, KEYS)
        return
    error, text = expected
    with pytest.raises(error) as err:
        strategy(through, KEYS)
    assert text in str(err.value)
    if error is RedisClusterException:
        assert not isinstance(err.value, redis.RedisError)


def test_recommended_strategies_work_on_a_500_member_group(clients: Clients) -> None:
    assert len(BIG) == 1508
    for setting in ("cluster", "alibaba"):
        name = batching.RECOMMENDED["proxy" if setting == "alibaba" else setting]
        clients.reset()
        through, reader = clients.setting(setting, BIG)
        result = batching.STRATEGIES[name](through, BIG)
        assert result.tagged == 1508
        assert result.round_trips == 1  # every script call in one pipeline
        assert_all_tagged(reader, BIG)


@pytest.mark.parametrize("setting", ["cluster", "alibaba", "plain_server"])
def test_grouping_by_slot_saves_few_evals_on_openims_keys(clients: Clients, setting: str) -> None:
    """1,508 keys in 1,500 slots: one EVAL per slot, so grouping saves 8 EVALs of 1,508."""
    through, reader = clients.setting(setting, BIG)
    grouped = batching.proxy_safe(through, BIG)
    assert distinct_slots(BIG) == 1500
    assert (grouped.round_trips, grouped.evals) == (1, 1500)
    clients.reset()
    single = batching.pipelined_per_key(through, BIG)
    assert (single.round_trips, single.evals) == (1, 1508)
    assert_all_tagged(reader, BIG)


def test_by_client_slot_costs_one_round_trip_and_one_eval_per_slot(clients: Clients) -> None:
    result = batching.by_client_slot(clients.cluster, KEYS)
    assert (result.round_trips, result.evals, result.commands) == (1, 14, 14)
    per_key = batching.per_key(clients.cluster, KEYS)
    assert per_key.round_trips == 14


def test_round_trips_follow_the_window(clients: Clients) -> None:
    """A loop: one call per round trip. OpenIM 3.8: one CLUSTER KEYSLOT round, then 3 batches
    at a time. A pipeline: one round trip."""
    assert batching.WINDOWS == {"loop": 1, "openim_3.8": 3, "pipeline": 0}
    assert batching.per_key(clients.cluster, BIG).round_trips == 1508
    result = batching.by_server_slot(clients.cluster, BIG)
    assert (result.round_trips, result.evals) == (1 + math.ceil(1500 / 3), 1500)
    assert result.commands == 1508 + 1500  # every CLUSTER KEYSLOT, then the EVALs
    assert batching.pipelined_per_key(clients.cluster, BIG).round_trips == 1
    assert_all_tagged(clients.cluster, BIG)
    # a plain client to one server: 3.8 puts every key in "slot 0", 31 batches of up to 50
    result = batching.by_server_slot(clients.plain, BIG)
    assert (result.round_trips, result.evals) == (math.ceil(31 / 3), 31)


def test_pipelined_per_key_on_a_node_client_tags_that_nodes_keys(clients: Clients) -> None:
    """A plain client to one node: keys that node owns, many slots, are all tagged (no
    CROSSSLOT can happen with one key per call); other nodes' keys answer MOVED."""
    node = clients.node_for(BIG[0])
    owner = clients.lab.topology().node_for_slot(key_slot(BIG[0]))
    own = [k for k in BIG if owner.owns(key_slot(k))]
    assert distinct_slots(own) > 100
    result = batching.pipelined_per_key(node, own)
    assert (result.round_trips, result.evals) == (1, len(own))
    assert_all_tagged(clients.cluster, own)
    with pytest.raises(ClusterCrossSlotError):
        batching.one_eval(node, own)
    with pytest.raises(MovedError):
        batching.pipelined_per_key(node, BIG)


def test_noscript_is_answered_by_sending_the_script_again(clients: Clients) -> None:
    """A proxy that routes by key sends the EVAL to one node and the EVALSHAs to others, which
    never saw the script: they answer NOSCRIPT, and those calls go again as EVAL."""
    for n in range(len(clients.lab.nodes)):
        clients.lab.node_client(n).script_flush()
    through = clients.proxy("passthrough")
    result = batching.pipelined_per_key(through, KEYS)
    assert result.round_trips == 2  # the pipeline, then the NOSCRIPT calls as EVAL
    assert 14 < result.evals < 28
    assert_all_tagged(clients.cluster, KEYS)
    assert batching.pipelined_per_key(through, KEYS).round_trips == 1  # every node has it now


def test_by_client_slot_asks_the_server_nothing_but_the_evals(real_lab: Lab) -> None:
    """Through RedisCluster each EVAL names its node; else redis-py would first ask every EVAL's
    keys of the server (COMMAND GETKEYS, one extra round trip per EVAL). Counted with INFO
    commandstats, which only the real server keeps."""
    clients = Clients(real_lab, redis.Redis())
    nodes = [real_lab.node_client(i) for i in range(len(real_lab.nodes))]
    for n in nodes:
        n.config_resetstat()
    batching.by_client_slot(clients.cluster, KEYS)
    batching.proxy_safe(clients.cluster, KEYS)
    batching.pipelined_per_key(clients.cluster, KEYS)
    calls: dict[str, int] = {}
    for n in nodes:
        for name, stat in n.info("commandstats").items():
            calls[name] = calls.get(name, 0) + int(stat["calls"])
    # one script call per chunk: EVAL, or EVALSHA once the node has the script
    assert calls.get("cmdstat_eval", 0) + calls.get("cmdstat_evalsha", 0) == 42
    assert "cmdstat_command|getkeys" not in calls
    assert "cmdstat_cluster|keyslot" not in calls


def test_chunks_split_a_full_slot(clients: Clients) -> None:
    keys = [f"{{g1}}k{i}" for i in range(120)] + list(KEYS)
    for strategy in (batching.by_client_slot, batching.proxy_safe):
        clients.reset()
        result = strategy(clients.cluster, keys, chunk_size=50)
        assert result.evals == 3 + 14  # 50 + 50 + 20 in g1's slot, one EVAL per other slot
        assert_all_tagged(clients.cluster, keys)
    clients.reset()
    result = batching.by_client_slot(clients.cluster, keys, chunk_size=1)
    assert result.evals == len(keys)
    assert_all_tagged(clients.cluster, keys)


def test_chunk_size_7999_is_the_limit_and_it_works(clients: Clients) -> None:
    keys = [f"{{big}}k{i}" for i in range(8000)]
    for strategy in (batching.by_client_slot, batching.proxy_safe):
        clients.reset()
        result = strategy(clients.cluster, keys, chunk_size=7999)
        assert result.evals == 2
        sample = keys[::250] + keys[-2:]
        assert_all_tagged(clients.cluster, sample)
        assert int(clients.cluster.cluster_countkeysinslot(key_slot(keys[0]))) == 8000


def test_delay_reaches_the_expire(clients: Clients) -> None:
    batching.proxy_safe(clients.cluster, KEYS, delay=100)
    assert all(10 < int(clients.cluster.ttl(k)) <= 100 for k in KEYS)


def test_every_strategy_has_the_same_signature() -> None:
    want = inspect.signature(batching.per_key)
    for name, strategy in batching.STRATEGIES.items():
        sig = inspect.signature(strategy)
        assert list(sig.parameters) == ["client", "keys", "delay", "chunk_size"], name
        assert sig.parameters["delay"].kind is inspect.Parameter.KEYWORD_ONLY
        assert sig.parameters["delay"].default == 10
        assert sig.parameters["chunk_size"].default == 50
        assert str(sig) == str(want), name
    assert set(batching.RECOMMENDED.values()) <= set(batching.STRATEGIES)


# --------------------------------------------------------------------------------------------
# The proxy-safe script
# --------------------------------------------------------------------------------------------


def test_proxy_safe_script_names_every_key_as_keys_i() -> None:
    script = batching.proxy_safe_script(3)
    for i in (1, 2, 3):
        assert f"redis.call('HSET', KEYS[{i}], 'lockUntil', 0)" in script
        assert f"redis.call('HDEL', KEYS[{i}], 'lockOwner')" in script
        assert f"redis.call('EXPIRE', KEYS[{i}], ARGV[1])" in script
    assert "KEYS[4]" not in script
    assert script.count("redis.call") == 9


def test_the_proxy_check_accepts_proxy_safe_and_rejects_rockscaches_batch_script() -> None:
    from slotlab import proxy

    for n in (1, 2, 50, 7999):
        assert proxy.check_script(batching.proxy_safe_script(n)) == []
    assert proxy.check_script(openim.TAG_AS_DELETED_SCRIPT) == []
    problems = proxy.check_script(openim.TAG_AS_DELETED_BATCH_SCRIPT)
    assert len(problems) == 3  # HSET, HDEL and EXPIRE each take the loop variable as key


@pytest.mark.parametrize("n", [0, 8000])
def test_proxy_safe_script_length_range(n: int) -> None:
    with pytest.raises(ValueError, match="from 1 to 7999"):
        batching.proxy_safe_script(n)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(batching.STRATEGIES))
@pytest.mark.parametrize(
    ("keys", "kwargs", "error", "text"),
    [
        ([], {}, ValueError, "keys is empty: pass at least one key"),
        ("GROUP_INFO:g1", {}, TypeError, "not a single str: wrap it in a list"),
        (b"GROUP_INFO:g1", {}, TypeError, "not a single bytes: wrap it in a list"),
        (42, {}, TypeError, "list of str or bytes keys, not int"),
        (["a", None], {}, TypeError, r"keys\[1\] is a NoneType"),
        ([b"a", 3.5], {}, TypeError, r"keys\[1\] is a float .* must be str or bytes"),
        (["a"], {"chunk_size": 0}, ValueError, "chunk_size must be from 1 to 7999"),
        (["a"], {"chunk_size": 8000}, ValueError, "chunk_size must be from 1 to 7999"),
        (["a"], {"chunk_size": -5}, ValueError, "chunk_size must be from 1 to 7999"),
        (["a"], {"chunk_size": 2.0}, TypeError, "chunk_size must be a whole number"),
        (["a"], {"chunk_size": True}, TypeError, "chunk_size must be a whole number"),
        (["a"], {"delay": 0}, ValueError, "delay must be at least 1 second"),
        (["a"], {"delay": "10"}, TypeError, "delay must be a whole number of seconds"),
    ],
)
def test_strategies_validate_their_input(
    name: str, keys: Any, kwargs: dict[str, Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        batching.STRATEGIES[name](None, keys, **kwargs)  # fails before touching the client


# --------------------------------------------------------------------------------------------
# Key layouts
# --------------------------------------------------------------------------------------------


def test_global_tag_puts_every_key_in_slot_13516(clients: Clients) -> None:
    tagged = batching.global_tag_keys(KEYS)
    assert tagged[0] == "{GROUP}GROUP_INFO:g1"
    assert {key_slot(k) for k in tagged} == {13516}
    assert {int(clients.cluster.cluster_keyslot(k)) for k in tagged[:3]} == {13516}
    # One slot: the one-EVAL strategy now works through the cluster client and the proxy.
    result = batching.one_eval(clients.cluster, tagged)
    assert result.evals == 1
    assert_all_tagged(clients.cluster, tagged)
    clients.reset()
    batching.proxy_safe(clients.proxy(), tagged)  # the proxy wants KEYS[i] in the script
    assert_all_tagged(clients.cluster, tagged)


def test_global_tag_of_a_big_group_is_one_hot_slot() -> None:
    tagged = batching.global_tag_keys(BIG)
    assert distinct_slots(tagged) == 1
    assert distinct_slots(BIG) > 1400  # untagged, the same keys spread over ~1440 slots


def test_per_group_tags_colocate_the_groups_keys_but_not_the_users() -> None:
    tagged = batching.per_group_tag_keys(KEYS, "g1")
    assert tagged == [
        "GROUP_INFO:{g1}",
        "GROUP_MEMBERS_HASH2:{g1}",
        "GROUP_MEMBER_NUM_CACHE:{g1}",
        "GROUP_MEMBER_IDS:{g1}",
        "GROUP_ROLE_LEVEL_MEMBER_IDS:{g1}-100",
        "GROUP_ROLE_LEVEL_MEMBER_IDS:{g1}-60",
        "GROUP_ROLE_LEVEL_MEMBER_IDS:{g1}-20",
        "GROUP_MEMBER_MAX_VERSION:{g1}",
        "JOIN_GROUPS_KEY:u1",
        "GROUP_MEMBER_INFO:{g1}-u1",
        "GROUP_JOIN_MAX_VERSION:u1",
        "JOIN_GROUPS_KEY:u2",
        "GROUP_MEMBER_INFO:{g1}-u2",
        "GROUP_JOIN_MAX_VERSION:u2",
    ]
    group_slot = key_slot("g1")
    assert {key_slot(k) for k in tagged if "{g1}" in k} == {group_slot}
    user_keys = [k for k in tagged if "{" not in k]
    assert distinct_slots(tagged) == len({group_slot, *(key_slot(k) for k in user_keys)}) == 5


def test_per_group_tags_cut_the_evals(clients: Clients) -> None:
    tagged = batching.per_group_tag_keys(BIG, "g1")
    result = batching.by_client_slot(clients.cluster, tagged)
    per_slot = Counter(key_slots(tagged).tolist())
    assert per_slot[key_slot("g1")] == 8 + 500  # the group's keys and its 500 member infos
    assert result.evals == sum(math.ceil(n / 50) for n in per_slot.values())
    assert result.evals < distinct_slots(BIG)
    assert_all_tagged(clients.cluster, tagged)


def test_colocation_report_for_create_group() -> None:
    report = batching.colocation_report(KEYS, "g1")
    assert len(report.colocated) == 10
    assert [k for k, _ in report.apart] == [
        "JOIN_GROUPS_KEY:u1",
        "GROUP_JOIN_MAX_VERSION:u1",
        "JOIN_GROUPS_KEY:u2",
        "GROUP_JOIN_MAX_VERSION:u2",
    ]
    assert all("a user key" in why for _, why in report.apart)
    assert "lists every group the user joined" in report.apart[0][1]
    text = str(report)
    assert text.startswith("group g1: 10 key(s) can share the tag {g1}, 4 cannot")
    assert "apart     JOIN_GROUPS_KEY:u1" in text


def test_colocation_report_for_a_group_chats_conversations() -> None:
    keys = openim.group_chat_conversation_keys("g1", ["u1", "u2"])
    report = batching.colocation_report(keys, "g1")
    assert report.colocated == (
        "CONVERSATION:u1:sg_g1",
        "CONVERSATION_NOT_RECEIVE_MESSAGE_USER_IDS:sg_g1",
        "CONVERSATION:u2:sg_g1",
    )
    assert batching.per_group_tag_keys(keys, "g1")[:2] == [
        "CONVERSATION:u1:sg_{g1}",
        "CONVERSATION_NOT_RECEIVE_MESSAGE_USER_IDS:sg_{g1}",
    ]
    assert len(report.apart) == 4


def test_colocation_report_names_keys_of_other_groups() -> None:
    report = batching.colocation_report(["GROUP_INFO:g2", "GROUP_INFO:g1"], "g1")
    assert report.colocated == ("GROUP_INFO:g1",)
    assert report.apart == (("GROUP_INFO:g2", "not a key of group g1 that slotlab knows"),)
    # a group whose ID starts like another's is not confused with it
    assert batching.per_group_tag_keys(["GROUP_MEMBER_INFO:g10-u1"], "g1") == [
        "GROUP_MEMBER_INFO:g10-u1"
    ]


@pytest.mark.parametrize(
    ("call", "error", "text"),
    [
        (lambda: batching.global_tag_keys(KEYS, tag=""), ValueError, "cannot be a hash tag"),
        (lambda: batching.global_tag_keys(KEYS, tag="a}b"), ValueError, "cannot be a hash tag"),
        (lambda: batching.per_group_tag_keys(KEYS, "g}1"), ValueError, "cannot be a hash tag"),
        (lambda: batching.per_group_tag_keys(KEYS, 1), TypeError, "group_id must be a str"),
        (lambda: batching.colocation_report([], "g1"), ValueError, "keys is empty"),
        (lambda: batching.global_tag_keys([b"x"]), TypeError, "text keys"),
    ],
)
def test_layouts_validate_their_input(
    call: Callable[[], object], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        call()


def test_strategy_results_explain_themselves(clients: Clients) -> None:
    result = batching.by_client_slot(clients.cluster, KEYS)
    assert str(result).startswith(
        "by_client_slot: tagged 14 keys with 14 EVAL(s), 14 command(s), 1 round trip(s)"
    )
    assert result.keys_per_second > 0
    assert math.isfinite(result.seconds)


@pytest.mark.parametrize("backend", ["real", "emulated"])
def test_a_stale_slot_map_is_followed_and_no_key_is_missed(backend: str) -> None:
    """Move one key's (empty) slot to another master behind the cluster clients' backs: its
    chunk goes to the old owner, is answered MOVED, and is sent again; every key is tagged.
    A lab of its own: slots moved back and forth on a shared lab can race the gossip."""
    if backend == "real":
        real_server_or_skip()
    with start_lab(masters=3, backend=backend) as lab:
        names = ("by_client_slot", "proxy_safe", "pipelined_per_key")
        stale = {name: lab.cluster_client() for name in names}
        for client in stale.values():
            client.get(KEYS[0])  # each client has loaded the slot map, which now goes stale
        slot = key_slot(KEYS[0])
        topology = lab.topology()
        old = topology.node_for_slot(slot)
        new = next(n for n in topology.masters if n.node_id != old.node_id)
        move_empty_slot(lab, slot, new.node_id)
        for name, client in stale.items():
            lab.reset()
            result = batching.STRATEGIES[name](client, KEYS)
            assert result.round_trips == 2, name  # the pipeline, then the redirected chunk
            assert_all_tagged(client, KEYS)
            assert lab.node_client(new.index).exists(KEYS[0]) == 1


# --------------------------------------------------------------------------------------------
# Reads
# --------------------------------------------------------------------------------------------

GROUPS_INFO = openim.get_groups_info_keys([f"g{i}" for i in range(60)])


@pytest.mark.parametrize("setting", ["cluster", "alibaba", "plain_server"])
@pytest.mark.parametrize("name", ["read_per_key", "read_pipelined_per_key"])
def test_read_strategies_read_load_and_write_back_everywhere(
    clients: Clients, setting: str, name: str
) -> None:
    read = batching.READ_STRATEGIES[name]
    through, reader = clients.setting(setting, GROUPS_INFO)
    cold = read(through, GROUPS_INFO + GROUPS_INFO[:3])  # repeats are read once
    assert (cold.keys, cold.loaded) == (60, 60)
    assert cold.values == {k: f"row of {k}" for k in GROUPS_INFO}
    warm = read(through, GROUPS_INFO)
    assert (warm.loaded, warm.values) == (0, cold.values)
    if name == "read_pipelined_per_key":
        assert (cold.round_trips, warm.round_trips) == (2, 1)  # read, then write back the misses
    else:
        assert (cold.round_trips, warm.round_trips) == (120, 60)
    assert warm.evals == warm.commands == 60
    assert reader.hget(GROUPS_INFO[0], "value") == f"row of {GROUPS_INFO[0]}"
    assert int(reader.ttl(GROUPS_INFO[0])) > openim.DEFAULT_EXPIRE - 60


def test_a_read_after_a_delete_loads_again_and_a_missing_row_is_cached_empty(
    clients: Clients,
) -> None:
    through = clients.proxy()
    batching.read_pipelined_per_key(through, GROUPS_INFO)
    batching.pipelined_per_key(through, GROUPS_INFO[:10])  # tag 10 as deleted
    rows = {k: "new" for k in GROUPS_INFO[:9]}  # the database lost the 10th row
    again = batching.read_pipelined_per_key(through, GROUPS_INFO, lambda keys: rows)
    assert again.loaded == 10
    assert [again.values[k] for k in GROUPS_INFO[:10]] == ["new"] * 9 + [None]
    assert again.values[GROUPS_INFO[10]] == f"row of {GROUPS_INFO[10]}"
    assert 0 < int(clients.cluster.ttl(GROUPS_INFO[9])) <= openim.EMPTY_EXPIRE


def test_3_8s_batch_read_fails_behind_the_proxy_and_the_pipelined_read_does_not(
    clients: Clients,
) -> None:
    with pytest.raises(ResponseError, match="'EVAL' command keys must in same slot"):
        openim.v3_8_read(clients.proxy(), GROUPS_INFO)
    assert batching.read_pipelined_per_key(clients.proxy(), GROUPS_INFO).loaded == 60


def test_a_key_another_reader_holds_is_asked_again(clients: Clients) -> None:
    """rockscache's reader waits while another reader's lock lasts, then takes the key over."""
    key = GROUPS_INFO[0]
    until = int(time.time()) + 1
    clients.cluster.hset(key, mapping={"lockUntil": until, "lockOwner": "someone"})
    result = batching.read_pipelined_per_key(clients.cluster, [key], expire=100)
    assert time.time() >= until
    assert result.values == {key: f"row of {key}"}
    assert result.loaded == 1 and result.round_trips > 2  # asked again at least once


@pytest.mark.parametrize("name", ["read_per_key", "read_pipelined_per_key"])
@pytest.mark.parametrize(
    ("keys", "kwargs", "error", "text"),
    [
        ([], {}, ValueError, "keys is empty"),
        ("GROUP_INFO:g1", {}, TypeError, "wrap it in a list"),
        (["a"], {"load": 3}, TypeError, "load must be a function"),
        (["a"], {"expire": 10}, ValueError, "above the 10 s delay"),
        (["a"], {"expire": "60"}, ValueError, "whole number of seconds"),
    ],
)
def test_read_strategies_validate_their_input(
    name: str, keys: Any, kwargs: dict[str, Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        batching.READ_STRATEGIES[name](None, keys, **kwargs)
