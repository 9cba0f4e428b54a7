"""Key matching as SillyTavern does it: case, whole words, regex keys, macros, time bounds."""

from __future__ import annotations

import time

import pytest

from bot.prompt.lore import LoreSettings
from tests.unit.lore.helpers import book, run, uids

WHOLE = LoreSettings(match_whole_words=True)


def hits(key: str, text: str, settings: LoreSettings | None = None, **entry: object) -> bool:
    result = run(book({"key": [key], "content": "x", **entry}), [text], settings)
    return bool(result.activated)


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("dragon", "Mira: A DRAGON appears", True),  # case-insensitive by default
        ("dragon", "Mira: dragonfly", True),  # substring without whole words
        ("Dragon", "Mira: a dragon", True),
    ],
)
def test_default_matching_is_case_insensitive_substring(
    key: str, text: str, expected: bool
) -> None:
    assert hits(key, text) is expected


def test_case_sensitive_globally_and_per_entry() -> None:
    assert not hits("Dragon", "a dragon", LoreSettings(case_sensitive=True))
    assert hits("dragon", "a dragon", LoreSettings(case_sensitive=True))
    assert not hits("Dragon", "a dragon", caseSensitive=True)
    assert hits("Dragon", "a dragon", LoreSettings(case_sensitive=True), caseSensitive=False)


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("king", "long live the king!", True),
        ("king", "it's not to my liking", False),
        ("king", "king", True),
        ("king", "(king)", True),
        ("king", "kings", False),
        ("dr.", "ask dr. who", True),  # a key with punctuation uses ST's boundary regex
        ("dr.", "ask dr.who", False),
        ("red dragon", "the red dragonfly", True),  # several words: plain substring
        ("магия", "магиями", True),  # JS \W is ASCII: Cyrillic has no word boundaries there
        ("café", "cafés", False),
        ("café", "un café!", True),
    ],
)
def test_whole_words_follow_sillytaverns_boundaries(key: str, text: str, expected: bool) -> None:
    assert hits(key, text, WHOLE) is expected


def test_whole_words_per_entry_override() -> None:
    assert hits("king", "liking", WHOLE, matchWholeWords=False)
    assert not hits("king", "liking", matchWholeWords=True)


def test_messages_do_not_run_together_for_whole_words() -> None:
    # each scanned message is joined with "\n\x01", so "wood" at the end of one message and
    # "land" at the start of the next never form "woodland"
    result = run(book({"key": ["woodland"], "content": "x"}), ["land ho", "into the wood"])
    assert result.activated == ()


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("/drag(on|oon)/", "a dragoon", True),
        ("/Dragon/", "a dragon", False),  # regex keys ignore the case setting
        ("/Dragon/i", "a dragon", True),
        ("/^Mira:/", "Mira: hi", False),  # the buffer starts with \x01
        ("/\\x01Mira:/", "Mira: hi", True),  # ST's per-speaker anchor
        ("/hi$/", "Mira: hi\n", True),  # scanned messages are trimmed
        ("/a.b/", "a\nb", False),
        ("/a.b/s", "a\nb", True),
        ("/a\\/b/", "a/b", True),
        ("/a/b/", "x /a/b/ y", True),  # unescaped slash: a plain-text key, as in ST
        ("/(unclosed/", "x /(unclosed/ y", True),  # invalid regex: plain text
        ("/x/gg", "x /x/gg", True),  # repeated flag: plain text
        ("/[^]/", "anything", True),
        ("/\\bword\\b/", "a word here", True),
        ("/\\p{L}+ies/u", "stories", True),
        ("/\\p{L}/", "p{L}", True),  # without u, JS reads \p as a plain p
    ],
)
def test_regex_keys_behave_like_javascript(key: str, text: str, expected: bool) -> None:
    assert hits(key, text) is expected


def test_dollar_is_the_very_end_as_in_javascript() -> None:
    lore = book({"key": ["/hi$/"], "content": "x"})
    # an injected prompt ending in a newline: Python's $ would match before it, JS's not
    assert not run(lore, ["Mira: x"], extra_scan=["hi\n"]).activated
    assert run(lore, ["Mira: x"], extra_scan=["hi"]).activated
    assert run(
        book({"key": ["/hi$/m"], "content": "x"}), ["Mira: x"], extra_scan=["hi\n"]
    ).activated


def test_sticky_regex_flag_anchors_at_the_start() -> None:
    assert hits("/\\x01Mira/y", "Mira: hi")
    assert not hits("/Mira/y", "Mira: hi")


def test_macros_in_keys_use_the_names() -> None:
    entry = book({"key": ["{{char}}"], "content": "x"})
    assert run(entry, ["Mira: hello"], names=("Alex", "Mira")).activated
    assert not run(entry, ["Mira: hello"], names=("Alex", "Seraphina")).activated


def test_blank_keys() -> None:
    assert not hits("", "anything")  # an empty key is skipped
    assert hits("   ", "anything")  # a blank one matches everything, as in ST


def test_catastrophic_regex_is_cut_off_and_reported() -> None:
    settings = LoreSettings(regex_timeout=0.05, regex_total_timeout=0.2)
    bad = book(
        {"key": ["/(x+x+)+y/"], "content": "never"},
        {"key": ["safe"], "content": "fine"},
    )
    start = time.monotonic()
    result = run(bad, ["x" * 5000 + " safe"], settings)
    assert time.monotonic() - start < 2
    assert uids(result) == [1]
    assert any("timed out" in line for line in result.trace)


def test_regex_time_budget_is_shared_by_all_keys() -> None:
    settings = LoreSettings(regex_timeout=0.05, regex_total_timeout=0.1)
    entries = [{"key": [f"/(x+x+)+y{i}/"], "content": str(i)} for i in range(20)]
    start = time.monotonic()
    result = run(book(*entries), ["x" * 5000], settings)
    assert time.monotonic() - start < 1.5
    assert result.activated == ()
    assert any("time budget used up" in line for line in result.trace)


def test_matchers_are_compiled_once_per_book() -> None:
    lore = book({"key": ["alpha", "/be+ta/i"], "content": "x"})
    run(lore, ["alpha"])
    compiled = dict(lore.matchers)
    run(lore, ["alpha beta"])
    assert compiled and all(lore.matchers[k] is m for k, m in compiled.items())
