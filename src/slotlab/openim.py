"""OpenIM Server's group cache: its keys, the keys each flow deletes, how each version deletes them.

OpenIM Server (openimsdk/open-im-server, Go) caches groups in Redis through rockscache
(dtm-labs/rockscache v0.1.1). A cache entry is a hash; "deleting" it means *tagging it as
deleted*: set ``lockUntil`` to 0, drop ``lockOwner`` and let the key expire a few seconds later,
so that a reader racing the writer cannot put a stale value back. When a group changes, OpenIM
collects every cache key the change touches and tags them all. How it sends those tags is the
story of its cross-slot bug:

====================  ==========================================================================
version               how the keys are tagged (:func:`v3_3_batch`, :func:`v3_7_per_key`, ...)
====================  ==========================================================================
up to v3.3.2          ONE EVAL whose KEYS are all the keys: ``CROSSSLOT`` on a native cluster
v3.3.3 to v3.7.x      one single-key EVAL per key: correct everywhere, one round trip per key
v3.8.x                one EVAL per 50 keys; keys grouped by slot (``CLUSTER KEYSLOT``) ONLY when
                      the client is a cluster client, so behind a cloud proxy (a plain client)
                      the 50-key EVALs span slots and the proxy rejects them
====================  ==========================================================================

Reads are scripts too (rockscache keeps a lock beside each cached value), and 3.8 batches them
the same way: :func:`v3_7_read` sends one read EVAL per key, :func:`v3_8_read` one read EVAL
over all the keys of a call (grouped by slot only for a cluster client), and
:func:`joined_group_list_reads` lists what ``get_joined_group_list`` reads (issue #2505).

Everything here is written from reading OpenIM's code at the tags named in each docstring; the
key formats and the order in which each flow chains its deletions are the code's. The delete
paths take any redis-py client: ``redis.Redis`` (a node, a proxy, a single server) or
``redis.cluster.RedisCluster``.

How clients route EVAL matters for reproducing the bug. OpenIM uses go-redis, whose
``ClusterClient`` sends an EVAL to the node that owns its FIRST key; that node answers
``CROSSSLOT`` when the other keys live in other slots. redis-py's ``RedisCluster`` refuses a
cross-slot EVAL before sending it (``RedisClusterException``). To see what OpenIM saw on a native
cluster, send the EVAL through a plain client to the first key's node::

    keys = create_group_keys("g1", "u1", ["u2"])
    v3_3_batch(lab.node_client_for(keys[0]), keys)   # ClusterCrossSlotError: CROSSSLOT ...
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, TypeAlias, cast

import redis
from redis.cluster import RedisCluster

__all__ = [
    "DEFAULT_DELAY",
    "MAX_KEYS_PER_EVAL",
    "OPENIM_BATCH_SIZE",
    "ROLE_ADMIN",
    "ROLE_LEVELS",
    "ROLE_MEMBER",
    "ROLE_OWNER",
    "TAG_AS_DELETED_BATCH_SCRIPT",
    "TAG_AS_DELETED_SCRIPT",
    "VERSIONS",
    "DEFAULT_EXPIRE",
    "EMPTY_EXPIRE",
    "LOCK_EXPIRE",
    "LOCKED",
    "LOCK_SLEEP",
    "READ_BATCH_SCRIPT",
    "READ_SCRIPT",
    "SET_BATCH_SCRIPT",
    "SET_SCRIPT",
    "BatchResult",
    "CacheRead",
    "Client",
    "Loader",
    "ReadResult",
    "check_reads",
    "database",
    "get_groups_info_keys",
    "joined_group_list_reads",
    "read_flow",
    "v3_7_read",
    "v3_8_read",
    "check_batch_size",
    "check_delay",
    "check_keys",
    "conversation",
    "conversation_ids",
    "conversation_ids_hash",
    "conversation_not_receive_message_user_ids",
    "conversation_user_max",
    "create_group_keys",
    "group_chat_conversation_id",
    "group_chat_conversation_keys",
    "group_info",
    "group_join_max_version",
    "group_member_ids",
    "group_member_info",
    "group_member_max_version",
    "group_member_num",
    "group_members_hash",
    "group_role_level_member_ids",
    "handle_group_request_keys",
    "is_cluster_client",
    "join_group_keys",
    "join_groups",
    "tagged_as_deleted",
    "v3_3_batch",
    "v3_7_per_key",
    "v3_8_by_slot",
]

Client: TypeAlias = redis.Redis | RedisCluster
"""Any redis-py client the delete paths take: a plain client (node, proxy, server) or a cluster."""

VERSIONS: Final = ("3.3", "3.7", "3.8")
"""OpenIM versions whose key sets slotlab models (v3.3.2, v3.7.1, v3.8.0)."""

# --------------------------------------------------------------------------------------------
# Role levels (openimsdk/protocol, constant/constant.go at v0.0.69, used by v3.8.0)
# --------------------------------------------------------------------------------------------

ROLE_OWNER: Final = 100
"""Role level of a group's owner (``constant.GroupOwner``)."""
ROLE_ADMIN: Final = 60
"""Role level of a group admin (``constant.GroupAdmin``)."""
ROLE_MEMBER: Final = 20
"""Role level of an ordinary member (``constant.GroupOrdinaryUsers``)."""
ROLE_LEVELS: Final = (ROLE_OWNER, ROLE_ADMIN, ROLE_MEMBER)
"""The role levels in the order ``DelGroupAllRoleLevel`` deletes their ID lists."""

# --------------------------------------------------------------------------------------------
# rockscache settings (dtm-labs/rockscache v0.1.1, client.go; OpenIM redis_shard_manager.go)
# --------------------------------------------------------------------------------------------

DEFAULT_DELAY: Final = 10
"""Seconds a tagged key lives on (rockscache ``Options.Delay``, 10 s by default)."""

OPENIM_BATCH_SIZE: Final = 50
"""Keys per EVAL in OpenIM 3.8's ``ProcessKeysBySlot`` (``defaultBatchSize``)."""

OPENIM_CONCURRENCY: Final = 3
"""Batches OpenIM 3.8 sends at once (``defaultConcurrentLimit``); slotlab sends them in turn."""

V37_ATTEMPTS: Final = 5
"""Tries per key in OpenIM 3.7's delete loop (``maxRetryTimes``)."""

