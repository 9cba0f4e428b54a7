"""The scan buffer and the per-entry checks of one pass (ST's ``WorldInfoBuffer`` and the
candidate loop of ``checkWorldInfo``)."""

from __future__ import annotations

import enum
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import cast

from bot.prompt.lore.decorators import split_keys
from bot.prompt.lore.matching import Haystack, Matcher, RegexClock, compile_key, js_trim
from bot.prompt.lore.model import (
    MAX_SCAN_DEPTH,
    Lorebook,
    LoreEntry,
    LoreSettings,
    SelectiveLogic,
)
from bot.prompt.lore.state import Timers

_MATCHER = "\x01"  # ST puts it before every message so regexes can anchor on speakers
_JOINER = "\n" + _MATCHER


_PLAIN = LoreEntry(uid=-1, book="")  # stands for "no per-entry overrides"


class ScanState(enum.IntEnum):
    NONE = 0
    INITIAL = 1
    RECURSION = 2
    MIN_ACTIVATIONS = 3


@dataclass(frozen=True, slots=True)
class MatchSources:
    """Texts an entry may opt into scanning (ST's "additional matching sources")."""

    persona_description: str = ""
    character_description: str = ""
    character_personality: str = ""
    character_depth_prompt: str = ""
    scenario: str = ""
    creator_notes: str = ""


def _has_sources(e: LoreEntry) -> bool:
    return (
        e.match_persona_description
        or e.match_character_description
        or e.match_character_personality
        or e.match_character_depth_prompt
        or e.match_scenario
        or e.match_creator_notes
    )


class Buffer:
    """What entries are matched against: messages to a depth, injections, recursion text."""

    def __init__(
        self,
        scan: Sequence[str],
        inject: Sequence[str],
        sources: MatchSources,
        settings: LoreSettings,
    ) -> None:
        self._scan = scan
        self._messages: list[str] = []  # trimmed as far as a scan has needed them
        self._inject = list(inject)
        self._recurse: list[str] = []
        self._sources = sources
        self._depth = settings.depth
        self.skew = 0
        self._cache: dict[tuple[int, tuple[str, ...], bool], Haystack] = {}

    @property
    def depth(self) -> int:
        return self._depth + self.skew

    def has_recurse(self) -> bool:
        return bool(self._recurse)

    def add_recurse(self, text: str) -> None:
        self._recurse.append(text)
        self._cache.clear()

    def default(self, state: ScanState) -> Haystack:
        """The haystack of entries without their own scan depth or extra sources."""
        return self.get(_PLAIN, state)

    def get(self, entry: LoreEntry, state: ScanState) -> Haystack:
        if entry.scan_depth is None and not _has_sources(entry):
            plain: tuple[int, tuple[str, ...], bool] = (
                self.depth,
                (),
                state != ScanState.MIN_ACTIVATIONS and self.depth > 0,
            )
            found = self._cache.get(plain)
            if found is not None:
                return found
        depth = entry.scan_depth if entry.scan_depth is not None else self.depth
        if depth <= 0:
            depth = 0  # ST scans nothing at all then, not even injections or recursion
        depth = min(depth, MAX_SCAN_DEPTH)
        extras = self._extras(entry) if depth else ()
        recurse = state != ScanState.MIN_ACTIVATIONS and depth > 0
        key = (depth, extras, recurse)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = Haystack(self._build(depth, extras, recurse))
        return found

    def _extras(self, entry: LoreEntry) -> tuple[str, ...]:
        s = self._sources
        picked = (
            (entry.match_persona_description, s.persona_description),
            (entry.match_character_description, s.character_description),
            (entry.match_character_personality, s.character_personality),
            (entry.match_character_depth_prompt, s.character_depth_prompt),
            (entry.match_scenario, s.scenario),
            (entry.match_creator_notes, s.creator_notes),
        )
        return tuple(text for wanted, text in picked if wanted and text)

    def _build(self, depth: int, extras: tuple[str, ...], recurse: bool) -> str:
        if depth == 0:
            return ""
        if len(self._messages) < depth:
            have = len(self._messages)
            self._messages.extend(js_trim(m) for m in self._scan[have:depth])
        parts = [_MATCHER + _JOINER.join(self._messages[:depth]), *extras, *self._inject]
        if recurse:
            parts.extend(self._recurse)
        return _JOINER.join(parts)


