"""Error mapping details that the loopback contract does not reach, and the retry policy."""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.backends.base import Finish, FinishReason, GenerationRequest, StreamEvent, TextDelta
from bot.backends.errors import openai_error, parse_duration, retry_after
from bot.backends.retry import RetryingBackend, RetryPolicy
from bot.errors import (
    BackendAuthError,
    BackendError,
    BackendProtocolError,
    BackendRateLimited,
    BackendUnavailable,
)

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6m0s", 360), ("1.5s", 1.5), ("20ms", 0.02), ("1h2m3s", 3723), ("7", 7), ("soon", None)],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_retry_after_forms() -> None:
    date = email.utils.formatdate(NOW + 30, usegmt=True)
    assert retry_after({"retry-after": "12"}, lambda: NOW) == 12
    assert retry_after({"retry-after": date}, lambda: NOW) == pytest.approx(30)
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    limits = {
        "x-ratelimit-remaining-requests": "5",
        "x-ratelimit-reset-requests": "6m0s",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "2s",
    }
    assert retry_after(limits) == 2  # the exhausted limit decides, not the longest
    assert retry_after({}) is None


def response(status: int, body: bytes, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://x"))


@pytest.mark.parametrize(
    ("status", "body", "expected", "words"),
    [
        (
            403,
            b'{"error":{"message":"Flagged","metadata":{"reasons":["x"]}}}',
            BackendAuthError,
            "Flagged",
        ),
        (402, b'{"error":{"code":402,"message":"Insufficient credits"}}', BackendError, "credits"),
        (
            422,
            b'{"detail":[{"msg":"Extra inputs are not permitted"}]}',
            BackendError,
            "Extra inputs",
        ),
        (401, b'{"detail":"Unauthorized"}', BackendAuthError, "Unauthorized"),
        (
            503,
            b'{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}',
            BackendUnavailable,
            "Loading model",
        ),
        (301, b"", BackendProtocolError, "redirects"),
        (500, b"Internal Server Error", BackendUnavailable, "Internal Server Error"),
    ],
)
def test_status_and_body(
    status: int, body: bytes, expected: type[BackendError], words: str
) -> None:
    error = openai_error("main", response(status, body), body=body)
    assert type(error) is expected
    assert words in error.user_message()
    assert error.backend == "main"


def test_long_server_messages_are_truncated_for_chat() -> None:
    body = b'{"error":{"message":"' + b"x" * 5000 + b'"}}'
    error = openai_error("main", response(500, body), body=body)
    assert len(error.message) < 400
    assert len(error.detail) <= 2000


def test_openrouter_wrapped_provider_error_keeps_the_raw_reason() -> None:
    payload = {"error": {"code": 502, "message": "Provider error", "metadata": {"raw": "boom"}}}
    error = openai_error("main", payload)
    assert isinstance(error, BackendUnavailable)
    assert "boom" in error.message
    assert "mid-stream" in error.message


def test_secrets_are_redacted_everywhere() -> None:
    body = b'{"error":{"message":"bad key sk-abc123","code":"invalid_api_key"}}'
    error = openai_error("main", response(401, body), body=body, secrets=["sk-abc123"])
    assert "sk-abc123" not in error.message + error.detail + str(error)


class Scripted:
    """A backend that fails ``failures`` times before (or after) its first delta."""

    name = "scripted"

    def __init__(self, failures: list[BackendError], *, after_first: bool = False) -> None:
        self.failures = failures
        self.after_first = after_first
        self.calls = 0
        self.closed = 0

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        self.calls += 1
        try:
            if self.after_first:
                yield TextDelta("partial")
            if self.failures:
                raise self.failures.pop(0)
            yield TextDelta("ok")
            yield Finish(FinishReason.STOP)
        finally:
            self.closed += 1


REQUEST = GenerationRequest(mode="chat", model="m", max_tokens=5)


async def run(backend: RetryingBackend) -> tuple[list[StreamEvent], BackendError | None]:
    events: list[StreamEvent] = []
    try:
        async for event in backend.stream(REQUEST):
            events.append(event)  # noqa: PERF401 - the partial is the point
    except BackendError as exc:
        return events, exc
    return events, None


async def test_retry_backs_off_then_succeeds() -> None:
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    inner = Scripted([BackendUnavailable("down"), BackendUnavailable("down")])
    events, error = await run(RetryingBackend(inner, RetryPolicy(attempts=3), sleep=sleep))
    assert error is None and events[0] == TextDelta("ok")
    assert sleeps == [1.0, 2.0]
    assert inner.closed == 3


async def test_a_long_rate_limit_is_not_waited_out() -> None:
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    inner = Scripted([BackendRateLimited("slow down", retry_after=600)])
    _, error = await run(RetryingBackend(inner, RetryPolicy(max_wait=30), sleep=sleep))
    assert isinstance(error, BackendRateLimited)
    assert sleeps == [] and inner.calls == 1


async def test_no_retry_after_the_first_delta() -> None:
    async def sleep(s: float) -> None:
        raise AssertionError("must not wait")

    inner = Scripted([BackendUnavailable("down")], after_first=True)
    events, error = await run(RetryingBackend(inner, sleep=sleep))
    assert events == [TextDelta("partial")]
    assert isinstance(error, BackendUnavailable)
    assert inner.calls == 1


async def test_other_errors_are_not_retried() -> None:
    inner = Scripted([BackendAuthError("no")])
    _, error = await run(RetryingBackend(inner))
    assert isinstance(error, BackendAuthError) and inner.calls == 1
