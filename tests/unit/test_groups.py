"""Group chats, engine side: the Group setting and who replies (SillyTavern's §6.2 rules)."""

from __future__ import annotations

import contextlib
import json
import random
from dataclasses import replace
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.engine.groups import MAX_MEMBERS, CardMode, Group, GroupError, Strategy
from bot.engine.speakers import Trigger, choose_speakers, last_batch
from bot.types import ChatMessage, Role

SEEDS = range(60)


def msg(role: Role, name: str, text: str = "…", **extra: Any) -> ChatMessage:
    return ChatMessage(0, role, name, text, extra=dict(extra))


def user(text: str = "hello") -> ChatMessage:
    return msg("user", "Sam", text)


def pick(group: Group, **kw: Any) -> list[str]:
    kw.setdefault("rng", random.Random(kw.pop("seed", 0)))
    return choose_speakers(group, **kw)


def over_seeds(group: Group, **kw: Any) -> list[list[str]]:
    return [pick(group, seed=s, **kw) for s in SEEDS]


TRIO = Group("Harbour", ("Mira", "Tom", "Ada"))
QUIET = {"Mira": 0.0, "Tom": 0.0, "Ada": 0.0}  # only mentions and the fallback speak
LOUD = {"Mira": 1.0, "Tom": 1.0, "Ada": 1.0}


# --- natural: mentions ---------------------------------------------------------------------


def test_a_word_equal_to_a_word_of_the_name_activates_that_member() -> None:
    group = Group("G", ("Mira Lee", "Tom", "Ada"))
    talk = {"Mira Lee": 0.0, "Tom": 0.0, "Ada": 0.0}
    assert pick(group, trigger_text="hey LEE, you there?", talkativeness=talk) == ["Mira Lee"]


def test_mentions_are_whole_words_not_substrings() -> None:
    # "Tomorrow" is not "Tom": with nobody mentioned the fallback picks someone at random
    picked = over_seeds(TRIO, trigger_text="Tomorrow, Adam.", talkativeness=QUIET)
    assert {p[0] for p in picked} == {"Mira", "Tom", "Ada"}


def test_members_reply_in_the_order_their_names_appear() -> None:
    assert pick(TRIO, trigger_text="Ada, then Mira.", talkativeness=QUIET) == ["Ada", "Mira"]
    assert pick(TRIO, trigger_text="Mira, then Ada.", talkativeness=QUIET) == ["Mira", "Ada"]


def test_a_word_shared_by_two_names_activates_only_the_first_in_list_order() -> None:
    group = Group("G", ("Anna Smith", "Bob Smith"))
    talk = {"Anna Smith": 0.0, "Bob Smith": 0.0}
    assert pick(group, trigger_text="Smith!", talkativeness=talk) == ["Anna Smith"]


def test_a_member_mentioned_twice_replies_once() -> None:
    assert pick(TRIO, trigger_text="Tom? TOM!", talkativeness=QUIET) == ["Tom"]


def test_mentions_work_for_names_in_other_scripts() -> None:
    group = Group("G", ("Юля", "Zoë"))
    talk = {"Юля": 0.0, "Zoë": 0.0}
    assert pick(group, trigger_text="юля и zoë", talkativeness=talk) == ["Юля", "Zoë"]


# --- natural: talkativeness and the fallback -------------------------------------------------


def test_talkativeness_one_always_replies_and_zero_only_when_mentioned() -> None:
    talk = {"Mira": 1.0, "Tom": 0.0, "Ada": 1.0}
    for picked in over_seeds(TRIO, trigger_text="evening all", talkativeness=talk):
        assert sorted(picked) == ["Ada", "Mira"]
    assert pick(TRIO, trigger_text="Tom?", talkativeness=talk)[0] == "Tom"


def test_talkative_members_reply_in_shuffled_order() -> None:
    orders = {tuple(p) for p in over_seeds(TRIO, trigger_text="hi", talkativeness=LOUD)}
    assert len(orders) > 1
    assert all(sorted(o) == ["Ada", "Mira", "Tom"] for o in orders)


def test_mentioned_members_come_before_those_who_rolled() -> None:
    for picked in over_seeds(TRIO, trigger_text="Ada?", talkativeness=LOUD):
        assert picked[0] == "Ada" and sorted(picked) == ["Ada", "Mira", "Tom"]


