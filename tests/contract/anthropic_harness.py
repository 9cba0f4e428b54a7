"""The anthropic family's contract harness: the fake Claude API scripted in the contract's
words, and the real backend built on it through ``build_backend``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.contract.backend_contract import ErrorKind
from tests.contract.harness import ContractHarness
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.anthropic_wire import (
    ERROR_404,
    ERROR_429,
    ERROR_500,
    ERROR_529,
    ERROR_CONTEXT,
    ERROR_CREDIT,
    error_401,
)
from tests.fakes.base import Status

SECRET = "sk-ant-api03-7d1e9c2b5a3f8e6d"
MODEL = "claude-sonnet-4-5"


@dataclass
class ClaudeHarness(ContractHarness):
    fake: FakeAnthropic
    stream: bool = True
    secret: str = SECRET
    config: dict[str, Any] = field(default_factory=dict)
    provider = "claude"
    mode = "chat"
    model = request_model = MODEL
    malformed = (
        b"event: content_block_delta\ndata: "
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta"\n\n'
    )

    def request_count(self) -> int:
        return sum(r.path.endswith("/messages") for r in self.fake.requests)

    def error_replies(self, retry_after: str | None) -> Mapping[ErrorKind, object]:
        reset = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        limits = {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": reset,
        }
        return {
            "auth": Status(401, error_401(self.secret)),
            "not_found": Status(404, ERROR_404),
            "rate_limited": Status(
                429, ERROR_429, {"retry-after": retry_after} if retry_after else limits
            ),
            "server_error": Status(500, ERROR_500),
            "overloaded": Status(529, ERROR_529),
            "context": Status(400, ERROR_CONTEXT),
            "quota": Status(400, ERROR_CREDIT),
        }
