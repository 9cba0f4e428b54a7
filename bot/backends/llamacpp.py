"""llama.cpp's native family: ``POST /completion`` (text mode), plus the native extras the
OpenAI-compatible routes lack: ``/tokenize`` for exact token counts, ``/props`` for the
model's chat template and context size, ``/health`` for "is the model loaded yet".

For chat mode, use ``provider: llamacpp`` (the OpenAI family on the same server's ``/v1``).
llama.cpp has no abort call: closing the connection stops the generation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from pydantic import SecretStr

from bot.backends.base import Backend, GenerationRequest, ModelInfo, StreamEvent
from bot.backends.http_json import DEFAULT_MAX_BODY, JsonHttp, closing
from bot.backends.llamacpp_wire import (
    CompletionDecoder,
    ServerProps,
    completion_body,
    llamacpp_error,
    parse_props,
    token_count,
)
from bot.backends.native import drive, fetch_models, request_headers, server_root
from bot.backends.presets import NativeCall, ProviderPreset
from bot.config import BackendConfig
from bot.errors import BackendError, BackendNotFound

CHAT_HINT = (
    "llama.cpp's native /completion takes a templated prompt: set `mode: text`, or use "
    "`provider: llamacpp` for its OpenAI-compatible /v1/chat/completions"
)


class LlamaCppNativeBackend:
    """``Backend``, ``ModelCatalog`` and ``TokenCountingBackend`` for llama-server.

    The injected ``client`` is shared and owned by the caller; this class never closes it.
    ``stream=False`` asks for one JSON answer; the events yielded are the same.
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
        # the native routes live at the root; a copied ".../v1" would make every one a 404
        self.base_url = server_root(base_url, "/v1")
        self._model = model
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
        self._counter: tuple[NativeCall, ...] = ()  # the token count route found to work

    def _error(
        self,
        failure: httpx.Response | httpx.HTTPError | Mapping[str, Any],
        *,
        body: bytes = b"",
        midstream: bool = False,
    ) -> BackendError:
        return llamacpp_error(
            self.name, failure, body=body, secrets=self._secrets, midstream=midstream
        )

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        return completion_body(request, model=self._model, stream=self._stream)

    # -- Backend -------------------------------------------------------------------------

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        if request.mode != "text":
            raise BackendError(
                "the native llama.cpp API has no chat endpoint", backend=self.name, hint=CHAT_HINT
            )
        events = drive(
            self._http,
            self.base_url + "/completion",
            self.request_body(request),
            CompletionDecoder(self.name, self._error),
            stream=self._stream,
            framing="sse",
            error=self._error,
        )
        async with closing(events):
            async for event in events:
                yield event

    # -- ModelCatalog and the native extras ----------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """``GET /v1/models``: one entry, the loaded file (or its ``--alias``)."""
        return await fetch_models(self._http, self.base_url + "/v1/models", self._error)

    async def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by the loaded model's own tokenizer (llama-server adds no BOS).

        The preset's routes are tried in order (``/tokenize``, then llama-cpp-python's
        ``/extras/tokenize/count``); the first one the server has is remembered.
        """
        calls = self._counter or self.preset.token_count
        for n, call in enumerate(calls, 1):
            try:
                payload = await self._http.call(
                    "POST", self.base_url + call.path, body={call.field: text}
                )
            except BackendNotFound:
                if n < len(calls):
                    continue  # not this server's route: probe the next
                raise
            self._counter = (call,)
            return token_count(self.name, payload)
        raise BackendError(
            f"provider {self.preset.name!r} names no token count endpoint", backend=self.name
        )

    async def props(self) -> ServerProps:
        """``GET /props``: the model's chat template, context size and file."""
        return parse_props(self.name, await self._http.call("GET", self.base_url + "/props"))

    async def health(self) -> None:
        """Returns when the server is up with its model loaded; while it loads, raises
        :class:`bot.errors.BackendUnavailable` ("the model is still loading")."""
        try:
            await self._http.call("GET", self.base_url + "/health")
        except BackendNotFound:
            # no /health (llama-cpp-python): a model list answered means the model is there
            await self._http.call("GET", self.base_url + "/v1/models")


def build_llamacpp_native(
    name: str,
    config: BackendConfig,
    preset: ProviderPreset,
    base_url: str,
    client: httpx.AsyncClient,
    api_key: SecretStr | None,
) -> Backend:
    """The registry's factory for ``family: llamacpp_native``."""
    return LlamaCppNativeBackend(
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
