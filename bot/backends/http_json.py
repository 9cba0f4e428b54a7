"""HTTP plumbing every family shares: JSON requests on the shared client, capped bodies, error
bodies read before they are mapped, stream records (SSE or NDJSON) parsed one network chunk
at a time and handed to the family's decoder, and the diagnosis of a stream that ended before
the backend said it was done.

A family brings only its wire: a request body, a :class:`Decoder` for its stream, a function
for a whole JSON answer, and its one mapping of failures (:class:`ErrorMap`), so this module
never decides what an error means.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import SecretStr

from bot.backends.base import ReasoningDelta, StreamEvent, TextDelta
from bot.backends.errors import (
    Failure,
    decode_json,
    describe_body,
    looks_like_html,
    protocol_error,
    unreadable,
)
from bot.backends.openai_wire import auth_headers
from bot.backends.presets import ProviderPreset
from bot.backends.sse import Framing, StreamRecord, make_parser
from bot.errors import BackendError, BackendStreamCut, BackendUnavailable

_T = TypeVar("_T")

DEFAULT_MAX_BODY = 10 * 1024 * 1024
ERROR_BODY_LIMIT = 64 * 1024
JSON = "application/json"
STREAM_TYPES: Mapping[Framing, str] = {
    "sse": "text/event-stream",
    "ndjson": "application/x-ndjson",
}


class ErrorMap(Protocol):
    """A family's one mapping: a non-2xx response (its body read, capped), a transport
    failure, or an error object found in a 200 body or stream → a :class:`BackendError`."""

    def __call__(
        self,
        failure: Failure,
        *,
        body: bytes = b"",
        midstream: bool = False,
    ) -> BackendError: ...


class Decoder(Protocol):
    """One stream's records → our events. ``done``: the backend said the reply is finished
    (an end event, ``stop: true``, ``done: true``…) or the decoder ended it; reading stops."""

    done: bool

    def feed(self, record: StreamRecord) -> Iterable[StreamEvent]:
        """Events for one record; raises the family's error for an error record."""
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
        accept: str | None = JSON,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """A 2xx response, still streaming; a non-2xx one raises the family's error.

        ``headers`` add to the backend's own for this call (a fresh OAuth token); ``accept``
        ``None`` leaves the client's default. Transport failures are left to the caller,
        which knows whether text was delivered.
        """
        sent = self.headers.copy()
        sent.update(headers or {})
        if accept is not None:
            sent["Accept"] = accept
        async with self._client.stream(
            method, url, json=body, params=params, headers=sent, timeout=self._timeout
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
        whole: Callable[[bytes], Iterable[StreamEvent]],
        framing: Framing = "sse",
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """POST ``body`` and yield its events: decoded from the stream, or from one JSON
        answer by ``whole`` (asked for, or sent by a proxy that does not stream).

        Closing this generator (or cancelling its consumer) leaves the ``async with``
        blocks, which closes the HTTP response.
        """
        delivered = False  # a transport failure from now on breaks a reply the user sees
        accept = STREAM_TYPES[framing] if stream else JSON
        try:
            async with self.open(
                "POST", url, body=body, params=params, accept=accept, headers=headers
            ) as response:
                if not (stream and is_event_stream(response)):
                    for event in whole(await self.read(response, self.max_body)):
                        yield event
                    return
                meter = Meter()
                texts = False
                batches = self.records(response, meter, framing)
                async with closing(batches):
                    async for batch in batches:
                        for record in batch:
                            for event in decoder.feed(record):
                                texts = texts or isinstance(event, TextDelta | ReasoningDelta)
                                delivered = True
                                yield event
                            if decoder.done:
                                break
                        if decoder.done:
                            break
                closing_events = decoder.close()
                if closing_events is None:
                    raise self.ended_early(meter, texts)
                for event in closing_events:
                    yield event
        except httpx.HTTPError as exc:
            raise self._error(exc, midstream=delivered) from exc

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        accept: str | None = JSON,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """A whole answer's bytes (model lists, token counts), capped; every failure mapped."""
        try:
            async with self.open(
                method, url, body=body, params=params, accept=accept, headers=headers
            ) as response:
                return await self.read(response, self.max_body)
        except httpx.HTTPError as exc:
            raise self._error(exc) from exc

    async def call(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """A whole JSON answer, decoded; a body that is not JSON is a protocol error."""
        raw = await self.fetch(method, url, body=body, params=params)
        payload = decode_json(raw)
        if payload is None:
            raise unreadable(self.name, raw, quote=True)
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
        self, response: httpx.Response, meter: Meter, framing: Framing = "sse"
    ) -> AsyncIterator[list[StreamRecord]]:
        """Stream records one network chunk at a time (a generator hop per event would cost
        more than the parsing), enforcing the body cap."""
        parser = make_parser(framing)
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
    return kind not in (JSON, "text/html")


def api_secret(api_key: SecretStr | None) -> tuple[str, tuple[str, ...]]:
    """The key in clear (``""`` when none is set), and the secrets no error may show."""
    key = api_key.get_secret_value() if api_key is not None else ""
    return key, (key,) if key else ()


def request_headers(
    preset: ProviderPreset, key: str, configured: Mapping[str, str] | None
) -> httpx.Headers:
    """Auth (only when a key is set), then the preset's headers, then the config's, which
    replace a preset header whatever its letter case."""
    headers = httpx.Headers(auth_headers(preset, key))
    headers.update(preset.headers)
    headers.update(configured or {})
    return headers


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