def test_a_half_talkative_member_sometimes_replies() -> None:
    talk = {"Mira": 0.5, "Tom": 0.5, "Ada": 0.5}
    sizes = {len(p) for p in over_seeds(TRIO, trigger_text="hi", talkativeness=talk)}
    assert 1 in sizes and 2 in sizes


def test_missing_or_nan_talkativeness_is_one_half() -> None:
    nan = {"Mira": float("nan"), "Tom": float("nan"), "Ada": float("nan")}
    with_nan = over_seeds(TRIO, trigger_text="hi", talkativeness=nan)
    assert with_nan == over_seeds(TRIO, trigger_text="hi", talkativeness={})
    assert with_nan == over_seeds(
        TRIO, trigger_text="hi", talkativeness={"Mira": 0.5, "Tom": 0.5, "Ada": 0.5}
    )


def test_nobody_activated_falls_back_to_a_member_with_talkativeness_above_zero() -> None:
    talk = {"Mira": 0.0, "Tom": 1e-12, "Ada": 0.0}
    assert all(p == ["Tom"] for p in over_seeds(TRIO, trigger_text="hi", talkativeness=talk))


def test_with_nobody_talkative_the_fallback_is_any_member() -> None:
    picked = over_seeds(TRIO, trigger_text="hi", talkativeness=QUIET)
    assert all(len(p) == 1 for p in picked)
    assert {p[0] for p in picked} == {"Mira", "Tom", "Ada"}


def test_the_same_seed_gives_the_same_speakers() -> None:
    talk = {"Mira": 0.5, "Tom": 0.3, "Ada": 0.8}
    assert over_seeds(TRIO, trigger_text="hi", talkativeness=talk) == over_seeds(
        TRIO, trigger_text="hi", talkativeness=talk
    )


# --- natural: self-responses -------------------------------------------------------------------


def test_auto_mode_excludes_the_last_speaker_from_the_roll_and_mentions() -> None:
    history = [user(), msg("assistant", "Tom", "Tom here. Mira?")]
    for picked in over_seeds(TRIO, history=history, trigger="auto", talkativeness=LOUD):
        assert "Tom" not in picked and sorted(picked) == ["Ada", "Mira"]
    # his own name in his own message does not count: the fallback goes to the chatty one
    said_tom = [user(), msg("assistant", "Tom", "Tom, Tom, Tom.")]
    talk = {"Mira": 0.0, "Tom": 0.0, "Ada": 1e-12}
    for picked in over_seeds(TRIO, history=said_tom, trigger="auto", talkativeness=talk):
        assert picked == ["Ada"]


def test_allow_self_responses_lets_the_last_speaker_go_again() -> None:
    group = replace(TRIO, allow_self_responses=True)
    history = [user(), msg("assistant", "Tom", "…")]
    for picked in over_seeds(group, history=history, trigger="auto", talkativeness=LOUD):
        assert sorted(picked) == ["Ada", "Mira", "Tom"]


def test_a_user_message_never_excludes_the_last_speaker() -> None:
    history = [msg("assistant", "Tom", "…")]
    picked = pick(TRIO, trigger_text="Tom, again", history=history, talkativeness=QUIET)
    assert picked == ["Tom"]


def test_auto_mode_reads_the_last_message_for_mentions() -> None:
    history = [user(), msg("assistant", "Mira", "Ada, your turn.")]
    assert pick(TRIO, history=history, trigger="auto", talkativeness=QUIET) == ["Ada"]


def test_auto_mode_ignores_the_text_of_a_system_or_hidden_last_message() -> None:
    for last in (msg("system", "", "Ada!"), msg("assistant", "Mira", "Ada!", hidden=True)):
        picked = over_seeds(TRIO, history=[user(), last], trigger="auto", talkativeness=QUIET)
        assert {p[0] for p in picked} != {"Ada"}


def test_an_empty_user_send_counts_as_auto() -> None:
    history = [user(), msg("assistant", "Tom", "Mira?")]
    talk = {"Mira": 0.0, "Tom": 1.0, "Ada": 0.0}
    assert pick(TRIO, trigger_text="", history=history, talkativeness=talk) == ["Mira"]


