"""Ollama's native family: ``POST /api/chat`` (chat mode) and ``POST /api/generate`` with
``raw: true`` (text mode), NDJSON streams, ``options`` with the real sampler names and
``num_ctx``, ``keep_alive``, ``think``; models from ``GET /api/tags``.

The same class serves a local server (no key; a key, if configured, goes out as Bearer for
a proxy in front) and ollama.com's API (Bearer key). Ollama has no abort call and no token
count endpoint: closing the connection stops the generation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from pydantic import SecretStr

from bot.backends.base import Backend, GenerationRequest, ModelInfo, StreamEvent
from bot.backends.errors import Failure
from bot.backends.family import JsonBackend
from bot.backends.http_json import DEFAULT_MAX_BODY, closing
from bot.backends.ollama_wire import KeepAlive, OllamaDecoder, Think, ollama_error, request_body
from bot.backends.openai_wire import parse_models
from bot.backends.presets import ProviderPreset
from bot.config import BackendConfig
from bot.errors import BackendError, ConfigError


class OllamaBackend(JsonBackend):
    """``Backend`` and ``ModelCatalog`` for Ollama's native API.

    The injected ``client`` is shared and owned by the caller; this class never closes it.
    ``keep_alive`` (``"5m"``, seconds, ``-1`` for ever, ``None`` for the server's default)
    and ``think`` (``True``/``False``/``"low"``…, ``None``: not sent) go out as given.
    """

    # the native routes are /api/*; a copied ".../v1" or ".../api" is cut back to the root
    api_prefixes = ("/v1", "/api")

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        preset: ProviderPreset,
        base_url: str,
        model: str,
        api_key: SecretStr | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        stream: bool = True,
        num_ctx: int | None = None,
        keep_alive: KeepAlive = None,
        think: Think = None,
        max_body_bytes: int = DEFAULT_MAX_BODY,
    ) -> None:
        super().__init__(
            name,
            client,
            preset=preset,
            base_url=base_url,
            api_key=api_key,
            model=model,
            headers=headers,
            timeout=timeout,
            stream=stream,
            max_body_bytes=max_body_bytes,
        )
        self._num_ctx = num_ctx
        self._keep_alive = keep_alive
        self._think = think

    def _error(
        self, failure: Failure, *, body: bytes = b"", midstream: bool = False
    ) -> BackendError:
        """Ollama's mapping, which names the model in a "not found" hint."""
        return ollama_error(
            self.name,
            failure,
            body=body,
            secrets=self._secrets,
            midstream=midstream,
            model=self._model,
        )

    def request_body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        return request_body(
            request,
            model=self._model,
            stream=self._stream,
            num_ctx=self._num_ctx,
            keep_alive=self._keep_alive,
            think=self._think,
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        path, body = self.request_body(request)
        decoder = OllamaDecoder(self.name, self._error)
        events = self._http.generate(
            self.base_url + path,
            body,
            stream=self._stream,
            decoder=decoder,
            whole=decoder.whole,
            framing="ndjson",
        )
        async with closing(events):
            async for event in events:
                yield event

    async def list_models(self) -> list[ModelInfo]:
        """``GET /api/tags``: the models pulled on the server, as ``name:tag``."""
        return parse_models(self.name, await self._http.fetch("GET", self.base_url + "/api/tags"))


def build_ollama(
    name: str,
    config: BackendConfig,
    preset: ProviderPreset,
    base_url: str,
    client: httpx.AsyncClient,
    api_key: SecretStr | None,
) -> Backend:
    """The registry's factory for ``family: ollama_native``."""
    if not config.model:
        # Ollama answers 400 "model is required"; better said at start-up
        raise ConfigError(
            f"backend {name!r}: Ollama needs a model name",
            hint="set `model`, e.g. `model: llama3.2:3b` (`ollama list` shows what is pulled)",
        )
    return OllamaBackend(
        name,
        client,
        preset=preset,
        base_url=base_url,
        model=config.model,
        api_key=api_key,
        headers=config.headers,
        timeout=config.timeout,
        stream=config.stream,
        num_ctx=config.context_size,
        keep_alive=config.keep_alive,
    )
