"""llama.cpp's native family: ``POST /completion`` (text mode), plus the native extras the
OpenAI-compatible routes lack: ``/tokenize`` for exact token counts, ``/props`` for the
model's chat template and context size, ``/health`` for "is the model loaded yet".

For chat mode, use ``provider: llamacpp`` (the OpenAI family on the same server's ``/v1``).
llama.cpp has no abort call: closing the connection stops the generation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from bot.backends.base import GenerationRequest, ModelInfo, StreamEvent
from bot.backends.family import JsonBackend, standard_factory
from bot.backends.http_json import closing
from bot.backends.llamacpp_wire import (
    CompletionDecoder,
    ServerProps,
    completion_body,
    llamacpp_error,
    parse_props,
    token_count,
)
from bot.backends.openai_wire import parse_models
from bot.backends.presets import NativeCall
from bot.errors import BackendError, BackendNotFound

CHAT_HINT = (
    "llama.cpp's native /completion takes a templated prompt: set `mode: text`, or use "
    "`provider: llamacpp` for its OpenAI-compatible /v1/chat/completions"
)


class LlamaCppNativeBackend(JsonBackend):
    """``Backend``, ``ModelCatalog`` and ``TokenCountingBackend`` for llama-server.

    The injected ``client`` is shared and owned by the caller; this class never closes it.
    ``stream=False`` asks for one JSON answer; the events yielded are the same.
    """

    family_error = staticmethod(llamacpp_error)
    # the native routes live at the root; a copied ".../v1" would make every one a 404
    api_prefixes = ("/v1",)
    _counter: tuple[NativeCall, ...] = ()  # the token count route found to work

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        return completion_body(request, model=self._model, stream=self._stream)

    # -- Backend -------------------------------------------------------------------------

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        if request.mode != "text":
            raise BackendError(
                "the native llama.cpp API has no chat endpoint", backend=self.name, hint=CHAT_HINT
            )
        decoder = CompletionDecoder(self.name, self._error)
        events = self._http.generate(
            self.base_url + "/completion",
            self.request_body(request),
            stream=self._stream,
            decoder=decoder,
            whole=decoder.whole,
        )
        async with closing(events):
            async for event in events:
                yield event

    # -- ModelCatalog and the native extras ----------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """``GET /v1/models``: one entry, the loaded file (or its ``--alias``)."""
        return parse_models(self.name, await self._http.fetch("GET", self.base_url + "/v1/models"))

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


build_llamacpp_native = standard_factory(LlamaCppNativeBackend)
"""The registry's factory for ``family: llamacpp_native``."""
