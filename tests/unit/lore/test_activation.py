"""One case per activation rule: each test fails if its rule is broken."""

from __future__ import annotations

import pytest

from bot.prompt.lore import Lorebook, LoreBooks, LoreContext, LoreSettings, scan_texts
from bot.prompt.lore.scanning import MatchSources
from bot.types import ChatMessage
from tests.unit.lore.helpers import book, run, uids

AND_ANY, NOT_ALL, NOT_ANY, AND_ALL = 0, 1, 2, 3


@pytest.mark.parametrize(
    ("logic", "text", "expected"),
    [
        (AND_ANY, "sword and shield", True),
        (AND_ANY, "sword", False),
        (NOT_ALL, "sword shield helm", False),
        (NOT_ALL, "sword shield", True),
        (NOT_ANY, "sword", True),
        (NOT_ANY, "sword helm", False),
        (AND_ALL, "sword shield helm", True),
        (AND_ALL, "sword shield", False),
        (7, "sword shield helm", False),  # an unknown logic never passes
    ],
)
def test_secondary_key_logic(logic: int, text: str, expected: bool) -> None:
    entry = {
        "key": ["sword"],
        "keysecondary": ["shield", "helm"],
        "selectiveLogic": logic,
        "content": "x",
    }
    assert bool(run(book(entry), [text]).activated) is expected


def test_selective_false_ignores_secondary_keys_like_st() -> None:
    entry = {"key": ["sword"], "keysecondary": ["shield"], "selective": False, "content": "x"}
    assert run(book(entry), ["sword"]).activated


def test_scan_depth_global_and_per_entry() -> None:
    lore = book(
        {"key": ["old"], "content": "a"},
        {"key": ["old"], "content": "b", "scanDepth": 3},
        {"key": ["new"], "content": "c", "scanDepth": 0},
    )
    scan = ["Alex: new", "Mira: hi", "Alex: old"]
    assert uids(run(lore, scan, LoreSettings(depth=2))) == [1]
    assert uids(run(lore, scan, LoreSettings(depth=3))) == [0, 1]
    assert uids(run(lore, scan, LoreSettings(depth=0))) == [1]  # depth 0 scans nothing


def test_constant_entries_activate_without_keys() -> None:
    lore = book({"constant": True, "content": "always"}, {"content": "no keys"})
    assert uids(run(lore, ["anything"])) == [0]


def test_disabled_entries_never_activate() -> None:
    lore = book({"key": ["a"], "content": "x", "disable": True, "constant": True})
    result = run(lore, ["a"])
    assert result.activated == ()
    assert any("disabled" in line for line in result.trace)


def test_probability_rolls_with_the_injected_rng() -> None:
    lore = book({"key": ["a"], "content": "x", "probability": 50})
    outcomes = {bool(run(lore, ["a"], seed=s).activated) for s in range(20)}
    assert outcomes == {True, False}
    never = book({"key": ["a"], "content": "x", "probability": 0})
    assert not any(run(never, ["a"], seed=s).activated for s in range(20))
    off = book({"key": ["a"], "content": "x", "probability": 0, "useProbability": False})
    assert run(off, ["a"]).activated


def test_failed_probability_is_not_retried_in_later_passes() -> None:
    lore = book(
        {"key": ["a"], "content": "zzz", "probability": 1},
        {"key": ["a"], "content": "a again"},  # puts "a" in the recursion buffer
    )
    result = run(lore, ["a"], LoreSettings(recursive=True), seed=3)
    assert uids(result) == [1]
    rolls = [line for line in result.trace if line.startswith("B#0") and "roll" in line]
    assert len(rolls) == 1 and "failed its 1% roll" in rolls[0]


def test_recursion_follows_contents_when_enabled() -> None:
    lore = book(
        {"key": ["bessie"], "content": "Bessie is friends with Rufus."},
        {"key": ["rufus"], "content": "Rufus is a dog."},
    )
    assert uids(run(lore, ["Alex: bessie?"], LoreSettings(recursive=True))) == [0, 1]
    assert uids(run(lore, ["Alex: bessie?"], LoreSettings(recursive=False))) == [0]


def test_exclude_and_prevent_recursion() -> None:
    on = LoreSettings(recursive=True)
    excluded = book(
        {"key": ["bessie"], "content": "Rufus"},
        {"key": ["rufus"], "content": "dog", "excludeRecursion": True},
    )
    assert uids(run(excluded, ["bessie"], on)) == [0]
    assert uids(run(excluded, ["bessie rufus"], on)) == [0, 1]  # direct mention still works
    prevented = book(
        {"key": ["bessie"], "content": "Rufus", "preventRecursion": True},
        {"key": ["rufus"], "content": "dog"},
    )
    assert uids(run(prevented, ["bessie"], on)) == [0]


