"""The OpenAI-compatible family beyond streaming: one-shot JSON answers, model lists, and
how the registry turns config into a backend (or a clear start-up error)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.backends.base import (
    Finish,
    FinishReason,
    Mode,
    ModelCatalog,
    ModelInfo,
    ReasoningDelta,
    TextDelta,
    Usage,
)
from bot.backends.openai_compat import OpenAICompatBackend
from bot.backends.presets import PRESETS, ProviderPreset
from bot.backends.registry import build_backend
from bot.backends.retry import RetryingBackend
from bot.config import BackendConfig
from bot.errors import BackendAuthError, BackendError, ConfigError
from tests.contract.backend_contract import assert_no_secret, collect
from tests.contract.openai_harness import SECRET, harness_for
from tests.fakes.base import HTML_502, Cut, Endless, Raw
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openai_wire import InStreamError, Text


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=SECRET) as server:
        yield server
        assert server.body_rejections() == []


# -- non-streaming --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["chat", "text"])
async def test_non_streaming_answer(
    fake: FakeOpenAI, client: httpx.AsyncClient, mode: Mode
) -> None:
    fake.enqueue(Text(["Hel", "lo"], finish="length", usage=(9, 2), reasoning=["hm"]))
    h = harness_for(fake, "openai", mode, stream=False)
    events, error = await collect(h.backend(client), h.request())
    assert error is None
    assert fake.last.body["stream"] is False
    assert "stream_options" not in fake.last.body
    expected: list[Any] = [ReasoningDelta("hm")] if mode == "chat" else []
    expected += [TextDelta("Hello"), Usage(9, 2), Finish(FinishReason.LENGTH, raw="length")]
    assert events == expected


@pytest.mark.parametrize(
    "reply", [InStreamError(), Cut(), Raw(HTML_502, content_type="text/html")], ids=str
)
async def test_non_streaming_bad_bodies(
    fake: FakeOpenAI, client: httpx.AsyncClient, reply: Any
) -> None:
    fake.enqueue(reply, reply, reply)
    h = harness_for(fake, "openai", "chat", stream=False)
    events, error = await collect(h.backend(client, sleeps=[]), h.request())
    assert events == []
    assert isinstance(error, BackendError)
    assert_no_secret(error, SECRET)


async def test_non_streaming_cancel_closes_the_connection(
    fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.enqueue(Endless())
    h = harness_for(fake, "openai", "chat", stream=False)
    task = asyncio.create_task(collect(h.backend(client), h.request()))
    await asyncio.wait_for(fake.received.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(fake.disconnected.wait(), timeout=5)


# -- model list ---------------------------------------------------------------------------------


async def test_list_models(client: httpx.AsyncClient) -> None:
    models: list[dict[str, Any]] = [
        {"id": "gpt-test", "object": "model"},
        {"id": "big", "context_length": 131072},
    ]
    async with FakeOpenAI(api_key=SECRET, models=models) as fake:
        backend = harness_for(fake, "openrouter", "chat").backend(client)
        assert isinstance(backend, ModelCatalog)
        assert await backend.list_models() == [ModelInfo("gpt-test"), ModelInfo("big", 131072)]


async def test_list_models_with_a_wrong_key(fake: FakeOpenAI, client: httpx.AsyncClient) -> None:
    backend = harness_for(fake, "openai", "chat").backend(client, api_key="sk-nope-1234567890")
    assert isinstance(backend, ModelCatalog)
    with pytest.raises(BackendAuthError) as caught:
        await backend.list_models()
    assert_no_secret(caught.value, "sk-nope-1234567890")


# -- registry ------------------------------------------------------------------------------


async def test_unknown_provider_names_the_known_ones(client: httpx.AsyncClient) -> None:
    with pytest.raises(ConfigError) as caught:
        build_backend("x", BackendConfig(provider="openia"), client, None)
    assert "openai" in caught.value.message and "openrouter" in caught.value.message


async def test_unknown_family_names_the_known_ones(client: httpx.AsyncClient) -> None:
    presets = {"future": ProviderPreset("future", "http://127.0.0.1:1", family="telepathy")}
    with pytest.raises(ConfigError) as caught:
        build_backend("x", BackendConfig(provider="future"), client, None, presets=presets)
    assert "telepathy" in caught.value.message and "openai" in caught.value.message


@pytest.mark.parametrize(
    ("config", "key", "words"),
    [
        (BackendConfig(provider="custom"), None, "base_url"),
        (BackendConfig(provider="openai"), None, "api_key_env"),
        (BackendConfig(provider="mistral", mode="text"), SecretStr("k"), "mode: chat"),
    ],
)
async def test_config_mistakes_are_caught_at_build_time(
    client: httpx.AsyncClient, config: BackendConfig, key: SecretStr | None, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_backend("x", config, client, key)
    assert words in caught.value.user_message()


async def test_default_base_url_comes_from_the_preset(client: httpx.AsyncClient) -> None:
    backend = build_backend("local", BackendConfig(provider="llamacpp"), client, None)
    assert isinstance(backend, RetryingBackend)
    assert isinstance(backend.inner, OpenAICompatBackend)
    assert backend.inner.base_url == PRESETS["llamacpp"].base_url