V37_RETRY_INTERVAL: Final = 0.1
"""Seconds between those tries (``retryInterval``, 100 ms)."""

MAX_KEYS_PER_EVAL: Final = 7999
"""Most keys slotlab lets one EVAL carry: a cap of slotlab's own, not OpenIM's or rockscache's.
A script that does ``unpack(KEYS)`` fails from 8000 keys on (``too many results to unpack``);
rockscache's scripts loop over KEYS and never unpack, so they have no such limit."""

# --------------------------------------------------------------------------------------------
# The scripts (rockscache v0.1.1: TagAsDeleted2 in client.go, TagAsDeletedBatch2 in batch.go)
# --------------------------------------------------------------------------------------------

TAG_AS_DELETED_SCRIPT: Final = """\
-- slotlab: rockscache's "tag as deleted" for ONE key (KEYS[1]); ARGV[1] is the delay in seconds.
-- The value stays readable, lockUntil 0 marks it stale, and the key expires after the delay.
redis.call('HSET', KEYS[1], 'lockUntil', 0)
redis.call('HDEL', KEYS[1], 'lockOwner')
redis.call('EXPIRE', KEYS[1], ARGV[1])
"""
"""One key tagged as deleted: HSET key lockUntil 0; HDEL key lockOwner; EXPIRE key delay."""

TAG_AS_DELETED_BATCH_SCRIPT: Final = """\
-- slotlab: rockscache's batch "tag as deleted": the same three calls for every key in KEYS.
-- One script, so the server (or a proxy) insists that all KEYS share one slot.
for _, key in ipairs(KEYS) do
  redis.call('HSET', key, 'lockUntil', 0)
  redis.call('HDEL', key, 'lockOwner')
  redis.call('EXPIRE', key, ARGV[1])
end
"""
"""Every key of KEYS tagged as deleted in one script; the key reaches ``redis.call`` through a
loop variable, which a proxy's static script check (Alibaba's) rejects even in one slot."""

# --------------------------------------------------------------------------------------------
# Key builders (pkg/common/cachekey/*.go at v3.7.1; pkg/common/storage/cache/cachekey/*.go at
# v3.8.0; the same strings in v3.3.2's pkg/common/db/cache/group.go). No key has a hash tag.
# --------------------------------------------------------------------------------------------


