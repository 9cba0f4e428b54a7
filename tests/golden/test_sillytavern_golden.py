"""The prompts a real SillyTavern 1.12.6 sent, reproduced byte for byte.

Every input comes from the fixture files through the project's own loaders: the card PNG, the
card-linked world file, the chat JSONL, SillyTavern's settings.json after the run (which
names the presets it applied), and the user's message. The lore is activated by the real
engine. Text completion uses SillyTavern's estimate tokenizer (ceil(chars / 3.35)).

Chat completion: SillyTavern counted that scenario with the gpt-3.5-turbo (cl100k) tokenizer,
which is why only 3 of the 4 lore entries fit its 949-token lore budget. cl100k is not
available offline, so the test counts with a calibrated estimate of 4 characters per token
(cl100k's usual ratio for English prose): with it the lore budget check cuts the same entry
(3.35 characters per token would already cut the third). Any ratio from 3.4 to 4.34 gives
SillyTavern's result (the contents are counted after macro expansion); the test checks both
ends of that range.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.prompt import EstimateCounter, build_prompt, load_card
from bot.prompt.builder import activate_lore
from bot.prompt.chatfile import import_chat_jsonl
from bot.prompt.lore import LoreBooks, load_world
from bot.prompt.model import BuiltPrompt
from bot.prompt.presets import load_formatting
from bot.prompt.st_settings import StSettings
from bot.prompt.tokens import TokenCounter
from bot.types import ChatMessage

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "sillytavern"
GOLDEN = FIXTURES / "golden"
TEXT_SCENARIOS = ["tc-chatml-seraphina", "tc-llama-3-instruct-seraphina"]


class RatioCounter:
    """ceil(characters / ratio): a calibrated stand-in for a real tokenizer."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio

    def count(self, text: str) -> int:
        return math.ceil(len(text) / self.ratio)


def build(scenario: str, counter: TokenCounter) -> tuple[BuiltPrompt, dict[str, Any]]:
    folder = GOLDEN / scenario
    settings = StSettings.load(folder / "inputs" / "settings.effective.json")
    card = load_card(FIXTURES / "cards" / "default_Seraphina.png")
    chat = import_chat_jsonl((folder / "inputs" / "chat.jsonl").read_bytes(), "chat.jsonl")
    typed = json.loads((folder / "inputs" / "scenario.json").read_text())["message"]
    history = [*chat.messages, ChatMessage(len(chat.messages), "user", settings.user_name, typed)]
    world_name = card.extensions["world"]  # the card's linked world, as in SillyTavern
    world = load_world(
        (FIXTURES / "worlds" / f"{world_name}.json").read_bytes(), "Eldoria.json", name=world_name
    )
    inputs = settings.prompt_inputs(card, history, chat_metadata=chat.metadata)
    lore = activate_lore(inputs, LoreBooks(character=(world,)), settings.lore, counter)
    built = build_prompt(replace(inputs, lore=lore), counter)
    return built, json.loads((folder / "request.json").read_text())


@pytest.mark.parametrize("scenario", TEXT_SCENARIOS)
def test_text_completion_prompt_is_sillytaverns(scenario: str) -> None:
    built, request = build(scenario, EstimateCounter())
    assert built.text == (GOLDEN / scenario / "prompt.txt").read_text(encoding="utf-8")
    assert built.text == request["prompt"]
    assert list(built.stop) == request["stop"] == request["stopping_strings"]
    assert built.report.cut == () and len(built.report.included) == 6


@pytest.mark.parametrize("ratio", [3.4, 4.0, 4.34])
def test_chat_completion_messages_are_sillytaverns(ratio: float) -> None:
    built, request = build("cc-default-seraphina", RatioCounter(ratio))
    sent = [
        {"role": m.role, "content": m.content, **({"name": m.name} if m.name else {})}
        for m in built.messages
    ]
    assert sent == request["messages"]
    assert built.stop == ()


def test_the_estimate_tokenizer_would_cut_a_third_lore_entry_in_chat_mode() -> None:
    # why the chat-completion golden needs a cl100k-like counter (see the module docstring)
    built, request = build("cc-default-seraphina", EstimateCounter())
    assert built.messages[1].content != request["messages"][1]["content"]
    assert built.messages[1].content in request["messages"][1]["content"]


@pytest.mark.parametrize("scenario", TEXT_SCENARIOS)
def test_settings_use_the_named_presets_unchanged(scenario: str) -> None:
    """settings.effective.json holds exactly the preset files SillyTavern applied."""
    folder = GOLDEN / scenario
    settings = StSettings.load(folder / "inputs" / "settings.effective.json")
    named = json.loads((folder / "inputs" / "scenario.json").read_text())
    instruct = load_formatting(FIXTURES / "instruct" / f"{named['instruct']}.json").instruct
    context = load_formatting(FIXTURES / "context" / f"{named['context']}.json").context
    sysprompt = load_formatting(FIXTURES / "sysprompt" / "Neutral - Chat.json").sysprompt
    assert settings.instruct == instruct
    assert context is not None and settings.context.story_string == context.story_string
    assert sysprompt is not None and settings.sysprompt.content == sysprompt.content


def test_chat_completion_golden_with_the_real_cl100k_tokenizer() -> None:
    # SillyTavern counted this scenario with gpt-3.5-turbo's tokenizer; ours, offline
    from bot.prompt.tokenizer_tiktoken import TiktokenCounter
    from bot.prompt.tokenizers import Tokenizers

    counter = Tokenizers().counter_for("golden", "openai", "gpt-3.5-turbo")
    assert isinstance(counter, TiktokenCounter)
    built, request = build("cc-default-seraphina", counter)
    sent = [
        {"role": m.role, "content": m.content, **({"name": m.name} if m.name else {})}
        for m in built.messages
    ]
    assert sent == request["messages"]
