"""The exercises and self-tests of lessons 01-07, each judged against the learner's own lab.

Every judge asks the lab for what it expects (``CLUSTER KEYSLOT``, the topology, the proxy's
reply), returns why a right answer is right, and raises :class:`~slotlab.exercises.Wrong` naming
the rule a wrong answer breaks, without naming the right answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from slotlab import openim
from slotlab.exercises import QUIZZES, Question, Wrong, exercise
from slotlab.lab import Lab
from slotlab.slots import SLOT_COUNT, crc16, hash_tag

_TAG_RULE = "only the bytes between the first `{` and the first `}` after it are hashed, if any"


def _server_slots(lab: Lab, keys: list[str]) -> list[int]:
    """Each key's slot as the server computes it (``CLUSTER KEYSLOT``)."""
    node = lab.node_client(0)
    try:
        return [int(node.execute_command("CLUSTER KEYSLOT", key)) for key in keys]
    finally:
        node.close()


def _strings(answer: Any, what: str, count: int | None = None) -> list[str]:
    if isinstance(answer, str) or not isinstance(answer, (list, tuple, set)):
        raise Wrong(f"give {what} as a list of strings, not {type(answer).__name__}.")
    keys = list(answer)
    if not all(isinstance(k, str) for k in keys):
        raise Wrong(f"give {what} as a list of strings (str), one per key.")
    if len(set(keys)) != len(keys):
        raise Wrong("a key appears twice in your list.")
    if count is not None and len(keys) != count:
        raise Wrong(f"give exactly {count} keys, not {len(keys)}.")
    return keys


# ---- lesson 01 ----------------------------------------------------------------------------

SESSIONS = [f"session:{i}" for i in range(2, 11)]


@exercise("01.same_node", "a list of the keys among session:2 to session:10 on session:1's node")
def _same_node(answer: Any, lab: Lab) -> str:
    keys = _strings(answer, "the keys")
    for key in keys:
        if key not in SESSIONS:
            raise Wrong(f"{key!r} is not one of session:2 to session:10.")
    topology = lab.topology()
    slot_of = dict(zip(["session:1", *SESSIONS], _server_slots(lab, ["session:1", *SESSIONS]),
                       strict=True))
    home = topology.node_for_slot(slot_of["session:1"])
    for key in keys:
        node = topology.node_for_slot(slot_of[key])
        if node.index != home.index:
            raise Wrong(f"{key} is in slot {slot_of[key]}, which node {node.index} serves, "
                        f"not node {home.index} (session:1's): a key lives on the node that "
                        "serves its slot.")
    missing = [k for k in SESSIONS if topology.node_for_slot(slot_of[k]).index == home.index
               and k not in keys]
    if missing:
        raise Wrong(f"every key you list is on node {home.index}, but {len(missing)} more of "
                    "session:2 to session:10 are on it too: find each key's slot, then the node "
                    "that serves it (topology.node_for_slot).")
    return (f"these {len(keys)} keys are in slots node {home.index} serves, as session:1's slot "
            f"is: a key lives on the node that serves its slot.")


@exercise("01.slot_twin", 'a key "user:N" (N a whole number) other than "user:1000"')
def _slot_twin(answer: Any, lab: Lab) -> str:
    if not isinstance(answer, str) or not re.fullmatch(r"user:\d+", answer):
        raise Wrong(f'{answer!r} is not of the form "user:N" with N a whole number.')
    if answer == "user:1000":
        raise Wrong("that is user:1000 itself: find a different key in the same slot.")
    mine, target = _server_slots(lab, [answer, "user:1000"])
    if mine != target:
        raise Wrong(f"the server puts {answer} in slot {mine} and user:1000 in slot {target}: "
                    f"a slot is CRC16 of ALL the key's bytes mod {SLOT_COUNT}, so try many N "
                    "at once (slotlab.key_slots) and keep one whose slot matches.")
    return (f"the server puts {answer} in the same slot as user:1000: different bytes, same "
            f"CRC16 mod {SLOT_COUNT}. With {SLOT_COUNT} slots, such twins are common.")


QUIZZES["01"] = {
    "q1": Question(
        "A key has no braces. What does the cluster compute its slot from?",
        {"a": "its first four bytes", "b": "CRC16 of all its bytes, mod 16384",
         "c": "a number the node draws when the key is first written"},
        "b",
        {"a": "every byte counts: `user:1` and `user:2` differ only in the last byte, yet "
              "land in different slots.",
         "b": "slot = CRC16(key) mod 16384, over every byte of the key.",
         "c": "a slot never depends on chance or on when the key is written: every client "
              "and node must compute the same slot from the key alone."},
    ),
    "q2": Question(
        "Your slot function and `CLUSTER KEYSLOT` disagree on a key. Which is right?",
        {"a": "`CLUSTER KEYSLOT`: the server decides where keys live",
         "b": "your function, if it passes the CRC check value",
         "c": "whichever the cluster client caches"},
        "a",
        {"a": "the server is the ground truth; any other computation is checked against it.",
         "b": "passing one check value does not make a function right for every key: the "
              "server is the ground truth.",
         "c": "a client caches the slot MAP (which node serves which slot), not the rule; the "
              "server is the ground truth for a key's slot."},
    ),
    "q3": Question(
        "Why 16384 slots rather than the 65536 a 16-bit CRC could give?",
        {"a": "CRC16 has only 14 good bits",
         "b": "each heartbeat carries a bitmap of the node's slots: 2 KiB instead of 8 KiB",
         "c": "a cluster holds at most 16384 keys"},
        "b",
        {"a": "the CRC's bits are fine; the reason is the size of what nodes send each other.",
         "b": "one bit per slot in every heartbeat: 16384 bits are 2 KiB, enough for about "
              "1000 masters.",
         "c": "a slot holds any number of keys; the count is about what nodes send each "
              "other."},
    ),
}


