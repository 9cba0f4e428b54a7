"""The gemini family beyond the contract: Google's error shapes, the model list, the token
count (AI Studio and Vertex AI fakes)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from bot.backends.base import Backend, ModelCatalog, ModelInfo, TokenCountingBackend
from bot.backends.gemini import GeminiBackend
from bot.backends.registry import build_backend
from bot.config import BackendConfig
from bot.errors import BackendAuthError, BackendError, ConfigError
from tests.contract.backend_contract import collect, text_of
from tests.contract.gemini_harness import (
    MODEL,
    SECRET,
    Keys,
    Variant,
    fake_for,
    on,
)
from tests.fakes.base import Status
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.gemini_wire import ERROR_403, ERROR_DAILY_QUOTA, InStreamError, Text, error_429

VARIANTS: list[Variant] = ["aistudio", "vertex-sa", "vertex-express"]


# -- Google's errors ---------------------------------------------------------------------------


async def test_per_minute_429_is_a_rate_limit_with_google_retry_delay(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    # its message mentions billing, yet waiting the RetryInfo delay is what helps
    studio.enqueue(Status(429, error_429("27.5s")), Text(["Hi"]))
    h = on(studio, "aistudio", tmp_path, rsa_keys)
    sleeps: list[float] = []
    events, error = await collect(h.backend(client, sleeps=sleeps), h.request())
    assert error is None and text_of(events) == "Hi"
    assert sleeps == [27.5]


async def test_daily_quota_is_not_retried_and_says_so(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    studio.enqueue(Status(429, ERROR_DAILY_QUOTA))
    h = on(studio, "aistudio", tmp_path, rsa_keys)
    _, error = await collect(h.backend(client, sleeps=[]), h.request())
    assert type(error) is BackendError
    assert "daily quota" in error.user_message()
    assert h.request_count() == 1


async def test_permission_denied_is_an_auth_error_about_access(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    studio.enqueue(Status(403, ERROR_403))
    h = on(studio, "aistudio", tmp_path, rsa_keys)
    _, error = await collect(h.backend(client, sleeps=[]), h.request())
    assert isinstance(error, BackendAuthError)
    assert "HTTP 403" in error.user_message() and "enabled" in error.user_message()


async def test_an_in_stream_rate_limit_before_any_text_is_retried(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    studio.enqueue(InStreamError((), error_429("2s")), Text(["Hi"]))
    h = on(studio, "aistudio", tmp_path, rsa_keys)
    sleeps: list[float] = []
    events, error = await collect(h.backend(client, sleeps=sleeps), h.request())
    assert error is None and text_of(events) == "Hi"
    assert sleeps == [2]


async def test_text_mode_is_refused_at_start_up(client: httpx.AsyncClient) -> None:
    config = BackendConfig(provider="gemini", mode="text", model=MODEL)
    with pytest.raises(ConfigError, match="no text completion"):
        build_backend("main", config, client, SecretStr(SECRET))


# -- model list and token count ----------------------------------------------------------------

MODELS = [
    {
        "name": "models/gemini-2.5-flash",
        "inputTokenLimit": 1048576,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    },
    {"name": "models/text-embedding-004", "supportedGenerationMethods": ["embedContent"]},
    {
        "name": "models/gemini-2.5-pro",
        "inputTokenLimit": 1048576,
        "supportedGenerationMethods": ["generateContent"],
    },
    {"name": "models/aqa", "supportedGenerationMethods": ["generateAnswer"]},
    {
        "name": "models/gemma-3-27b-it",
        "inputTokenLimit": 131072,
        "supportedGenerationMethods": ["generateContent"],
    },
]


async def test_model_list_follows_pages_and_keeps_generative_models(
    rsa_keys: Keys, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with fake_for("aistudio", rsa_keys[0], models=MODELS, page_size=2) as fake:
        backend = on(fake, "aistudio", tmp_path, rsa_keys).backend(client)
        assert isinstance(backend, ModelCatalog)
        models = await backend.list_models()
        pages = [r.query.get("pageToken") for r in fake.requests]
    assert models == [
        ModelInfo("gemini-2.5-flash", 1048576),
        ModelInfo("gemini-2.5-pro", 1048576),
        ModelInfo("gemma-3-27b-it", 131072),
    ]
    assert pages == [None, "2", "4"]


async def test_vertex_has_no_model_list_and_says_what_to_do(
    rsa_keys: Keys, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with fake_for("vertex-express", rsa_keys[0]) as fake:
        backend = on(fake, "vertex-express", tmp_path, rsa_keys).backend(client)
        assert isinstance(backend, ModelCatalog)
        with pytest.raises(BackendError, match="no model list") as caught:
            await backend.list_models()
        assert fake.requests == []
    assert "gemini-2.5-flash" in caught.value.user_message()


@pytest.mark.parametrize("variant", VARIANTS)
async def test_count_tokens(
    rsa_keys: Keys, client: httpx.AsyncClient, tmp_path: Path, variant: Variant
) -> None:
    async with fake_for(variant, rsa_keys[0]) as fake:
        backend = gemini_of(on(fake, variant, tmp_path, rsa_keys).backend(client))
        assert isinstance(backend, TokenCountingBackend)
        assert await backend.count_tokens("one two three") == 4  # the fake: words + 1
        sent = fake.last
    assert sent.path.endswith("/models/gemini-2.5-flash:countTokens")
    assert sent.body == {"contents": [{"role": "user", "parts": [{"text": "one two three"}]}]}


def gemini_of(backend: Backend) -> GeminiBackend:
    inner = getattr(backend, "inner", backend)  # under the retry wrapper
    assert isinstance(inner, GeminiBackend)
    return inner
