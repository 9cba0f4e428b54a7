"""Example dialogue (``mes_example``): split into blocks and into turns, as SillyTavern does."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.types import Role

_START = re.compile(r"<START>", re.IGNORECASE)


def split_blocks(examples: str, heading: str) -> list[str]:
    """``parseMesExamples``: one string per ``<START>`` block, each ``heading + block + "\\n"``
    (a missing leading ``<START>`` is assumed)."""
    if not examples or examples == "<START>":
        return []
    if not examples.startswith("<START>"):
        examples = "<START>\n" + examples.strip()
    return [f"{heading}{block.strip()}\n" for block in _START.split(examples)[1:]]


@dataclass(frozen=True, slots=True)
class ExampleTurn:
    """One example message: ``name`` is ``example_user`` or ``example_assistant``."""

    name: str
    text: str

    @property
    def role(self) -> Role:
        return "user" if self.name == "example_user" else "assistant"


def split_turns(block: str, user: str, char: str) -> list[ExampleTurn]:
    """``parseExampleIntoIndividual``: the block's first line (its heading) is skipped; a turn
    starts at a line beginning ``User:`` or ``Char:`` and runs until the other speaker's line;
    the speaker's ``Name:`` is removed once and the text trimmed. Lines before the first
    speaker line join the first turn."""
    lines = block.split("\n")
    turns: list[ExampleTurn] = []
    current: list[str] = []
    speaker = ""  # "user", "char" or ""

    def flush(who: str) -> None:
        name, label = (user, "example_user") if who == "user" else (char, "example_assistant")
        turns.append(ExampleTurn(label, "\n".join(current).replace(name + ":", "", 1).strip()))
        current.clear()

    for line in lines[1:]:
        if line.startswith(user + ":"):
            if speaker == "char":
                flush("char")
            speaker = "user"
        elif line.startswith(char + ":"):
            if speaker == "user":
                flush("user")
            speaker = "char"
        current.append(line)
    if speaker:
        flush(speaker)
    return turns
