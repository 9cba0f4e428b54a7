"""Property tests: loaders and activation never crash or hang, whatever they are given."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.prompt.lore import (
    Lorebook,
    LoreBooks,
    LoreError,
    LoreResult,
    LoreSettings,
    LoreState,
    activate,
    from_character_book,
    load_world,
)
from bot.prompt.lore.fields import CARD_ENTRY_FIELDS, WORLD_ENTRY_FIELDS
from bot.prompt.lore.index import BookIndex
from bot.prompt.lore.matching import parse_js_regex
from bot.prompt.tokens import EstimateCounter

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "dragon",
        "Dragon",
        "red dragon",
        "/drag+on/i",
        "/(x+x+)+y/",
        "/[/",
        "/a/b/",
        "{{char}}",
        " ",
        "",
        "/\\k<n>/",
        "/[^]/y",
    ]
) | st.text(max_size=12)
TEXTS = st.text(alphabet=st.sampled_from("ab dragon xy/\n.!{}"), max_size=60) | st.text(
    max_size=30
)

WORLD_ENTRY = st.fixed_dictionaries(
    {},
    optional={
        **dict.fromkeys(sorted(WORLD_ENTRY_FIELDS), JSON),
        "key": st.lists(KEYS, max_size=3),
        "keysecondary": st.lists(KEYS, max_size=2),
        "content": TEXTS,
        "position": st.integers(-1, 9),
        "group": st.sampled_from(["", "g", "g,h", "1"]),
        "probability": st.integers(0, 100),
        "sticky": st.integers(0, 3),
        "cooldown": st.integers(0, 3),
        "delayUntilRecursion": st.integers(0, 2) | st.booleans(),
    },
)
CARD_ENTRY = st.fixed_dictionaries(
    {}, optional={**dict.fromkeys(sorted(CARD_ENTRY_FIELDS), JSON), "extensions": JSON}
)


def _world(data: Any) -> Lorebook | None:
    try:
        return load_world(data, "fuzz.json")
    except LoreError as exc:
        assert str(exc).startswith("fuzz.json")
        return None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_load_world_bytes_never_crashes(data: bytes) -> None:
    _world(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=4), WORLD_ENTRY | JSON, max_size=4), JSON)
def test_load_world_entries_never_crash(entries: dict[str, Any], extra: Any) -> None:
    _world({"entries": entries, "extra": extra})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(CARD_ENTRY | JSON, max_size=4), JSON)
def test_from_character_book_never_crashes(entries: list[Any], name: Any) -> None:
    try:
        from_character_book({"entries": entries, "name": name}, "card.png")
    except LoreError as exc:
        assert str(exc).startswith("card.png")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["", "i", "g", "y", "s", "m", "gimsuy", "ii"]))
def test_js_regex_translation_never_crashes(body: str, flags: str) -> None:
    parse_js_regex(f"/{body}/{flags}")


@settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(WORLD_ENTRY, min_size=1, max_size=6),
    st.lists(TEXTS, max_size=5),
    st.fixed_dictionaries(
        {
            "depth": st.integers(-1, 5),
            "recursive": st.booleans(),
            "min_activations": st.integers(0, 3),
            "min_activations_depth_max": st.integers(0, 3),
            "budget": st.integers(0, 100),
            "budget_cap": st.integers(0, 50),
            "match_whole_words": st.booleans(),
            "case_sensitive": st.booleans(),
            "use_group_scoring": st.booleans(),
            "max_recursion_steps": st.integers(0, 3),
            "character_strategy": st.integers(0, 3),
        }
    ),
    st.integers(0, 5000),
    st.integers(0, 12),
    st.integers(0, 2**32),
    st.text(max_size=80),
)
def test_activate_never_crashes_or_hangs(
    raw_entries: list[dict[str, Any]],
    scan: list[str],
    knobs: dict[str, Any],
    max_context: int,
    chat_length: int,
    seed: int,
    stored: str,
) -> None:
    lore = _world({"entries": {str(i): e for i, e in enumerate(raw_entries)}})
    if lore is None:
        return
    state = LoreState.from_json(stored)
    result = LoreResult()
    for length in (chat_length, chat_length + 1):  # two turns, so timers get exercised
        result = activate(
            LoreBooks(character=(lore,), chat=(lore,)),
            scan,
            LoreSettings(**knobs, regex_timeout=0.005, regex_total_timeout=0.02),
            max_context=max_context,
            counter=EstimateCounter(),
            state=state,
            chat_length=length,
            rng=random.Random(seed),
            names=("Alex", "Mira"),
        )
        state = LoreState.from_json(result.state.to_json())
    idents = {e.ident for e in lore.entries}
    assert set(result.activated) <= idents
    assert result.state == LoreState.from_json(result.state.to_json())


WORDS = ["dragon", "Dragon", "red dragon", "dr.", "ox", "a b", "sun", "SUN", "drag", "x-ray", "é"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example([{"key": ["Dragon"]}], ["a dragon"], False, False, False)
@example([{"key": ["Dragon"]}], ["a DRAGON"], False, True, False)
@example([{"key": ["red dragon"]}], ["RED DRAGON"], False, True, False)
@example([{"key": ["dr."], "matchWholeWords": True}], ["ask DR. ox"], False, False, False)
@example([{"key": ["ox"]}], ["oxen"], False, False, False)
@example([{"key": ["sun"], "caseSensitive": True}], ["SUN sun"], False, True, False)
@example([{"key": ["é"]}], ["café"], False, True, False)
@example([{"key": ["ox"], "content": "the sun"}, {"key": ["SUN"]}], ["ox"], False, True, True)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"key": st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)},
            optional={
                "caseSensitive": st.booleans(),
                "matchWholeWords": st.booleans(),
                "keysecondary": st.lists(st.sampled_from(WORDS), max_size=2),
                "content": st.sampled_from(["dragon lore", "the sun", "x-ray ox"]),
            },
        ),
        min_size=1,
        max_size=8,
    ),
    st.lists(
        st.lists(st.sampled_from([*WORDS, " ", ".", "-", "\n", "s", "DRAGON"]), max_size=8).map(
            "".join
        ),
        max_size=4,
    ),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_key_index_never_changes_the_outcome(
    raw_entries: list[dict[str, Any]],
    scan: list[str],
    case: bool,
    whole: bool,
    recursive: bool,
) -> None:
    """The index only skips entries that cannot match: checking every entry gives the same."""
    lore = _world({"entries": {str(i): e for i, e in enumerate(raw_entries)}})
    assert lore is not None
    knobs = LoreSettings(case_sensitive=case, match_whole_words=whole, recursive=recursive)

    def go(book: Lorebook) -> tuple[object, ...]:
        r = activate(
            [book],
            scan,
            knobs,
            max_context=4000,
            counter=EstimateCounter(),
            state=LoreState(),
            chat_length=len(scan),
            rng=random.Random(0),
        )
        return (r.activated, r.before)

    with_index = go(lore)
    everything = BookIndex(always=list(range(len(lore.entries))))
    fresh = load_world({"entries": {str(i): e for i, e in enumerate(raw_entries)}}, "fuzz.json")
    fresh.matchers[("index", case, whole)] = everything
    assert go(fresh) == with_index
