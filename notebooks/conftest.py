"""nbval runs each notebook on the backend ``$SLOTLAB_BACKEND`` names; a few cells need a real
redis-server whatever that backend is (lesson 6's failover). They carry the cell tag
``needs-redis-server``.

Where no redis-server 7.0+ is found those cells skip with a one-line reason, as the unit tests
do (tests/conftest.py), and the rest of the notebook still runs; with ``SLOTLAB_REQUIRE_REAL=1``
(CI) a missing server fails them instead.
"""

from __future__ import annotations

import os
from functools import cache

import pytest

from slotlab.backends.real import RedisServerNotFound, find_redis_server

NEEDS_SERVER = "needs-redis-server"
"""The cell tag of a notebook cell that starts (or uses) a real cluster on any backend."""


@cache
def _missing_server() -> str | None:
    """Why no real cluster can start here (the first line of the finder's message), or None."""
    try:
        find_redis_server()
    except RedisServerNotFound as exc:
        return str(exc).splitlines()[0]
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    cell = getattr(item, "cell", None)  # nbval's IPyNbCell holds its notebook cell
    if cell is None or NEEDS_SERVER not in cell.get("metadata", {}).get("tags", []):
        return
    reason = _missing_server()
    if reason is None:
        return
    if os.environ.get("SLOTLAB_REQUIRE_REAL", "") not in ("", "0"):
        pytest.fail(f"SLOTLAB_REQUIRE_REAL is set but: {reason}", pytrace=False)
    pytest.skip(f"this cell needs a redis-server 7.0+: {reason}")
