"""The OpenAI-compatible family: the shared contract over several provider presets and both
modes, then what is particular to this family (golden transcripts, request bodies per
preset, non-streaming, model lists, the registry)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest
from pydantic import SecretStr

from bot.backends.base import (
    Backend,
    Finish,
    FinishReason,
    GenerationRequest,
    Mode,
    ModelCatalog,
    ModelInfo,
    PromptMessage,
    ReasoningDelta,
    TextDelta,
    Usage,
)
from bot.backends.openai_compat import OpenAICompatBackend
from bot.backends.presets import PRESETS, ProviderPreset
from bot.backends.registry import build_backend
from bot.backends.retry import RetryingBackend, RetryPolicy
from bot.config import BackendConfig, Sampler
from bot.errors import BackendAuthError, BackendError, ConfigError
from tests.contract.backend_contract import (
    BackendContract,
    ErrorKind,
    assert_no_secret,
    collect,
    text_of,
)
from tests.fakes.openai_server import (
    ERROR_404,
    ERROR_429,
    ERROR_500,
    ERROR_503,
    ERROR_CONTEXT,
    ERROR_QUOTA,
    GOLDEN_CHAT,
    GOLDEN_DEEPSEEK_REASONER,
    GOLDEN_LLAMACPP_ERROR,
    GOLDEN_OPENROUTER_ERROR,
    GOLDEN_TEXT,
    GOLDEN_TEXT_NO_DONE,
    HTML_502,
    Cut,
    Endless,
    FakeOpenAI,
    Huge,
    InStreamError,
    Raw,
    Status,
    Text,
    error_401,
)

SECRET = "sk-live-3c9e5a7b1d2f4e6a8b0c"


@dataclass
class OpenAIHarness:
    fake: FakeOpenAI
    provider: str
    mode: Mode
    error_style: Literal["openrouter", "tabby", "llamacpp"]
    stream: bool = True
    secret: str = SECRET
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def disconnected(self) -> asyncio.Event:
        return self.fake.disconnected

    def request(self, **changes: Any) -> GenerationRequest:
        fields: dict[str, Any] = {
            "mode": self.mode,
            "model": "gpt-test",
            "max_tokens": 64,
            "stop": ("\nUser:",),
        }
        if self.mode == "chat":
            fields["messages"] = (
                PromptMessage("system", "You are Aria."),
                PromptMessage("user", "Hello there", name="Sam"),
            )
        else:
            fields["prompt"] = "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"
        fields.update(changes)
        return GenerationRequest(**fields)

    def backend(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        sleeps: list[float] | None = None,
    ) -> Backend:
        config = BackendConfig(
            provider=self.provider,
            mode=self.mode,
            base_url=base_url or self.fake.base_url,
            model="gpt-test",
            timeout=5,
            stream=self.stream,
            **self.config,
        )

        async def record(seconds: float) -> None:
            assert sleeps is not None
            sleeps.append(seconds)

        return build_backend(
            "main",
            config,
            client,
            SecretStr(api_key or self.secret),
            retry=RetryPolicy(attempts=3),
            sleep=asyncio.sleep if sleeps is None else record,
        )

    def request_count(self) -> int:
        return len(self.fake.requests)

    def reply_text(self, deltas: Sequence[str], *, usage: tuple[int, int] | None) -> None:
        self.fake.enqueue(Text(deltas, usage=usage))

    def reply_error(self, kind: ErrorKind, *, retry_after: str | None = None) -> None:
        limits = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}
        replies = {
            "auth": Status(401, error_401(self.secret)),
            "not_found": Status(404, ERROR_404),
            "rate_limited": Status(
                429, ERROR_429, {"retry-after": retry_after} if retry_after else limits
            ),
            "server_error": Status(500, ERROR_500),
            "overloaded": Status(503, ERROR_503),
            "context": Status(400, ERROR_CONTEXT),
            "quota": Status(429, ERROR_QUOTA),
        }
        self.fake.enqueue(replies[kind])

    def reply_error_after(self, deltas: Sequence[str]) -> None:
        self.fake.enqueue(InStreamError(deltas, self.error_style))

    def reply_cut_after(self, deltas: Sequence[str]) -> None:
        self.fake.enqueue(Cut(deltas))

    def reply_endless(self) -> None:
        self.fake.enqueue(Endless())

    def reply_html(self, status: int) -> None:
        if status == 200:
            self.fake.enqueue(Raw(HTML_502, content_type="text/html"))
        else:
            self.fake.enqueue(Status(status, HTML_502))

    def reply_empty(self) -> None:
        self.fake.enqueue(Raw(b""))

    def reply_malformed(self) -> None:
        self.fake.enqueue(Raw(b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}\n\n'))

    def reply_huge(self, size: int) -> None:
        self.fake.enqueue(Huge(size))


# provider, mode, the fake's auth header form, its stop limit, how it reports stream errors
HARNESSES = {
    "openai-chat": ("openai", "chat", "bearer", 4, "openrouter"),
    "openrouter-text": ("openrouter", "text", "bearer", None, "openrouter"),
    "llamacpp-text": ("llamacpp", "text", "bearer", None, "llamacpp"),
    "tabbyapi-chat": ("tabbyapi", "chat", "x-api-key", None, "tabby"),
    "mancer-chat": ("mancer", "chat", "both", None, "tabby"),
}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as c:
        yield c


@pytest.fixture(params=list(HARNESSES))
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[OpenAIHarness]:
    provider, mode, auth, max_stop, style = HARNESSES[request.param]
    async with FakeOpenAI(api_key=SECRET, auth=auth, max_stop=max_stop) as fake:
        yield OpenAIHarness(fake, provider, mode, style)


class TestOpenAIContract(BackendContract):
    pass


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=SECRET) as server:
        yield server


def harness_for(fake: FakeOpenAI, provider: str, mode: Mode, **kw: Any) -> OpenAIHarness:
    return OpenAIHarness(fake, provider, mode, "openrouter", **kw)


# -- golden transcripts ------------------------------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 5])
async def test_golden_chat_stream(fake: FakeOpenAI, client: httpx.AsyncClient, split: int) -> None:
    fake.enqueue(Raw(GOLDEN_CHAT, split=split))
    h = harness_for(fake, "openai", "chat")
    events, error = await collect(h.backend(client), h.request())
    assert error is None
    assert events == [TextDelta("Hi"), Finish(FinishReason.STOP, raw="stop")]


async def test_deepseek_reasoner_streams_reasoning_then_text(
    fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.enqueue(Raw(GOLDEN_DEEPSEEK_REASONER, split=3))
    h = harness_for(fake, "deepseek", "chat")
    events, error = await collect(h.backend(client), h.request())
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
    fake.enqueue(Raw(GOLDEN_OPENROUTER_ERROR))
    h = harness_for(fake, "openrouter", "chat")
    events, error = await collect(h.backend(client, sleeps=[]), h.request())
    assert text_of(events) == "Once"
    assert isinstance(error, BackendError)
    assert "Provider returned error" in error.user_message()


@pytest.mark.parametrize("body", [GOLDEN_TEXT, GOLDEN_TEXT_NO_DONE], ids=["done", "no-done"])
async def test_text_stream_with_and_without_done(
    fake: FakeOpenAI, client: httpx.AsyncClient, body: bytes
) -> None:
    fake.enqueue(Raw(body))
    h = harness_for(fake, "textgen-webui", "text")
    events, error = await collect(h.backend(client), h.request())
    assert error is None
    assert events == [TextDelta("Hi"), Finish(FinishReason.LENGTH, raw="length")]


async def test_llamacpp_error_line_explains_the_context_limit(
    fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    fake.enqueue(Raw(GOLDEN_LLAMACPP_ERROR))
    h = harness_for(fake, "llamacpp", "text")
    events, error = await collect(h.backend(client), h.request())
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
    models = [{"id": "gpt-test", "object": "model"}, {"id": "big", "context_length": 131072}]
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
    presets = {"future": ProviderPreset("future", "http://127.0.0.1:1", family="anthropic")}
    with pytest.raises(ConfigError) as caught:
        build_backend("x", BackendConfig(provider="future"), client, None, presets=presets)
    assert "anthropic" in caught.value.message and "openai" in caught.value.message


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
