"""The conda route must install what pip does: environment.yml covers pyproject's dependencies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")

ROOT = Path(__file__).resolve().parent.parent
# PyPI name -> conda-forge name, where they differ.
CONDA_NAME = {"redis": "redis-py"}
# Extras that pull in further packages on conda-forge.
EXTRA_PACKAGES = {("fakeredis", "lua"): ["lupa"]}


def _name(requirement: str) -> tuple[str, list[str]]:
    m = re.match(r"\s*([A-Za-z0-9_.-]+)(?:\[([^\]]+)\])?", requirement)
    assert m, requirement
    extras = [e.strip() for e in (m[2] or "").split(",") if e.strip()]
    return m[1].lower(), extras


def test_environment_yml_has_every_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"][0] == "conda-forge"
    conda: set[str] = set()
    pip: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip.extend(dep.get("pip", []))
        else:
            conda.add(re.split(r"[<>=!~ ]", dep, maxsplit=1)[0].lower())
    pip_names = {_name(p)[0] for p in pip if not p.startswith("-")}
    assert "-e ." in pip, "environment.yml must install slotlab itself in editable mode"
    missing = []
    for req in project["dependencies"]:
        name, extras = _name(req)
        wanted = [CONDA_NAME.get(name, name)]
        for extra in extras:
            wanted += EXTRA_PACKAGES.get((name, extra), [])
        missing += [w for w in wanted if w not in conda and w not in pip_names]
    assert not missing, f"environment.yml lacks {missing}"
    assert "redis-server>=7" in env["dependencies"]


def test_readme_gives_the_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    assert "conda env create -f environment.yml" in readme
    assert "mybinder.org" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _specifiers(requirement: str) -> dict[str, str]:
    """``"redis>=6.0,<8.2; marker"`` -> ``{">=": "6.0", "<": "8.2"}``."""
    spec = re.sub(r"^\s*[A-Za-z0-9_.-]+(\[[^\]]*\])?", "", requirement.split(";")[0])
    out = {}
    for part in spec.split("#")[0].split(","):
        m = re.match(r"\s*(>=|<=|==|<|>|~=|!=)\s*([^\s]+)", part)
        if m:
            out[m[1]] = m[2]
    return out


def _runtime() -> dict[str, dict[str, str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_name(req)[0]: _specifiers(req) for req in project["dependencies"]}


def test_every_runtime_dependency_has_a_floor_and_a_ceiling() -> None:
    for name, spec in _runtime().items():
        assert ">=" in spec and "<" in spec, f"{name}: {spec} needs a floor and a ceiling"


def test_environment_yml_declares_the_same_ranges() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {
        re.split(r"[<>=!~ ]", dep, maxsplit=1)[0].lower(): _specifiers(dep)
        for dep in env["dependencies"]
        if isinstance(dep, str)
    }
    for name, spec in _runtime().items():
        assert conda[CONDA_NAME.get(name, name)] == spec, name


def test_lowest_constraints_pin_every_floor() -> None:
    """CI's lowest-versions run (make test-lowest) installs exactly the declared floors."""
    pins = {}
    for line in (ROOT / "tests" / "constraints-lowest.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    floors = {name: spec[">="] for name, spec in _runtime().items()}
    assert set(pins) == set(floors)
    for name, floor in floors.items():
        assert pins[name].split(".")[: len(floor.split("."))] == floor.split("."), name
        assert pins[name].removesuffix(".0") in (floor, floor.removesuffix(".0")), name


def test_ci_runs_the_lowest_versions_and_the_readme_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test-lowest" in ci
    assert ci.rstrip().splitlines()[-1].strip() == "make test"