def _id(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(
            f"{what} must be a str (an OpenIM ID such as 'g1'), not {type(value).__name__}"
        )
    if not value:
        raise ValueError(f"{what} is empty: OpenIM IDs are non-empty strings such as 'g1'")
    return value


def group_info(group_id: str) -> str:
    """``GROUP_INFO:<gid>``: the group's own record (``cachekey.GetGroupInfoKey``, group.go)."""
    return "GROUP_INFO:" + _id("group_id", group_id)


def group_member_ids(group_id: str) -> str:
    """``GROUP_MEMBER_IDS:<gid>``: the member list (``cachekey.GetGroupMemberIDsKey``, group.go)."""
    return "GROUP_MEMBER_IDS:" + _id("group_id", group_id)


def group_members_hash(group_id: str) -> str:
    """``GROUP_MEMBERS_HASH2:<gid>``: a hash of the member list, for client sync
    (``cachekey.GetGroupMembersHashKey``, group.go; the ``2`` is part of the name)."""
    return "GROUP_MEMBERS_HASH2:" + _id("group_id", group_id)


def group_member_info(group_id: str, user_id: str) -> str:
    """``GROUP_MEMBER_INFO:<gid>-<uid>``: one member's record in one group
    (``cachekey.GetGroupMemberInfoKey``, group.go)."""
    return "GROUP_MEMBER_INFO:" + _id("group_id", group_id) + "-" + _id("user_id", user_id)


def join_groups(user_id: str) -> str:
    """``JOIN_GROUPS_KEY:<uid>``: every group the user has joined
    (``cachekey.GetJoinedGroupsKey``, group.go). A user key: it belongs to no single group."""
    return "JOIN_GROUPS_KEY:" + _id("user_id", user_id)


def group_member_num(group_id: str) -> str:
    """``GROUP_MEMBER_NUM_CACHE:<gid>``: the member count (``cachekey.GetGroupMemberNumKey``)."""
    return "GROUP_MEMBER_NUM_CACHE:" + _id("group_id", group_id)


def group_role_level_member_ids(group_id: str, role_level: int) -> str:
    """``GROUP_ROLE_LEVEL_MEMBER_IDS:<gid>-<level>``: the members with one role level
    (``cachekey.GetGroupRoleLevelMemberIDsKey``, group.go); levels are :data:`ROLE_LEVELS`."""
    if isinstance(role_level, bool) or not isinstance(role_level, int):
        raise TypeError(f"role_level must be an int such as {ROLE_LEVELS}, not {role_level!r}")
    return "GROUP_ROLE_LEVEL_MEMBER_IDS:" + _id("group_id", group_id) + "-" + str(role_level)


def group_member_max_version(group_id: str) -> str:
    """``GROUP_MEMBER_MAX_VERSION:<gid>``: the group's member-list version, new in 3.8
    (``cachekey.GetGroupMemberMaxVersionKey``, storage/cache/cachekey/group.go at v3.8.0)."""
    return "GROUP_MEMBER_MAX_VERSION:" + _id("group_id", group_id)


def group_join_max_version(user_id: str) -> str:
    """``GROUP_JOIN_MAX_VERSION:<uid>``: the user's joined-groups version, new in 3.8
    (``cachekey.GetJoinGroupMaxVersionKey``, storage/cache/cachekey/group.go at v3.8.0)."""
    return "GROUP_JOIN_MAX_VERSION:" + _id("user_id", user_id)


def conversation(owner_user_id: str, conversation_id: str) -> str:
    """``CONVERSATION:<owner>:<cid>``: one user's view of one conversation
    (``cachekey.GetConversationKey``, conversation.go)."""
    return (
        "CONVERSATION:"
        + _id("owner_user_id", owner_user_id)
        + ":"
        + _id("conversation_id", conversation_id)
    )


def conversation_ids(owner_user_id: str) -> str:
    """``CONVERSATION_IDS:<owner>``: the user's conversation list
    (``cachekey.GetConversationIDsKey``, conversation.go)."""
    return "CONVERSATION_IDS:" + _id("owner_user_id", owner_user_id)


def conversation_ids_hash(owner_user_id: str) -> str:
    """``CONVERSATION_IDS_HASH:<owner>``: a hash of that list
    (``cachekey.GetUserConversationIDsHashKey``, conversation.go)."""
    return "CONVERSATION_IDS_HASH:" + _id("owner_user_id", owner_user_id)


def conversation_not_receive_message_user_ids(conversation_id: str) -> str:
    """``CONVERSATION_NOT_RECEIVE_MESSAGE_USER_IDS:<cid>``: who muted the conversation
    (``cachekey.GetConversationNotReceiveMessageUserIDsKey``, conversation.go)."""
    return "CONVERSATION_NOT_RECEIVE_MESSAGE_USER_IDS:" + _id("conversation_id", conversation_id)


def conversation_user_max(user_id: str) -> str:
    """``CONVERSATION_USER_MAX:<uid>``: the user's conversation-list version, new in 3.8
    (``cachekey.GetConversationUserMaxVersionKey``, storage/cache/cachekey/conversation.go)."""
    return "CONVERSATION_USER_MAX:" + _id("user_id", user_id)


def group_chat_conversation_id(group_id: str) -> str:
    """``sg_<gid>``: the conversation ID of a group chat
    (``msgprocessor.GetConversationIDBySessionType`` with ``ReadGroupChatType``)."""
    return "sg_" + _id("group_id", group_id)


# --------------------------------------------------------------------------------------------
# Key sets: which keys one flow deletes, in the order the controller chains them
# --------------------------------------------------------------------------------------------


def _version(version: str) -> str:
    if version not in VERSIONS:
        raise ValueError(
            f"unknown OpenIM version {version!r}: slotlab models {', '.join(VERSIONS)}"
        )
    return version


def _distinct(keys: Iterable[str]) -> list[str]:
    """Drop repeated keys, keeping the first of each, as OpenIM's ``datautil.Distinct`` does."""
    return list(dict.fromkeys(keys))


def _users(what: str, user_ids: object) -> list[str]:
    if isinstance(user_ids, (str, bytes)) or not isinstance(user_ids, Iterable):
        raise TypeError(f"{what} must be a list of user IDs such as ['u2', 'u3'], not {user_ids!r}")
    users = [_id(f"{what}[{i}]", u) for i, u in enumerate(user_ids)]
    return users


def _member_keys(group_id: str, user_id: str, version: str) -> list[str]:
    """What CreateGroup chains for one new member (the ``for _, groupMember`` loop)."""
    keys = [
        group_members_hash(group_id),
        group_member_num(group_id),
        group_member_ids(group_id),
        join_groups(user_id),
        group_member_info(group_id, user_id),
        *(group_role_level_member_ids(group_id, level) for level in ROLE_LEVELS),
    ]
    if version == "3.8":
        keys += [group_join_max_version(user_id), group_member_max_version(group_id)]
    return keys


def _group_keys(group_id: str, version: str) -> list[str]:
    """What CreateGroup chains for one new group (the ``for _, group`` loop)."""
    keys = [
        group_info(group_id),
        group_members_hash(group_id),
        group_members_hash(group_id),  # chained twice in the code, removed by Distinct
        group_member_num(group_id),
        group_member_ids(group_id),
        *(group_role_level_member_ids(group_id, level) for level in ROLE_LEVELS),
    ]
    if version == "3.8":
        keys.append(group_member_max_version(group_id))
    return keys


def _v33_keys(group_id: str, user_ids: list[str], new_group: bool) -> list[str]:
    """v3.3.2's CreateGroup: per group its IDs, hash and count once, per member two keys, then
    the info of new groups. No role-level keys, and no Distinct (none is needed)."""
    keys = [group_member_ids(group_id), group_members_hash(group_id), group_member_num(group_id)]
    for uid in user_ids:
        keys += [join_groups(uid), group_member_info(group_id, uid)]
    if new_group:
        keys.append(group_info(group_id))
    return keys


def create_group_keys(
    group_id: str,
    owner_user_id: str,
    member_user_ids: Sequence[str],
    version: str = "3.8",
    *,
    admin_user_ids: Sequence[str] = (),
) -> list[str]:
    """The cache keys one CreateGroup tags as deleted, in the order OpenIM collects them.

    The RPC (``internal/rpc/group/group.go``) makes the owner the first member, then the
    admins, then the members, and refuses repeated user IDs ("group member repeated"); so does
    this function (``ValueError``). The controller (3.8: ``pkg/common/storage/controller/group.go``
    at v3.8.0; 3.7: ``pkg/common/db/controller/group.go`` at v3.7.1) chains, for the new group:
    info, members hash (twice), member count, member IDs, the three role-level lists (3.8: and
    the member max version); then for each member: members hash, count, IDs, that user's joined
    groups, that member's info, the three role-level lists (3.8: and the user's join max version
    and the group's member max version). Both versions then DROP REPEATS, keeping the first of
    each (``ExecDel(ctx, true)`` in 3.7, ``ChainExecDel`` in 3.8, both ``datautil.Distinct``),
    and so does this function.

    ``version="3.3"`` gives v3.3.2's shorter set (no role levels; ``pkg/common/db/controller/
    group.go``): member IDs, hash and count once, each member's joined groups and info, then the
    group's info.

    >>> create_group_keys("g1", "u1", ["u2"])[:3]
    ['GROUP_INFO:g1', 'GROUP_MEMBERS_HASH2:g1', 'GROUP_MEMBER_NUM_CACHE:g1']
    >>> [len(create_group_keys("g1", "u1", ["u2"], v)) for v in ("3.3", "3.7", "3.8")]
    [8, 11, 14]
    """
    version = _version(version)
    users = [_id("owner_user_id", owner_user_id)]
    users += _users("admin_user_ids", admin_user_ids)
    users += _users("member_user_ids", member_user_ids)
    repeated = sorted({u for u in users if users.count(u) > 1})
    if repeated:
        raise ValueError(
            f"group member repeated: {', '.join(repeated)} (OpenIM's CreateGroup refuses a user "
            "listed twice, or listed both as owner and as admin or member)"
        )
    _id("group_id", group_id)
    if version == "3.3":
        return _v33_keys(group_id, users, new_group=True)
    keys = _group_keys(group_id, version)
    for uid in users:
        keys += _member_keys(group_id, uid, version)
    return _distinct(keys)


def join_group_keys(group_id: str, user_ids: Sequence[str], version: str = "3.8") -> list[str]:
    """The keys tagged when users join an existing group (JoinGroup, InviteUserToGroup).

    Both go through the controller's CreateGroup with no new group, only members (see
    :func:`create_group_keys`): the members-hash/count/IDs keys of the group, each user's joined
    groups and member info, the three role-level lists (3.8: and the version keys), repeats
    dropped. 3.3 (v3.3.2) chains the group's IDs, hash and count once and two keys per user.
    """
    version = _version(version)
    _id("group_id", group_id)
    users = _users("user_ids", user_ids)
    if not users:
        raise ValueError("user_ids is empty: a join needs at least one user (OpenIM does nothing)")
    if version == "3.3":
        return _v33_keys(group_id, users, new_group=False)
    keys: list[str] = []
    for uid in users:
        keys += _member_keys(group_id, uid, version)
    return _distinct(keys)


def handle_group_request_keys(
    group_id: str, user_id: str, version: str = "3.8", *, role_level: int = ROLE_MEMBER
) -> list[str]:
    """The keys tagged when an admin APPROVES a join request (controller ``HandlerGroupRequest``).

    In chain order: members hash, the new member's info, member IDs, member count, the user's
    joined groups, the role-level list of the new member's level only (an ordinary member, 20,
    unless ``role_level`` says otherwise); 3.8 adds the user's join max version and the group's
    member max version. 3.7 (v3.7.1) sends the first six WITHOUT dropping repeats (plain
    ``ExecDel``), which changes nothing here since no key repeats. Not modelled for 3.3.
    """
    if version == "3.3":
        raise ValueError("handle_group_request_keys models 3.7 and 3.8 only")
    version = _version(version)
    keys = [
        group_members_hash(group_id),
        group_member_info(group_id, user_id),
        group_member_ids(group_id),
        group_member_num(group_id),
        join_groups(user_id),
        group_role_level_member_ids(group_id, role_level),
    ]
    if version == "3.8":
        keys += [group_join_max_version(user_id), group_member_max_version(group_id)]
        keys = _distinct(keys)
    return keys


def group_chat_conversation_keys(group_id: str, user_ids: Sequence[str]) -> list[str]:
    """The keys 3.8 tags when it creates a group chat's conversations for new members.

    ``CreateGroupChatConversation`` (``pkg/common/storage/controller/conversation.go`` at
    v3.8.0), for users who had no conversation with the group yet: per user the conversation key
    and the conversation's not-receive-message user IDs; then every user's conversation IDs and
    then every user's conversation-IDs hash; repeats dropped (``ChainExecDel``).
    """
    cid = group_chat_conversation_id(group_id)
    users = _users("user_ids", user_ids)
    if not users:
        raise ValueError("user_ids is empty: give the users who get the group's conversation")
    keys: list[str] = []
    for uid in users:
        keys += [conversation(uid, cid), conversation_not_receive_message_user_ids(cid)]
    keys += [conversation_ids(uid) for uid in users]
    keys += [conversation_ids_hash(uid) for uid in users]
    return _distinct(keys)


# --------------------------------------------------------------------------------------------
# Delete paths
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchResult:
    """What one delete run did: how many keys it tagged, and what it cost on the wire.

    ``round_trips`` counts the times the client sent something and waited for the answer: a
    pipeline counts once, however many commands or nodes it reaches (redis-py writes to every
    node before it reads any reply); redirects that redis-py follows by itself are not counted.
    ``commands`` counts every command sent (``CLUSTER KEYSLOT`` included), ``evals`` the EVALs
    among them.
    """

    name: str
    tagged: int
    round_trips: int
    commands: int
    evals: int
    seconds: float

    @property
    def keys_per_second(self) -> float:
        """Keys tagged per second of wall time."""
        return self.tagged / self.seconds if self.seconds > 0 else float("inf")

    def __str__(self) -> str:
        return (
            f"{self.name}: tagged {self.tagged} keys with {self.evals} EVAL(s), "
            f"{self.commands} command(s), {self.round_trips} round trip(s), "
            f"{self.seconds * 1000:.1f} ms"
        )


def check_keys(keys: object, what: str = "keys") -> list[str | bytes]:
    """``keys`` as a list, or a clear error: it must be a non-empty list of str or bytes keys."""
    if isinstance(keys, (str, bytes, bytearray)):
        raise TypeError(
            f"{what} must be a list of keys, not a single {type(keys).__name__}: "
            f"wrap it in a list, e.g. [{keys!r}]"
        )
    if not isinstance(keys, Iterable):
        raise TypeError(f"{what} must be a list of str or bytes keys, not {type(keys).__name__}")
    out = list(keys)
    if not out:
        raise ValueError(
            f"{what} is empty: pass at least one key to tag (OpenIM skips the call instead)"
        )
    for i, key in enumerate(out):
        if not isinstance(key, (str, bytes)):
            raise TypeError(
                f"{what}[{i}] is a {type(key).__name__} ({key!r}); every key must be str or bytes"
            )
    return out


def check_delay(delay: object) -> int:
    """The delay in whole seconds (at least 1), or a clear error."""
    if isinstance(delay, bool) or not isinstance(delay, int):
        raise TypeError(f"delay must be a whole number of seconds, such as 10, not {delay!r}")
    if delay < 1:
        raise ValueError(
            f"delay must be at least 1 second, not {delay}: EXPIRE with 0 or less deletes the "
            "key at once instead of tagging it"
        )
    return delay


def check_batch_size(size: object, what: str = "batch_size") -> int:
    """A keys-per-EVAL count from 1 to :data:`MAX_KEYS_PER_EVAL`, or a clear error."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"{what} must be a whole number of keys, such as 50, not {size!r}")
    if not 1 <= size <= MAX_KEYS_PER_EVAL:
        raise ValueError(
            f"{what} must be from 1 to {MAX_KEYS_PER_EVAL} keys per EVAL, not {size}: "
            f"slotlab's cap; use 50 (OpenIM's batch size) if unsure"
        )
    return size


def _eval(client: Client, script: str, keys: Sequence[str | bytes], delay: int) -> Any:
    return client.eval(script, len(keys), *keys, delay)


def is_cluster_client(client: object) -> bool:
    """True for a redis-py ``RedisCluster``: the client that knows the slot map.

    This is the test OpenIM 3.8 makes (``redisClient.(*redis.ClusterClient)``): every other
    client, a proxy's included, counts as "not a cluster".
    """
    return isinstance(client, RedisCluster)


def v3_3_batch(
    client: Client, keys: Sequence[str | bytes], delay: int = DEFAULT_DELAY
) -> BatchResult:
    """Tag every key in ONE EVAL, as OpenIM up to v3.3.2 did: the bug.

    ``ExecDel`` (``pkg/common/db/cache/meta_cache.go`` at v3.3.2) calls rockscache's
    ``TagAsDeletedBatch2`` with all the keys; on an error it tries again at once, up to 5 more
    times, then returns an internal-server error (slotlab tries once). On one Redis server this
    works; on a cluster the keys span slots and it fails:

    - through a plain client to a node (go-redis routes EVAL by its first key):
      ``ClusterCrossSlotError: Keys in request don't hash to the same slot``;
    - through redis-py's ``RedisCluster``: refused before sending, ``RedisClusterException:
      EVAL - all keys must map to the same key slot``;
    - through Alibaba Cloud's proxy: ``ERR 'EVAL' command keys must in same slot``.
    """
    key_list = check_keys(keys)
    delay = check_delay(delay)
    start = time.perf_counter()
    _eval(client, TAG_AS_DELETED_BATCH_SCRIPT, key_list, delay)
    return BatchResult("v3.3 one batch EVAL", len(key_list), 1, 1, 1, time.perf_counter() - start)


def v3_7_per_key(
    client: Client,
    keys: Sequence[str | bytes],
    delay: int = DEFAULT_DELAY,
    *,
    attempts: int = V37_ATTEMPTS,
    retry_interval: float = V37_RETRY_INTERVAL,
) -> BatchResult:
    """Tag each key with its own single-key EVAL, as OpenIM v3.3.3 to v3.7.x do: always correct.

    PR #1258 (October 2023) replaced the batch with a loop (``ExecDel`` in
    ``pkg/common/db/cache/meta_cache.go`` at v3.7.1): for each key, rockscache's single-key
    ``TagAsDeleted``, tried up to 5 times 100 ms apart. One key per EVAL can never span slots, so
    3.7 cannot produce the cross-slot error; it pays one round trip per key instead.

    One difference: when all tries of a key fail, 3.7 logs the error and goes on with the next
    key (its ``ExecDel`` returns nil either way); slotlab raises the last error, so a lesson
    cannot miss it. ``attempts=1`` turns the retries off.
    """
    key_list = check_keys(keys)
    delay = check_delay(delay)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"attempts must be a whole number, 1 or more, not {attempts!r}")
    start = time.perf_counter()
    trips = 0
    for key in key_list:
        for attempt in range(1, attempts + 1):
            trips += 1
            try:
                _eval(client, TAG_AS_DELETED_SCRIPT, [key], delay)
            except redis.RedisError:
                if attempt == attempts:
                    raise
                time.sleep(retry_interval)
            else:
                break
    return BatchResult(
        "v3.7 one EVAL per key", len(key_list), trips, trips, trips, time.perf_counter() - start
    )


def _server_slots(client: RedisCluster, keys: Sequence[str | bytes]) -> list[int]:
    """Every key's slot as the cluster computes it: one ``CLUSTER KEYSLOT`` per key, pipelined."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.cluster_keyslot(cast(str, key))
    return [int(s) for s in pipe.execute()]


