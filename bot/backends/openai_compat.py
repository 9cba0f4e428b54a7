"""The OpenAI-compatible family: chat (``/chat/completions``) and text (``/completions``).

One class serves every provider row in :mod:`bot.backends.presets`; the row decides the
auth header, extra headers, which sampler keys are sent and how they are spelled, and how
many stop strings fit. Streams are read by :class:`bot.backends.http_json.JsonHttp` and
decoded by :class:`bot.backends.openai_wire.OpenAIStream`; every failure is mapped by
:func:`bot.backends.errors.openai_error`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from bot.backends.base import GenerationRequest, ModelInfo, StreamEvent
from bot.backends.errors import openai_error
from bot.backends.extras import NO_COUNTER_HINT
from bot.backends.family import JsonBackend
from bot.backends.http_json import closing
from bot.backends.openai_wire import OpenAIStream, build_request, parse_models, parse_response
from bot.errors import BackendError


class OpenAICompatBackend(JsonBackend):
    """``Backend`` and ``ModelCatalog`` for every OpenAI-compatible provider.

    The injected ``client`` is shared and owned by the caller; this class never closes it.
    ``stream=False`` asks for one JSON answer (for servers whose streaming is broken); the
    events yielded are the same. The server's own token counter and abort are used where
    the preset row names them.
    """

    family_error = staticmethod(openai_error)
    extras = True

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
        chat = request.mode == "chat"
        events = self._http.generate(
            self.base_url + path,
            body,
            stream=self._stream,
            decoder=OpenAIStream(self.name, self._error, chat=chat),
            whole=lambda raw: parse_response(self.name, raw, chat=chat, secrets=self._secrets),
        )
        async with closing(events):  # closed now, not whenever the collector runs
            async for event in events:
                yield event

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

    async def list_models(self) -> list[ModelInfo]:
        """``GET {base}/models``: OpenAI's ``{"data": [...]}`` or a bare list (Pollinations)."""
        # accept=None: the client's default Accept, what this GET has always sent
        raw = await self._http.fetch("GET", self.base_url + "/models", accept=None)
        return parse_models(self.name, raw)