# ---- lesson 02 ----------------------------------------------------------------------------


@exercise("02.colocate", 'two keys (group_key, member_key), for "GROUP_INFO" of g1 and '
                         '"GROUP_MEMBER_INFO" of g1 and u2')
def _colocate(answer: Any, lab: Lab) -> str:
    group_key, member_key = _strings(answer, "(group_key, member_key)", 2)
    if not ("GROUP_INFO" in group_key and "g1" in group_key and "u2" not in group_key):
        raise Wrong(f"{group_key!r} should still name GROUP_INFO and group g1 (and no member).")
    if not all(part in member_key for part in ("GROUP_MEMBER_INFO", "g1", "u2")):
        raise Wrong(f"{member_key!r} should still name GROUP_MEMBER_INFO, g1 and u2.")
    tags = [hash_tag(k) for k in (group_key, member_key)]
    for key, tag in zip((group_key, member_key), tags, strict=True):
        if tag is None:
            raise Wrong(f"{key!r} has no hash tag, so the server hashes the whole key: "
                        f"{_TAG_RULE}, and not empty.")
    slots = _server_slots(lab, [group_key, member_key])
    if slots[0] != slots[1]:
        raise Wrong(f"the server puts them in slots {slots[0]} and {slots[1]}: each key's tag "
                    "is hashed, and the two tags are not the same bytes.")
    tag = tags[0] or b""
    if b"g1" not in tag:
        raise Wrong(f"they share slot {slots[0]}, but the tag {tag.decode()!r} does not name the "
                    "group: every group's keys would pile into that one slot, on one node. Tag "
                    "by the entity the operation spans: the group.")
    return (f"both keys hash only the tag {tag.decode()!r}: slot {slots[0]} for both on the "
            "server, while other groups keep slots of their own.")


@exercise("02.whole_key", "a list of two different keys, each containing a `{` and a `}`")
def _whole_key(answer: Any, lab: Lab) -> str:
    keys = _strings(answer, "the keys")
    if len(keys) < 2:
        raise Wrong("give at least two different keys.")
    for key, slot in zip(keys, _server_slots(lab, keys), strict=True):
        if "{" not in key or "}" not in key:
            raise Wrong(f"{key!r} needs both a `{{` and a `}}`: the question is about keys with "
                        "braces that are still hashed whole.")
        whole = crc16(key.encode()) % SLOT_COUNT
        if slot != whole:
            raise Wrong(f"the server hashes only part of {key!r} (slot {slot}, not the whole "
                        f"key's {whole}): {_TAG_RULE}, and not empty.")
    return ("the server hashes every byte of each key: none has a non-empty part between "
            "its first `{` and the first `}` after it.")


QUIZZES["02"] = {
    "q1": Question(
        "Which bytes of `{user1000}.following` does the cluster hash?",
        {"a": "`user1000`", "b": "the whole key", "c": "`following`"},
        "a",
        {"a": "only the hash tag, the bytes between the first `{` and the first `}` after it.",
         "b": "the key has a non-empty part between its first `{` and the first `}` after it: "
              "only that part is hashed.",
         "c": "the tag is what sits between the braces, not what follows them."},
    ),
    "q2": Question(
        "Which bytes of `foo{}{bar}` does the cluster hash?",
        {"a": "`bar`", "b": "the whole key", "c": "nothing: the slot is 0"},
        "b",
        {"a": "the server looks only at the FIRST `{` and the first `}` after it; it does not "
              "go on to `{bar}`.",
         "b": "the first `{` is followed at once by `}`: an empty tag, so the whole key is "
              "hashed.",
         "c": "an empty tag does not mean an empty hash: the server falls back to the whole "
              "key."},
    ),
    "q3": Question(
        "Every key of an application is written `{user}:<id>:<field>`. What happens?",
        {"a": "keys still spread evenly: the ids differ",
         "b": "every key is in one slot, on one node, and a slot cannot be split",
         "c": "the server refuses keys whose tags repeat"},
        "b",
        {"a": "only the tag `user` is hashed, the ids are not: one slot for every key.",
         "b": "a tag shared by everything makes one hot node that no resharding can relieve.",
         "c": "any number of keys may share a tag: that is what tags are for, so the server "
              "accepts them all, into one slot."},
    ),
}


