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
