"""Where a key lives: Redis Cluster hash slots.

Redis Cluster splits the key space into 16384 slots. A key's slot is
``CRC16(key) mod 16384``, where CRC16 is CRC-16/XMODEM and ``key`` is hashed as bytes. If the
key has a *hash tag* (the bytes between its first ``{`` and the first ``}`` after it, at least
one byte long), only the tag is hashed, so ``{user1000}.following`` and
``{user1000}.followers`` share a slot.

``key_slot`` computes one slot; ``key_slots`` computes many at once with numpy (see its
docstring for how). Both take ``str`` keys (encoded as UTF-8, as redis-py does) or bytes-like
keys (``bytes``, ``bytearray``, ``memoryview``: their raw bytes are hashed).
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "SLOT_COUNT",
    "crc16",
    "crc16_bitwise",
    "hash_tag",
    "key_slot",
    "key_slots",
]

SLOT_COUNT: int = 16384
"""Number of hash slots in a Redis Cluster; slots are numbered 0 to 16383."""

_SLOT_MASK = SLOT_COUNT - 1  # 16384 is a power of two, so ``crc % 16384 == crc & 0x3FFF``
_POLY = 0x1021  # x^16 + x^12 + x^5 + 1, the CCITT polynomial (top bit implied)

Key = str | bytes | bytearray | memoryview
"""What a key may be: text (hashed as UTF-8) or a bytes-like object (hashed as raw bytes)."""


# --------------------------------------------------------------------------------------------
# One key
# --------------------------------------------------------------------------------------------


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/XMODEM of ``data`` (poly 0x1021, init 0, no reflection, no final xor).

    ``binascii.crc_hqx(data, 0)`` is exactly this CRC, computed in C.
    ``crc16(b"123456789") == 0x31C3``.
    """
    return binascii.crc_hqx(data, 0)


def crc16_bitwise(data: bytes | bytearray | memoryview) -> int:
    """The same CRC as :func:`crc16`, one bit at a time in pure Python (slow; for reading).

    A CRC is the remainder of dividing the message, read as a polynomial over GF(2), by the
    generator polynomial; "subtracting" the polynomial is an xor.
    """
    crc = 0  # init 0: the register starts empty
    for byte in bytes(data):
        crc ^= byte << 8  # feed the next byte in at the top of the 16-bit register
        for _ in range(8):  # then shift it through, most significant bit first
            crc <<= 1
            if crc & 0x10000:  # a 1 fell off the top: subtract the polynomial (x^16 term too)
                crc ^= 0x10000 | _POLY
    return crc  # no final xor, no bit reflection


def _type_error(func: str, obj: object, index: int | None = None) -> TypeError:
    """The TypeError for a key that is neither str nor bytes-like, naming what was received."""
    kind = "None" if obj is None else type(obj).__name__
    if index is None:
        what = f"{func}() takes a str or bytes key, not {kind}"
    else:
        what = f"{func}() takes str or bytes keys, but item {index} is {kind}"
    hint = ""
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        hint = f" (encode numbers first, e.g. str({obj!r}))"
    return TypeError(f"{what}{hint}; bytearray and memoryview keys are hashed as raw bytes")


def _key_bytes(key: object, func: str, index: int | None = None) -> bytes:
    """The bytes Redis hashes for ``key``: UTF-8 for str, raw bytes for bytes-like objects."""
    if type(key) is bytes:
        return key
    if isinstance(key, str):
        return _str_bytes(key, func, index)
    if isinstance(key, bytes):  # a subclass, e.g. numpy.bytes_
        return bytes(key)
    try:
        view = memoryview(key)  # type: ignore[arg-type]  # any bytes-like object
    except TypeError:
        raise _type_error(func, key, index) from None
    return view.tobytes()


def _str_bytes(key: str, func: str, index: int | None = None) -> bytes:
    """A str key's bytes: UTF-8, with ``surrogateescape`` so that bytes that are not UTF-8 (a
    shell argument such as ``$'\\xff'``, read by Python as ``'\\udcff'``) hash as those very
    bytes, the way the server sees them. A lone surrogate of another kind has no bytes at all."""
    try:
        return key.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        where = "its key" if index is None else f"item {index}"
        raise UnicodeEncodeError(
            "utf-8", key, exc.start, exc.end,
            f"{func or 'key_slots'}() cannot hash {where}: a lone surrogate is not a character "
            "any client can send; pass the key as bytes",
        ) from None


def _tag_bounds(data: bytes) -> tuple[int, int] | None:
    """``(start, end)`` of the hash tag in ``data`` (``data[start:end]``), or None."""
    start = data.find(b"{")
    if start == -1:
        return None
    end = data.find(b"}", start + 1)
    if end <= start + 1:  # no "}" after the "{" (-1), or "{}" with nothing between
        return None
    return start + 1, end


