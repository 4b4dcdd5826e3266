"""slotlab.openim: OpenIM's cache keys, the key sets its flows delete, and its three delete paths.

The key sets are checked exactly (FACTS.md section 4: CreateGroup of g1, owner u1, member u2 in
3.8 tags 14 keys). The delete paths run on a real cluster and on the emulated one, through every
kind of client, and each must either tag EVERY key or fail with the error FACTS.md section 2
(and section 3 for the proxy) gives.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.exceptions import (
    ClusterCrossSlotError,
    MovedError,
    RedisClusterException,
    ResponseError,
)

from slotlab import openim
from slotlab.slots import key_slot, key_slots
from tests.conftest import Clients, assert_all_tagged

G, OWNER, MEMBER = "g1", "u1", "u2"

CREATE_GROUP_38 = [
    "GROUP_INFO:g1",
    "GROUP_MEMBERS_HASH2:g1",
    "GROUP_MEMBER_NUM_CACHE:g1",
    "GROUP_MEMBER_IDS:g1",
    "GROUP_ROLE_LEVEL_MEMBER_IDS:g1-100",
    "GROUP_ROLE_LEVEL_MEMBER_IDS:g1-60",
    "GROUP_ROLE_LEVEL_MEMBER_IDS:g1-20",
    "GROUP_MEMBER_MAX_VERSION:g1",
    "JOIN_GROUPS_KEY:u1",
    "GROUP_MEMBER_INFO:g1-u1",
    "GROUP_JOIN_MAX_VERSION:u1",
    "JOIN_GROUPS_KEY:u2",
    "GROUP_MEMBER_INFO:g1-u2",
    "GROUP_JOIN_MAX_VERSION:u2",
]

CROSSSLOT_TEXT = "Keys in request don't hash to the same slot"
CLIENT_REFUSAL_TEXT = "EVAL - all keys must map to the same key slot"
ALIBABA_SLOT_TEXT = "'EVAL' command keys must in same slot"  # redis-py drops the "ERR "


# --------------------------------------------------------------------------------------------
# Labs: the same tests on the real and the emulated backend
# --------------------------------------------------------------------------------------------


def assert_none_exist(client: Any, keys: list[str]) -> None:
    assert sum(int(client.exists(k)) for k in keys) == 0


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


def test_key_builders_give_openims_strings() -> None:
    assert openim.group_info("g1") == "GROUP_INFO:g1"
    assert openim.group_member_ids("g1") == "GROUP_MEMBER_IDS:g1"
    assert openim.group_members_hash("g1") == "GROUP_MEMBERS_HASH2:g1"
    assert openim.group_member_info("g1", "u2") == "GROUP_MEMBER_INFO:g1-u2"
    assert openim.join_groups("u2") == "JOIN_GROUPS_KEY:u2"
    assert openim.group_member_num("g1") == "GROUP_MEMBER_NUM_CACHE:g1"
    assert openim.group_role_level_member_ids("g1", 60) == "GROUP_ROLE_LEVEL_MEMBER_IDS:g1-60"
    assert openim.conversation("u1", "sg_g1") == "CONVERSATION:u1:sg_g1"
    assert openim.conversation_ids("u1") == "CONVERSATION_IDS:u1"
    assert openim.conversation_ids_hash("u1") == "CONVERSATION_IDS_HASH:u1"
    assert (
        openim.conversation_not_receive_message_user_ids("sg_g1")
        == "CONVERSATION_NOT_RECEIVE_MESSAGE_USER_IDS:sg_g1"
    )
    assert openim.group_member_max_version("g1") == "GROUP_MEMBER_MAX_VERSION:g1"
    assert openim.group_join_max_version("u1") == "GROUP_JOIN_MAX_VERSION:u1"
    assert openim.conversation_user_max("u1") == "CONVERSATION_USER_MAX:u1"
    assert openim.group_chat_conversation_id("g1") == "sg_g1"


def test_role_levels_are_openims_constants() -> None:
    assert (openim.ROLE_OWNER, openim.ROLE_ADMIN, openim.ROLE_MEMBER) == (100, 60, 20)
    assert openim.ROLE_LEVELS == (100, 60, 20)


def test_no_openim_key_has_a_hash_tag() -> None:
    keys = openim.create_group_keys(G, OWNER, [MEMBER])
    keys += openim.group_chat_conversation_keys(G, [OWNER, MEMBER])
    assert not any("{" in k or "}" in k for k in keys)


@pytest.mark.parametrize(
    ("call", "error", "text"),
    [
        (lambda: openim.group_info(1), TypeError, "group_id must be a str"),
        (lambda: openim.group_info(""), ValueError, "group_id is empty"),
        (lambda: openim.group_member_info("g1", None), TypeError, "user_id must be a str"),
        (lambda: openim.group_role_level_member_ids("g1", "20"), TypeError, "role_level"),
        (lambda: openim.create_group_keys("g1", "u1", "u2"), TypeError, "list of user IDs"),
        (lambda: openim.create_group_keys("g1", "u1", ["u2"], "3.9"), ValueError, "3.3, 3.7"),
        (lambda: openim.join_group_keys("g1", []), ValueError, "at least one user"),
    ],
)
def test_key_builders_reject_bad_input(call: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        call()


def test_create_group_38_is_the_14_keys_of_facts() -> None:
    keys = openim.create_group_keys(G, OWNER, [MEMBER], "3.8")
    assert keys == CREATE_GROUP_38
    assert len(set(key_slots(keys).tolist())) == 14  # "about 14 slots": exactly 14 here


def test_create_group_37_has_no_version_keys() -> None:
    assert openim.create_group_keys(G, OWNER, [MEMBER], "3.7") == [
        k for k in CREATE_GROUP_38 if "MAX_VERSION" not in k
    ]


def test_create_group_33_is_v332s_shorter_set() -> None:
    assert openim.create_group_keys(G, OWNER, [MEMBER], "3.3") == [
        "GROUP_MEMBER_IDS:g1",
        "GROUP_MEMBERS_HASH2:g1",
        "GROUP_MEMBER_NUM_CACHE:g1",
        "JOIN_GROUPS_KEY:u1",
        "GROUP_MEMBER_INFO:g1-u1",
        "JOIN_GROUPS_KEY:u2",
        "GROUP_MEMBER_INFO:g1-u2",
        "GROUP_INFO:g1",
    ]


def test_create_group_drops_repeats_like_datautil_distinct() -> None:
    # The controller chains the members hash twice for the group and again for every member;
    # Distinct keeps the first of each, so order follows first appearance.
    for version in ("3.7", "3.8"):
        keys = openim.create_group_keys(G, OWNER, ["u2", "u3"], version)
        assert len(keys) == len(set(keys))
        assert keys.count("GROUP_MEMBERS_HASH2:g1") == 1
        assert keys[1] == "GROUP_MEMBERS_HASH2:g1"


def test_create_group_orders_owner_then_admins_then_members() -> None:
    keys = openim.create_group_keys(G, "u1", ["u3"], admin_user_ids=["u2"])
    joins = [k for k in keys if k.startswith("JOIN_GROUPS_KEY:")]
    assert joins == ["JOIN_GROUPS_KEY:u1", "JOIN_GROUPS_KEY:u2", "JOIN_GROUPS_KEY:u3"]


def test_create_group_refuses_a_repeated_member_as_openim_does() -> None:
    with pytest.raises(ValueError, match="group member repeated: u1"):
        openim.create_group_keys(G, "u1", ["u2", "u1"])


@pytest.mark.parametrize(
    ("version", "fixed", "per_member"), [("3.3", 4, 2), ("3.7", 7, 2), ("3.8", 8, 3)]
)
def test_create_group_key_count_grows_with_members(
    version: str, fixed: int, per_member: int
) -> None:
    members = [f"u{i}" for i in range(1, 500)]
    keys = openim.create_group_keys(G, "u0", members, version)
    assert len(keys) == fixed + per_member * 500


def test_join_group_keys() -> None:
    assert openim.join_group_keys(G, ["u3"]) == [
        "GROUP_MEMBERS_HASH2:g1",
        "GROUP_MEMBER_NUM_CACHE:g1",
        "GROUP_MEMBER_IDS:g1",
        "JOIN_GROUPS_KEY:u3",
        "GROUP_MEMBER_INFO:g1-u3",
        "GROUP_ROLE_LEVEL_MEMBER_IDS:g1-100",
        "GROUP_ROLE_LEVEL_MEMBER_IDS:g1-60",
        "GROUP_ROLE_LEVEL_MEMBER_IDS:g1-20",
        "GROUP_JOIN_MAX_VERSION:u3",
        "GROUP_MEMBER_MAX_VERSION:g1",
    ]
    two = openim.join_group_keys(G, ["u3", "u4"], "3.7")
    assert len(two) == 10  # the first user's 8 keys, then only the second user's own 2
    assert two[-2:] == ["JOIN_GROUPS_KEY:u4", "GROUP_MEMBER_INFO:g1-u4"]


def test_handle_group_request_keys() -> None:
    assert openim.handle_group_request_keys(G, "u3") == [
        "GROUP_MEMBERS_HASH2:g1",
        "GROUP_MEMBER_INFO:g1-u3",
        "GROUP_MEMBER_IDS:g1",
        "GROUP_MEMBER_NUM_CACHE:g1",
        "JOIN_GROUPS_KEY:u3",
        "GROUP_ROLE_LEVEL_MEMBER_IDS:g1-20",
        "GROUP_JOIN_MAX_VERSION:u3",
        "GROUP_MEMBER_MAX_VERSION:g1",
    ]
    assert (
        openim.handle_group_request_keys(G, "u3", "3.7")
        == openim.handle_group_request_keys(G, "u3")[:6]
    )
    assert openim.handle_group_request_keys(G, "u3", role_level=60)[5].endswith("g1-60")
    with pytest.raises(ValueError, match="3.7 and 3.8"):
        openim.handle_group_request_keys(G, "u3", "3.3")


def test_group_chat_conversation_keys() -> None:
    assert openim.group_chat_conversation_keys(G, ["u1", "u2"]) == [
        "CONVERSATION:u1:sg_g1",
        "CONVERSATION_NOT_RECEIVE_MESSAGE_USER_IDS:sg_g1",
        "CONVERSATION:u2:sg_g1",
        "CONVERSATION_IDS:u1",
        "CONVERSATION_IDS:u2",
        "CONVERSATION_IDS_HASH:u1",
        "CONVERSATION_IDS_HASH:u2",
    ]


# --------------------------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------------------------


def test_scripts_make_rockscaches_three_calls() -> None:
    single = openim.TAG_AS_DELETED_SCRIPT
    assert "redis.call('HSET', KEYS[1], 'lockUntil', 0)" in single
    assert "redis.call('HDEL', KEYS[1], 'lockOwner')" in single
    assert "redis.call('EXPIRE', KEYS[1], ARGV[1])" in single
    batch = openim.TAG_AS_DELETED_BATCH_SCRIPT
    assert "ipairs(KEYS)" in batch
    for call in ("'HSET', key, 'lockUntil', 0", "'HDEL', key, 'lockOwner'", "'EXPIRE', key"):
        assert call in batch
    assert openim.DEFAULT_DELAY == 10 and openim.OPENIM_BATCH_SIZE == 50


def test_tagged_as_deleted_reads_the_state(clients: Clients) -> None:
    rc = clients.cluster
    assert openim.tagged_as_deleted(rc, "missing") is False
    rc.hset("owned", mapping={"value": "v", "lockUntil": "0", "lockOwner": "me"})
    rc.expire("owned", 10)
    assert openim.tagged_as_deleted(rc, "owned") is False  # someone holds the lock
    rc.hset("forever", mapping={"value": "v", "lockUntil": "0"})
    assert openim.tagged_as_deleted(rc, "forever") is False  # no TTL: it would never expire
    rc.hset("cached", mapping={"value": "v", "lockOwner": "me", "lockUntil": "99"})
    openim.v3_7_per_key(rc, ["cached"])
    assert openim.tagged_as_deleted(rc, "cached") is True
    assert rc.hget("cached", "value") == "v"  # the value stays readable until it expires
    assert 0 < int(rc.ttl("cached")) <= 10
    raw = clients.lab.cluster_client(decode_responses=False)
    assert openim.tagged_as_deleted(raw, b"cached") is True


# --------------------------------------------------------------------------------------------
# v3.3: one batch EVAL
# --------------------------------------------------------------------------------------------


def test_v3_3_crossslot_from_the_node_go_redis_picks(clients: Clients) -> None:
    keys = list(CREATE_GROUP_38)
    node = clients.node_for(keys[0])
    with pytest.raises(ClusterCrossSlotError) as err:
        openim.v3_3_batch(node, keys)
    assert str(err.value) == CROSSSLOT_TEXT
    assert isinstance(err.value, ResponseError)
    assert_none_exist(clients.cluster, keys)  # refused before the script ran


def test_v3_3_refused_by_redis_py_cluster_client_before_sending(clients: Clients) -> None:
    with pytest.raises(RedisClusterException) as err:
        openim.v3_3_batch(clients.cluster, CREATE_GROUP_38)
    assert str(err.value) == CLIENT_REFUSAL_TEXT
    assert not isinstance(err.value, redis.RedisError)


def test_v3_3_behind_the_alibaba_proxy_gives_the_articles_error(clients: Clients) -> None:
    with pytest.raises(ResponseError) as err:
        openim.v3_3_batch(clients.proxy("alibaba"), CREATE_GROUP_38)
    assert str(err.value) == ALIBABA_SLOT_TEXT
    assert_none_exist(clients.cluster, CREATE_GROUP_38)


def test_v3_3_behind_a_passthrough_proxy_is_the_servers_crossslot(clients: Clients) -> None:
    with pytest.raises(ClusterCrossSlotError, match=CROSSSLOT_TEXT):
        openim.v3_3_batch(clients.proxy("passthrough"), CREATE_GROUP_38)


def test_v3_3_works_on_one_plain_server(clients: Clients) -> None:
    result = openim.v3_3_batch(clients.plain, CREATE_GROUP_38)
    assert (result.tagged, result.evals, result.round_trips) == (14, 1, 1)
    assert_all_tagged(clients.plain, CREATE_GROUP_38)


def test_v3_3_works_when_every_key_shares_a_slot(clients: Clients) -> None:
    keys = [f"{{g1}}{k}" for k in CREATE_GROUP_38]
    assert len({key_slot(k) for k in keys}) == 1
    openim.v3_3_batch(clients.cluster, keys)
    assert_all_tagged(clients.cluster, keys)
    clients.reset()
    openim.v3_3_batch(clients.proxy("alibaba", script_check=False), keys)
    assert_all_tagged(clients.cluster, keys)


# --------------------------------------------------------------------------------------------
# v3.7: one single-key EVAL per key
# --------------------------------------------------------------------------------------------


def test_v3_7_tags_every_key_through_the_cluster_client(clients: Clients) -> None:
    result = openim.v3_7_per_key(clients.cluster, CREATE_GROUP_38)
    assert (result.tagged, result.evals, result.round_trips, result.commands) == (14, 14, 14, 14)
    assert_all_tagged(clients.cluster, CREATE_GROUP_38)


def test_v3_7_tags_every_key_behind_the_alibaba_proxy(clients: Clients) -> None:
    # The single-key script names its key KEYS[1]: the proxy's script check accepts it.
    openim.v3_7_per_key(clients.proxy("alibaba"), CREATE_GROUP_38)
    assert_all_tagged(clients.cluster, CREATE_GROUP_38)


def test_v3_7_through_one_node_meets_moved(clients: Clients) -> None:
    keys = list(CREATE_GROUP_38)
    with pytest.raises(MovedError):
        openim.v3_7_per_key(clients.node_for(keys[0]), keys, attempts=1)
    assert openim.tagged_as_deleted(clients.cluster, keys[0])  # the node's own key went through


class FlakyClient:
    """A stand-in client whose EVAL fails ``failures`` times, then works."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def eval(self, script: str, numkeys: int, *args: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise redis.ConnectionError("connection reset")