def v3_8_by_slot(
    client: Client,
    keys: Sequence[str | bytes],
    delay: int = DEFAULT_DELAY,
    batch_size: int = OPENIM_BATCH_SIZE,
) -> BatchResult:
    """Tag the keys in EVALs of up to 50 keys, grouped by slot ONLY for a cluster client (3.8).

    OpenIM v3.8.0 (PR #2320 brought the batch EVAL back, PR #2325 added
    ``pkg/common/storage/cache/redis/redis_shard_manager.go``) sends its keys through
    ``ProcessKeysBySlot``. Its ``groupKeysBySlot`` asks the server ``CLUSTER KEYSLOT`` for every
    key (one pipeline) and groups the keys by slot, but only when the client is a go-redis
    ``ClusterClient`` and there is more than one key. Any other client, and that includes a plain
    client to a cloud proxy, gets every key in one group it calls "slot 0". Each group is cut
    into batches of 50 keys and each batch is one rockscache batch EVAL. So:

    - cluster client (``RedisCluster`` here): correct, one EVAL per slot (per 50 keys of a slot);
    - plain client to a proxy or node: EVALs of 50 keys from many slots, the 3.3 bug again
      (issues #2505/#2506: upgrading to 3.8 on Alibaba's cluster edition brought the error back);
    - plain client to one non-cluster server: correct (there are no slots).

    Go runs up to 3 batches at once and stops at the first error; slotlab sends them one after
    another, in the order the groups first appear (Go's map order is random), and raises the
    first error. Batches sent before the error stay tagged.
    """
    key_list = check_keys(keys)
    delay = check_delay(delay)
    batch_size = check_batch_size(batch_size)
    start = time.perf_counter()
    trips = commands = 0
    groups: dict[int, list[str | bytes]] = {}
    if is_cluster_client(client) and len(key_list) > 1:
        slots = _server_slots(cast(RedisCluster, client), key_list)
        trips += 1
        commands += len(key_list)
        for key, slot in zip(key_list, slots, strict=True):
            groups.setdefault(slot, []).append(key)
    else:
        groups[0] = key_list  # "If not a cluster client, put all keys in the same slot (0)"
    evals = 0
    for group in groups.values():
        for lo in range(0, len(group), batch_size):
            batch = group[lo : lo + batch_size]
            evals += 1
            _eval(client, TAG_AS_DELETED_BATCH_SCRIPT, batch, delay)
    return BatchResult(
        "v3.8 by slot (CLUSTER KEYSLOT)",
        len(key_list),
        trips + evals,
        commands + evals,
        evals,
        time.perf_counter() - start,
    )


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def tagged_as_deleted(client: Client, key: str | bytes) -> bool:
    """True when ``key`` is in rockscache's "deleted" state: a hash whose ``lockUntil`` is 0,
    with no ``lockOwner``, and a time to live (it expires after the delay)."""
    reply = cast(dict[Any, Any], client.hgetall(key))
    fields = {_text(k): _text(v) for k, v in reply.items()}
    if fields.get("lockUntil") != "0" or "lockOwner" in fields:
        return False
    return int(client.ttl(key)) > 0


