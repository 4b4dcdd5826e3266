"""docs/cheatsheet.md is what a lab says today: regenerated on both backends, it must not differ.

Where redis-py is another version than the one the page records (the lowest-versions run),
redis-py's column is left out of the comparison, and only it: the server's and the proxies'
texts must still match.
"""

from __future__ import annotations

import re
from pathlib import Path

import redis

from slotlab import cheatsheet
from slotlab.cheatsheet import HEADER
from slotlab.lab import Lab

ROOT = Path(__file__).resolve().parent.parent
SHEET = ROOT / "docs" / "cheatsheet.md"
# \s+ throughout: the page wraps its lines, so the sentence may break at any space.
_RECORDED = re.compile(r"redis-py's\s+column\s+is\s+redis-py\s+(\S+)'s\.")


def _without_redis_py_column(text: str) -> str:
    column = HEADER.index("redis-py's `RedisCluster` says")
    lines = []
    for line in _RECORDED.sub("", text).splitlines():
        if line.startswith("| "):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            del cells[column]
            line = "|".join(cells)
        lines.append(line)
    return "\n".join(lines)


def test_the_committed_sheet_is_what_the_lab_says(lab: Lab) -> None:
    fresh, committed = cheatsheet.page(lab), SHEET.read_text(encoding="utf-8")
    recorded = _RECORDED.search(" ".join(committed.split()))
    assert recorded, "the page no longer says which redis-py it records"
    if recorded[1] == redis.__version__:
        assert fresh == committed, "run `python -m slotlab.cheatsheet` and commit the page"
    else:
        assert _without_redis_py_column(fresh) == _without_redis_py_column(committed)


def test_every_rule_has_every_party_and_a_fix(lab: Lab) -> None:
    for row in cheatsheet.rows(lab):
        assert len(row.cells()) == len(HEADER) and all(row.cells())
        assert row.server.startswith(("`-", "works → "))


def test_the_column_filter_drops_only_redis_py() -> None:
    line = "| a | b | c | `RedisClusterException: x` | d | e | f |"
    assert _without_redis_py_column(line) == " a | b | c | d | e | f "
