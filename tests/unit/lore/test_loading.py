"""Loading world files, card books, settings and decorators: fields, order, errors."""

from __future__ import annotations

import json

import pytest

from bot.errors import ConfigError
from bot.prompt.card import load_card
from bot.prompt.lore import (
    Decorator,
    LoreError,
    LorePosition,
    LoreSettings,
    from_character_book,
    load_world,
)
from tests.unit.lore.helpers import FIXTURES


def test_eldoria_world_file_loads_with_st_defaults() -> None:
    path = FIXTURES / "worlds" / "Eldoria.json"
    book = load_world(path.read_bytes(), str(path))
    assert book.name == "Eldoria"
    assert [e.uid for e in book.entries] == [0, 1, 2, 3]
    power = book.entries[3]
    assert power.key == ("power", "magic", "ability")
    assert power.content.startswith('{{user}}: "What are your powers?"')
    assert (power.position, power.order, power.depth, power.probability) == (0, 100, 4, 100)
    assert power.selective is False  # as written in the file
    assert power.use_probability and not power.constant and not power.disable
    assert book.warnings == ()


def test_seraphina_embedded_book_converts_like_sillytavern() -> None:
    card = load_card(FIXTURES / "cards" / "default_Seraphina.png")
    assert card.character_book is not None
    book = from_character_book(card.character_book, "default_Seraphina.png")
    world = load_world((FIXTURES / "worlds" / "Eldoria.json").read_bytes(), "Eldoria.json")
    assert book.name == "Eldoria"
    assert [e.uid for e in book.entries] == [0, 1, 2, 3]
    for mine, theirs in zip(book.entries, world.entries, strict=True):
        assert (mine.key, mine.content, mine.order) == (theirs.key, theirs.content, theirs.order)
        assert mine.position == LorePosition.BEFORE  # extensions.position 0
        assert mine.use_probability is False  # extensions.useProbability false
        assert mine.probability == 100  # extensions.probability null -> 100
        assert not mine.disable  # enabled: true


def test_js_key_order_puts_integer_uids_first_ascending() -> None:
    data = {"entries": {"b": {"uid": "b"}, "10": {"uid": 10}, "2": {"uid": 2}, "a": {}}}
    book = load_world(data, "order.json")
    assert [e.uid for e in book.entries] == [2, 10, "b", "a"]


def test_card_book_entries_keyed_by_id_with_later_duplicates_winning() -> None:
    book = from_character_book(
        {
            "entries": [
                {"id": 5, "keys": ["x"], "content": "five", "enabled": True},
                {"keys": ["y"], "content": "index one", "enabled": True},
                {"id": 5, "keys": ["z"], "content": "five again", "enabled": True},
            ]
        },
        "card.png",
        name="Card",
    )
    assert [(e.uid, e.content) for e in book.entries] == [(1, "index one"), (5, "five again")]


def test_card_entry_extensions_map_to_st_fields() -> None:
    entry = {
        "id": 0,
        "keys": ["k"],
        "secondary_keys": ["s"],
        "content": "c",
        "enabled": True,
        "insertion_order": 7,
        "position": "after_char",
        "extensions": {
            "depth": 2,
            "role": 1,
            "selectiveLogic": 3,
            "group": "g",
            "group_override": True,
            "group_weight": 30,
            "scan_depth": 5,
            "case_sensitive": True,
            "match_whole_words": False,
            "exclude_recursion": True,
            "prevent_recursion": True,
            "delay_until_recursion": True,
            "sticky": 2,
            "cooldown": 3,
            "delay": 4,
            "ignore_budget": True,
            "triggers": ["normal", "bogus"],
        },
    }
    (e,) = from_character_book({"entries": [entry]}, "card.png").entries
    assert e.position == LorePosition.AFTER and e.order == 7
    assert (e.depth, e.role, e.selective_logic, e.group, e.group_override) == (2, 1, 3, "g", True)
    assert (e.group_weight, e.scan_depth, e.case_sensitive, e.match_whole_words) == (
        30,
        5,
        True,
        False,
    )
    assert (e.exclude_recursion, e.prevent_recursion, e.delay_until_recursion) == (True, True, 1)
    assert (e.sticky, e.cooldown, e.delay, e.ignore_budget) == (2, 3, 4, True)
    assert e.triggers == ("normal",)
    assert e.keysecondary == ("s",)


def test_card_entry_without_enabled_is_off_with_a_warning() -> None:
    book = from_character_book({"entries": [{"keys": ["k"], "content": "c"}]}, "c.png")
    assert book.entries[0].disable
    assert any("enabled" in w for w in book.warnings)


def test_unknown_fields_are_kept_and_reported_once() -> None:
    data = {
        "entries": {
            "0": {"uid": 0, "key": ["a"], "futureField": 1},
            "1": {"uid": 1, "key": ["b"], "futureField": 2, "addMemo": True},
        },
        "newBookThing": True,
    }
    book = load_world(data, "future.json")
    assert book.entries[0].extra["futureField"] == 1
    assert book.entries[1].extra["addMemo"] is True  # known pass-through kept too
    assert book.extra["newBookThing"] is True
    joined = "\n".join(book.warnings)
    assert "'futureField' kept as is (2 entries)" in joined
    assert "'newBookThing'" in joined
    assert "addMemo" not in joined