def test_v3_7_tries_each_key_again_as_openim_does() -> None:
    flaky = FlakyClient(failures=2)
    result = openim.v3_7_per_key(flaky, ["k"], retry_interval=0)
    assert (result.tagged, result.round_trips, flaky.calls) == (1, 3, 3)
    broken = FlakyClient(failures=99)
    with pytest.raises(redis.ConnectionError):
        openim.v3_7_per_key(broken, ["k"], retry_interval=0)
    assert broken.calls == openim.V37_ATTEMPTS == 5


# --------------------------------------------------------------------------------------------
# v3.8: batches of 50, grouped by CLUSTER KEYSLOT only for a cluster client
# --------------------------------------------------------------------------------------------


def test_v3_8_groups_by_the_servers_slots_through_the_cluster_client(clients: Clients) -> None:
    rc = clients.cluster
    result = openim.v3_8_by_slot(rc, CREATE_GROUP_38)
    server_slots = {int(rc.cluster_keyslot(k)) for k in CREATE_GROUP_38}
    assert result.evals == len(server_slots) == 14
    assert result.commands == 14 + result.evals  # 14 CLUSTER KEYSLOT, then the EVALs
    assert result.round_trips == 1 + result.evals  # one pipeline of KEYSLOT, one trip per EVAL
    assert_all_tagged(rc, CREATE_GROUP_38)


