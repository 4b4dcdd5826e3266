"""A proxy-mode endpoint: one address in front of a Redis Cluster, as managed clouds offer it.

The application uses a plain, non-cluster client; the proxy routes each command to the node
that owns its keys, follows MOVED and ASK itself, and applies rules of its own. Real proxies are
closed source; slotlab's :class:`Proxy` models their *published* rules closely enough to
reproduce OpenIM's bug: one EVAL whose keys span slots fails with ``ERR 'EVAL' command keys must
in same slot`` while a DEL of the same keys works. Start one with ``lab.proxy_client("alibaba")``
or ``Proxy(["127.0.0.1:7000"], personality="alibaba").start()``; it serves on a loopback port
from a background thread (on uvloop when installed), so notebooks use it synchronously.

``rules`` decides what the proxy does with a request, with no network (:func:`decide`); one file
per personality holds its rules and their sources (``alibaba``, ``passthrough``); ``transport``
carries the decisions out. Texts the proxy makes up start ``ERR slotlab proxy:``.
"""

from __future__ import annotations

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