def test_delay_until_recursion_levels_open_in_order() -> None:
    on = LoreSettings(recursive=True)
    lore = book(
        {"key": ["start"], "content": "one two"},
        {"key": ["one"], "content": "level one", "delayUntilRecursion": 1},
        {"key": ["two"], "content": "level two", "delayUntilRecursion": 2},
        {"key": ["start"], "content": "never at first", "delayUntilRecursion": True},
    )
    result = run(lore, ["start"], on)
    assert uids(result) == [0, 1, 3, 2]
    assert any("opening delayed recursion level 2" in line for line in result.trace)
    # ST opens the delayed levels even with recursion off, and the first pass's contents
    # are scanned then: every delayed entry gets its chance
    assert uids(run(lore, ["start"], LoreSettings())) == [0, 1, 2, 3]


def test_max_recursion_steps_limits_passes() -> None:
    chain = book(
        {"key": ["a"], "content": "b"},
        {"key": ["b"], "content": "c"},
        {"key": ["c"], "content": "d"},
    )
    assert uids(run(chain, ["a"], LoreSettings(recursive=True))) == [0, 1, 2]
    assert uids(run(chain, ["a"], LoreSettings(recursive=True, max_recursion_steps=2))) == [0, 1]


def test_min_activations_scans_deeper_until_met_and_is_bounded() -> None:
    lore = book({"key": ["far"], "content": "x"}, {"key": ["farther"], "content": "y"})
    scan = ["a", "b", "c far", "d", "e farther"]
    settings = LoreSettings(depth=1, min_activations=1, match_whole_words=True)
    assert uids(run(lore, scan, settings)) == [0]
    two = LoreSettings(depth=1, min_activations=2, match_whole_words=True)
    assert uids(run(lore, scan, two)) == [0, 1]
    capped = LoreSettings(depth=1, min_activations=2, min_activations_depth_max=3)
    assert uids(run(lore, scan, capped)) == [0]


def test_budget_is_a_percentage_of_max_context_with_a_cap() -> None:
    text = "x" * 335  # 100 estimated tokens, 101 with the newline
    lore = book(*({"key": ["go"], "content": text, "order": 100 - i} for i in range(5)))
    # 10% of 2600 = 260: two entries use 202 tokens, a third would make 303
    result = run(lore, ["go"], LoreSettings(budget=10), max_context=2600)
    assert uids(result) == [0, 1] and result.budget == 260 and result.overflowed
    assert any("cut: budget 260 reached" in line for line in result.trace)
    capped = run(lore, ["go"], LoreSettings(budget=10, budget_cap=150), max_context=2600)
    assert uids(capped) == [0] and capped.budget == 150


def test_budget_rounds_half_up_like_javascript() -> None:
    result = run(book(), [], LoreSettings(budget=25), max_context=7842)
    assert result.budget == 1961  # 1960.5 rounds up; Python's round() would say 1960
    assert run(book(), [], LoreSettings(budget=0)).budget == 1


def test_higher_order_gets_budget_first_and_goes_later() -> None:
    text = "y" * 335
    lore = book(
        {"key": ["go"], "content": "low " + text, "order": 1},
        {"key": ["go"], "content": "high " + text, "order": 300},
        {"key": ["go"], "content": "mid " + text, "order": 50},
    )
    result = run(lore, ["go"], LoreSettings(budget=10), max_context=2600)
    assert uids(result) == [1, 2]
    assert result.before.startswith("mid ") and "\nhigh " in result.before


def test_ignore_budget_entries_still_go_in_after_overflow() -> None:
    text = "z" * 335
    lore = book(
        {"key": ["go"], "content": text, "order": 3},
        {"key": ["go"], "content": text, "order": 2},
        {"key": ["go"], "content": "vital", "order": 1, "ignoreBudget": True},
    )
    result = run(lore, ["go"], LoreSettings(budget=5), max_context=2600)
    assert uids(result) == [0, 2] and result.overflowed


def test_budget_overflow_stops_recursion() -> None:
    lore = book(
        {"key": ["go"], "content": "x" * 400 + " next"},
        {"key": ["go"], "content": "y" * 400},
        {"key": ["next"], "content": "z"},
    )
    result = run(lore, ["go"], LoreSettings(budget=5, recursive=True), max_context=2600)
    assert uids(result) == [0]


def test_triggers_restrict_generation_types() -> None:
    lore = book({"key": ["a"], "content": "x", "triggers": ["continue"]})
    assert not run(lore, ["a"]).activated
    assert run(lore, ["a"], context=LoreContext(trigger="continue")).activated


