"""Group chats, prompt side: swap/join card fields, Character's Notes per member, the group
nudge, stop strings and greetings — and what the builder makes of them for two members."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from bot.engine.groups import Group
from bot.errors import ConfigError
from bot.prompt import (
    Character,
    ChatPreset,
    EstimateCounter,
    Injection,
    Position,
    PromptInputs,
    build_prompt,
)
from bot.prompt.cards import DepthPrompt
from bot.prompt.group_prompt import (
    DEFAULT_GROUP_NUDGE,
    NARRATOR_NUDGE,
    CardMode,
    GroupPromptParts,
    group_greetings,
    group_prompt_parts,
    joined_fields,
    member_notes,
)
from bot.types import ChatMessage

MIRA = Character(
    name="Mira",
    description="{{char}} keeps the lighthouse.",
    personality="calm",
    scenario="A storm night.",
    first_mes="Welcome, {{user}}.",
    depth_prompt=DepthPrompt("{{char}} never lies.", 2),
)
TOM = Character(
    name="Tom",
    description="  {{char}} is a sailor.\n",
    personality="loud",
    first_mes="Ahoy!",
    alternate_greetings=("Land ho!",),
    # only in the extensions, as a card read from a file before parsing would have it
    extensions={"depth_prompt": {"prompt": "<BOT> hums sea shanties.", "depth": 1, "role": 1}},
)
NARRATOR = Character(
    name="Narrator",
    description="An unseen voice that tells the story.",
    first_mes="Fog rolls over the harbour.",
)
CARDS = {"Mira": MIRA, "Tom": TOM, "Narrator": NARRATOR}
SWAP = Group("Harbour", ("Mira", "Tom"))
JOIN = replace(
    SWAP,
    generation_mode=CardMode.JOIN,
    join_prefix="<{{char}}'s <FIELDNAME>>",
    join_suffix="</{{char}}>",
)
HISTORY = [
    ChatMessage(0, "assistant", "Mira", "Welcome, Sam."),
    ChatMessage(1, "assistant", "Tom", "Ahoy!"),
    ChatMessage(2, "user", "Sam", "Hello Tom, how are you?"),
]


def parts(group: Group = SWAP, speaker: str = "Tom", **kw: Any) -> GroupPromptParts:
    return group_prompt_parts(group, speaker, CARDS, **kw)


# --- swap ----------------------------------------------------------------------------------


def test_swap_uses_the_speakers_own_card() -> None:
    p = parts()
    assert p.card == TOM and not p.joined and p.injections == ()
    assert p.members == ("Mira", "Tom") and p.others == ("Mira",)
    assert p.nudge == DEFAULT_GROUP_NUDGE == "[Write the next reply only as {{char}}.]"
    assert p.stop == ("\nMira:",)


def test_stop_strings_name_every_other_member_muted_ones_and_the_narrator_too() -> None:
    group = replace(SWAP, members=("Mira", "Tom", "Ada"), muted=frozenset({"Ada"}))
    group = replace(group, narrator="Narrator")
    assert parts(group).stop == ("\nMira:", "\nAda:", "\nNarrator:")
    assert parts(group, "Narrator").others == ("Mira", "Tom", "Ada")


# --- join: the fields ------------------------------------------------------------------------


def test_join_wraps_each_members_fields_with_newlines_when_the_template_wraps() -> None:
    f = joined_fields(JOIN, "Tom", CARDS, wrap=True)
    assert f.description == (
        "<Mira's Description>\nMira keeps the lighthouse.\n</Mira>\n"
        "<Tom's Description>\nTom is a sailor.\n</Tom>"
    )
    assert f.personality == (
        "<Mira's Personality>\ncalm\n</Mira>\n<Tom's Personality>\nloud\n</Tom>"
    )
    # Tom has no scenario: no wrapper of his is added
    assert f.scenario == "<Mira's Scenario>\nA storm night.\n</Mira>"
    assert f.mes_example == ""


def test_join_without_wrap_glues_prefix_value_and_suffix() -> None:
    f = joined_fields(JOIN, "Tom", CARDS, wrap=False)
    assert f.description == (
        "<Mira's Description>Mira keeps the lighthouse.</Mira>\n"
        "<Tom's Description>Tom is a sailor.</Tom>"
    )


def test_join_with_no_wrapper_joins_the_plain_values() -> None:
    group = replace(JOIN, join_prefix="", join_suffix="")
    f = joined_fields(group, "Mira", CARDS)
    assert f.description == "Mira keeps the lighthouse.\nTom is a sailor."


def test_fieldname_is_any_case_and_example_messages_have_their_label() -> None:
    tom = replace(TOM, mes_example="<START>\n{{user}}: Hi\n{{char}}: Ahoy!")
    group = replace(JOIN, join_prefix="[{{CHAR}} — <fieldName>]", join_suffix="  ")
    f = joined_fields(group, "Tom", {**CARDS, "Tom": tom})
    assert f.mes_example == "[Tom — Example Messages]\n<START>\n{{user}}: Hi\nTom: Ahoy!"
    assert f.personality == "[Mira — Personality]\ncalm\n[Tom — Personality]\nloud"


def test_join_leaves_macros_other_than_char_for_the_builder() -> None:
    mira = replace(MIRA, description="{{user}} trusts {{ char }}; <CHAR> knows. {{random::a}}")
    f = joined_fields(JOIN, "Tom", {**CARDS, "Mira": mira})
    assert f.description.startswith(
        "<Mira's Description>\n{{user}} trusts Mira; Mira knows. {{random::a}}\n</Mira>"
    )


def test_join_leaves_out_muted_members_unless_they_speak_or_the_mode_includes_them() -> None:
    muted = replace(JOIN, muted=frozenset({"Mira"}), join_prefix="", join_suffix="")
    assert joined_fields(muted, "Tom", CARDS).description == "Tom is a sailor."
    assert joined_fields(muted, "Mira", CARDS).description == (
        "Mira keeps the lighthouse.\nTom is a sailor."
    )
    everyone = replace(muted, generation_mode=CardMode.JOIN_ALL)
    assert joined_fields(everyone, "Tom", CARDS).description == (
        "Mira keeps the lighthouse.\nTom is a sailor."
    )


def test_a_member_without_a_card_is_skipped_but_the_speaker_needs_one() -> None:
    group = replace(JOIN, members=("Ghost", "Mira", "Tom"), join_prefix="", join_suffix="")
    assert parts(group).card.description == "Mira keeps the lighthouse.\nTom is a sailor."
    with pytest.raises(ConfigError, match="Ghost"):
        parts(group, "Ghost")


def test_swap_fields_are_the_speakers_trimmed() -> None:
    assert joined_fields(SWAP, "Tom", CARDS).description == "{{char}} is a sailor."


# --- join: the card and the Character's Notes ------------------------------------------------


def test_the_joined_card_replaces_the_fields_and_drops_its_own_note() -> None:
    p = parts(JOIN)
    assert p.joined and p.card.name == "Tom"
    assert p.card.description == joined_fields(JOIN, "Tom", CARDS).description
    assert p.card.depth_prompt is None and "depth_prompt" not in p.card.extensions
    assert p.injections == (
        Injection("DEPTH_PROMPT_0", "Mira never lies.", Position.IN_CHAT, 2, "system"),
        Injection("DEPTH_PROMPT_1", "Tom hums sea shanties.", Position.IN_CHAT, 1, "user"),
    )


def test_muted_members_notes_are_left_out_in_both_join_modes() -> None:
    for mode in (CardMode.JOIN, CardMode.JOIN_ALL):
        group = replace(JOIN, generation_mode=mode, muted=frozenset({"Mira"}))
        assert member_notes(group, "Tom", CARDS) == (
            Injection("DEPTH_PROMPT_0", "Tom hums sea shanties.", Position.IN_CHAT, 1, "user"),
        )
        assert [i.text for i in member_notes(group, "Mira", CARDS)] == [
            "Mira never lies.",
            "Tom hums sea shanties.",
        ]
    assert member_notes(SWAP, "Tom", CARDS) == ()


def test_a_scenario_override_replaces_every_cards_scenario() -> None:
    assert parts(SWAP, scenario_override=" The quay at dawn. ").card.scenario == (
        "The quay at dawn."
    )
    assert parts(JOIN, scenario_override="The quay.").card.scenario == "The quay."
    assert parts(JOIN, scenario_override="  ").card.scenario.startswith("<Mira's Scenario>")


# --- nudge and narrator ------------------------------------------------------------------------


def test_no_group_nudge_when_impersonating_and_a_preset_nudge_is_kept() -> None:
    assert parts(generation="impersonate").nudge == ""
    assert parts(nudge="[{{char}} only.]").nudge == "[{{char}} only.]"


def test_the_narrator_sees_every_unmuted_card_after_its_own_and_has_its_own_nudge() -> None:
    group = replace(SWAP, narrator="Narrator", muted=frozenset({"Mira"}))
    p = parts(group, "Narrator")
    assert p.joined and p.nudge == NARRATOR_NUDGE
    assert p.card.description == (
        "[Narrator: Description]\nAn unseen voice that tells the story.\n"
        "[Tom: Description]\nTom is a sailor."
    )
    assert [i.text for i in p.injections] == ["Tom hums sea shanties."]
    assert not parts(group, "Tom").joined  # members keep swap mode


def test_a_narrator_in_join_mode_uses_the_groups_wrapper() -> None:
    group = replace(JOIN, narrator="Narrator")
    assert parts(group, "Narrator").card.personality == (
        "<Mira's Personality>\ncalm\n</Mira>\n<Tom's Personality>\nloud\n</Tom>"
    )


# --- what the builder makes of it: two members, both modes -----------------------------------


def build(p: GroupPromptParts, mode: str) -> Any:
    inputs = PromptInputs(
        character=p.card,
        user_name="Sam",
        history=HISTORY,
        mode=mode,  # type: ignore[arg-type]
        system_prompt="You are in a harbour.",
        group=p.members,
        injections=p.injections,
        chat=replace(ChatPreset(), group_nudge_prompt=p.nudge),
    )
    return build_prompt(inputs, EstimateCounter())


def test_two_members_swap_chat_completion() -> None:
    built = build(parts(SWAP), "chat")
    assert [(m.role, m.content) for m in built.messages] == [
        ("system", "You are in a harbour."),
        ("system", "Tom is a sailor."),
        ("system", "[Tom's personality: loud]"),
        ("system", "[Start a new group chat. Group members: Mira, Tom]"),
        ("assistant", "Mira: Welcome, Sam."),
        ("assistant", "Tom: Ahoy!"),
        ("user", "Tom hums sea shanties."),  # Tom's note, depth 1
        ("user", "Hello Tom, how are you?"),
        ("system", "[Write the next reply only as Tom.]"),
    ]


def test_two_members_join_chat_completion() -> None:
    built = build(parts(JOIN), "chat")
    assert [(m.role, m.content) for m in built.messages] == [
        ("system", "You are in a harbour."),
        (
            "system",
            "<Mira's Description>\nMira keeps the lighthouse.\n</Mira>\n"
            "<Tom's Description>\nTom is a sailor.\n</Tom>",
        ),
        (
            "system",
            "[Tom's personality: <Mira's Personality>\ncalm\n</Mira>\n"
            "<Tom's Personality>\nloud\n</Tom>]",
        ),
        (
            "system",
            "[Circumstances and context of the dialogue: <Mira's Scenario>\n"
            "A storm night.\n</Mira>]",
        ),
        ("system", "[Start a new group chat. Group members: Mira, Tom]"),
        ("assistant", "Mira: Welcome, Sam."),
        ("system", "Mira never lies."),  # Mira's note, depth 2
        ("assistant", "Tom: Ahoy!"),
        ("user", "Tom hums sea shanties."),  # Tom's note, depth 1
        ("user", "Hello Tom, how are you?"),
        ("system", "[Write the next reply only as Tom.]"),
    ]


def test_two_members_join_text_completion() -> None:
    built = build(parts(JOIN), "text")
    assert built.text == (
        "<|im_start|>system\nYou are in a harbour.\n"
        "<Mira's Description>\nMira keeps the lighthouse.\n</Mira>\n"
        "<Tom's Description>\nTom is a sailor.\n</Tom>\n"
        "Tom's personality: <Mira's Personality>\ncalm\n</Mira>\n"
        "<Tom's Personality>\nloud\n</Tom>\n"
        "Scenario: <Mira's Scenario>\nA storm night.\n</Mira><|im_end|>\n"
        "<|im_start|>assistant\nMira: Welcome, Sam.<|im_end|>\n"
        "<|im_start|>system\nMira never lies.<|im_end|>\n"
        "<|im_start|>assistant\nTom: Ahoy!<|im_end|>\n"
        "<|im_start|>user\nSam: Tom hums sea shanties.<|im_end|>\n"
        "<|im_start|>user\nSam: Hello Tom, how are you?<|im_end|>\n"
        "<|im_start|>assistant\nTom:"
    )
    assert "\nMira:" in built.stop and "\nTom:" not in built.stop


def test_two_members_swap_text_completion() -> None:
    built = build(parts(SWAP), "text")
    assert built.text == (
        "<|im_start|>system\nYou are in a harbour.\nTom is a sailor.\n"
        "Tom's personality: loud<|im_end|>\n"
        "<|im_start|>assistant\nMira: Welcome, Sam.<|im_end|>\n"
        "<|im_start|>assistant\nTom: Ahoy!<|im_end|>\n"
        "<|im_start|>user\nSam: Tom hums sea shanties.<|im_end|>\n"
        "<|im_start|>user\nSam: Hello Tom, how are you?<|im_end|>\n"
        "<|im_start|>assistant\nTom:"
    )
    assert built.stop[:2] == ("\nSam:", "\nMira:")


# --- greetings ---------------------------------------------------------------------------------


def test_every_member_greets_in_list_order_with_macros_for_that_member() -> None:
    mira = replace(MIRA, first_mes="{{char}} greets {{user}}. Crew: {{group}}.")
    greetings = group_greetings(
        SWAP, {**CARDS, "Mira": mira}, user_name="Sam", rng=random.Random(0)
    )
    assert [g.speaker for g in greetings] == ["Mira", "Tom"]
    assert greetings[0].swipes == ("Mira greets Sam. Crew: Mira, Tom.",)
    assert greetings[1].swipes == ("Ahoy!", "Land ho!")


def test_the_shown_greeting_is_chosen_at_random_and_the_rest_stay_as_swipes() -> None:
    shown = {
        group_greetings(SWAP, CARDS, user_name="Sam", rng=random.Random(s))[1].text
        for s in range(40)
    }
    assert shown == {"Ahoy!", "Land ho!"}
    first = group_greetings(SWAP, CARDS, user_name="Sam", rng=random.Random(3))[1]
    message = first.message(created=12.5)
    assert message.role == "assistant" and message.name == "Tom" and message.created == 12.5
    assert message.swipes == ["Ahoy!", "Land ho!"]
    assert message.text == message.swipes[message.swipe_id] == first.text
    assert message.swipe_meta == [{"greeting": True}, {"greeting": True}]


def test_group_only_greetings_replace_the_usual_ones() -> None:
    tom = replace(TOM, group_only_greetings=("", "Ahoy, all of you!"))
    greetings = group_greetings(SWAP, {**CARDS, "Tom": tom}, user_name="Sam", rng=random.Random())
    assert greetings[1].swipes == ("Ahoy, all of you!",)


def test_the_narrator_opens_muted_members_greet_and_the_silent_do_not() -> None:
    group = replace(
        SWAP, members=("Mira", "Tom", "Ghost"), muted=frozenset({"Tom"}), narrator="Narrator"
    )
    cards = {**CARDS, "Mira": replace(MIRA, first_mes="  ", alternate_greetings=())}
    greetings = group_greetings(group, cards, user_name="Sam", rng=random.Random(1))
    assert [g.speaker for g in greetings] == ["Narrator", "Tom"]
    assert greetings[0].text == "Fog rolls over the harbour."
