"""The OpenAI-compatible family: the shared contract over several provider presets and both
modes, then golden transcripts and the request each preset puts on the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.backends.base import Finish, FinishReason, Mode, ReasoningDelta, TextDelta, Usage
from bot.config import Sampler
from bot.errors import BackendError
from tests.contract.backend_contract import BackendContract, collect, replay, text_of
from tests.contract.openai_harness import SECRET, ErrorStyle, OpenAIHarness, harness_for
from tests.fakes.base import Raw
from tests.fakes.openai_server import AuthStyle, FakeOpenAI
from tests.fakes.openai_wire import (
    GOLDEN_CHAT,
    GOLDEN_DEEPSEEK_REASONER,
    GOLDEN_LLAMACPP_ERROR,
    GOLDEN_OPENROUTER_ERROR,
    GOLDEN_TEXT,
    GOLDEN_TEXT_NO_DONE,
)

HARNESSES: dict[str, tuple[str, Mode, AuthStyle, int | None, ErrorStyle]] = {
    "openai-chat": ("openai", "chat", "bearer", 4, "openrouter"),
    "openrouter-text": ("openrouter", "text", "bearer", None, "openrouter"),
    "llamacpp-text": ("llamacpp", "text", "bearer", None, "llamacpp"),
    "tabbyapi-chat": ("tabbyapi", "chat", "x-api-key", None, "tabby"),
    "mancer-chat": ("mancer", "chat", "both", None, "tabby"),
}


@pytest.fixture(params=list(HARNESSES))
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[OpenAIHarness]:
    provider, mode, auth, max_stop, style = HARNESSES[request.param]
    async with FakeOpenAI(api_key=SECRET, auth=auth, max_stop=max_stop) as fake:
        yield OpenAIHarness(fake, provider, mode, style)
        assert fake.body_rejections() == []


class TestOpenAIContract(BackendContract):
    pass


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=SECRET) as server:
        yield server
        assert server.body_rejections() == []


# -- golden transcripts ------------------------------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 5])
async def test_golden_chat_stream(fake: FakeOpenAI, client: httpx.AsyncClient, split: int) -> None:
    h = harness_for(fake, "openai", "chat")
    events, error = await replay(h, client, GOLDEN_CHAT, split=split)
    assert error is None
    assert events == [TextDelta("Hi"), Finish(FinishReason.STOP, raw="stop")]


async def test_deepseek_reasoner_streams_reasoning_then_text(
    fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    h = harness_for(fake, "deepseek", "chat")
    events, error = await replay(h, client, GOLDEN_DEEPSEEK_REASONER, split=3)
    assert error is None
    assert events == [
        ReasoningDelta("The user greets."),
        TextDelta("Hello"),
        TextDelta("!"),
        Usage(12, 7),
        Finish(FinishReason.STOP, raw="stop"),
    ]


async def test_openrouter_in_band_error_after_a_delta(
    fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    h = harness_for(fake, "openrouter", "chat")
    events, error = await replay(h, client, GOLDEN_OPENROUTER_ERROR, sleeps=[])
    assert text_of(events) == "Once"
    assert isinstance(error, BackendError)
    assert "Provider returned error" in error.user_message()


@pytest.mark.parametrize("body", [GOLDEN_TEXT, GOLDEN_TEXT_NO_DONE], ids=["done", "no-done"])
async def test_text_stream_with_and_without_done(
    fake: FakeOpenAI, client: httpx.AsyncClient, body: bytes
) -> None:
    h = harness_for(fake, "textgen-webui", "text")
    events, error = await replay(h, client, body)
    assert error is None
    assert events == [TextDelta("Hi"), Finish(FinishReason.LENGTH, raw="length")]


async def test_llamacpp_error_line_explains_the_context_limit(
    fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    h = harness_for(fake, "llamacpp", "text")
    events, error = await replay(h, client, GOLDEN_LLAMACPP_ERROR)
    assert text_of(events) == "Hi"
    assert error is not None
    assert "context" in error.user_message()


async def test_comments_and_utf8_split_mid_character(
    fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.enqueue(
        Raw(b": keep-alive\n\n" + GOLDEN_CHAT.replace(b"Hi", "Grüße 🐉".encode()), split=1)
    )
    h = harness_for(fake, "openai", "chat")
    events, error = await collect(h.backend(client), h.request())
    assert error is None
    assert text_of(events) == "Grüße 🐉"


# -- request bodies and headers per preset ----------------------------------------------------

SAMPLER = Sampler(temperature=0.7, top_k=40, min_p=0.05, repetition_penalty=1.1, seed=42)
STOPS = ("\nUser:", "\nSam:", "</s>", "###", "\nAria:", "<|im_end|>")


async def send(h: OpenAIHarness, client: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    changes.setdefault("sampler", SAMPLER.as_dict())
    changes.setdefault("stop", STOPS)
    _, error = await collect(h.backend(client), h.request(**changes))
    assert error is None, error
    assert h.fake.rejections == []
    body: dict[str, Any] = h.fake.last.body
    return body


async def test_openai_chat_body(fake: FakeOpenAI, client: httpx.AsyncClient) -> None:
    body = await send(harness_for(fake, "openai", "chat"), client)
    assert fake.last.path == "/v1/chat/completions"
    assert fake.last.headers["authorization"] == f"Bearer {SECRET}"
    assert body["model"] == "gpt-test"
    assert body["max_completion_tokens"] == 64
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["stop"] == list(STOPS[:4])  # OpenAI takes at most four
    assert body["messages"][1] == {"role": "user", "content": "Hello there", "name": "Sam"}
    assert {k: body[k] for k in ("temperature", "seed")} == {"temperature": 0.7, "seed": 42}
    assert not {"top_k", "min_p", "repetition_penalty"} & set(body)


async def test_mistral_body_passes_a_strict_server(client: httpx.AsyncClient) -> None:
    allowed = frozenset(
        {"model", "messages", "max_tokens", "stream", "stop", "temperature", "top_p"}
        | {"random_seed", "safe_prompt", "presence_penalty", "frequency_penalty"}
    )
    async with FakeOpenAI(api_key=SECRET, max_stop=None, strict_keys=allowed) as fake:
        body = await send(harness_for(fake, "mistral", "chat"), client)
    assert body["random_seed"] == 42
    assert body["safe_prompt"] is False
    assert body["messages"][1] == {"role": "user", "content": "Sam: Hello there"}


@pytest.mark.parametrize(
    ("provider", "auth", "expected"),
    [
        ("tabbyapi", "x-api-key", {"x-api-key": SECRET}),
        ("mancer", "both", {"x-api-key": SECRET, "authorization": f"Bearer {SECRET}"}),
        (
            "openrouter",
            "bearer",
            {"http-referer": "https://localhost/sillybot", "x-title": "sillybot"},
        ),
    ],
)
async def test_auth_and_extra_headers(
    client: httpx.AsyncClient, provider: str, auth: Any, expected: dict[str, str]
) -> None:
    async with FakeOpenAI(api_key=SECRET, auth=auth, max_stop=None) as fake:
        await send(harness_for(fake, provider, "chat"), client)
        headers = fake.last.headers
    assert {k: headers.get(k) for k in expected} == expected
    if auth == "x-api-key":
        assert "authorization" not in headers


async def test_llamacpp_text_body(fake: FakeOpenAI, client: httpx.AsyncClient) -> None:
    fake.max_stop = None
    body = await send(harness_for(fake, "llamacpp", "text"), client)
    assert fake.last.path == "/v1/completions"
    assert body["prompt"].startswith("<|im_start|>user")
    assert body["max_tokens"] == 64
    assert body["repeat_penalty"] == 1.1
    assert body["stop"] == list(STOPS)
    assert "messages" not in body


async def test_perplexity_gets_no_stop_strings(
    fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    body = await send(harness_for(fake, "perplexity", "chat"), client)
    assert "stop" not in body


async def test_custom_provider_is_just_config(client: httpx.AsyncClient) -> None:
    async with FakeOpenAI(api_key=None, prefix="/api/openai", max_stop=None) as fake:
        h = harness_for(fake, "custom", "chat", config={"headers": {"X-Team": "blue"}})
        body = await send(h, client)
        assert fake.last.path == "/api/openai/chat/completions"
        assert fake.last.headers["x-team"] == "blue"
    assert "stream_options" not in body


async def test_config_headers_override_preset_headers(
    fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.max_stop = None
    h = harness_for(fake, "openrouter", "chat", config={"headers": {"x-title": "My Bot"}})
    await send(h, client)
    assert fake.last.headers["x-title"] == "My Bot"
    assert fake.last.raw_headers.count("x-title") == 1  # replaced, not sent twice
