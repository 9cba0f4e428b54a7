"""The cohere_v2 family (Cohere Chat v2): the shared contract against a loopback fake of the
API, then its golden transcripts and quirks (``p``/``k`` names and ranges, five stop
sequences, ``safety_mode`` per model, thinking, the v1 model list and tokenizer)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.backends.base import (
    Finish,
    FinishReason,
    ModelCatalog,
    ModelInfo,
    PromptMessage,
    ReasoningDelta,
    TextDelta,
    TokenCountingBackend,
    Usage,
)
from bot.backends.cohere import v1_base
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
from tests.contract.backend_contract import (
    BackendContract,
    assert_error_hint,
    collect,
    replay,
    text_of,
)
from tests.contract.cohere_harness import MODEL, SECRET, CohereHarness
from tests.fakes.base import Status, Text
from tests.fakes.cohere_server import (
    AUTH_PROBLEM,
    ERROR_402,
    ERROR_404,
    ERROR_429,
    ERROR_498,
    ERROR_500,
    ERROR_503,
    ERROR_CONTEXT,
    ERROR_TRIAL_MONTH,
    GOLDEN,
    GOLDEN_ERROR,
    GOLDEN_THINKING,
    STREAM_ERROR,
    FakeCohere,
    error_401,
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeCohere]:
    async with FakeCohere(api_key=SECRET) as server:
        yield server
        assert server.body_rejections() == []


@pytest.fixture
def harness(fake: FakeCohere) -> CohereHarness:
    return CohereHarness(fake)


class TestCohereContract(BackendContract):
    pass


# -- golden transcripts ------------------------------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 9])
async def test_golden_stream(
    harness: CohereHarness, client: httpx.AsyncClient, split: int
) -> None:
    events, error = await replay(harness, client, GOLDEN, split=split)
    assert error is None
    assert events == [
        TextDelta("Hi"),
        TextDelta("!"),
        Usage(71, 2),
        Finish(FinishReason.STOP, raw="COMPLETE"),
    ]


async def test_thinking_stream_gives_reasoning_then_text(
    harness: CohereHarness, client: httpx.AsyncClient
) -> None:
    events, error = await replay(harness, client, GOLDEN_THINKING, split=4)
    assert error is None
    assert events == [
        ReasoningDelta("They said hi."),
        TextDelta("Hello!"),
        Usage(80, 9),
        Finish(FinishReason.STOP, raw="COMPLETE"),
    ]


async def test_error_finish_after_a_delta_keeps_the_partial(
    harness: CohereHarness, client: httpx.AsyncClient
) -> None:
    events, error = await replay(harness, client, GOLDEN_ERROR, sleeps=[])
    assert text_of(events) == "Once"
    assert isinstance(error, BackendError)
    assert STREAM_ERROR in error.user_message()
    assert harness.request_count() == 1


@pytest.mark.parametrize(
    ("word", "reason"),
    [
        ("MAX_TOKENS", FinishReason.LENGTH),
        ("STOP_SEQUENCE", FinishReason.STOP_SEQUENCE),
        ("COMPLETE", FinishReason.STOP),
    ],
)
async def test_finish_reasons_keep_coheres_word(
    harness: CohereHarness, client: httpx.AsyncClient, word: str, reason: FinishReason
) -> None:
    harness.fake.enqueue(Text(["Hi"], finish=word))
    events, error = await collect(harness.backend(client), harness.request())
    assert error is None
    assert events[-1] == Finish(reason, raw=word)


# -- the request on the wire -------------------------------------------------------------------


async def send(h: CohereHarness, client: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    _, error = await collect(h.backend(client), h.request(**changes))
    assert error is None, error
    assert h.fake.body_rejections() == []
    body: dict[str, Any] = h.fake.last.body
    return body


async def test_headers_and_body(harness: CohereHarness, client: httpx.AsyncClient) -> None:
    sampler = {
        "temperature": 0.7,
        "top_p": 1.0,
        "top_k": 900,
        "frequency_penalty": 1.5,
        "presence_penalty": 0.2,
        "seed": 42,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
    }
    stops = ("\nUser:", "\nSam:", "</s>", "###", "\nAria:", "<|im_end|>")
    body = await send(harness, client, sampler=sampler, stop=stops)
    headers = harness.fake.last.headers
    assert harness.fake.last.path == "/v2/chat"
    assert headers["authorization"] == f"Bearer {SECRET}"
    assert headers["x-client-name"] == "sillybot"
    assert headers["accept"] == "text/event-stream"
    assert (
        body
        == {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You are Aria."},
                {"role": "user", "content": "Sam: Hello there"},
            ],
            "max_tokens": 64,
            "stream": True,
            "safety_mode": "OFF",  # this 08-2024 model takes it
            "stop_sequences": list(stops[:5]),  # Cohere takes five
            "temperature": 0.7,
            "p": 0.99,  # clamped into 0.01..0.99
            "k": 500,
            "frequency_penalty": 1.0,
            "presence_penalty": 0.2,
            "seed": 42,
        }
    )


@pytest.mark.parametrize("model", ["command-a-03-2025", "command-r-plus"])
async def test_safety_mode_off_only_goes_to_models_that_take_it(
    harness: CohereHarness, client: httpx.AsyncClient, model: str
) -> None:
    body = await send(harness, client, model=model)
    assert "safety_mode" not in body


async def test_example_messages_take_their_roles(
    harness: CohereHarness, client: httpx.AsyncClient
) -> None:
    messages = (
        PromptMessage("system", "You are Aria."),
        PromptMessage("system", "Hi fox", name="example_user"),
        PromptMessage("system", "*yips*", name="example_assistant"),
        PromptMessage("assistant", "Welcome.", name="Aria"),
        PromptMessage("user", " "),
        PromptMessage("user", "Aria: hi", name="Aria"),
    )
    body = await send(harness, client, messages=messages)
    assert body["messages"] == [
        {"role": "system", "content": "You are Aria."},
        {"role": "user", "content": "Hi fox"},
        {"role": "assistant", "content": "*yips*"},
        {"role": "assistant", "content": "Aria: Welcome."},
        {"role": "user", "content": "Aria: hi"},  # already prefixed, not twice
    ]


async def test_thinking_goes_only_to_models_that_think(
    harness: CohereHarness, client: httpx.AsyncClient
) -> None:
    sampler = {"reasoning_budget": 2048}
    body = await send(harness, client, model="command-a-reasoning-08-2025", sampler=sampler)
    assert body["thinking"] == {"type": "enabled", "token_budget": 2048}
    body = await send(harness, client, sampler=sampler)
    assert "thinking" not in body


# -- whole answers, models, tokens -------------------------------------------------------------


async def test_non_streaming_answer(fake: FakeCohere, client: httpx.AsyncClient) -> None:
    fake.enqueue(Text(["Hel", "lo"], finish="MAX_TOKENS", usage=(90, 2), reasoning=["hm"]))
    h = CohereHarness(fake, stream=False)
    events, error = await collect(h.backend(client), h.request())
    assert error is None
    assert fake.last.body["stream"] is False
    assert events == [
        ReasoningDelta("hm"),
        TextDelta("Hello"),
        Usage(90, 2),
        Finish(FinishReason.LENGTH, raw="MAX_TOKENS"),
    ]


async def test_models_come_from_v1_page_by_page_chat_models_only(
    client: httpx.AsyncClient,
) -> None:
    models = [
        {"name": "command-a-03-2025", "endpoints": ["chat", "generate"], "context_length": 256000},
        {"name": "embed-v4.0", "endpoints": ["embed"], "context_length": 128000},
        {"name": "command-r-08-2024", "endpoints": ["chat"], "context_length": 128000},
        {"name": "command-r7b-12-2024", "endpoints": ["chat"], "context_length": 128000},
    ]
    async with FakeCohere(api_key=SECRET, models=models, page_size=2) as fake:
        backend = CohereHarness(fake).backend(client)
        assert isinstance(backend, ModelCatalog)
        listed = await backend.list_models()
        paths = {r.path for r in fake.requests}
        tokens = [r.query.get("page_token") for r in fake.requests]
    assert paths == {"/v1/models"}
    assert tokens == [None, "2"]
    assert listed == [
        ModelInfo("command-a-03-2025", 256000),
        ModelInfo("command-r-08-2024", 128000),
        ModelInfo("command-r7b-12-2024", 128000),
    ]


async def test_count_tokens_uses_the_v1_tokenizer(
    harness: CohereHarness, client: httpx.AsyncClient
) -> None:
    backend = harness.inner(client)
    assert isinstance(backend, TokenCountingBackend)
    assert await backend.count_tokens("one two three") == 3
    assert harness.fake.last.path == "/v1/tokenize"
    assert harness.fake.last.body == {"text": "one two three", "model": MODEL}
    assert await backend.count_tokens("") == 0
    long_text = "word " * 20000  # 100,000 characters: more than one call takes
    assert await backend.count_tokens(long_text) == 20000
    assert harness.fake.requests[-1].path == "/v1/tokenize"
    assert len(harness.fake.requests) == 3


def test_v1_base_sits_beside_v2() -> None:
    assert v1_base("https://api.cohere.com/v2") == "https://api.cohere.com/v1"
    assert v1_base("https://api.cohere.ai/v2/") == "https://api.cohere.ai/v1"


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected", "words"),
    [
        (401, error_401(SECRET), BackendAuthError, "API key"),
        (498, ERROR_498, BackendAuthError, "API key"),
        (404, ERROR_404, BackendNotFound, "model name"),
        (400, ERROR_CONTEXT, BackendError, "context"),
        (402, ERROR_402, BackendError, "credits"),
        (429, ERROR_TRIAL_MONTH, BackendError, "monthly"),
        (429, ERROR_429, BackendRateLimited, "rate-limiting"),
        (500, ERROR_500, BackendUnavailable, "server running"),
        (503, ERROR_503, BackendUnavailable, "server running"),
    ],
)
async def test_each_error_has_its_own_hint(
    harness: CohereHarness,
    client: httpx.AsyncClient,
    status: int,
    body: dict[str, Any],
    expected: type[BackendError],
    words: str,
) -> None:
    await assert_error_hint(harness, client, Status(status, body), expected, words)


async def test_wrong_key_is_cohere_s_invalid_api_token(
    harness: CohereHarness, client: httpx.AsyncClient
) -> None:
    _, error = await collect(
        harness.backend(client, api_key="co-bad-1234", sleeps=[]), harness.request()
    )
    assert isinstance(error, BackendAuthError)
    assert AUTH_PROBLEM in error.user_message()


async def test_cohere_needs_a_key_and_chat_mode(client: httpx.AsyncClient) -> None:
    with pytest.raises(ConfigError, match="needs an API key"):
        build_backend("main", BackendConfig(provider="cohere"), client, None)
    with pytest.raises(ConfigError, match="text completion"):
        build_backend(
            "main", BackendConfig(provider="cohere", mode="text"), client, SecretStr("k")
        )