@dataclass(frozen=True, slots=True)
class Gate:
    """What the cascade needs besides the entry: the scan's situation."""

    settings: LoreSettings
    timers: Timers
    trigger: str
    character: str
    character_tags: frozenset[str]
    forced: frozenset[tuple[str, int | str]]
    assistant_messages: int | None
    greeting_index: int | None


def skip_reason(entry: LoreEntry, gate: Gate, state: ScanState, level: int) -> str | None:
    """Why ``entry`` cannot activate in this pass (None: it may), in ST's cascade order."""
    ident = entry.ident
    if entry.disable:
        return "disabled"
    if entry.triggers and gate.trigger not in entry.triggers:
        return f"not for generation type {gate.trigger!r}"
    if entry.character_filter_names:
        included = gate.character in entry.character_filter_names
        if included == entry.character_filter_exclude:
            return "filtered out by character"
    if entry.character_filter_tags:
        tagged = any(t in gate.character_tags for t in entry.character_filter_tags)
        if tagged == entry.character_filter_exclude:
            return "filtered out by tag"
    sticky = ident in gate.timers.sticky
    if ident in gate.timers.delay:
        return f"delayed until the chat has {entry.delay} messages"
    if ident in gate.timers.cooldown and not sticky:
        return "on cooldown"
    if entry.delay_until_recursion and not sticky:
        if state != ScanState.RECURSION:
            return "delayed until recursion"
        if entry.delay_until_recursion > level:
            return f"delayed until recursion level {entry.delay_until_recursion}"
    recursion = state == ScanState.RECURSION and gate.settings.recursive
    if recursion and entry.exclude_recursion and not sticky:
        return "non-recursable (excluded from recursion)"
    return _v3_gate(entry, gate)


def _v3_gate(entry: LoreEntry, gate: Gate) -> str | None:
    """The CCv3 decorators that forbid a match (ST ignores them)."""
    if not entry.decorators:
        return None
    greeting = entry.decorator("is_greeting")
    if greeting is not None and gate.greeting_index not in (None, int(greeting)):
        return f"@@is_greeting {greeting}: another greeting is active"
    count = gate.assistant_messages
    after = entry.decorator("activate_only_after")
    if after is not None and count is not None and count < int(after):
        return f"@@activate_only_after {after}: {count} character messages so far"
    every = entry.decorator("activate_only_every")
    if every is not None and count is not None and int(every) > 0 and count % int(every):
        return f"@@activate_only_every {every}: {count} character messages so far"
    if entry.has_decorator("dont_activate_after_match") and gate.timers.matched_before(entry):
        return "@@dont_activate_after_match: matched before"
    return None


def forced_reason(entry: LoreEntry, gate: Gate) -> str | None:
    """Why the entry activates without a key match, or None. ``"skip"`` for @@dont_activate."""
    if not entry.decorators:  # the common case, in the same order as below
        if entry.ident in gate.forced:
            return "forced"
        if entry.constant:
            return "constant"
        return "sticky" if entry.ident in gate.timers.sticky else None
    if entry.has_decorator("activate"):
        return "@@activate"
    if entry.has_decorator("dont_activate"):
        return "skip"
    if entry.ident in gate.forced:
        return "forced"
    if entry.constant:
        return "constant"
    if entry.ident in gate.timers.sticky:
        return "sticky"
    if entry.has_decorator("keep_activate_after_match") and gate.timers.matched_before(entry):
        return "@@keep_activate_after_match"
    return None


def _never(hay: Haystack, clock: RegexClock) -> bool:
    return False


_NEVER: Matcher = _never