def hash_tag(key: Key) -> bytes | None:
    """The bytes that are hashed when ``key`` has a hash tag, else None.

    The tag is what lies between the FIRST ``{`` and the first ``}`` after it, if that is at
    least one byte: ``hash_tag("foo{{bar}}zap") == b"{bar"``, ``hash_tag("foo{}{bar}")`` is
    None (the first pair is empty, so the whole key is hashed).
    """
    data = _key_bytes(key, "hash_tag")
    bounds = _tag_bounds(data)
    return None if bounds is None else data[bounds[0] : bounds[1]]


def key_slot(key: Key) -> int:
    """The slot (0 to 16383) that ``key`` lives in: CRC16 of the key, or of its hash tag.

    ``key_slot("foo") == 12182``; ``key_slot("{user1000}.following") == key_slot("user1000")``.
    A str key is encoded as UTF-8. Anything other than str or bytes-like raises TypeError.
    """
    data = key if type(key) is bytes else _key_bytes(key, "key_slot")
    bounds = _tag_bounds(data)
    if bounds is not None:
        data = data[bounds[0] : bounds[1]]
    return binascii.crc_hqx(data, 0) & _SLOT_MASK


# --------------------------------------------------------------------------------------------
# Many keys at once
# --------------------------------------------------------------------------------------------
#
# How key_slots works, for each chunk of keys:
#
# 1. Join the keys into one buffer with a separator byte that no key contains (0xFF for bytes
#    keys: it never occurs in UTF-8 text; NUL for str keys). The separators give each key's
#    start and end. If some key does contain the separator, lengths come from len() instead.
# 2. Find every "{" and "}" in the buffer (numpy, in C). For each key, its first "{" and the
#    first "}" after it give the hash-tag segment; a key without a tag is its own segment.
# 3. CRC all segments at once. With init 0, leading zero bytes do not change a CRC, so a
#    segment may sit right-aligned at the end of a fixed-width row and be fed in from the
#    left, as long as the bytes in front of it are never fed in. Rows are sorted by segment
#    length, longest first, so at each column only a leading block of rows is live and a
#    short segment costs nothing for the columns before it starts. Each column feeds two
#    bytes through one 65536-entry table: the register is 16 bits, so two bytes replace it
#    entirely. The register is kept byte-swapped, so the two bytes can be read as a
#    little-endian uint16 straight from memory.
#
# Segments longer than _VECTOR_MAX bytes, and bands of long segments too few to pay for the
# per-column overhead, are hashed one at a time with binascii.crc_hqx, which is C.

_CHUNK = 32768  # keys per chunk: the buffer, the rows and the tables stay in cache
_SMALL = 256  # fewer keys than this: a plain loop beats setting up numpy
_NARROW = 64  # segments up to this many bytes all go in one band
_VECTOR_MAX = 4096  # longer segments are hashed one by one
_MIN_WIDE_ROWS = 1024  # a band of longer segments needs this many rows to beat crc_hqx
_BAND_BYTES = 1 << 22  # rows of one band gathered at a time: at most about 4 MiB
_PAD = _VECTOR_MAX + 2  # filler in front of the keys, so every row starts inside the buffer
_BYTES_SEP, _BYTES_PAD = 0xFF, b"\x00" * _PAD
_STR_SEP, _STR_PAD = 0x00, "\x01" * _PAD


class _Tables(NamedTuple):
    step: npt.NDArray[np.uint16]  # swapped register ^ next two bytes -> swapped register
    slot: npt.NDArray[np.uint16]  # swapped register -> slot


@lru_cache(maxsize=1)
def _tables() -> _Tables:
    """Build the two-byte step table and the swapped-register-to-slot table (once)."""
    one = np.array([crc16_bitwise(bytes([b])) for b in range(256)], dtype=np.uint32)
    x = np.arange(65536, dtype=np.uint32)
    swap = ((x & 0xFF) << 8) | (x >> 8)
    # crc2[x]: CRC of the two bytes (x >> 8, x & 0xFF), one byte after the other.
    crc2 = one[x >> 8]
    crc2 = ((crc2 << 8) & 0xFFFF) ^ one[(crc2 >> 8) ^ (x & 0xFF)]
    # Register r, next bytes b0 b1: r' = crc2[r ^ (b0 << 8 | b1)]. With s = swap(r) and the
    # uint16 w = b0 | b1 << 8 read from memory, r ^ (b0 << 8 | b1) = swap(s ^ w), so
    # s' = swap(crc2[swap(s ^ w)]) = step[s ^ w].
    step = swap[crc2[swap]].astype(np.uint16)
    slot = (swap & _SLOT_MASK).astype(np.uint16)
    return _Tables(step, slot)


