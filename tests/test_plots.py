"""The lessons' plots draw with the installed matplotlib and numpy (the floors included: CI runs
this under ``make test-lowest`` too). Each check reads back what was drawn."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import matplotlib
import pytest

from slotlab import plots
from slotlab.backends.base import split_slots
from slotlab.slots import key_slot

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def _bars(ax: Any) -> list[Any]:
    return list(ax.patches)


def test_slot_histogram_colours_bars_by_node() -> None:
    slots = [key_slot(f"user:{i}") for i in range(2000)]
    ax = plots.slot_histogram(slots, bins=64, ranges=split_slots(3))
    assert len(_bars(ax)) == 64
    assert sum(b.get_height() for b in _bars(ax)) == 2000
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["even spread", "node 0", "node 1", "node 2"]


def test_slot_load_histogram_counts_every_slot() -> None:
    ax = plots.slot_load_histogram([0, 0, 1, 5])
    assert sum(b.get_height() for b in _bars(ax)) == 16384


def test_keys_per_node_labels_each_bar() -> None:
    ax = plots.keys_per_node({"plain keys": [3, 4, 5], "tagged": [12, 0, 0]})
    assert [b.get_height() for b in _bars(ax)] == [3, 4, 5, 12, 0, 0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["node 0", "node 1", "node 2"]


def test_keys_on_slots_marks_each_key() -> None:
    keys = ["{user:1}:a", "{user:1}:b", "other"]
    ax = plots.keys_on_slots(keys, [key_slot(k) for k in keys], ranges=split_slots(3))
    notes = [t.get_text() for t in ax.texts]
    assert notes == [f"{k} ({key_slot(k)})" for k in keys]


def test_strategy_rates_groups_by_size() -> None:
    measured = {
        ("cluster", "pipeline", 10): (10, 1, 1000.0),
        ("cluster", "pipeline", 100): (100, 3, 5000.0),
        ("alibaba proxy", "eval", 10): (10, 1, 800.0),
        ("alibaba proxy", "eval", 100): (100, 1, 900.0),
    }
    ax = plots.strategy_rates(measured, [10, 100])
    assert [b.get_height() for b in _bars(ax)] == [1000.0, 5000.0, 800.0, 900.0]
    assert [b.get_hatch() for b in _bars(ax)] == [None, None, "//", "//"]
