"""The OpenAI-compatible family's contract harness: the fake server scripted in the
contract's words, and the real backend built on it through ``build_backend``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from bot.backends.base import Backend, GenerationRequest, Mode, PromptMessage
from bot.backends.registry import build_backend
from bot.backends.retry import RetryPolicy
from bot.config import BackendConfig
from tests.contract.backend_contract import ErrorKind
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openai_wire import (
    ERROR_404,
    ERROR_429,
    ERROR_500,
    ERROR_503,
    ERROR_CONTEXT,
    ERROR_QUOTA,
    HTML_502,
    Cut,
    Endless,
    Huge,
    InStreamError,
    Raw,
    Status,
    Text,
    error_401,
)

SECRET = "sk-live-3c9e5a7b1d2f4e6a8b0c"
ErrorStyle = Literal["openrouter", "tabby", "llamacpp"]


@dataclass
class OpenAIHarness:
    fake: FakeOpenAI
    provider: str
    mode: Mode
    error_style: ErrorStyle
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


def harness_for(fake: FakeOpenAI, provider: str, mode: Mode, **kw: Any) -> OpenAIHarness:
    return OpenAIHarness(fake, provider, mode, "openrouter", **kw)