# --------------------------------------------------------------------------------------------
# Reads: rockscache's Fetch2 (one key) and FetchBatch2 (one EVAL over all KEYS)
# --------------------------------------------------------------------------------------------
#
# A read of a rockscache entry is a script too. It returns the value and the lock state, and
# when the value is missing or stale (``lockUntil`` in the past, 0 after a "delete") it takes
# the lock in the same script, so that only one reader goes to the database and writes the
# fresh value back (with a second script that checks it still owns the lock). OpenIM 3.7 reads
# one key per call; 3.8's ``batchGetCache2`` sends all the keys of a call in ONE read EVAL,
# grouped by slot only for a cluster client, exactly like its deletes.

DEFAULT_EXPIRE: Final = 12 * 60 * 60
"""Seconds a value read from the database stays cached (OpenIM's ``groupExpireTime``, 12 h,
``pkg/common/storage/cache/redis/group.go`` at v3.8.0). rockscache subtracts the delay and a
random share from it; slotlab subtracts only the delay."""

EMPTY_EXPIRE: Final = 60
"""Seconds an EMPTY answer from the database is cached (rockscache ``Options.EmptyExpire``)."""

LOCK_EXPIRE: Final = 3
"""Seconds a reader's lock on a missing key lasts (rockscache ``Options.LockExpire``)."""

