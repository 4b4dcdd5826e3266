"""Shared fixtures: one real cluster per test session, and the rule for when it may be skipped.

Tests that need a redis-server skip with a one-line reason when none is found, except where
``SLOTLAB_REQUIRE_REAL=1`` (CI): there a missing server is a failure, never a silent skip.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

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


@contextlib.contextmanager
def standalone_server(path: str, workdir: Path) -> Iterator[redis.Redis]:
    """One plain (non-cluster) redis-server on a unix socket: no TCP port to pick or clash."""
    sock = workdir / "redis.sock"
    args = [
        path, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
        "--save", "", "--appendonly", "no", "--dir", str(workdir),
        "--logfile", str(workdir / "redis.log"), "--daemonize", "no",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    client = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"standalone redis-server did not start; see {workdir}"
                    ) from exc
                time.sleep(0.02)
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


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
def plain(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    """One plain Redis that is not a cluster: a real redis-server, or fakeredis when emulated."""
    if lab.backend_name == "real":
        with standalone_server(real_server_or_skip().path, tmp_path_factory.mktemp("plain")) as r:
            yield r
    else:
        import fakeredis

        yield fakeredis.FakeRedis(decode_responses=True)
