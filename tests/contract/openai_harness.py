"""The OpenAI-compatible family's contract harness: the fake server scripted in the
contract's words, and the real backend built on it through ``build_backend``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.backends.base import Mode
from tests.contract.backend_contract import ErrorKind
from tests.contract.harness import ContractHarness
from tests.fakes.base import Status
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openai_wire import (
    ERROR_404,
    ERROR_429,
    ERROR_500,
    ERROR_503,
    ERROR_CONTEXT,
    ERROR_QUOTA,
    InStreamError,
    Text,
    error_401,
)

SECRET = "sk-live-3c9e5a7b1d2f4e6a8b0c"
ErrorStyle = Literal["openrouter", "tabby", "llamacpp"]


@dataclass
class OpenAIHarness(ContractHarness):
    fake: FakeOpenAI
    provider: str
    mode: Mode
    error_style: ErrorStyle
    stream: bool = True
    secret: str = SECRET
    config: dict[str, Any] = field(default_factory=dict)
    model = request_model = "gpt-test"
    malformed = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}\n\n'

    def error_replies(self, retry_after: str | None) -> Mapping[ErrorKind, object]:
        limits = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}
        return {
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

    def reply_text(self, deltas: Sequence[str], *, usage: tuple[int, int] | None) -> None:
        self.fake.enqueue(Text(deltas, usage=usage))

    def reply_error_after(self, deltas: Sequence[str]) -> None:
        self.fake.enqueue(InStreamError(deltas, self.error_style))


def harness_for(fake: FakeOpenAI, provider: str, mode: Mode, **kw: Any) -> OpenAIHarness:
    return OpenAIHarness(fake, provider, mode, "openrouter", **kw)
