"""NovelAI's legacy text family (Erato, Kayra, Clio): ``POST /ai/generate-stream`` (typed
SSE, ``event: newToken``) or ``POST /ai/generate`` (one ``{"output"}``), text mode only.

Stop strings are cut client-side as the reply streams (see :mod:`bot.backends.novelai_wire`
for why). The legacy API has no model list (the known models are listed from a table) and
no token count endpoint. Its newer OpenAI-style API is the ``novelai-oa`` preset of the
OpenAI family. Closing the connection ends a generation; there is no abort call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from bot.backends.base import GenerationRequest, ModelInfo, StreamEvent
from bot.backends.family import JsonBackend, standard_factory
from bot.backends.http_json import closing
from bot.backends.novelai_wire import (
    MAX_LENGTH,
    MODELS,
    NovelAIDecoder,
    generate_body,
    novelai_error,
    stops_of,
)
from bot.errors import BackendError

CHAT_HINT = "set `mode: text`, or use `provider: novelai-oa` for NovelAI's chat completions"


class NovelAIBackend(JsonBackend):
    """``Backend`` and ``ModelCatalog`` for NovelAI's ``/ai/generate`` API.

    The injected ``client`` is shared and owned by the caller; this class never closes it.
    """

    family_error = staticmethod(novelai_error)

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        return generate_body(request, model=self._model or MODELS[0])

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
        events = self._http.generate(
            self.base_url + path, body, stream=self._stream, decoder=decoder, whole=decoder.whole
        )
        async with closing(events):
            async for event in events:
                yield event

    async def list_models(self) -> list[ModelInfo]:
        """The legacy API has no model list: the models it is known to serve."""
        return [ModelInfo(model) for model in MODELS]


build_novelai = standard_factory(NovelAIBackend)
"""The registry's factory for ``family: novelai_legacy``."""
