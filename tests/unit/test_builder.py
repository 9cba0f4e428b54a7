"""Prompt assembly: exact chat messages and ChatML text, SillyTavern's golden prompts, trimming
within the budget, continue, and clear errors when nothing fits."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.backends.base import PromptMessage
from bot.errors import ConfigError, UserFacingError
from bot.prompt import (
    CHATML,
    CHATML_CONTEXT,
    BlockKind,
    BuiltPrompt,
    Character,
    ContextTemplate,
    EstimateCounter,
    InstructTemplate,
    PromptInputs,
    build_prompt,
    load_card,
)
from bot.types import ChatMessage, Role

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "sillytavern"
SYSTEM = "Write {{char}}'s next reply in a fictional chat between {{char}} and {{user}}."
COUNTER = EstimateCounter()

MIRA = Character(
    name="Mira",
    description="{{char}} keeps the lighthouse.",
    personality="calm",
    scenario="A storm night.",
    first_mes="The lamp turns.",
    mes_example="<START>\n{{user}}: Hello?\n{{char}}: Who goes there?",
)


def msg(id: int, role: Role, text: str, name: str = "") -> ChatMessage:
    default = {"user": "Sam", "assistant": "Mira", "system": ""}[role]
    return ChatMessage(id=id, role=role, name=name or default, text=text)


def inputs(history: list[ChatMessage], **kw: Any) -> PromptInputs:
    base: dict[str, Any] = {
        "character": MIRA,
        "user_name": "Sam",
        "history": history,
        "system_prompt": SYSTEM,
        "persona_description": "Sam is a sailor.",
    }
    return PromptInputs(**{**base, **kw})


CHAT = [msg(0, "assistant", "The lamp turns."), msg(1, "user", "Hi there")]
HEADER = (
    "Write Mira's next reply in a fictional chat between Mira and Sam.\n"
    "Sam is a sailor.\n"
    "Mira keeps the lighthouse.\n"
    "[Mira's personality: calm]\n"
    "[Circumstances and context of the dialogue: A storm night.]"
)
STORY = (
    "<|im_start|>system\n"
    "Write Mira's next reply in a fictional chat between Mira and Sam.\n"
    "Mira keeps the lighthouse.\n"
    "Mira's personality: calm\n"
    "Scenario: A storm night.\n"
    "Sam is a sailor.<|im_end|>\n"
)
EXAMPLES = (
    "<|im_start|>user\nSam: Hello?<|im_end|>\n"
    "<|im_start|>assistant\nMira: Who goes there?<|im_end|>\n"
)
CHATML_STOP = (
    "\nSam:",
    "\n<|im_end|>",
    "\n<|im_start|>user",
    "\n<|im_start|>assistant",
    "\n<|im_start|>system",
)


# -- shapes ------------------------------------------------------------------------------------


def test_chat_messages() -> None:
    built = build_prompt(inputs(CHAT), COUNTER)
    assert built.messages == (
        PromptMessage("system", HEADER),
        PromptMessage("system", "[Example Chat]"),
        PromptMessage("system", "Hello?", "example_user"),
        PromptMessage("system", "Who goes there?", "example_assistant"),
        PromptMessage("system", "[Start a new Chat]"),
        PromptMessage("assistant", "The lamp turns."),
        PromptMessage("user", "Hi there"),
    )
    assert built.text == ""
    assert built.stop == ()


def test_chatml_text() -> None:
    built = build_prompt(inputs(CHAT, mode="text"), COUNTER)
    assert built.text == (
        STORY
        + EXAMPLES
        + "<|im_start|>assistant\nMira: The lamp turns.<|im_end|>\n"
        + "<|im_start|>user\nSam: Hi there<|im_end|>\n"
        + "<|im_start|>assistant\nMira:"
    )
    assert built.messages == ()
    assert built.stop == CHATML_STOP


def test_post_history_instructions_and_card_prompt_override() -> None:
    card = replace(
        MIRA,
        system_prompt="You are {{char}}. {{original}}",
        post_history_instructions="{{original}} Keep replies short.",
    )
    args = {
        "character": card,
        "persona_description": "",
        "post_history_instructions": "Stay {{char}}.",
    }
    chat = build_prompt(inputs(CHAT, **args), COUNTER)
    assert chat.messages[0].content == (
        "You are Mira. Write Mira's next reply in a fictional chat between Mira and Sam.\n"
        "Mira keeps the lighthouse.\n"
        "[Mira's personality: calm]\n"
        "[Circumstances and context of the dialogue: A storm night.]"
    )
    assert chat.messages[-1] == PromptMessage("system", "Stay Mira. Keep replies short.")
    text = build_prompt(inputs(CHAT, mode="text", **args), COUNTER).text
    # text mode sends it as a nameless user turn right before the reply header, like ST
    assert text.endswith(
        "<|im_start|>user\nSam: Hi there<|im_end|>\n"
        "<|im_start|>user\nStay Mira. Keep replies short.<|im_end|>\n"
        "<|im_start|>assistant\nMira:"
    )


def test_several_people_are_named_in_chat_mode_and_stopped_in_text_mode() -> None:
    history = [*CHAT, msg(2, "assistant", "Who else is here?"), msg(3, "user", "Me!", "Ana")]
    chat = build_prompt(inputs(history), COUNTER)
    assert [m.content for m in chat.messages[-4:]] == [
        "The lamp turns.",
        "Sam: Hi there",
        "Who else is here?",
        "Ana: Me!",
    ]
    text = build_prompt(inputs(history, mode="text", user_name="Ana"), COUNTER)
    assert text.stop[:2] == ("\nAna:", "\nSam:")


def test_narrator_messages_carry_no_name() -> None:
    history = [*CHAT, msg(2, "system", "Thunder rolls.")]
    text = build_prompt(inputs(history, mode="text"), COUNTER).text
    assert "<|im_start|>system\nThunder rolls.<|im_end|>\n<|im_start|>assistant\nMira:" in text
    assert build_prompt(inputs(history), COUNTER).messages[-1] == PromptMessage(
        "system", "Thunder rolls."
    )


# -- SillyTavern's own output ------------------------------------------------------------------


def _golden(name: str) -> tuple[PromptInputs, dict[str, Any]]:
    folder = FIXTURES / "golden" / name
    history = [
        ChatMessage(
            id=i, role="user" if row["is_user"] else "assistant", name=row["name"], text=row["mes"]
        )
        for i, row in enumerate(
            json.loads(line)
            for line in (folder / "inputs/chat.jsonl").read_text().splitlines()[1:]
        )
    ]
    message = json.loads((folder / "inputs/scenario.json").read_text())["message"]
    history.append(ChatMessage(id=len(history), role="user", name="Alex", text=message))
    persona = "Alex is a young traveler from the northern villages, curious and a little stubborn."
    built = PromptInputs(
        character=load_card(FIXTURES / "cards/default_Seraphina.png"),
        user_name="Alex",
        history=history,
        mode="text",
        context_size=8192,
        max_tokens=350,
        system_prompt=SYSTEM,
        persona_description=persona,
    )
    return built, json.loads((folder / "request.json").read_text())


def _without_lore(prompt: str) -> str:
    # the lorebook entries SillyTavern put right after the system prompt come with lorebooks
    start = prompt.index("\n", prompt.index("Write Seraphina")) + 1
    return prompt[:start] + prompt[prompt.index("[Seraphina's Personality") :]


@pytest.mark.parametrize(
    ("folder", "template"),
    [("tc-chatml-seraphina", "ChatML"), ("tc-llama-3-instruct-seraphina", "Llama 3 Instruct")],
)
def test_text_prompt_matches_sillytavern_golden_except_lore(folder: str, template: str) -> None:
    preset = json.loads((FIXTURES / "instruct" / f"{template}.json").read_text())
    context = json.loads((FIXTURES / "context" / "ChatML.json").read_text())
    base, request = _golden(folder)
    instruct, context_template = InstructTemplate.from_st(preset), ContextTemplate.from_st(context)
    built = build_prompt(replace(base, instruct=instruct, context=context_template), COUNTER)
    assert built.text == _without_lore(request["prompt"])
    assert built.stop == tuple(request["stop"])


def test_chatml_presets_equal_the_built_in_template() -> None:
    preset = json.loads((FIXTURES / "instruct" / "ChatML.json").read_text())
    context = json.loads((FIXTURES / "context" / "ChatML.json").read_text())
    assert InstructTemplate.from_st(preset) == CHATML
    assert ContextTemplate.from_st(context) == CHATML_CONTEXT


def test_chat_prompt_history_matches_sillytavern_golden() -> None:
    base, _ = _golden("tc-chatml-seraphina")
    built = build_prompt(replace(base, mode="chat", context_size=4095, max_tokens=300), COUNTER)
    request = json.loads((FIXTURES / "golden/cc-default-seraphina/request.json").read_text())
    golden = [PromptMessage(m["role"], m["content"]) for m in request["messages"]]
    start = golden.index(PromptMessage("system", "[Start a new Chat]"))
    assert built.messages[1:] == tuple(golden[start:])
    main, _lore, persona, description = (m.content for m in golden[:4])
    assert built.messages[0] == PromptMessage("system", f"{main}\n{persona}\n{description}")


# -- trimming ----------------------------------------------------------------------------------


def _long_history(n: int) -> list[ChatMessage]:
    history = [msg(0, "assistant", "The lamp turns.")]
    for i in range(1, n):
        role: Role = "user" if i % 2 else "assistant"
        history.append(msg(i, role, f"Message number {i}. " + "The waves keep rolling. " * 8))
    return history


def _chat_tokens(built: BuiltPrompt) -> int:
    # SillyTavern's pricing, counted independently of the builder
    return 3 + sum(COUNTER.count(m.content) + 3 + (1 if m.name else 0) for m in built.messages)


@pytest.mark.parametrize("mode", ["chat", "text"])
def test_trimming_keeps_the_newest_and_never_exceeds_the_budget(mode: str) -> None:
    history = _long_history(40)  # ends with a user message
    outcomes: set[str] = set()
    for context_size in range(250, 4000, 37):
        try:
            built = build_prompt(
                inputs(history, mode=mode, context_size=context_size, max_tokens=200), COUNTER
            )
        except (ConfigError, UserFacingError) as exc:
            assert "context is too small for Mira" in exc.message or "too long" in exc.message
            assert context_size < 500
            outcomes.add(type(exc).__name__)
            continue
        outcomes.add("cut" if built.report.cut else "whole")
        report = built.report
        assert report.budget == context_size - 200 - (0 if mode == "chat" else 64)
        assert report.used <= report.budget
        if mode == "chat":
            assert _chat_tokens(built) <= report.budget
        else:
            assert COUNTER.count(built.text) <= report.budget
        kept = report.included
        assert kept == tuple(range(40 - len(kept), 40))  # a newest-first run, no gaps
        assert report.cut == tuple(range(40 - len(kept)))
        assert kept[-1] == 39
        sent = [b.text for b in built.blocks if b.kind in (BlockKind.HISTORY, BlockKind.GREETING)]
        assert sent == [history[i].text for i in kept]
    assert outcomes == {"ConfigError", "UserFacingError", "cut", "whole"}


def test_examples_give_way_to_history() -> None:
    history = _long_history(5)
    roomy = build_prompt(inputs(history, context_size=4000), COUNTER)
    assert (roomy.report.examples_included, roomy.report.cut) == (1, ())
    need = roomy.report.used
    example_cost = roomy.report.tokens[BlockKind.EXAMPLE]
    tight = build_prompt(inputs(history, context_size=need + 300 - 1, max_tokens=300), COUNTER)
    assert tight.report.examples_cut == 1
    assert tight.report.cut == ()
    assert all(m.content != "[Example Chat]" for m in tight.messages)
    assert BlockKind.EXAMPLE not in tight.report.tokens
    assert tight.report.used == need - example_cost


def test_latest_user_message_is_kept_when_little_else_fits() -> None:
    history = _long_history(40)
    assert history[-1].role == "user"
    fixed = build_prompt(inputs(history[-1:], context_size=100_000), COUNTER).report.used
    built = build_prompt(inputs(history, context_size=fixed + 300, max_tokens=300), COUNTER)
    assert built.report.included == (39,)
    assert built.messages[-1].content == history[-1].text


def test_huge_message_is_a_user_facing_error() -> None:
    history = [*CHAT, msg(2, "user", "word " * 20_000)]
    with pytest.raises(UserFacingError) as info:
        build_prompt(inputs(history, context_size=8192, max_tokens=300), COUNTER)
    alone = build_prompt(inputs([], context_size=100_000), COUNTER).report
    fixed = alone.used - alone.tokens[BlockKind.EXAMPLE]  # examples are not fixed
    over = fixed + COUNTER.count("word " * 20_000) + 3 - (8192 - 300)
    assert info.value.message == (
        f"That message is too long for this chat: about {over} tokens over the context. "
        "Please send a shorter one."
    )


def test_card_too_big_for_the_context_is_a_config_error() -> None:
    card = replace(MIRA, description="lore " * 3000)
    with pytest.raises(ConfigError) as info:
        build_prompt(inputs(CHAT, character=card, mode="text", context_size=2048), COUNTER)
    message = info.value.message
    assert message.startswith("the context is too small for Mira: the system prompt, card and")
    assert "(context_size 2048 − max_tokens 300 − 64 padding)" in message
    assert "short" in message and "context_size" in info.value.user_message()


def test_max_tokens_must_leave_room() -> None:
    with pytest.raises(ConfigError, match=r"max_tokens \(300\) must be smaller than context_size"):
        build_prompt(inputs(CHAT, context_size=300), COUNTER)


# -- continue ----------------------------------------------------------------------------------

PARTIAL = [*CHAT, msg(2, "assistant", "The wind howls and")]


def test_continue_in_chat_mode_ends_with_nudge_then_partial_reply() -> None:
    built = build_prompt(inputs(PARTIAL, continue_last=True), COUNTER)
    assert built.messages[-3:] == (
        PromptMessage("user", "Hi there"),
        PromptMessage(
            "system",
            "[Continue the following message. Do not include ANY parts of the original message. "
            "Use capitalization and punctuation as if your reply is a part of the original "
            "message: The wind howls and]",
        ),
        PromptMessage("assistant", "The wind howls and"),
    )
    assert built.report.included == (0, 1, 2)
    assert built.report.tokens[BlockKind.CONTINUE_NUDGE] > 0


def test_continue_in_text_mode_ends_with_the_partial_text() -> None:
    built = build_prompt(
        inputs(PARTIAL, mode="text", continue_last=True, post_history_instructions="Be brief."),
        COUNTER,
    )
    assert built.text.endswith(
        "<|im_start|>user\nSam: Hi there<|im_end|>\n"
        "<|im_start|>user\nBe brief.<|im_end|>\n"
        "<|im_start|>assistant\nMira: The wind howls and"
    )
    assert built.stop == CHATML_STOP


def test_continue_needs_a_reply_to_continue() -> None:
    with pytest.raises(UserFacingError, match=r"There is no reply to continue\."):
        build_prompt(inputs(CHAT, continue_last=True), COUNTER)


# -- report and counter ------------------------------------------------------------------------


def test_report_counts_every_kind() -> None:
    built = build_prompt(inputs(CHAT, post_history_instructions="Be brief."), COUNTER)
    tokens = built.report.tokens
    assert set(tokens) == {
        BlockKind.FORMAT,
        BlockKind.MAIN,
        BlockKind.PERSONA,
        BlockKind.CHAR_DEF,
        BlockKind.EXAMPLE,
        BlockKind.CHAT_START,
        BlockKind.GREETING,
        BlockKind.HISTORY,
        BlockKind.POST_HISTORY,
    }
    assert tokens[BlockKind.HISTORY] == COUNTER.count("Hi there") + 3
    assert built.report.used == sum(tokens.values())
    # never below the real count, and only a little above it (one ceiling per block)
    assert 0 <= built.report.used - _chat_tokens(built) <= len(built.blocks)


def test_estimate_counts_utf16_units_like_sillytavern() -> None:
    assert COUNTER.count("") == 0
    assert COUNTER.count("abc") == 1
    assert COUNTER.count("x" * 335) == 100
    assert COUNTER.count("x" * 336) == 101
    assert COUNTER.count("😀" * 67) == 40  # 134 UTF-16 units, as JavaScript's length


def test_prompt_tokens_is_the_reported_estimate() -> None:
    built = build_prompt(inputs(CHAT, mode="text"), COUNTER)
    assert built.prompt_tokens == built.report.used >= COUNTER.count(built.text)