# ---- lesson 03 ----------------------------------------------------------------------------

_DEL_SCRIPT = "return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])"
APART = ["user:1:name", "user:2:name", "user:3:name"]


@exercise("03.proxy_del", "a list of three keys for user 7's name, email and city")
def _proxy_del(answer: Any, lab: Lab) -> str:
    keys = _strings(answer, "the keys", 3)
    for field in ("name", "email", "city"):
        if sum(field in k and "user:7" in k for k in keys) != 1:
            raise Wrong(f"one key should be user 7's {field} (name the user as `user:7`).")
    slots = _server_slots(lab, keys)
    if len(set(slots)) > 1:
        raise Wrong(f"the server puts your keys in {len(set(slots))} slots: a script's keys "
                    "must all be in ONE slot (per slot, not per node), and only a shared hash "
                    "tag puts different keys in one slot on purpose.")
    tag = hash_tag(keys[0]) or b""
    if b"7" not in tag:
        raise Wrong(f"one slot, but the tag {tag.decode()!r} does not name user 7: every user's "
                    "keys would share that slot and its node. Tag by the user.")
    proxy = lab.proxy_client("alibaba")
    try:
        proxy.mset({key: "x" for key in keys})
        deleted = proxy.eval(_DEL_SCRIPT, 3, *keys)
    except redis.RedisError as error:
        raise Wrong(f"our model of the proxy refused the script: {error}") from None
    finally:
        proxy.close()
    return (f"one slot ({slots[0]}): our model of the proxy ran the script and deleted "
            f"{deleted} keys.")


def _exception_classes(answer: Any) -> tuple[type[BaseException], ...]:
    classes = answer if isinstance(answer, tuple) else (answer,)
    if not classes or not all(isinstance(c, type) and issubclass(c, BaseException)
                              for c in classes):
        raise Wrong("give an exception class, or a tuple of them, as you would after `except`.")
    return classes


@exercise("03.catch", "an exception class, or a tuple of them, to write after `except`")
def _catch(answer: Any, lab: Lab) -> str:
    classes = _exception_classes(answer)
    if any(c in (Exception, BaseException) for c in classes):
        raise Wrong("`Exception` catches every bug, a typo as much as a cross-slot request: "
                    "name the classes of the errors you mean.")
    rc = lab.cluster_client()
    node = lab.node_client_for(APART[0])
    attempts: list[tuple[str, Callable[[], Any]]] = [
        ("the server's CROSSSLOT (a plain client to a node)", lambda: node.mget(APART)),
                ("redis-py's own refusal (RedisCluster)", lambda: rc.mget(APART))]
    try:
        for what, attempt in attempts:
            try:
                attempt()
            except classes:
                continue
            except Exception as error:
                raise Wrong(f"{what} escaped: {type(error).__name__} is not a subclass of "
                            f"anything you catch. Look at its base classes "
                            f"({type(error).__name__}.__mro__).") from None
            raise Wrong(f"{what} raised nothing: the keys were meant to span slots.")
    finally:
        rc.close()
        node.close()
    return ("both are caught: the server's CROSSSLOT is a RedisError, redis-py's refusal is a "
            f"{RedisClusterException.__name__}, which is not.")


QUIZZES["03"] = {
    "q1": Question(
        "Two keys in two different slots, both served by the SAME node. A plain client sends "
        "`MGET` with both to that node. What happens?",
        {"a": "it works: one node holds both", "b": "`CROSSSLOT`", "c": "`MOVED`"},
        "b",
        {"a": "the rule is per slot, not per node: the node checks every key's slot.",
         "b": "a node refuses any command whose keys span slots, even slots it serves.",
         "c": "`MOVED` says a slot is served elsewhere; this node serves both slots, and "
              "still refuses."},
    ),
    "q2": Question(
        "`rc` is a `RedisCluster`. Does `except redis.RedisError` catch `rc.mget` over three "
        "slots?",
        {"a": "yes", "b": "no"},
        "b",
        {"a": "redis-py raises `RedisClusterException` before sending, and that is not a "
              "`RedisError`.",
         "b": "`RedisClusterException` is not a `RedisError`: that `except` lets it through."},
    ),
    "q3": Question(
        "A unit test runs an `EVAL` over three slots against fakeredis. What does it see?",
        {"a": "`CROSSSLOT`", "b": "no error", "c": "`RedisClusterException`"},
        "b",
        {"a": "fakeredis imitates ONE server: it has no slots to check.",
         "b": "fakeredis has no slots, so the cross-slot mistake passes the test silently.",
         "c": "there is no cluster client in that test, and fakeredis has no slots."},
    ),
    "q4": Question(
        "Through our model of Alibaba's proxy, `DEL` of three keys in three slots:",
        {"a": "deletes them, one slot at a time: not atomic", "b": "fails with `CROSSSLOT`"},
        "a",
        {"a": "our model splits the command per slot, sends each part to its node and adds up "
              "the replies: no longer one atomic command.",
         "b": "a node alone would say `CROSSSLOT`; the proxy fans `DEL` out instead."},
    ),
}