def test_the_only_member_may_go_again_through_the_fallback() -> None:
    solo = Group("G", ("Tom",))
    history = [user(), msg("assistant", "Tom", "…")]
    assert pick(solo, history=history, trigger="auto", talkativeness={"Tom": 1.0}) == ["Tom"]


def test_regenerate_reruns_the_strategy_on_the_users_message() -> None:
    history = [user("Mira and Ada, hello")]
    picked = pick(TRIO, history=history, trigger="regenerate", talkativeness=QUIET)
    assert picked == ["Mira", "Ada"]


# --- list, manual, pooled ----------------------------------------------------------------------


def test_list_order_is_every_unmuted_member_in_list_order() -> None:
    group = replace(TRIO, strategy=Strategy.LIST, muted=frozenset({"Tom"}))
    for trigger in ("user", "auto", "regenerate"):
        assert pick(group, trigger_text="Tom?", trigger=trigger) == ["Mira", "Ada"]


def test_manual_answers_nobody_on_a_user_message() -> None:
    group = replace(TRIO, strategy=Strategy.MANUAL)
    assert all(p == [] for p in over_seeds(group, trigger_text="Mira, Tom, Ada!"))


def test_manual_picks_one_random_unmuted_member_on_an_empty_send() -> None:
    group = replace(TRIO, strategy=Strategy.MANUAL, muted=frozenset({"Ada"}))
    picked = over_seeds(group, trigger_text="", history=[user()])
    assert {tuple(p) for p in picked} == {("Mira",), ("Tom",)}


def test_pooled_picks_who_has_not_spoken_since_the_user() -> None:
    group = replace(TRIO, strategy=Strategy.POOLED)
    history = [msg("assistant", "Ada"), user(), msg("assistant", "Mira"), msg("assistant", "Tom")]
    assert all(p == ["Ada"] for p in over_seeds(group, history=history, trigger="auto"))


def test_pooled_skips_system_and_hidden_messages_when_counting() -> None:
    group = replace(TRIO, strategy=Strategy.POOLED)
    history = [
        user(),
        msg("assistant", "Mira"),
        msg("assistant", "Tom", hidden=True),
        msg("system", "Tom"),
    ]
    picked = over_seeds(group, history=history, trigger="auto")
    assert {p[0] for p in picked} == {"Tom", "Ada"}


def test_pooled_after_a_user_message_anyone_may_reply() -> None:
    group = replace(TRIO, strategy=Strategy.POOLED)
    history = [msg("assistant", "Mira"), msg("assistant", "Tom")]
    picked = over_seeds(group, trigger_text="hi", history=history)
    assert all(len(p) == 1 for p in picked)
    assert {p[0] for p in picked} == {"Mira", "Tom", "Ada"}


def test_pooled_when_all_have_spoken_anyone_but_the_last_speaker() -> None:
    group = replace(TRIO, strategy=Strategy.POOLED)
    history = [user(), msg("assistant", "Ada"), msg("assistant", "Mira"), msg("assistant", "Tom")]
    picked = over_seeds(group, history=history, trigger="auto")
    assert {p[0] for p in picked} == {"Ada", "Mira"}


def test_pooled_never_picks_a_muted_member() -> None:
    group = replace(TRIO, strategy=Strategy.POOLED, muted=frozenset({"Ada"}))
    history = [user(), msg("assistant", "Mira"), msg("assistant", "Tom")]
    assert {p[0] for p in over_seeds(group, history=history, trigger="auto")} == {"Mira"}


# --- overrides -----------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", ["swipe", "continue"])
@pytest.mark.parametrize("strategy", list(Strategy))
def test_swipe_and_continue_go_to_the_author_of_the_last_message(
    trigger: Trigger, strategy: Strategy
) -> None:
    group = replace(TRIO, strategy=strategy)
    history = [user("Mira?"), msg("assistant", "Ada")]
    assert all(
        p == ["Ada"]
        for p in over_seeds(group, history=history, trigger=trigger, talkativeness=LOUD)
    )


def test_swipe_past_a_user_message_goes_to_the_latest_character() -> None:
    history = [msg("assistant", "Tom"), user(), msg("system", "", "note")]
    assert pick(TRIO, history=history, trigger="swipe") == ["Tom"]