def _per_key(keys: Sequence[object], offset: int) -> npt.NDArray[np.int64]:
    """Slots one key at a time (small batches); errors name the item's index."""
    out = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        data = _key_bytes(key, "key_slots", offset + i)
        bounds = _tag_bounds(data)
        if bounds is not None:
            data = data[bounds[0] : bounds[1]]
        out[i] = binascii.crc_hqx(data, 0) & _SLOT_MASK
    return out


def _as_bytes(keys: Sequence[object], offset: int) -> list[bytes]:
    """Every key as bytes (str encoded as UTF-8); errors name the item's index."""
    try:  # the common kinds inline, without a function call per key
        return [
            k if type(k) is bytes else k.encode() if type(k) is str else _key_bytes(k, "")
            for k in keys
        ]
    except (TypeError, UnicodeError):  # find the culprit again, this time naming its index
        return [_key_bytes(key, "key_slots", offset + i) for i, key in enumerate(keys)]


Bounds = tuple[bytes, npt.NDArray[np.int64], npt.NDArray[np.int64]]


def _split(buf: bytes, sep: int, m: int) -> Bounds | None:
    """``(buf, ends, lengths)`` of the ``m`` keys that follow the pad, each behind a ``sep``.

    None if some key contains ``sep`` (then the separators do not mark the keys).
    """
    seps = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == sep)
    if len(seps) != m:
        return None
    ends = np.empty(m, dtype=np.int64)
    ends[:-1] = seps[1:]
    ends[-1] = len(buf)
    lengths = ends - seps
    lengths -= 1
    return buf, ends, lengths


def _concat(keys: Sequence[bytes]) -> Bounds:
    """``(buf, ends, lengths)`` of bytes keys joined after the pad, lengths from len()."""
    lengths = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    ends = np.cumsum(lengths)
    ends += _PAD
    return _BYTES_PAD + b"".join(keys), ends, lengths


def _join(keys: Sequence[object], offset: int) -> Bounds:
    """All keys' bytes in one buffer (after ``_PAD`` filler bytes), their ends and lengths."""
    m = len(keys)
    if isinstance(keys[0], str):
        try:
            text = "\x00".join([_STR_PAD, *keys])  # type: ignore[list-item]
            buf = text.encode()
        except (TypeError, UnicodeError):  # not all str, or unencodable: one by one below
            pass
        else:
            found = _split(buf, _STR_SEP, m)
            if found is not None:
                return found
            if text.isascii():  # some key holds a NUL; for ASCII, len() counts bytes
                lengths = np.fromiter(map(len, keys), dtype=np.int64, count=m)  # type: ignore[arg-type]
                ends = np.cumsum(lengths)
                ends += _PAD
                return _BYTES_PAD + "".join(keys).encode(), ends, lengths  # type: ignore[arg-type]
        return _concat(_as_bytes(keys, offset))
    try:
        buf = b"\xff".join([_BYTES_PAD, *keys])  # type: ignore[list-item]  # bytes-like items
    except (TypeError, BufferError):
        keys = _as_bytes(keys, offset)
        buf = b"\xff".join([_BYTES_PAD, *keys])
    found = _split(buf, _BYTES_SEP, m)
    if found is not None:
        return found
    if set(map(type, keys)) == {bytes}:  # binary keys holding 0xFF: lengths from len()
        return _concat(keys)  # type: ignore[arg-type]
    return _concat(_as_bytes(keys, offset))


def _segments(buf: bytes, ends: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]) -> None:
    """Narrow each key's ``ends``/``lengths`` (in place) to its hash tag, where it has one."""
    b = np.frombuffer(buf, dtype=np.uint8)
    opens = np.flatnonzero(b == 0x7B)  # "{"
    if len(opens) == 0:
        return
    # The key each "{" belongs to; keep the first "{" of each key.
    owner = np.searchsorted(ends, opens, side="right")
    first = np.empty(len(opens), dtype=bool)
    first[0] = True
    np.not_equal(owner[1:], owner[:-1], out=first[1:])
    owner = owner[first]
    opens = opens[first]
    # The first "}" after that "{"; it must lie in the same key, with a byte in between.
    closes = np.append(np.flatnonzero(b == 0x7D), len(buf))  # "}", and a sentinel
    close = closes[np.searchsorted(closes, opens)]
    tagged = (close < ends[owner]) & (close > opens + 1)
    owner = owner[tagged]
    close = close[tagged]
    lengths[owner] = close - opens[tagged] - 1
    ends[owner] = close


