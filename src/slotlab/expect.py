"""expect_error: assert that a block fails the way a lesson says it will.

A notebook cell that reproduces a bug must fail if the bug stops happening. nbval alone cannot
tell (an allowed error is not a required one), so reproduction cells wrap the failing call in
``expect_error``: it prints the error as a learner should read it and raises ``AssertionError``
when no error, or a different one, happens.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

ExpectedKind = type[BaseException] | tuple[type[BaseException], ...] | str


@dataclass
class CaughtError:
    """What ``expect_error`` caught, for later cells to look at."""

    error: BaseException | None = None

    @property
    def message(self) -> str:
        """The error's message, without its class name."""
        return "" if self.error is None else str(self.error)


def _describe(expected: ExpectedKind, match: str | None) -> str:
    if isinstance(expected, str):
        what = f"an error whose message contains {expected!r}"
    elif isinstance(expected, tuple):
        what = "one of " + ", ".join(t.__name__ for t in expected)
    else:
        what = expected.__name__
    if match is not None:
        what += f" matching /{match}/"
    return what


def _matches(exc: BaseException, expected: ExpectedKind, match: str | None) -> bool:
    text = str(exc)
    if isinstance(expected, str):
        ok = expected in text or expected in f"{type(exc).__name__}: {text}"
    else:
        ok = isinstance(exc, expected)
    if ok and match is not None:
        ok = re.search(match, text) is not None
    return ok


@contextmanager
def expect_error(
    expected: ExpectedKind, match: str | None = None, *, quiet: bool = False
) -> Iterator[CaughtError]:
    """Run a block that MUST fail with ``expected``; print the error, or fail loudly if it doesn't.

    ``expected`` is an exception class (or a tuple of them), or a piece of text the error's
    message must contain. ``match`` is an optional regular expression the message must match.

    >>> with expect_error(ZeroDivisionError, match="division"):
    ...     1 / 0
    ZeroDivisionError: division by zero
    """
    if not isinstance(expected, (str, tuple, type)):
        raise TypeError(
            "expect_error() takes an exception class, a tuple of them, or a message text, "
            f"not {type(expected).__name__}"
        )
    caught = CaughtError()
    try:
        yield caught
    except Exception as exc:  # noqa: BLE001 - we re-raise anything unexpected
        if not _matches(exc, expected, match):
            raise AssertionError(
                f"expected {_describe(expected, match)}, "
                f"but got {type(exc).__name__}: {exc}"
            ) from exc
        caught.error = exc
        if not quiet:
            print(f"{type(exc).__name__}: {exc}")
    else:
        raise AssertionError(
            f"expected {_describe(expected, match)}, but the block raised no error: "
            "the failure this cell demonstrates did not happen"
        )
