"""One reply streamed to one Surface: coalesced, paced frames, and a final text that lands.

The engine calls :meth:`Delivery.update` with the whole text so far, as often as tokens come;
it returns at once. One background flusher sends the first message as soon as the destination
allows, then edits at the :class:`~bot.delivery.pacer.Pacer`'s pace, each time with only the
latest text. A text longer than ``surface.limit`` is split (:mod:`bot.delivery.split`): the
parts before the last are frozen as full messages and the rest continues in a new message.

:meth:`Delivery.finish` stops the flusher and lands every part, retrying rate limits and errors
a bounded number of times. A Surface cannot delete, so when the final text has fewer parts than
messages already shown (the text shrank), the extra messages are edited to the placeholder.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from types import TracebackType

from bot.delivery.pacer import Pacer
from bot.delivery.ports import Surface, SurfaceRateLimited
from bot.delivery.split import Part, split_parts

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Message:
    id: str
    shown: str  # what the platform shows now


class Delivery:
    """A :class:`~bot.delivery.ports.ReplySink` for one reply on one destination.

    ``destination`` keys the shared ``pacer`` (e.g. the channel's ``ChatKey.tag()``, or a
    webhook id when the platform paces that separately). ``placeholder`` stands in for an
    empty final text; with ``placeholder=""`` an empty reply sends nothing and returns ``[]``.
    At :meth:`finish` each part gets ``max_tries`` attempts: a 429 waits its ``retry_after``,
    other errors wait ``error_backoff`` doubling per try. A wait longer than ``max_wait`` is
    not taken: :class:`SurfaceRateLimited` is raised at once so the engine can report it.

    Call :meth:`finish`, or :meth:`close` to abandon the reply (also ``async with``).
    """

    def __init__(
        self,
        surface: Surface,
        pacer: Pacer,
        destination: str,
        *,
        placeholder: str = "…",
        max_tries: int = 5,
        max_wait: float = 120.0,
        error_backoff: float = 1.0,
    ) -> None:
        if max_tries < 1:
            raise ValueError("max_tries must be at least 1")
        self._surface = surface
        self._pacer = pacer
        self._destination = destination
        self._placeholder = placeholder
        self._max_tries = max_tries
        self._max_wait = max_wait
        self._error_backoff = error_backoff
        self._latest = ""
        self._pending = asyncio.Event()
        self._op = asyncio.Lock()  # held around each network call, so stopping never cuts one
        self._messages: list[_Message] = []
        self._frozen: list[Part] = []
        self._frozen_source = ""  # the text the frozen parts were cut from, up to their end
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def message_ids(self) -> list[str]:
        """The platform ids of the messages shown so far, in order (also after a failure)."""
        return [message.id for message in self._messages]

    async def __aenter__(self) -> Delivery:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def update(self, text: str) -> None:
        """Record the latest full text; the flusher shows it when the pace allows."""
        if self._closed:
            raise RuntimeError("update() after finish() or close()")
        self._latest = text
        self._pending.set()
        if self._flusher is None:
            self._flusher = asyncio.create_task(
                self._flush_loop(), name=f"delivery:{self._destination}"
            )
            self._flusher.add_done_callback(_report_crash)

    async def finish(self, text: str) -> list[str]:
        """Stop streaming, land ``text`` completely, return the message ids in order."""
        if self._closed:
            raise RuntimeError("finish() after finish() or close()")
        self._closed = True
        await self._stop_flusher()
        target = self._plan(text)
        if not target and self._placeholder:
            target = [self._placeholder]
        if self._placeholder:
            target += [self._placeholder] * (len(self._messages) - len(target))
        elif len(self._messages) > len(target):
            stale = len(self._messages) - len(target)
            log.warning("%s: %d stale message(s) left as shown", self._destination, stale)
        for index, want in enumerate(target):
            await self._land(index, want)
        return self.message_ids

    async def close(self) -> None:
        """Stop the flusher without a final frame (the reply was abandoned). Idempotent."""
        self._closed = True
        await self._stop_flusher()

    async def _stop_flusher(self) -> None:
        task, self._flusher = self._flusher, None
        if task is None or task.done():
            return
        async with self._op:  # cancelling a call in flight could lose its id, then send twice
            task.cancel()
        # asyncio.wait does not raise the task's CancelledError, so our own cancellation still
        # propagates; a crash was already logged by _report_crash.
        await asyncio.wait([task])

    def _plan(self, text: str) -> list[str]:
        """The message texts ``text`` needs; parts before the last are frozen for later frames."""
        limit = self._surface.limit
        if self._frozen and text.startswith(self._frozen_source):
            last = self._frozen[-1]
            parts = self._frozen + split_parts(text, limit, start=last.end, fence=last.fence)
        else:  # first frame, or the text changed before the frozen end: cut it afresh
            parts = split_parts(text, limit)
        self._frozen = parts[:-1]
        self._frozen_source = text[: self._frozen[-1].end] if self._frozen else ""
        return [part.text for part in parts]

    def _next_step(self, target: list[str]) -> int | None:
        """The first message index whose shown text differs from ``target``, if any."""
        for index, want in enumerate(target):
            if index >= len(self._messages) or self._messages[index].shown != want:
                return index
        return None

    async def _apply(self, index: int, text: str) -> None:
        if index < len(self._messages):
            await self._surface.edit(self._messages[index].id, text)
            self._messages[index].shown = text
        else:
            message_id = await self._surface.send(text)
            self._messages.append(_Message(message_id, text))

    async def _flush_loop(self) -> None:
        interval = self._surface.min_interval
        while True:
            await self._pending.wait()
            self._pending.clear()
            if self._next_step(self._plan(self._latest)) is None:
                continue  # nothing new to show: do not spend a slot
            await self._pacer.wait(self._destination, interval)
            async with self._op:
                target = self._plan(self._latest)  # the newest text, after the wait
                index = self._next_step(target)
                if index is None:
                    continue
                try:
                    await self._apply(index, target[index])
                except SurfaceRateLimited as exc:
                    self._pacer.penalize(self._destination, exc.retry_after)
                    self._pending.set()  # the pacer sleeps out the penalty, then we retry
                    continue
                except Exception:
                    # Not fatal mid-stream: the next update retries, and finish() reports.
                    log.warning("%s: frame failed; will retry", self._destination, exc_info=True)
                    continue
                if self._next_step(target) is not None:
                    self._pending.set()

    async def _land(self, index: int, want: str) -> None:
        """Make message ``index`` show ``want``, with bounded retries; raise the last failure."""
        interval = self._surface.min_interval
        failures = 0
        delay = 0.0
        while index >= len(self._messages) or self._messages[index].shown != want:
            blocked = max(delay, self._pacer.delay(self._destination))
            if blocked > self._max_wait:
                raise SurfaceRateLimited(blocked)
            await self._pacer.wait(self._destination, interval, delay=delay)
            try:
                await self._apply(index, want)
            except SurfaceRateLimited as exc:
                failures += 1
                if failures >= self._max_tries or exc.retry_after > self._max_wait:
                    raise
                self._pacer.penalize(self._destination, exc.retry_after)
                delay = 0.0
            except Exception:
                failures += 1
                if failures >= self._max_tries:
                    raise
                log.warning("%s: final frame failed, retrying", self._destination, exc_info=True)
                delay = self._error_backoff * 2 ** (failures - 1)


def _report_crash(task: asyncio.Task[None]) -> None:
    # The flusher catches network errors itself; anything reaching here is a bug: never lose it.
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("delivery flusher %s crashed", task.get_name(), exc_info=exc)
