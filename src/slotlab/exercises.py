"""Exercises that check themselves: each answer is judged against the learner's own lab.

A lesson is the source. In a code cell, the lines after a line ``# solution`` are the solution;
the lines before it are the stub the learner fills in (``answer = ...``). Cells tagged
``solution`` or ``lesson-only`` belong to the lesson alone. ``python -m slotlab.exercises build``
writes ``notebooks/exercises/NN_*.ipynb`` with the solutions cut out; ``... check`` says
whether those files have drifted from the lessons.

A check cell calls :func:`check` (one exercise) or :func:`self_test` (a lesson's quiz). Both
print a verdict and WHY, the rule the answer keeps or breaks, and never raise: a blank stub gets
"no answer yet", not a traceback. Expected values come from the lab at run time (``CLUSTER
KEYSLOT``, the topology, the proxy's reply), so they cannot drift from the server.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slotlab.lab import Lab

SOLUTION_MARKER = "# solution"
LESSON_ONLY_TAGS = frozenset({"solution", "lesson-only"})


class Wrong(Exception):
    """Raised inside a judge: the answer breaks the rule named in the message."""


@dataclass(frozen=True)
class Verdict:
    """Right or wrong, and why. ``bool(verdict)`` is ``passed``."""

    name: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"{'right' if self.passed else 'not yet'} [{self.name}]: {self.message}"


@dataclass(frozen=True)
class Exercise:
    """``form`` says what shape of answer is wanted; ``judge`` returns why it is right."""

    form: str
    judge: Callable[[Any, Lab], str]


EXERCISES: dict[str, Exercise] = {}


def exercise(name: str, form: str) -> Callable[[Callable[[Any, Lab], str]], Callable[..., str]]:
    """Register ``judge`` as the check of exercise ``name``."""

    def register(judge: Callable[[Any, Lab], str]) -> Callable[[Any, Lab], str]:
        EXERCISES[name] = Exercise(form, judge)
        return judge

    return register


def verdict(name: str, answer: Any, lab: Lab | None = None) -> Verdict:
    """Judge ``answer`` to exercise ``name`` in ``lab``; never raises for a learner's answer."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; known: {', '.join(sorted(EXERCISES))}")
    ex = EXERCISES[name]
    if answer is ...:
        return Verdict(name, False, f"no answer yet: replace the `...` with {ex.form}.")
    if lab is None:
        return Verdict(name, False, "pass your lab too: check(name, answer, lab).")
    try:
        return Verdict(name, True, ex.judge(answer, lab))
    except Wrong as wrong:
        return Verdict(name, False, str(wrong))
    except Exception as error:  # a malformed answer must not error the notebook
        return Verdict(
            name, False, f"your answer could not be checked ({type(error).__name__}: {error}); "
            f"it should be {ex.form}."
        )


def check(name: str, answer: Any, lab: Lab | None = None) -> None:
    """Print whether ``answer`` to exercise ``name`` is right, and why."""
    print(verdict(name, answer, lab))


# ---- self-tests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    """A multiple-choice question; ``why`` explains each option in terms of the rule."""

    text: str
    options: dict[str, str]
    right: str
    why: dict[str, str]


QUIZZES: dict[str, dict[str, Question]] = {}


def quiz_markdown(lesson: str) -> str:
    """The questions of lesson ``lesson``'s self-test, as its markdown cell shows them."""
    lines = []
    for q, question in QUIZZES[lesson].items():
        lines.append(f"**{q}.** {question.text}")
        lines += [f"- ({letter}) {text}" for letter, text in question.options.items()]
        lines.append("")
    return "\n".join(lines).rstrip()


def self_test_verdicts(lesson: str, answers: Any) -> list[Verdict]:
    """One verdict per question of lesson ``lesson``'s self-test."""
    quiz = QUIZZES[lesson]
    if not isinstance(answers, dict):
        answers = {}
    out = []
    for q, question in quiz.items():
        given = answers.get(q, ...)
        letter = given.strip().lower() if isinstance(given, str) else given
        if letter is ...:
            out.append(Verdict(q, False, "no answer yet: put the letter of your choice."))
        elif letter not in question.options:
            out.append(Verdict(q, False, f"{given!r} is not one of the options "
                               f"{', '.join(question.options)}."))
        else:
            out.append(Verdict(q, letter == question.right, question.why[letter]))
    return out


