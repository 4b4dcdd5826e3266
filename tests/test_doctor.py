"""``slotlab doctor``: every line ok or what to do; exit 1 exactly when the course cannot run.

And a lab that cannot start in a notebook shows the doctor's advice, not a traceback: run here
in a real IPython shell, as Jupyter runs a cell.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from slotlab import cli, doctor
from slotlab.backends.real import RedisServerNotFound
from slotlab.doctor import FIX, NOTE, OK, Finding, Requirement, parse_requirement
from slotlab.lab import start_lab


def _doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = cli.main(["doctor"])
    return code, capsys.readouterr().out.splitlines()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SLOTLAB_BACKEND", "SLOTLAB_REDIS_SERVER"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_this_machine_can_run_the_course(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _doctor(capsys)
    firsts = [line for line in lines[:-1] if not line.startswith(" ")]
    if importlib.util.find_spec("jupyterlab") is None:
        # The unit tests also run in a venv of the lowest versions, without the `lab` extra:
        # there the doctor must name JupyterLab as the one thing to fix.
        assert code == 1 and lines[-1] == "slotlab doctor: 1 to fix", lines
        assert [f for f in firsts if f.startswith(FIX)] == [
            "FIX   jupyterlab: is not installed: pip install 'jupyterlab>=4'"]
        firsts = [f for f in firsts if not f.startswith(FIX)]
    else:
        assert code == 0, "\n".join(lines)
        assert lines[-1] == "slotlab doctor: the course can run here"
    assert all(line.split()[0] in (OK, NOTE) for line in firsts), lines
    named = {line.split()[1].rstrip(":") for line in firsts}
    assert {"python", "redis", "fakeredis", "ipykernel", "backend", "loopback", "jupyter",
            "running"} <= named


def test_a_server_named_but_missing_fails_and_says_what_to_do(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "no-redis-server"
    clean_env.setenv("SLOTLAB_REDIS_SERVER", str(missing))
    code, lines = _doctor(capsys)
    assert code == 1
    fixes = [line for line in lines if line.startswith(FIX)]
    server = next(f for f in fixes if f.startswith("FIX   redis-server:"))
    assert str(missing) in server and "Fix or unset it" in server
    assert any("unset SLOTLAB_REDIS_SERVER to run on the emulated cluster" in f for f in fixes)
    assert lines[-1] == f"slotlab doctor: {len(fixes)} to fix"


def test_an_unknown_backend_is_named(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("SLOTLAB_BACKEND", "cloud")
    code, lines = _doctor(capsys)
    assert code == 1
    [line] = [line for line in lines if line.startswith("FIX   backend:")]
    assert "unknown backend 'cloud'" in line and "unset SLOTLAB_BACKEND" in line


def test_emulated_is_what_auto_picks_without_a_server(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SLOTLAB_BACKEND", "emulated")
    [finding] = doctor.check_backend()
    assert finding == Finding(OK, "backend",
                              "start_lab() starts an emulated cluster here ($SLOTLAB_BACKEND)")


def test_a_package_outside_its_range_gets_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # slotlab's own requirement list swapped for one the installed redis-py cannot meet
    monkeypatch.setattr(doctor, "requirements",
                        lambda: [Requirement("redis", ">=99", None, True),
                                 Requirement("no-such-package-x", ">=1", None, True)])
    outside, missing = doctor.check_packages()
    assert outside.status == FIX and outside.text.endswith("outside the tested range >=99: "
                                                          "pip install 'redis>=99'")
    assert missing == Finding(FIX, "no-such-package-x", "is not installed: pip install "
                              "'no-such-package-x>=1'")


def test_requirements_are_read_from_the_metadata() -> None:
    req = parse_requirement('uvloop<0.24,>=0.17; sys_platform != "win32"')
    assert (req.name, req.specifier, req.extra) == ("uvloop", ">=0.17,<0.24", None)
    assert parse_requirement('ipykernel>=6; extra == "lab"').extra == "lab"
    names = {r.name for r in doctor.requirements()}
    assert {"redis", "fakeredis", "jupyterlab", "ipykernel"} <= names and "pytest" not in names


@pytest.mark.parametrize(("version", "spec", "inside"), [
    ("6.0", ">=6.0,<8.2", True), ("8.1.0", ">=6.0,<8.2", True), ("8.2", ">=6.0,<8.2", False),
    ("5.9.9", ">=6.0", False), ("2.41.0rc1", ">=2.40,<2.42", True), ("1.4", "~=1.3", True),
    ("2.0", "~=1.3", False), ("3", "", True),
])
def test_the_small_range_parser_agrees_with_packaging(version: str, spec: str,
                                                      inside: bool) -> None:
    assert doctor._in_range(version, spec) is inside
    assert Requirement("x", spec, None, True).contains(version) is inside


def test_ports_are_bound_on_loopback() -> None:
    [finding] = doctor.check_ports(4)
    assert finding.status == OK and "4 free ports on 127.0.0.1" in finding.text


def test_a_lab_that_cannot_start_shows_the_advice_in_jupyter(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clean_env.setenv("SLOTLAB_REDIS_SERVER", str(tmp_path / "gone"))
    with pytest.raises(RedisServerNotFound):  # its type stays, for code that catches it
        start_lab(backend="real")
    shell = InteractiveShell.instance(colors="nocolor")
    try:
        result = shell.run_cell("import slotlab\nlab = slotlab.start_lab()")
    finally:
        InteractiveShell.clear_instance()
    assert isinstance(result.error_in_exec, RedisServerNotFound)
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].startswith("RedisServerNotFound: SLOTLAB_REDIS_SERVER=")
    assert "slotlab could not start a lab. The doctor says:" in shown
    assert any(line.startswith("FIX   redis-server:") for line in shown)
    assert shown[-1].startswith("Run `slotlab doctor` in a terminal")
    assert not any("Traceback" in line or 'File "' in line for line in shown)
    assert len(shown) <= 20


def test_running_labs_are_listed_from_their_records(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    # `slotlab lab up` keeps one record per lab in a per-user directory (0700).
    import json
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    records = {"alice": {"masters": 3, "replicas": 0, "daemon_pid": os.getpid()},
               "bob": {"masters": 3, "replicas": 1, "daemon_pid": gone.pid}}
    for name, record in records.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    tmp_path.chmod(0o700)
    monkeypatch.setenv("SLOTLAB_RUNTIME_DIR", str(tmp_path))
    alice, bob = doctor.check_running_lab()
    assert alice.status == OK and alice.text.startswith("lab alice: 3 masters, 0 replica(s)")
    assert bob == Finding(NOTE, "running lab", f"lab bob's record is stale (its process, pid "
                          f"{gone.pid}, is gone): `slotlab lab down --name bob` removes it")
    for name in records:
        (tmp_path / f"{name}.json").unlink()
    [none] = doctor.check_running_lab()
    assert none.status == OK and none.text.startswith("no running lab")
