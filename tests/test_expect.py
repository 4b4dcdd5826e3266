"""expect_error must fail when the expected failure does not happen: that is its whole job."""

from __future__ import annotations

import pytest

from slotlab import expect_error


def test_the_expected_error_is_printed_and_kept(capsys: pytest.CaptureFixture[str]) -> None:
    with expect_error(ZeroDivisionError, match="division") as caught:
        1 / 0  # noqa: B018
    assert capsys.readouterr().out == "ZeroDivisionError: division by zero\n"
    assert isinstance(caught.error, ZeroDivisionError)
    assert caught.message == "division by zero"


def test_no_error_is_an_assertion_failure() -> None:
    with pytest.raises(AssertionError, match="raised no error"), expect_error(KeyError):
        pass


def test_a_different_error_is_an_assertion_failure() -> None:
    wanted = "expected KeyError, but got ValueError: boom"
    with pytest.raises(AssertionError, match=wanted), expect_error(KeyError):
        raise ValueError("boom")


def test_a_message_that_does_not_match_is_an_assertion_failure() -> None:
    with (
        pytest.raises(AssertionError, match="matching /CROSSSLOT/"),
        expect_error(RuntimeError, match="CROSSSLOT"),
    ):
        raise RuntimeError("MOVED 1 127.0.0.1:1")


def test_text_expectations_match_the_message() -> None:
    with expect_error("same slot", quiet=True) as caught:
        raise RuntimeError("ERR 'EVAL' command keys must in same slot")
    assert caught.error is not None
    with pytest.raises(AssertionError), expect_error("same slot"):
        raise RuntimeError("something else")


def test_tuples_of_classes_work() -> None:
    with expect_error((KeyError, IndexError), quiet=True):
        [][1]  # noqa: B018


def test_a_bad_expectation_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not int"), expect_error(42):  # type: ignore[arg-type]
        pass


def test_keyboard_interrupt_is_never_swallowed() -> None:
    with pytest.raises(KeyboardInterrupt), expect_error(Exception):
        raise KeyboardInterrupt
