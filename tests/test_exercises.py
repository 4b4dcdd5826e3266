"""The exercises: generated notebooks match their lessons, solutions pass, stubs fail politely.

Each answer cell of a lesson is run here in a namespace like the lesson's (a lab, its clients,
the proxy), once whole (the solution) and once cut at ``# solution`` (the learner's blank stub),
and judged by the same check the notebook calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import RedisClusterException

import slotlab
from slotlab import audit, batching, exercises, lesson_checks, openim
from slotlab.exercises import (
    EXERCISES,
    QUIZZES,
    SOLUTION_MARKER,
    exercise_cells,
    quiz_markdown,
    self_test_verdicts,
    verdict,
)
from slotlab.lab import Lab

ROOT = Path(__file__).resolve().parent.parent
LESSONS = exercises.lessons(ROOT)
_CHECK = re.compile(r'^check\("([^"]+)", (\w+), lab\)$')
_SELF_TEST = re.compile(r'^self_test\("([^"]+)", (\w+)\)$')


def _cells(path: Path) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return cells


def _answer_cells(path: Path) -> list[tuple[str, str, str, bool]]:
    """(name, variable, answer cell source, is_quiz) for every check cell of a lesson."""
    cells = _cells(path)
    found = []
    for before, cell in zip(cells, cells[1:], strict=False):
        source = "".join(cell["source"]).strip()
        match = _CHECK.match(source) or _SELF_TEST.match(source)
        if cell["cell_type"] == "code" and match:
            answer = "".join(before["source"])
            assert SOLUTION_MARKER in answer, f"{path.name}: the cell before {source} has no stub"
            found.append((match[1], match[2], answer, source.startswith("self_test")))
    return found


def _stub(source: str) -> str:
    lines = source.split("\n")
    return "\n".join(lines[: [line.strip() for line in lines].index(SOLUTION_MARKER)])


def test_lessons_01_to_07_have_exercises() -> None:
    assert [p.name[:2] for p in LESSONS] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.name)
def test_each_lesson_has_two_exercises_and_a_self_test(lesson: Path) -> None:
    answers = _answer_cells(lesson)
    checks = [name for name, _, _, quiz in answers if not quiz]
    quizzes = [name for name, _, _, quiz in answers if quiz]
    assert len(checks) >= 2 and all(name in EXERCISES for name in checks)
    assert quizzes == [lesson.name[:2]] and 3 <= len(QUIZZES[quizzes[0]]) <= 5
    markdown = "\n".join("".join(c["source"]) for c in _cells(lesson)
                         if c["cell_type"] == "markdown")
    assert quiz_markdown(quizzes[0]) in markdown, "the self-test's questions drifted"


def test_every_registered_exercise_is_in_a_lesson() -> None:
    used = {name for lesson in LESSONS for name, _, _, _ in _answer_cells(lesson)}
    assert set(EXERCISES) | set(QUIZZES) == used


def test_lesson_05_judges(lab: Lab) -> None:
    # Which strategies work behind the proxy, measured here as lesson 05's table does.
    keys = openim.create_group_keys("g1", "u1", ["u2"])
    rc, proxy = lab.cluster_client(), lab.proxy_client("alibaba")
    strategies = []
    for name, strategy in batching.STRATEGIES.items():
        rc.delete(*keys)
        try:
            strategy(proxy, keys)
        except redis.RedisError:
            continue
        if all(openim.tagged_as_deleted(rc, key) for key in keys):
            strategies.append(name)
    rc.delete(*keys)
    rc.close()
    proxy.close()
    assert {"per_key", "proxy_safe"} <= set(strategies)
    assert not {"one_eval", "by_client_slot"} & set(strategies)
    assert verdict("05.proxy_strategies", strategies, lab)
    for fails in ("one_eval", "by_client_slot"):
        result = verdict("05.proxy_strategies", [*strategies, fails], lab)
        assert not result and f"{fails} does not tag every key" in result.message
    result = verdict("05.proxy_strategies", strategies[1:], lab)
    assert not result and "1 more" in result.message and strategies[0] not in result.message
    keys = openim.create_group_keys("g1", "u1", [f"u{i}" for i in range(2, 12)])
    slots = len(set(_slots(lab, batching.per_group_tag_keys(keys, "g1")).values()))
    assert slots > 1
    assert verdict("05.per_group_slots", slots, lab)
    result = verdict("05.per_group_slots", 1, lab)
    assert not result and "JOIN_GROUPS_KEY" in result.message and str(slots) not in result.message
    for stub in ("05.proxy_strategies", "05.per_group_slots"):
        assert verdict(stub, ..., lab).message.startswith("no answer yet")
    assert all(self_test_verdicts("05", {"q1": "a", "q2": "a", "q3": "b"}))


def test_exercise_notebooks_match_their_lessons() -> None:
    assert exercises.drift(ROOT) == [], "run `make exercises`"


def test_generation_cuts_solutions_and_relinks() -> None:
    lesson = {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# 09 · A title\n", "text"]},
        {"cell_type": "markdown", "metadata": {},
         "source": ["[next](10_x.ipynb), [here](exercises/09_t.ipynb), [web](https://a.b/c)"]},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": 3,
         "source": ["x = ...  # a number\n", "# solution\n", "x = 42"]},
        {"cell_type": "markdown", "metadata": {"tags": ["lesson-only"]}, "source": ["only"]},
    ]}
    cells = exercise_cells(lesson, "09_t.ipynb")
    assert "".join(cells[0]["source"]) == "# 09 · A title\ntext"
    assert "[09 · A title](../09_t.ipynb)" in "".join(cells[1]["source"])
    assert "".join(cells[2]["source"]) == (
        "[next](../10_x.ipynb), [here](09_t.ipynb), [web](https://a.b/c)")
    assert "".join(cells[3]["source"]) == "x = ...  # a number"
    assert cells[3]["outputs"] == [] and cells[3]["execution_count"] is None
    assert len(cells) == 4


def _namespace(lab: Lab) -> dict[str, Any]:
    """What the lessons' answer cells use, as the lessons define it."""
    rc, proxy = lab.cluster_client(), lab.proxy_client("alibaba")
    return {"lab": lab, "rc": rc, "topology": lab.topology(), "slotlab": slotlab,
            "redis": redis, "RedisClusterException": RedisClusterException, "openim": openim,
            "batching": batching, "proxy": proxy, "audit": audit,
            "AUDIT_LOG": lesson_checks.AUDIT_LOG, "SHOP_LINES": lesson_checks.SHOP_LINES,
            "settings": {"native cluster": rc, "alibaba proxy": proxy}}


