"""The lorebook data model: SillyTavern's world-info entry, book and global settings.

Field names are snake_case; each docstring names the SillyTavern JSON field it comes from.
Every value is already normalised by the loader (defaults filled in, ``true`` recursion delay
turned into level 1, …), so the engine never has to guess about a missing field.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.errors import ConfigError


class LoreError(ConfigError):
    """A lorebook or lore setting that cannot be used; the message names the file and field."""

    hint = "fix the lorebook (a SillyTavern world JSON file or a card's character_book)"


class LorePosition(enum.IntEnum):
    """Where an activated entry's text goes (``position`` in the world file)."""

    BEFORE = 0  # before the character definitions (wiBefore)
    AFTER = 1  # after the character definitions (wiAfter)
    AN_TOP = 2  # top of the author's note
    AN_BOTTOM = 3  # bottom of the author's note
    AT_DEPTH = 4  # in the chat at ``depth`` with ``role``
    EM_TOP = 5  # an extra example-message block before the card's examples
    EM_BOTTOM = 6  # … after them
    OUTLET = 7  # only where a ``{{outlet::name}}`` macro asks for it


class SelectiveLogic(enum.IntEnum):
    """How secondary keys combine with a primary match (``selectiveLogic``)."""

    AND_ANY = 0
    NOT_ALL = 1
    NOT_ANY = 2
    AND_ALL = 3


class Strategy(enum.IntEnum):
    """Character vs global book order (``world_info_character_strategy``)."""

    EVENLY = 0
    CHARACTER_FIRST = 1
    GLOBAL_FIRST = 2


ROLE_NAMES = ("system", "user", "assistant")  # ST's extension_prompt_roles 0, 1, 2
DEFAULT_DEPTH = 4
DEFAULT_WEIGHT = 100
MAX_SCAN_DEPTH = 1000
TRIGGERS = ("normal", "continue", "impersonate", "swipe", "regenerate", "quiet")


@dataclass(frozen=True, slots=True)
class Decorator:
    """One V3 ``@@name value`` line from the head of an entry's content."""

    name: str  # without the @@, lower case
    value: str = ""


@dataclass(frozen=True, slots=True)
class LoreEntry:
    """One world-info entry. Optional overrides are ``None`` where ST means "use the global"."""

    uid: int | str  # uid (unique within its book)
    book: str  # the book's name: an entry's identity is (book, uid)
    key: tuple[str, ...] = ()  # key: primary keys; "/re/flags" is a regex
    keysecondary: tuple[str, ...] = ()  # keysecondary
    selective: bool = True  # selective: False makes ST ignore the secondary keys
    selective_logic: int = SelectiveLogic.AND_ANY  # selectiveLogic (unknown values never match)
    comment: str = ""  # comment
    content: str = ""  # content, with the leading @@decorator lines removed
    constant: bool = False  # constant
    vectorized: bool = False  # vectorized (kept, not used: no vector storage here)
    disable: bool = False  # disable
    order: float = 100  # order: higher = later in the prompt and earlier for the budget
    position: int = LorePosition.BEFORE  # position (0..7; others are never placed)
    depth: int = DEFAULT_DEPTH  # depth (position 4)
    role: int = 0  # role (position 4): 0 system, 1 user, 2 assistant
    probability: float = 100  # probability (percent)
    use_probability: bool = True  # useProbability
    group: str = ""  # group: inclusion groups, comma separated
    group_override: bool = False  # groupOverride ("prioritise inclusion")
    group_weight: float = DEFAULT_WEIGHT  # groupWeight
    use_group_scoring: bool | None = None  # useGroupScoring
    scan_depth: int | None = None  # scanDepth
    case_sensitive: bool | None = None  # caseSensitive
    match_whole_words: bool | None = None  # matchWholeWords
    exclude_recursion: bool = False  # excludeRecursion ("non-recursable")
    prevent_recursion: bool = False  # preventRecursion
    delay_until_recursion: int = 0  # delayUntilRecursion: recursion level, 0 = off
    sticky: int = 0  # sticky (messages; 0 = off)
    cooldown: int = 0  # cooldown
    delay: int = 0  # delay
    ignore_budget: bool = False  # ignoreBudget
    automation_id: str = ""  # automationId
    outlet_name: str = ""  # outletName (position 7)
    triggers: tuple[str, ...] = ()  # triggers: generation types; empty = all
    character_filter_names: tuple[str, ...] = ()  # characterFilter.names
    character_filter_tags: tuple[str, ...] = ()  # characterFilter.tags
    character_filter_exclude: bool = False  # characterFilter.isExclude
    match_persona_description: bool = False  # matchPersonaDescription
    match_character_description: bool = False  # matchCharacterDescription
    match_character_personality: bool = False  # matchCharacterPersonality
    match_character_depth_prompt: bool = False  # matchCharacterDepthPrompt
    match_scenario: bool = False  # matchScenario
    match_creator_notes: bool = False  # matchCreatorNotes
    decorators: tuple[Decorator, ...] = ()  # V3 decorators, already applied to the fields
    fingerprint: int = 0  # content hash: an edited entry loses its sticky/cooldown timers
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def ident(self) -> tuple[str, int | str]:
        """(book, uid): the entry's identity across books, like ST's ``world.uid``."""
        return (self.book, self.uid)

    @property
    def label(self) -> str:
        """A short human name for traces: ``Eldoria#3 (power)``."""
        note = self.comment or (self.key[0] if self.key else "")
        return f"{self.book}#{self.uid}" + (f" ({note[:40]})" if note else "")

    def has_decorator(self, name: str) -> bool:
        return any(d.name == name for d in self.decorators)

    def decorator(self, name: str) -> str | None:
        """The first value of a decorator (the CCv3 rule), or None when absent."""
        for d in self.decorators:
            if d.name == name:
                return d.value
        return None


