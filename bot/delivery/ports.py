"""The seam between delivery and a platform adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bot.types import ChatKey


class SurfaceRateLimited(Exception):
    """Raised by a Surface when the platform said 429; delivery waits and retries."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:.2f}s")
        self.retry_after = retry_after


class Surface(Protocol):
    """Where text for one destination (channel, chat, thread) appears.

    ``limit`` is the longest text one message can hold; delivery never sends longer.
    ``min_interval`` is the platform's pace for edits to one destination, in seconds.
    ``send`` returns the platform's message id. Both raise :class:`SurfaceRateLimited` on 429.
    """

    limit: int
    min_interval: float

    async def send(self, text: str) -> str: ...

    async def edit(self, message_id: str, text: str) -> None: ...


SurfaceFactory = Callable[[ChatKey], Surface]
"""An adapter's way to reach any destination of its platform (any process can serve it)."""


class ReplySink(Protocol):
    """What the engine writes one reply into: the latest full text, then the final text."""

    async def update(self, text: str) -> None: ...

    async def finish(self, text: str) -> list[str]:
        """Deliver ``text`` completely (always lands) and return the platform message ids."""
        ...