# ---- lesson 04 ----------------------------------------------------------------------------

MEMBERS_50 = [f"u{i}" for i in range(2, 52)]


@exercise("04.evals_50", "a whole number: how many EVALs 3.8 sends through a cluster client")
def _evals_50(answer: Any, lab: Lab) -> str:
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise Wrong(f"give a whole number, not {type(answer).__name__}.")
    keys = openim.create_group_keys("g2", "u1", MEMBERS_50)
    rc = lab.cluster_client()
    try:
        evals = openim.v3_8_by_slot(rc, keys).evals
    finally:
        rc.close()
    if answer == evals:
        return (f"{len(keys)} keys, {evals} EVALs: 3.8 asks the server for each key's slot "
                "and sends one EVAL per slot (per 50 keys of a slot).")
    if answer == len(keys):
        raise Wrong("that is one EVAL per key (3.7's path). 3.8 groups keys by slot: keys "
                    "that share a slot share an EVAL.")
    if answer in (1, -(-len(keys) // 50)):
        raise Wrong("that is batches of 50 keys from any slots, what 3.8 sends for a plain "
                    "client. A cluster client makes 3.8 group the keys by slot first.")
    raise Wrong(f"3.8 sends {'more' if answer < evals else 'fewer'} EVALs than that: one per "
                "slot the keys span (CLUSTER KEYSLOT each key, count the distinct slots).")


@exercise("04.join_request", "a pair (slots, fails): the number of slots and True or False")
def _join_request(answer: Any, lab: Lab) -> str:
    if not (isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], int)
            and isinstance(answer[1], bool)):
        raise Wrong("give a pair (slots, fails): a whole number and True or False.")
    slots_given, fails_given = answer
    keys = openim.handle_group_request_keys("g1", "u3")
    slots = len(set(_server_slots(lab, keys)))
    if slots_given != slots:
        hint = " (that is the number of keys; some may share a slot)" \
            if slots_given == len(keys) else ""
        raise Wrong(f"the keys do not span {slots_given} slots{hint}: ask the server "
                    "(CLUSTER KEYSLOT) for each key's slot and count the distinct ones.")
    proxy = lab.proxy_client("alibaba")
    try:
        openim.v3_8_by_slot(proxy, keys)
        outcome, fails = "the proxy accepted the EVAL", False
    except redis.ResponseError as error:
        outcome, fails = f"our model of the proxy answers `{error}`", True
    finally:
        proxy.close()
    if fails_given != fails:
        raise Wrong(f"{slots} slots is right. Through a proxy, 3.8 has a plain client: it puts "
                    "every key in one EVAL, and the proxy needs one slot per script. Decide "
                    "again from the slot count.")
    return f"{slots} slots in one EVAL from a plain client: {outcome}."


QUIZZES["04"] = {
    "q1": Question(
        "Why did 3.8's slot grouping not help users of Alibaba's proxy?",
        {"a": "it groups only for a cluster client, and a proxy is reached with a plain one",
         "b": "the proxy has fewer slots than a cluster",
         "c": "the proxy does not support EVAL"},
        "a",
        {"a": "3.8 checks for a ClusterClient; any other client gets every key in one group.",
         "b": "the proxy fronts the same cluster, with the same 16384 slots.",
         "c": "the proxy runs one-slot EVALs; it refuses only scripts that break its rules."},
    ),
    "q2": Question(
        "3.7 tags the same keys behind the same proxy without an error. Why?",
        {"a": "one key per EVAL: each script touches one slot",
         "b": "3.7 adds hash tags to its keys", "c": "3.7 asks the proxy for the slots"},
        "a",
        {"a": "a one-key script is always in one slot; the price is a round trip per key.",
         "b": "no version of these keys has a hash tag; 3.7 sends one key per script.",
         "c": "a proxy hides the cluster's slots; 3.7 simply sends one key per script."},
    ),
    "q3": Question(
        "#2894: a 3.8 batch READ of ONE key is refused by the proxy. Which rule does it break?",
        {"a": "all keys in one slot",
         "b": "the script check: its key is not written `KEYS[n]`",
         "c": "a script needs at least two keys"},
        "b",
        {"a": "one key is always one slot: the slot rule has nothing to object to.",
         "b": "the batch script reads its key from a loop variable, which the script check "
              "refuses.",
         "c": "one key is enough for the proxy to route a script."},
    ),
}


# ---- lesson 05 ----------------------------------------------------------------------------

GROUP_10 = ("g1", "u1", [f"u{i}" for i in range(2, 12)])


@exercise("05.proxy_strategies", "a list of strategy names from batching.STRATEGIES")
def _proxy_strategies(answer: Any, lab: Lab) -> str:
    from slotlab import batching

    names = _strings(answer, "the strategy names")
    for name in names:
        if name not in batching.STRATEGIES:
            raise Wrong(f"{name!r} is not a strategy: see batching.STRATEGIES.")
    keys = openim.create_group_keys("g1", "u1", ["u2"])
    rc, proxy = lab.cluster_client(), lab.proxy_client("alibaba")
    works: dict[str, str | None] = {}
    try:
        for name, strategy in batching.STRATEGIES.items():
            rc.delete(*keys)
            try:
                strategy(proxy, keys)
                works[name] = None if all(openim.tagged_as_deleted(rc, k) for k in keys) \
                    else "it left keys untagged"
            except redis.RedisError as error:
                works[name] = f"our model of the proxy answers `{error}`"
        rc.delete(*keys)
    finally:
        rc.close()
        proxy.close()
    for name in names:
        if works[name] is not None:
            raise Wrong(f"{name} does not tag every key behind the proxy: {works[name]}. "
                        "Behind a proxy, every EVAL must hold keys of one slot, written KEYS[n].")
    missing = [n for n, why in works.items() if why is None and n not in names]
    if missing:
        raise Wrong(f"every strategy you name works behind the proxy, but {len(missing)} more "
                    "do: which others send scripts of one slot each, keys written KEYS[n]?")
    return (f"these {len(names)} send only EVALs of one slot, keys written KEYS[n]: the proxy "
            "routes each and its script check accepts each.")


@exercise("05.per_group_slots", "a whole number of slots")
def _per_group_slots(answer: Any, lab: Lab) -> str:
    from slotlab import batching

    if isinstance(answer, bool) or not isinstance(answer, int):
        raise Wrong(f"give a whole number, not {type(answer).__name__}.")
    keys = openim.create_group_keys(*GROUP_10)
    tagged = batching.per_group_tag_keys(keys, "g1")
    slots = len(set(_server_slots(lab, tagged)))
    if answer == slots:
        return (f"{slots} slots: the group's keys share the slot of `g1`; each member's user "
                "keys keep slots of their own, since a user is in many groups and no one "
                "group's tag fits their keys.")
    if answer == 1:
        raise Wrong("not every key can carry the group's tag: a user key such as "
                    "JOIN_GROUPS_KEY:<user> lists ALL the user's groups (batching."
                    "colocation_report says which keys stay apart).")
    if answer == len(set(_server_slots(lab, keys))):
        raise Wrong("that is the slot count WITHOUT tags: with `{g1}`, the group's keys "
                    "share one slot.")
    raise Wrong(f"the tagged keys span {'more' if answer < slots else 'fewer'} slots than "
                "that: ask the server (CLUSTER KEYSLOT) for each tagged key's slot.")


QUIZZES["05"] = {
    "q1": Question(
        "Why does `by_server_slot` (3.8's grouping) fail behind a proxy?",
        {"a": "with a plain client it does not group: an EVAL gets keys of many slots",
         "b": "the proxy refuses `CLUSTER KEYSLOT`",
         "c": "the proxy numbers its slots differently"},
        "a",
        {"a": "3.8 groups only for a cluster client; a proxy is reached with a plain one.",
         "b": "the grouping is never attempted: a plain client skips it.",
         "c": "a proxy fronts the same 16384 slots; the EVAL simply holds keys of many."},
    ),
    "q2": Question(
        "Why can per-group tags (`{g1}`) not put a whole CreateGroup in one slot?",
        {"a": "a user key such as `JOIN_GROUPS_KEY:u2` lists all the user's groups, so no one "
              "group's tag fits it",
         "b": "a tag may not be shorter than three bytes",
         "c": "a slot holds at most a few keys of one group"},
        "a",
        {"a": "the group's own keys share its slot; the members' user keys cannot.",
         "b": "any non-empty tag works, `{g1}` included.",
         "c": "a slot holds any number of keys."},
    ),
    "q3": Question(
        "A global `{GROUP}` tag makes every EVAL one slot. What does it cost?",
        {"a": "nothing", "b": "every group's keys on one node: a hot node no resharding "
                               "can relieve", "c": "the proxy refuses tagged keys"},
        "b",
        {"a": "one tag shared by everything puts all the keys in one slot, on one node.",
         "b": "a slot cannot be split, so that node takes every group's keys and requests.",
         "c": "a proxy routes a tagged key like any other, by its slot."},
    ),
}


# ---- lesson 06 ----------------------------------------------------------------------------

_MIGRATING = re.compile(r"\[(\d+)->-([0-9a-f]+)\]")


def _moving_slots(lab: Lab) -> dict[int, tuple[int, int]]:
    """Each slot the cluster is moving now: ``{slot: (source, target)}``, as the sources mark
    it in ``CLUSTER NODES`` (``[slot->-<target-id>]`` on the ``myself`` line)."""
    ids = [n.node_id for n in lab.nodes]
    moving: dict[int, tuple[int, int]] = {}
    for info in lab.topology().masters:
        if info.down or info.failed:
            continue
        node = lab.node_client(info.index, decode_responses=True)
        try:
            text = str(node.execute_command("CLUSTER", "NODES"))
        finally:
            node.close()
        myself = next(line for line in text.splitlines() if "myself" in line)
        for slot, target_id in _MIGRATING.findall(myself):
            moving[int(slot)] = (info.index, ids.index(target_id))
    return moving


