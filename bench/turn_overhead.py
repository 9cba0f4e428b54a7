"""Time the service adds to a turn, and Redis commands per turn.

A backend that answers instantly; 2,000 messages of history already in Redis; 1,000 turns.
Measured per turn: message in → backend request sent, and last token → final frame on the
surface. Redis commands are counted by the server (INFO commandstats), so a Lua script call
counts once — the number of round trips the engine makes.

    python -m bench.turn_overhead [--turns 1000] [--history 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from bot.backends.base import Finish, FinishReason, GenerationRequest, StreamEvent, TextDelta
from bot.backends.pool import BackendPool
from bot.config import AppConfig, BackendConfig, Defaults
from bot.delivery.pacer import Pacer
from bot.engine.characters import CharacterLibrary
from bot.engine.turns import Engine
from bot.prompt.tokens import EstimateCounter
from bot.state import store as ops
from bot.state.embedded import EmbeddedRedis
from bot.state.keys import KeyBuilder
from bot.state.store import ChatStore, entry_json
from bot.types import Action, Author, ChatKey, ChatMessage, Inbound


class Clock:
    def __init__(self) -> None:
        self.sent = 0.0
        self.last_token = 0.0
        self.final = 0.0


class InstantBackend:
    name = "instant"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        self.clock.sent = time.perf_counter()
        yield TextDelta("Sure, ")
        yield TextDelta("here is a reply.")
        self.clock.last_token = time.perf_counter()
        yield Finish(FinishReason.STOP, "stop")


class TimedSurface:
    limit = 2000
    min_interval = 0.0

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.n = 0

    async def send(self, text: str) -> str:
        self.clock.final = time.perf_counter()
        self.n += 1
        return str(self.n)

    async def edit(self, message_id: str, text: str) -> None:
        self.clock.final = time.perf_counter()


class RoundTrips:
    """Counts round trips: every write of packed commands to a Redis connection (a single
    command, a Lua script call or a whole pipeline each count once)."""

    def __init__(self) -> None:
        self.n = 0
        inner = AbstractConnection.send_packed_command

        async def counted(conn: AbstractConnection, *args: Any, **kw: Any) -> None:
            self.n += 1
            await inner(conn, *args, **kw)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


async def main(turns: int, history: int, url: str) -> None:
    embedded = None
    if url:
        redis = Redis.from_url(url)
    else:
        embedded = EmbeddedRedis(Path(tempfile.mkdtemp()) / "redis")
        redis = await embedded.start()
    clock = Clock()
    key = ChatKey("bench", "b", "c")
    keys = KeyBuilder(f"bench{int(time.time())}")
    store = ChatStore(redis, keys, window=400)
    await store.start()
    # 2,000 messages of history, written directly
    log = keys.channel(key).log
    entries = [
        entry_json(
            ChatMessage(i + 1, "user" if i % 2 == 0 else "assistant", "X", f"message {i} " * 12)
        )
        for i in range(history)
    ]
    await redis.rpush(log, *entries)
    await redis.hset(keys.channel(key).meta, "seq", history)
    backend_config = BackendConfig(provider="custom", base_url="http://x", model="m")
    config = AppConfig(backends={"instant": backend_config}, defaults=Defaults(backend="instant"))
    pool = BackendPool(config, None, lambda _: None, lambda *_: InstantBackend(clock))  # type: ignore[arg-type]
    surface = TimedSurface(clock)
    engine = Engine(
        store,
        pool,
        CharacterLibrary(config),
        {"bench": lambda _: surface},
        Pacer(),
        config.defaults,
        EstimateCounter(),
    )
    user = Author("u", "Alex")
    before_in, before_out = [], []
    for _ in range(20):  # warm-up
        await engine.handle(Inbound(key, user, Action.MESSAGE, "warm up"))
    trips = RoundTrips()
    for i in range(turns):
        t0 = time.perf_counter()
        await engine.handle(Inbound(key, user, Action.MESSAGE, f"turn {i}: what next?"))
        before_in.append(clock.sent - t0)
        before_out.append(clock.final - clock.last_token)
    per_turn = trips.n / turns
    added = [a + b for a, b in zip(before_in, before_out, strict=True)]

    def ms(values: list[float], q: float) -> str:
        return f"{statistics.quantiles(values, n=100)[int(q) - 1] * 1000:.3f} ms"

    print(f"turns: {turns}, history in Redis: {history} messages (window 400)")
    print(f"message in -> request sent:   p50 {ms(before_in, 50)}  p99 {ms(before_in, 99)}")
    print(f"last token -> final frame:    p50 {ms(before_out, 50)}  p99 {ms(before_out, 99)}")
    print(f"service-added per turn:       p50 {ms(added, 50)}  p99 {ms(added, 99)}")
    print(f"Redis round trips per turn:   {per_turn:.2f}")
    await redis.aclose()
    if embedded:
        await embedded.close()
    _ = ops


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--history", type=int, default=2000)
    parser.add_argument("--redis-url", default="", help="default: the embedded Redis")
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.history, args.redis_url))
