"""What the native families share (llama.cpp ``/completion``, Ollama ``/api/*``, NovelAI
``/ai/generate*``): one generation request driven through a family's decoder, and the
translation of core sampler settings through a family's name table.

A family describes only its wire: a :class:`Decoder` turns stream records (SSE or NDJSON,
from :mod:`bot.backends.sse`) or one whole JSON answer into events and says when the backend
declared the reply finished. This module does the HTTP (through
:class:`bot.backends.http_json.JsonHttp`), the body cap, the "ended before it said it was
done" diagnosis and the mapping of transport failures, knowing whether text was delivered.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import httpx

from bot.backends.base import ModelInfo, StreamEvent
from bot.backends.errors import decode_json, describe_body, looks_like_html, protocol_error
from bot.backends.http_json import ErrorMap, JsonHttp, Meter, closing, is_event_stream
from bot.backends.openai_wire import auth_headers, parse_models
from bot.backends.presets import ProviderPreset
from bot.backends.sse import Framing, NDJSONParser, StreamRecord

_log = logging.getLogger(__name__)

_ACCEPT: Mapping[Framing, str] = {"sse": "text/event-stream", "ndjson": "application/x-ndjson"}


class Decoder(Protocol):
    """A family's reading of one reply. ``done`` turns true once the backend said the reply
    is finished (llama.cpp ``stop:true``, Ollama ``done:true``, NovelAI ``final:true``) or the
    decoder itself ended it (a stop string cut client-side); reading stops there."""

    done: bool

    def feed(self, record: StreamRecord) -> list[StreamEvent]:
        """Events for one record; raises the family's error for an error record."""
        ...

    def close(self) -> list[StreamEvent]:
        """The trailing events (usage, finish) once ``done``."""
        ...

    def whole(self, raw: bytes) -> list[StreamEvent]:
        """Every event of a non-streamed JSON answer."""
        ...


async def drive(
    http: JsonHttp,
    url: str,
    body: Mapping[str, Any],
    decoder: Decoder,
    *,
    stream: bool,
    framing: Framing,
    error: ErrorMap,
) -> AsyncIterator[StreamEvent]:
    """POST ``body`` and yield the decoded events. Closing this generator (or cancelling its
    consumer) leaves the ``async with`` blocks, which closes the HTTP response."""
    delivered = False
    accept = _ACCEPT[framing] if stream else "application/json"
    try:
        async with http.open("POST", url, body=body, accept=accept) as response:
            if stream and is_event_stream(response):
                meter = Meter()
                batches = _records(http, response, meter, framing)
                async with closing(batches):
                    async for batch in batches:
                        for record in batch:
                            for event in decoder.feed(record):
                                delivered = True
                                yield event
                            if decoder.done:
                                break
                        if decoder.done:
                            break
                if not decoder.done:
                    raise http.ended_early(meter, delivered)
                for event in decoder.close():
                    yield event
                return
            raw = await http.read(response, http.max_body)
        for event in decoder.whole(raw):
            yield event
    except httpx.HTTPError as exc:
        raise error(exc, midstream=delivered) from exc


async def fetch_models(http: JsonHttp, url: str, error: ErrorMap) -> list[ModelInfo]:
    """``GET`` a model list (``{"data": [{"id"}]}`` or Ollama's ``{"models": [{"name"}]}``)."""
    try:
        async with http.open("GET", url) as response:
            raw = await http.read(response, http.max_body)
    except httpx.HTTPError as exc:
        raise error(exc) from exc
    return parse_models(http.name, raw)


def translate_samplers(
    family: str, sampler: Mapping[str, Any], names: Mapping[str, str]
) -> dict[str, Any]:
    """Core sampler settings → the backend's names, through the family's table.

    A key the table lacks is a setting the backend does not take: dropped with a debug log,
    never sent to break the request. Unset values and a negative seed ("random", which is
    what leaving it out means) are not sent either.
    """
    out: dict[str, Any] = {}
    for key, value in sampler.items():
        if value is None or (key == "seed" and isinstance(value, int) and value < 0):
            continue
        wire = names.get(key)
        if wire is None:
            _log.debug("%s does not take sampler %r; dropped", family, key)
            continue
        out[wire] = value
    return out


def request_headers(
    preset: ProviderPreset, key: str, configured: Mapping[str, str] | None
) -> httpx.Headers:
    """Auth (only when a key is set), then the preset's headers, then the config's, which
    replace a preset header whatever its letter case."""
    headers = httpx.Headers(auth_headers(preset, key))
    headers.update(preset.headers)
    headers.update(configured or {})
    return headers


def server_root(base_url: str, *suffixes: str) -> str:
    """The base URL without a trailing API prefix (``/v1``, ``/api``) a user copied along:
    the native routes live at the server's root."""
    url = base_url.rstrip("/")
    for suffix in suffixes:
        if url.endswith(suffix):
            _log.debug("using %s without its %s suffix for the native API", url, suffix)
            return url.removesuffix(suffix)
    return url


def unique_stops(stop: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(s for s in stop if s))


def whole_json(backend: str, raw: bytes) -> dict[str, Any]:
    """A non-streamed answer as a JSON object, or the protocol error that says what it was."""
    payload = decode_json(raw)
    if isinstance(payload, dict):
        return payload
    if not raw.strip():
        raise protocol_error(backend, "the server sent an empty body")
    what = describe_body(raw, None) if looks_like_html(raw) else "a body that is not JSON"
    raise protocol_error(
        backend, f"the server sent {what}", detail=raw[:300].decode("utf-8", "replace")
    )


def record_json(backend: str, record: StreamRecord) -> dict[str, Any]:
    """One stream record's data as a JSON object; a torn or foreign line is a protocol error."""
    payload = decode_json(record.data)
    if not isinstance(payload, dict):
        raise protocol_error(
            backend, "the server sent a malformed stream chunk", detail=record.data
        )
    return payload


async def _records(
    http: JsonHttp, response: httpx.Response, meter: Meter, framing: Framing
) -> AsyncIterator[list[StreamRecord]]:
    if framing == "sse":
        sse = http.records(response, meter)
        async with closing(sse):
            async for batch in sse:
                yield batch
        return
    # NDJSON (Ollama): the same cap and meter as JsonHttp.records, with the line splitter
    parser = NDJSONParser()
    chunks = response.aiter_bytes()
    async with closing(chunks):
        async for chunk in chunks:
            meter.size += len(chunk)
            if meter.size > http.max_body:
                raise protocol_error(
                    http.name, f"the response is larger than {http.max_body} bytes"
                )
            if len(meter.head) < 512:
                meter.head += chunk[:512]
            batch = parser.feed(chunk)
            meter.records += len(batch)
            yield batch
    batch = parser.finish()
    meter.records += len(batch)
    yield batch
