"""Figures for the notebooks: how keys spread over slots and nodes.

Each function draws on a matplotlib Axes (a new figure when none is given) and returns it, with
a title, axis labels and units, so a lesson cell stays one line long.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from slotlab.slots import SLOT_COUNT


def _axes(ax: Any | None, size: tuple[float, float] = (9, 3.2)) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new_ax = plt.subplots(figsize=size, layout="constrained")
    return new_ax


NODE_COLOURS = ["#2f6fab", "#e07b39", "#3a9a5b", "#8e5aa8", "#c9a227", "#6b6b6b"]


def slot_histogram(
    slots: ArrayLike,
    *,
    bins: int = 128,
    ranges: Sequence[tuple[int, int]] = (),
    title: str = "Keys per slot",
    ax: Any | None = None,
) -> Any:
    """Keys per group of slots, coloured by the node whose slot range the group falls in."""
    values = np.asarray(slots)
    ax = _axes(ax)
    width = SLOT_COUNT // bins
    counts = np.bincount(values // width, minlength=bins)
    starts = np.arange(bins) * width
    owner = np.full(bins, -1)
    for i, (lo, hi) in enumerate(ranges):
        owner[(starts >= lo) & (starts <= hi)] = i
    for i in sorted(set(owner.tolist())):
        pick = owner == i
        label = f"node {i}" if i >= 0 else "keys"
        colour = NODE_COLOURS[i % len(NODE_COLOURS)] if i >= 0 else NODE_COLOURS[0]
        ax.bar(starts[pick], counts[pick], width=width * 0.9, align="edge", color=colour,
               label=label)  # fmt: skip
    mean = len(values) / bins
    ax.axhline(mean, color="black", linewidth=0.8, linestyle="--", label="even spread")
    ax.set_xlim(0, SLOT_COUNT)
    ax.set_ylim(0, max(counts.max(initial=0), mean) * 1.35 + 1)
    ax.set_xlabel(f"slot (bars of {width} slots)")
    ax.set_ylabel(f"keys per {width} slots")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize="small", ncols=len(ranges) + 1)
    return ax


def slot_load_histogram(
    slots: ArrayLike,
    *,
    title: str = "How many keys a slot holds",
    poisson: bool = False,
    ax: Any | None = None,
) -> Any:
    """A histogram of slot loads: how many slots hold 0 keys, 1 key, 2 keys, ...

    ``poisson=True`` adds what a uniformly random hash would give for the same number of keys:
    ``SLOT_COUNT * exp(-mean) * mean**k / k!`` slots holding ``k`` keys.
    """
    per_slot = np.bincount(np.asarray(slots), minlength=SLOT_COUNT)
    ax = _axes(ax, (6, 3.2))
    loads = np.bincount(per_slot)
    ax.bar(np.arange(len(loads)), loads, color=NODE_COLOURS[0], label="measured")
    mean = float(per_slot.mean())
    if poisson:
        k = np.arange(max(len(loads), int(mean * 3) + 2))
        log_pmf = -mean + k * math.log(mean) - np.array([math.lgamma(i + 1) for i in k])
        ax.plot(k, SLOT_COUNT * np.exp(log_pmf), color="black", marker="o", markersize=3,
                linewidth=1, label="uniform hash (Poisson)")  # fmt: skip
    ax.axvline(mean, color="black", linewidth=0.8, linestyle="--",
               label=f"mean {mean:.1f} keys")  # fmt: skip
    ax.set_xlabel("keys in the slot")
    ax.set_ylabel("number of slots")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title)
    ax.legend(fontsize="small")
    return ax


def keys_per_node(
    series: Mapping[str, Sequence[float]],
    *,
    title: str = "Keys per node",
    ylabel: str = "keys",
    ax: Any | None = None,
) -> Any:
    """Grouped bars, one group per node: each series (name -> one value per node) is a colour."""
    ax = _axes(ax, (8, 3.4))
    nodes = max(len(v) for v in series.values())
    width = 0.8 / len(series)
    x = np.arange(nodes)
    for i, (name, values) in enumerate(series.items()):
        bars = ax.bar(x + i * width, [float(v) for v in values], width=width, label=name)
        ax.bar_label(bars, fmt="{:,.0f}", fontsize="x-small")
    ax.set_xticks(x + width * (len(series) - 1) / 2, [f"node {i}" for i in range(nodes)])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left")
    ax.margins(y=0.25)
    return ax


def keys_on_slots(
    keys: Sequence[str],
    slots: Sequence[int],
    *,
    ranges: Sequence[tuple[int, int]] = (),
    title: str = "Where the keys live",
    ax: Any | None = None,
) -> Any:
    """One row per key: a dot at its slot, over bands that show which node serves which slots."""
    ax = _axes(ax, (9, 0.32 * len(keys) + 1.4))
    for i, (lo, hi) in enumerate(ranges):
        ax.axvspan(lo, hi + 1, color=NODE_COLOURS[i % len(NODE_COLOURS)], alpha=0.15,
                   label=f"node {i}")  # fmt: skip
    rows = np.arange(len(keys))[::-1]
    ax.scatter(list(slots), rows, color="black", zorder=3, s=18)
    for row, key, slot in zip(rows, keys, slots, strict=True):
        left = slot > SLOT_COUNT * 0.7
        ax.annotate(f"{key} ({slot})", (slot, row), xytext=(-6 if left else 6, 0),
                    textcoords="offset points", va="center", ha="right" if left else "left",
                    fontsize="small")  # fmt: skip
    ax.set_xlim(0, SLOT_COUNT)
    ax.set_ylim(-0.8, len(keys) - 0.2)
    ax.set_yticks([])
    ax.set_xlabel("slot")
    ax.set_title(title)
    if ranges:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=len(ranges),
                  fontsize="small", frameon=False)  # fmt: skip
    return ax


def strategy_rates(
    measured: Mapping[tuple[str, str, int], tuple[int, int, float]],
    sizes: Sequence[int],
    *,
    title: str = "Keys tagged per second",
    ax: Any | None = None,
) -> Any:
    """Bars of keys per second for each (setting, strategy), grouped by group size.

    ``measured`` maps ``(setting, strategy, members)`` to ``(keys, round_trips, keys_per_s)``.
    """
    ax = _axes(ax, (9, 3.6))
    series = list(dict.fromkeys((where, name) for where, name, _ in measured))
    width = 0.8 / len(series)
    x = np.arange(len(sizes))
    for i, (where, name) in enumerate(series):
        rates = [measured[where, name, m][2] for m in sizes]
        ax.bar(x + i * width, rates, width=width, label=f"{where}: {name}",
               color=NODE_COLOURS[i % len(NODE_COLOURS)],
               hatch="//" if "proxy" in where else None)  # fmt: skip
    ax.set_xticks(x + width * (len(series) - 1) / 2, [f"{m} members" for m in sizes])
    ax.set_ylabel("keys tagged per second")
    ax.set_title(title)
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax
