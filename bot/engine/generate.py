"""One generation: stream from a backend while keeping the channel lock alive.

The stream runs in its own task so that a stop (local, or requested by another process
through Redis and seen on lock renewal) cancels just the stream; what arrived is kept.
Reasoning a model writes inline (``<think>…</think>``) is split from the reply as it streams
and joins the backend's own reasoning deltas: ``on_text`` only ever sees reply text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.backends.base import (
    Backend,
    Finish,
    GenerationRequest,
    ReasoningDelta,
    Status,
    TextDelta,
    Usage,
)
from bot.errors import BackendError, LockLost, StateError
from bot.prompt.reasoning import ReasoningSplitter

_log = logging.getLogger(__name__)

Renew = Callable[[], Awaitable[bool]]
OnText = Callable[[str], Awaitable[None]]

THINKING = "💭 thinking…"  # shown while only reasoning has arrived


@dataclass(slots=True)
class Outcome:
    text: str = ""
    reasoning: str = ""
    finish: str = ""
    raw_finish: str = ""
    usage: Usage | None = None
    error: BackendError | None = None
    stopped: bool = False
    lost: LockLost | None = None
    started: float = field(default_factory=time.perf_counter)
    first_token: float = 0.0
    ended: float = 0.0

    @property
    def partial(self) -> bool:
        return self.stopped or self.error is not None or self.lost is not None

    def timing(self) -> dict[str, int]:
        first = self.first_token or self.ended
        return {
            "first_token_ms": round((first - self.started) * 1000),
            "total_ms": round((self.ended - self.started) * 1000),
        }


class Generation:
    """Runs one stream; :meth:`stop` may be called from anywhere in the process."""

    def __init__(
        self,
        backend: Backend,
        request: GenerationRequest,
        on_text: OnText,
        *,
        renew: Renew,
        renew_every: float,
        prefix: str = "",
        stops: tuple[str, ...] = (),
        reasoning: tuple[str, str] | None = None,
        on_status: OnText | None = None,
    ) -> None:
        """``reasoning`` is the (prefix, suffix) a model writes its reasoning between; it is
        split only from a fresh reply, not from a continuation. ``on_status`` shows progress
        notes (queue position, thinking) instead of reply text; default ``on_text``."""
        self._backend = backend
        self._request = request
        self._on_text = on_text
        self._renew = renew
        self._renew_every = renew_every
        self._prefix = prefix
        self._stops = stops
        self._longest_stop = max((len(s) for s in stops), default=0)
        self._splitter = ReasoningSplitter(*reasoning) if reasoning and not prefix else None
        self._on_status = on_status or on_text
        self._thinking_shown = False
        self._cut = False
        self._task: asyncio.Task[None] | None = None
        self.outcome = Outcome(text=prefix)

    def stop(self) -> None:
        self.outcome.stopped = True
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> Outcome:
        out = self.outcome
        self._task = asyncio.create_task(self._consume())
        keepalive = asyncio.create_task(self._keepalive())
        try:
            if out.stopped:  # stopped before it started
                self._task.cancel()
            await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being shut down, not stopped
        finally:
            keepalive.cancel()
            self._task.cancel()
            await asyncio.gather(keepalive, self._task, return_exceptions=True)
            if self._splitter is not None and not self._cut:
                tail = self._splitter.finish()  # text held back in case it was a marker
                out.reasoning += tail.reasoning
                self._add_reply(tail.reply)
            out.ended = time.perf_counter()
        return out

    def _add_reply(self, text: str) -> bool:
        """Append reply text; True when it reached a stop string (the text is cut there)."""
        out = self.outcome
        if not text:
            return False
        # only the tail can hold a new stop string: keeps this O(delta)
        start = max(len(self._prefix), len(out.text) - self._longest_stop)
        out.text += text
        cut = cut_at_stop(out.text, self._stops, start)
        if cut is None:
            return False
        out.text, out.finish, self._cut = cut, "stop_sequence", True
        return True

    async def _consume(self) -> None:
        out = self.outcome
        stream = self._backend.stream(self._request)
        try:
            async for event in stream:
                if isinstance(event, TextDelta):
                    if not out.first_token:
                        out.first_token = time.perf_counter()
                    text = event.text
                    if self._splitter is not None:
                        split = self._splitter.feed(text)
                        text = split.reply
                        if split.reasoning:
                            await self._reasoned(split.reasoning)
                    if self._add_reply(text):
                        await self._on_text(out.text)
                        return
                    if text:
                        await self._on_text(out.text)
                elif isinstance(event, ReasoningDelta):
                    if not out.first_token:
                        out.first_token = time.perf_counter()
                    await self._reasoned(event.text)
                elif isinstance(event, Usage):
                    out.usage = event
                elif isinstance(event, Finish):
                    out.finish, out.raw_finish = event.reason.value, event.raw
                elif isinstance(event, Status) and not out.text:
                    await self._on_status(f"⏳ {event.text}")
        except BackendError as exc:
            _log.warning("backend %s failed: %s (%s)", self._backend.name, exc, exc.detail)
            out.error = exc
        finally:
            # closing the generator closes the HTTP stream (and runs a native abort)
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _reasoned(self, text: str) -> None:
        self.outcome.reasoning += text
        if not self._thinking_shown and len(self.outcome.text) == len(self._prefix):
            self._thinking_shown = True  # once: the reasoning itself is not streamed
            await self._on_status(THINKING)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self._renew_every)
            try:
                if await self._renew():
                    self.stop()
                    return
            except LockLost as exc:
                self.outcome.lost = exc
                if self._task is not None:
                    self._task.cancel()
                return
            except StateError as exc:
                # A Redis blip: keep generating; the commit will tell whether we still own it.
                _log.warning("could not renew the channel lock: %s", exc)


def cut_at_stop(text: str, stops: tuple[str, ...], start: int = 0) -> str | None:
    """Text before the first stop string the backend did not honour, or None."""
    best = -1
    for s in stops:
        if not s:
            continue
        i = text.find(s, start)
        if i != -1 and (best == -1 or i < best):
            best = i
    return None if best == -1 else text[:best]
