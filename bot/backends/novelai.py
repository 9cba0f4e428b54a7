"""NovelAI's legacy text family (Erato, Kayra, Clio): ``POST /ai/generate-stream`` (typed
SSE, ``event: newToken``) or ``POST /ai/generate`` (one ``{"output"}``), text mode only.

Stop strings are cut client-side as the reply streams (see :mod:`bot.backends.novelai_wire`
for why). The legacy API has no model list (the known models are listed from a table) and
no token count endpoint. Its newer OpenAI-style API is the ``novelai-oa`` preset of the
OpenAI family. Closing the connection ends a generation; there is no abort call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from pydantic import SecretStr

from bot.backends.base import Backend, GenerationRequest, ModelInfo, StreamEvent
from bot.backends.http_json import DEFAULT_MAX_BODY, JsonHttp, closing
from bot.backends.native import drive, request_headers, server_root
from bot.backends.novelai_wire import (
    MAX_LENGTH,
    MODELS,
    NovelAIDecoder,
    generate_body,
    novelai_error,
    stops_of,
)
from bot.backends.presets import ProviderPreset
from bot.config import BackendConfig
from bot.errors import BackendError

CHAT_HINT = "set `mode: text`, or use `provider: novelai-oa` for NovelAI's chat completions"


class NovelAIBackend:
    """``Backend`` and ``ModelCatalog`` for NovelAI's ``/ai/generate`` API.

    The injected ``client`` is shared and owned by the caller; this class never closes it.
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
        self.base_url = server_root(base_url)
        self._model = model or MODELS[0]
        self._stream = stream
        key = api_key.get_secret_value() if api_key is not None else ""
        self._secrets = (key,) if key else ()
        self._http = JsonHttp(
            name,
            client,
            headers=request_headers(preset, key, headers),
            timeout=timeout,
            error=self._error,
            max_body=max_body_bytes,
        )

    def _error(
        self,
        failure: httpx.Response | httpx.HTTPError | Mapping[str, Any],
        *,
        body: bytes = b"",
        midstream: bool = False,
    ) -> BackendError:
        return novelai_error(
            self.name, failure, body=body, secrets=self._secrets, midstream=midstream
        )

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        return generate_body(request, model=self._model)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        if request.mode != "text":
            raise BackendError(
                "NovelAI's legacy API has no chat endpoint", backend=self.name, hint=CHAT_HINT
            )
        body = self.request_body(request)
        decoder = NovelAIDecoder(
            self.name,
            self._error,
            stops=stops_of(request),
            max_length=min(request.max_tokens, MAX_LENGTH),
        )
        path = "/ai/generate-stream" if self._stream else "/ai/generate"
        events = drive(
            self._http,
            self.base_url + path,
            body,
            decoder,
            stream=self._stream,
            framing="sse",
            error=self._error,
        )
        async with closing(events):
            async for event in events:
                yield event

    async def list_models(self) -> list[ModelInfo]:
        """The legacy API has no model list: the models it is known to serve."""
        return [ModelInfo(model) for model in MODELS]


def build_novelai(
    name: str,
    config: BackendConfig,
    preset: ProviderPreset,
    base_url: str,
    client: httpx.AsyncClient,
    api_key: SecretStr | None,
) -> Backend:
    """The registry's factory for ``family: novelai_legacy``."""
    return NovelAIBackend(
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
