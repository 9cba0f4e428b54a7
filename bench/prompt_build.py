"""Prompt build time: a 2,000-message chat, a 1,000-entry lorebook, an 8k context.

One build = world-info activation (the real engine) + assembly + rendering, as the engine
does per turn. Measured per mode (text completion with ChatML, chat completion with the
Default prompt manager):

* warm: the same card, presets and lorebook objects turn after turn (the chat grows by one
  message each time), so compiled key matchers and templates are reused;
* cold: every build gets a freshly loaded lorebook and freshly parsed presets, as the first
  turn after a start-up or a reload.

The tokenizer's share is the time spent inside the counter (SillyTavern's estimate).

    python -m bench.prompt_build [--builds 200] [--cold 30]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import replace
from typing import Any

from bot.prompt import EstimateCounter, PromptInputs, build_prompt
from bot.prompt.builder import activate_lore
from bot.prompt.card import Character
from bot.prompt.chat_preset import ChatPreset
from bot.prompt.lore import LoreBooks, LoreSettings, load_world
from bot.prompt.presets import CHATML, CHATML_CONTEXT, ContextTemplate, InstructTemplate
from bot.types import ChatMessage

WORDS = (
    *("harbor", "lantern", "storm", "ship", "rope", "tide", "gull", "anchor", "compass"),
    *("cliff", "reef", "current", "beacon", "mast", "sail", "hull", "deck", "cabin", "keel"),
    *("wharf", "fog", "island", "shore", "wave", "salt", "oar", "net", "crab", "pearl"),
)


class TimedCounter:
    """The estimate counter, timing itself."""

    def __init__(self) -> None:
        self.inner = EstimateCounter()
        self.seconds = 0.0

    def count(self, text: str) -> int:
        start = time.perf_counter()
        n = self.inner.count(text)
        self.seconds += time.perf_counter() - start
        return n


def world_data(n: int, rng: random.Random) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    for uid in range(n):
        keys = [f"{rng.choice(WORDS)}{uid}", rng.choice(WORDS) + "-" + rng.choice(WORDS)]
        entries[str(uid)] = {
            "uid": uid,
            "key": keys,
            "keysecondary": [],
            "content": f"Entry {uid}: " + " ".join(rng.choices(WORDS, k=60)),
            "constant": uid % 250 == 0,
            "order": rng.randint(0, 200),
            "position": rng.choice([0, 1, 4]),
            "depth": rng.randint(0, 6),
            "disable": False,
        }
    return {"entries": entries}


def history(n: int, rng: random.Random) -> list[ChatMessage]:
    out = []
    for i in range(n):
        words = " ".join(rng.choices(WORDS, k=rng.randint(15, 60)))
        if i % 40 == 0:  # now and then a message names a lore key
            words += f" {WORDS[i % len(WORDS)]}{i % 1000}"
        role = "user" if i % 2 else "assistant"
        out.append(ChatMessage(i, role, "Sam" if role == "user" else "Mira", words))
    return out


CARD = Character(
    name="Mira",
    description="{{char}} keeps the lighthouse on the northern cliff. " * 8,
    personality="calm, dry humour, protective",
    scenario="A storm night at the lighthouse; {{user}} washed ashore.",
    first_mes="The lamp turns.",
    mes_example="<START>\n{{user}}: Hello?\n{{char}}: Who goes there?\n" * 3,
)


def one(
    inputs: PromptInputs, world: Any, settings: LoreSettings, counter: TimedCounter
) -> tuple[float, float]:
    """(lore activation, assembly) seconds for one build."""
    start = time.perf_counter()
    lore = activate_lore(inputs, LoreBooks(character=(world,)), settings, counter)
    middle = time.perf_counter()
    build_prompt(replace(inputs, lore=lore), counter)
    return middle - start, time.perf_counter() - middle


def run(mode: str, builds: int, cold: int) -> None:
    rng = random.Random(7)
    data = world_data(1000, rng)
    chat = history(2000, rng)
    settings = LoreSettings(depth=4, recursive=True)
    counter = TimedCounter()
    base = PromptInputs(
        character=CARD,
        user_name="Sam",
        history=chat,
        mode=mode,  # type: ignore[arg-type]
        context_size=8192,
        max_tokens=350,
        persona_description="Sam is a sailor.",
        chat=ChatPreset(),
    )
    # warm: one set of objects, the chat growing by a message per turn
    world = load_world(data, "bench.json", name="Bench")
    one(base, world, settings, counter)
    counter.seconds = 0.0
    warm: list[tuple[float, float]] = []
    for turn in range(builds):
        text = " ".join(rng.choices(WORDS, k=20))
        grown = [*chat, ChatMessage(2000 + turn, "user", "Sam", text)]
        warm.append(one(replace(base, history=grown), world, settings, counter))
    warm_tokens = counter.seconds
    # cold: fresh lorebook and presets every time (nothing compiled yet)
    counter.seconds = 0.0
    fresh: list[tuple[float, float]] = []
    for _ in range(cold):
        world = load_world(data, "bench.json", name="Bench")
        inputs = replace(
            base,
            instruct=InstructTemplate(**{k: getattr(CHATML, k) for k in CHATML.__slots__}),
            context=ContextTemplate(story_string=CHATML_CONTEXT.story_string),
            chat=ChatPreset(),
        )
        fresh.append(one(inputs, world, settings, counter))
    cold_tokens = counter.seconds
    total_w = [a + b for a, b in warm]
    total_c = [a + b for a, b in fresh]
    print(
        f"{mode:<5} warm p50 {_ms(total_w)} (lore {_ms([a for a, _ in warm])}, assembly "
        f"{_ms([b for _, b in warm])}), p99 {_p99(total_w) * 1000:.2f} ms;  cold p50 "
        f"{_ms(total_c)} (lore {_ms([a for a, _ in fresh])}, assembly "
        f"{_ms([b for _, b in fresh])});  tokenizer share warm {warm_tokens / sum(total_w):.1%},"
        f" cold {cold_tokens / sum(total_c):.1%}"
    )


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.2f} ms"


def _p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--builds", type=int, default=200)
    parser.add_argument("--cold", type=int, default=30)
    args = parser.parse_args()
    print("chat: 2000 messages, lorebook: 1000 entries, context 8192 (350 for the reply)")
    for mode in ("text", "chat"):
        run(mode, args.builds, args.cold)


if __name__ == "__main__":
    main()