class KeyMatcher:
    """Matches an entry's keys against a haystack with the book's compiled matchers."""

    def __init__(
        self, settings: LoreSettings, macros: Callable[[str], str], clock: RegexClock
    ) -> None:
        self._settings = settings
        self._macros = macros
        self.clock = clock

    def _flags(self, entry: LoreEntry) -> tuple[bool, bool]:
        case = entry.case_sensitive
        whole = entry.match_whole_words
        return (
            self._settings.case_sensitive if case is None else case,
            self._settings.match_whole_words if whole is None else whole,
        )

    def _matcher(self, book: Lorebook, entry: LoreEntry, key: str) -> Matcher:
        cache = cast(MutableMapping[tuple[str, bool, bool], Matcher], book.matchers)
        return compile_key(cache, key, *self._flags(entry))

    def _compiled(
        self, book: Lorebook, entry: LoreEntry, keys: tuple[str, ...]
    ) -> tuple[tuple[str, Matcher | None], ...]:
        """The entry's keys with their matchers, cached on the book: None marks a key with
        macros (expanded per activation); an empty key never matches (ST skips it)."""
        case, whole = self._flags(entry)
        ck = ("entry", id(entry), keys is entry.key, case, whole)
        found = book.matchers.get(ck)
        if found is None:
            cache = cast(MutableMapping[tuple[str, bool, bool], Matcher], book.matchers)
            found = tuple(
                (
                    k,
                    _NEVER
                    if not k
                    else None
                    if ("{{" in k or "<" in k)
                    else compile_key(cache, js_trim(k), case, whole),
                )
                for k in keys
            )
            book.matchers[ck] = found
        return cast(tuple[tuple[str, Matcher | None], ...], found)

    def _hit(
        self, book: Lorebook, entry: LoreEntry, key: str, m: Matcher | None, hay: Haystack
    ) -> bool:
        if m is not None:
            return m(hay, self.clock)
        return self.matches(book, entry, key, hay)

    def matches(self, book: Lorebook, entry: LoreEntry, key: str, hay: Haystack) -> bool:
        """One key, macro-expanded and trimmed the way ST does before matching."""
        expanded = self._macros(key) if ("{{" in key or "<" in key) else key
        if not expanded:
            return False
        return self._matcher(book, entry, js_trim(expanded))(hay, self.clock)

    def raw_matches(self, book: Lorebook, entry: LoreEntry, key: str, hay: Haystack) -> bool:
        """One key as group scoring reads it: no macros, no trimming (ST's getScore)."""
        return self._matcher(book, entry, key)(hay, self.clock)

    def primary(self, book: Lorebook, entry: LoreEntry, hay: Haystack) -> str | None:
        for key, m in self._compiled(book, entry, entry.key):
            if self._hit(book, entry, key, m, hay):
                return key
        return None

    def secondary(self, book: Lorebook, entry: LoreEntry, hay: Haystack) -> bool:
        """ST's selective logic, short-circuiting exactly where it does."""
        logic = entry.selective_logic
        any_hit, all_hit = False, True
        for key, m in self._compiled(book, entry, entry.keysecondary):
            hit = self._hit(book, entry, key, m, hay)
            any_hit = any_hit or hit
            all_hit = all_hit and hit
            if logic == SelectiveLogic.AND_ANY and hit:
                return True
            if logic == SelectiveLogic.NOT_ALL and not hit:
                return True
        if logic == SelectiveLogic.NOT_ANY and not any_hit:
            return True
        return logic == SelectiveLogic.AND_ALL and all_hit

    def v3_keys(self, book: Lorebook, entry: LoreEntry, hay: Haystack) -> str | None:
        """@@additional_keys (one must match) and @@exclude_keys (none may): why not, or None."""
        extra = entry.decorator("additional_keys")
        if extra is not None and not any(
            self.matches(book, entry, k, hay) for k in split_keys(extra)
        ):
            return "@@additional_keys: none found"
        exclude = entry.decorator("exclude_keys")
        if exclude is not None and any(
            self.matches(book, entry, k, hay) for k in split_keys(exclude)
        ):
            return "@@exclude_keys: one was found"
        return None

    def score(self, book: Lorebook, entry: LoreEntry, hay: Haystack) -> int:
        """Group scoring: matched primary keys, plus secondaries for AND_ANY / full AND_ALL."""
        if not entry.key:
            return 0
        primary = sum(1 for k in entry.key if self.raw_matches(book, entry, k, hay))
        secondary = sum(1 for k in entry.keysecondary if self.raw_matches(book, entry, k, hay))
        if entry.keysecondary:
            if entry.selective_logic == SelectiveLogic.AND_ANY:
                return primary + secondary
            if entry.selective_logic == SelectiveLogic.AND_ALL:
                full = secondary == len(entry.keysecondary)
                return primary + secondary if full else primary
        return primary