def test_v3_8_behind_the_alibaba_proxy_brings_the_bug_back(clients: Clients) -> None:
    # A proxy client is not a cluster client: every key in "slot 0", one 14-key EVAL.
    with pytest.raises(ResponseError) as err:
        openim.v3_8_by_slot(clients.proxy("alibaba"), CREATE_GROUP_38)
    assert str(err.value) == ALIBABA_SLOT_TEXT


def test_v3_8_through_a_node_client_is_crossslot(clients: Clients) -> None:
    with pytest.raises(ClusterCrossSlotError, match=CROSSSLOT_TEXT):
        openim.v3_8_by_slot(clients.node_for(CREATE_GROUP_38[0]), CREATE_GROUP_38)


def test_v3_8_batches_of_50(clients: Clients) -> None:
    same_slot = [f"{{g1}}k{i}" for i in range(120)]
    result = openim.v3_8_by_slot(clients.cluster, same_slot)
    assert result.evals == 3  # 50 + 50 + 20, all in one slot
    assert_all_tagged(clients.cluster, same_slot)
    spread = [f"k{i}" for i in range(120)]
    result = openim.v3_8_by_slot(clients.plain, spread)
    assert (result.evals, result.commands, result.round_trips) == (3, 3, 3)  # no KEYSLOT asked
    assert_all_tagged(clients.plain, spread)