@dataclass(frozen=True, eq=False)
class Lorebook:
    """One world-info book. Compared by identity so compiled matchers can be cached on it.

    ``entries`` keep SillyTavern's order (JavaScript object-key order: integer uids
    ascending, then other keys as written), which decides ties between equal ``order``.
    """

    name: str
    entries: tuple[LoreEntry, ...] = ()
    source: str = ""  # the file (or card) it came from, for error messages
    description: str = ""
    warnings: tuple[str, ...] = ()  # best-effort notes from loading (unknown fields, …)
    extra: Mapping[str, Any] = field(default_factory=dict)  # book-level fields kept as is
    # The engine's compiled key matchers, filled on first use: the book is immutable, so
    # a key compiled once serves every later scan of every chat that uses this book.
    matchers: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)


@dataclass(frozen=True, slots=True)
class LoreSettings:
    """SillyTavern's ``world_info_settings``. Defaults are its code defaults (not the shipped
    settings.json, which turns on recursion and whole-word matching)."""

    depth: int = 2  # world_info_depth: messages scanned
    min_activations: int = 0  # world_info_min_activations
    min_activations_depth_max: int = 0  # world_info_min_activations_depth_max (0 = chat)
    budget: float = 25  # world_info_budget: percent of the prompt budget
    budget_cap: int = 0  # world_info_budget_cap: absolute tokens, 0 = none
    include_names: bool = True  # world_info_include_names: "Name: " before scanned messages
    recursive: bool = False  # world_info_recursive
    max_recursion_steps: int = 0  # world_info_max_recursion_steps (0 = unlimited)
    case_sensitive: bool = False  # world_info_case_sensitive
    match_whole_words: bool = False  # world_info_match_whole_words
    use_group_scoring: bool = False  # world_info_use_group_scoring
    character_strategy: int = Strategy.CHARACTER_FIRST  # world_info_character_strategy
    overflow_alert: bool = False  # world_info_overflow_alert
    # Ours, not ST's: the time one user regex key may take on one scan, and for all regex
    # keys of one activation together, so a catastrophic pattern cannot hang a channel.
    regex_timeout: float = 0.02
    regex_total_timeout: float = 0.25

    @classmethod
    def from_st(cls, data: Mapping[str, Any], source: str = "settings.json") -> LoreSettings:
        """Read ST's ``world_info_settings`` object (or a whole settings.json holding one).

        Unknown keys are ignored (newer SillyTavern adds some); a known key with a value of
        the wrong type raises :class:`LoreError` naming it.
        """
        from bot.prompt.lore.loading import settings_from_st  # the reader lives with loading

        return settings_from_st(cls, data, source)
