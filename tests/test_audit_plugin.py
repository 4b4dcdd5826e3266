"""The pytest gate (slotlab.audit.pytest_plugin) on a small application: tests/sample_app/.

Each run is a pytest of its own (pytester, in a subprocess), with the plugin named explicitly
(``-p slotlab.audit.pytest_plugin``: the entry point needs a reinstall to appear)."""

from __future__ import annotations

import pathlib

import pytest
from conftest import real_server_or_skip

pytest_plugins = ["pytester"]

SAMPLE = pathlib.Path(__file__).parent / "sample_app"
SRC = pathlib.Path(__file__).parent.parent / "src"


@pytest.fixture
def shop(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(SRC))
    return pytester


def _run(pytester: pytest.Pytester, version: str, *args: str) -> pytest.RunResult:
    for name in ("shop.py", "checks.py"):
        pytester.path.joinpath(name).write_text((SAMPLE / version / name).read_text())
    return pytester.runpytest_subprocess("-p", "slotlab.audit.pytest_plugin",
                                         "-p", "no:cacheprovider", "checks.py", *args)


def test_bad_version_fails_with_the_report(shop: pytest.Pytester) -> None:
    result = _run(shop, "bad", "--slotlab-audit")
    assert result.ret == 1
    result.assert_outcomes(passed=2)  # the app's own tests pass: the gate fails the run
    out = result.stdout.str()
    assert "slotlab audit: 1 hazard(s) fail behind the alibaba proxy" in out
    assert "[multi-crossslot] MULTI" in out
    assert "first sent by checks.py::test_cart_total" in out
    assert "{cart:42}" in out  # the fix names the tag that colocates the cart
    assert "[fan-out] MGET" not in out  # the alibaba proxy splits an MGET: not failing there


def test_bad_version_every_hazard_with_proxy_none(shop: pytest.Pytester) -> None:
    result = _run(shop, "bad", "--slotlab-audit", "--slotlab-audit-proxy", "none",
                  "--slotlab-audit-junit", "audit.xml")
    assert result.ret == 1
    out = result.stdout.str()
    assert "[fan-out] MGET" in out and "first sent by checks.py::test_profile_reads" in out
    assert 'failures="2"' in shop.path.joinpath("audit.xml").read_text()


def test_fixed_version_passes(shop: pytest.Pytester) -> None:
    result = _run(shop, "fixed", "--slotlab-audit", "--slotlab-audit-proxy", "none")
    assert result.ret == 0
    result.assert_outcomes(passed=2)
    assert "slotlab audit: no hazard fails anywhere" in result.stdout.str()


def test_off_unless_asked(shop: pytest.Pytester) -> None:
    result = _run(shop, "fixed")
    assert result.ret == 1
    result.assert_outcomes(errors=2)
    assert "slotlab_redis needs the audit gate: run pytest with --slotlab-audit" in (
        result.stdout.str())
    assert "slotlab audit" not in result.stdout.str().replace("slotlab_redis needs", "")


def test_ini_turns_it_on_with_the_real_backend(shop: pytest.Pytester) -> None:
    real_server_or_skip()
    shop.makeini("[pytest]\nslotlab_audit = true\nslotlab_audit_backend = real\n")
    result = _run(shop, "bad")
    assert result.ret == 1
    assert "[multi-crossslot] MULTI" in result.stdout.str()


def test_bad_option_is_a_usage_error(shop: pytest.Pytester) -> None:
    shop.makeini("[pytest]\nslotlab_audit = true\nslotlab_audit_proxy = envoy\n")
    result = _run(shop, "fixed")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "slotlab_audit_proxy = 'envoy': choose one of alibaba, passthrough, none" in (
        result.stderr.str())
