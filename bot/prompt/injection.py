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


ROLE_BY_NUMBER: tuple[Role, ...] = ("system", "user", "assistant")  # ST's 0, 1, 2


@dataclass(frozen=True, slots=True)
class Injection:
    """One piece of text to place.

    Extension prompts at the same position (and depth and role) are joined in ``key`` order,
    as SillyTavern sorts its extension-prompt keys; ``manager`` marks a prompt-manager prompt
    with an in-chat depth, which goes before them, in ``order``. ``scan`` also feeds the
    text to the world-info scanner.
    """

    key: str
    text: str
    position: Position
    depth: int = 0
    role: Role = "system"
    order: int = 100
    scan: bool = False
    manager: bool = False


def role_of(value: object) -> Role:
    """ST's role as stored (0/1/2 or a name) → a role; anything else is ``system``."""
    if isinstance(value, str) and value in ("system", "user", "assistant"):
        return value  # type: ignore[return-value]
    if isinstance(value, int) and 0 <= value < len(ROLE_BY_NUMBER):
        return ROLE_BY_NUMBER[value]
    if isinstance(value, str) and value.isdigit():
        return role_of(int(value))
    return "system"
