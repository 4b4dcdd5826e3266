"""Unit tests for slotlab.slots: no server needed.

The slot values are the ones a real Redis 7.0.15 printed for CLUSTER KEYSLOT (FACTS.md §1).
``key_slots`` is checked against ``key_slot`` on generated keys, through each of its paths:
the per-key loop for small batches, the vector path (forced on small batches by patching
its thresholds), chunk boundaries, separator collisions, and long keys.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slotlab import slots
from slotlab.slots import SLOT_COUNT, crc16, crc16_bitwise, hash_tag, key_slot, key_slots

# Verified with CLUSTER KEYSLOT on Redis 7.0.15 (FACTS.md §1).
SLOT_TABLE = [
    ("123456789", 12739),
    ("foo", 12182),
    ("a", 15495),
    ("b", 3300),
    ("bar", 5061),
    ("hello", 866),
    ("user1000", 3443),
    ("{user1000}.following", 3443),
    ("{user1000}.followers", 3443),
    ("{}", 15257),
    ("foo{}{bar}", 8363),
    ("foo{{bar}}zap", 4015),
    ("foo{bar}{zap}", 5061),
    ("}{", 12793),
    ("", 0),
    ("user:1000", 1649),
    ("GROUP_INFO:g1", 1310),
    ("GROUP_MEMBER_IDS:g1", 13721),
]

AnyKey = str | bytes | bytearray | memoryview


def assert_matches(keys: Sequence[AnyKey]) -> None:
    """key_slots(keys) is an int64 array equal to key_slot on each key."""
    got = key_slots(keys)
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.int64
    assert got.shape == (len(keys),)
    assert got.tolist() == [key_slot(k) for k in keys]


@contextmanager
def vector_path(chunk: int = 16) -> Iterator[None]:
    """Send even tiny batches through the numpy path, in chunks of ``chunk`` keys."""
    with mock.patch.object(slots, "_SMALL", 0), mock.patch.object(slots, "_CHUNK", chunk):
        yield


# --------------------------------------------------------------------------------------------
# CRC16
# --------------------------------------------------------------------------------------------


def test_crc16_test_vector() -> None:
    assert crc16(b"123456789") == 0x31C3
    assert crc16_bitwise(b"123456789") == 0x31C3
    assert key_slot("123456789") == 0x31C3 % SLOT_COUNT == 12739


def test_crc16_of_nothing_is_zero() -> None:
    assert crc16(b"") == crc16_bitwise(b"") == 0


def test_crc16_leading_zero_bytes_do_not_change_it() -> None:
    # init 0: the property key_slots relies on to right-align keys in fixed-width rows
    assert crc16(b"\x00\x00\x00abc") == crc16(b"abc")
    assert crc16(b"abc\x00") != crc16(b"abc")


@given(st.binary(max_size=300))
def test_crc16_bitwise_equals_crc_hqx(data: bytes) -> None:
    assert crc16_bitwise(data) == binascii.crc_hqx(data, 0) == crc16(data)


def test_crc16_accepts_bytes_like() -> None:
    assert crc16(bytearray(b"123456789")) == crc16(memoryview(b"123456789")) == 0x31C3
    assert crc16_bitwise(bytearray(b"123456789")) == 0x31C3


# --------------------------------------------------------------------------------------------
# key_slot against the server's table
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "slot"), SLOT_TABLE)
def test_key_slot_str_matches_server(key: str, slot: int) -> None:
    assert key_slot(key) == slot


@pytest.mark.parametrize(("key", "slot"), SLOT_TABLE)
def test_key_slot_bytes_matches_server(key: str, slot: int) -> None:
    assert key_slot(key.encode()) == slot
    assert key_slot(bytearray(key.encode())) == slot
    assert key_slot(memoryview(key.encode())) == slot


def test_key_slots_matches_server_table() -> None:
    keys = [k for k, _ in SLOT_TABLE]
    want = [s for _, s in SLOT_TABLE]
    assert key_slots(keys).tolist() == want
    assert key_slots([k.encode() for k in keys]).tolist() == want
    many = keys * 30  # past the small-batch threshold: the vector path
    assert key_slots(many).tolist() == want * 30
    assert key_slots([k.encode() for k in many]).tolist() == want * 30


def test_key_slot_bytes_subclass() -> None:
    assert key_slot(np.bytes_(b"foo")) == key_slot(np.str_("foo")) == 12182


def test_key_slot_str_is_utf8() -> None:
    assert key_slot("é") == crc16("é".encode()) % SLOT_COUNT
    assert key_slot("{é}x") == key_slot("é") == key_slot(b"\xc3\xa9")


def test_key_slot_in_range_for_all_crc_values() -> None:
    assert 0 <= key_slot(b"\xff" * 100) < SLOT_COUNT


# --------------------------------------------------------------------------------------------
# hash_tag
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "tag"),
    [
        ("{user1000}.following", b"user1000"),
        ("{}", None),  # nothing between: hash the whole key
        ("foo{}{bar}", None),  # the FIRST pair is empty; {bar} is not looked at
        ("foo{{bar}}zap", b"{bar"),  # first "{", then the first "}" after it
        ("foo{bar}{zap}", b"bar"),  # only the first tag counts
        ("}{", None),  # a "}" before the "{" does not close it
        ("a}b{c", None),
        ("{", None),
        ("}", None),
        ("foo", None),  # no braces
        ("", None),  # empty key
        ("{a}", b"a"),
        ("x{a", None),  # unclosed
        ("{é}", "é".encode()),
    ],
)
def test_hash_tag(key: str, tag: bytes | None) -> None:
    assert hash_tag(key) == tag
    assert hash_tag(key.encode()) == tag


def test_hash_tag_binary() -> None:
    assert hash_tag(b"\x00{\x00}\xff") == b"\x00"
    assert hash_tag(bytearray(b"x{y}")) == b"y"


@given(st.binary(max_size=40))
def test_key_slot_hashes_the_tag_or_the_key(key: bytes) -> None:
    tag = hash_tag(key)
    assert key_slot(key) == crc16(key if tag is None else tag) % SLOT_COUNT


# --------------------------------------------------------------------------------------------
# Type errors
# --------------------------------------------------------------------------------------------


def test_key_slot_int_says_what_to_do() -> None:
    with pytest.raises(TypeError, match=r"key_slot\(\) takes a str or bytes key, not int") as e:
        key_slot(42)  # type: ignore[arg-type]
    assert "str(42)" in str(e.value)


def test_key_slot_none() -> None:
    with pytest.raises(TypeError, match=r"key_slot\(\) takes a str or bytes key, not None"):
        key_slot(None)  # type: ignore[arg-type]


def test_key_slot_list() -> None:
    with pytest.raises(TypeError, match=r"not list"):
        key_slot(["a"])  # type: ignore[arg-type]


def test_key_slot_float_and_bool() -> None:
    with pytest.raises(TypeError, match=r"not float .*str\(1\.5\)"):
        key_slot(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"not bool"):
        key_slot(True)  # type: ignore[arg-type]


def test_hash_tag_type_error_names_hash_tag() -> None:
    with pytest.raises(TypeError, match=r"hash_tag\(\) takes a str or bytes key, not int"):
        hash_tag(7)  # type: ignore[arg-type]


def test_key_slot_unencodable_str_raises_like_encode() -> None:
    with pytest.raises(UnicodeEncodeError):
        key_slot("\ud800")


@pytest.mark.parametrize("n_before", [2, 500, 40_000])  # per-key path, vector path, 2nd chunk
@pytest.mark.parametrize(
    ("bad", "kind"), [(42, "int"), (None, "None"), (["a"], "list"), (2.5, "float")]
)
def test_key_slots_bad_item_names_its_index(n_before: int, bad: object, kind: str) -> None:
    for good in ("k", b"k"):
        keys = [good] * n_before + [bad] + [good] * 3
        with pytest.raises(TypeError, match=rf"item {n_before} is {kind}\b"):
            key_slots(keys)  # type: ignore[arg-type]


def test_key_slots_int_item_hint() -> None:
    with pytest.raises(TypeError, match=r"key_slots\(\) takes str or bytes keys.*str\(42\)"):
        key_slots(["a", 42])  # type: ignore[list-item]


def test_key_slots_unencodable_str_raises_like_key_slot() -> None:
    with pytest.raises(UnicodeEncodeError):
        key_slots(["a"] * 300 + ["\ud800"])
    with pytest.raises(UnicodeEncodeError):
        key_slots(["a", "\ud800"])


# --------------------------------------------------------------------------------------------
# key_slots == key_slot, element-wise
# --------------------------------------------------------------------------------------------

# Pieces that exercise the tag rule, NUL bytes and the separators key_slots uses internally.
_PIECES = [b"{", b"}", b"{}", b"}{", b"\x00", b"\xff", b"a", b"user", b"\xc3\xa9", b":"]
_tagged_bytes = st.lists(
    st.one_of(st.sampled_from(_PIECES), st.binary(max_size=4)), max_size=12
).map(b"".join)
_tagged_text = st.lists(
    st.one_of(
        st.sampled_from(["{", "}", "{}", "\x00", "é", "日本", "a", "k:"]), st.text(max_size=4)
    ),
    max_size=12,
).map("".join)
_bytes_key = st.one_of(
    _tagged_bytes,
    st.binary(max_size=45),
    st.binary(min_size=100, max_size=200),  # longer than the narrow band
    st.binary(min_size=1001, max_size=1100).map(lambda b: b"{" + b + b"}" + b),
)
_text_key = st.one_of(_tagged_text, st.text(max_size=45), st.text(min_size=101, max_size=150))
_key: st.SearchStrategy[AnyKey] = st.one_of(
    _bytes_key,
    _text_key,
    _bytes_key.map(bytearray),
    _bytes_key.map(lambda b: memoryview(b)),
)
_key_lists = st.one_of(
    st.lists(_bytes_key, max_size=40),  # all bytes: the bytes fast path
    st.lists(_text_key, max_size=40),  # all str: the str fast path
    st.lists(_key, max_size=40),  # mixed
)


@settings(max_examples=200, deadline=None)
@given(_key_lists)
def test_key_slots_equals_key_slot(keys: list[AnyKey]) -> None:
    assert_matches(keys)  # small: the per-key loop
    with vector_path(chunk=16):
        assert_matches(keys)  # the numpy path, several chunks
    with vector_path(chunk=1):
        assert_matches(keys)  # one key per chunk
    assert_matches(keys * (300 // (len(keys) + 1) + 1))  # the default numpy path


@settings(max_examples=50, deadline=None)
@given(st.lists(_tagged_bytes, max_size=30), st.sampled_from([b"\x00", b"\xff", b"{}"]))
def test_key_slots_trailing_and_leading_nul(keys: list[bytes], edge: bytes) -> None:
    # keys that end (or start) in NUL or 0xFF: a fixed-width bytes dtype would lose them
    edged = [k + edge for k in keys] + [edge + k for k in keys] + [edge * 3]
    with vector_path():
        assert_matches(edged)


def test_key_slots_empty_list() -> None:
    got = key_slots([])
    assert got.dtype == np.int64
    assert got.shape == (0,)
    with vector_path():
        assert key_slots([]).shape == (0,)


def test_key_slots_empty_keys() -> None:
    assert key_slots([""] * 300).tolist() == [0] * 300
    assert key_slots([b""] * 300).tolist() == [0] * 300
    assert_matches(["", "a", "", "{}", "", "{x}"] * 60)


def test_key_slots_keys_with_separator_bytes() -> None:
    # 0xFF in bytes keys and NUL in str keys collide with the separators key_slots joins with
    assert_matches([b"a\xffb", b"{\xff}x", b"\xff"] * 100 + [b"plain"] * 100)
    assert_matches(["a\x00b", "{\x00}x", "\x00"] * 100 + ["plain"] * 100)
    assert_matches(["é\x00", "{é}\x00"] * 150)  # non-ASCII with NUL


def test_key_slots_mixed_types_in_one_batch() -> None:
    keys: list[AnyKey] = []
    for i in range(400):
        k = f"user:{i}" if i % 3 else f"{{group{i % 7}}}:m{i}"
        forms: list[AnyKey] = [
            k,
            k.encode(),
            bytearray(k.encode()),
            memoryview(k.encode()),
            "é" + k,
        ]
        keys.append(forms[i % 5])
    assert_matches(keys)


def test_key_slots_accepts_tuples_and_numpy_arrays() -> None:
    keys = tuple(f"k{i}{{t{i % 5}}}" for i in range(500))
    want = [key_slot(k) for k in keys]
    assert key_slots(keys).tolist() == want
    # numpy arrays of str_ or bytes_ work too (typed as Sequence, so mypy needs telling)
    assert key_slots(np.array(keys)).tolist() == want  # type: ignore[arg-type]
    assert key_slots(np.array([k.encode() for k in keys])).tolist() == want  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [63, 64, 65, 100, 129, 1000, 1001, 4096, 4097, 10_000])
def test_key_slots_long_keys(length: int) -> None:
    rng = np.random.default_rng(length)
    keys: list[bytes] = []
    for i in range(300):
        body = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        body = body.replace(b"{", b"(").replace(b"}", b")")
        if i % 3 == 0:  # a long tag inside a longer key
            body = b"x" + b"{" + body + b"}" + b"tail"
        elif i % 3 == 1:  # a short tag inside a long key
            body = body + b"{tag}"
        keys.append(body)
    keys += [b"short", b"", b"{s}"]
    assert_matches(keys)
    assert_matches([k.decode("latin-1") for k in keys])  # str keys: UTF-8 makes them longer


def test_key_slots_many_wide_keys() -> None:
    # enough long keys (> 64 bytes) to be hashed as vector bands rather than one by one
    rng = np.random.default_rng(7)
    lengths = rng.integers(65, 600, 2 * slots._MIN_WIDE_ROWS)
    keys = [
        (b"{" if i % 4 == 0 else b"") + rng.integers(97, 123, n, dtype=np.uint8).tobytes()
        + (b"}" if i % 4 == 0 else b"")
        for i, n in enumerate(lengths)
    ]  # fmt: skip
    keys += [b"k%d" % i for i in range(3000)]
    assert_matches(keys)


def test_key_slots_spans_chunks() -> None:
    keys = [f"{{u{i % 97}}}:{i}" if i % 2 else f"key:{i}" for i in range(2 * slots._CHUNK + 5)]
    assert_matches(keys)


def test_one_key_slot_serves_the_proxy_and_the_emulator() -> None:
    """The hash-tag rule is written once: the proxy's rules and the emulated nodes call
    ``slotlab.slots.key_slot`` itself, for str and bytes keys alike."""
    from slotlab import slots
    from slotlab.backends.emulated import helpers
    from slotlab.proxy import alibaba, passthrough, rules

    for module in (helpers, alibaba, passthrough, rules):
        assert module.key_slot is slots.key_slot, module.__name__
    for key in ("{user1000}.following", "foo", "{}x", "a{b}c{d}"):
        assert slots.key_slot(key) == slots.key_slot(key.encode())
