"""The README's lessons table says what the notebooks say: every lesson, in order, with the time
to learn its notebook's metadata gives (``{"slotlab": {"minutes": N}}``).

``python book/lessons.py`` rewrites the table; the book's landing page is built from the same
code (book/conf.py). A notebook without the key yet may show anything in its time column.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_lessons() -> ModuleType:
    path = ROOT / "book" / "lessons.py"
    spec = importlib.util.spec_from_file_location("slotlab_book_lessons", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


lessons = _load_lessons()
# "Time to learn: 20 minutes." in a lesson's "What you'll need".
_TIME_TEXT = re.compile(r"Time to learn: (\d+) minutes")


def test_readme_table_matches_the_notebooks() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    problems = lessons.readme_mismatches(readme, lessons.lessons(ROOT))
    assert not problems, "README.md's lessons table: " + "; ".join(problems) + (
        ". Run: python book/lessons.py"
    )


@pytest.mark.parametrize("lesson", lessons.lessons(ROOT), ids=lambda x: x.stem)
def test_the_metadata_agrees_with_the_lesson_text(lesson: object) -> None:
    """Where a lesson gives both, its "Time to learn: N minutes" and its metadata agree."""
    minutes = lesson.minutes  # type: ignore[attr-defined]
    if minutes is None:
        return  # no metadata yet: nothing to compare
    cells = json.loads(lesson.path.read_text(encoding="utf-8"))["cells"]  # type: ignore[attr-defined]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    said = {int(m) for m in _TIME_TEXT.findall(text)}
    assert said in (set(), {minutes}), f"the lesson says {said} minutes, its metadata {minutes}"


def _notebook(path: Path, title: str, minutes: int | None) -> None:
    metadata = {"slotlab": {"minutes": minutes}} if minutes is not None else {}
    cell = {"cell_type": "markdown", "metadata": {}, "source": [f"# {title}\n", "\n", "Text."]}
    path.write_text(json.dumps({"cells": [cell], "metadata": metadata}), encoding="utf-8")


@pytest.fixture
def course(tmp_path: Path) -> Path:
    (tmp_path / "notebooks" / "exercises").mkdir(parents=True)
    _notebook(tmp_path / "notebooks" / "00_a.ipynb", "00 · The first", 10)
    _notebook(tmp_path / "notebooks" / "01_b.ipynb", "01 · The second", None)
    _notebook(tmp_path / "notebooks" / "02_c.ipynb", "02 · The third: new", 25)
    _notebook(tmp_path / "notebooks" / "exercises" / "01_b.ipynb", "01 · The second", None)
    return tmp_path


README = """# x

## The course

| notebook | what you learn |
|---|---|
| [00_a](notebooks/00_a.ipynb) | the first things |
| [01_b](notebooks/01_b.ipynb) | the second things |

After the table.
"""


def test_the_rewriter_keeps_each_description_and_writes_the_times(course: Path) -> None:
    found = lessons.lessons(course)
    assert [(x.stem, x.title, x.minutes) for x in found] == [
        ("00_a", "The first", 10), ("01_b", "The second", None), ("02_c", "The third: new", 25)
    ]  # fmt: skip
    assert [x.exercise is not None for x in found] == [False, True, False]
    problems = lessons.readme_mismatches(README, found)
    assert problems and "02_c" in problems[0]  # a lesson the README lacks
    rewritten = lessons.readme_with_table(README, found)
    assert rewritten.splitlines()[4:10] == [
        "| notebook | what you learn | time to learn |",
        "|---|---|---|",
        "| [00_a](notebooks/00_a.ipynb) | the first things | 10 min |",
        "| [01_b](notebooks/01_b.ipynb) | the second things | – |",
        "| [02_c](notebooks/02_c.ipynb) | The third: new | 25 min |",
        "",
    ]
    assert rewritten.endswith("After the table.\n")
    assert lessons.readme_mismatches(rewritten, found) == []
    assert lessons.readme_with_table(rewritten, found) == rewritten


def test_a_time_that_disagrees_with_the_metadata_is_found(course: Path) -> None:
    found = lessons.lessons(course)
    table = lessons.readme_with_table(README, found)
    stale = table.replace("| 10 min |", "| 15 min |")
    assert lessons.readme_mismatches(stale, found) == [
        "00_a: the README says '15 min', its metadata '10 min'"
    ]
    # A lesson without minutes yet may say anything.
    assert lessons.readme_mismatches(table.replace("| – |", "| 5 min |"), found) == []


def test_the_landing_table_links_each_lesson_and_its_exercises(course: Path) -> None:
    found = lessons.lessons(course)
    table = lessons.landing_table(found, link_prefix="../notebooks/")
    assert "| 01 · [The second](../notebooks/01_b.ipynb) | – | " in table
    assert "[exercises](../notebooks/exercises/01_b.ipynb)" in table
    assert lessons.total_time(found) is None  # one lesson has no time yet
    assert lessons.total_time([found[0], found[2]]) == "35 min"


@pytest.mark.parametrize("bad", [0, -5, 12.5, "20", True])
def test_minutes_must_be_a_whole_number(course: Path, bad: object) -> None:
    path = course / "notebooks" / "00_a.ipynb"
    notebook = json.loads(path.read_text())
    notebook["metadata"]["slotlab"]["minutes"] = bad
    path.write_text(json.dumps(notebook))
    with pytest.raises(ValueError, match="00_a.ipynb: metadata.slotlab.minutes .* whole number"):
        lessons.lessons(course)