LOCK_SLEEP: Final = 0.1
"""Seconds a reader waits before asking again when another reader holds the lock
(rockscache ``Options.LockSleep``, 100 ms)."""

LOCKED: Final = "LOCKED"
"""What the read scripts answer in place of ``lockUntil`` when THIS reader took the lock."""

READ_SCRIPT: Final = """\
-- slotlab: rockscache's read of ONE key (luaGet). ARGV: now, lock-until, owner.
-- Answers {value, lockUntil}; when the value is missing or stale it takes the lock for this
-- reader and answers {value, 'LOCKED'}: the caller then loads the database and writes back.
local v = redis.call('HGET', KEYS[1], 'value')
local lu = redis.call('HGET', KEYS[1], 'lockUntil')
if (lu ~= false and tonumber(lu) < tonumber(ARGV[1])) or (lu == false and v == false) then
  redis.call('HSET', KEYS[1], 'lockUntil', ARGV[2], 'lockOwner', ARGV[3])
  return {v, 'LOCKED'}
end
return {v, lu}
"""
"""One key read (and locked when missing or stale); its key is written ``KEYS[1]``."""

READ_BATCH_SCRIPT: Final = """\
-- slotlab: rockscache's batch read (luaGetBatch): the one-key read for every key in KEYS.
-- One script, so the server (or a proxy) insists that all KEYS share one slot.
local answers = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('HGET', key, 'value')
  local lu = redis.call('HGET', key, 'lockUntil')
  if (lu ~= false and tonumber(lu) < tonumber(ARGV[1])) or (lu == false and v == false) then
    redis.call('HSET', key, 'lockUntil', ARGV[2], 'lockOwner', ARGV[3])
    answers[i] = {v, 'LOCKED'}
  else
    answers[i] = {v, lu}
  end
end
return answers
"""
"""Every key of KEYS read in one script. The key reaches ``redis.call`` through the loop
variable ``key``, which Alibaba's static script check rejects (issue #2894), one slot or not."""

SET_SCRIPT: Final = """\
-- slotlab: rockscache's write-back of ONE key (luaSet). ARGV: value, owner, seconds to live.
-- Only the reader that holds the lock may write: a delete in between took the lock away.
if redis.call('HGET', KEYS[1], 'lockOwner') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'value', ARGV[1])
redis.call('HDEL', KEYS[1], 'lockUntil', 'lockOwner')
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
"""One fresh value written back, if this reader still holds the key's lock."""

SET_BATCH_SCRIPT: Final = """\
-- slotlab: rockscache's batch write-back (luaSetBatch). ARGV: owner, then one value per key,
-- then one time to live per key. Stops at the first key whose lock this reader lost.
local n = #KEYS
for i, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'lockOwner') ~= ARGV[1] then
    return i - 1
  end
  redis.call('HSET', key, 'value', ARGV[i + 1])
  redis.call('HDEL', key, 'lockUntil', 'lockOwner')
  redis.call('EXPIRE', key, ARGV[i + 1 + n])
end
return n
"""
"""Fresh values for every key of KEYS in one script (the same loop over KEYS)."""

Loader: TypeAlias = Callable[[list[str]], Mapping[str, str]]
"""The "database": given the keys a read missed, it answers their values (a key it leaves out
has no row, and rockscache caches an empty value for :data:`EMPTY_EXPIRE` seconds)."""


def database(keys: list[str]) -> dict[str, str]:
    """slotlab's stand-in for OpenIM's database: a row for every key, ``row of <key>``.

    OpenIM loads from MongoDB and caches the JSON; slotlab has no database, so the default
    loader answers a text that names the key, which lets a lesson see where a value came from.
    """
    return {key: f"row of {key}" for key in keys}


@dataclass(frozen=True)
class ReadResult:
    """What one read run did: the values it returned, and what it cost on the wire.

    ``values`` maps each distinct key to its value (``None`` when the database has no row).
    ``loaded`` counts the keys that missed the cache and came from the database (and were
    written back). ``round_trips``, ``commands`` and ``evals`` count as in :class:`BatchResult`.
    """

    name: str
    keys: int
    loaded: int
    round_trips: int
    commands: int
    evals: int
    seconds: float
    values: dict[str, str | None] = field(repr=False)

    @property
    def keys_per_second(self) -> float:
        """Keys read per second of wall time."""
        return self.keys / self.seconds if self.seconds > 0 else float("inf")

    def __str__(self) -> str:
        return (
            f"{self.name}: read {self.keys} keys ({self.loaded} from the database) with "
            f"{self.evals} EVAL(s), {self.commands} command(s), {self.round_trips} round "
            f"trip(s), {self.seconds * 1000:.1f} ms"
        )


class CacheRead(NamedTuple):
    """One cache call of an OpenIM flow: the Go method, whether it is a BATCH read
    (``batchGetCache2``: 3.8 sends one read EVAL over all its keys) and the keys it reads."""

    call: str
    batch: bool
    keys: list[str]


