"""The emulated backend: a Redis Cluster made of fakeredis stores, for machines with no server.

fakeredis stores data faithfully but knows nothing of slots. Each node here is a fakeredis store
(one ``FakeServer``) behind its own loopback TCP listener that speaks RESP2 and RESP3, and a
layer in front of it does what a Redis 7.0 cluster node does before it runs a command, in the
server's order (``processCommand`` in server.c, ``getNodeByQuery`` in cluster.c):

1. look the command up in the server's own command table (``slotlab.commands``), check arity;
2. find its keys; keys in different slots -> ``CROSSSLOT``, on one node too;
3. a slot served elsewhere -> ``MOVED``; a slot being migrated -> ``ASK`` or ``TRYAGAIN``;
4. queue it (MULTI), run it on fakeredis, or run it here (CLUSTER, COMMAND, HELLO, INFO,
   ASKING, READONLY, EVAL and scripts, MIGRATE, ...).

Scripts run in fakeredis's Lua, with ``redis.call`` routed through the same checks a real node
applies to a script's commands (``scriptCall`` in script.c), so an undeclared key on another node
or in another slot fails with the server's words. Every node has its own script cache.

All nodes are served by one asyncio loop in one background thread; blocking commands (BLPOP and
friends) wait in worker threads so that they never stall the others. See ``docs/emulated.md``
for what differs from a real server.

The package, one concept a module (after fakeredis's own layout):

- ``compat``: every use of fakeredis's private API, and the fakeredis versions it was tested with;
- ``helpers``: reply values, conversions between fakeredis's values and ``slotlab.resp``'s;
- ``cluster``: the nodes and who serves each slot;
- ``node_checks``: ``getNodeByQuery`` (slot ownership, MOVED, ASK, TRYAGAIN, CROSSSLOT);
- ``client``: one client connection, ``processCommand``, blocking commands;
- ``registry``: the commands run here rather than on fakeredis;
- ``connection``, ``keyspace``, ``pubsub``, ``transactions``, ``scripting``,
  ``cluster_commands``, ``server`` (INFO, COMMAND, ROLE, WAIT): those commands, by group;
- ``backend``: ``EmulatedBackend``, the loop thread and the listeners.
"""

from __future__ import annotations

# Importing the command modules registers their handlers.
from slotlab.backends.emulated import (  # noqa: F401
    cluster_commands,
    connection,
    keyspace,
    monitor,
    pubsub,
    scripting,
    server,
    transactions,
)
from slotlab.backends.emulated.backend import EmulatedBackend
from slotlab.backends.emulated.helpers import REDIS_VERSION, EmulatorStartError, key_slot
from slotlab.backends.emulated.scripting import SCRIPT_TIME_LIMIT, parse_shebang

__all__ = [
    "REDIS_VERSION",
    "SCRIPT_TIME_LIMIT",
    "EmulatedBackend",
    "EmulatorStartError",
    "key_slot",
    "parse_shebang",
]
