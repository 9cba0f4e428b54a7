"""What the native families' contract harnesses (llama.cpp, Ollama, NovelAI) share: the real
backend built through ``build_backend`` on a fake, with recorded retry waits.

Each family's test module subclasses :class:`NativeHarness` with the ``reply_*`` methods in
its server's own words.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from bot.backends.base import Backend, GenerationRequest, Mode, PromptMessage
from bot.backends.registry import build_backend
from bot.backends.retry import RetryPolicy
from bot.config import BackendConfig
from tests.fakes.typed_sse import TypedSSEServer

CHATML = "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class NativeHarness:
    fake: TypedSSEServer
    provider: str
    mode: Mode
    secret: str
    model: str = "test-model"
    stream: bool = True
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def disconnected(self) -> asyncio.Event:
        return self.fake.disconnected

    def request(self, **changes: Any) -> GenerationRequest:
        fields: dict[str, Any] = {
            "mode": self.mode,
            "model": "",
            "max_tokens": 64,
            "stop": ("\nUser:",),
        }
        if self.mode == "chat":
            fields["messages"] = (
                PromptMessage("system", "You are Aria."),
                PromptMessage("user", "Hello there", name="Sam"),
            )
        else:
            fields["prompt"] = CHATML
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
        settings: dict[str, Any] = {
            "provider": self.provider,
            "mode": self.mode,
            "base_url": base_url or self.fake.base_url,
            "model": self.model,
            "timeout": 5,
            "stream": self.stream,
        } | self.config

        async def record(seconds: float) -> None:
            assert sleeps is not None
            sleeps.append(seconds)

        return build_backend(
            "main",
            BackendConfig(**settings),
            client,
            SecretStr(api_key or self.secret),
            retry=RetryPolicy(attempts=3),
            sleep=asyncio.sleep if sleeps is None else record,
        )

    def request_count(self) -> int:
        return len(self.fake.requests)


def unwrap(backend: Backend) -> Any:
    """The family's own backend inside the retry wrapper (for its extra methods)."""
    return getattr(backend, "inner", backend)
