"""Delivery and Pacer on fake time: what the user finally sees, when calls were made."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from bot.delivery.pacer import Pacer
from bot.delivery.ports import ReplySink, SurfaceRateLimited
from bot.delivery.split import split_text
from bot.delivery.stream import Delivery

T = TypeVar("T")


class FakeClock:
    """Virtual time: sleepers wake only when the test moves time past their deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), future))
        await future

    async def settle(self) -> None:
        for _ in range(30):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            if not future.done():
                future.set_result(None)
            await self.settle()
        self.now = target
        await self.settle()

    async def run(self, work: Awaitable[T], *, give_up: float = 3600.0) -> T:
        """Await ``work``, jumping time to the next sleeper whenever everything is waiting."""
        task = asyncio.ensure_future(work)
        start = self.now
        await self.settle()
        while not task.done():
            live = [s for s in self._sleepers if not s[2].done()]
            assert live, "deadlock: the work waits on something other than time"
            assert self.now - start < give_up, "gave up waiting on fake time"
            await self.advance(max(0.0, min(live)[0] - self.now))
        return task.result()


@dataclass
class Call:
    at: float
    kind: str
    message_id: str
    text: str
    failed: bool


@dataclass
class FakeSurface:
    """A platform: keeps what each message shows and rejects what a real one would."""

    clock: FakeClock
    limit: int = 2000
    min_interval: float = 1.0
    shown: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    script: list[BaseException | None] = field(default_factory=list)
    log: list[Call] | None = None  # a log shared with other surfaces of the same channel

    async def send(self, text: str) -> str:
        message_id = str(len(self.shown) + 1)
        await self._call("send", message_id, text)
        self.shown[message_id] = text
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        await self._call("edit", message_id, text)
        if message_id not in self.shown:
            raise LookupError("unknown message")
        if self.shown[message_id] == text:
            raise ValueError("message is not modified")  # Telegram answers 400
        self.shown[message_id] = text

    async def _call(self, kind: str, message_id: str, text: str) -> None:
        outcome = self.script.pop(0) if self.script else None
        call = Call(self.clock.now, kind, message_id, text, outcome is not None)
        self.calls.append(call)
        if self.log is not None:
            self.log.append(call)
        assert text.strip() and len(text) <= self.limit, f"the platform rejects {text!r}"
        await asyncio.sleep(0)  # a network call yields
        if outcome is not None:
            raise outcome

    def visible(self, ids: list[str]) -> list[str]:
        return [self.shown[i] for i in ids]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pacer(clock: FakeClock) -> Pacer:
    return Pacer(clock=clock.time, sleep=clock.sleep)


def words(n: int) -> list[str]:
    """The growing texts of a streamed reply, one word per update."""
    vocabulary = ["the", "knight", "smiled.", "Rain", "fell", "softly,", "and", "she", "waited."]
    texts, text = [], ""
    for i in range(n):
        text += (" " if text else "") + vocabulary[i % len(vocabulary)]
        texts.append(text)
    return texts


def assert_spaced(calls: list[Call], interval: float) -> None:
    for before, after in itertools.pairwise(calls):
        assert after.at - before.at >= interval - 1e-9, (before, after)


async def test_first_frame_goes_out_at_once_and_final_text_lands(
    clock: FakeClock, pacer: Pacer
) -> None:
    surface = FakeSurface(clock)
    delivery = Delivery(surface, pacer, "chan")
    await delivery.update("Hello")
    await clock.settle()
    assert [(c.at, c.kind, c.text) for c in surface.calls] == [(0.0, "send", "Hello")]
    ids = await clock.run(delivery.finish("Hello, traveller."))
    assert surface.visible(ids) == ["Hello, traveller."]
    assert_spaced(surface.calls, 1.0)


async def test_rapid_updates_are_coalesced_into_a_few_edits(
    clock: FakeClock, pacer: Pacer
) -> None:
    surface = FakeSurface(clock, min_interval=1.0)
    delivery = Delivery(surface, pacer, "chan")
    texts = words(100)
    for text in texts:  # 100 tokens within one second
        await delivery.update(text)
        await clock.advance(0.01)
    final = texts[-1] + " The end."
    ids = await clock.run(delivery.finish(final))
    assert surface.visible(ids) == [final]
    assert len(surface.calls) <= 3
    assert all(c.text in [*texts, final] for c in surface.calls)
    assert_spaced(surface.calls, 1.0)


async def test_a_429_mid_stream_is_waited_out(clock: FakeClock, pacer: Pacer) -> None:
    surface = FakeSurface(clock, min_interval=1.0)
    surface.script = [None, SurfaceRateLimited(5.0)]  # the first edit is refused for 5 s
    delivery = Delivery(surface, pacer, "chan")
    for text in words(60):
        await delivery.update(text)
        await clock.advance(0.1)
    final = words(61)[-1]
    ids = await clock.run(delivery.finish(final))
    assert surface.visible(ids) == [final]
    refused = next(c for c in surface.calls if c.failed)
    after = [c for c in surface.calls if c.at > refused.at]
    assert after and all(c.at >= refused.at + 5.0 for c in after)
    assert len(surface.calls) == len({c.at for c in surface.calls})  # one call per slot


async def test_final_text_lands_when_the_last_frames_were_rate_limited(
    clock: FakeClock, pacer: Pacer
) -> None:
    surface = FakeSurface(clock, min_interval=1.0)
    surface.script = [None, SurfaceRateLimited(3.0), SurfaceRateLimited(3.0)]
    surface.script += [SurfaceRateLimited(4.0)]
    delivery = Delivery(surface, pacer, "chan")
    texts = words(20)
    for text in texts:
        await delivery.update(text)
        await clock.advance(0.2)
    final = texts[-1] + " Finally."
    ids = await clock.run(delivery.finish(final))
    assert surface.visible(ids) == [final]
    for before, after in itertools.pairwise(surface.calls):
        if before.failed:  # the next call came only after the penalty
            assert after.at >= before.at + 3.0


async def test_an_overflowing_reply_continues_in_new_messages(
    clock: FakeClock, pacer: Pacer
) -> None:
    surface = FakeSurface(clock, limit=60, min_interval=0.5)
    delivery = Delivery(surface, pacer, "chan")
    texts = words(80)
    for text in texts:
        await delivery.update(text)
        await clock.advance(0.2)
    ids = await clock.run(delivery.finish(texts[-1]))
    shown = surface.visible(ids)
    assert len(shown) > 3
    assert shown == split_text(texts[-1], 60)
    assert all(len(part) <= 60 for part in shown)
    assert " ".join(shown).split() == texts[-1].split()
    # a message, once followed by the next one, was never rewritten (it was frozen)
    for earlier in ids[:-1]:
        followed_at = next(i for i, c in enumerate(surface.calls) if c.message_id > earlier)
        assert all(c.message_id != earlier for c in surface.calls[followed_at:])


async def test_finish_without_updates_simply_sends(clock: FakeClock, pacer: Pacer) -> None:
    surface = FakeSurface(clock)
    sink: ReplySink = Delivery(surface, pacer, "chan")
    ids = await clock.run(sink.finish("Just this."))
    assert ids == ["1"]
    assert [(c.kind, c.text) for c in surface.calls] == [("send", "Just this.")]


async def test_an_empty_reply_shows_the_placeholder_or_nothing(
    clock: FakeClock, pacer: Pacer
) -> None:
    surface = FakeSurface(clock)
    ids = await clock.run(Delivery(surface, pacer, "a").finish("  \n"))
    assert surface.visible(ids) == ["…"]
    silent = FakeSurface(clock)
    assert await clock.run(Delivery(silent, pacer, "b", placeholder="").finish("")) == []
    assert silent.calls == []


async def test_messages_left_over_by_a_shrinking_text_show_the_placeholder(
    clock: FakeClock, pacer: Pacer
) -> None:
    surface = FakeSurface(clock, limit=40, min_interval=0.1)
    delivery = Delivery(surface, pacer, "chan")
    for text in words(30):
        await delivery.update(text)
        await clock.advance(0.5)
    ids = await clock.run(delivery.finish("Short after all."))
    assert len(ids) > 1
    assert surface.visible(ids) == ["Short after all."] + ["…"] * (len(ids) - 1)


async def test_other_errors_mid_stream_are_logged_and_retried(
    clock: FakeClock, pacer: Pacer, caplog: pytest.LogCaptureFixture
) -> None:
    surface = FakeSurface(clock)
    surface.script = [None, ConnectionResetError("peer went away")]
    delivery = Delivery(surface, pacer, "chan")
    for text in words(30):
        await delivery.update(text)
        await clock.advance(0.5)
    ids = await clock.run(delivery.finish("All of it."))
    assert surface.visible(ids) == ["All of it."]
    assert "peer went away" in caplog.text


async def test_finish_raises_once_its_tries_are_spent(clock: FakeClock, pacer: Pacer) -> None:
    surface = FakeSurface(clock, min_interval=0.0)
    surface.script = [OSError("down")] * 10
    delivery = Delivery(surface, pacer, "chan", max_tries=4, error_backoff=1.0)
    with pytest.raises(OSError, match="down"):
        await clock.run(delivery.finish("Never lands."))
    assert [c.at for c in surface.calls] == [0.0, 1.0, 3.0, 7.0]  # backoff doubles
    assert delivery.message_ids == []


async def test_a_penalty_longer_than_max_wait_is_reported_not_slept(
    clock: FakeClock, pacer: Pacer
) -> None:
    surface = FakeSurface(clock)
    surface.script = [SurfaceRateLimited(13938.0)]
    delivery = Delivery(surface, pacer, "chan", max_wait=60.0)
    with pytest.raises(SurfaceRateLimited) as raised:
        await clock.run(delivery.finish("Too late."))
    assert raised.value.retry_after == 13938.0
    assert clock.now == 0.0 and len(surface.calls) == 1


async def test_close_stops_streaming(clock: FakeClock, pacer: Pacer) -> None:
    surface = FakeSurface(clock)
    async with Delivery(surface, pacer, "chan") as delivery:
        await delivery.update("Hel")
        await clock.settle()
        await delivery.update("Hello")  # pending: the next slot is at t=1
    await clock.advance(10.0)
    assert [c.text for c in surface.calls] == ["Hel"]
    with pytest.raises(RuntimeError):
        await delivery.update("more")


async def test_stopping_waits_for_a_call_in_flight_instead_of_cutting_it(
    clock: FakeClock, pacer: Pacer
) -> None:
    surface = FakeSurface(clock)
    slow_network = asyncio.Event()
    original_send = surface.send

    async def slow_send(text: str) -> str:
        await slow_network.wait()
        return await original_send(text)

    surface.send = slow_send  # type: ignore[method-assign]
    delivery = Delivery(surface, pacer, "chan")
    await delivery.update("Once")
    await clock.settle()
    finishing = asyncio.ensure_future(delivery.finish("Once upon a time."))
    await clock.settle()
    assert not finishing.done() and surface.shown == {}  # the send is still on the wire
    slow_network.set()
    ids = await clock.run(finishing)
    assert surface.visible(ids) == ["Once upon a time."]
    assert [c.kind for c in surface.calls] == ["send", "edit"]  # no second message


async def test_replies_in_one_channel_share_its_pace(clock: FakeClock, pacer: Pacer) -> None:
    channel_log: list[Call] = []
    first = FakeSurface(clock, min_interval=1.0, log=channel_log)
    second = FakeSurface(clock, min_interval=1.0, log=channel_log)
    a, b = Delivery(first, pacer, "chan"), Delivery(second, pacer, "chan")
    for text in words(20):
        await a.update("A: " + text)
        await b.update("B: " + text)
        await clock.advance(0.25)
    ids = await clock.run(asyncio.gather(a.finish("A done."), b.finish("B done.")))
    assert first.visible(ids[0]) == ["A done."] and second.visible(ids[1]) == ["B done."]
    assert_spaced(channel_log, 1.0)


async def test_a_crashed_flusher_is_logged(
    clock: FakeClock, pacer: Pacer, caplog: pytest.LogCaptureFixture
) -> None:
    surface = FakeSurface(clock, limit=0)  # a broken adapter: no text can ever fit
    delivery = Delivery(surface, pacer, "chan")
    await delivery.update("text")
    await clock.settle()
    assert "crashed" in caplog.text and "limit must be at least 1" in caplog.text
    await delivery.close()


async def test_pacer_spaces_calls_and_honours_penalties(clock: FakeClock, pacer: Pacer) -> None:
    times = []
    for _ in range(3):
        await clock.run(pacer.wait("x", 2.0))
        times.append(clock.now)
    assert times == [0.0, 2.0, 4.0]
    pacer.penalize("x", 30.0)
    assert pacer.delay("x") == 30.0 and pacer.delay("other") == 0.0
    await clock.run(pacer.wait("x", 2.0))
    assert clock.now == 34.0


async def test_pacer_forgets_idle_destinations(clock: FakeClock, pacer: Pacer) -> None:
    for i in range(1000):
        await pacer.wait(f"chan{i}", 1.0)
        pacer.penalize(f"chan{i}", 5.0)
        await clock.advance(0.1)
    assert len(pacer) < 200  # only about the last 5 s of destinations are remembered
    await clock.advance(10.0)
    await pacer.wait("fresh", 1.0)
    assert len(pacer) < 200


async def test_log_records_use_the_destination(
    clock: FakeClock, pacer: Pacer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    surface = FakeSurface(clock, min_interval=0.0)
    surface.script = [TimeoutError("slow")]
    ids = await clock.run(Delivery(surface, pacer, "dc:1:2").finish("ok"))
    assert surface.visible(ids) == ["ok"]
    assert "dc:1:2" in caplog.text
