"""Prompt assembly: budgets (a prompt never exceeds the context), truncation order, errors,
the report, and the history window the builder lays out first."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import ConfigError, UserFacingError
from bot.prompt import (
    AuthorsNote,
    BlockKind,
    Character,
    ChatPreset,
    ContextTemplate,
    EstimateCounter,
    PromptInputs,
    build_prompt,
)
from bot.prompt.model import BuiltPrompt
from bot.types import ChatMessage, Role

COUNTER = EstimateCounter()
MIRA = Character(
    name="Mira",
    description="{{char}} keeps the lighthouse.",
    personality="calm",
    scenario="A storm night.",
    mes_example="<START>\n{{user}}: Hello?\n{{char}}: Who goes there?\n"
    "<START>\n{{user}}: Again?\n{{char}}: Again.",
)


def msg(i: int, role: Role, text: str, name: str = "") -> ChatMessage:
    return ChatMessage(i, role, name or {"user": "Sam", "assistant": "Mira"}.get(role, ""), text)


def chat(n: int, size: int = 60) -> list[ChatMessage]:
    return [
        msg(i, "user" if i % 2 else "assistant", f"message {i} " + "word " * (size // 5))
        for i in range(n)
    ]


def inputs(history: list[ChatMessage], **kw: Any) -> PromptInputs:
    base = PromptInputs(character=MIRA, user_name="Sam", history=history)
    return replace(base, **kw)


def size(built: BuiltPrompt) -> int:
    if built.mode == "text":
        return COUNTER.count(built.text)
    return sum(COUNTER.count(m.content) + 3 + (1 if m.name else 0) for m in built.messages) + 3


@pytest.mark.parametrize("mode", ["chat", "text"])
@pytest.mark.parametrize("context", [700, 1000, 2000, 8192])
def test_a_prompt_never_exceeds_the_context(mode: str, context: int) -> None:
    built = build_prompt(inputs(chat(300), mode=mode, context_size=context), COUNTER)
    assert size(built) <= context - 300
    report = built.report
    assert report.included and report.included == tuple(range(300 - len(report.included), 300))
    assert report.cut == tuple(range(300 - len(report.included)))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 80),
    words=st.integers(1, 60),
    context=st.integers(600, 4000),
    mode=st.sampled_from(["chat", "text"]),
)
def test_never_over_for_any_chat(n: int, words: int, context: int, mode: str) -> None:
    try:
        built = build_prompt(inputs(chat(n, words * 5), mode=mode, context_size=context), COUNTER)
    except UserFacingError:
        return  # the newest message alone does not fit: refused, never sent over
    assert size(built) <= context - 300
    assert built.report.included[-1] == n - 1  # the newest message is always in


def test_long_chats_give_the_same_prompt_as_laying_out_everything() -> None:
    """The builder lays out a window of the newest messages first, sized from the newest
    ones; when the budget reaches past it, it widens the window. Here the newest messages are
    long and the older ones short, so the first window is far too small."""
    short = [msg(i, "user" if i % 2 else "assistant", f"ok {i}") for i in range(1984)]
    long = [msg(1984 + i, "user" if i % 2 else "assistant", "long " * 60) for i in range(16)]
    history = short + long
    for mode in ("chat", "text"):
        built = build_prompt(inputs(history, mode=mode), COUNTER)
        kept = len(built.report.included)
        assert 200 < kept < 1900
        # SillyTavern's walk over a chat that starts a little earlier stops at the same place
        same = build_prompt(inputs(history[-(kept + 100) :], mode=mode), COUNTER)
        assert same.report.included == built.report.included
        assert (same.text, same.messages) == (built.text, built.messages)


def test_examples_give_way_to_history_unless_pinned() -> None:
    history = chat(40)
    room = build_prompt(inputs(history[-2:], mode="text"), COUNTER)
    assert room.report.examples_included == 4 and room.report.examples_cut == 0  # 2 turns each
    # history is filled first; examples only take what is left (SillyTavern's order)
    tight = build_prompt(inputs(history, mode="text", context_size=1200), COUNTER)
    without = build_prompt(
        inputs(history, mode="text", context_size=1200, examples="never"), COUNTER
    )
    assert tight.report.included == without.report.included
    assert tight.report.examples_cut > 0
    pinned = build_prompt(
        inputs(history, mode="text", context_size=1200, examples="always"), COUNTER
    )
    assert "Again." in pinned.text and pinned.report.examples_cut == 0
    assert len(pinned.report.included) < len(tight.report.included)
    never = build_prompt(inputs(history[-2:], mode="text", examples="never"), COUNTER)
    assert "Who goes there?" not in never.text


def test_chat_examples_go_block_by_block() -> None:
    preset = ChatPreset()
    full = build_prompt(inputs(chat(2), chat=preset), COUNTER)
    assert full.report.examples_included == 2
    contents = [m.content for m in full.messages]
    assert contents.count("[Example Chat]") == 2


def test_injections_are_budgeted_before_history() -> None:
    note = AuthorsNote("Remember the storm. " * 20, depth=0)
    built = build_prompt(
        inputs(chat(200), mode="text", context_size=900, authors_note=note), COUNTER
    )
    assert "Remember the storm." in built.text
    assert size(built) <= 600


def test_fixed_parts_too_big_are_a_config_error() -> None:
    card = replace(MIRA, description="lore " * 10000)
    for mode in ("chat", "text"):
        with pytest.raises(ConfigError) as caught:
            build_prompt(inputs(chat(3), character=card, mode=mode), COUNTER)
        assert "raise" in caught.value.user_message()


def test_a_huge_message_is_a_user_facing_error() -> None:
    history = [*chat(3), msg(3, "user", "x" * 40000)]
    for mode in ("chat", "text"):
        with pytest.raises(UserFacingError, match="too long"):
            build_prompt(inputs(history, mode=mode), COUNTER)


def test_max_tokens_must_leave_room() -> None:
    with pytest.raises(ConfigError, match="max_tokens"):
        build_prompt(inputs(chat(2), max_tokens=9000), COUNTER)


def test_continue_needs_a_message() -> None:
    with pytest.raises(UserFacingError, match="no reply to continue"):
        build_prompt(inputs([], generation="continue"), COUNTER)


def test_hidden_messages_are_never_sent() -> None:
    history = chat(4)
    history[1].extra["hidden"] = True
    built = build_prompt(inputs(history, mode="text"), COUNTER)
    assert history[1].text not in built.text
    assert "1 hidden message(s) never sent" in built.report.describe()


def test_the_report_says_what_was_sent_and_cut() -> None:
    note = AuthorsNote("Storm.", depth=2)
    built = build_prompt(inputs(chat(300), context_size=2000, authors_note=note), COUNTER)
    text = built.report.describe()
    assert text.startswith(f"chat prompt: {built.report.used} of 1700 tokens")
    assert "history: " in text and "cut (oldest first, no room): ids 0, 1," in text
    assert "2_floating_prompt (depth 2, system)" in text
    assert built.report.tokens[BlockKind.HISTORY] > 0
    assert built.prompt_tokens == built.report.used


def test_user_text_is_not_macro_expanded() -> None:
    history = [msg(0, "user", "{{random::a::b}} {{char}}")]
    persona = "{{user}} likes {{roll::1d6}}"
    for mode in ("chat", "text"):
        built = build_prompt(
            inputs(history, mode=mode, persona_description=persona, context=ContextTemplate()),
            COUNTER,
        )
        sent = built.text or "\n".join(m.content for m in built.messages)
        assert "{{random::a::b}} {{char}}" in sent  # the message: verbatim
        assert "Sam likes {{roll::1d6}}" in sent  # the persona: names only


def test_estimate_counts_utf16_units_like_sillytavern() -> None:
    assert COUNTER.count("abc") == 1
    assert COUNTER.count("a" * 34) == 11
    assert COUNTER.count("😀") == 1 and COUNTER.count("😀" * 5) == 3  # 10 UTF-16 units
    assert EstimateCounter(4.0).count("a" * 9) == 3
