"""A proxy-mode endpoint: one address in front of a Redis Cluster, as managed clouds offer it.

A cloud "proxy mode" endpoint hides the cluster behind one address, so the application uses a
plain, non-cluster client. The proxy routes each command to the node that owns its keys, follows
MOVED and ASK itself, and applies rules of its own. Real proxies are closed source; slotlab's
:class:`Proxy` models their *published* rules closely enough to reproduce OpenIM's bug exactly:
one Lua EVAL whose keys span several slots fails with ``ERR 'EVAL' command keys must in same
slot``, while a DEL of the same keys works.

Start one in front of a lab (``lab.proxy_client("alibaba")``) or any cluster::

    with Proxy(["127.0.0.1:7000"], personality="alibaba") as px:
        r = redis.Redis(px.host, px.port)

The proxy is an asyncio server on a loopback port chosen by the OS, running in a background
thread so that notebooks can use it synchronously (on uvloop when it is installed).

The package is the rules and the transport, apart:

- ``rules``: :func:`decide` takes one request and the slot map and returns a decision (answer
  here, forward to the node of slot S, fan out and merge, a split transaction), with no network;
- one file per personality with its rules and where each comes from: ``alibaba`` (Alibaba
  Cloud's proxy mode) and ``passthrough`` (routes by the first key, as go-redis's ClusterClient;
  every node error, CROSSSLOT included, reaches the client). A third is one more file;
- ``script_check``: the static Lua check of Alibaba's Lua limits page (:func:`check_script`);
- ``transport``: sessions, node connections, redirects and NOSCRIPT in one place.

Errors the proxy makes up itself start ``ERR slotlab proxy:`` (texts in ``slotlab.errors``), so
they cannot be mistaken for a server's or a vendor's. A client that sends bytes that are not
RESP gets the server's protocol error text and is disconnected; other clients are not affected.
"""

from __future__ import annotations

from typing import Final

from slotlab import errors
from slotlab.proxy.rules import Answer, FanOut, Forward, SessionState, Transaction, decide
from slotlab.proxy.script_check import ScriptProblem, check_script
from slotlab.proxy.transport import (
    EVENT_LOOPS,
    MAX_INFLIGHT,
    PERSONALITIES,
    Proxy,
    ProxyClient,
    ProxyError,
)

__all__ = [
    "EVENT_LOOPS", "MAX_INFLIGHT", "PERSONALITIES", "Answer", "FanOut", "Forward", "Proxy",
    "ProxyClient", "ProxyError", "ScriptProblem", "SessionState", "Transaction", "check_script",
    "decide",
]  # fmt: skip

#: Alibaba's texts, under the names earlier versions of this module gave them.
ERR_SCRIPT_CROSS_SLOT: Final = errors.ALIBABA_CROSS_SLOT
ERR_SCRIPT_NO_KEYS: Final = errors.ALIBABA_NO_KEYS
ERR_BAD_SCRIPT: Final = errors.ALIBABA_BAD_SCRIPT
