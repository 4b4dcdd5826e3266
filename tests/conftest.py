"""Shared fixtures: one real cluster per test session, and the rule for when it may be skipped.

Tests that need a redis-server skip with a one-line reason when none is found, except where
``SLOTLAB_REQUIRE_REAL=1`` (CI): there a missing server is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import settings as hypothesis_settings

from slotlab import openim
from slotlab.backends.real import RedisServerNotFound, ServerBinary, find_redis_server
from slotlab.lab import Lab, start_lab

# A lab someone started with `slotlab lab up` is theirs: tests never attach to it (the tests of
# attaching, tests/test_lab_daemon.py, run in a directory of their own and say so).
os.environ["SLOTLAB_ATTACH"] = "0"

# In CI (CI=true) property tests draw the same examples every run: a red build then means a
# change broke something, never that chance found an old bug. Locally they explore.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI", "") not in ("", "0", "false"):
    hypothesis_settings.load_profile("ci")


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
    # No password (an explicit choice): these tests read and write raw wire bytes on nodes and
    # proxies. tests/test_auth.py runs the lab as it starts by default (a random password) on
    # both backends, and so do the fidelity tests and every notebook.
    lab = start_lab(masters=3, backend="real", password=None)
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
    emulated = start_lab(masters=3, backend="emulated", password=None)  # as real_lab_session
    yield emulated
    emulated.stop()


@pytest.fixture(scope="module")
def plain(lab: Lab) -> redis.Redis:
    """A plain Redis that is not a cluster, of the lab's backend: a real redis-server, or a
    fakeredis server."""
    return lab.standalone_client()


class Clients:
    """The ways an application reaches a lab, made once per module and lab."""

    def __init__(self, lab: Lab, plain: redis.Redis) -> None:
        self.lab = lab
        self.plain = plain
        self.cluster = lab.cluster_client()
        self._proxies: dict[tuple[str, bool], redis.Redis] = {}

    def proxy(self, personality: str = "alibaba", script_check: bool = True) -> redis.Redis:
        """A plain client behind a proxy in front of the lab (one per kind, kept)."""
        key = (personality, script_check)
        if key not in self._proxies:
            self._proxies[key] = self.lab.proxy_client(
                personality, script_check_enable=script_check
            )
        return self._proxies[key]

    def node_for(self, key: str) -> redis.Redis:
        """A plain client to the master of ``key``: where go-redis sends an EVAL."""
        return self.lab.node_client_for(key)

    def setting(self, name: str, keys: list[str]) -> tuple[Any, Any]:
        """(the client to delete through, a client that reads every key back)."""
        if name == "cluster":
            return self.cluster, self.cluster
        if name == "alibaba":
            return self.proxy(), self.cluster
        if name == "alibaba_no_script_check":
            return self.proxy(script_check=False), self.cluster
        if name == "node":  # where go-redis sends an EVAL: the first key's master
            return self.node_for(keys[0]), self.cluster
        if name == "plain_server":
            return self.plain, self.plain
        raise AssertionError(f"no setting {name!r}")

    def reset(self) -> None:
        self.lab.reset()
        self.plain.flushall()

    def close(self) -> None:
        for c in self._proxies.values():
            c.close()
        self.cluster.close()


@pytest.fixture(scope="module")
def module_clients(lab: Lab, plain: redis.Redis) -> Iterator[Clients]:
    c = Clients(lab, plain)
    yield c
    c.close()


@pytest.fixture
def clients(module_clients: Clients) -> Clients:
    """The module's clients, with every node and the plain server emptied first."""
    module_clients.reset()
    return module_clients


def assert_all_tagged(client: Any, keys: list[str]) -> None:
    """EVERY key is in rockscache's deleted state: none missed."""
    missed = [k for k in keys if not openim.tagged_as_deleted(client, k)]
    assert missed == [], f"{len(missed)} of {len(keys)} keys not tagged, e.g. {missed[:3]}"


def move_empty_slot(lab: Lab, slot: int, to_node_id: str) -> None:
    """Hand an empty slot to another master the way resharding does, and wait for agreement.

    IMPORTING on the target and MIGRATING on the source first, so that ``SETSLOT NODE`` on the
    target bumps its config epoch: a bare ``SETSLOT NODE`` sent to each node in turn can lose a
    race with gossip from the old owner, which may still claim the slot with a higher epoch.
    Moving the same slot back and forth quickly can still race the gossip: use a lab of the
    test's own for that.
    """
    topology = lab.topology()
    source = topology.node_for_slot(slot)
    if source.node_id == to_node_id:
        return
    by_id = {n.node_id: lab.node_client(n.index) for n in topology}
    target = by_id[to_node_id]
    target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
    by_id[source.node_id].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", to_node_id)
    target.execute_command("CLUSTER", "SETSLOT", slot, "NODE", to_node_id)
    by_id[source.node_id].execute_command("CLUSTER", "SETSLOT", slot, "NODE", to_node_id)
    for node_id, client in by_id.items():
        if node_id not in (to_node_id, source.node_id):
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", to_node_id)
    deadline = time.monotonic() + 10
    while True:
        views = {
            str(c.execute_command("CLUSTER", "SLOTS")) for c in by_id.values()
        }
        owners = {lab.topology().node_for_slot(slot).node_id}
        if len(views) == 1 and owners == {to_node_id}:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the nodes did not agree that {to_node_id} owns slot {slot}")
        time.sleep(0.02)
