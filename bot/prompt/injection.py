"""The one injection concept: author's note, depth prompts, persona, lore and summaries all
place text into the prompt the same way (SillyTavern's extension-prompt bus).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bot.types import Role


class Position(enum.IntEnum):
    """SillyTavern's extension prompt positions (the numbers are its stored values)."""

    NONE = -1
    IN_PROMPT = 0  # after the story string / character definitions ("after scenario")
    IN_CHAT = 1  # spliced into the history at ``depth`` (0 = after the last message)
    BEFORE_PROMPT = 2  # before the story string


@dataclass(frozen=True, slots=True)
class Injection:
    """One piece of text to place. ``key`` orders same-position prompts (ST sorts by key)."""

    key: str
    text: str
    position: Position
    depth: int = 0
    role: Role = "system"
    order: int = 100
    scan: bool = False  # also fed to the world-info scanner
