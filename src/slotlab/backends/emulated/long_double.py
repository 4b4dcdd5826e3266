"""Long double arithmetic as the server does it (INCRBYFLOAT, HINCRBYFLOAT).

Redis adds in C's ``long double`` and prints with ``%.17Lf``; fakeredis uses Python floats, whose
sums and texts differ in the last digits. numpy's ``longdouble`` is the platform's long double.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slotlab import errors


def ld_text(value: Any) -> bytes:
    """A long double as ``ld2string(..., LD_STR_HUMAN)`` prints it: ``%.17Lf``, zeros trimmed."""
    text = np.format_float_positional(value, precision=17, unique=False, fractional=True, trim="k")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text == "-0":
        text = "0"
    return text.encode()


def parse_ld(data: bytes) -> Any:
    """``string2ld``: a long double, or None (spaces, NaN and trailing garbage are refused)."""
    if not data or data[:1].isspace() or data[-1:].isspace() or len(data) > 5 * 1024:
        return None
    try:
        value = np.longdouble(data.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    return None if np.isnan(value) else value


def incr_float(current: bytes, increment: bytes) -> bytes:
    """INCRBYFLOAT's arithmetic in long double, the server's precision on this platform."""
    a, b = parse_ld(current), parse_ld(increment)
    if a is None or b is None:
        raise ValueError(errors.NOT_FLOAT)
    total = a + b
    if np.isnan(total) or np.isinf(total):
        raise ValueError(errors.NAN_OR_INF)
    return ld_text(total)