def self_test(lesson: str, answers: Any) -> None:
    """Print, for each question of lesson ``lesson``'s self-test, right or wrong and why."""
    verdicts = self_test_verdicts(lesson, answers)
    for v in verdicts:
        print(v)
    print(f"{sum(map(bool, verdicts))} of {len(verdicts)} right")


# ---- generating the exercise notebooks ----------------------------------------------------

_LINK = re.compile(r"(\]\(\s*<?)([^)\s>]+)")
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.IGNORECASE)


def _relink(text: str) -> str:
    """Links of a lesson, rewritten for a notebook one folder down (``exercises/``)."""

    def fix(m: re.Match[str]) -> str:
        target = m.group(2)
        if _EXTERNAL.match(target):
            return m.group(0)
        if target.startswith("exercises/"):
            return m.group(1) + target.removeprefix("exercises/")
        return m.group(1) + "../" + target

    return _LINK.sub(fix, text)


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def exercise_cells(lesson: dict[str, Any], lesson_name: str) -> list[dict[str, Any]]:
    """The cells of the exercise notebook made from ``lesson`` (outputs cleared)."""
    title = "".join(lesson["cells"][0]["source"]).splitlines()[0].lstrip("# ")
    header = (
        f"*Exercise notebook for [{title}](../{lesson_name}), generated from it by "
        "`make exercises`: edit the lesson, not this file. Replace each `...` with your answer "
        "and run the check cell below it; the lesson shows the solutions.*"
    )
    cells: list[dict[str, Any]] = []
    for cell in lesson["cells"]:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & LESSON_ONLY_TAGS:
            continue
        source = "".join(cell["source"])
        new: dict[str, Any] = {"cell_type": cell["cell_type"], "id": cell.get("id"),
                               "metadata": {"tags": sorted(tags)} if tags else {}}
        if cell["cell_type"] == "code":
            lines = source.split("\n")
            if SOLUTION_MARKER in (line.strip() for line in lines):
                cut = [line.strip() for line in lines].index(SOLUTION_MARKER)
                source = "\n".join(lines[:cut]).rstrip()
            new.update(execution_count=None, outputs=[])
        else:
            source = _relink(source)
        new["source"] = _lines(source)
        if new["id"] is None:
            del new["id"]
        cells.append(new)
    # after the title: "this is the exercise version of ..., edit the lesson"
    cells.insert(1, {"cell_type": "markdown", "id": "exercise-header", "metadata": {},
                     "source": _lines(header)})
    return cells


def lessons(root: Path) -> list[Path]:
    """The lessons that have exercises: they import slotlab.exercises."""
    return [p for p in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
            if "from slotlab.exercises import" in p.read_text(encoding="utf-8")]


def _comparable(cells: list[dict[str, Any]]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c["cell_type"], "".join(c["source"]), tuple(c.get("metadata", {}).get("tags", [])))
            for c in cells]


def drift(root: Path) -> list[str]:
    """Why the stored exercise notebooks do not match their lessons (empty when they do)."""
    problems = []
    for path in lessons(root):
        target = root / "notebooks" / "exercises" / path.name
        want = exercise_cells(json.loads(path.read_text(encoding="utf-8")), path.name)
        if not target.exists():
            problems.append(f"{target.name} is missing")
            continue
        have = json.loads(target.read_text(encoding="utf-8"))["cells"]
        if _comparable(have) != _comparable(want):
            problems.append(f"{target.name} differs from its lesson {path.name}")
    return problems


def build(root: Path) -> list[Path]:
    """Write one exercise notebook per lesson with exercises, unexecuted (``make exercises``)."""
    written = []
    (root / "notebooks" / "exercises").mkdir(exist_ok=True)
    for path in lessons(root):
        lesson = json.loads(path.read_text(encoding="utf-8"))
        notebook = {**lesson, "cells": exercise_cells(lesson, path.name)}
        target = root / "notebooks" / "exercises" / path.name
        target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n",
                          encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """``build`` writes the exercise notebooks; ``check`` fails when they drift from lessons."""
    args = sys.argv[1:] if argv is None else argv
    root = Path.cwd()
    if args == ["build"]:
        for target in build(root):
            print("wrote", target.relative_to(root))
        return 0
    if args == ["check"]:
        problems = drift(root)
        for problem in problems:
            print(problem, "- run `make exercises`")
        return 1 if problems else 0
    print("usage: python -m slotlab.exercises build|check (from the repository root)")
    return 2


from slotlab import lesson_checks  # noqa: E402,F401  (registers every exercise and quiz)

if __name__ == "__main__":
    raise SystemExit(main())
