"""Reading lorebooks: SillyTavern world files, card ``character_book``s, and lore settings.

Errors are :class:`LoreError` naming the file and the field (``Eldoria.json: entries.3.key:
expected a list of text``). Fields we do not know (newer SillyTavern, other tools) are kept in
``extra`` and reported once each in ``Lorebook.warnings``; values are read as leniently as
SillyTavern reads them (a number in a string, ``null`` for "default").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any, TypeVar

from bot.prompt.lore.decorators import first, parse_decorators
from bot.prompt.lore.fields import (
    BOOK_FIELDS,
    CARD_ENTRY_FIELDS,
    CARD_ENTRY_MAPPED,
    WORLD_ENTRY_FIELDS,
    WORLD_ENTRY_MAPPED,
    Reader,
    json_type,
)
from bot.prompt.lore.model import (
    DEFAULT_DEPTH,
    MAX_SCAN_DEPTH,
    ROLE_NAMES,
    Lorebook,
    LoreEntry,
    LoreError,
    LorePosition,
    LoreSettings,
)

MAX_WORLD_BYTES = 32 * 1024 * 1024
MAX_ENTRIES = 100_000

_S = TypeVar("_S", bound=LoreSettings)


def load_world(data: bytes | Mapping[str, Any], source: str, *, name: str = "") -> Lorebook:
    """A SillyTavern world-info file (``{"entries": {"<uid>": entry, …}}``) as a Lorebook.

    ``source`` names the file in errors; ``name`` is the book's name (an entry's identity is
    ``name.uid``, as in ST), by default the file name without ``.json``. A V2/V3 lorebook
    (``{"spec": "lorebook_v3", "data": …}`` or a bare book with an entry list) is converted
    the way :func:`from_character_book` does.
    """
    obj = _decode(data, source) if isinstance(data, bytes | bytearray) else data
    if not isinstance(obj, Mapping):
        raise LoreError(f"{source}: expected a JSON object, got {json_type(obj)}")
    book_name = name or _stem(source)
    if obj.get("spec") == "lorebook_v3" and isinstance(obj.get("data"), Mapping):
        return from_character_book(obj["data"], source, name=name)
    entries = obj.get("entries")
    if isinstance(entries, list) and any(isinstance(e, Mapping) and "keys" in e for e in entries):
        return from_character_book(obj, source, name=name)
    if isinstance(entries, list):  # an ST-shaped entry list: index = key
        entries = {str(i): e for i, e in enumerate(entries)}
    if not isinstance(entries, Mapping):
        raise LoreError(
            f"{source}: entries: expected an object of entries, got {json_type(entries)}"
            + (" — is this a world-info file?" if entries is None else "")
        )
    _check_count(len(entries), source)
    warnings = _Warnings(source)
    out = []
    for key in _js_key_order(entries):
        raw = entries[key]
        where = f"{source}: entries.{key}"
        if not isinstance(raw, Mapping):
            raise LoreError(f"{where}: expected an object, got {json_type(raw)}")
        out.append(_world_entry(raw, key, book_name, where, warnings))
    extra = {k: v for k, v in obj.items() if k != "entries"}
    warnings.unknown(k for k in extra if k not in BOOK_FIELDS)
    description = extra.get("description")
    return Lorebook(
        name=book_name,
        entries=tuple(out),
        source=source,
        description=description if isinstance(description, str) else "",
        warnings=warnings.done(),
        extra=extra,
    )


def from_character_book(book: Mapping[str, Any], source: str, *, name: str = "") -> Lorebook:
    """A card's ``character_book`` (V2/V3 lorebook) as SillyTavern converts it on import.

    Entries are keyed by their ``id`` (the list index when missing); ST's own fields live in
    each entry's ``extensions`` in snake_case. ``use_regex`` is ignored, as ST does (it
    writes ``true`` on every export). The name is ``name``, else the book's ``name``, else
    ``source``.
    """
    if not isinstance(book, Mapping):
        raise LoreError(f"{source}: character_book: expected an object, got {json_type(book)}")
    entries = book.get("entries")
    if not isinstance(entries, list):
        raise LoreError(
            f"{source}: character_book.entries: expected a list, got {json_type(entries)}"
        )
    _check_count(len(entries), source)
    book_name = name or (book.get("name") if isinstance(book.get("name"), str) else "") or source
    warnings = _Warnings(source)
    by_id: dict[str, tuple[Mapping[str, Any], str]] = {}
    for i, raw in enumerate(entries):
        where = f"{source}: character_book.entries[{i}]"
        if not isinstance(raw, Mapping):
            raise LoreError(f"{where}: expected an object, got {json_type(raw)}")
        ident = raw.get("id")
        if ident is None:
            ident = i
        elif isinstance(ident, bool) or not isinstance(ident, int | str | float):
            raise LoreError(f"{where}.id: expected a number, got {json_type(ident)}")
        by_id[_js_key(ident)] = (raw, where)  # a repeated id replaces the earlier entry
    out = [_card_entry(*by_id[key], key, book_name, warnings) for key in _js_key_order(by_id)]
    extra = {k: v for k, v in book.items() if k != "entries"}
    description = extra.get("description")
    return Lorebook(
        name=book_name,
        entries=tuple(out),
        source=source,
        description=description if isinstance(description, str) else "",
        warnings=warnings.done(),
        extra=extra,
    )


def settings_from_st(cls: type[_S], data: Mapping[str, Any], source: str) -> _S:
    """Implementation of :meth:`LoreSettings.from_st`."""
    if not isinstance(data, Mapping):
        raise LoreError(f"{source}: world_info_settings: expected an object")
    inner = data.get("world_info_settings")
    where = f"{source}: "
    if isinstance(inner, Mapping):
        data, where = inner, f"{source}: world_info_settings."
    r = Reader(data, where, LoreError)
    base = cls()
    return cls(
        depth=r.integer("world_info_depth", base.depth),
        min_activations=r.integer("world_info_min_activations", base.min_activations),
        min_activations_depth_max=r.integer(
            "world_info_min_activations_depth_max", base.min_activations_depth_max
        ),
        budget=r.number("world_info_budget", base.budget),
        budget_cap=r.integer("world_info_budget_cap", base.budget_cap),
        include_names=r.boolean("world_info_include_names", base.include_names),
        recursive=r.boolean("world_info_recursive", base.recursive),
        max_recursion_steps=r.integer("world_info_max_recursion_steps", base.max_recursion_steps),
        case_sensitive=r.boolean("world_info_case_sensitive", base.case_sensitive),
        match_whole_words=r.boolean("world_info_match_whole_words", base.match_whole_words),
        use_group_scoring=r.boolean("world_info_use_group_scoring", base.use_group_scoring),
        character_strategy=r.integer("world_info_character_strategy", base.character_strategy),
        overflow_alert=r.boolean("world_info_overflow_alert", base.overflow_alert),
        regex_timeout=base.regex_timeout,
        regex_total_timeout=base.regex_total_timeout,
    )


# -- entries -----------------------------------------------------------------------------------


def _world_entry(
    raw: Mapping[str, Any], key: str, book: str, where: str, warnings: _Warnings
) -> LoreEntry:
    r = Reader(raw, where + ".", LoreError)
    warnings.unknown(k for k in raw if k not in WORLD_ENTRY_FIELDS)
    uid = raw.get("uid")
    flt = raw.get("characterFilter")
    flt = flt if isinstance(flt, Mapping) else {}
    fr = Reader(flt, where + ".characterFilter.", LoreError)
    return _finish(
        raw,
        book,
        uid=_uid(uid if isinstance(uid, int | str) and not isinstance(uid, bool) else key),
        key=r.keys("key"),
        keysecondary=r.keys("keysecondary"),
        selective=r.boolean("selective", True),
        selective_logic=r.integer("selectiveLogic", 0),
        comment=r.text("comment"),
        content=r.text("content"),
        constant=r.boolean("constant", False),
        vectorized=r.boolean("vectorized", False),
        disable=r.boolean("disable", False),
        order=r.number("order", 100),
        position=r.integer("position", LorePosition.BEFORE),
        depth=r.integer("depth", DEFAULT_DEPTH),
        role=r.integer("role", 0),
        probability=r.number("probability", 100),
        use_probability=r.boolean("useProbability", True),
        group=r.text("group"),
        group_override=r.boolean("groupOverride", False),
        group_weight=r.number("groupWeight", 100),
        use_group_scoring=r.opt_boolean("useGroupScoring"),
        scan_depth=r.opt_integer("scanDepth"),
        case_sensitive=r.opt_boolean("caseSensitive"),
        match_whole_words=r.opt_boolean("matchWholeWords"),
        exclude_recursion=r.boolean("excludeRecursion", False),
        prevent_recursion=r.boolean("preventRecursion", False),
        delay_until_recursion=r.level("delayUntilRecursion"),
        sticky=r.integer("sticky", 0),
        cooldown=r.integer("cooldown", 0),
        delay=r.integer("delay", 0),
        ignore_budget=r.boolean("ignoreBudget", False),
        automation_id=r.text("automationId"),
        outlet_name=r.text("outletName"),
        triggers=r.triggers("triggers"),
        character_filter_names=fr.keys("names") or r.keys("characterFilterNames"),
        character_filter_tags=fr.keys("tags") or r.keys("characterFilterTags"),
        character_filter_exclude=fr.boolean("isExclude", False)
        or r.boolean("characterFilterExclude", False),
        match_persona_description=r.boolean("matchPersonaDescription", False),
        match_character_description=r.boolean("matchCharacterDescription", False),
        match_character_personality=r.boolean("matchCharacterPersonality", False),
        match_character_depth_prompt=r.boolean("matchCharacterDepthPrompt", False),
        match_scenario=r.boolean("matchScenario", False),
        match_creator_notes=r.boolean("matchCreatorNotes", False),
        extra={k: v for k, v in raw.items() if k not in WORLD_ENTRY_MAPPED},
    )


def _card_entry(
    raw: Mapping[str, Any], where: str, key: str, book: str, warnings: _Warnings
) -> LoreEntry:
    r = Reader(raw, where + ".", LoreError)
    warnings.unknown(k for k in raw if k not in CARD_ENTRY_FIELDS)
    ext = raw.get("extensions")
    if ext is not None and not isinstance(ext, Mapping):
        raise LoreError(f"{where}.extensions: expected an object, got {json_type(ext)}")
    x = Reader(ext or {}, where + ".extensions.", LoreError)
    flt = (ext or {}).get("character_filter")
    fr = Reader(flt if isinstance(flt, Mapping) else {}, where + ".character_filter.", LoreError)
    if "enabled" not in raw:
        warnings.note(f"{where}: no 'enabled' field, so the entry is off (as in SillyTavern)")
    pos_text = raw.get("position")
    return _finish(
        raw,
        book,
        uid=_uid(key),
        key=r.keys("keys"),
        keysecondary=r.keys("secondary_keys"),
        selective=r.boolean("selective", False),
        selective_logic=x.integer("selectiveLogic", 0),
        comment=r.text("comment"),
        content=r.text("content"),
        constant=r.boolean("constant", False),
        vectorized=x.boolean("vectorized", False),
        disable=not r.boolean("enabled", False),
        order=r.number("insertion_order", 100),
        position=x.integer("position", 0 if pos_text == "before_char" else 1),
        depth=x.integer("depth", DEFAULT_DEPTH),
        role=x.integer("role", 0),
        probability=x.number("probability", 100),
        use_probability=x.boolean("useProbability", True),
        group=x.text("group"),
        group_override=x.boolean("group_override", False),
        group_weight=x.number("group_weight", 100),
        use_group_scoring=x.opt_boolean("use_group_scoring"),
        scan_depth=x.opt_integer("scan_depth"),
        case_sensitive=x.opt_boolean("case_sensitive"),
        match_whole_words=x.opt_boolean("match_whole_words"),
        exclude_recursion=x.boolean("exclude_recursion", False),
        prevent_recursion=x.boolean("prevent_recursion", False),
        delay_until_recursion=x.level("delay_until_recursion"),
        sticky=x.integer("sticky", 0),
        cooldown=x.integer("cooldown", 0),
        delay=x.integer("delay", 0),
        ignore_budget=x.boolean("ignore_budget", False),
        automation_id=x.text("automation_id"),
        outlet_name=x.text("outlet_name"),
        triggers=x.triggers("triggers"),
        character_filter_names=fr.keys("names"),
        character_filter_tags=fr.keys("tags"),
        character_filter_exclude=fr.boolean("isExclude", False),
        match_persona_description=x.boolean("match_persona_description", False),
        match_character_description=x.boolean("match_character_description", False),
        match_character_personality=x.boolean("match_character_personality", False),
        match_character_depth_prompt=x.boolean("match_character_depth_prompt", False),
        match_scenario=x.boolean("match_scenario", False),
        match_creator_notes=x.boolean("match_creator_notes", False),
        extra={k: v for k, v in raw.items() if k not in CARD_ENTRY_MAPPED},
    )


def _finish(raw: Mapping[str, Any], book: str, **fields: Any) -> LoreEntry:
    """Apply the content's decorators and the fingerprint, then build the entry."""
    decorators, content = parse_decorators(fields["content"])
    fields["content"] = content
    fields["decorators"] = decorators
    if first(decorators, "position") is not None:
        fields["position"] = (
            LorePosition.BEFORE
            if first(decorators, "position") == "before_desc"
            else LorePosition.AFTER
        )
    elif (depth := first(decorators, "depth")) is not None:
        fields["position"] = LorePosition.AT_DEPTH
        fields["depth"] = max(int(depth), 0)
    if (role := first(decorators, "role")) is not None:
        fields["role"] = ROLE_NAMES.index(role.lower())
    if (scan := first(decorators, "scan_depth")) is not None:
        fields["scan_depth"] = int(scan)
    if first(decorators, "ignore_on_max_context") is not None:
        fields["ignore_budget"] = False
    for name in ("sticky", "cooldown", "delay"):
        fields[name] = max(fields[name], 0)
    if fields["scan_depth"] is not None:
        fields["scan_depth"] = min(fields["scan_depth"], MAX_SCAN_DEPTH)
    return LoreEntry(book=book, fingerprint=_fingerprint(book, raw), **fields)


