"""The ``anthropic`` family: Claude's Messages API (chat only).

``POST {base}/messages`` with ``x-api-key`` and ``anthropic-version``; typed SSE comes back
(:class:`bot.backends.anthropic_wire.ClaudeStream`). Models are listed by ``GET /models`` and
tokens counted by ``POST /messages/count_tokens``. Closing the stream is the only way to
cancel: the API has no abort call. Every failure is mapped by :func:`anthropic_error`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any

import httpx

from bot.backends.anthropic_wire import (
    FIRST_USER,
    ClaudeStream,
    build_body,
    count_body,
    parse_count,
    parse_message,
    parse_models,
)
from bot.backends.base import GenerationRequest, ModelInfo, PromptMessage, StreamEvent
from bot.backends.errors import (
    QUOTA_HINT,
    Clock,
    Failure,
    attributed,
    classify,
    transport_error,
    what_it_said,
)
from bot.backends.family import JsonBackend, require_chat, standard_factory
from bot.backends.http_json import closing
from bot.errors import BackendError, BackendRateLimited, BackendUnavailable

MAX_MODEL_PAGES = 20

OVERLOADED_HINT = "Anthropic's servers are overloaded right now; try again in a minute"
TOO_LARGE_HINT = "the request is larger than Anthropic accepts; shorten the prompt"

# an error's `type` → the HTTP status it comes with, for errors that arrive inside a stream
_STATUS_OF = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def anthropic_error(
    backend: str,
    failure: Failure,
    *,
    body: bytes = b"",
    secrets: Iterable[str] = (),
    midstream: bool = False,
    now: Clock = time.time,
) -> BackendError:
    """The anthropic family's one mapping.

    ``failure`` is a non-2xx response (its ``body`` read by the caller, capped), a transport
    exception, or an error object from a 200 body or an ``event: error`` record
    (``{"type": "error", "error": {"type", "message"}}``).
    """
    if isinstance(failure, httpx.HTTPError):
        return attributed(transport_error(backend, failure, midstream=midstream), backend, secrets)
    payload, said = what_it_said(failure, body)
    kind = _kind(payload)
    headers: Mapping[str, str] = {}
    if isinstance(failure, httpx.Response):
        status, headers, in_stream = failure.status_code, failure.headers, False
    else:
        status, in_stream = _STATUS_OF.get(kind, 0), True
    error = classify(backend, status, said, kind, headers, in_stream=in_stream, now=now)
    words = said.lower()
    if "credit balance" in words:  # Anthropic says so under a plain 400
        error = BackendError(error.message, detail=error.detail, hint=QUOTA_HINT)
    elif status == 413:
        error = BackendError(error.message, detail=error.detail, hint=TOO_LARGE_HINT)
    elif status == 529:
        error = BackendUnavailable(error.message, detail=error.detail, hint=OVERLOADED_HINT)
    elif isinstance(error, BackendRateLimited) and error.retry_after is None:
        # no retry-after: the reset time of the exhausted limit says how long to wait
        error.retry_after = ratelimit_reset(headers, now())
    return attributed(error, backend, secrets)


def ratelimit_reset(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until an exhausted ``anthropic-ratelimit-*`` limit resets (RFC 3339 times)."""
    waits: list[float] = []
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        if headers.get(f"anthropic-ratelimit-{kind}-remaining", "").strip() != "0":
            continue
        try:
            when = datetime.fromisoformat(headers.get(f"anthropic-ratelimit-{kind}-reset", ""))
        except ValueError:
            continue
        if when.tzinfo is not None:
            waits.append(max(0.0, when.timestamp() - now))
    return max(waits) if waits else None


def _kind(payload: Any) -> str:
    """The error's ``type`` (``overloaded_error``…), from the envelope or the bare object."""
    if not isinstance(payload, Mapping):
        return ""
    err = payload.get("error", payload)
    kind = err.get("type") if isinstance(err, Mapping) else None
    return kind if isinstance(kind, str) else ""


class AnthropicBackend(JsonBackend):
    """``Backend``, ``ModelCatalog`` and ``TokenCountingBackend`` for Claude.

    The injected ``client`` is shared and owned by the caller. ``headers`` (from the config)
    add or replace headers, e.g. ``anthropic-beta``.
    """

    family_error = staticmethod(anthropic_error)
    first_user = FIRST_USER  # the user turn put first when a chat starts with the character

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body of ``POST /messages`` for ``request``."""
        return build_body(
            self.preset,
            request,
            model=self._model,
            stream=self._stream,
            first_user=self.first_user,
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        require_chat(request, self.name, "Claude")
        events = self._http.generate(
            self.base_url + "/messages",
            self.request_body(request),
            stream=self._stream,
            decoder=ClaudeStream(self.name, self._error),
            whole=lambda raw: parse_message(self.name, raw, self._error),
        )
        async with closing(events):  # closed now, not whenever the collector runs
            async for event in events:
                yield event

    async def list_models(self) -> list[ModelInfo]:
        """``GET /models``, page after page (Anthropic pages with ``after_id``)."""
        models: list[ModelInfo] = []
        after: str | None = None
        for _ in range(MAX_MODEL_PAGES):
            params = {"limit": "1000"} | ({"after_id": after} if after else {})
            payload = await self._http.call("GET", self.base_url + "/models", params=params)
            page, after = parse_models(self.name, payload)
            models += page
            if after is None:
                break
        return models

    async def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` sent as one user message (the count includes the message's
        few framing tokens)."""
        request = GenerationRequest(
            mode="chat", model="", max_tokens=1, messages=(PromptMessage("user", text),)
        )
        return await self.count_request_tokens(request)

    async def count_request_tokens(self, request: GenerationRequest) -> int:
        """Input tokens of the whole request as it would be sent (system, turns, thinking)."""
        body = count_body(self.request_body(request))
        payload = await self._http.call(
            "POST", self.base_url + "/messages/count_tokens", body=body
        )
        return parse_count(self.name, payload)


build_anthropic = standard_factory(AnthropicBackend)
"""The registry's factory (:data:`bot.backends.registry.FAMILIES`)."""