def _moving_or_wrong(lab: Lab) -> dict[int, tuple[int, int]]:
    moving = _moving_slots(lab)
    if not moving:
        raise Wrong("no slot of your lab is being moved right now: run the cell that starts "
                    "the move (lab.slot_migration, three next(steps)) again, then your answer. "
                    "A node answers ASK or TRYAGAIN only while its slot is MIGRATING.")
    return moving


def _reply(lab: Lab, index: int, *command: str) -> str:
    """The first word of node ``index``'s reply to ``command``: an error's kind, or ``OK``."""
    node = lab.node_client(index)
    try:
        node.execute_command(*command)
    except redis.ResponseError as error:  # AskError, TryAgainError... are ResponseErrors
        return {redis.exceptions.AskError: "ASK", redis.exceptions.TryAgainError: "TRYAGAIN",
                redis.exceptions.MovedError: "MOVED"}.get(type(error),
                                                          str(error).split(" ", 1)[0])
    finally:
        node.close()
    return "OK"


@exercise("06.asked", "a list of the keys of `in_slot` for which node `source` answers ASK")
def _asked(answer: Any, lab: Lab) -> str:
    keys = _strings(answer, "the keys")
    moving = _moving_or_wrong(lab)
    slots = dict(zip(keys, _server_slots(lab, keys), strict=True))
    for key in keys:
        if slots[key] not in moving:
            raise Wrong(f"{key} is in slot {slots[key]}, which is not moving: its node serves "
                        "it (or answers MOVED), never ASK; ASK is for a slot being MIGRATED.")
        source, target = moving[slots[key]]
        if _reply(lab, source, "EXISTS", key) != "ASK":
            raise Wrong(f"node {source} still holds {key}: a MIGRATING node serves every key "
                        "it still has, and answers ASK only for a key it no longer holds.")
    missing = 0
    for slot in set(slots.values()) or set(moving):  # the slot you answered for, or any
        node = lab.node_client(moving[slot][1])
        try:
            arrived = node.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1_000_000)
        finally:
            node.close()
        missing += len([k for k in arrived if k not in keys])
    if missing:
        raise Wrong(f"the source answers ASK for {'each key you list, and ' if keys else ''}"
                    f"{missing} {'more ' if keys else ''}key(s) of the moving slot"
                    f"{' too' if keys else ''}: ask node `source` for every key of `in_slot`, "
                    "and keep each that gets ASK (a key the MIGRATE batches already took away).")
    if not keys:
        raise Wrong("the slot has no moved key yet: run the cell that starts the move first.")
    targets = sorted({moving[slots[k]][1] for k in keys})
    return (f"these {len(keys)} keys have left the source already: it answers ASK for each, "
            f"pointing at node {', '.join(map(str, targets))}, the node IMPORTING the slot, "
            "where ASKING lets the next command in.")


@exercise("06.tryagain_pair", "a pair (key1, key2) of keys on which MGET meets TRYAGAIN now")
def _tryagain_pair(answer: Any, lab: Lab) -> str:
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise Wrong("give a pair of two keys, (key1, key2).")
    keys = _strings(list(answer), "the keys", 2)
    moving = _moving_or_wrong(lab)
    first, second = _server_slots(lab, keys)
    if first != second:
        raise Wrong(f"the keys are in slots {first} and {second}: MGET of two slots is "
                    "refused with CROSSSLOT, moving or not; TRYAGAIN is about ONE slot.")
    if first not in moving:
        raise Wrong(f"slot {first} is not moving: its owner holds both keys and serves the "
                    "MGET; TRYAGAIN needs a slot being MIGRATED.")
    source, target = moving[first]
    reply = _reply(lab, source, "MGET", *keys)
    if reply == "OK":
        raise Wrong(f"node {source} (the source) still holds both keys, so it serves the "
                    "MGET itself: a MIGRATING node answers for the keys it has.")
    if reply == "ASK":
        raise Wrong(f"node {source} (the source) holds neither key any more: it answers ASK, "
                    "and the importing node serves both after ASKING. TRYAGAIN needs the keys "
                    "split: one still on the source, one gone.")
    if reply != "TRYAGAIN":
        raise Wrong(f"node {source} answers {reply}, not TRYAGAIN, for that MGET.")
    return (f"node {source} has one of the keys but not the other: neither it nor node "
            f"{target} can run the MGET, so both answer TRYAGAIN until slot {first} has moved.")


