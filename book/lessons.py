"""The course's lessons as the notebooks describe them: title, time to learn, exercise notebook.

One source for two tables: the book's landing page (book/conf.py) and the README's "The course".
A lesson's time to learn is its notebook's own metadata, ``{"slotlab": {"minutes": N}}``; a
notebook without it has no time yet, and the tables say so rather than guess.

    python book/lessons.py          rewrite the README's lessons table from the notebooks
    python book/lessons.py --check  exit 1 (and say which row) when the README is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LESSON_GLOB = "[0-9][0-9]_*.ipynb"
NO_TIME = "–"
README_HEADER = "| notebook | what you learn | time to learn |"
# A README row: | [00_the_lab](notebooks/00_the_lab.ipynb) | what you learn | 10 min |
# (the time column is absent in a table written before it existed).
_ROW = re.compile(
    r"^\| \[(?P<stem>[^\]]+)\]\(notebooks/(?P=stem)\.ipynb\) \| (?P<what>.*?)"
    r"(?: \| (?P<time>[^|]*?))? \|$"
)
_TITLE = re.compile(r"^#\s+(?:\d+\s*·\s*)?(?P<title>.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Lesson:
    """One lesson notebook: where it is, what its first heading calls it, how long it takes."""

    path: Path
    title: str
    minutes: int | None
    exercise: Path | None

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def time(self) -> str:
        """The time to learn as the tables print it: ``20 min``, or a dash when unknown."""
        return NO_TIME if self.minutes is None else f"{self.minutes} min"


def minutes_of(notebook: dict[str, object], path: Path) -> int | None:
    """The lesson's time to learn from ``metadata.slotlab.minutes``; None when it has none."""
    meta = notebook.get("metadata", {})
    slotlab = meta.get("slotlab", {}) if isinstance(meta, dict) else {}
    if not isinstance(slotlab, dict) or "minutes" not in slotlab:
        return None
    minutes = slotlab["minutes"]
    if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes <= 0:
        raise ValueError(
            f"{path.name}: metadata.slotlab.minutes is {minutes!r}; "
            "write the time to learn as a whole number of minutes, e.g. 20"
        )
    return minutes


def lessons(root: Path = ROOT) -> list[Lesson]:
    """Every lesson notebook (``notebooks/NN_name.ipynb``) in course order."""
    found = []
    for path in sorted((root / "notebooks").glob(LESSON_GLOB)):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        first = next((c for c in notebook["cells"] if c["cell_type"] == "markdown"), None)
        heading = _TITLE.search("".join(first["source"])) if first else None
        if heading is None:
            raise ValueError(f"{path.name}: its first markdown cell needs a '# NN · Title' heading")
        exercise = root / "notebooks" / "exercises" / path.name
        found.append(
            Lesson(
                path=path,
                title=heading["title"],
                minutes=minutes_of(notebook, path),
                exercise=exercise if exercise.is_file() else None,
            )
        )
    return found


def total_time(course: list[Lesson]) -> str | None:
    """The whole course's time to learn, e.g. ``3 h 5 min``; None while a lesson has none."""
    if not course or any(lesson.minutes is None for lesson in course):
        return None
    hours, minutes = divmod(sum(lesson.minutes or 0 for lesson in course), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def landing_table(course: list[Lesson], link_prefix: str) -> str:
    """The landing page's lessons table (MyST markdown), links relative to ``link_prefix``."""
    rows = ["| lesson | time to learn | exercises |", "|---|---|---|"]
    for lesson in course:
        number = lesson.stem.split("_", 1)[0]
        exercise = (
            f"[exercises]({link_prefix}exercises/{lesson.exercise.name})" if lesson.exercise else ""
        )
        rows.append(
            f"| {number} · [{lesson.title}]({link_prefix}{lesson.path.name}) "
            f"| {lesson.time} | {exercise} |"
        )
    return "\n".join(rows)


def _table_span(lines: list[str]) -> tuple[int, int]:
    """Where the README's lessons table starts and ends (end exclusive)."""
    start = next(
        (i for i, line in enumerate(lines) if line.startswith("| notebook | what you learn")), None
    )
    if start is None:
        raise ValueError("README.md has no lessons table ('| notebook | what you learn |')")
    end = start + 2
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return start, end


def readme_rows(readme: str) -> dict[str, tuple[str, str | None]]:
    """The README table's rows: notebook stem -> (what you learn, time as written)."""
    lines = readme.splitlines()
    start, end = _table_span(lines)
    rows = {}
    for line in lines[start + 2 : end]:
        m = _ROW.match(line)
        if m is None:
            raise ValueError(f"README.md: a lessons-table row this script cannot read: {line}")
        rows[m["stem"]] = (m["what"], m["time"])
    return rows


def readme_with_table(readme: str, course: list[Lesson]) -> str:
    """The README with its lessons table rewritten: rows in course order, times from metadata.

    A row keeps its "what you learn"; a new lesson starts with its notebook's title there.
    """
    lines = readme.splitlines()
    start, end = _table_span(lines)
    known = readme_rows(readme)
    table = [README_HEADER, "|---|---|---|"]
    for lesson in course:
        what = known[lesson.stem][0] if lesson.stem in known else lesson.title
        table.append(
            f"| [{lesson.stem}](notebooks/{lesson.path.name}) | {what} | {lesson.time} |"
        )
    return "\n".join(lines[:start] + table + lines[end:]) + "\n"


def readme_mismatches(readme: str, course: list[Lesson]) -> list[str]:
    """What the README's table says that the notebooks do not (empty when it is up to date).

    A lesson whose notebook has no ``minutes`` yet may show anything in its time column.
    """
    rows = readme_rows(readme)
    problems = []
    if list(rows) != [lesson.stem for lesson in course]:
        problems.append(
            f"the table lists {list(rows)}, the notebooks are {[x.stem for x in course]}"
        )
    for lesson in course:
        written = rows.get(lesson.stem, ("", None))[1]
        if lesson.minutes is not None and written != lesson.time:
            problems.append(
                f"{lesson.stem}: the README says {written!r}, its metadata {lesson.time!r}"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is up to date")
    args = parser.parse_args(argv)
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    course = lessons()
    if args.check:
        problems = readme_mismatches(readme, course)
        for problem in problems:
            print(f"README.md: {problem}; run: python book/lessons.py", file=sys.stderr)
        return 1 if problems else 0
    updated = readme_with_table(readme, course)
    if updated != readme:
        readme_path.write_text(updated, encoding="utf-8")
        print("README.md: lessons table rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
