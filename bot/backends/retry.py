"""Retry a generation, but only while nothing has reached the user.

Once the first event is out, a failure propagates: the engine keeps the partial text and
shows the error, because repeating the request would repeat (or contradict) what the user
already read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from bot.backends.base import (
    Backend,
    GenerationRequest,
    ModelCatalog,
    ModelInfo,
    StreamEvent,
    TokenCountingBackend,
)
from bot.errors import BackendError, BackendRateLimited, BackendUnavailable

_log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` counts the first try. A rate limit asking for longer than ``max_wait``
    seconds is not waited out: a chat user would rather see the error now."""

    attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 8.0
    max_wait: float = 30.0

    def delay(self, attempt: int, error: BackendError) -> float | None:
        """Seconds before try ``attempt + 1``, or ``None`` to give up."""
        if attempt >= self.attempts:
            return None
        if isinstance(error, BackendRateLimited) and error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_wait else None
        return min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))


class RetryingBackend:
    """Wraps any :class:`Backend`; retries rate limits and unavailability before output."""

    def __init__(
        self, inner: Backend, policy: RetryPolicy | None = None, *, sleep: Sleep = asyncio.sleep
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self._policy = policy or RetryPolicy()
        self._sleep = sleep

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        attempt = 1
        while True:
            events = self.inner.stream(request)
            started = False
            try:
                async for event in events:
                    started = True
                    yield event
                return
            except (BackendRateLimited, BackendUnavailable) as exc:
                delay = None if started else self._policy.delay(attempt, exc)
                if delay is None:
                    raise
                _log.info(
                    "%s: %s; retrying in %.1fs (try %d of %d)",
                    self.name,
                    exc.message,
                    delay,
                    attempt + 1,
                    self._policy.attempts,
                )
            finally:
                # close the inner stream (and its HTTP response) on every way out
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    await aclose()
            await self._sleep(delay)
            attempt += 1

    async def list_models(self) -> list[ModelInfo]:
        if not isinstance(self.inner, ModelCatalog):
            raise BackendError("this backend cannot list its models", backend=self.name)
        return await self.inner.list_models()

    async def count_tokens(self, text: str) -> int:
        """The backend's own count (its server's endpoint); never retried, as a count is
        asked while building a prompt and a local estimate can stand in."""
        if not isinstance(self.inner, TokenCountingBackend):
            raise BackendError(
                "this backend cannot count tokens",
                backend=self.name,
                hint="token counts are estimated locally",
            )
        return await self.inner.count_tokens(text)
