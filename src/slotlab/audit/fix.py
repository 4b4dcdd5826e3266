"""The fix to consider for a hazard: a hash tag that would colocate its keys, and what the tag
costs (the share of the traffic its busiest value would pull into one slot), or pipelining.

The tag is the longest part that every key has in common, cut at separators (``: . / | # -``)
and "meaningful": it holds a digit (an id) or several segments, so a bare type name such as
``user`` is never proposed. ``group:42:members`` and ``group:42:info`` give ``{group:42}``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np

from slotlab.audit import texts
from slotlab.slots import SLOT_COUNT, hash_tag, key_slots

__all__ = ["common_tag", "suggest_fix"]

_SEP: Final = re.compile(rb"([:./|#-])")
_SEPS: Final = rb":./|#-"
_MAX_SEGMENTS: Final = 16


def _candidates(key: bytes) -> list[bytes]:
    tokens = _SEP.split(key)[: 2 * _MAX_SEGMENTS - 1]
    out = set()
    for i in range(0, len(tokens), 2):
        for j in range(i, len(tokens), 2):
            cand = b"".join(tokens[i : j + 1])
            if cand and (any(c in b"0123456789" for c in cand) or j > i):
                out.add(cand)
    return sorted(out, key=lambda c: (-len(c), c))


def _bounded(cand: bytes) -> re.Pattern[bytes]:
    sep = re.escape(_SEPS)
    return re.compile(rb"(?:^|[" + sep + rb"])" + re.escape(cand) + rb"(?:$|[" + sep + rb"])")


def common_tag(keys: Sequence[bytes]) -> tuple[bytes | None, bytes | None, int]:
    """(the part every key has, or None; else the part most keys have; how many have it)."""
    distinct = list(dict.fromkeys(keys))
    if len(distinct) < 2 or any(hash_tag(k) for k in distinct):
        return None, None, 0
    best: bytes | None = None
    best_n = 0
    for cand in _candidates(distinct[0]):
        pattern = _bounded(cand)
        n = sum(1 for k in distinct if pattern.search(k))
        if n == len(distinct):
            return cand, cand, n
        if n > best_n:
            best, best_n = cand, n
    for key in distinct[1:]:  # the first key may be the odd one out
        for cand in _candidates(key):
            pattern = _bounded(cand)
            n = sum(1 for k in distinct if pattern.search(k))
            if n > best_n:
                best, best_n = cand, n
    return None, best if best_n > 1 else None, best_n


def _family(tag: bytes) -> re.Pattern[bytes]:
    """The tag with every number a wildcard: the tags of the same kind for other ids."""
    parts = re.split(rb"([0-9]+)", tag)
    body = b"".join(rb"[0-9]+" if p.isdigit() else re.escape(p) for p in parts if p)
    sep = re.escape(_SEPS)
    return re.compile(rb"(?:^|[" + sep + rb"])(" + body + rb")(?:$|[" + sep + rb"])")


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "0%"


class Advisor:
    """Fixes for the hazards of one audit, over its key population (key -> uses): the busiest
    slot and each tag family's busiest value are counted once, when first needed."""

    def __init__(self, population: Mapping[bytes, int]) -> None:
        self.population = population
        self._busiest: tuple[int, int] | None = None
        self._families: dict[bytes, tuple[bytes | None, int]] = {}

    def busiest(self) -> tuple[int, int]:
        """(the busiest slot's key uses, all key uses)."""
        if self._busiest is None:
            # every key's slot at once (numpy, slotlab.slots.key_slots), weighted by its uses
            keys = list(self.population)
            uses = np.fromiter(self.population.values(), dtype=np.int64, count=len(keys))
            per_slot = np.bincount(key_slots(keys), weights=uses, minlength=SLOT_COUNT)
            self._busiest = (int(per_slot.max()), int(uses.sum()))
        return self._busiest

    def hottest(self, tag: bytes) -> tuple[bytes | None, int]:
        """The value of ``tag``'s family (its numbers any number) with the most key uses."""
        family = _family(tag)
        found = self._families.get(family.pattern)
        if found is None:
            literal = max(re.split(rb"[0-9]+", tag), key=len)
            per_tag: Counter[bytes] = Counter()
            for key, count in self.population.items():
                if literal in key:
                    m = family.search(key)
                    if m is not None:
                        per_tag[m.group(1)] += count
            found = per_tag.most_common(1)[0] if per_tag else (None, 0)
            self._families[family.pattern] = found
        return found

    def fix(self, kind: str, keys: Sequence[bytes]) -> str:
        """One sentence: what to change so that this hazard goes away."""
        return suggest_fix(kind, keys, self)


def suggest_fix(kind: str, keys: Sequence[bytes], advisor: Advisor) -> str:
    """One sentence: what to change so that a hazard of ``kind`` on ``keys`` goes away."""
    if kind in ("select", "swapdb", "move"):
        return texts.FIX_DB
    if kind == "sort-pattern":
        return texts.FIX_SORT
    if kind in ("script-undeclared-key", "script-hidden-key"):
        return texts.FIX_SCRIPT_KEYS
    if kind == "script-zero-keys":
        return texts.FIX_SCRIPT_ZERO
    if kind == "script-no-cluster":
        return texts.FIX_NO_CLUSTER
    if not keys:
        return texts.FIX_FANOUT_KEYLESS
    distinct = list(dict.fromkeys(keys))
    if len(distinct) < 2:
        return texts.FIX_PIPELINE
    tag, best, n = common_tag(distinct)
    if tag is None:
        extra = ""
        if best is not None:
            shown = "{" + best.decode("utf-8", "backslashreplace") + "}"
            extra = texts.FIX_PARTIAL_BEST.format(tag=shown, k=n, n=len(distinct))
        return texts.FIX_PARTIAL.format(n=len(distinct), best=extra)
    hot, hot_n = advisor.hottest(tag)
    now, total = advisor.busiest()
    first = distinct[0].decode("utf-8", "backslashreplace")
    text_tag = tag.decode("utf-8", "backslashreplace")
    example = first.replace(text_tag, "{" + text_tag + "}", 1)
    family_text = "{" + re.sub(r"[0-9]+", "<n>", text_tag) + "}"
    return texts.FIX_TAG.format(
        tag="{" + text_tag + "}", example=example, family=family_text,
        hot="{" + (hot or tag).decode("utf-8", "backslashreplace") + "}",
        share=_share(hot_n, total), uses=total, now=_share(now, total),
    )  # fmt: skip