QUIZZES["06"] = {
    "q1": Question(
        "A node answers `ASK 1064 127.0.0.1:7001` to a GET. What does a cluster client do?",
        {"a": "updates its slot map: slot 1064 is served by 127.0.0.1:7001 from now on",
         "b": "sends `ASKING`, then the GET, to 127.0.0.1:7001, this once, and keeps its map",
         "c": "sleeps, then sends the GET to the same node again"},
        "b",
        {"a": "that is MOVED. ASK means \"only the next query goes there\": the slot is still "
              "the source's until the move is over.",
         "b": "ASK redirects one query; ASKING lets it into a node that is only IMPORTING.",
         "c": "that is what a client does for TRYAGAIN; the same node would answer ASK again."},
    ),
    "q2": Question(
        "Why can `MGET a{t} b{t}` meet TRYAGAIN while the slot of `t` moves?",
        {"a": "one key has moved and one has not: neither node holds both",
         "b": "a{t} and b{t} are in different slots",
         "c": "MGET is refused for the whole time a slot moves"},
        "a",
        {"a": "a multi-key command needs all its keys on one node; split keys mean TRYAGAIN.",
         "b": "the tag `t` puts both in one slot; two slots would be CROSSSLOT.",
         "c": "while both keys are on the same node, the MGET is served."},
    ),
    "q3": Question(
        "Which of lesson 5's strategies misses no key in the window, without a retry?",
        {"a": "by_client_slot, because it groups keys by slot",
         "b": "one_eval: one script is atomic",
         "c": "pipelined_per_key: single-key calls meet only ASK, which the client follows"},
        "c",
        {"a": "a script over several keys of the moving slot meets TRYAGAIN, and redis-py "
              "gives up after its tries.",
         "b": "one_eval's keys span many slots: redis-py refuses it before sending anything.",
         "c": "a one-key call can never have its keys split between two nodes."},
    ),
    "q4": Question(
        "Which failover can lose a write the master acknowledged?",
        {"a": "a planned one (`CLUSTER FAILOVER` sent to a replica)",
         "b": "an unplanned one (the master crashes)", "c": "neither"},
        "b",
        {"a": "a planned failover waits until the replica has every acknowledged write.",
         "b": "replication is asynchronous: a write acknowledged just before the crash may "
              "never have reached the replica (the specification's \"Write safety\").",
         "c": "replication is asynchronous: a crash can take acknowledged writes with it."},
    ),
}


# ---- lesson 07 ----------------------------------------------------------------------------

AUDIT_LOG = [
    "SET user:1 Ada",
    "MSET user:1 Ada user:2 Grace",
    "MSET {user:1}:name Ada {user:1}:city London",
    "SELECT 1",
    "EVAL \"return redis.call('GET', KEYS[1])\" 1 user:1",
    "EVAL \"return redis.call('GET', 'user:2')\" 0",
    "DEL user:1",
    "SUNIONSTORE {team}:all {team}:a {team}:b",
]
"""Lesson 07, exercise 1: a command log, one command per line in redis-cli syntax."""


def _audit_one(line: str) -> Any:
    from slotlab import audit

    return audit.audit_lines([line], source="commands")


@exercise("07.flagged_lines", "a list of line numbers (1 to 8) of AUDIT_LOG")
def _flagged_lines(answer: Any, lab: Lab) -> str:
    if isinstance(answer, (str, bytes)) or not isinstance(answer, (list, tuple, set)) or \
            not all(isinstance(n, int) and not isinstance(n, bool) for n in answer):
        raise Wrong("give the line numbers as a list of whole numbers, such as [1, 5].")
    numbers = list(answer)
    if len(set(numbers)) != len(numbers):
        raise Wrong("a line number appears twice in your list.")
    for n in numbers:
        if not 1 <= n <= len(AUDIT_LOG):
            raise Wrong(f"{n} is not a line of AUDIT_LOG: its lines are numbered 1 to "
                        f"{len(AUDIT_LOG)}.")
    flagged = {n for n, line in enumerate(AUDIT_LOG, 1) if not _audit_one(line).ok}
    for n in sorted(numbers):
        if n not in flagged:
            raise Wrong(f"line {n} ({AUDIT_LOG[n - 1]}) works in every setting: one key, keys "
                        "sharing a hash tag, or a script whose keys are all passed in KEYS "
                        "cannot span slots.")
    missing = flagged - set(numbers)
    if missing:
        more = f"{len(missing)} more {'is' if len(missing) == 1 else 'are'}"
        raise Wrong(f"every line you name is flagged, but {more}: look for keys in different "
                    "slots, a database other than 0, and a script called with no keys.")
    kinds = sorted({h.kind for n in flagged for h in _audit_one(AUDIT_LOG[n - 1]).hazards})
    return (f"the auditor flags these {len(flagged)} lines ({', '.join(kinds)}): keys in "
            "different slots, a database a cluster does not have, and a script that names no "
            "key, so that nothing can route it by its keys.")


SHOP_LINES = [
    "MSET stock:apple 10 stock:pear 5",
    "DEL session:t1 session:t2",
]
"""Lesson 07, exercise 2: two lines of the shop's traffic, to be rewritten."""

