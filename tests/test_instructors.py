"""docs/instructors.md agrees with the lessons, the doctor and the README.

Each lesson's time to learn is written three times: in the guide's timing table, in the
notebook's metadata (``"slotlab": {"minutes": N}``) and in its "Time to learn" line. They must
agree, and every lesson must be in the table. The problems table quotes the doctor: each quote
must be words the doctor (or the server finder it reports) really prints.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from slotlab import doctor

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "instructors.md"
_ROW = re.compile(r"^\| \[[^\]]+\]\(\.\./notebooks/(\d\d_[^)]+\.ipynb)\) \| (\d+) minutes \|", re.M)


def _table() -> dict[str, int]:
    return {name: int(minutes) for name, minutes in _ROW.findall(GUIDE.read_text("utf-8"))}


def _lessons() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_every_lesson_is_timed_alike_in_guide_metadata_and_text() -> None:
    table = _table()
    for lesson in _lessons():
        nb = json.loads(lesson.read_text("utf-8"))
        minutes = nb["metadata"].get("slotlab", {}).get("minutes")
        assert isinstance(minutes, int), f"{lesson.name}: set metadata slotlab.minutes"
        assert lesson.name in table, (f"add a row for {lesson.name} ({minutes} minutes) to "
                                      "docs/instructors.md's timing table")
        assert table[lesson.name] == minutes, f"{lesson.name}: guide and metadata disagree"
        first = "".join(nb["cells"][0]["source"])
        assert f"Time to learn: {minutes} minutes" in first, f"{lesson.name}: its text disagrees"
    assert set(table) == {lesson.name for lesson in _lessons()}, "a row names no lesson"


def test_the_stated_total_is_the_sum() -> None:
    total = sum(_table().values())
    assert f"about {total} minutes" in " ".join(GUIDE.read_text("utf-8").split())


def _doctor_says(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """What the doctor prints on this machine as it is, and broken in the ways a test can
    break it; plus its source, for the FIX lines no test can provoke (an old Python)."""
    for name in ("SLOTLAB_BACKEND", "SLOTLAB_REDIS_SERVER", "CONDA_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    lines = [str(f) for f in doctor.diagnose(doctor.LAB_CHECKS)]
    for env in ({"SLOTLAB_REDIS_SERVER": str(tmp_path / "gone")},
                {"SLOTLAB_REDIS_SERVER": str(tmp_path / "gone"), "SLOTLAB_BACKEND": "real"},
                {"SLOTLAB_BACKEND": "cloud"}, {"PATH": str(tmp_path)}):
        with monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            lines += [str(f) for f in doctor.diagnose(doctor.LAB_CHECKS)]
    source = (ROOT / "src" / "slotlab" / "doctor.py").read_text("utf-8")
    source = re.sub(r'"\s*\n\s*f?"', "", source)  # one string, however it is split in lines
    source = re.sub(r"\{[^{}]*\}", "...", source)  # an f-string's fields are the guide's ...
    for status, what, text in re.findall(r'Finding\((FIX|NOTE), ("[^"]+"|[\w.]+), f?"([^"]*)',
                                         source):
        name = what.strip('"') if what.startswith('"') else "*"  # *: a name known at run time
        lines.append(f"{'FIX' if status == 'FIX' else 'note'}: {name}: {text}")
    return "\n".join(" ".join(line.split()) for line in lines)


def test_the_problems_table_quotes_the_doctor(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    said = _doctor_says(monkeypatch, tmp_path)
    section = GUIDE.read_text("utf-8").split("## Problems attendees meet", 1)[1]
    quotes = re.findall(r"^\| `((?:FIX|note) +[^`]+)`", section, re.M)
    assert len(quotes) >= 8
    for quote in quotes:
        status, what, words = re.match(r"(\S+) +([^:]+): (.*)", quote).groups()  # type: ignore[union-attr]
        fragments = [" ".join(f.split()) for f in words.split("...") if f.strip()]
        assert any(line.startswith((f"{status} {what}: ", f"{status}: {what}: ",
                                    f"{status}: *: "))
                   and all(f in line for f in fragments) for line in said.splitlines()), (
            f"the doctor never says {quote!r}")


def test_the_readme_links_the_guide_and_the_cheat_sheet() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    assert "(docs/instructors.md)" in readme and "(docs/cheatsheet.md)" in readme
