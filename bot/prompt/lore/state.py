"""Per-chat lore timers: sticky, cooldown and delay, counted in chat messages.

The rules are SillyTavern's ``WorldInfoTimedEffects``: an effect starts at the chat length
when its entry activated and ends ``N`` messages later; an effect whose chat did not advance
(a swipe, a regenerate, a deleted message) is dropped unless it is *protected* (the cooldown
that starts when a sticky ends); an entry that was edited (new fingerprint) loses its effect
once it expires. The state is stored per chat (in Redis), so its JSON stays small and stable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.prompt.lore.model import LoreEntry

_VERSION = 1


@dataclass(frozen=True, slots=True)
class TimedEffect:
    """One running sticky or cooldown: chat lengths ``start`` to ``end`` (exclusive)."""

    fingerprint: int
    start: int
    end: int
    protected: bool = False


@dataclass(frozen=True, slots=True)
class LoreState:
    """Sticky and cooldown effects keyed ``"book.uid"`` (ST's key), plus the entries whose
    ``@@keep_activate_after_match``/``@@dont_activate_after_match`` already matched once."""

    sticky: Mapping[str, TimedEffect] = field(default_factory=dict)
    cooldown: Mapping[str, TimedEffect] = field(default_factory=dict)
    matched: frozenset[str] = frozenset()

    def to_json(self) -> str:
        """Compact JSON: ``{"v":1,"s":{"Book.3":[fp,start,end,prot]},"c":{…},"m":[…]}``."""
        out: dict[str, Any] = {"v": _VERSION}
        if self.sticky:
            out["s"] = _dump(self.sticky)
        if self.cooldown:
            out["c"] = _dump(self.cooldown)
        if self.matched:
            out["m"] = sorted(self.matched)
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes | None) -> LoreState:
        """Read :meth:`to_json` output. Missing, corrupt or foreign data gives an empty state:
        losing a timer is harmless, refusing to build a prompt is not."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return cls()
        if not isinstance(data, dict) or data.get("v") != _VERSION:
            return cls()
        matched = data.get("m", [])
        return cls(
            sticky=_load(data.get("s")),
            cooldown=_load(data.get("c")),
            matched=frozenset(m for m in matched if isinstance(m, str))
            if isinstance(matched, list)
            else frozenset(),
        )

    @property
    def empty(self) -> bool:
        return not (self.sticky or self.cooldown or self.matched)


def effect_key(entry: LoreEntry) -> str:
    return f"{entry.book}.{entry.uid}"


def _dump(effects: Mapping[str, TimedEffect]) -> dict[str, list[int]]:
    return {
        k: [e.fingerprint, e.start, e.end, 1 if e.protected else 0] for k, e in effects.items()
    }


def _load(raw: Any) -> dict[str, TimedEffect]:
    out: dict[str, TimedEffect] = {}
    if not isinstance(raw, dict):
        return out
    for key, value in raw.items():
        if (
            isinstance(key, str)
            and isinstance(value, list)
            and len(value) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            out[key] = TimedEffect(value[0], value[1], value[2], bool(value[3]))
    return out


class Timers:
    """The timed effects of one activation: what is active now, and the state to store."""

    def __init__(
        self,
        state: LoreState,
        entries: Sequence[LoreEntry],
        chat_length: int,
        trace: list[str],
    ) -> None:
        self._len = chat_length
        self._trace = trace
        self._sticky = dict(state.sticky)
        self._cooldown = dict(state.cooldown)
        self._matched = set(state.matched)
        self.sticky: set[tuple[str, int | str]] = set()
        self.cooldown: set[tuple[str, int | str]] = set()
        self.delay: set[tuple[str, int | str]] = set()
        by_print: dict[int, LoreEntry] = {}
        for e in entries:
            by_print.setdefault(e.fingerprint, e)
        self._check("sticky", self._sticky, self.sticky, by_print)
        self._check("cooldown", self._cooldown, self.cooldown, by_print)
        for e in entries:
            if e.delay and chat_length < e.delay:
                self.delay.add(e.ident)

    def _check(
        self,
        kind: str,
        effects: dict[str, TimedEffect],
        active: set[tuple[str, int | str]],
        by_print: Mapping[int, LoreEntry],
    ) -> None:
        for key, eff in list(effects.items()):
            entry = by_print.get(eff.fingerprint)
            if self._len <= eff.start and not eff.protected:
                # the chat did not advance (swipe, regenerate, delete): start afresh
                del effects[key]
                self._trace.append(f"timer: {kind} of {key} dropped (chat did not advance)")
                continue
            if entry is None:
                if self._len >= eff.end:  # edited, removed or another character's book
                    del effects[key]
                continue
            length = entry.sticky if kind == "sticky" else entry.cooldown
            if not length:
                del effects[key]
                continue
            if self._len >= eff.end:
                del effects[key]
                self._trace.append(f"timer: {kind} of {entry.label} ended")
                if kind == "sticky" and entry.cooldown:
                    # a sticky that ends starts its cooldown now, protected from swipes
                    end = self._len + entry.cooldown
                    self._cooldown[key] = TimedEffect(entry.fingerprint, self._len, end, True)
                    self.cooldown.add(entry.ident)
                continue
            active.add(entry.ident)

    def matched_before(self, entry: LoreEntry) -> bool:
        return effect_key(entry) in self._matched

    def record(self, activated: Iterable[LoreEntry]) -> LoreState:
        """Start sticky/cooldown for newly activated entries; return the state to store."""
        for e in activated:
            key = effect_key(e)
            if e.sticky and key not in self._sticky:
                self._sticky[key] = TimedEffect(e.fingerprint, self._len, self._len + e.sticky)
            if e.cooldown and key not in self._cooldown:
                end = self._len + e.cooldown
                self._cooldown[key] = TimedEffect(e.fingerprint, self._len, end)
            if e.has_decorator("keep_activate_after_match") or e.has_decorator(
                "dont_activate_after_match"
            ):
                self._matched.add(key)
        return LoreState(dict(self._sticky), dict(self._cooldown), frozenset(self._matched))
