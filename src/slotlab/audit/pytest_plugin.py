"""A CI gate: run your application's tests against a recorded Redis, fail on cross-slot hazards.

Off unless asked (``pytest --slotlab-audit``, or ``slotlab_audit = true`` in the ini file).
When on, the session starts an embedded lab (``--slotlab-audit-backend emulated``, the default,
or ``real``), hands your tests a plain Redis server of that lab (the ``slotlab_redis`` fixture,
and the URL in the environment variable ``REDIS_URL``, or the one ``--slotlab-audit-env``
names), records every command with ``MONITOR`` and, at the end, audits the capture. The run
fails (exit status 1) when a hazard fails behind the chosen proxy personality
(``--slotlab-audit-proxy alibaba``, the default, or ``passthrough``), or anywhere at all with
``--slotlab-audit-proxy none`` (a native cluster and every client). The report names each
hazard's first line, the test that sent it, its verdicts and the fix.

The application talks to ONE plain server, as it does before it moves to a cluster, so that
every command it sends runs and is recorded (a cluster node or a proxy would refuse the
cross-slot ones before ``MONITOR`` shows them); the verdicts say what each setting would do.
Installed, the entry point registers it; without installing, ``-p slotlab.audit.pytest_plugin``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["slotlab_redis"]

_MARK = "slotlab-audit:"
_PROXIES = ("alibaba", "passthrough", "none")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("slotlab-audit", "cross-slot hazards in this suite's Redis traffic")
    group.addoption("--slotlab-audit", action="store_true", default=None,
                    help="record every Redis command the tests send and fail on hazards")
    group.addoption("--slotlab-audit-backend", default=None, choices=("emulated", "real"),
                    help="the embedded lab's backend (default: emulated)")
    group.addoption("--slotlab-audit-proxy", default=None, choices=_PROXIES,
                    help="fail on hazards that fail behind this proxy personality "
                         "(default: alibaba); none: on every hazard")
    group.addoption("--slotlab-audit-env", default=None, metavar="NAME",
                    help="the environment variable that gets the server's URL (REDIS_URL)")
    group.addoption("--slotlab-audit-junit", default=None, metavar="PATH",
                    help="also write the report as JUnit XML to PATH")
    parser.addini("slotlab_audit", "turn the slotlab audit gate on", type="bool", default=False)
    parser.addini("slotlab_audit_backend", "emulated or real", default="emulated")
    parser.addini("slotlab_audit_proxy", "alibaba, passthrough or none", default="alibaba")
    parser.addini("slotlab_audit_env", "the URL's environment variable", default="REDIS_URL")


def _option(config: pytest.Config, name: str) -> Any:
    value = config.getoption(f"--slotlab-audit-{name}")
    return value if value is not None else config.getini(f"slotlab_audit_{name}")


def pytest_configure(config: pytest.Config) -> None:
    enabled = config.getoption("--slotlab-audit") or config.getini("slotlab_audit")
    if not enabled:
        return
    proxy = _option(config, "proxy")
    backend = _option(config, "backend")
    if proxy not in _PROXIES:
        raise pytest.UsageError(f"slotlab_audit_proxy = {proxy!r}: choose one of "
                                f"{', '.join(_PROXIES)}")  # fmt: skip
    if backend not in ("emulated", "real"):
        raise pytest.UsageError(f"slotlab_audit_backend = {backend!r}: emulated or real")
    config.pluginmanager.register(_Gate(config, backend, proxy), "slotlab-audit-gate")


class _Gate:
    """The session's lab, capture and verdict."""

    def __init__(self, config: pytest.Config, backend: str, proxy: str) -> None:
        self.config = config
        self.backend = backend
        self.proxy = proxy
        self.env = _option(config, "env")
        self.lab: Any = None
        self.client: Any = None
        self.capture: Any = None
        self.report: Any = None
        self.failing: list[Any] = []
        self.tests: dict[int, str] = {}
        self._saved_env: str | None = None

    # -- the session --------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        from slotlab.audit import capture
        from slotlab.lab import start_lab

        self.lab = start_lab(masters=3, backend=self.backend)
        self.client = self.lab.standalone_client()
        kw = self.client.connection_pool.connection_kwargs
        auth = f":{kw['password']}@" if kw.get("password") else ""
        self._saved_env = os.environ.get(self.env)
        os.environ[self.env] = f"redis://{auth}{kw['host']}:{kw['port']}/0"
        self.capture = capture(self.client)

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.client is not None:  # the test's name, in the capture, before its commands
            self.client.echo(_MARK + item.nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.capture is None:
            return
        try:
            lines = self._drain()
            self.report = _audit(lines, self.lab.topology())
            self.tests = _tests_by_line(lines)
            setting = {"alibaba": "alibaba proxy", "passthrough": "passthrough proxy"}.get(
                self.proxy)
            self.failing = [h for h in self.report.hazards
                            if setting is None or not h.verdicts[setting].ok]  # fmt: skip
            junit = self.config.getoption("--slotlab-audit-junit")
            if junit:
                with open(junit, "w", encoding="utf-8") as f:
                    f.write(self.report.junit())
        finally:
            self.capture.stop()
            if self._saved_env is None:
                os.environ.pop(self.env, None)
            else:
                os.environ[self.env] = self._saved_env
            self.lab.stop()
        if self.failing and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _drain(self) -> list[str]:
        """Every line, up to an ECHO sent last (so that nothing sent before it is missing)."""
        end = _MARK + "end-" + uuid.uuid4().hex
        self.client.echo(end)
        deadline = time.monotonic() + 10
        lines: list[str] = self.capture.lines
        while time.monotonic() < deadline and not any(end in line for line in lines[-5:]):
            time.sleep(0.02)
            lines = self.capture.lines
        return lines

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.report is None:
            return
        tr = terminalreporter
        tr.section("slotlab audit")
        where = "anywhere" if self.proxy == "none" else f"behind the {self.proxy} proxy"
        if not self.failing:
            tr.write_line(f"slotlab audit: no hazard fails {where} "
                          f"({len(self.report.hazards)} hazard(s) in all, "
                          f"{self.report.commands} command(s) recorded)")  # fmt: skip
            return
        tr.write_line(f"slotlab audit: {len(self.failing)} hazard(s) fail {where}; "
                      f"{self.report.commands} command(s) recorded")  # fmt: skip
        for h in self.failing:
            tr.write_line("")
            test = self.tests.get(h.line_no)
            if test:
                tr.write_line(f"first sent by {test}")
            tr.write_line(h.text())


def _audit(lines: list[str], topology: Any) -> Any:
    from slotlab.audit import audit_lines

    return audit_lines(lines, nodes=topology, source="monitor")


def _tests_by_line(lines: list[str]) -> dict[int, str]:
    """Line number -> the test that was running (from the ECHO markers)."""
    out: dict[int, str] = {}
    current = ""
    for n, line in enumerate(lines, 1):
        at = line.find('"ECHO" "' + _MARK)
        if at >= 0:
            current = line[at + len('"ECHO" "' + _MARK) : -1]
            continue
        if current and not current.startswith("end-"):
            out[n] = current
    return out


@pytest.fixture
def slotlab_redis(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A ``redis.Redis`` (replies decoded) to the recorded server; needs ``--slotlab-audit``."""
    gate = request.config.pluginmanager.get_plugin("slotlab-audit-gate")
    if gate is None or gate.lab is None:
        pytest.fail("slotlab_redis needs the audit gate: run pytest with --slotlab-audit",
                    pytrace=False)  # fmt: skip
    import redis

    client = redis.Redis.from_url(os.environ[gate.env], decode_responses=True)
    yield client
    client.close()
