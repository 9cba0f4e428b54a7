"""Redis restarting under a running service: the reply still reaches the user, nothing is
stored half-way, the user is told, and the channel works again once Redis is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.backends.base import TextDelta
from bot.backends.pool import BackendPool
from bot.config import AppConfig, BackendConfig, Defaults
from bot.delivery.pacer import Pacer
from bot.engine.characters import CharacterLibrary
from bot.engine.turns import Engine
from bot.prompt.tokens import EstimateCounter
from bot.state.embedded import EmbeddedRedis
from bot.state.keys import KeyBuilder
from bot.state.store import ChatStore
from bot.types import Action, Author, ChatKey, Inbound
from tests.fakes.engine import ScriptedBackend, Surfaces, words

KEY = ChatKey("tg", "bot", "42")
ALEX = Author("u1", "Alex")


async def test_redis_restart_mid_turn(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    redis = await server.start()
    backend = ScriptedBackend()
    config = AppConfig(
        backends={"fake": BackendConfig(provider="custom", base_url="http://f", model="m")},
        defaults=Defaults(backend="fake", lock_ttl=2.0),
    )
    pool = BackendPool(config, None, lambda _: None, lambda *_: backend)  # type: ignore[arg-type]
    store = ChatStore(redis, KeyBuilder("o"), lock_ttl=2.0)
    await store.start()
    surfaces = Surfaces()
    engine = Engine(
        store,
        pool,
        CharacterLibrary(config),
        {"tg": surfaces},
        Pacer(),
        config.defaults,
        EstimateCounter(),
    )
    try:
        backend.enqueue([TextDelta("Still"), 0.5, TextDelta(" here.")], words("Back again."))
        turn = asyncio.create_task(engine.handle(Inbound(KEY, ALEX, Action.MESSAGE, "hello")))
        await asyncio.wait_for(backend.started.wait(), 5)
        await server.close()  # Redis goes away while the reply streams
        await asyncio.wait_for(turn, 10)
        seen = surfaces.by_key[KEY].visible()
        assert "Still here." in seen  # the user got the reply
        assert any("Redis" in line and "unreachable" in line for line in seen)

        await engine.handle(Inbound(KEY, ALEX, Action.MESSAGE, "are you there?"))
        assert "Redis" in surfaces.by_key[KEY].visible()[-1]  # told, not crashed

        redis2 = await server.start()  # same data directory: a restart
        await redis2.aclose()
        await asyncio.sleep(2.1)  # the dead turn's lock expires
        await engine.handle(Inbound(KEY, ALEX, Action.MESSAGE, "and now?"))
        assert surfaces.by_key[KEY].visible()[-1] == "Back again."
        texts = [(m.role, m.text) for m in await store.history(KEY)]
        # the first message survived the restart; the reply that could not be saved is absent
        # (never half-stored), and the conversation continues
        assert ("user", "hello") in texts
        assert ("assistant", "Still here.") not in texts
        assert texts[-2:] == [("user", "and now?"), ("assistant", "Back again.")]
    finally:
        await engine.close()
        await redis.aclose()
        await server.close()
