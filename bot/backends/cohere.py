"""The ``cohere_v2`` family: Cohere's Chat v2 API (chat only).

``POST {base}/chat`` (base ``https://api.cohere.com/v2``) with a Bearer key; typed SSE comes
back (:class:`bot.backends.cohere_wire.CohereStream`). Models and the tokenizer live under
the v1 API: ``GET /v1/models`` and ``POST /v1/tokenize``. The API has no abort call: closing
the stream cancels. Every failure is mapped by :func:`cohere_error`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx

from bot.backends.base import GenerationRequest, ModelInfo, StreamEvent
from bot.backends.cohere_wire import (
    CohereStream,
    build_body,
    parse_models,
    parse_response,
    parse_tokens,
)
from bot.backends.errors import (
    Clock,
    Failure,
    attributed,
    classify,
    transport_error,
    what_it_said,
)
from bot.backends.family import JsonBackend, require_chat, standard_factory
from bot.backends.http_json import closing
from bot.errors import BackendAuthError, BackendError, BackendRateLimited

MAX_MODEL_PAGES = 20
TOKENIZE_LIMIT = 65536  # characters /v1/tokenize takes at once

TRIAL_HINT = (
    "the trial key's monthly calls are used up; add credits with a production key at "
    "dashboard.cohere.com, or switch backends"
)


def v1_base(base_url: str) -> str:
    """Where the v1 endpoints (models, tokenize) live: beside ``/v2``."""
    base = base_url.rstrip("/")
    return base[: -len("/v2")] + "/v1" if base.endswith("/v2") else base


def pieces(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut after whitespace where there
    is some, so that no word is counted as two."""
    out: list[str] = []
    while len(text) > limit:
        cut = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit)) + 1
        cut = cut if cut > 0 else limit
        out.append(text[:cut])
        text = text[cut:]
    if text:
        out.append(text)
    return out


def cohere_error(
    backend: str,
    failure: Failure,
    *,
    body: bytes = b"",
    secrets: Iterable[str] = (),
    midstream: bool = False,
    now: Clock = time.time,
) -> BackendError:
    """The cohere_v2 family's one mapping.

    ``failure`` is a non-2xx response (its ``body`` read by the caller, capped), a transport
    exception, or an error found in a 200 body or stream (``{"message": …}``, built from a
    ``message-end`` event that finished with ``ERROR``).
    """
    if isinstance(failure, httpx.HTTPError):
        error = transport_error(backend, failure, midstream=midstream)
    elif isinstance(failure, httpx.Response):
        _, said = what_it_said(failure, body)
        status = failure.status_code
        error = classify(backend, status, said, "", failure.headers, now=now)
        words = said.lower()
        if status == 498:  # Cohere's own "invalid token"
            error = BackendAuthError(error.message, detail=error.detail)
        elif isinstance(error, BackendRateLimited) and "trial key" in words and "month" in words:
            # waiting a minute will not help: the month's allowance is gone
            error = BackendError(error.message, detail=error.detail, hint=TRIAL_HINT)
    else:
        _, said = what_it_said(failure, body)
        error = classify(backend, 0, said, "", {}, in_stream=True, now=now)
    return attributed(error, backend, secrets)


class CohereBackend(JsonBackend):
    """``Backend``, ``ModelCatalog`` and ``TokenCountingBackend`` for Cohere.

    The injected ``client`` is shared and owned by the caller.
    """

    family_error = staticmethod(cohere_error)

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body of ``POST /chat`` for ``request``."""
        return build_body(self.preset, request, model=self._model, stream=self._stream)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        require_chat(request, self.name, "Cohere")
        events = self._http.generate(
            self.base_url + "/chat",
            self.request_body(request),
            stream=self._stream,
            decoder=CohereStream(self.name, self._error),
            whole=lambda raw: parse_response(self.name, raw, self._error),
        )
        async with closing(events):  # closed now, not whenever the collector runs
            async for event in events:
                yield event

    async def list_models(self) -> list[ModelInfo]:
        """``GET /v1/models?endpoint=chat``, page after page."""
        models: list[ModelInfo] = []
        token: str | None = None
        for _ in range(MAX_MODEL_PAGES):
            params = {"endpoint": "chat", "page_size": "1000"}
            if token:
                params["page_token"] = token
            url = v1_base(self.base_url) + "/models"
            payload = await self._http.call("GET", url, params=params)
            page, token = parse_models(self.name, payload)
            models += page
            if token is None:
                break
        return models

    async def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by the configured model's tokenizer (``POST /v1/tokenize``);
        a text longer than the endpoint takes is counted in pieces cut at whitespace."""
        total = 0
        url = v1_base(self.base_url) + "/tokenize"
        for piece in pieces(text, TOKENIZE_LIMIT):
            body = {"text": piece, "model": self._model}
            total += parse_tokens(self.name, await self._http.call("POST", url, body=body))
        return total


build_cohere = standard_factory(CohereBackend)
"""The registry's factory (:data:`bot.backends.registry.FAMILIES`)."""