def _cell(lesson: str, cell_id: str) -> str:
    [cell] = [c for c in _cells(ROOT / "notebooks" / lesson) if c.get("id") == cell_id]
    return "".join(cell["source"])


# Lesson 06's exercises need its half-moved slot: the lesson's own cells set it up (the group's
# keys, then the move stopped after one MIGRATE batch) in the test's namespace.
WINDOW_06 = ("e6793dbd", "ex06-setup")


@contextmanager
def _window_06(lab: Lab, namespace: dict[str, Any]) -> Iterator[None]:
    from slotlab.migration import fill_cache

    namespace["fill_cache"] = fill_cache
    for cell_id in WINDOW_06:
        exec(_cell("06_slots_on_the_move.ipynb", cell_id), namespace)
    try:
        yield
    finally:  # finish the move, then put the slot back: the lab is shared with other tests
        for _ in namespace["steps"]:
            pass
        lab.migrate_slot(namespace["slot"], namespace["source"])
        lab.reset()


ANSWERS = [(lesson.name, *answer) for lesson in LESSONS for answer in _answer_cells(lesson)]


@pytest.mark.parametrize(("lesson", "name", "variable", "source", "quiz"), ANSWERS,
                         ids=[a[1] for a in ANSWERS])
def test_solution_passes_and_stub_fails_politely(
    lab: Lab, lesson: str, name: str, variable: str, source: str, quiz: bool
) -> None:
    solved, blank = _namespace(lab), _namespace(lab)
    window = _window_06(lab, solved) if lesson.startswith("06") and not quiz else nullcontext()
    try:
        with window:
            exec(source, solved)
            exec(_stub(source), blank)
            if not quiz:
                right = verdict(name, solved[variable], lab)
                assert right, right.message
    finally:
        for namespace in (solved, blank):
            namespace["rc"].close()
            namespace["proxy"].close()
    if quiz:
        assert all(self_test_verdicts(name, solved[variable]))
        for v in self_test_verdicts(name, blank[variable]):
            assert not v and v.message == "no answer yet: put the letter of your choice."
        return
    stub = verdict(name, blank[variable], lab)
    assert not stub
    assert stub.message == f"no answer yet: replace the `...` with {EXERCISES[name].form}."


