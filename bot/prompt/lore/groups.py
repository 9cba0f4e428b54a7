"""Inclusion groups (ST's ``filterByInclusionGroups``): at most one entry per group label.

Order of decisions per group: sticky members win outright; members on cooldown or delay
drop out; with group scoring only the best-scoring members stay; a group that already has an
active member from an earlier pass takes no new one; otherwise the highest ``order`` among
"prioritise" members wins, else a roll weighted by ``groupWeight``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping

from bot.prompt.lore.matching import JS_SPACE
from bot.prompt.lore.model import LoreEntry, LoreSettings
from bot.prompt.lore.state import Timers

_GROUP_SPLIT = re.compile(f",[{re.escape(JS_SPACE)}]*")

Scorer = Callable[[LoreEntry], int]


def filter_groups(
    new: list[LoreEntry],
    activated: Mapping[tuple[str, int | str], LoreEntry],
    settings: LoreSettings,
    timers: Timers,
    score: Scorer,
    rng: random.Random,
    trace: list[str],
) -> None:
    """Remove the losers of every inclusion group from ``new`` (in place)."""
    groups: dict[str, list[LoreEntry]] = {}
    for entry in new:
        if entry.group:
            for label in _GROUP_SPLIT.split(entry.group):
                if label:
                    groups.setdefault(label, []).append(entry)
    if not groups:
        return

    def remove(entry: LoreEntry, why: str) -> None:
        # ST splices by indexOf without checking for -1, which drops the *last* entry when
        # one is removed twice (a member of two groups); we remove only what is there
        if entry in new:
            new.remove(entry)
            if why:
                trace.append(f"{entry.label}: {why}")

    labels = _js_order(groups)
    has_sticky: dict[str, bool] = {}
    for label in labels:
        group = groups[label]
        sticky = [e for e in group if e.ident in timers.sticky]
        has_sticky[label] = bool(sticky)
        for e in group:
            if sticky and e not in sticky:
                remove(e, f"lost group {label!r} to a sticky entry")
        for e in group:  # ST checks these even for sticky members
            if e.ident in timers.cooldown or e.ident in timers.delay:
                remove(e, f"removed from group {label!r}: on cooldown or delay")

    for label in labels:
        group = groups[label]
        if has_sticky[label]:
            continue
        if not settings.use_group_scoring and not any(e.use_group_scoring for e in group):
            continue
        scores = [score(e) for e in group]
        best = max(scores)
        keep = []
        for e, s in zip(group, scores, strict=True):
            scored = e.use_group_scoring
            if scored is None:
                scored = settings.use_group_scoring
            if scored and s < best:
                remove(e, f"lost group {label!r} on score ({s} < {best})")
            else:
                keep.append(e)
        groups[label] = keep

    for label in labels:
        group = groups[label]
        if has_sticky[label]:
            continue
        if any(e.group == label for e in activated.values()):
            for e in group:
                remove(e, f"group {label!r} already has an active entry")
            continue
        if len(group) <= 1:
            continue
        prio = sorted((e for e in group if e.group_override), key=lambda e: -e.order)
        if prio:
            winner: LoreEntry | None = prio[0]
            how = "prioritised"
        else:
            total = sum(e.group_weight for e in group)
            roll = rng.random() * total
            winner, running = None, 0.0
            for e in group:
                running += e.group_weight
                if roll <= running:
                    winner = e
                    break
            how = f"weighted roll {roll:.1f} of {total:g}"
        if winner is None:
            trace.append(f"group {label!r}: no winner ({how})")
            continue
        trace.append(f"group {label!r}: {winner.label} wins ({how})")
        for e in group:
            if e is not winner:
                remove(e, f"lost group {label!r}")


def _js_order(groups: Mapping[str, object]) -> list[str]:
    """Object-key order, as ST iterates its group map: integer labels first, ascending."""
    index = sorted(
        (int(k), k) for k in groups if k.isdigit() and k.isascii() and (k == "0" or k[0] != "0")
    )
    rest = [k for k in groups if not (k.isdigit() and k.isascii() and (k == "0" or k[0] != "0"))]
    return [k for _, k in index] + rest