def test_swipe_with_no_character_message_picks_a_random_member() -> None:
    picked = over_seeds(TRIO, history=[user()], trigger="swipe")
    assert {p[0] for p in picked} == {"Mira", "Tom", "Ada"}
    assert pick(TRIO, history=[], trigger="swipe") == []


def test_swipe_of_a_muted_or_departed_member_gets_nobody() -> None:
    muted = replace(TRIO, muted=frozenset({"Ada"}))
    assert pick(muted, history=[user(), msg("assistant", "Ada")], trigger="swipe") == []
    assert pick(TRIO, history=[user(), msg("assistant", "Zed")], trigger="continue") == []


def test_impersonate_picks_a_random_unmuted_member() -> None:
    group = replace(TRIO, muted=frozenset({"Tom"}))
    picked = over_seeds(group, trigger_text="Tom!", trigger="impersonate", talkativeness=LOUD)
    assert {tuple(p) for p in picked} == {("Mira",), ("Ada",)}


def test_force_talk_works_on_a_muted_member_and_only_on_speakers() -> None:
    group = replace(TRIO, muted=frozenset({"Tom"}), narrator="Narrator")
    assert pick(group, trigger="force", forced="Tom") == ["Tom"]
    assert pick(group, trigger="force", forced="Narrator") == ["Narrator"]
    assert pick(group, trigger="force", forced="Zed") == []
    assert pick(group, trigger="force") == []


def test_quiet_goes_to_the_last_speaker_else_the_first_member() -> None:
    history = [user(), msg("assistant", "Ada"), user(), msg("system", "", "summary")]
    assert pick(TRIO, history=history, trigger="quiet") == ["Ada"]
    assert pick(replace(TRIO, muted=frozenset({"Ada"})), history=history, trigger="quiet") == [
        "Mira"
    ]
    assert pick(TRIO, history=[user()], trigger="quiet") == ["Mira"]


def test_last_batch_is_what_a_group_regenerate_deletes() -> None:
    def m(i: int, role: Role, batch: int | None = None) -> ChatMessage:
        extra = {} if batch is None else {"batch": batch}
        return ChatMessage(i, role, "Sam" if role == "user" else "Mira", "…", extra=extra)

    assert last_batch([m(1, "user"), m(2, "assistant"), m(3, "assistant")]) == [2, 3]
    marked = [m(1, "user"), m(2, "assistant", 7), m(3, "assistant", 8), m(4, "assistant", 8)]
    assert last_batch(marked) == [3, 4]
    assert last_batch([m(1, "assistant"), m(2, "system"), m(3, "assistant")]) == [3]
    assert last_batch([m(1, "assistant"), m(2, "user")]) == []
    assert last_batch([]) == []


# --- muted members and the narrator ----------------------------------------------------------


def test_a_muted_member_is_not_activated_by_mention_roll_or_fallback() -> None:
    group = replace(TRIO, muted=frozenset({"Tom", "Ada"}))
    for picked in over_seeds(group, trigger_text="Tom and Ada!", talkativeness=LOUD):
        assert picked == ["Mira"]


def test_with_everyone_muted_nobody_replies() -> None:
    group = replace(TRIO, muted=frozenset(TRIO.members))
    for trigger in ("user", "auto", "impersonate"):
        assert pick(group, trigger_text="Tom!", trigger=trigger, talkativeness=LOUD) == []


@pytest.mark.parametrize("strategy", list(Strategy))
def test_the_narrator_speaks_only_when_forced(strategy: Strategy) -> None:
    group = replace(TRIO, narrator="Narrator", strategy=strategy)
    talk = {**LOUD, "Narrator": 1.0}
    for trigger in ("user", "auto", "impersonate"):
        for picked in over_seeds(
            group, trigger_text="Narrator, describe the room", trigger=trigger, talkativeness=talk
        ):
            assert "Narrator" not in picked


def test_a_narrator_listed_as_member_is_still_left_to_force() -> None:
    group = Group("G", ("Mira", "Narrator"), narrator="Narrator", strategy=Strategy.LIST)
    assert pick(group, trigger_text="go") == ["Mira"]


