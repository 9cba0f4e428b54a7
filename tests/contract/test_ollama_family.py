"""Ollama's native family (``provider: ollama-native`` / ``ollama-cloud``): the shared contract
against a loopback Ollama in both modes, the golden NDJSON transcript, the body on the wire
(options, num_ctx, keep_alive, raw prompts), thinking, and model errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest

from bot.backends.base import Finish, FinishReason, Mode, ReasoningDelta, TextDelta, Usage
from bot.backends.ollama import OllamaBackend
from bot.backends.presets import PRESETS
from bot.backends.registry import build_backend
from bot.config import BackendConfig, Sampler
from bot.errors import BackendNotFound, ConfigError
from tests.contract.backend_contract import BackendContract, ErrorKind, collect, text_of
from tests.contract.native_harness import NativeHarness
from tests.fakes.base import InStreamError, Raw, Status, Text
from tests.fakes.ollama_server import (
    ERROR_429,
    ERROR_500,
    ERROR_503,
    ERROR_CONTEXT,
    ERROR_QUOTA,
    GOLDEN_GENERATE,
    NDJSON,
    FakeOllama,
    error_401,
    not_found,
)

SECRET = "ollama-key-8f2c61d0b94e"


class OllamaHarness(NativeHarness):
    fake: FakeOllama
    raw_type = NDJSON
    malformed = b'{"model":"m","response":"Hi","done":fal\n'

    def error_replies(self, retry_after: str | None) -> Mapping[ErrorKind, object]:
        return {
            "auth": Status(401, error_401(self.secret)),
            "not_found": Status(404, not_found("test-model")),
            "rate_limited": Status(429, ERROR_429, {"retry-after": retry_after or "1"}),
            "server_error": Status(500, ERROR_500),
            "overloaded": Status(503, ERROR_503),
            "context": Status(400, ERROR_CONTEXT),
            "quota": Status(402, ERROR_QUOTA),
        }


HARNESSES: dict[str, tuple[str, Mode]] = {
    # ollama.com (a key is required), and a local server behind a proxy that wants one
    "cloud-chat": ("ollama-cloud", "chat"),
    "local-text": ("ollama-native", "text"),
}


@pytest.fixture(params=list(HARNESSES))
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[OllamaHarness]:
    provider, mode = HARNESSES[request.param]
    async with FakeOllama(api_key=SECRET) as fake:
        yield OllamaHarness(fake, provider, mode, SECRET)
        assert fake.body_rejections() == []


class TestOllamaContract(BackendContract):
    pass


@pytest.fixture
async def local() -> AsyncIterator[FakeOllama]:
    """A local server: no key."""
    async with FakeOllama(models=("test-model", "qwen3:8b")) as fake:
        yield fake
        assert fake.body_rejections() == []


def keyless(fake: FakeOllama, mode: Mode, **config: Any) -> OllamaHarness:
    return OllamaHarness(fake, "ollama-native", mode, "", config=config)


async def run(
    h: OllamaHarness, client: httpx.AsyncClient, **changes: Any
) -> tuple[list[Any], dict[str, Any]]:
    backend = build_backend("main", BackendConfig(**h_config(h)), client, None)
    events, error = await collect(backend, h.request(**changes))
    assert error is None, error
    body: dict[str, Any] = h.fake.last.body
    return events, body


def h_config(h: OllamaHarness) -> dict[str, Any]:
    return {
        "provider": h.provider,
        "mode": h.mode,
        "base_url": h.fake.base_url,
        "model": h.model,
        "stream": h.stream,
    } | h.config


def _recorder(sleeps: list[float]) -> Any:
    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    return record


# -- golden transcript and events --------------------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 9])
async def test_golden_generate_stream(
    local: FakeOllama, client: httpx.AsyncClient, split: int
) -> None:
    local.enqueue(Raw(GOLDEN_GENERATE, content_type=NDJSON, split=split))
    events, _ = await run(keyless(local, "text"), client)
    assert events == [TextDelta("Hi"), Usage(None, 1), Finish(FinishReason.STOP, raw="stop")]


@pytest.mark.parametrize("mode", ["chat", "text"])
async def test_thinking_is_reasoning_then_text(
    local: FakeOllama, client: httpx.AsyncClient, mode: Mode
) -> None:
    local.enqueue(Text(["Hi", "!"], reasoning=["Sam greets me."], usage=(20, 2)))
    events, _ = await run(keyless(local, mode), client)
    assert events == [
        ReasoningDelta("Sam greets me."),
        TextDelta("Hi"),
        TextDelta("!"),
        Usage(20, 2),
        Finish(FinishReason.STOP, raw="stop"),
    ]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("length", FinishReason.LENGTH), ("stop", FinishReason.STOP), ("load", FinishReason.STOP)],
)
async def test_done_reasons(
    local: FakeOllama, client: httpx.AsyncClient, raw: str, reason: FinishReason
) -> None:
    local.enqueue(Text(["Hi"], finish=raw))
    events, _ = await run(keyless(local, "chat"), client)
    assert events[-1] == Finish(reason, raw=raw)


@pytest.mark.parametrize("mode", ["chat", "text"])
async def test_non_streaming_answer(
    local: FakeOllama, client: httpx.AsyncClient, mode: Mode
) -> None:
    local.enqueue(Text(["Hello", " Sam"], finish="length", usage=(30, 2)))
    h = keyless(local, mode)
    h.stream = False
    events, body = await run(h, client)
    assert body["stream"] is False
    assert events == [TextDelta("Hello Sam"), Usage(30, 2), Finish(FinishReason.LENGTH, "length")]


# -- the request on the wire -------------------------------------------------------------------

SAMPLER = Sampler(
    temperature=0.7,
    top_k=40,
    min_p=0.05,
    typical_p=0.9,
    repetition_penalty=1.1,
    repetition_penalty_range=256,
    seed=42,
    mirostat_mode=2,
    dry_multiplier=0.8,
    xtc_probability=0.5,
    top_a=0.2,
)


async def test_chat_body(local: FakeOllama, client: httpx.AsyncClient) -> None:
    h = keyless(local, "chat")
    _, body = await run(h, client, sampler=SAMPLER.as_dict(), stop=("\nSam:", "\nSam:"))
    assert local.last.path == "/api/chat"
    assert "authorization" not in local.last.headers  # a local server takes no key
    assert body["model"] == "test-model"
    assert body["stream"] is True
    assert body["messages"] == [
        {"role": "system", "content": "You are Aria."},
        {"role": "user", "content": "Sam: Hello there"},  # no `name` field in Ollama
    ]
    assert body["options"] == {
        "num_predict": 64,
        "num_ctx": 8192,  # always: the server's small default silently truncates
        "stop": ["\nSam:"],
        "temperature": 0.7,
        "top_k": 40,
        "min_p": 0.05,
        "typical_p": 0.9,
        "repeat_penalty": 1.1,
        "repeat_last_n": 256,
        "seed": 42,
        "mirostat": 2,
    }
    assert "keep_alive" not in body and "think" not in body


async def test_text_body_is_a_raw_prompt(local: FakeOllama, client: httpx.AsyncClient) -> None:
    h = keyless(local, "text", context_size=4096)
    _, body = await run(h, client)
    assert local.last.path == "/api/generate"
    assert body["prompt"].startswith("<|im_start|>user")
    assert body["raw"] is True  # the prompt is templated already: keep Ollama's template out
    assert body["options"]["num_ctx"] == 4096


@pytest.mark.parametrize("keep_alive", [-1, "30m", 0])
async def test_keep_alive_is_sent_as_configured(
    local: FakeOllama, client: httpx.AsyncClient, keep_alive: str | int
) -> None:
    _, body = await run(keyless(local, "chat", keep_alive=keep_alive), client)
    assert body["keep_alive"] == keep_alive


async def test_think_and_json_schema(local: FakeOllama, client: httpx.AsyncClient) -> None:
    backend = OllamaBackend(
        "main",
        client,
        preset=PRESETS["ollama-native"],
        base_url=local.base_url,
        model="qwen3:8b",
        num_ctx=2048,
        think=False,
    )
    schema = {"type": "object", "properties": {"mood": {"type": "string"}}}
    h = keyless(local, "chat")
    _, error = await collect(backend, h.request(sampler={"json_schema": schema}))
    assert error is None
    assert local.last.body["think"] is False
    assert local.last.body["format"] == schema
    assert "json_schema" not in local.last.body["options"]


@pytest.mark.parametrize("suffix", ["/v1", "/api/", ""])
async def test_base_url_is_cut_to_the_root(
    local: FakeOllama, client: httpx.AsyncClient, suffix: str
) -> None:
    h = keyless(local, "chat")
    h.config = {"base_url": local.base_url + suffix}
    await run(h, client)
    assert local.last.path == "/api/chat"


# -- models and their errors -------------------------------------------------------------------


async def test_a_model_that_is_not_pulled_says_how_to_pull_it(
    local: FakeOllama, client: httpx.AsyncClient
) -> None:
    h = keyless(local, "chat")
    h.model = "llama3.2:3b"
    sleeps: list[float] = []
    backend = build_backend(
        "main", BackendConfig(**h_config(h)), client, None, sleep=_recorder(sleeps)
    )
    events, error = await collect(backend, h.request())
    assert events == []
    assert isinstance(error, BackendNotFound)
    message = error.user_message()
    assert 'model "llama3.2:3b" not found' in message
    assert "`ollama pull llama3.2:3b`" in message
    assert sleeps == []  # not worth retrying


async def test_a_model_name_is_required_at_start_up(client: httpx.AsyncClient) -> None:
    config = BackendConfig(provider="ollama-native", base_url="http://127.0.0.1:1")
    with pytest.raises(ConfigError) as caught:
        build_backend("main", config, client, None)
    assert "`model`" in caught.value.user_message()


async def test_list_models_from_tags(local: FakeOllama, client: httpx.AsyncClient) -> None:
    backend = build_backend(
        "main", BackendConfig(**h_config(keyless(local, "chat"))), client, None
    )
    models = await backend.list_models()  # type: ignore[attr-defined]
    assert [m.id for m in models] == ["test-model", "qwen3:8b"]
    assert local.last.path == "/api/tags"


async def test_a_wrong_base_url_is_told_apart_from_a_missing_model(
    client: httpx.AsyncClient,
) -> None:
    async with FakeOllama() as fake:
        h = keyless(fake, "chat")
        h.config = {"base_url": fake.base_url + "/ollama"}
        backend = build_backend("main", BackendConfig(**h_config(h)), client, None)
        _, error = await collect(backend, h.request())
    assert isinstance(error, BackendNotFound)
    assert "`base_url`" in error.user_message()
    assert "ollama pull" not in error.user_message()


async def test_error_line_after_tokens_keeps_the_partial(
    local: FakeOllama, client: httpx.AsyncClient
) -> None:
    local.enqueue(InStreamError(["Once", " upon"]))
    h = keyless(local, "text")
    backend = build_backend("main", BackendConfig(**h_config(h)), client, None)
    events, error = await collect(backend, h.request())
    assert text_of(events) == "Once upon"
    assert error is not None
    assert "an error was encountered while running the model" in error.user_message()
    assert len(local.requests) == 1