def test_character_filter_by_name_and_tag() -> None:
    only = book({"key": ["a"], "content": "x", "characterFilter": {"names": ["Mira"]}})
    assert run(only, ["a"], context=LoreContext(character="Mira")).activated
    assert not run(only, ["a"], context=LoreContext(character="Seraphina")).activated
    flt = {"names": ["Mira"], "isExclude": True}
    excl = book({"key": ["a"], "content": "x", "characterFilter": flt})
    assert not run(excl, ["a"], context=LoreContext(character="Mira")).activated
    tags = book({"key": ["a"], "content": "x", "characterFilter": {"tags": ["fantasy"]}})
    assert run(tags, ["a"], context=LoreContext(character_tags=frozenset({"fantasy"}))).activated
    assert not run(tags, ["a"], context=LoreContext(character_tags=frozenset({"scifi"}))).activated


def test_additional_matching_sources_are_opt_in() -> None:
    lore = book(
        {"key": ["northern"], "content": "x", "matchPersonaDescription": True},
        {"key": ["northern"], "content": "y"},
    )
    ctx = LoreContext(sources=MatchSources(persona_description="From the northern villages"))
    assert uids(run(lore, ["Alex: hi"], context=ctx)) == [0]


def test_injected_prompts_are_scanned() -> None:
    lore = book({"key": ["storm"], "content": "x"})
    assert run(lore, ["Alex: hi"], extra_scan=["[A storm is coming]"]).activated


def test_source_order_chat_then_persona_then_character_first() -> None:
    def one(name: str) -> Lorebook:
        return book({"key": ["go"], "content": name, "order": 10}, name=name)

    books = LoreBooks(
        chat=(one("chat"),),
        persona=(one("persona"),),
        character=(one("char"),),
        global_=(one("world"),),
    )
    result = run(books, ["go"])
    assert [b for b, _ in result.activated] == ["chat", "persona", "char", "world"]
    glob_first = run(books, ["go"], LoreSettings(character_strategy=2))
    assert [b for b, _ in glob_first.activated] == ["chat", "persona", "world", "char"]


def test_a_book_active_from_two_sources_is_scanned_once() -> None:
    shared = book({"key": ["go"], "content": "x"}, name="Shared")
    result = run(LoreBooks(character=(shared,), global_=(shared,)), ["go"])
    assert result.activated == (("Shared", 0),)


def test_v3_runtime_decorators() -> None:
    lore = book(
        {"key": ["nothing"], "content": "@@activate\nalways"},
        {"key": ["go"], "content": "@@dont_activate\nnever"},
        {"key": ["go"], "content": "@@activate_only_after 3\nlate"},
        {"key": ["go"], "content": "@@activate_only_every 2\neven"},
        {"key": ["go"], "content": "@@is_greeting 1\nalt greeting"},
        {"key": ["go"], "content": "@@additional_keys sun, moon\nsky"},
        {"key": ["go"], "content": "@@exclude_keys rain\ndry"},
    )
    early = run(lore, ["go moon"], context=LoreContext(assistant_messages=1, greeting_index=0))
    assert uids(early) == [0, 5, 6]
    later = run(lore, ["go rain"], context=LoreContext(assistant_messages=4, greeting_index=1))
    assert uids(later) == [0, 2, 3, 4]
    unknown = run(lore, ["go"])  # no counts known: those decorators are ignored
    assert uids(unknown) == [0, 2, 3, 4, 6]


def test_forced_entries_activate() -> None:
    lore = book({"key": ["never"], "content": "x"}, name="W")
    assert run(lore, ["hi"], context=LoreContext(forced=frozenset({("W", 0)}))).activated


def test_macros_are_expanded_in_contents() -> None:
    lore = book({"key": ["hi"], "content": "{{user}} meets {{char}}"})
    assert run(lore, ["hi"], names=("Alex", "Mira")).before == "Alex meets Mira"


def test_scan_texts_are_newest_first_with_names_and_skip_hidden_messages() -> None:
    history = [
        ChatMessage(id=0, role="assistant", name="Mira", text="Hello."),
        ChatMessage(id=1, role="user", name="Alex", text="secret", extra={"hidden": True}),
        ChatMessage(id=2, role="user", name="Alex", text="Hi!"),
    ]
    assert scan_texts(history, LoreSettings()) == ["Alex: Hi!", "Mira: Hello."]
    assert scan_texts(history, LoreSettings(include_names=False)) == ["Hi!", "Hello."]


def test_names_in_the_scan_can_trigger_keys() -> None:
    lore = book({"key": ["mira"], "content": "x"})
    history = [ChatMessage(id=0, role="assistant", name="Mira", text="Hello.")]
    assert run(lore, scan_texts(history, LoreSettings())).activated
    assert not run(lore, scan_texts(history, LoreSettings(include_names=False))).activated