def _slots(lab: Lab, keys: list[str]) -> dict[str, int]:
    node = lab.node_client(0)
    try:
        return {key: int(node.execute_command("CLUSTER KEYSLOT", key)) for key in keys}
    finally:
        node.close()


# Wrong answers: each message names the rule it breaks, and none names the right answer.
WRONG: list[tuple[str, Any, str]] = [
    ("01.same_node", ["session:11"], "not one of session:2"),
    ("01.slot_twin", "user:1000", "user:1000 itself"),
    ("01.slot_twin", "user:1001", "CRC16 of ALL the key's bytes"),
    ("02.colocate", ("GROUP_INFO:g1", "GROUP_MEMBER_INFO:g1-u2"), "has no hash tag"),
    ("02.colocate", ("GROUP_INFO:{g1}", "GROUP_MEMBER_INFO:{g1-u2}"), "not the same bytes"),
    ("02.colocate", ("GROUP_INFO:{GROUP}g1", "GROUP_MEMBER_INFO:{GROUP}g1-u2"),
     "does not name the group"),
    ("02.whole_key", ["{a}", "{}"], "hashes only part of '{a}'"),
    ("02.whole_key", ["ab", "{}"], "needs both"),
    ("03.proxy_del", ["user:7:name", "user:7:email", "user:7:city"], "ONE slot"),
    ("03.proxy_del", [f"{{users}}:user:7:{f}" for f in ("name", "email", "city")],
     "does not name user"),
    ("03.catch", redis.RedisError, "RedisClusterException is not a subclass"),
    ("03.catch", RedisClusterException, "ClusterCrossSlotError is not a subclass"),
    ("03.catch", Exception, "catches every bug"),
    ("03.catch", "RedisError", "exception class"),
    ("04.evals_50", 1, "batches of 50 keys"),
    ("04.join_request", (1, True), "do not span 1 slots"),
    ("04.join_request", "yes", "a pair (slots, fails)"),
    ("07.flagged_lines", [1, 2, 4, 6], "line 1 (SET user:1 Ada) works in every setting"),
    ("07.flagged_lines", [2, 4], "but 1 more is"),
    ("07.flagged_lines", [9], "not a line of AUDIT_LOG"),
    ("07.fix_lines", lesson_checks.SHOP_LINES, "the gate still fails: line 1 is a fan-out"),
    ("07.fix_lines", ["SET stock:apple 10", "DEL session:t1", "DEL session:t2"],
     "stock:pear is missing"),
    ("07.fix_lines", ["SET stock:apple 10", "SET stock:pear 5", "DEL session:t1"],
     "session:t2 is still there"),
    ("07.fix_lines", ["MULTI", "SET stock:apple 10", "SET stock:pear 5", "EXEC",
                      "DEL session:t1", "DEL session:t2"], "multi-crossslot"),
]


@pytest.mark.parametrize(("name", "answer", "why"), WRONG, ids=[w[0] for w in WRONG])
def test_wrong_answer_says_which_rule(lab: Lab, name: str, answer: Any, why: str) -> None:
    result = verdict(name, answer, lab)
    assert not result and why in result.message, result.message


