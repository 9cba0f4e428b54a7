"""Typed, lenient reads of lorebook JSON fields, with errors that name the field.

Lenient the way SillyTavern is in practice: ``null`` means "the default", a number may come
as a string, ``true`` for a recursion level means level 1. Anything that cannot be read as
the field's type (a list where a number belongs, …) is an error naming file and field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bot.errors import BotError
from bot.prompt.lore.model import TRIGGERS

# Fields of an ST world-file entry that the model maps; everything else lands in ``extra``.
WORLD_ENTRY_MAPPED = frozenset(
    {
        "uid",
        "key",
        "keysecondary",
        "comment",
        "content",
        "constant",
        "vectorized",
        "selective",
        "selectiveLogic",
        "order",
        "position",
        "disable",
        "ignoreBudget",
        "excludeRecursion",
        "preventRecursion",
        "matchPersonaDescription",
        "matchCharacterDescription",
        "matchCharacterPersonality",
        "matchCharacterDepthPrompt",
        "matchScenario",
        "matchCreatorNotes",
        "delayUntilRecursion",
        "probability",
        "useProbability",
        "depth",
        "outletName",
        "group",
        "groupOverride",
        "groupWeight",
        "scanDepth",
        "caseSensitive",
        "matchWholeWords",
        "useGroupScoring",
        "automationId",
        "role",
        "sticky",
        "cooldown",
        "delay",
        "characterFilterNames",
        "characterFilterTags",
        "characterFilterExclude",
        "triggers",
        "characterFilter",
    }
)
# Known fields that the engine does not use (UI-only or pass-through): no warning for them.
WORLD_ENTRY_FIELDS = WORLD_ENTRY_MAPPED | {"addMemo", "displayIndex", "extensions", "hash"}
CARD_ENTRY_FIELDS = frozenset(
    {
        "keys",
        "secondary_keys",
        "content",
        "extensions",
        "enabled",
        "insertion_order",
        "case_sensitive",
        "name",
        "priority",
        "id",
        "comment",
        "selective",
        "constant",
        "position",
        "use_regex",
    }
)
CARD_ENTRY_MAPPED = frozenset(
    {
        "keys",
        "secondary_keys",
        "content",
        "enabled",
        "insertion_order",
        "comment",
        "selective",
        "constant",
        "position",
        "id",
    }
)
BOOK_FIELDS = frozenset(
    {
        "name",
        "description",
        "scan_depth",
        "token_budget",
        "recursive_scanning",
        "extensions",
        "originalData",
        "entries",
        "spec",
        "data",
    }
)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"


class Reader:
    """Reads fields of one JSON object; ``where`` prefixes error paths (``file: entries.3.``)."""

    def __init__(self, data: Mapping[str, Any], where: str, error: type[BotError]) -> None:
        self._data = data
        self._where = where
        self._error = error

    def _fail(self, name: str, expected: str, value: Any) -> BotError:
        return self._error(f"{self._where}{name}: expected {expected}, got {json_type(value)}")

    def number(self, name: str, default: float) -> float:
        value = self._data.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return 1 if value else 0
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                return default
            return int(value) if value.is_integer() else value
        if isinstance(value, str):
            try:
                parsed = float(value.strip()) if value.strip() else math.nan
            except ValueError:
                raise self._fail(name, "a number", value) from None
            if not math.isfinite(parsed):
                return default
            return int(parsed) if parsed.is_integer() else parsed
        raise self._fail(name, "a number", value)

    def integer(self, name: str, default: int) -> int:
        value = self.number(name, default)
        return int(value) if abs(value) < 2**53 else default

    def opt_integer(self, name: str) -> int | None:
        return None if self._data.get(name) is None else self.integer(name, 0)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._data.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return value != 0 and not (isinstance(value, float) and math.isnan(value))
        if isinstance(value, str) and value.strip().lower() in ("true", "1", "false", "0", ""):
            return value.strip().lower() in ("true", "1")
        raise self._fail(name, "true or false", value)

    def opt_boolean(self, name: str) -> bool | None:
        return None if self._data.get(name) is None else self.boolean(name, False)

    def text(self, name: str) -> str:
        value = self._data.get(name)
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise self._fail(name, "text", value)

    def keys(self, name: str) -> tuple[str, ...]:
        """A key list; a single string is split on commas (old exports store "a, b")."""
        value = self._data.get(name)
        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        if not isinstance(value, list):
            raise self._fail(name, "a list of text", value)
        out = []
        for i, item in enumerate(value):
            if item is None:
                continue
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, int | float) and not isinstance(item, bool):
                out.append(str(item))
            else:
                got = json_type(item)
                raise self._error(f"{self._where}{name}[{i}]: expected text, got {got}")
        return tuple(out)

    def level(self, name: str) -> int:
        """A recursion level: false/0/null = off, true = 1, a number = that level."""
        value = self._data.get(name)
        if value is None or value is False:
            return 0
        if value is True:
            return 1
        return max(self.integer(name, 0), 0)

    def triggers(self, name: str) -> tuple[str, ...]:
        return tuple(t for t in self.keys(name) if t in TRIGGERS)
