"""The cohere_v2 family's contract harness: the fake Cohere API scripted in the contract's
words, and the real backend built on it through ``build_backend``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from bot.backends.base import Backend, GenerationRequest, PromptMessage
from bot.backends.cohere import CohereBackend
from bot.backends.registry import build_backend
from bot.backends.retry import RetryingBackend, RetryPolicy
from bot.config import BackendConfig
from tests.contract.backend_contract import ErrorKind
from tests.fakes.cohere_server import (
    ERROR_404,
    ERROR_429,
    ERROR_500,
    ERROR_503,
    ERROR_CONTEXT,
    ERROR_TRIAL_MONTH,
    FakeCohere,
    error_401,
)
from tests.fakes.typed_sse import HTML_502, Cut, Endless, Huge, InStreamError, Raw, Status, Text

SECRET = "co-live-8e2d4b6f0a1c3e5d7f"
MODEL = "command-r-08-2024"


@dataclass
class CohereHarness:
    fake: FakeCohere
    stream: bool = True
    secret: str = SECRET
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def disconnected(self) -> asyncio.Event:
        return self.fake.disconnected

    def request(self, **changes: Any) -> GenerationRequest:
        fields: dict[str, Any] = {
            "mode": "chat",
            "model": MODEL,
            "max_tokens": 64,
            "stop": ("\nUser:",),
            "messages": (
                PromptMessage("system", "You are Aria."),
                PromptMessage("user", "Hello there", name="Sam"),
            ),
        }
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
            provider="cohere",
            base_url=base_url or self.fake.base_url,
            model=MODEL,
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

    def inner(self, client: httpx.AsyncClient, **kw: Any) -> CohereBackend:
        backend = self.backend(client, **kw)
        assert isinstance(backend, RetryingBackend)
        assert isinstance(backend.inner, CohereBackend)
        return backend.inner

    def request_count(self) -> int:
        return sum(r.path == "/v2/chat" for r in self.fake.requests)

    def reply_text(self, deltas: Sequence[str], *, usage: tuple[int, int] | None) -> None:
        self.fake.enqueue(Text(deltas, usage=usage))

    def reply_error(self, kind: ErrorKind, *, retry_after: str | None = None) -> None:
        replies = {
            "auth": Status(401, error_401(self.secret)),
            "not_found": Status(404, ERROR_404),
            "rate_limited": Status(
                429, ERROR_429, {"retry-after": retry_after} if retry_after else {}
            ),
            "server_error": Status(500, ERROR_500),
            "overloaded": Status(503, ERROR_503),
            "context": Status(400, ERROR_CONTEXT),
            "quota": Status(429, ERROR_TRIAL_MONTH),
        }
        self.fake.enqueue(replies[kind])

    def reply_error_after(self, deltas: Sequence[str]) -> None:
        self.fake.enqueue(InStreamError(deltas))

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
        self.fake.enqueue(
            Raw(
                b"event: content-delta\ndata: "
                b'{"type":"content-delta","index":0,"delta":{"message":{"content":\n\n'
            )
        )

    def reply_huge(self, size: int) -> None:
        self.fake.enqueue(Huge(size))
