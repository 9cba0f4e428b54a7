"""The ``cohere_v2`` family: Cohere's Chat v2 API (chat only).

``POST {base}/chat`` (base ``https://api.cohere.com/v2``) with a Bearer key; typed SSE comes
back (:class:`bot.backends.cohere_wire.CohereStream`). Models and the tokenizer live under
the v1 API: ``GET /v1/models`` and ``POST /v1/tokenize``. The API has no abort call: closing
the stream cancels. Every failure is mapped by :func:`cohere_error`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import httpx
from pydantic import SecretStr

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
    classify,
    decode_json,
    describe_body,
    redact,
    server_message,
    transport_error,
    truncate,
)
from bot.backends.http_json import DEFAULT_MAX_BODY, JsonHttp, closing
from bot.backends.openai_wire import auth_headers
from bot.backends.presets import ProviderPreset
from bot.config import BackendConfig
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


class CohereBackend:
    """``Backend``, ``ModelCatalog`` and ``TokenCountingBackend`` for Cohere.

    The injected ``client`` is shared and owned by the caller.
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
        self._model = model
        self._stream = stream
        key = api_key.get_secret_value() if api_key is not None else ""
        self._secrets = (key,) if key else ()
        merged = httpx.Headers(auth_headers(preset, key))
        merged.update(preset.headers)
        merged.update(headers or {})
        self._http = JsonHttp(
            name,
            client,
            headers=merged,
            timeout=timeout,
            error=self._error,
            max_body=max_body_bytes,
        )

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body of ``POST /chat`` for ``request``."""
        return build_body(self.preset, request, model=self._model, stream=self._stream)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        if request.mode != "chat":
            raise BackendError(
                "Cohere has no text completion endpoint",
                backend=self.name,
                hint="set `mode: chat` for this backend",
            )
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

    def _error(
        self,
        failure: httpx.Response | httpx.HTTPError | Mapping[str, Any],
        *,
        body: bytes = b"",
        midstream: bool = False,
    ) -> BackendError:
        return cohere_error(
            self.name, failure, body=body, secrets=self._secrets, midstream=midstream
        )


def build_cohere(
    name: str,
    config: BackendConfig,
    preset: ProviderPreset,
    base_url: str,
    client: httpx.AsyncClient,
    api_key: SecretStr | None,
) -> CohereBackend:
    """The registry's factory (:data:`bot.backends.registry.FAMILIES`)."""
    return CohereBackend(
        name,
        client,
        preset=preset,
        base_url=base_url,
        api_key=api_key,
        model=config.model,
        headers=config.headers,
        timeout=config.timeout,
        stream=config.stream,
    )


def cohere_error(
    backend: str,
    failure: httpx.Response | httpx.HTTPError | Mapping[str, Any],
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
    secrets = tuple(secrets)
    if isinstance(failure, httpx.HTTPError):
        error = transport_error(backend, failure, midstream=midstream)
    elif isinstance(failure, httpx.Response):
        payload = decode_json(body)
        said = describe_body(body, payload) if body else failure.reason_phrase
        status = failure.status_code
        error = classify(backend, status, said, "", failure.headers, now=now)
        words = said.lower()
        if status == 498:  # Cohere's own "invalid token"
            error = BackendAuthError(error.message, detail=error.detail)
        elif isinstance(error, BackendRateLimited) and "trial key" in words and "month" in words:
            # waiting a minute will not help: the month's allowance is gone
            error = BackendError(error.message, detail=error.detail, hint=TRIAL_HINT)
    else:
        said = server_message(failure) or truncate(json.dumps(failure), 200)
        error = classify(backend, 0, said, "", {}, in_stream=True, now=now)
    error.backend = backend
    error.message = redact(error.message, secrets)
    error.detail = redact(error.detail, secrets)
    error.args = (error.message,)
    return error
