"""Inclusion groups, and where activated entries land in the prompt."""

from __future__ import annotations

import random
from collections import Counter

from bot.prompt.injection import Position
from bot.prompt.lore import LoreSettings, LoreState, activate
from bot.prompt.tokens import EstimateCounter
from tests.unit.lore.helpers import book, run, uids


def test_group_keeps_one_entry_chosen_by_weight() -> None:
    lore = book(
        {"key": ["go"], "content": "a", "group": "g", "groupWeight": 90},
        {"key": ["go"], "content": "b", "group": "g", "groupWeight": 10},
        {"key": ["go"], "content": "free"},
    )
    wins = Counter(tuple(uids(run(lore, ["go"], seed=s))) for s in range(200))
    assert set(wins) == {(0, 2), (1, 2)}
    assert 150 < wins[(0, 2)] < 200  # about 90%


def test_group_prioritise_picks_highest_order() -> None:
    lore = book(
        {"key": ["go"], "content": "a", "group": "g", "groupOverride": True, "order": 10},
        {"key": ["go"], "content": "b", "group": "g", "groupOverride": True, "order": 20},
        {"key": ["go"], "content": "c", "group": "g", "order": 99},
    )
    assert all(uids(run(lore, ["go"], seed=s)) == [1] for s in range(10))


def test_entry_in_two_groups() -> None:
    lore = book(
        {"key": ["go"], "content": "a", "group": "x, y", "groupOverride": True},
        {"key": ["go"], "content": "b", "group": "x"},
        {"key": ["go"], "content": "c", "group": "y"},
        {"key": ["go"], "content": "d"},
    )
    assert uids(run(lore, ["go"])) == [0, 3]


def test_group_scoring_keeps_the_best_matches() -> None:
    lore = book(
        {"key": ["song", "sing", "black cat"], "content": "cat", "group": "songs"},
        {"key": ["song", "sing", "ghosts"], "content": "ghost", "group": "songs"},
    )
    scoring = LoreSettings(use_group_scoring=True)
    assert all(
        uids(run(lore, ["sing me a song about ghosts"], scoring, seed=s)) == [1] for s in range(10)
    )
    both = {tuple(uids(run(lore, ["sing me a song"], scoring, seed=s))) for s in range(20)}
    assert both == {(0,), (1,)}
    per_entry = book(
        {"key": ["song", "sing", "black cat"], "content": "cat", "group": "s"},
        {"key": ["song", "ghosts"], "content": "g", "group": "s", "useGroupScoring": True},
    )
    # entry 1 scores 1 < 2 and uses scoring, so it drops out; entry 0 does not use scoring
    assert all(uids(run(per_entry, ["sing a song"], seed=s)) == [0] for s in range(10))


def test_group_with_an_active_member_takes_no_new_one() -> None:
    lore = book(
        {"key": ["go"], "content": "next", "group": "g"},
        {"key": ["next"], "content": "b", "group": "g"},
    )
    assert uids(run(lore, ["go"], LoreSettings(recursive=True))) == [0]


def test_sticky_member_wins_its_group() -> None:
    lore2 = book(
        {"key": ["go"], "content": "a", "group": "g", "sticky": 5},
        {"key": ["go"], "content": "b", "group": "g", "order": 200},
    )
    seed = next(s for s in range(50) if uids(run(lore2, ["go"], seed=s, chat_length=1)) == [0])
    state = run(lore2, ["go"], seed=seed, chat_length=1).state
    assert all(
        uids(run(lore2, ["go"], seed=s, state=state, chat_length=2)) == [0] for s in range(10)
    )


def test_positions_route_entries() -> None:
    lore = book(
        {"constant": True, "content": "before-1", "position": 0, "order": 1},
        {"constant": True, "content": "before-2", "position": 0, "order": 2},
        {"constant": True, "content": "after", "position": 1},
        {"constant": True, "content": "an-top", "position": 2},
        {"constant": True, "content": "an-bottom", "position": 3},
        {"constant": True, "content": "deep-sys-a", "position": 4, "depth": 2, "order": 5},
        {"constant": True, "content": "deep-sys-b", "position": 4, "depth": 2, "order": 6},
        {"constant": True, "content": "deep-user", "position": 4, "depth": 2, "role": 1},
        {"constant": True, "content": "em-top-1", "position": 5, "order": 1},
        {"constant": True, "content": "em-top-2", "position": 5, "order": 2},
        {"constant": True, "content": "em-bottom-1", "position": 6, "order": 1},
        {"constant": True, "content": "em-bottom-2", "position": 6, "order": 2},
        {"constant": True, "content": "out-1", "position": 7, "outletName": "Map", "order": 1},
        {"constant": True, "content": "out-2", "position": 7, "outletName": "Map", "order": 2},
        {"constant": True, "content": "nameless", "position": 7},
        {"constant": True, "content": "nowhere", "position": 9},
    )
    r = run(lore, ["hi"])
    assert r.before == "before-1\nbefore-2"
    assert r.after == "after"
    assert (r.an_top, r.an_bottom) == (("an-top",), ("an-bottom",))
    assert r.authors_note("NOTE") == "an-top\nNOTE\nan-bottom"
    assert r.em_top == ("em-top-2", "em-top-1")  # ST unshifts each, highest order first
    assert r.em_bottom == ("em-bottom-1", "em-bottom-2")
    assert r.outlets == {"Map": "out-2\nout-1"}  # the one bucket ST fills by appending
    depth = {(i.depth, i.role): i for i in r.depth}
    assert set(depth) == {(2, "system"), (2, "user")}
    sys = depth[(2, "system")]
    assert sys.text == "deep-sys-a\ndeep-sys-b" and sys.position == Position.IN_CHAT
    assert sys.key == "customDepthWI-2-0" and depth[(2, "user")].key == "customDepthWI-2-1"
    assert any("outlet position without an outlet name" in line for line in r.trace)
    assert any("unknown position 9" in line for line in r.trace)


def test_equal_orders_come_out_in_reverse_activation_order() -> None:
    lore = book({"key": ["a"], "content": "first"}, {"key": ["b"], "content": "second"})
    assert run(lore, ["a b"]).before == "second\nfirst"


def test_authors_note_join_strips_one_newline_each_side() -> None:
    top_only = run(book({"constant": True, "content": "T", "position": 2}), ["x"])
    assert top_only.authors_note("note\n") == "T\nnote\n"
    assert run(book(), ["x"]).authors_note("note") == "note"


def test_transform_hook_rewrites_or_drops_entries() -> None:
    lore = book({"constant": True, "content": "keep me"}, {"constant": True, "content": "drop"})
    result = activate(
        [lore],
        ["x"],
        LoreSettings(),
        max_context=8000,
        counter=EstimateCounter(),
        state=LoreState(),
        chat_length=1,
        rng=random.Random(0),
        transform=lambda entry, text: "" if text == "drop" else text.upper(),
    )
    assert result.before == "KEEP ME"
