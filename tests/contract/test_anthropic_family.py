"""The anthropic family (Claude's Messages API): the shared contract against a loopback fake
of the API, then its golden transcripts and the quirks a roleplay client must get right
(system, merged turns, prefill, thinking, per-model sampler rules, model list, token count)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.backends.anthropic import AnthropicBackend, anthropic_error
from bot.backends.base import (
    Finish,
    FinishReason,
    ModelCatalog,
    ModelInfo,
    ReasoningDelta,
    TextDelta,
    TokenCountingBackend,
    Usage,
)
from bot.backends.registry import build_backend
from bot.config import BackendConfig
from bot.errors import (
    BackendAuthError,
    BackendError,
    BackendNotFound,
    BackendRateLimited,
    BackendUnavailable,
    ConfigError,
)
from tests.contract.anthropic_harness import MODEL, SECRET, ClaudeHarness
from tests.contract.backend_contract import (
    BackendContract,
    assert_error_hint,
    assert_no_secret,
    collect,
    replay,
    text_of,
)
from tests.fakes.anthropic_server import AUTH_PROBLEM, FakeAnthropic
from tests.fakes.anthropic_wire import (
    ERROR_404,
    ERROR_413,
    ERROR_429,
    ERROR_500,
    ERROR_529,
    ERROR_CONTEXT,
    ERROR_CREDIT,
    GOLDEN,
    GOLDEN_ERROR_AFTER_DELTA,
    GOLDEN_REFUSAL,
    GOLDEN_STOP_SEQUENCE,
    GOLDEN_THINKING,
    OVERLOADED_EVENT,
    error_401,
)
from tests.fakes.base import Raw, Status, Text


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(api_key=SECRET) as server:
        yield server
        assert server.body_rejections() == []


@pytest.fixture
def harness(fake: FakeAnthropic) -> ClaudeHarness:
    return ClaudeHarness(fake)


class TestAnthropicContract(BackendContract):
    pass


# -- golden transcripts ------------------------------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 7])
async def test_golden_stream(
    harness: ClaudeHarness, client: httpx.AsyncClient, split: int
) -> None:
    events, error = await replay(harness, client, GOLDEN, split=split)
    assert error is None
    assert events == [
        TextDelta("Hi"),
        TextDelta("!"),
        Usage(12, 2),
        Finish(FinishReason.STOP, raw="end_turn"),
    ]


async def test_thinking_stream_gives_reasoning_then_text(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    events, error = await replay(harness, client, GOLDEN_THINKING, split=5)
    assert error is None
    assert events == [
        ReasoningDelta("The user greets me."),
        ReasoningDelta(" Be warm."),
        TextDelta("Hello!"),
        Usage(12, 9),
        Finish(FinishReason.STOP, raw="end_turn"),
    ]


async def test_overloaded_event_after_a_delta_keeps_the_partial(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    events, error = await replay(harness, client, GOLDEN_ERROR_AFTER_DELTA, sleeps=[])
    assert text_of(events) == "Once"
    assert isinstance(error, BackendUnavailable)
    assert "Overloaded" in error.user_message()
    assert "overloaded" in error.hint
    assert harness.request_count() == 1


async def test_an_error_event_before_any_text_is_retried(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    harness.fake.enqueue(Raw(GOLDEN.split(b"event: content_block_start")[0] + OVERLOADED_EVENT))
    harness.fake.enqueue(Raw(GOLDEN))
    sleeps: list[float] = []
    events, error = await collect(harness.backend(client, sleeps=sleeps), harness.request())
    assert error is None
    assert text_of(events) == "Hi!"
    assert harness.request_count() == 2


async def test_529_before_the_stream_is_retried(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    harness.fake.enqueue(Status(529, ERROR_529), Raw(GOLDEN))
    sleeps: list[float] = []
    events, error = await collect(harness.backend(client, sleeps=sleeps), harness.request())
    assert error is None
    assert text_of(events) == "Hi!"
    assert len(sleeps) == 1
    assert harness.request_count() == 2


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (GOLDEN_STOP_SEQUENCE, Finish(FinishReason.STOP_SEQUENCE, raw="stop_sequence")),
        (GOLDEN_REFUSAL, Finish(FinishReason.FILTERED, raw="refusal")),
    ],
)
async def test_stop_reasons_keep_claudes_word(
    harness: ClaudeHarness, client: httpx.AsyncClient, body: bytes, expected: Finish
) -> None:
    events, error = await replay(harness, client, body)
    assert error is None
    assert events[-1] == expected


async def test_a_stream_with_a_stop_reason_but_no_message_stop_still_finishes(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    events, error = await replay(harness, client, GOLDEN.rsplit(b"event: message_stop", 1)[0])
    assert error is None
    assert events[-1] == Finish(FinishReason.STOP, raw="end_turn")


# -- whole answers, models, token counts -------------------------------------------------------


async def test_non_streaming_answer(fake: FakeAnthropic, client: httpx.AsyncClient) -> None:
    fake.enqueue(Text(["Hel", "lo"], finish="max_tokens", usage=(9, 2), reasoning=["hm"]))
    h = ClaudeHarness(fake, stream=False)
    events, error = await collect(h.backend(client), h.request())
    assert error is None
    assert fake.last.body["stream"] is False
    assert fake.last.headers["accept"] == "application/json"
    assert events == [
        ReasoningDelta("hm"),
        TextDelta("Hello"),
        Usage(9, 2),
        Finish(FinishReason.LENGTH, raw="max_tokens"),
    ]


async def test_models_are_listed_page_by_page(client: httpx.AsyncClient) -> None:
    models = ("claude-opus-4-6", "claude-sonnet-4-5-20250929", "claude-3-5-haiku-20241022")
    async with FakeAnthropic(api_key=SECRET, models=models, page_size=2) as fake:
        backend = ClaudeHarness(fake).backend(client)
        assert isinstance(backend, ModelCatalog)
        listed = await backend.list_models()
        pages = [r.query for r in fake.requests]
        assert all(r.headers["anthropic-version"] == "2023-06-01" for r in fake.requests)
    assert listed == [ModelInfo(m) for m in models]
    assert pages == [
        {"limit": "1000"},
        {"limit": "1000", "after_id": "claude-sonnet-4-5-20250929"},
    ]


async def test_count_tokens_uses_the_count_endpoint(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    backend = harness.inner(client)
    assert isinstance(backend, AnthropicBackend)
    assert isinstance(backend, TokenCountingBackend)
    assert await backend.count_tokens("one two three") == 3 + 3
    assert harness.fake.last.path == "/v1/messages/count_tokens"
    assert harness.fake.last.body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "one two three"}],
    }
    whole = await backend.count_request_tokens(harness.request())
    assert whole == 6 + 3  # "You are Aria." + "Sam: Hello there", one message
    assert "max_tokens" not in harness.fake.last.body


async def test_count_tokens_with_a_wrong_key_is_an_auth_error(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    backend = harness.inner(client, api_key="sk-ant-wrong-0c9d")
    with pytest.raises(BackendAuthError) as caught:
        await backend.count_tokens("hi")
    assert_no_secret(caught.value, "sk-ant-wrong-0c9d")
    harness.fake.rejections.clear()


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected", "words"),
    [
        (401, error_401(SECRET), BackendAuthError, "API key"),
        (
            403,
            {"type": "error", "error": {"type": "permission_error", "message": "no"}},
            BackendAuthError,
            "API key",
        ),
        (404, ERROR_404, BackendNotFound, "model name"),
        (400, ERROR_CONTEXT, BackendError, "context"),
        (400, ERROR_CREDIT, BackendError, "credits"),
        (413, ERROR_413, BackendError, "shorten the prompt"),
        (500, ERROR_500, BackendUnavailable, "server running"),
        (529, ERROR_529, BackendUnavailable, "overloaded"),
    ],
)
async def test_each_error_has_its_own_hint(
    harness: ClaudeHarness,
    client: httpx.AsyncClient,
    status: int,
    body: dict[str, Any],
    expected: type[BackendError],
    words: str,
) -> None:
    await assert_error_hint(harness, client, Status(status, body), expected, words)


def test_rate_limit_wait_comes_from_the_reset_header_when_retry_after_is_missing() -> None:
    now = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    headers = {
        "anthropic-ratelimit-requests-remaining": "3",
        "anthropic-ratelimit-requests-reset": "2025-05-01T12:00:05Z",
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-input-tokens-reset": "2025-05-01T12:00:20Z",
    }
    request = httpx.Request("POST", "https://api.anthropic.com/v1/messages")
    response = httpx.Response(429, headers=headers, request=request)
    body = json.dumps(ERROR_429).encode()
    error = anthropic_error("main", response, body=body, now=lambda: now)
    assert isinstance(error, BackendRateLimited)
    assert error.retry_after == 20


def test_in_stream_error_types_map_like_their_statuses() -> None:
    def kind(type_: str) -> type[BackendError]:
        error = {"type": "error", "error": {"type": type_, "message": "x"}}
        return type(anthropic_error("main", error))

    assert kind("overloaded_error") is BackendUnavailable
    assert kind("api_error") is BackendUnavailable
    assert kind("rate_limit_error") is BackendRateLimited
    assert kind("authentication_error") is BackendAuthError


# -- the registry ------------------------------------------------------------------------------


async def test_claude_needs_a_key_and_chat_mode(client: httpx.AsyncClient) -> None:
    with pytest.raises(ConfigError, match="needs an API key"):
        build_backend("main", BackendConfig(provider="claude"), client, None)
    with pytest.raises(ConfigError, match="text completion"):
        build_backend(
            "main", BackendConfig(provider="claude", mode="text"), client, SecretStr("k")
        )


async def test_wrong_key_message_never_shows_the_key(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    _, error = await collect(
        harness.backend(client, api_key="sk-ant-bad-77", sleeps=[]), harness.request()
    )
    assert isinstance(error, BackendAuthError)
    assert AUTH_PROBLEM in error.user_message()
    harness.fake.rejections.clear()
