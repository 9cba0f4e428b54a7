"""HTTP plumbing for families that POST JSON and read a typed SSE stream or one JSON answer.

The Anthropic and Cohere v2 families share it: capped bodies, error bodies read before they
are mapped, records parsed one network chunk at a time, and the diagnosis of a stream that
ended before the backend said it was done. Every failure goes through the family's own
mapping function (``ErrorMap``), so this module never decides what an error means.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx

from bot.backends.base import ReasoningDelta, StreamEvent, TextDelta
from bot.backends.errors import decode_json, describe_body, looks_like_html, protocol_error
from bot.backends.sse import SSEParser, StreamRecord
from bot.errors import BackendError, BackendStreamCut, BackendUnavailable

_T = TypeVar("_T")

DEFAULT_MAX_BODY = 10 * 1024 * 1024
ERROR_BODY_LIMIT = 64 * 1024


class ErrorMap(Protocol):
    """A family's one mapping: a non-2xx response (its body read, capped), a transport
    failure, or an error object found in a 200 body or stream → a :class:`BackendError`."""

    def __call__(
        self,
        failure: httpx.Response | httpx.HTTPError | Mapping[str, Any],
        *,
        body: bytes = b"",
        midstream: bool = False,
    ) -> BackendError: ...


class Decoder(Protocol):
    """One stream's typed events → our events. ``done``: the end event came, stop reading."""

    done: bool

    def feed(self, record: StreamRecord) -> list[StreamEvent]:
        """Events for one record; raises the family's error for an error event."""
        ...

    def close(self) -> list[StreamEvent] | None:
        """The closing events (usage, finish), or ``None`` when the backend never said it
        was finished."""
        ...


@dataclass(slots=True)
class Meter:
    """What the raw stream looked like, for the error when it ends without a reply."""

    size: int = 0
    records: int = 0
    head: bytes = b""


class JsonHttp:
    """One backend's HTTP calls on the shared client (owned by the caller, never closed here)."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        headers: httpx.Headers,
        timeout: float,
        error: ErrorMap,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.name = name
        self.headers = headers
        self.max_body = max_body
        self._client = client
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 15.0))
        self._error = error

    @contextlib.asynccontextmanager
    async def open(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        accept: str = "application/json",
    ) -> AsyncIterator[httpx.Response]:
        """A 2xx response, still streaming; a non-2xx one raises the family's error.

        Transport failures are left to the caller, which knows whether text was delivered.
        """
        headers = self.headers.copy()
        headers["Accept"] = accept
        async with self._client.stream(
            method, url, json=body, params=params, headers=headers, timeout=self._timeout
        ) as response:
            if not response.is_success:
                raw = await self.read(response, ERROR_BODY_LIMIT, cap_is_error=False)
                raise self._error(response, body=raw)
            yield response

    async def generate(
        self,
        url: str,
        body: Mapping[str, Any],
        *,
        stream: bool,
        decoder: Decoder,
        whole: Callable[[bytes], list[StreamEvent]],
    ) -> AsyncIterator[StreamEvent]:
        """POST ``body`` and yield its events: decoded from the stream, or from one JSON
        answer by ``whole`` (asked for, or sent by a proxy that does not stream)."""
        delivered = False
        accept = "text/event-stream" if stream else "application/json"
        try:
            async with self.open("POST", url, body=body, accept=accept) as response:
                if stream and is_event_stream(response):
                    events = self._decode(response, decoder)
                    async with closing(events):
                        async for event in events:
                            delivered = True
                            yield event
                    return
                raw = await self.read(response, self.max_body)
                for event in whole(raw):
                    yield event
        except httpx.HTTPError as exc:
            raise self._error(exc, midstream=delivered) from exc

    async def _decode(
        self, response: httpx.Response, decoder: Decoder
    ) -> AsyncIterator[StreamEvent]:
        meter = Meter()
        delivered = False
        batches = self.records(response, meter)
        async with closing(batches):
            async for batch in batches:
                for record in batch:
                    for event in decoder.feed(record):
                        if isinstance(event, TextDelta | ReasoningDelta):
                            delivered = True
                        yield event
                    if decoder.done:
                        break
                if decoder.done:
                    break
        closing_events = decoder.close()
        if closing_events is None:
            raise self.ended_early(meter, delivered)
        for event in closing_events:
            yield event

    async def call(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """A whole JSON answer (model lists, token counts); every failure mapped."""
        try:
            async with self.open(method, url, body=body, params=params) as response:
                raw = await self.read(response, self.max_body)
        except httpx.HTTPError as exc:
            raise self._error(exc) from exc
        payload = decode_json(raw)
        if payload is None:
            what = describe_body(raw, None) if raw.strip() else "an empty body"
            raise protocol_error(
                self.name, f"the server sent {what}", detail=raw[:300].decode("utf-8", "replace")
            )
        return payload

    async def read(
        self, response: httpx.Response, limit: int, *, cap_is_error: bool = True
    ) -> bytes:
        """The body, at most ``limit`` bytes: past it an error (or, for error pages, cut)."""
        parts: list[bytes] = []
        size = 0
        chunks = response.aiter_bytes()
        async with closing(chunks):
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    if cap_is_error:
                        raise protocol_error(
                            self.name, f"the response is larger than {limit} bytes"
                        )
                    parts.append(chunk[: limit - size + len(chunk)])
                    break
                parts.append(chunk)
        return b"".join(parts)

    async def records(
        self, response: httpx.Response, meter: Meter
    ) -> AsyncIterator[list[StreamRecord]]:
        """SSE records one network chunk at a time (a generator hop per event would cost
        more than the parsing), enforcing the body cap."""
        parser = SSEParser()
        chunks = response.aiter_bytes()
        async with closing(chunks):
            async for chunk in chunks:
                meter.size += len(chunk)
                if meter.size > self.max_body:
                    raise protocol_error(
                        self.name, f"the response is larger than {self.max_body} bytes"
                    )
                if len(meter.head) < 512:
                    meter.head += chunk[:512]
                batch = parser.feed(chunk)
                meter.records += len(batch)
                yield batch
        batch = parser.finish()
        meter.records += len(batch)
        yield batch

    def ended_early(self, meter: Meter, delivered: bool) -> BackendError:
        """The error for a stream that ended before the backend said it was finished."""
        if meter.size == 0:
            return protocol_error(self.name, "the server sent an empty body")
        if meter.records == 0:
            head = meter.head
            what = describe_body(head, None) if looks_like_html(head) else "not an event stream"
            return protocol_error(
                self.name, f"the server sent {what}", detail=head.decode("utf-8", "replace")
            )
        if delivered:
            return BackendStreamCut(
                "the stream ended before the reply was finished", backend=self.name
            )
        # nothing reached the user yet, so trying again is safe and usually works
        return BackendUnavailable("the stream ended before any text", backend=self.name)


def is_event_stream(response: httpx.Response) -> bool:
    """Whether a 2xx answer is a stream (a proxy may send JSON or an HTML page instead)."""
    kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    return kind not in ("application/json", "text/html")


@contextlib.asynccontextmanager
async def closing(iterator: AsyncIterator[_T]) -> AsyncIterator[AsyncIterator[_T]]:
    """Close an async iterator on the way out, so an early exit (the end event, an error, a
    cancelled caller) never leaves a half-run generator for the garbage collector."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