def _crc_band(
    buf: npt.NDArray[np.uint8],
    ends: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    step: npt.NDArray[np.uint16],
) -> npt.NDArray[np.uint16]:
    """Swapped CRC registers of the segments ending at ``ends``, sorted longest first.

    The first (longest) segment must not be empty.
    """
    rows = len(lengths)
    width = int(lengths[0]) + (int(lengths[0]) & 1)  # even: rows are whole uint16 words
    # Row i: the `width` bytes that end where segment i ends, the segment right-aligned.
    # Every `width`-byte window of the buffer, as one opaque item each (a view, no copy;
    # gathering opaque items is a plain memcpy per row, faster than a 2-D uint8 gather).
    windows = np.ndarray(
        (len(buf) - width + 1,), dtype=np.dtype((np.void, width)), buffer=buf, strides=(1,)
    )
    words = windows[ends - width].view(np.uint16).reshape(rows, width // 2)
    # at_least[n]: how many rows are at least n bytes long (the first at_least[n] rows).
    at_least = np.cumsum(np.bincount(lengths, minlength=width + 1)[::-1])[::-1]
    reg = np.zeros(rows, dtype=np.uint16)
    tmp = np.empty(rows, dtype=np.uint16)
    n_words = width // 2
    for col in range(n_words):
        left = n_words - col  # words left in the row, this one included
        live = int(at_least[2 * left - 1])  # rows whose segment has begun by this word
        full = int(at_least[2 * left])  # ... of which these began earlier or fill the word
        np.bitwise_xor(reg[:live], words[:live, col], out=tmp[:live])
        if full < live:  # an odd-length segment begins at the word's second byte
            tmp[full:live] &= 0xFF00  # (its register is still 0, so tmp is the bare word)
        step.take(tmp[:live], out=reg[:live], mode="clip")  # "clip": indices are in range
    return reg


def _chunk_slots(keys: Sequence[object], offset: int, out: npt.NDArray[np.int64]) -> None:
    """Write the slots of one chunk of keys to ``out`` (how: see the comment above ``_CHUNK``)."""
    step, to_slot = _tables()
    buf, ends, lengths = _join(keys, offset)
    _segments(buf, ends, lengths)
    m = len(keys)

    one_by_one = [np.flatnonzero(lengths > _VECTOR_MAX)]
    vec_lengths = lengths
    if len(one_by_one[0]):
        vec_lengths = lengths.copy()
        vec_lengths[one_by_one[0]] = 0  # left out of the vector pass; done one by one
    order = np.argsort(_VECTOR_MAX - vec_lengths.astype(np.uint16), kind="stable")  # radix
    sorted_ends = ends[order]
    sorted_lengths = vec_lengths[order]

    data = np.frombuffer(buf, dtype=np.uint8)
    reg = np.zeros(m, dtype=np.uint16)
    lo = 0
    while lo < m and sorted_lengths[lo] > 0:
        top = int(sorted_lengths[lo])
        if top <= _NARROW:  # all the rest, in one band
            hi = m
        else:  # rows within 2x of the longest, at most _BAND_BYTES of them
            hi = lo + int(np.count_nonzero(sorted_lengths[lo:] > top // 2))
            hi = min(hi, lo + max(_MIN_WIDE_ROWS, _BAND_BYTES // top))
        if top > _NARROW and hi - lo < _MIN_WIDE_ROWS:
            one_by_one.append(order[lo:hi])
        else:
            reg[lo:hi] = _crc_band(data, sorted_ends[lo:hi], sorted_lengths[lo:hi], step)
        lo = hi
    out[order] = to_slot[reg]

    view = memoryview(buf)
    for rows in one_by_one:
        for i in rows.tolist():
            end = int(ends[i])
            out[i] = binascii.crc_hqx(view[end - int(lengths[i]) : end], 0) & _SLOT_MASK


def key_slots(keys: Sequence[Key]) -> npt.NDArray[np.int64]:
    """The slot of every key, as a numpy int64 array; equal to ``[key_slot(k) for k in keys]``.

    Keys may mix str and bytes-like objects, and may be empty (slot 0) or of any length; an
    item that is neither str nor bytes-like raises TypeError naming its index. For many keys
    this is a few times faster than a Python loop over ``key_slot``: the keys are joined into
    one buffer, their hash tags found with numpy, and all CRCs computed column by column
    with a lookup table. The result is int64 so that arithmetic on slots cannot overflow;
    every slot is below 16384, so ``.astype(numpy.uint16)`` is lossless if memory matters.
    """
    if isinstance(keys, str | bytes | bytearray | memoryview):
        raise TypeError(
            f"key_slots() takes a sequence of keys, not one {type(keys).__name__} key (which "
            f"would be hashed character by character): for one key use key_slot({keys!r}), "
            f"or key_slots([{keys!r}])"
        )
    n = len(keys)
    if n < _SMALL:
        return _per_key(keys, 0)
    out = np.empty(n, dtype=np.int64)
    for lo in range(0, n, _CHUNK):
        _chunk_slots(keys[lo : lo + _CHUNK], lo, out[lo : lo + _CHUNK])
    return out
