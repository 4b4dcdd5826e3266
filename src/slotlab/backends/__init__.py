"""Backends: where a lab's cluster nodes come from.

- ``real``: redis-server processes started by slotlab (the authoritative backend).
"""

from slotlab.backends.base import Backend, NodeAddress

__all__ = ["Backend", "NodeAddress"]