def _fingerprint(book: str, raw: Mapping[str, Any]) -> int:
    try:
        text = json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(sorted(raw.items(), key=lambda kv: str(kv[0])))
    digest = hashlib.blake2b(f"{book}\0{text}".encode(), digest_size=6).digest()
    return int.from_bytes(digest, "big")


# -- helpers -----------------------------------------------------------------------------------


class _Warnings:
    def __init__(self, source: str) -> None:
        self._source = source
        self._unknown: dict[str, int] = {}
        self._notes: list[str] = []

    def unknown(self, names: Iterable[str]) -> None:
        for n in names:
            self._unknown[n] = self._unknown.get(n, 0) + 1

    def note(self, text: str) -> None:
        if len(self._notes) < 20:
            self._notes.append(text)

    def done(self) -> tuple[str, ...]:
        out = [
            f"{self._source}: unknown field {name!r} kept as is"
            + (f" ({count} entries)" if count > 1 else "")
            + " — from a newer SillyTavern or another tool?"
            for name, count in sorted(self._unknown.items())
        ]
        return (*out[:20], *self._notes)


def _decode(data: bytes | bytearray, source: str) -> Any:
    if len(data) > MAX_WORLD_BYTES:
        raise LoreError(f"{source}: {len(data)} bytes is over the 32 MiB limit for a lorebook")
    try:
        text = bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoreError(f"{source}: not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoreError(
            f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise LoreError(f"{source}: not valid JSON ({exc.__class__.__name__})") from None


def _check_count(n: int, source: str) -> None:
    if n > MAX_ENTRIES:
        raise LoreError(f"{source}: entries: {n} entries is over the limit of {MAX_ENTRIES}")


def _stem(source: str) -> str:
    path = PurePath(source)
    return path.stem if path.suffix.lower() == ".json" else (path.name or source)


def _js_key(value: int | str | float) -> str:
    """The property name JavaScript would use for ``value`` as an object key."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _js_key_order(keys: Iterable[str]) -> list[str]:
    """JavaScript's own-key order: array-index keys ascending, then the rest as inserted."""
    index: list[tuple[int, str]] = []
    other: list[str] = []
    for k in keys:
        if k.isdigit() and k.isascii() and (k == "0" or k[0] != "0") and int(k) < 2**32 - 1:
            index.append((int(k), k))
        else:
            other.append(k)
    return [k for _, k in sorted(index)] + other


def _uid(value: int | str) -> int | str:
    if isinstance(value, str) and value.isdigit() and value.isascii() and len(value) < 16:
        return int(value)
    return value