def test_same_node_wrong_answers_do_not_give_the_list_away(lab: Lab) -> None:
    topology = lab.topology()
    sessions = [f"session:{i}" for i in range(2, 11)]
    slot = _slots(lab, ["session:1", *sessions])
    home = topology.node_for_slot(slot["session:1"])
    right = [k for k in sessions if topology.node_for_slot(slot[k]) == home]
    wrong = [k for k in sessions if k not in right]
    missing = verdict("01.same_node", right[:-1], lab)
    assert not missing and "more of session:2" in missing.message
    assert right[-1] not in missing.message.replace("session:2 to session:10", "")
    stray = verdict("01.same_node", [*right, wrong[0]], lab)
    assert not stray and "a key lives on the node that serves its slot" in stray.message


def test_evals_50_wrong_count_does_not_print_the_count(lab: Lab) -> None:
    keys = openim.create_group_keys("g2", "u1", [f"u{i}" for i in range(2, 52)])
    evals = len(set(_slots(lab, keys).values()))  # no slot holds 50 of these keys
    for guess in (evals - 1, len(keys)):
        result = verdict("04.evals_50", guess, lab)
        assert not result and str(evals) not in result.message


def test_quiz_wrong_option_explains_without_the_letter() -> None:
    for lesson, quiz in QUIZZES.items():
        for q, question in quiz.items():
            for letter in question.options:
                [result] = [v for v in self_test_verdicts(lesson, {q: letter}) if v.name == q]
                assert bool(result) == (letter == question.right)
                assert f"({question.right})" not in result.message


def test_a_check_never_raises_for_a_malformed_answer(lab: Lab) -> None:
    for name in EXERCISES:
        for odd in (None, 3.5, {"a": 1}, [1, 2, 3], object()):
            result = verdict(name, odd, lab)
            assert not result and result.message


def test_unknown_exercise_is_named() -> None:
    with pytest.raises(KeyError, match="no exercise 'nope'"):
        verdict("nope", 1)


def test_check_prints_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    exercises.check("01.slot_twin", ...)
    assert capsys.readouterr().out.startswith("not yet [01.slot_twin]: no answer yet")


def test_lesson_06_judges_in_the_window(lab: Lab) -> None:
    namespace = _namespace(lab)
    try:
        with _window_06(lab, namespace):
            step, in_slot = namespace["step"], namespace["in_slot"]
            moved = [k for k in in_slot if k in step.keys]
            stayed = [k for k in in_slot if k not in step.keys]
            assert len(moved) >= 2 and len(stayed) >= 2
            assert verdict("06.asked", moved, lab)
            result = verdict("06.asked", [*moved, stayed[0]], lab)
            assert not result and "still holds" in result.message
            result = verdict("06.asked", moved[1:], lab)
            assert not result and "1 more key(s)" in result.message
            assert moved[0] not in result.message
            result = verdict("06.asked", [], lab)
            assert not result and f"{len(moved)} key(s)" in result.message
            result = verdict("06.asked", ["user:1"], lab)  # another slot than the moving one
            assert not result and "not moving" in result.message
            assert verdict("06.tryagain_pair", (moved[0], stayed[0]), lab)
            result = verdict("06.tryagain_pair", (stayed[0], stayed[1]), lab)
            assert not result and "still holds both" in result.message
            result = verdict("06.tryagain_pair", (moved[0], moved[1]), lab)
            assert not result and "holds neither" in result.message
            result = verdict("06.tryagain_pair", (moved[0], "user:1"), lab)
            assert not result and "CROSSSLOT" in result.message
            result = verdict("06.tryagain_pair", [moved[0], stayed[0]], lab)
            assert not result and "pair" in result.message
    finally:
        namespace["rc"].close()
        namespace["proxy"].close()
    # The move is over: no slot is MIGRATING, and both checks say so instead of judging.
    for name, answer in (("06.asked", ["a"]), ("06.tryagain_pair", ("a{t}", "b{t}"))):
        result = verdict(name, answer, lab)
        assert not result and "no slot of your lab is being moved" in result.message
