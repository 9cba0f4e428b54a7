"""Sticky, cooldown and delay across chat turns, and the stored state's JSON."""

from __future__ import annotations

from bot.prompt.lore import LoreSettings, LoreState, TimedEffect
from tests.unit.lore.helpers import book, run, uids


def turns(lore: object, texts: list[str], settings: LoreSettings | None = None) -> list[bool]:
    """Activate once per chat length 1..n (text i is the newest message then)."""
    state = LoreState()
    seen = []
    for length, text in enumerate(texts, start=1):
        result = run(lore, [text], settings, state=state, chat_length=length)  # type: ignore[arg-type]
        seen.append(bool(result.activated))
        state = LoreState.from_json(result.state.to_json())  # as stored in Redis
    return seen


def test_sticky_keeps_an_entry_active_without_its_key() -> None:
    lore = book({"key": ["storm"], "content": "x", "sticky": 3})
    # on for 3 messages: the one that matched and the next two
    assert turns(lore, ["storm", "calm", "calm", "calm"]) == [True, True, True, False]


def test_cooldown_blocks_reactivation() -> None:
    lore = book({"key": ["storm"], "content": "x", "cooldown": 2})
    assert turns(lore, ["storm", "storm", "storm", "storm"]) == [True, False, True, False]


def test_sticky_then_cooldown() -> None:
    lore = book({"key": ["storm"], "content": "x", "sticky": 2, "cooldown": 2})
    seen = turns(lore, ["storm"] * 8)
    # active for the sticky run, then the cooldown that starts when it ends, then again
    assert seen == [True, True, False, False, True, True, False, False]


def test_delay_waits_for_enough_messages() -> None:
    lore = book({"key": ["storm"], "content": "x", "delay": 3})
    assert turns(lore, ["storm"] * 4) == [False, False, True, True]


def test_sticky_bypasses_probability() -> None:
    lore = book({"key": ["storm"], "content": "x", "sticky": 3, "probability": 50})
    seed = next(s for s in range(50) if run(lore, ["storm"], seed=s).activated)
    first = run(lore, ["storm"], seed=seed, chat_length=1)
    fail_seed = next(s for s in range(50) if not run(lore, ["storm"], seed=s).activated)
    later = run(lore, ["calm"], seed=fail_seed, state=first.state, chat_length=2)
    assert later.activated


def test_swipe_drops_timers_set_at_the_same_length() -> None:
    lore = book({"key": ["storm"], "content": "x", "sticky": 5})
    first = run(lore, ["storm"], chat_length=3)
    assert "B.0" in first.state.sticky
    # a swipe regenerates at the same chat length with other text: the sticky is dropped
    swipe = run(lore, ["calm"], state=first.state, chat_length=3)
    assert swipe.activated == ()
    assert any("did not advance" in line for line in swipe.trace)


def test_edited_entry_loses_its_timer_once_expired() -> None:
    old = book({"key": ["storm"], "content": "old", "sticky": 1})
    state = run(old, ["storm"], chat_length=1).state
    new = book({"key": ["storm"], "content": "new text", "sticky": 1})
    result = run(new, ["calm"], state=state, chat_length=5)
    assert result.activated == () and result.state.sticky == {}


def test_state_json_is_small_stable_and_forgiving() -> None:
    state = LoreState(
        sticky={"Eldoria.3": TimedEffect(123, 4, 7)},
        cooldown={"Eldoria.3": TimedEffect(123, 7, 9, True)},
        matched=frozenset({"B.1"}),
    )
    text = state.to_json()
    assert text == (
        '{"c":{"Eldoria.3":[123,7,9,1]},"m":["B.1"],"s":{"Eldoria.3":[123,4,7,0]},"v":1}'
    )
    assert LoreState.from_json(text) == state
    assert LoreState().to_json() == '{"v":1}'
    for junk in ("", "not json", "[]", '{"v":2}', '{"v":1,"s":{"x":[1,"a",3,0]}}', None):
        assert LoreState.from_json(junk).sticky == {}


def test_keep_and_dont_activate_after_match_remember_matches() -> None:
    lore = book(
        {"key": ["storm"], "content": "@@keep_activate_after_match\nkeep"},
        {"key": ["storm"], "content": "@@dont_activate_after_match\nonce"},
    )
    first = run(lore, ["storm"], chat_length=1)
    assert uids(first) == [0, 1]
    second = run(lore, ["calm"], state=first.state, chat_length=2)
    assert uids(second) == [0]
    third = run(lore, ["storm"], state=second.state, chat_length=3)
    assert uids(third) == [0]
