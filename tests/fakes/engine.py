"""Hand-written fakes for engine tests: a scripted backend and a recording surface."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from bot.backends.base import (
    Finish,
    FinishReason,
    GenerationRequest,
    StreamEvent,
    TextDelta,
    Usage,
)
from bot.delivery.ports import Surface
from bot.types import ChatKey

Step = StreamEvent | Exception | float  # a float sleeps that many seconds


def words(text: str, delay: float = 0.0) -> list[Step]:
    """A reply streamed word by word, then usage and a normal finish."""
    steps: list[Step] = []
    for i, word in enumerate(text.split(" ")):
        if delay:
            steps.append(delay)
        steps.append(TextDelta(word if i == 0 else " " + word))
    return [*steps, Usage(10, len(text.split())), Finish(FinishReason.STOP, "stop")]


class ScriptedBackend:
    """Plays one script per request, in order; records every request it was sent."""

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.requests: list[GenerationRequest] = []
        self.scripts: deque[Sequence[Step]] = deque()
        self.closed = 0
        self.started = asyncio.Event()  # set when a request arrives

    def enqueue(self, *scripts: Sequence[Step]) -> None:
        self.scripts.extend(scripts)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        self.requests.append(request)
        self.started.set()
        script = self.scripts.popleft() if self.scripts else words("ok")
        try:
            for step in script:
                if isinstance(step, float):
                    await asyncio.sleep(step)
                elif isinstance(step, Exception):
                    raise step
                else:
                    yield step
        finally:
            self.closed += 1


@dataclass
class RecordingSurface:
    """A Surface that keeps what a user would see: message id -> current text."""

    limit: int = 2000
    min_interval: float = 0.0
    messages: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    edits: int = 0

    async def send(self, text: str) -> str:
        assert 0 < len(text) <= self.limit
        mid = str(len(self.order) + 1)
        self.messages[mid] = text
        self.order.append(mid)
        return mid

    async def edit(self, message_id: str, text: str) -> None:
        assert 0 < len(text) <= self.limit
        self.messages[message_id] = text
        self.edits += 1

    def visible(self) -> list[str]:
        return [self.messages[m] for m in self.order]


class Surfaces:
    """One RecordingSurface per channel, so tests can see what each channel shows."""

    def __init__(self, limit: int = 2000) -> None:
        self.by_key: dict[ChatKey, RecordingSurface] = {}
        self.limit = limit

    def __call__(self, key: ChatKey) -> Surface:
        return self.by_key.setdefault(key, RecordingSurface(self.limit))