def test_lenient_values_like_sillytavern() -> None:
    data = {
        "entries": {
            "0": {
                "uid": 0,
                "key": "alpha, beta",
                "order": "250",
                "delayUntilRecursion": True,
                "sticky": None,
                "scanDepth": 5000,
                "caseSensitive": None,
            }
        }
    }
    (e,) = load_world(data, "w.json").entries
    assert e.key == ("alpha", "beta")
    assert e.order == 250 and e.delay_until_recursion == 1 and e.sticky == 0
    assert e.scan_depth == 1000 and e.case_sensitive is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "w.json: not valid JSON (Expecting property name"),
        (b"\xff\xfe", "w.json: not UTF-8 text"),
        (b"[]", "w.json: expected a JSON object, got a list"),
        (b"{}", "w.json: entries: expected an object of entries, got null"),
        (b'{"entries": {"3": 7}}', "w.json: entries.3: expected an object, got a number"),
        (b'{"entries": {"3": {"key": {}}}}', "w.json: entries.3.key: expected a list of text"),
        (b'{"entries": {"3": {"key": [[]]}}}', "w.json: entries.3.key[0]: expected text"),
        (b'{"entries": {"0": {"order": [1]}}}', "w.json: entries.0.order: expected a number"),
        (b'{"entries": {"0": {"constant": "yes"}}}', "entries.0.constant: expected true or"),
        (b'{"entries": {"0": {"content": {}}}}', "w.json: entries.0.content: expected text"),
    ],
)
def test_bad_world_files_name_the_file_and_field(data: bytes, message: str) -> None:
    with pytest.raises(LoreError) as info:
        load_world(data, "w.json")
    assert message in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_oversized_world_file_is_refused_before_parsing() -> None:
    with pytest.raises(LoreError, match=r"big\.json: 33554433 bytes is over the 32 MiB limit"):
        load_world(b" " * (32 * 1024 * 1024 + 1), "big.json")


def test_bad_card_books_name_the_field() -> None:
    with pytest.raises(LoreError, match=r"c\.png: character_book\.entries: expected a list"):
        from_character_book({"entries": {}}, "c.png")
    with pytest.raises(LoreError, match=r"c\.png: character_book\.entries\[0\]\.extensions"):
        from_character_book({"entries": [{"keys": [], "extensions": []}]}, "c.png")


def test_v3_lorebook_and_entry_lists_load_through_load_world() -> None:
    v3 = {"spec": "lorebook_v3", "data": {"name": "V3", "entries": [{"keys": ["k"]}]}}
    assert load_world(json.dumps(v3).encode(), "v3.json").name == "V3"
    listed = load_world({"entries": [{"key": ["a"]}, {"key": ["b"]}]}, "list.json")
    assert [e.key for e in listed.entries] == [("a",), ("b",)]


def test_settings_from_sillytavern_settings_file() -> None:
    path = FIXTURES / "golden" / "tc-chatml-seraphina" / "inputs" / "settings.effective.json"
    settings = LoreSettings.from_st(json.loads(path.read_text()))
    assert settings.depth == 2 and settings.budget == 25 and settings.budget_cap == 0
    assert settings.recursive and settings.match_whole_words and settings.include_names
    assert not settings.case_sensitive and settings.character_strategy == 1
    inner = LoreSettings.from_st(
        {"world_info_depth": "4", "world_info_recursive": 1, "world_info_from_2030": [1]}
    )
    assert inner.depth == 4 and inner.recursive  # unknown keys from newer versions: ignored
    with pytest.raises(LoreError, match=r"s\.json: world_info_settings\.world_info_depth"):
        LoreSettings.from_st({"world_info_settings": {"world_info_depth": []}}, "s.json")


def test_decorators_are_parsed_stripped_and_applied() -> None:
    data = {
        "entries": {
            "0": {"content": "@@depth 2\n@@role assistant\n@@scan_depth 7\nText", "key": ["k"]},
            "1": {"content": "@@risu_only 4\n@@@activate\nFallback used", "key": ["k"]},
            "2": {"content": "@@activate\n@@@dont_activate\nFallback skipped", "key": ["k"]},
            "3": {"content": " @@activate\nnot a decorator (leading space)"},
            "4": {"content": "@@depth two\n@@@position after_desc\nbad value"},
            "5": {"content": "@@instruct_depth 3\nignored in a chat"},
            "6": {"content": "@@dont_activate"},
        }
    }
    e = load_world(data, "d.json").entries
    assert (e[0].position, e[0].depth, e[0].role, e[0].scan_depth) == (4, 2, 2, 7)
    assert e[0].content == "Text"
    assert e[1].decorators == (Decorator("activate"),) and e[1].content == "Fallback used"
    assert e[2].decorators == (Decorator("activate"),) and e[2].content == "Fallback skipped"
    assert e[3].decorators == () and e[3].content.startswith(" @@activate")
    assert e[4].position == LorePosition.AFTER and e[4].content == "bad value"
    assert e[5].decorators == () and e[5].content == "ignored in a chat"
    assert e[6].content == "" and e[6].has_decorator("dont_activate")


def test_fingerprint_changes_when_an_entry_is_edited() -> None:
    a = load_world({"entries": {"0": {"key": ["k"], "content": "one"}}}, "w.json")
    b = load_world({"entries": {"0": {"key": ["k"], "content": "two"}}}, "w.json")
    c = load_world({"entries": {"0": {"key": ["k"], "content": "one"}}}, "w.json")
    assert a.entries[0].fingerprint != b.entries[0].fingerprint
    assert a.entries[0].fingerprint == c.entries[0].fingerprint
