"""Shared fixtures: one real cluster per test session, and the rule for when it may be skipped.

Tests that need a redis-server skip with a one-line reason when none is found, except where
``SLOTLAB_REQUIRE_REAL=1`` (CI): there a missing server is a failure, never a silent skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from slotlab.backends.real import RedisServerNotFound, ServerBinary, find_redis_server
from slotlab.lab import Lab, start_lab


def require_real() -> bool:
    """True where a missing redis-server must fail the run (CI sets SLOTLAB_REQUIRE_REAL=1)."""
    return os.environ.get("SLOTLAB_REQUIRE_REAL", "") not in ("", "0")


def real_server_or_skip() -> ServerBinary:
    """The redis-server to test against; skip (or fail, in CI) when there is none."""
    try:
        return find_redis_server()
    except RedisServerNotFound as exc:
        first_line = str(exc).splitlines()[0]
        if require_real():
            pytest.fail(f"SLOTLAB_REQUIRE_REAL is set but: {first_line}", pytrace=False)
        pytest.skip(f"no redis-server 7.0+: {first_line}")


@pytest.fixture(scope="session")
def real_server() -> ServerBinary:
    """The redis-server binary the real backend will run."""
    return real_server_or_skip()


@pytest.fixture(scope="session")
def real_lab_session(real_server: ServerBinary) -> Iterator[Lab]:
    """One 3-master real cluster shared by the whole session (forming one takes ~2 s)."""
    lab = start_lab(masters=3, backend="real")
    yield lab
    lab.stop()


@pytest.fixture
def real_lab(real_lab_session: Lab) -> Lab:
    """The shared real cluster, emptied (FLUSHALL, SCRIPT FLUSH) before the test."""
    real_lab_session.reset()
    return real_lab_session


@pytest.fixture(scope="module", params=["real", "emulated"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A 3-master cluster: the session's real one, or an emulated one for this module."""
    if request.param == "real":
        real_server_or_skip()
        yield request.getfixturevalue("real_lab_session")
        return
    emulated = start_lab(masters=3, backend="emulated")
    yield emulated
    emulated.stop()


@pytest.fixture(scope="module")
def plain(lab: Lab) -> redis.Redis:
    """A plain Redis that is not a cluster, of the lab's backend: a real redis-server, or a
    fakeredis server."""
    return lab.standalone_client()
