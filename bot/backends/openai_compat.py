"""The OpenAI-compatible family: chat (``/chat/completions``) and text (``/completions``).

One class serves every provider row in :mod:`bot.backends.presets`; the row decides the
auth header, extra headers, which sampler keys are sent and how they are spelled, and how
many stop strings fit. Streams are parsed by :mod:`bot.backends.sse`; every failure is
mapped by :func:`bot.backends.errors.openai_error`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from bot.backends.base import (
    Finish,
    GenerationRequest,
    ModelInfo,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    Usage,
)
from bot.backends.errors import (
    decode_json,
    describe_body,
    looks_like_html,
    openai_error,
    protocol_error,
)
from bot.backends.extras import NO_COUNTER_HINT, native_extras
from bot.backends.openai_wire import (
    auth_headers,
    build_request,
    content_parts,
    finish_reason,
    parse_models,
    parse_response,
    usage_of,
)
from bot.backends.presets import ProviderPreset
from bot.backends.sse import ERROR_EVENT, SSEParser, StreamRecord
from bot.errors import BackendError, BackendStreamCut, BackendUnavailable

_T = TypeVar("_T")

DEFAULT_MAX_BODY = 10 * 1024 * 1024
_ERROR_BODY_LIMIT = 64 * 1024


class OpenAICompatBackend:
    """``Backend`` and ``ModelCatalog`` for every OpenAI-compatible provider.

    The injected ``client`` is shared and owned by the caller; this class never closes it.
    ``stream=False`` asks for one JSON answer (for servers whose streaming is broken); the
    events yielded are the same.
    """

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        preset: ProviderPreset,
        base_url: str,
        api_key: SecretStr | None = None,
        model: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        stream: bool = True,
        max_body_bytes: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.name = name
        self.preset = preset
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._model = model
        self._stream = stream
        self._max_body = max_body_bytes
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 15.0))
        key = api_key.get_secret_value() if api_key is not None else ""
        self._secrets = (key,) if key else ()
        # httpx.Headers: a config header replaces a preset one whatever its letter case
        self._headers = httpx.Headers(auth_headers(preset, key))
        self._headers.update(preset.headers)
        self._headers.update(headers or {})
        # the server's own token counter and abort, where the preset row names them
        self._extras = native_extras(
            name,
            client,
            preset,
            self.base_url,
            self._headers,
            error=self._native_error,
            timeout=timeout,
        )

    def request_body(
        self, request: GenerationRequest, key: Mapping[str, str] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """The path and JSON body for ``request``, as this provider wants them, with the
        key its abort names (KoboldCpp's ``genkey``) if any."""
        path, body = build_request(
            self.name, self.preset, request, model=self._model, stream=self._stream
        )
        body.update(key or {})
        return path, body

    # -- Backend -------------------------------------------------------------------------

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        """One generation's events. Abandoned before its finish, the server's abort is
        called where the preset names one: KoboldCpp and text-generation-webui go on
        generating after a disconnect."""
        if self._extras is None or not self._extras.aborts:
            return self._generate(request, {})
        key = self._extras.request_key()
        return self._extras.guard(self._generate(request, key), key)

    async def _generate(
        self, request: GenerationRequest, key: Mapping[str, str]
    ) -> AsyncIterator[StreamEvent]:
        path, body = self.request_body(request, key)
        headers = self._headers.copy()
        headers["Accept"] = "text/event-stream" if self._stream else "application/json"
        delivered = False
        try:
            async with self._client.stream(
                "POST", self.base_url + path, json=body, headers=headers, timeout=self._timeout
            ) as response:
                if not response.is_success:
                    raw = await self._read(response, _ERROR_BODY_LIMIT, cap_is_error=False)
                    raise openai_error(self.name, response, body=raw, secrets=self._secrets)
                kind = response.headers.get("content-type", "").partition(";")[0].strip()
                if self._stream and kind.lower() not in ("application/json", "text/html"):
                    events = self._events(response, request.mode == "chat")
                    async with _closing(events):
                        async for event in events:
                            delivered = True
                            yield event
                    return
                raw = await self._read(response, self._max_body)
                for event in parse_response(
                    self.name, raw, chat=request.mode == "chat", secrets=self._secrets
                ):
                    yield event
        except httpx.HTTPError as exc:
            raise openai_error(self.name, exc, secrets=self._secrets, midstream=delivered) from exc

    async def _events(self, response: httpx.Response, chat: bool) -> AsyncIterator[StreamEvent]:
        """The SSE body → events. Usage and Finish wait for ``[DONE]`` or the end of bytes."""
        meter = _Meter()
        finish: str | None = None
        usage: Usage | None = None
        deltas = False
        done = False
        batches = self._batches(response, meter)
        async with _closing(batches):
            async for batch in batches:
                for record in batch:
                    if record.event == ERROR_EVENT:
                        raise self._in_stream(record.data)
                    data = record.data
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        obj = json.loads(data)
                        if obj.get("error"):
                            raise self._in_stream(obj)
                        choices = obj.get("choices")
                        if choices:
                            choice = choices[0]
                            if chat:
                                delta = choice.get("delta") or choice.get("message") or {}
                                reasoning = delta.get("reasoning_content") or delta.get(
                                    "reasoning"
                                )
                                if reasoning and isinstance(reasoning, str):
                                    deltas = True
                                    yield ReasoningDelta(reasoning)
                                content = delta.get("content")
                                if content and not isinstance(content, str):
                                    content, thinking = content_parts(content)
                                    if thinking:
                                        deltas = True
                                        yield ReasoningDelta(thinking)
                            else:
                                content = choice.get("text")
                            if content:
                                deltas = True
                                yield TextDelta(content)
                            reason = choice.get("finish_reason")
                            if reason:
                                if reason == "error":
                                    raise self._in_stream(obj)
                                finish = reason
                        if obj.get("usage"):
                            usage = usage_of(obj["usage"]) or usage
                    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
                        raise protocol_error(
                            self.name, "the server sent a malformed stream chunk", detail=data
                        ) from exc
                if done:
                    break
        if not (done or finish):
            raise self._ended_early(meter, deltas)
        if usage is not None:
            yield usage
        yield Finish(finish_reason(finish), raw=finish or "")

    async def _batches(
        self, response: httpx.Response, meter: _Meter
    ) -> AsyncIterator[list[StreamRecord]]:
        """Parsed records one network chunk at a time (batched: a generator hop per event
        would cost more than the parsing), enforcing the body cap."""
        parser = SSEParser()
        chunks = response.aiter_bytes()
        async with _closing(chunks):
            async for chunk in chunks:
                meter.size += len(chunk)
                if meter.size > self._max_body:
                    raise protocol_error(
                        self.name, f"the response is larger than {self._max_body} bytes"
                    )
                if len(meter.head) < 512:
                    meter.head += chunk[:512]
                batch = parser.feed(chunk)
                meter.records += len(batch)
                yield batch
        batch = parser.finish()
        meter.records += len(batch)
        yield batch

    def _in_stream(self, error: str | Mapping[str, Any]) -> BackendError:
        if isinstance(error, str):
            decoded = decode_json(error)
            error = decoded if isinstance(decoded, Mapping) else {"error": {"message": error}}
        return openai_error(self.name, error, secrets=self._secrets)

    def _ended_early(self, meter: _Meter, deltas: bool) -> BackendError:
        if meter.size == 0:
            return protocol_error(self.name, "the server sent an empty body")
        if meter.records == 0:
            head = meter.head
            what = describe_body(head, None) if looks_like_html(head) else "not an event stream"
            return protocol_error(
                self.name, f"the server sent {what}", detail=head.decode("utf-8", "replace")
            )
        if deltas:
            return BackendStreamCut(
                "the stream ended before the reply was finished",
                backend=self.name,
            )
        # nothing reached the user yet, so trying again is safe and usually works
        return BackendUnavailable("the stream ended before any text", backend=self.name)

    async def _read(
        self, response: httpx.Response, limit: int, *, cap_is_error: bool = True
    ) -> bytes:
        """The body, at most ``limit`` bytes: past it an error (or, for error pages, cut)."""
        parts: list[bytes] = []
        size = 0
        chunks = response.aiter_bytes()
        async with _closing(chunks):
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

    # -- ModelCatalog and token counts ---------------------------------------------------

    async def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by the server's own tokenizer, where the preset row names its
        endpoint (text-generation-webui, TabbyAPI, KoboldCpp, llama.cpp)."""
        if self._extras is None:
            raise BackendError(
                f"{self.preset.name} has no token count endpoint",
                backend=self.name,
                hint=NO_COUNTER_HINT,
            )
        return await self._extras.count_tokens(text)

    def _native_error(
        self,
        failure: httpx.Response | httpx.HTTPError | Mapping[str, Any],
        *,
        body: bytes = b"",
        midstream: bool = False,
    ) -> BackendError:
        return openai_error(
            self.name, failure, body=body, secrets=self._secrets, midstream=midstream
        )

    async def list_models(self) -> list[ModelInfo]:
        """``GET {base}/models``: OpenAI's ``{"data": [...]}`` or a bare list (Pollinations)."""
        try:
            async with self._client.stream(
                "GET", self.base_url + "/models", headers=self._headers, timeout=self._timeout
            ) as response:
                if not response.is_success:
                    raw = await self._read(response, _ERROR_BODY_LIMIT, cap_is_error=False)
                    raise openai_error(self.name, response, body=raw, secrets=self._secrets)
                raw = await self._read(response, self._max_body)
        except httpx.HTTPError as exc:
            raise openai_error(self.name, exc, secrets=self._secrets) from exc
        return parse_models(self.name, raw)


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[_T]) -> AsyncIterator[AsyncIterator[_T]]:
    """Close an async iterator on the way out, so an early exit (``[DONE]``, an error, a
    cancelled caller) never leaves a half-run generator for the garbage collector."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


@dataclass(slots=True)
class _Meter:
    """What the raw stream looked like, for the error when it ends without a reply."""

    size: int = 0
    records: int = 0
    head: bytes = b""
