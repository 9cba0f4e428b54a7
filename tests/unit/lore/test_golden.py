"""Real SillyTavern 1.12.6 runs: the same entries, in the same order, cut at the same place.

Expectations are read from SillyTavern's own world-info log (``wi_trace.txt``): its budget,
and per scan the entries it reported as "activation successful", in that order, and whether
"budget … reached" stopped it. The placed text is checked against the prompt it sent.

Token counts: the text-completion runs used ST's estimate (ceil(chars / 3.35)), which is our
:class:`EstimateCounter`. The chat-completion run counted lore with the gpt-3.5-turbo (cl100k)
tokenizer through ST's ``/api/tokenizers/openai/count``, which wraps the text in a system
message: cl100k(text) + 7 (3 per message, 1 for "system", 3 padding), minus 1 as its
client-side counter starts at -1. The cl100k vocabulary cannot be downloaded here, so
:class:`Cl100kShaped` stands in for it with a chars-per-token ratio; the run is checked for the
whole band of ratios English prose has in cl100k (3.6–4.3), and the lore's own bounds are
documented: the cut lands on the fourth entry for any ratio between 3.43 and 4.39.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.prompt.lore import LoreBooks, LoreSettings, LoreState, activate, load_world, scan_texts
from bot.prompt.tokens import EstimateCounter, TokenCounter
from bot.types import ChatMessage
from tests.unit.lore.helpers import FIXTURES

GOLDEN = FIXTURES / "golden"
SCENARIOS = sorted(p.name for p in GOLDEN.iterdir() if (p / "wi_trace.txt").exists())
CL100K_RATIOS = (3.6, 4.0, 4.3)
CASES = [(s, r) for s in SCENARIOS for r in (CL100K_RATIOS if s.startswith("cc-") else (None,))]


class Cl100kShaped:
    """ST's OpenAI-side lore count with a chars-per-token stand-in for cl100k."""

    def __init__(self, chars_per_token: float) -> None:
        self.ratio = chars_per_token

    def count(self, text: str) -> int:
        return 0 if not text else math.ceil(len(text) / self.ratio) + 6


@dataclass
class Scan:
    messages: int
    context: int
    budget: int
    successful: list[int]
    cut: bool


def parse_trace(path: Path) -> list[Scan]:
    scans: list[Scan] = []
    for block in path.read_text().split("--- START WI SCAN")[1:]:
        sizes = re.search(r"Context size: (\d+); WI budget: (\d+)", block)
        assert sizes is not None
        scans.append(
            Scan(
                messages=int(re.search(r"\(on (\d+) messages\)", block).group(1)),  # type: ignore[union-attr]
                context=int(sizes.group(1)),
                budget=int(sizes.group(2)),
                successful=[
                    int(u) for u in re.findall(r"Entry (\d+) activation successful", block)
                ],
                cut="budget of" in block,
            )
        )
    return scans


def chat(scenario: str) -> list[ChatMessage]:
    inputs = GOLDEN / scenario / "inputs"
    lines = [json.loads(line) for line in (inputs / "chat.jsonl").read_text().splitlines()]
    history = [
        ChatMessage(
            id=i, role="user" if m["is_user"] else "assistant", name=m["name"], text=m["mes"]
        )
        for i, m in enumerate(lines[1:])  # line 0 is the chat header
    ]
    typed = json.loads((inputs / "scenario.json").read_text())["message"]
    return [*history, ChatMessage(id=len(history), role="user", name="Alex", text=typed)]


def prompt_context(scenario: str) -> int:
    """ST's "max context" for the budget: context size minus the response length."""
    s = json.loads((GOLDEN / scenario / "inputs" / "settings.effective.json").read_text())
    if scenario.startswith("cc-"):
        oai = s["oai_settings"]
        return int(oai["openai_max_context"]) - int(oai["openai_max_tokens"])
    return int(s["max_context"]) - int(s["amount_gen"])


def sent_prompt(scenario: str) -> str:
    request = json.loads((GOLDEN / scenario / "request.json").read_text())
    if "prompt" in request:
        return str(request["prompt"])
    return "\n\n".join(m["content"] for m in request["messages"])


@pytest.mark.parametrize(("scenario", "ratio"), CASES)
def test_golden_scenarios_activate_like_sillytavern(scenario: str, ratio: float | None) -> None:
    counter: TokenCounter = EstimateCounter() if ratio is None else Cl100kShaped(ratio)
    settings_file = GOLDEN / scenario / "inputs" / "settings.effective.json"
    settings = LoreSettings.from_st(json.loads(settings_file.read_text()))
    eldoria = FIXTURES / "worlds" / "Eldoria.json"
    book = load_world(eldoria.read_bytes(), str(eldoria))
    messages = chat(scenario)
    checked = 0
    for expected in parse_trace(GOLDEN / scenario / "wi_trace.txt"):
        if expected.messages > len(messages):
            continue  # a scan after the reply, whose text the fixtures do not hold
        assert expected.context == prompt_context(scenario)
        history = messages[: expected.messages]
        result = activate(
            LoreBooks(character=(book,)),
            scan_texts(history, settings),
            settings,
            max_context=expected.context,
            counter=counter,
            state=LoreState(),
            chat_length=len(history),
            rng=random.Random(0),
            names=("Alex", "Seraphina"),
        )
        assert result.budget == expected.budget
        assert [uid for _, uid in result.activated] == expected.successful
        assert result.overflowed == expected.cut
        checked += 1
        if expected.messages == len(messages):
            assert result.before and result.before in sent_prompt(scenario)
    assert checked


def test_chat_completion_cut_is_the_shadowfang_entry() -> None:
    scenario = "cc-default-seraphina"
    settings_file = GOLDEN / scenario / "inputs" / "settings.effective.json"
    settings = LoreSettings.from_st(json.loads(settings_file.read_text()))
    book = load_world((FIXTURES / "worlds" / "Eldoria.json").read_bytes(), "Eldoria.json")
    result = activate(
        [book],
        scan_texts(chat(scenario), settings),
        settings,
        max_context=3795,
        counter=Cl100kShaped(4.0),
        state=LoreState(),
        chat_length=6,
        rng=random.Random(0),
        names=("Alex", "Seraphina"),
    )
    request = json.loads((GOLDEN / scenario / "request.json").read_text())
    assert request["messages"][1]["content"] == result.before  # the worldInfoBefore message
    assert any(line.startswith("Eldoria#1 (shadowfang) cut: budget 949") for line in result.trace)
