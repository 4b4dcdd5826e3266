"""The auditor's own wording (no server or vendor says these; their texts live in
``slotlab.errors`` and reach a report through the code that answers with them)."""

from __future__ import annotations

from typing import Final

FINE: Final = "fine"
SPLIT_NOT_ATOMIC: Final = "split, not atomic: one command per slot, each works"
EXEC_PART_FAILED: Final = "EXEC ran, one of its commands failed: {error}"

WHY_NATIVE: Final = "the emulated cluster's node checks (the same code every emulated lab runs)"
WHY_REDIS_PY: Final = "redis-py's RedisCluster source (redis/cluster.py)"
WHY_GO_REDIS: Final = (
    "go-redis's documented routing: ClusterClient picks the node by the command's first key "
    "(cmdSlot); an inference, not run here"
)
WHY_PROXY: Final = "slotlab.proxy.rules.decide: our model of the proxy (real proxies are closed)"

NATIVE_ONE_NODE: Final = (
    "answers for its own keys only: one node of {masters} (no CROSSSLOT, just a partial answer)"
)
REDIS_PY_TX: Final = (
    "refused client-side: a transaction pipeline's keys must map to one slot "
    "(CrossSlotTransactionError)"
)
REDIS_PY_REFUSED: Final = "refused client-side: all keys must map to the same slot"
REDIS_PY_NONATOMIC: Final = " (mget_nonatomic/mset_nonatomic split it by slot, not atomic)"
REDIS_PY_NO_KEY: Final = "refused client-side: no key to route it by (RedisClusterException)"
REDIS_PY_POLICY: Final = (
    "no key: routed by its request policy (every primary for KEYS, DBSIZE, FLUSHALL, SCAN), "
    "replies merged by the client"
)
SENT_TO_OWNER: Final = "sent to the key's node: {outcome}"
GO_FIRST_KEY: Final = "routed by its first key to {node}"
GO_ANY_NODE: Final = "no key: sent to a random node"
GO_ONE_NODE: Final = ", which answers for its own keys only"
GO_TX: Final = (
    "TxPipeline across slots: split into one MULTI/EXEC per slot, not atomic (go-redis v8 and "
    "early v9), or refused client-side with ErrCrossSlot (newer v9 releases)"
)
WHY_GO_TX: Final = "go-redis's cluster.go (processTxPipeline), by release"
PROXY_FANOUT: Final = "fanned out to {nodes} node(s), replies merged: works, not atomic"
PROXY_FANOUT_PER_SLOT: Final = (
    "fanned out as {parts} requests, one per slot, to {nodes} node(s), replies merged: works, "
    "not atomic"
)
PROXY_TX_SPLIT: Final = "split into {parts} MULTI/EXEC, one per slot: each atomic, the whole not"
PROXY_FORWARD: Final = "forwarded whole to the first key's node: {outcome}"
PROXY_FORWARD_ANY: Final = "forwarded to one node: {outcome}"

DETAIL: Final = {
    "crossslot": "keys in {n} different slots",
    "fan-out": "keys in {n} different slots; a proxy splits it, a cluster node refuses it",
    "fan-out-keyless": "no key: it asks about the whole keyspace, which a cluster spreads "
    "over its masters",
    "multi-crossslot": "MULTI/EXEC of {cmds} command(s) over {n} slots",
    "script-zero-keys": "a script run with numkeys 0{touched}",
    "script-undeclared-key": "the script touches {undeclared} key(s) not passed in KEYS: {keys}",
    "script-hidden-key": "Alibaba's script check: {problem}",
    "script-no-cluster": "the script's shebang says no-cluster",
    "select": "SELECT {db}: a cluster has database 0 only",
    "swapdb": "SWAPDB: a cluster has database 0 only",
    "move": "MOVE to database {db}: a cluster has database 0 only",
    "sort-pattern": "SORT with {option} {pattern}: a cluster refuses BY patterns and GET",
}

FIX_TAG: Final = (
    "put the hash tag {tag} in every key of this command (e.g. {example!r}); with {family} tags "
    "the busiest tag, {hot}, would carry {share} of the key uses seen (about {uses}; the "
    "busiest slot carries {now} now)"
)
FIX_PARTIAL: Final = (
    "no common part of all {n} keys: send one command per slot (group the keys by slot, as a "
    "cluster client does) or pipeline single-key commands{best}"
)
FIX_PARTIAL_BEST: Final = "; the largest colocatable part is {tag} ({k} of {n} keys)"
FIX_PIPELINE: Final = "pipeline single-key commands instead (one command per key)"
FIX_DB: Final = (
    "keep everything in database 0: give the keys a prefix per former database instead"
)
FIX_SORT: Final = (
    "SORT without BY/GET, then read the keys the pattern named yourself (one MGET of keys that "
    "share the list's hash tag, or pipelined single-key reads)"
)
FIX_SCRIPT_KEYS: Final = (
    "pass every key the script touches in KEYS and call redis.call with KEYS[n] itself"
)
FIX_SCRIPT_ZERO: Final = "pass the keys the script touches in KEYS (numkeys > 0)"
FIX_NO_CLUSTER: Final = "drop flags=no-cluster once its keys share one slot"
FIX_FANOUT_KEYLESS: Final = (
    "run it on every master (a cluster client's target_nodes), or keep a key of your own that "
    "lists what you need (e.g. a set of ids) instead of scanning the keyspace"
)
NOTE_UNRESOLVED: Final = (
    "{name} {sha} ({count} line(s), first at line {line_no}): its script was not loaded in this "
    "capture (no EVAL or SCRIPT LOAD of it), so the keys it touches are unknown; capture from "
    "before the application starts, or audit the script's EVAL"
)
NOTE_EMPTY_RUN: Final = (
    "scripts run once per (script, number of keys) on an empty emulated node, so a script "
    "whose keys depend on stored data may touch more keys in production"
)
LAYOUT_DEFAULT: Final = "the default layout of {masters} masters (as redis-cli --cluster create)"
LAYOUT_GIVEN: Final = "the layout given ({masters} masters)"