def test_the_narrators_own_message_is_swiped_by_the_narrator() -> None:
    group = replace(TRIO, narrator="Narrator")
    history = [user(), msg("assistant", "Narrator", "The fog rolls in.")]
    assert pick(group, history=history, trigger="swipe") == ["Narrator"]


# --- properties --------------------------------------------------------------------------------

NAMES = ["Mira", "Tom", "Ada Lee", "Lee", "Narrator", "Zed"]


@st.composite
def groups(draw: st.DrawFn) -> Group:
    members = draw(st.lists(st.sampled_from(NAMES[:5]), unique=True, max_size=5))
    muted = draw(st.sets(st.sampled_from(members))) if members else set()
    return Group(
        "G",
        tuple(members),
        frozenset(muted),
        strategy=draw(st.sampled_from(list(Strategy))),
        allow_self_responses=draw(st.booleans()),
        narrator=draw(st.sampled_from([None, "Narrator", "Mira"])),
    )


messages = st.builds(
    lambda role, name, text, hidden: ChatMessage(0, role, name, text, extra={"hidden": hidden}),
    st.sampled_from(["user", "assistant", "system"]),
    st.sampled_from([*NAMES, "Sam", ""]),
    st.text(max_size=40),
    st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(
    group=groups(),
    history=st.lists(messages, max_size=8),
    trigger=st.sampled_from(get_args(Trigger)),
    text=st.text(max_size=60) | st.sampled_from(NAMES),
    forced=st.none() | st.sampled_from(NAMES),
    seed=st.integers(0, 2**32),
    talk=st.dictionaries(
        st.sampled_from(NAMES), st.floats(allow_nan=True, allow_infinity=True), max_size=6
    ),
)
def test_speakers_are_members_and_never_muted_unless_forced(
    group: Group,
    history: list[ChatMessage],
    trigger: Trigger,
    text: str,
    forced: str | None,
    seed: int,
    talk: dict[str, float],
) -> None:
    picked = choose_speakers(
        group,
        trigger_text=text,
        history=history,
        trigger=trigger,
        forced=forced,
        rng=random.Random(seed),
        talkativeness=talk,
    )
    assert len(picked) == len(set(picked))
    assert set(picked) <= set(group.speakers)
    if trigger != "force":
        assert not set(picked) & group.muted
    if trigger not in ("force", "swipe", "continue", "quiet"):
        assert group.narrator not in picked
    again = choose_speakers(
        group,
        trigger_text=text,
        history=history,
        trigger=trigger,
        forced=forced,
        rng=random.Random(seed),
        talkativeness=talk,
    )
    assert again == picked


# --- the Group value ---------------------------------------------------------------------------


def test_to_dict_is_compact_and_round_trips() -> None:
    plain = Group("Harbour", ("Mira", "Tom"))
    assert plain.to_dict() == {"name": "Harbour", "members": ["Mira", "Tom"]}
    full = Group(
        "Harbour",
        ["Mira", "Tom", "Ada"],  # type: ignore[arg-type]  # lists are accepted and frozen
        {"Ada", "Tom"},  # type: ignore[arg-type]
        strategy=Strategy.POOLED,
        generation_mode=CardMode.JOIN_ALL,
        join_prefix="<{{char}}>",
        join_suffix="</{{char}}>",
        allow_self_responses=True,
        narrator="Narrator",
        auto_mode=True,
        auto_delay=12,
    )
    d = full.to_dict()
    assert d["muted"] == ["Tom", "Ada"]  # list order, so the JSON is stable
    assert d["strategy"] == "pooled" and d["mode"] == "join_all" and d["delay"] == 12.0
    text = json.dumps(d, separators=(",", ":"))
    assert Group.from_dict(json.loads(text)) == full
    assert full.members == ("Mira", "Tom", "Ada") and full.muted == frozenset({"Ada", "Tom"})


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"members": ("Mira", "Mira")}, "twice"),
        ({"members": ("Mira",), "muted": frozenset({"Tom"})}, "not members: Tom"),
        ({"members": tuple(f"m{i}" for i in range(MAX_MEMBERS + 1))}, "at most"),
        ({"members": ("",)}, "names are"),
        ({"members": "Mira"}, "list of names"),
        ({"members": ("Mira",), "strategy": "loud"}, "loud"),
        ({"members": ("Mira",), "join_prefix": "x" * 5000}, "join prefix"),
        ({"members": ("Mira",), "auto_delay": float("nan")}, "delay"),
    ],
)
def test_a_bad_group_is_a_clear_error(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(GroupError, match=needle):
        Group("G", **kwargs)


def test_auto_delay_is_kept_in_bounds() -> None:
    assert Group("G", ("A",), auto_delay=0).auto_delay == 1.0
    assert Group("G", ("A",), auto_delay=10**9).auto_delay == 3600.0


def test_from_dict_names_the_bad_field() -> None:
    with pytest.raises(GroupError, match="members"):
        Group.from_dict({"name": "G", "members": "Mira"})
    with pytest.raises(GroupError, match="expected an object"):
        Group.from_dict([])  # type: ignore[arg-type]


STORED_KEYS = ["name", "members", "muted", "strategy", "mode", "prefix", "self", "delay", "auto"]
ST_KEYS = ["disabled_members", "activation_strategy", "generation_mode", "auto_mode_delay"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from([*STORED_KEYS, *ST_KEYS]),
        json_values,
    )
)
def test_reading_stored_or_st_groups_never_crashes(data: dict[str, Any]) -> None:
    for read in (Group.from_dict, lambda d: Group.from_st(d, {"a.png": "A"})):
        with contextlib.suppress(GroupError):  # a clear error is fine; nothing else is
            read(data)


