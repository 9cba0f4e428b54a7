"""The contract every streaming backend family passes, against its loopback fake.

A family's test module defines a ``harness`` fixture returning a :class:`Harness` (its fake
server plus a way to build the real backend on it) and subclasses :class:`BackendContract`.
Every test drives the real client over real HTTP and asserts what a caller would see.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Literal, Protocol

import httpx
import pytest

from bot.backends.base import (
    Backend,
    Finish,
    FinishReason,
    GenerationRequest,
    StreamEvent,
    TextDelta,
    Usage,
)
from bot.errors import (
    BackendAuthError,
    BackendError,
    BackendNotFound,
    BackendProtocolError,
    BackendRateLimited,
    BackendStreamCut,
    BackendUnavailable,
)
from tests.fakes.base import LoopbackServer, Raw, Status

ErrorKind = Literal[
    "auth", "not_found", "rate_limited", "server_error", "overloaded", "context", "quota"
]


class Harness(Protocol):
    """A family's fake, scripted in the contract's words."""

    @property
    def fake(self) -> LoopbackServer: ...

    @property
    def secret(self) -> str: ...

    @property
    def disconnected(self) -> asyncio.Event: ...

    def request(self) -> GenerationRequest: ...

    def backend(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        sleeps: list[float] | None = None,
    ) -> Backend:
        """The real backend (as ``build_backend`` makes it, retries included); ``sleeps``
        records retry waits instead of sleeping."""
        ...

    def request_count(self) -> int: ...

    def reply_text(self, deltas: Sequence[str], *, usage: tuple[int, int] | None) -> None: ...

    def reply_error(self, kind: ErrorKind, *, retry_after: str | None = None) -> None:
        """An HTTP error as the real server words it; bodies echo the API key."""
        ...

    def reply_error_after(self, deltas: Sequence[str]) -> None:
        """Deltas under HTTP 200, then an error reported inside the stream."""
        ...

    def reply_cut_after(self, deltas: Sequence[str]) -> None: ...

    def reply_endless(self) -> None: ...

    def reply_html(self, status: int) -> None: ...

    def reply_empty(self) -> None: ...

    def reply_malformed(self) -> None: ...

    def reply_huge(self, size: int) -> None: ...


async def collect(
    backend: Backend, request: GenerationRequest
) -> tuple[list[StreamEvent], BackendError | None]:
    events: list[StreamEvent] = []
    try:
        async for event in backend.stream(request):
            events.append(event)  # noqa: PERF401 - what arrived before an error is the point
    except BackendError as exc:
        return events, exc
    return events, None


async def replay(
    harness: Harness,
    client: httpx.AsyncClient,
    body: bytes,
    *,
    split: int = 0,
    sleeps: list[float] | None = None,
) -> tuple[list[StreamEvent], BackendError | None]:
    """What the backend makes of exact bytes (a golden transcript) under HTTP 200, sent in
    pieces of ``split`` bytes if given."""
    harness.fake.enqueue(Raw(body, split=split))
    return await collect(harness.backend(client, sleeps=sleeps), harness.request())


async def cancel_midway(
    events: AsyncIterator[StreamEvent], first: type | tuple[type, ...] = TextDelta
) -> list[StreamEvent]:
    """Consume ``events`` in a task and cancel the task once an event of type ``first``
    arrived (as a user who stops a reply does); what it received by then."""
    received: list[StreamEvent] = []
    started = asyncio.Event()

    async def consume() -> None:
        async for event in events:
            if isinstance(event, first):
                received.append(event)
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return received


def text_of(events: Sequence[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def assert_no_secret(error: BaseException, secret: str) -> None:
    shown = [str(error), repr(error)]
    if isinstance(error, BackendError):
        shown += [error.message, error.detail, error.hint, error.user_message()]
    for text in shown:
        assert secret not in text


async def assert_error_hint(
    harness: Harness,
    client: httpx.AsyncClient,
    reply: Status,
    expected: type[BackendError],
    words: str,
) -> None:
    """An HTTP error ``reply`` (answered to every retry) is ``expected``, its hint says
    ``words``, the message starts with the backend and status, and no key shows."""
    for _ in range(3):
        harness.fake.enqueue(reply)
    _, error = await collect(harness.backend(client, sleeps=[]), harness.request())
    assert type(error) is expected
    assert words in error.hint
    assert error.user_message().startswith(f"[main] HTTP {reply.status}: ")
    assert_no_secret(error, harness.secret)


def refused_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there now


class BackendContract:
    async def test_deltas_in_order_then_usage_then_finish(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        harness.reply_text(["Once", " upon", " a time"], usage=(11, 3))
        events, error = await collect(harness.backend(client), harness.request())
        assert error is None
        assert text_of(events) == "Once upon a time"
        assert [e.text for e in events if isinstance(e, TextDelta)] == ["Once", " upon", " a time"]
        assert events[-2] == Usage(prompt_tokens=11, completion_tokens=3)
        assert isinstance(events[-1], Finish)
        assert events[-1].reason == FinishReason.STOP

    @pytest.mark.parametrize(
        ("kind", "expected"),
        [
            ("auth", BackendAuthError),
            ("not_found", BackendNotFound),
            ("rate_limited", BackendRateLimited),
            ("server_error", BackendUnavailable),
            ("overloaded", BackendUnavailable),
        ],
    )
    async def test_http_errors_map_to_the_error_tree(
        self,
        harness: Harness,
        client: httpx.AsyncClient,
        kind: ErrorKind,
        expected: type[BackendError],
    ) -> None:
        for _ in range(3):  # enough for every retry
            harness.reply_error(kind)
        events, error = await collect(harness.backend(client, sleeps=[]), harness.request())
        assert events == []
        assert type(error) is expected
        assert error.backend == "main"
        assert error.user_message().startswith("[main] ")
        assert_no_secret(error, harness.secret)

    async def test_rate_limit_carries_retry_after(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        for _ in range(3):
            harness.reply_error("rate_limited", retry_after="7")
        sleeps: list[float] = []
        _, error = await collect(harness.backend(client, sleeps=sleeps), harness.request())
        assert isinstance(error, BackendRateLimited)
        assert error.retry_after == 7
        assert sleeps == [7, 7]  # honoured before each retry, then the error surfaces

    @pytest.mark.parametrize("kind", ["context", "quota"])
    async def test_context_and_quota_errors_say_what_to_do_and_are_not_retried(
        self, harness: Harness, client: httpx.AsyncClient, kind: ErrorKind
    ) -> None:
        harness.reply_error(kind)
        sleeps: list[float] = []
        _, error = await collect(harness.backend(client, sleeps=sleeps), harness.request())
        assert error is not None
        assert not isinstance(error, BackendRateLimited | BackendUnavailable)
        assert ("context" if kind == "context" else "credits") in error.user_message()
        assert sleeps == []
        assert harness.request_count() == 1

    async def test_in_stream_error_after_first_token_keeps_the_partial(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        harness.reply_error_after(["Once", " upon"])
        events, error = await collect(harness.backend(client, sleeps=[]), harness.request())
        assert text_of(events) == "Once upon"
        assert isinstance(error, BackendError)
        assert not any(isinstance(e, Finish) for e in events)
        assert harness.request_count() == 1  # never retried once text was delivered
        assert_no_secret(error, harness.secret)

    async def test_cut_mid_stream_is_a_stream_cut_with_the_partial(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        harness.reply_cut_after(["Once", " upon"])
        events, error = await collect(harness.backend(client, sleeps=[]), harness.request())
        assert text_of(events) == "Once upon"
        assert isinstance(error, BackendStreamCut)
        assert harness.request_count() == 1

    async def test_closing_the_stream_closes_the_connection(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        harness.reply_endless()
        stream = harness.backend(client).stream(harness.request())
        first = await anext(stream)
        assert isinstance(first, TextDelta)
        await stream.aclose()  # type: ignore[attr-defined]
        await asyncio.wait_for(harness.disconnected.wait(), timeout=5)

    async def test_cancelling_the_task_closes_the_connection(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        harness.reply_endless()
        received = await cancel_midway(harness.backend(client).stream(harness.request()))
        await asyncio.wait_for(harness.disconnected.wait(), timeout=5)
        assert received

    async def test_retries_before_the_first_token_only(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        harness.reply_error("overloaded")
        harness.reply_text(["Hello"], usage=None)
        sleeps: list[float] = []
        events, error = await collect(harness.backend(client, sleeps=sleeps), harness.request())
        assert error is None
        assert text_of(events) == "Hello"
        assert harness.request_count() == 2
        assert len(sleeps) == 1

    async def test_connection_refused_is_unavailable(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        sleeps: list[float] = []
        backend = harness.backend(client, base_url=refused_url(), sleeps=sleeps)
        _, error = await collect(backend, harness.request())
        assert isinstance(error, BackendUnavailable)
        assert "127.0.0.1" in error.user_message()
        assert len(sleeps) == 2  # three tries in all

    @pytest.mark.parametrize("status", [200, 502])
    async def test_html_page_is_named_as_such(
        self, harness: Harness, client: httpx.AsyncClient, status: int
    ) -> None:
        for _ in range(3):
            harness.reply_html(status)
        _, error = await collect(harness.backend(client, sleeps=[]), harness.request())
        expected = BackendProtocolError if status == 200 else BackendUnavailable
        assert isinstance(error, expected)
        assert "HTML page" in error.user_message()

    async def test_empty_body_is_a_protocol_error(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        harness.reply_empty()
        _, error = await collect(harness.backend(client, sleeps=[]), harness.request())
        assert type(error) is BackendProtocolError
        assert "empty" in error.user_message()

    async def test_malformed_chunk_is_a_protocol_error(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        harness.reply_malformed()
        _, error = await collect(harness.backend(client, sleeps=[]), harness.request())
        assert type(error) is BackendProtocolError

    async def test_oversized_response_is_a_protocol_error(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        harness.reply_huge(11 * 1024 * 1024)
        _, error = await collect(harness.backend(client, sleeps=[]), harness.request())
        assert type(error) is BackendProtocolError
        assert "larger than" in error.user_message()

    async def test_wrong_key_is_an_auth_error_that_never_shows_the_key(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        wrong = "sk-wrong-9b1e77d0c3a5f2"
        backend = harness.backend(client, api_key=wrong, sleeps=[])
        _, error = await collect(backend, harness.request())
        assert isinstance(error, BackendAuthError)
        assert_no_secret(error, wrong)
