"""Golden prompts derived by hand from SillyTavern's rules (reference §2-§5), for cases the
captured scenarios do not cover: every shipped instruct preset, plain text completion, the
author's note and the Character's Note at depth, the persona at depth, continue, impersonate,
a group of two characters, and the chat-completion prompt manager's own layout.

Each expected string was worked out from the reference, rule by rule (noted beside it), not
copied from the builder's output.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bot.backends.base import PromptMessage
from bot.prompt import (
    CHATML,
    AuthorsNote,
    Character,
    ChatPreset,
    ContextTemplate,
    EstimateCounter,
    PromptInputs,
    build_prompt,
    load_formatting,
)
from bot.types import ChatMessage

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "sillytavern"
COUNTER = EstimateCounter()
SYSTEM = "Write Mira's next reply in a fictional chat between Mira and Sam."
MIRA = Character(
    name="Mira",
    description="{{char}} keeps the lighthouse.",
    personality="calm",
    scenario="A storm night.",
    mes_example="<START>\n{{user}}: Hello?\n{{char}}: Who goes there?",
)
CHAT = [
    ChatMessage(0, "assistant", "Mira", "The lamp turns."),
    ChatMessage(1, "user", "Sam", "Hi"),
    ChatMessage(2, "assistant", "Mira", "Hello, sailor."),
    ChatMessage(3, "user", "Sam", "Any ships?"),
]
DEFS = "Mira keeps the lighthouse.\nMira's personality: calm\nScenario: A storm night."
BASE = PromptInputs(
    character=MIRA,
    user_name="Sam",
    history=CHAT,
    mode="text",
    persona_description="Sam is a sailor.",
)


def preset(instruct: str, context: str) -> PromptInputs:
    i = load_formatting(FIXTURES / "instruct" / f"{instruct}.json").instruct
    c = load_formatting(FIXTURES / "context" / f"{context}.json").context
    assert i is not None and c is not None
    return replace(BASE, instruct=i, context=c)


# Every shipped instruct preset (with its context template, or Default where none ships)
# rendering the same small chat. The system prompt is the Neutral one; the card's examples
# are one <START> block.
PRESETS = {
    # names "force": only the example user line is named; suffix "\n\n"; the story string
    # ends "\n\n" (its trailing "{{/if}}\n\n" loses one newline to the standalone rule);
    # the last line is "\n### Response:" + "\n"
    ("Alpaca", "Alpaca"): (
        f"{SYSTEM}\n{DEFS}\nSam is a sailor.\n\n"
        "### Instruction:\nSam: Hello?\n\n"
        "### Response:\nWho goes there?\n\n"
        "### Response:\nThe lamp turns.\n\n"
        "### Instruction:\nHi\n\n"
        "### Response:\nHello, sailor.\n\n"
        "### Instruction:\nAny ships?\n\n"
        "### Response:\n",
        ("\nSam:", "\n### Instruction:", "\n### Response:", "\n### Input:"),
    ),
    # names "always"; {{trim}} glues <|im_end|> to the persona line
    ("ChatML", "ChatML"): (
        f"<|im_start|>system\n{SYSTEM}\n{DEFS}\nSam is a sailor.<|im_end|>\n"
        "<|im_start|>user\nSam: Hello?<|im_end|>\n"
        "<|im_start|>assistant\nMira: Who goes there?<|im_end|>\n"
        "<|im_start|>assistant\nMira: The lamp turns.<|im_end|>\n"
        "<|im_start|>user\nSam: Hi<|im_end|>\n"
        "<|im_start|>assistant\nMira: Hello, sailor.<|im_end|>\n"
        "<|im_start|>user\nSam: Any ships?<|im_end|>\n"
        "<|im_start|>assistant\nMira:",
        (
            "\nSam:",
            "\n<|im_end|>",
            "\n<|im_start|>user",
            "\n<|im_start|>assistant",
            "\n<|im_start|>system",
        ),
    ),
    # names "none": no names at all; the last line keeps its trailing newline
    ("Gemma 2", "Gemma 2"): (
        f"<start_of_turn>user\n{SYSTEM}\n{DEFS}\nSam is a sailor.<end_of_turn>\n"
        "<start_of_turn>user\nHello?<end_of_turn>\n"
        "<start_of_turn>model\nWho goes there?<end_of_turn>\n"
        "<start_of_turn>model\nThe lamp turns.<end_of_turn>\n"
        "<start_of_turn>user\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello, sailor.<end_of_turn>\n"
        "<start_of_turn>user\nAny ships?<end_of_turn>\n"
        "<start_of_turn>model\n",
        (
            "\nSam:",
            "\n<end_of_turn>",
            "\n<start_of_turn>user",
            "\n<start_of_turn>model",
            "\n<start_of_turn>system",
        ),
    ),
    # wrap off: sequences carry their own "\n\n"; stop strings get no leading newline
    ("Llama 3 Instruct", "Llama 3 Instruct"): (
        f"<|start_header_id|>system<|end_header_id|>\n\n{SYSTEM}\n{DEFS}\nSam is a sailor."
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nSam: Hello?"
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nMira: Who goes there?"
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nMira: The lamp turns."
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nSam: Hi"
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nMira: Hello, sailor."
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nSam: Any ships?"
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nMira:",
        (
            "\nSam:",
            "<|eot_id|>",
            "<|start_header_id|>user<|end_header_id|>",
            "<|start_header_id|>assistant<|end_header_id|>",
            "<|start_header_id|>system<|end_header_id|>",
        ),
    ),
    # the 1.12 system prefix "<|system|>" on the system prompt; Default's "***" separator
    # heads the example block and starts the chat, glued on (wrap off)
    ("Metharme", "Default"): (
        f"<|system|>{SYSTEM}\n{DEFS}\nSam is a sailor.\n***\n"
        "<|user|>Sam: Hello?<|model|>Who goes there?***\n"
        "<|model|>The lamp turns.<|user|>Hi<|model|>Hello, sailor.<|user|>Any ships?<|model|>",
        ("\nSam:", "</s>", "<|user|>", "<|model|>"),
    ),
    # the user filler message opens the chat (it starts with the greeting); the last output
    # sequence "[/INST]" borrows the output sequence's trailing space before the name
    ("Mistral V2 & V3", "Mistral V2 & V3"): (
        f"[INST] {SYSTEM}\nMira keeps the lighthouse.\ncalm\nA storm night.\nSam is a sailor."
        "[/INST] Understood.</s>"
        "[INST] Sam: Hello?[/INST] Mira: Who goes there?</s>"
        "[INST] Sam: Let's get started. Please respond based on the information and "
        "instructions provided above.[/INST] Mira: The lamp turns.</s>"
        "[INST] Sam: Hi[/INST] Mira: Hello, sailor.</s>[INST] Sam: Any ships?[/INST] Mira:",
        ("\nSam:", "[INST] ", "[/INST] ", "[/INST]"),
    ),
    ("Pygmalion", "Pygmalion"): (
        f"<|system|>{SYSTEM}\n{DEFS}\nSam is a sailor.\n"
        "<|user|>Sam: Hello?<|model|>Mira: Who goes there?"
        "<|model|>Mira: The lamp turns.<|user|>Sam: Hi<|model|>Mira: Hello, sailor."
        "<|user|>Sam: Any ships?<|model|>Mira:",
        ("\nSam:", "<|user|>", "<|model|>"),
    ),
}


@pytest.mark.parametrize(("names", "expected"), list(PRESETS.items()), ids=lambda v: str(v)[:30])
def test_every_shipped_instruct_preset(
    names: tuple[str, str], expected: tuple[str, tuple[str, ...]]
) -> None:
    built = build_prompt(preset(*names), COUNTER)
    assert (built.text, built.stop) == expected


def test_every_shipped_instruct_preset_is_covered() -> None:
    shipped = {p.stem for p in (FIXTURES / "instruct").glob("*.json")}
    assert shipped == {instruct for instruct, _ in PRESETS}


PLAIN = replace(
    BASE, instruct=None, context=ContextTemplate(), character=replace(MIRA, mes_example="")
)
PLAIN_HEAD = f"{SYSTEM}\n{DEFS}\nSam is a sailor.\n***\n"
CHATML_BASE = replace(BASE, character=replace(MIRA, mes_example=""))
CHATML_HEAD = f"<|im_start|>system\n{SYSTEM}\n{DEFS}\nSam is a sailor.<|im_end|>\n"


def turn(role: str, text: str) -> str:
    return f"<|im_start|>{role}\n{text}<|im_end|>\n"


def test_plain_text_completion_without_instruct() -> None:
    # "Name: text\n" per message; the last newline goes, then "\n" + "Mira:"
    built = build_prompt(PLAIN, COUNTER)
    assert built.text == (
        PLAIN_HEAD + "Mira: The lamp turns.\nSam: Hi\nMira: Hello, sailor.\nSam: Any ships?\nMira:"
    )
    assert built.stop == ("\nSam:",)


def test_authors_note_and_characters_note_at_the_same_depth() -> None:
    # depth 1 = before the last message; at one depth: assistant, user, system (system last);
    # a user-role injection is named like the user in a names-"always" template
    card = replace(
        MIRA,
        mes_example="",
        extensions={"depth_prompt": {"prompt": "{{char}} is wary.", "depth": 1, "role": "system"}},
    )
    inputs = replace(
        BASE, character=card, authors_note=AuthorsNote("Keep it short.", depth=1, role="user")
    )
    assert build_prompt(inputs, COUNTER).text == (
        CHATML_HEAD
        + turn("assistant", "Mira: The lamp turns.")
        + turn("user", "Sam: Hi")
        + turn("assistant", "Mira: Hello, sailor.")
        + turn("user", "Sam: Keep it short.")
        + turn("system", "Mira is wary.")
        + turn("user", "Sam: Any ships?")
        + "<|im_start|>assistant\nMira:"
    )


def test_authors_note_interval_skips_turns() -> None:
    # interval 3 with 2 user messages: not this turn
    inputs = replace(CHATML_BASE, authors_note=AuthorsNote("Keep it short.", depth=0, interval=3))
    built = build_prompt(inputs, COUNTER)
    assert "Keep it short." not in built.text
    assert "not this turn" in built.report.describe()


def test_persona_at_depth_leaves_the_story_string() -> None:
    inputs = replace(CHATML_BASE, persona_position=4, persona_depth=2)
    assert build_prompt(inputs, COUNTER).text == (
        f"<|im_start|>system\n{SYSTEM}\n{DEFS}<|im_end|>\n"
        + turn("assistant", "Mira: The lamp turns.")
        + turn("user", "Sam: Hi")
        + turn("system", "Sam is a sailor.")
        + turn("assistant", "Mira: Hello, sailor.")
        + turn("user", "Sam: Any ships?")
        + "<|im_start|>assistant\nMira:"
    )


CONTINUED = [*CHAT, ChatMessage(4, "assistant", "Mira", "None tonight, but")]


def test_continue_ends_on_the_partial_reply() -> None:
    # no suffix after the continued message, no last line; depth 0 moves to depth 1
    inputs = replace(
        CHATML_BASE,
        history=CONTINUED,
        generation="continue",
        authors_note=AuthorsNote("Keep it short.", depth=0),
    )
    assert build_prompt(inputs, COUNTER).text == (
        CHATML_HEAD
        + turn("assistant", "Mira: The lamp turns.")
        + turn("user", "Sam: Hi")
        + turn("assistant", "Mira: Hello, sailor.")
        + turn("user", "Sam: Any ships?")
        + turn("system", "Keep it short.")
        + "<|im_start|>assistant\nMira: None tonight, but"
    )


def test_continue_without_instruct_repeats_the_name_once() -> None:
    built = build_prompt(replace(PLAIN, history=CONTINUED, generation="continue"), COUNTER)
    assert built.text == (
        PLAIN_HEAD
        + "Mira: The lamp turns.\nSam: Hi\nMira: Hello, sailor.\nSam: Any ships?\n"
        + "Mira: None tonight, but"
    )


def test_impersonate_ends_with_the_users_header() -> None:
    built = build_prompt(replace(CHATML_BASE, generation="impersonate"), COUNTER)
    assert built.text.endswith(turn("user", "Sam: Any ships?") + "<|im_start|>user\nSam:")
    assert built.stop[:2] == ("\nMira:", "\nSam:")
    plain = build_prompt(replace(PLAIN, generation="impersonate"), COUNTER)
    assert plain.text.endswith("Sam: Any ships?\nSam:")
    assert plain.stop == ("\nMira:", "\nSam:")


def test_group_of_two_characters_names_the_members() -> None:
    # "force" names group members but not the user; the other member is a stop string
    history = [
        ChatMessage(0, "assistant", "Mira", "The lamp turns."),
        ChatMessage(1, "user", "Sam", "Hi all"),
        ChatMessage(2, "assistant", "Tom", "Ahoy."),
        ChatMessage(3, "user", "Sam", "Mira?"),
    ]
    inputs = replace(
        CHATML_BASE,
        history=history,
        group=("Tom",),
        instruct=replace(CHATML, names_behavior="force"),
    )
    built = build_prompt(inputs, COUNTER)
    assert built.text == (
        CHATML_HEAD
        + turn("assistant", "Mira: The lamp turns.")
        + turn("user", "Hi all")
        + turn("assistant", "Tom: Ahoy.")
        + turn("user", "Mira?")
        + "<|im_start|>assistant\nMira:"
    )
    assert built.stop[:2] == ("\nSam:", "\nTom:")


# -- chat completion, SillyTavern's Default prompt manager preset --------------------------

HEADER = [
    PromptMessage("system", SYSTEM),
    PromptMessage("system", "Sam is a sailor."),
    PromptMessage("system", "Mira keeps the lighthouse."),
    PromptMessage("system", "[Mira's personality: calm]"),
    PromptMessage("system", "[Circumstances and context of the dialogue: A storm night.]"),
]
EXAMPLES = [
    PromptMessage("system", "[Example Chat]"),
    PromptMessage("system", "Hello?", "example_user"),
    PromptMessage("system", "Who goes there?", "example_assistant"),
]
HISTORY = [
    PromptMessage("system", "[Start a new Chat]"),
    PromptMessage("assistant", "The lamp turns."),
    PromptMessage("user", "Hi"),
    PromptMessage("assistant", "Hello, sailor."),
    PromptMessage("user", "Any ships?"),
]
CHAT_BASE = replace(BASE, mode="chat", chat=ChatPreset())


def test_prompt_manager_default_order() -> None:
    assert list(build_prompt(CHAT_BASE, COUNTER).messages) == [*HEADER, *EXAMPLES, *HISTORY]


def test_prompt_manager_author_note_at_depth_zero() -> None:
    inputs = replace(CHAT_BASE, authors_note=AuthorsNote("Keep it short.", depth=0))
    assert list(build_prompt(inputs, COUNTER).messages) == [
        *HEADER,
        *EXAMPLES,
        *HISTORY,
        PromptMessage("system", "Keep it short."),
    ]


def test_prompt_manager_continue_nudge_and_impersonation() -> None:
    built = build_prompt(replace(CHAT_BASE, history=CONTINUED, generation="continue"), COUNTER)
    assert list(built.messages[-2:]) == [
        PromptMessage("assistant", "None tonight, but"),
        PromptMessage(
            "system",
            "[Continue the following message. Do not include ANY parts of the original "
            "message. Use capitalization and punctuation as if your reply is a part of the "
            "original message: None tonight, but]",
        ),
    ]
    built = build_prompt(replace(CHAT_BASE, generation="impersonate"), COUNTER)
    assert built.messages[-1] == PromptMessage(
        "system",
        "[Write your next reply from the point of view of Sam, using the chat history so far "
        "as a guideline for the writing style of Sam. Don't write as Mira or system. Don't "
        "describe actions of Mira.]",
    )