def test_find_resolves_a_typed_name() -> None:
    group = Group("G", ("Mira Lee", "Tom", "Tomas"), narrator="The Narrator")
    assert group.find("mira lee") == "Mira Lee"
    assert group.find("lee") == "Mira Lee"
    assert group.find("TOM") == "Tom"
    assert group.find("narrator") == "The Narrator"
    assert group.find("the") == "The Narrator"
    assert group.find("zed") is None and group.find(" ") is None


def test_muting_and_unmuting() -> None:
    group = TRIO.with_muted("Tom")
    assert group.muted == {"Tom"} and group.unmuted == ("Mira", "Ada")
    assert group.with_muted("Tom", False).muted == frozenset()
    with pytest.raises(GroupError, match="Zed"):
        TRIO.with_muted("Zed")


# --- SillyTavern group files -------------------------------------------------------------------

ST_GROUP = {
    "id": "1718000000000",
    "name": "Tavern night",
    "members": ["Seraphina.png", "Tom.png", "Gone.png", "Ada"],
    "disabled_members": ["Tom.png", "Gone.png"],
    "activation_strategy": 3,
    "generation_mode": 2,
    "generation_mode_join_prefix": "[{{char}}'s <FIELDNAME>]",
    "generation_mode_join_suffix": "",
    "allow_self_responses": True,
    "auto_mode_delay": 8,
    "chat_metadata": {},
    "chat_id": "1718000000000",
    "chats": ["1718000000000"],
    "fav": False,
    "avatar_url": "",
    "hideMutedSprites": False,
}
AVATARS = {"Seraphina.png": "Seraphina", "Tom.png": "Tom", "Ada.png": "Ada"}


def test_an_st_group_file_imports_with_its_settings(caplog: pytest.LogCaptureFixture) -> None:
    group = Group.from_st(ST_GROUP, AVATARS)
    assert group.name == "Tavern night"
    assert group.members == ("Seraphina", "Tom", "Ada")  # "Ada": an old file's name entry
    assert group.muted == {"Tom"}
    assert group.strategy is Strategy.POOLED
    assert group.generation_mode is CardMode.JOIN_ALL
    assert group.join_prefix == "[{{char}}'s <FIELDNAME>]" and group.join_suffix == ""
    assert group.allow_self_responses and group.auto_delay == 8.0 and group.narrator is None
    assert "Gone.png" in caplog.text


def test_an_st_group_file_with_odd_values_falls_back_to_defaults() -> None:
    odd = {"members": ["Tom.png", "Tom.png"], "activation_strategy": 9, "generation_mode": "1"}
    group = Group.from_st(odd, AVATARS)
    assert group.members == ("Tom",) and group.name == "Group"
    assert group.strategy is Strategy.NATURAL and group.generation_mode is CardMode.JOIN
    with pytest.raises(GroupError, match="members: expected a list"):
        Group.from_st({"members": "Tom.png"}, AVATARS)
