"""slotlab's slot maths against the server itself: CLUSTER KEYSLOT on random binary keys.

The FACTS table pins known values; this asks the real server (and the emulated cluster, which
must agree with it) about keys hypothesis makes up: braces in odd places, NUL bytes, bytes that
are not UTF-8, long keys.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from slotlab import key_slot, key_slots, start_lab
from slotlab.lab import Lab

# Keys built from pieces that matter to the hash-tag rule, and from arbitrary bytes.
_pieces = st.one_of(
    st.sampled_from([b"{", b"}", b"{}", b"}{", b"\x00", b"\xff", b"user:", b"{user1000}"]),
    st.binary(max_size=8),
)
KEYS = st.one_of(
    st.binary(max_size=64),
    st.lists(_pieces, max_size=10).map(b"".join),
    st.binary(min_size=200, max_size=600),
)


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(KEYS, min_size=1, max_size=20))
def test_key_slot_matches_cluster_keyslot(real_lab_session: Lab, keys: list[bytes]) -> None:
    node = real_lab_session.nodes[0]
    with redis.Redis(host=node.host, port=node.port, password=real_lab_session.password) as server:
        pipe = server.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("CLUSTER", "KEYSLOT", key)
        expected = [int(s) for s in pipe.execute()]
    assert [key_slot(k) for k in keys] == expected
    assert key_slots(keys).tolist() == expected


@pytest.fixture(scope="module")
def emulated_lab() -> Iterator[Lab]:
    """One emulated node for this module's examples."""
    with start_lab(masters=1, backend="emulated") as lab:
        yield lab


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(KEYS, min_size=1, max_size=20))
def test_the_emulated_cluster_agrees(emulated_lab: Lab, keys: list[bytes]) -> None:
    node = emulated_lab.nodes[0]
    with redis.Redis(host=node.host, port=node.port, password=emulated_lab.password) as server:
        got = [int(server.execute_command("CLUSTER", "KEYSLOT", k)) for k in keys]
    assert got == [key_slot(k) for k in keys]