_SESSIONS = {"session:t1": "u1", "session:t2": "u1", "session:t3": "u2"}


def _run_lines(client: redis.Redis, lines: list[str]) -> dict[str, Any]:
    """Run ``lines`` (redis-cli syntax) on ``client`` after the sessions are set; what remains."""
    from slotlab.resp import split_args

    client.flushall()
    client.mset(_SESSIONS)
    for n, line in enumerate(lines, 1):
        args = split_args(line.encode())
        if not args:
            raise Wrong(f"line {n} ({line!r}) is not a command: write one command per line, "
                        "redis-cli style.")
        try:
            client.execute_command(*args)
        except redis.RedisError as error:
            raise Wrong(f"line {n} ({line}) fails on one server: {error}") from None
    keys = sorted(str(key) for key in client.keys("*"))  # the lab's clients decode replies
    return {key: client.get(key) for key in keys}


@exercise("07.fix_lines", "a list of command lines (str), redis-cli syntax, one command each")
def _fix_lines(answer: Any, lab: Lab) -> str:
    lines = _strings(answer, "the command lines")
    if not lines:
        raise Wrong("give at least one command line.")
    from slotlab import audit

    report = audit.audit_lines(lines, source="commands")
    if not report.ok:
        hazard = report.hazards[0]
        raise Wrong(f"the gate still fails: line {hazard.line_no} is a {hazard.kind} hazard "
                    f"({hazard.detail or hazard.command}). A command over keys of several "
                    "slots works only where something splits it; one key per command cannot "
                    "span slots.")
    server = lab.standalone_client()
    try:
        want = _run_lines(server, SHOP_LINES)
        have = _run_lines(server, lines)
    finally:
        server.close()
    for key in sorted(set(want) | set(have)):
        if key not in have:
            raise Wrong(f"after your lines {key} is missing: the original lines leave it there.")
        if key not in want:
            raise Wrong(f"after your lines {key} is still there: the original lines leave no "
                        f"such key.")
        if have[key] != want[key]:
            raise Wrong(f"after your lines {key} holds {have[key]!r}: the original lines leave "
                        "a different value.")
    return (f"the auditor finds nothing in your {len(lines)} lines, and one server ends with the "
            "same keys and values: one key per command cannot span slots. (Send them in one "
            "pipeline without MULTI/EXEC, redis-py's pipeline(transaction=False), to keep one "
            "round trip.)")


QUIZZES["07"] = {
    "q1": Question(
        "What does Redis 8's `cluster_incompatible_ops` (in `INFO stats`) tell you?",
        {"a": "how many sampled commands a cluster would refuse, naming none of them",
         "b": "each command a cluster would refuse, with its keys and a fix",
         "c": "which commands a cloud proxy refuses"},
        "a",
        {"a": "it is a count: it names no command, no key and no fix, and knows nothing of "
              "proxies.",
         "b": "it is a count only; finding the command and its keys is what an auditor adds.",
         "c": "it counts what a native cluster would refuse; proxies have rules of their own."},
    ),
    "q2": Question(
        "Why capture an application's traffic on the single server it uses today, rather than "
        "on the cluster it will move to?",
        {"a": "MONITOR does not work on a cluster node",
         "b": "a node does not run a command it refuses, and MONITOR shows only what a server "
              "runs",
         "c": "a single server's MONITOR lines carry the slot of each key"},
        "b",
        {"a": "MONITOR works on every node, but a node shows only the commands it runs, and it "
              "does not run the ones it refuses.",
         "b": "so the commands that would fail are exactly the ones a cluster's MONITOR never "
              "shows; on one server they all run, and all show.",
         "c": "MONITOR lines carry a time, a database, a client and the arguments; the auditor "
              "computes the slots."},
    ),
    "q3": Question(
        "The shop's checkout script is called with its two keys in `KEYS`, and builds "
        "`'stock:' .. item` itself. Which rule does that break?",
        {"a": "a script may not call DECRBY",
         "b": "a script may take at most one key",
         "c": "every key a script touches must be passed in KEYS"},
        "c",
        {"a": "a script may call any data command; the problem is which key it names.",
         "b": "a script may take many keys, as long as they share a slot.",
         "c": "a cluster routes a script by its KEYS; a key built inside it may live in another "
              "slot, and a proxy's script check refuses it."},
    ),
    "q4": Question(
        "A fix replaces one multi-key command with single-key commands in one pipeline. What "
        "does it give up?",
        {"a": "speed: a round trip per key",
         "b": "atomicity: other clients' commands may run in between, and some may succeed "
              "while others fail",
         "c": "nothing"},
        "b",
        {"a": "one pipeline is one round trip for all its commands (lesson 5).",
         "b": "a pipeline without MULTI/EXEC (redis-py: pipeline(transaction=False)) is not a "
              "transaction; where the keys must change together, give them "
              "one hash tag instead.",
         "c": "the commands no longer run as one: a reader may see some done and others not."},
    ),
}
