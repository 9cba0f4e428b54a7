"""The cohere_v2 family's contract harness: the fake Cohere API scripted in the contract's
words, and the real backend built on it through ``build_backend``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.contract.backend_contract import ErrorKind
from tests.contract.harness import ContractHarness
from tests.fakes.base import Status
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

SECRET = "co-live-8e2d4b6f0a1c3e5d7f"
MODEL = "command-r-08-2024"


@dataclass
class CohereHarness(ContractHarness):
    fake: FakeCohere
    stream: bool = True
    secret: str = SECRET
    config: dict[str, Any] = field(default_factory=dict)
    provider = "cohere"
    mode = "chat"
    model = request_model = MODEL
    malformed = (
        b"event: content-delta\ndata: "
        b'{"type":"content-delta","index":0,"delta":{"message":{"content":\n\n'
    )

    def request_count(self) -> int:
        return sum(r.path == "/v2/chat" for r in self.fake.requests)

    def error_replies(self, retry_after: str | None) -> Mapping[ErrorKind, object]:
        return {
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