def get_groups_info_keys(group_ids: Sequence[str]) -> list[str]:
    """The keys ``GetGroupsInfo`` reads: ``GROUP_INFO:<gid>`` for each group, repeats dropped.

    3.8 (``pkg/common/storage/cache/redis/group.go`` at v3.8.0) reads them with
    ``batchGetCache2``, which drops repeated keys, then ONE ``FetchBatch2`` per slot group; 3.7
    (``pkg/common/db/cache/group.go`` at v3.7.1) loops ``Fetch2`` over them one by one.

    >>> get_groups_info_keys(["g1", "g2", "g1"])
    ['GROUP_INFO:g1', 'GROUP_INFO:g2']
    """
    if isinstance(group_ids, (str, bytes)) or not isinstance(group_ids, Iterable):
        raise TypeError(f"group_ids must be a list of group IDs such as ['g1'], not {group_ids!r}")
    groups = [_id(f"group_ids[{i}]", g) for i, g in enumerate(group_ids)]
    if not groups:
        raise ValueError("group_ids is empty: give at least one group ID, such as ['g1']")
    return _distinct(group_info(g) for g in groups)


def joined_group_list_reads(user_id: str, group_ids: Sequence[str]) -> list[CacheRead]:
    """The cache reads of ``get_joined_group_list`` for a user in ``group_ids``, in order.

    ``GetJoinedGroupList`` (``internal/rpc/group/group.go`` at v3.8.0) and the controller it
    calls (``pkg/common/storage/controller/group.go``): ``PageGetJoinGroup`` reads the user's
    joined-group IDs (one key), then for each group the user's member record (a BATCH read of
    one key); ``FindGroup`` reads every group's info in ONE batch read (``GetGroupsInfo``, the
    read with keys in many slots); ``MapGroupMemberNum`` reads each member count (one key each);
    ``FindGroupsOwner`` reads each group's owner-ID list (one key each). Left out: the owner's
    member record (its key needs the owner ID, a value read from the cache) and the user
    profiles ``PopulateGroupMember`` asks the user service for. ``group_ids`` stands for what
    ``JOIN_GROUPS_KEY:<uid>`` holds, in the order it holds them.

    >>> [(r.call, r.batch, len(r.keys)) for r in joined_group_list_reads("u1", ["g1", "g2"])][:4]
    [('GetJoinedGroupIDs', False, 1), ('GetGroupMembersInfo', True, 1), \
('GetGroupMembersInfo', True, 1), ('GetGroupsInfo', True, 2)]
    """
    uid = _id("user_id", user_id)
    info_keys = get_groups_info_keys(group_ids)
    groups = [key.removeprefix("GROUP_INFO:") for key in info_keys]
    reads = [CacheRead("GetJoinedGroupIDs", False, [join_groups(uid)])]
    reads += [CacheRead("GetGroupMembersInfo", True, [group_member_info(g, uid)]) for g in groups]
    reads.append(CacheRead("GetGroupsInfo", True, info_keys))
    reads += [CacheRead("GetGroupMemberNum", False, [group_member_num(g)]) for g in groups]
    reads += [
        CacheRead("GetGroupRoleLevelMemberIDs", False, [group_role_level_member_ids(g, ROLE_OWNER)])
        for g in groups
    ]
    return reads


def check_reads(reads: object) -> list[CacheRead]:
    """``reads`` as a list of :class:`CacheRead`, or a clear error."""
    if isinstance(reads, CacheRead) or not isinstance(reads, Iterable):
        raise TypeError(
            "reads must be a list of CacheRead, such as joined_group_list_reads('u1', ['g1'])"
        )
    out = list(reads)
    if not out:
        raise ValueError("reads is empty: give at least one CacheRead")
    for i, read in enumerate(out):
        if not isinstance(read, CacheRead):
            raise TypeError(f"reads[{i}] is a {type(read).__name__}, not a CacheRead")
        check_keys(read.keys, f"reads[{i}].keys")
    return out


def _check_expire(expire: object) -> int:
    if isinstance(expire, bool) or not isinstance(expire, int):
        raise TypeError(f"expire must be a whole number of seconds, such as 43200, not {expire!r}")
    if expire <= DEFAULT_DELAY:
        raise ValueError(
            f"expire must be more than the {DEFAULT_DELAY} s delay, not {expire}: rockscache "
            "caches a value for expire minus the delay"
        )
    return expire


def _check_load(load: object) -> Loader:
    if not callable(load):
        raise TypeError(
            f"load must be a function from a list of keys to their values, such as "
            f"slotlab.openim.database, not {load!r}"
        )
    return cast(Loader, load)


def _key_text(key: str | bytes) -> str:
    return key.decode("utf-8") if isinstance(key, bytes) else key


class _Counter:
    """Round trips, commands and EVALs of one read run."""

    def __init__(self) -> None:
        self.trips = self.commands = self.evals = 0

    def eval(self, client: Client, script: str, keys: Sequence[str], *args: str | int) -> Any:
        self.trips += 1
        self.commands += 1
        self.evals += 1
        return client.eval(script, len(keys), *keys, *args)


def _lock_args(owner: str) -> tuple[int, int, str]:
    now = int(time.time())
    return now, now + LOCK_EXPIRE, owner


def _read_one(client: Client, key: str, owner: str, count: _Counter) -> tuple[Any, Any]:
    """rockscache's strong read of one key: ask again while ANOTHER reader holds the lock."""
    deadline = time.monotonic() + 10 * LOCK_EXPIRE
    while True:
        value, lock = count.eval(client, READ_SCRIPT, [key], *_lock_args(owner))
        if lock is None or _text(lock) == LOCKED or time.monotonic() > deadline:
            return value, lock
        time.sleep(LOCK_SLEEP)


def _ttl(value: str, expire: int) -> int:
    return expire - DEFAULT_DELAY if value else EMPTY_EXPIRE