def test_v3_8_one_key_asks_no_slot(clients: Clients) -> None:
    result = openim.v3_8_by_slot(clients.cluster, ["GROUP_INFO:g1"])
    assert (result.evals, result.commands) == (1, 1)
    assert_all_tagged(clients.cluster, ["GROUP_INFO:g1"])


def test_delete_paths_take_bytes_keys(clients: Clients) -> None:
    keys = [k.encode() for k in CREATE_GROUP_38]
    openim.v3_8_by_slot(clients.cluster, keys)
    assert_all_tagged(clients.cluster, list(CREATE_GROUP_38))


def test_only_redis_cluster_counts_as_a_cluster_client(clients: Clients) -> None:
    assert isinstance(clients.cluster, RedisCluster)
    assert openim.is_cluster_client(clients.cluster)
    assert not openim.is_cluster_client(clients.plain)
    assert not openim.is_cluster_client(clients.node_for("a"))
    assert not openim.is_cluster_client(clients.proxy("alibaba"))  # what OpenIM 3.8 misses


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

PATHS = [openim.v3_3_batch, openim.v3_7_per_key, openim.v3_8_by_slot]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.__name__)
@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"keys": []}, ValueError, "keys is empty"),
        ({"keys": "GROUP_INFO:g1"}, TypeError, r"not a single str: wrap it in a list"),
        ({"keys": None}, TypeError, "list of str or bytes keys"),
        ({"keys": ["a", 2]}, TypeError, r"keys\[1\] is a int"),
        ({"keys": ["a"], "delay": 0}, ValueError, "delay must be at least 1 second"),
        ({"keys": ["a"], "delay": 1.5}, TypeError, "whole number of seconds"),
        ({"keys": ["a"], "delay": True}, TypeError, "whole number of seconds"),
    ],
)
def test_delete_paths_validate_their_input(
    path: Any, kwargs: dict[str, Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        path(None, **kwargs)


@pytest.mark.parametrize("size", [0, 8000, -1])
def test_v3_8_batch_size_range(size: int) -> None:
    with pytest.raises(ValueError, match="from 1 to 7999"):
        openim.v3_8_by_slot(None, ["a"], batch_size=size)


def test_v3_7_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempts"):
        openim.v3_7_per_key(None, ["a"], attempts=0)


# --------------------------------------------------------------------------------------------
# Reads: 3.7's one read EVAL per key, 3.8's one read EVAL per slot group
# --------------------------------------------------------------------------------------------

SCRIPT_CHECK_TEXT = (
    "bad lua script for redis cluster, all the keys that the script uses should be passed "
    "using the KEYS array, and KEYS should not be in expression"
)
GROUPS = ["g1", "g2", "g3", "g4"]
INFO_KEYS = ["GROUP_INFO:g1", "GROUP_INFO:g2", "GROUP_INFO:g3", "GROUP_INFO:g4"]
READS = [openim.v3_7_read, openim.v3_8_read]


def test_read_keys_are_openims() -> None:
    assert openim.get_groups_info_keys(["g1", "g2", "g1"]) == ["GROUP_INFO:g1", "GROUP_INFO:g2"]
    assert len({key_slot(k) for k in INFO_KEYS}) == 4  # the batch read spans slots
    reads = openim.joined_group_list_reads("u1", ["g1", "g2"])
    assert [(r.call, r.batch, r.keys) for r in reads] == [
        ("GetJoinedGroupIDs", False, ["JOIN_GROUPS_KEY:u1"]),
        ("GetGroupMembersInfo", True, ["GROUP_MEMBER_INFO:g1-u1"]),
        ("GetGroupMembersInfo", True, ["GROUP_MEMBER_INFO:g2-u1"]),
        ("GetGroupsInfo", True, ["GROUP_INFO:g1", "GROUP_INFO:g2"]),
        ("GetGroupMemberNum", False, ["GROUP_MEMBER_NUM_CACHE:g1"]),
        ("GetGroupMemberNum", False, ["GROUP_MEMBER_NUM_CACHE:g2"]),
        ("GetGroupRoleLevelMemberIDs", False, ["GROUP_ROLE_LEVEL_MEMBER_IDS:g1-100"]),
        ("GetGroupRoleLevelMemberIDs", False, ["GROUP_ROLE_LEVEL_MEMBER_IDS:g2-100"]),
    ]


def test_read_scripts_mirror_rockscaches() -> None:
    batch = openim.READ_BATCH_SCRIPT
    assert "for i, key in ipairs(KEYS) do" in batch
    assert "redis.call('HGET', key, 'value')" in batch
    assert "redis.call('HSET', key, 'lockUntil', ARGV[2], 'lockOwner', ARGV[3])" in batch
    assert "KEYS[" not in batch  # every key is the loop variable: what #2894's check rejects
    one = openim.READ_SCRIPT
    assert "redis.call('HGET', KEYS[1], 'value')" in one and "ipairs" not in one
    assert "for i, key in ipairs(KEYS) do" in openim.SET_BATCH_SCRIPT
    assert "KEYS[" not in openim.SET_BATCH_SCRIPT
    assert (openim.LOCK_EXPIRE, openim.LOCK_SLEEP, openim.EMPTY_EXPIRE) == (3, 0.1, 60)


@pytest.mark.parametrize("read", READS, ids=lambda r: r.__name__)
def test_a_read_loads_misses_once_then_hits(clients: Clients, read: Any) -> None:
    rc = clients.cluster
    loads: list[list[str]] = []

    def db(keys: list[str]) -> dict[str, str]:
        loads.append(keys)
        return {k: f"v:{k}" for k in keys if k != "GROUP_INFO:g4"}  # g4 has no row

    first = read(rc, INFO_KEYS, db)
    assert first.values == {
        "GROUP_INFO:g1": "v:GROUP_INFO:g1",
        "GROUP_INFO:g2": "v:GROUP_INFO:g2",
        "GROUP_INFO:g3": "v:GROUP_INFO:g3",
        "GROUP_INFO:g4": None,
    }
    assert first.loaded == 4 and sorted(k for ks in loads for k in ks) == INFO_KEYS
    assert rc.hget("GROUP_INFO:g1", "value") == "v:GROUP_INFO:g1"
    assert rc.hget("GROUP_INFO:g1", "lockOwner") is None  # the write-back released the lock
    assert 0 < int(rc.ttl("GROUP_INFO:g1")) <= openim.DEFAULT_EXPIRE - openim.DEFAULT_DELAY
    assert 0 < int(rc.ttl("GROUP_INFO:g4")) <= openim.EMPTY_EXPIRE  # an empty answer, cached
    loads.clear()
    second = read(rc, INFO_KEYS, db)
    assert (second.values, second.loaded, loads) == (first.values, 0, [])


@pytest.mark.parametrize("read", READS, ids=lambda r: r.__name__)
def test_a_read_after_a_delete_goes_to_the_database(clients: Clients, read: Any) -> None:
    rc = clients.cluster
    read(rc, INFO_KEYS, lambda keys: {k: "old" for k in keys})
    openim.v3_7_per_key(rc, INFO_KEYS[:2])  # tag two as deleted: lockUntil 0, value kept
    again = read(rc, INFO_KEYS, lambda keys: {k: "new" for k in keys})
    assert again.loaded == 2
    assert list(again.values.values()) == ["new", "new", "old", "old"]


def test_v3_7_read_is_one_eval_per_key_and_works_behind_the_proxy(clients: Clients) -> None:
    first = openim.v3_7_read(clients.proxy("alibaba"), INFO_KEYS)
    assert (first.evals, first.round_trips, first.loaded) == (8, 8, 4)  # read + write-back
    hit = openim.v3_7_read(clients.proxy("alibaba"), INFO_KEYS)
    assert (hit.evals, hit.round_trips, hit.loaded) == (4, 4, 0)
    assert hit.values["GROUP_INFO:g1"] == "row of GROUP_INFO:g1"


def test_v3_8_read_groups_by_slot_through_the_cluster_client(clients: Clients) -> None:
    rc = clients.cluster
    miss = openim.v3_8_read(rc, INFO_KEYS)
    # 4 CLUSTER KEYSLOT in one pipeline, then per slot one read EVAL and one write-back EVAL
    assert (miss.commands, miss.round_trips, miss.evals) == (4 + 8, 1 + 8, 8)
    hit = openim.v3_8_read(rc, INFO_KEYS)
    assert (hit.commands, hit.round_trips, hit.evals, hit.loaded) == (8, 5, 4, 0)


def test_v3_8_read_is_one_eval_for_one_slot_with_no_cut_at_50(clients: Clients) -> None:
    keys = [f"{{g}}GROUP_INFO:{i}" for i in range(120)]
    miss = openim.v3_8_read(clients.cluster, keys)
    assert (miss.evals, miss.loaded) == (2, 120)  # batchGetCache2 hands the group whole
    spread = [f"GROUP_INFO:{i}" for i in range(120)]
    hit = openim.v3_8_read(clients.plain, spread)
    assert (hit.evals, hit.commands, hit.round_trips) == (2, 2, 2)  # one server: no slots


def test_v3_8_read_behind_the_alibaba_proxy_is_2505(clients: Clients) -> None:
    # GetGroupsInfo of a user's groups: one read EVAL over keys in four slots.
    with pytest.raises(ResponseError) as err:
        openim.v3_8_read(clients.proxy("alibaba"), INFO_KEYS)
    assert str(err.value) == ALIBABA_SLOT_TEXT
    assert_none_exist(clients.cluster, INFO_KEYS)  # refused before the script ran


def test_v3_8_read_of_one_key_behind_the_script_check_is_2894(clients: Clients) -> None:
    # One key: the slot rule has nothing to object to; the script check still refuses.
    with pytest.raises(ResponseError) as err:
        openim.v3_8_read(clients.proxy("alibaba"), ["GROUP_MEMBER_INFO:g1-u1"])
    assert str(err.value) == SCRIPT_CHECK_TEXT
    same_slot = [f"{{g1}}{k}" for k in INFO_KEYS]
    with pytest.raises(ResponseError, match="KEYS should not be in expression"):
        openim.v3_8_read(clients.proxy("alibaba"), same_slot)
    ok = openim.v3_8_read(clients.proxy("alibaba", script_check=False), same_slot)
    assert ok.loaded == 4  # with script_check_enable=0 a one-slot batch read goes through


def test_v3_8_read_through_a_node_client_is_crossslot(clients: Clients) -> None:
    with pytest.raises(ClusterCrossSlotError, match=CROSSSLOT_TEXT):
        openim.v3_8_read(clients.node_for(INFO_KEYS[0]), INFO_KEYS)


def test_joined_group_list_per_version_and_setting(clients: Clients) -> None:
    reads = openim.joined_group_list_reads("u1", GROUPS)
    n_keys = sum(len(r.keys) for r in reads)
    miss = openim.read_flow(clients.proxy("alibaba"), reads, "3.7")  # 3.7 works behind it
    assert (miss.keys, miss.loaded, miss.evals) == (n_keys, n_keys, 2 * n_keys)
    hit = openim.read_flow(clients.cluster, reads, "3.7")
    assert (hit.keys, hit.loaded, hit.evals) == (n_keys, 0, n_keys)
    assert openim.read_flow(clients.cluster, reads, "3.8").loaded == 0
    # 3.8 behind the checking proxy: the first batch read (one member record) hits #2894 ...
    with pytest.raises(ResponseError, match="KEYS should not be in expression"):
        openim.read_flow(clients.proxy("alibaba"), reads, "3.8")
    # ... and with the check off, GetGroupsInfo's keys in four slots hit #2505.
    with pytest.raises(ResponseError) as err:
        openim.read_flow(clients.proxy("alibaba", script_check=False), reads, "3.8")
    assert str(err.value) == ALIBABA_SLOT_TEXT


def test_read_paths_take_bytes_and_drop_repeats(clients: Clients) -> None:
    keys: list[Any] = [b"GROUP_INFO:g1", "GROUP_INFO:g1", "GROUP_INFO:g2"]
    for read in READS:
        result = read(clients.cluster, keys)
        assert list(result.values) == ["GROUP_INFO:g1", "GROUP_INFO:g2"]


@pytest.mark.parametrize("read", READS, ids=lambda r: r.__name__)
@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"keys": []}, ValueError, "keys is empty"),
        ({"keys": "GROUP_INFO:g1"}, TypeError, r"not a single str: wrap it in a list"),
        ({"keys": ["a", 2]}, TypeError, r"keys\[1\] is a int"),
        ({"keys": ["a"], "load": "db"}, TypeError, "load must be a function"),
        ({"keys": ["a"], "expire": 5}, ValueError, "more than the 10 s delay"),
        ({"keys": ["a"], "expire": 60.0}, TypeError, "whole number of seconds"),
    ],
)
def test_read_paths_validate_their_input(
    read: Any, kwargs: dict[str, Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        read(None, **kwargs)


@pytest.mark.parametrize(
    ("call", "error", "text"),
    [
        (lambda: openim.get_groups_info_keys([]), ValueError, "group_ids is empty"),
        (lambda: openim.get_groups_info_keys("g1"), TypeError, "list of group IDs"),
        (lambda: openim.joined_group_list_reads("", ["g1"]), ValueError, "user_id is empty"),
        (lambda: openim.read_flow(None, []), ValueError, "reads is empty"),
        (lambda: openim.read_flow(None, [("x", True, ["k"])]), TypeError, "not a CacheRead"),
        (
            lambda: openim.read_flow(None, [openim.CacheRead("x", True, [])]),
            ValueError,
            r"reads\[0\].keys is empty",
        ),
        (
            lambda: openim.read_flow(None, openim.joined_group_list_reads("u", ["g"]), "3.3"),
            ValueError,
            "3.7 and 3.8 only",
        ),
    ],
)
def test_read_helpers_reject_bad_input(call: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        call()
