"""Chat completion through SillyTavern's prompt manager: presets, order, custom prompts,
names, squashing, a backend's role rules, prefill and continue, budgets; and a model's own
chat template as the text renderer."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.backends.base import PromptMessage
from bot.errors import ConfigError
from bot.prompt import (
    AuthorsNote,
    Character,
    ChatPreset,
    EstimateCounter,
    PromptInputs,
    RoleRules,
    build_prompt,
)
from bot.prompt.chat_preset import DEFAULT_ORDER, NamesBehavior
from bot.prompt.jinja import ChatTemplate, ChatTemplateError
from bot.prompt.presets import PresetError
from bot.types import ChatMessage

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "sillytavern"
COUNTER = EstimateCounter()
MIRA = Character(name="Mira", description="{{char}} keeps the lighthouse.")
CHAT = [
    ChatMessage(0, "assistant", "Mira", "The lamp turns."),
    ChatMessage(1, "user", "Sam", "Hi"),
]
DEFAULT = ChatPreset.from_st(json.loads((FIXTURES / "openai" / "Default.json").read_text()))


def build(**kw: Any) -> list[PromptMessage]:
    base = PromptInputs(character=MIRA, user_name="Sam", history=CHAT, chat=DEFAULT)
    return list(build_prompt(replace(base, **kw), COUNTER).messages)


def contents(messages: list[PromptMessage]) -> list[str]:
    return [m.content for m in messages]


MAIN = "Write Mira's next reply in a fictional chat between Mira and Sam."


def test_default_preset_uses_the_global_order() -> None:
    assert DEFAULT.order == DEFAULT_ORDER  # character_id 100001
    assert contents(build()) == [
        MAIN,
        "Mira keeps the lighthouse.",
        "[Start a new Chat]",
        "The lamp turns.",
        "Hi",
    ]
    assert DEFAULT.max_context == 4095 and DEFAULT.names_behavior == NamesBehavior.DEFAULT


def with_prompts(*prompts: dict[str, Any], order: list[tuple[str, bool]]) -> ChatPreset:
    data = json.loads((FIXTURES / "openai" / "Default.json").read_text())
    data["prompts"] += list(prompts)
    data["prompt_order"] = [
        {"character_id": 100001, "order": [{"identifier": i, "enabled": e} for i, e in order]}
    ]
    return ChatPreset.from_st(data, "test preset")


def test_order_and_switches_decide_the_messages() -> None:
    preset = with_prompts(
        {"identifier": "style", "name": "Style", "role": "user", "content": "Be terse, {{user}}."},
        order=[("chatHistory", True), ("style", True), ("charDescription", False), ("main", True)],
    )
    assert build(chat=preset) == [
        PromptMessage("system", "[Start a new Chat]"),
        PromptMessage("assistant", "The lamp turns."),
        PromptMessage("user", "Hi"),
        PromptMessage("user", "Be terse, Sam."),
        PromptMessage("system", MAIN),
    ]


def test_in_chat_prompts_and_extension_prompts_share_depths() -> None:
    preset = with_prompts(
        {
            "identifier": "deep",
            "role": "assistant",
            "content": "(thinking)",
            "injection_position": 1,
            "injection_depth": 1,
        },
        order=[("main", True), ("chatHistory", True), ("deep", True)],
    )
    note = AuthorsNote("Storm tonight.", depth=1, role="assistant")
    assert contents(build(chat=preset, authors_note=note)) == [
        MAIN,
        "[Start a new Chat]",
        "The lamp turns.",
        "(thinking)\nStorm tonight.",  # manager prompts first, then extension prompts
        "Hi",
        # a marker missing from the order is still sent, at the end, as SillyTavern does
        "Mira keeps the lighthouse.",
    ]


def test_relative_author_note_sits_around_main_even_when_main_is_off() -> None:
    preset = with_prompts(order=[("main", False), ("chatHistory", True)])
    before = AuthorsNote("Before.", position=2)
    after = AuthorsNote("After.", position=0)
    assert contents(build(chat=preset, authors_note=before))[0] == "Before."
    assert contents(build(chat=preset, authors_note=after))[0] == "After."
    assert MAIN not in contents(build(chat=preset))


def test_card_overrides_with_original_unless_forbidden() -> None:
    card = replace(
        MIRA,
        system_prompt="{{original}} Stay gentle.",
        post_history_instructions="Reply in one line.",
    )
    messages = contents(build(character=card))
    assert messages[0] == MAIN + " Stay gentle."
    assert messages[-1] == "Reply in one line."
    data = json.loads((FIXTURES / "openai" / "Default.json").read_text())
    data["prompts"][0]["forbid_overrides"] = True
    locked = ChatPreset.from_st(data)
    assert contents(build(character=card, chat=locked))[0] == MAIN


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (NamesBehavior.NONE, ("Hi", "Hello", "")),
        (NamesBehavior.DEFAULT, ("Hi", "Bob Ray: Hello", "")),
        (NamesBehavior.CONTENT, ("Sam: Hi", "Bob Ray: Hello", "")),
        (NamesBehavior.COMPLETION, ("Hi", "Hello", "Bob_Ray")),
    ],
)
def test_names_behaviour(names: NamesBehavior, expected: tuple[str, str, str]) -> None:
    history = [*CHAT, ChatMessage(2, "user", "Bob Ray", "Hello")]
    messages = build(history=history, chat=replace(DEFAULT, names_behavior=names))
    assert (messages[-2].content, messages[-1].content, messages[-1].name) == expected


def test_squashing_joins_system_messages_but_not_the_chat_marker() -> None:
    messages = build(chat=replace(DEFAULT, squash_system_messages=True))
    assert messages[:2] == [
        PromptMessage("system", MAIN + "\nMira keeps the lighthouse."),
        PromptMessage("system", "[Start a new Chat]"),
    ]


def test_role_rules_of_a_strict_backend() -> None:
    rules = RoleRules(system=False, alternate=True, user_first=True, names=False)
    messages = build(
        role_rules=rules, chat=replace(DEFAULT, names_behavior=NamesBehavior.COMPLETION)
    )
    assert messages == [
        PromptMessage("user", MAIN + "\n\nMira keeps the lighthouse.\n\n[Start a new Chat]"),
        PromptMessage("assistant", "Mira: The lamp turns."),
        PromptMessage("user", "Sam: Hi"),
    ]
    lead = build(role_rules=RoleRules(system_first_only=True, user_first=True))
    assert [m.role for m in lead] == ["system", "system", "system", "user", "assistant", "user"]
    assert lead[3] == PromptMessage("user", "[Start a new chat]")


def test_prefill_where_the_backend_takes_one() -> None:
    preset = replace(DEFAULT, assistant_prefill="*Mira nods*", assistant_impersonation="*Sam*")
    assert build(chat=preset)[-1] == PromptMessage("assistant", "*Mira nods*")
    assert build(chat=preset, generation="impersonate")[-1] == PromptMessage("assistant", "*Sam*")
    assert build(chat=preset, role_rules=RoleRules(prefill=False))[-1].role == "user"


def test_continue_prefill_sends_the_partial_reply_last() -> None:
    history = [*CHAT, ChatMessage(2, "assistant", "Mira", "Well,")]
    preset = replace(DEFAULT, continue_prefill=True, assistant_prefill="Sure")
    assert build(chat=preset, history=history, generation="continue")[-1] == PromptMessage(
        "assistant", "Sure\n\nWell,"
    )
    # without prefill support the nudge is sent instead
    nudged = build(
        chat=preset, history=history, generation="continue", role_rules=RoleRules(prefill=False)
    )
    assert nudged[-1].content.startswith("[Continue the following message")


def test_mandatory_prompts_over_budget_are_an_error() -> None:
    card = replace(MIRA, description="lore " * 5000)
    with pytest.raises(ConfigError, match="mandatory prompts"):
        build(character=card, context_size=4095, max_tokens=300)


def test_bad_chat_presets_name_the_field() -> None:
    with pytest.raises(PresetError, match="names_behavior"):
        ChatPreset.from_st({"names_behavior": 7})
    with pytest.raises(PresetError, match=r"prompts\[x\]: role"):
        ChatPreset.from_st({"prompts": [{"identifier": "x", "role": "narrator"}]})
    with pytest.raises(PresetError, match="prompt_order"):
        ChatPreset.from_st({"prompt_order": [{"character_id": 100001, "order": [{"x": 1}]}]})
    legacy = ChatPreset.from_st({"prompt_order": [{"character_id": 100000, "order": []}]})
    assert legacy.order == DEFAULT_ORDER  # no global order: SillyTavern's default one


CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_models_own_chat_template_renders_the_messages() -> None:
    template = ChatTemplate.from_props({"chat_template": CHATML_TEMPLATE, "bos_token": "<s>"})
    base = PromptInputs(character=MIRA, user_name="Sam", history=CHAT, chat=DEFAULT)
    built = build_prompt(replace(base, mode="text", renderer=template), COUNTER)
    assert built.mode == "text"
    assert built.text == (
        f"<|im_start|>system\n{MAIN}<|im_end|>\n"
        "<|im_start|>system\nMira keeps the lighthouse.<|im_end|>\n"
        "<|im_start|>system\n[Start a new Chat]<|im_end|>\n"
        "<|im_start|>assistant\nThe lamp turns.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_chat_templates_are_sandboxed_and_errors_are_named() -> None:
    with pytest.raises(ChatTemplateError, match="no chat_template"):
        ChatTemplate.from_props({})
    with pytest.raises(ChatTemplateError, match="chat template"):
        ChatTemplate("{% for %}")
    escape = ChatTemplate("{{ messages.__class__.__mro__ }}")
    with pytest.raises(ChatTemplateError):
        escape.render([PromptMessage("user", "x")])
    refuse = ChatTemplate("{{ raise_exception('only user and assistant roles') }}")
    with pytest.raises(ChatTemplateError, match="only user and assistant"):
        refuse.render([])