def v3_7_read(
    client: Client,
    keys: Sequence[str | bytes],
    load: Loader = database,
    *,
    expire: int = DEFAULT_EXPIRE,
) -> ReadResult:
    """Read each key with its own single-key scripts, as OpenIM 3.7 does: always correct.

    3.7's ``batchGetCache2`` (``pkg/common/db/cache/meta_cache.go`` at v3.7.1) loops over the
    keys and calls ``getCache`` -> rockscache ``Fetch2`` for each (OpenIM sets
    ``StrongConsistency``, so ``strongFetch``): a one-key read script; when it took the lock
    (value missing or tagged as deleted), ``load`` gives the value and a one-key write-back
    stores it. Every script names its key ``KEYS[1]``: no slot rule or script check can object.
    Repeated keys are read once.
    """
    key_list = [_key_text(k) for k in _distinct_keys(check_keys(keys))]
    load = _check_load(load)
    expire = _check_expire(expire)
    start = time.perf_counter()
    count = _Counter()
    values: dict[str, str | None] = {}
    loaded = 0
    for key in key_list:
        owner = uuid.uuid4().hex
        value, lock = _read_one(client, key, owner, count)
        if lock is not None and _text(lock) == LOCKED:
            fresh = load([key]).get(key, "")
            loaded += 1
            count.eval(client, SET_SCRIPT, [key], fresh, owner, _ttl(fresh, expire))
            value = fresh
        values[key] = _text(value) or None
    return ReadResult(
        "v3.7 one read EVAL per key",
        len(key_list),
        loaded,
        count.trips,
        count.commands,
        count.evals,
        time.perf_counter() - start,
        values,
    )


def _distinct_keys(keys: list[str | bytes]) -> list[str | bytes]:
    return list(dict.fromkeys(keys))


def _fetch_batch(
    client: Client, keys: list[str], load: Loader, expire: int, count: _Counter
) -> tuple[dict[str, str | None], int]:
    """rockscache's ``strongFetchBatch`` for one group of keys: one read EVAL over all of them,
    one database call and one write-back EVAL for the keys it locked, and a one-key read (again
    and again) for a key another reader holds. Answers the values and how many were loaded."""
    owner = uuid.uuid4().hex
    answers = count.eval(client, READ_BATCH_SCRIPT, keys, *_lock_args(owner))
    values: dict[str, str | None] = {}
    to_load: list[str] = []
    for key, (value, lock) in zip(keys, answers, strict=True):
        if lock is None:
            values[key] = _text(value) or None
        elif _text(lock) == LOCKED:
            to_load.append(key)
        else:  # locked by another reader: rockscache asks again, one key at a time
            value, lock = _read_one(client, key, owner, count)
            if lock is not None and _text(lock) == LOCKED:
                to_load.append(key)
            else:
                values[key] = _text(value) or None
    if to_load:
        rows = load(list(to_load))
        fresh = [rows.get(key, "") for key in to_load]
        count.eval(
            client,
            SET_BATCH_SCRIPT,
            to_load,
            owner,
            *fresh,
            *(_ttl(v, expire) for v in fresh),
        )
        for key, value in zip(to_load, fresh, strict=True):
            values[key] = value or None
    return values, len(to_load)


def v3_8_read(
    client: Client,
    keys: Sequence[str | bytes],
    load: Loader = database,
    *,
    expire: int = DEFAULT_EXPIRE,
) -> ReadResult:
    """Read the keys with ONE read EVAL per slot group, grouped ONLY for a cluster client (3.8).

    OpenIM v3.8.0's ``batchGetCache2`` (``pkg/common/storage/cache/redis/batch.go``) drops
    repeated keys, calls ``groupKeysBySlot`` (the same function the deletes use: ``CLUSTER
    KEYSLOT`` per key, for a go-redis ``ClusterClient`` with more than one key; otherwise every
    key in "slot 0") and hands each group WHOLE to rockscache's ``FetchBatch2``
    (``batch.go`` at v0.1.1, ``strongFetchBatch``): one read EVAL over all the group's KEYS
    (:data:`READ_BATCH_SCRIPT`), then one write-back EVAL for the keys that missed. Unlike the
    deletes there is no cut into batches of 50. So:

    - cluster client (``RedisCluster`` here): correct, one read EVAL per slot;
    - plain client to a proxy or node: one EVAL over keys in many slots, refused (issue #2505:
      ``get_joined_group_list`` after upgrading to 3.8 behind Alibaba's proxy); and behind a
      proxy that checks scripts, even a one-key or one-slot batch read is refused, because the
      script's keys are not written ``KEYS[n]`` (issue #2894);
    - plain client to one non-cluster server: correct.

    slotlab sends the groups one after another and raises the first error.
    """
    key_list = [_key_text(k) for k in _distinct_keys(check_keys(keys))]
    load = _check_load(load)
    expire = _check_expire(expire)
    start = time.perf_counter()
    count = _Counter()
    groups: dict[int, list[str]] = {}
    if is_cluster_client(client) and len(key_list) > 1:
        slots = _server_slots(cast(RedisCluster, client), key_list)
        count.trips += 1
        count.commands += len(key_list)
        for key, slot in zip(key_list, slots, strict=True):
            groups.setdefault(slot, []).append(key)
    else:
        groups[0] = key_list  # "If not a cluster client, put all keys in the same slot (0)"
    values: dict[str, str | None] = {}
    loaded = 0
    for group in groups.values():
        got, n = _fetch_batch(client, group, load, expire, count)
        values.update(got)
        loaded += n
    return ReadResult(
        "v3.8 one read EVAL per slot group",
        len(key_list),
        loaded,
        count.trips,
        count.commands,
        count.evals,
        time.perf_counter() - start,
        {k: values[k] for k in key_list},
    )


def read_flow(
    client: Client,
    reads: Sequence[CacheRead],
    version: str = "3.8",
    load: Loader = database,
) -> ReadResult:
    """Run a flow's cache reads in order, as ``version`` sends them; the first error stops it.

    A one-key read (``getCache``) is rockscache's ``Fetch2`` in every version; a BATCH read is
    :func:`v3_8_read` in 3.8 and :func:`v3_7_read` in 3.7. The result adds up the calls.
    """
    read_list = check_reads(reads)
    if _version(version) == "3.3":
        raise ValueError("read_flow models the reads of 3.7 and 3.8 only")
    start = time.perf_counter()
    parts = [
        (v3_8_read if read.batch and version == "3.8" else v3_7_read)(client, read.keys, load)
        for read in read_list
    ]
    values: dict[str, str | None] = {}
    for part in parts:
        values.update(part.values)
    return ReadResult(
        f"v{version} {len(read_list)} cache calls",
        sum(p.keys for p in parts),
        sum(p.loaded for p in parts),
        sum(p.round_trips for p in parts),
        sum(p.commands for p in parts),
        sum(p.evals for p in parts),
        time.perf_counter() - start,
        values,
    )
