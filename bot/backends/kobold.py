"""The Kobold family: KoboldCpp's native API and KoboldAI Classic (text completion only).

KoboldCpp: ``POST /api/extra/generate/stream`` (typed SSE, ``event: message``, no ``[DONE]``)
or the blocking ``POST /api/v1/generate``; ``/api/extra/abort`` with the request's ``genkey``
when a reply is abandoned (closing the connection does not stop it), ``/api/extra/tokencount``
for exact counts, and ``/api/extra/perf`` just after a reply for its token usage and true
stop reason. KoboldAI Classic only has the blocking generate: its whole text is one delta.

Which server it is comes from the preset row: ``koboldcpp-native`` names the abort and the
token counter (the ``/api/extra`` routes come as a set), ``koboldai-classic`` names neither.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from pydantic import SecretStr

from bot.backends.base import (
    Backend,
    Finish,
    GenerationRequest,
    ModelInfo,
    StreamEvent,
    Usage,
)
from bot.backends.extras import NO_COUNTER_HINT
from bot.backends.family import JsonBackend
from bot.backends.http_json import DEFAULT_MAX_BODY, closing
from bot.backends.kobold_wire import (
    CHAT_HINT,
    GenerateDecoder,
    generate_body,
    kobold_error,
    sampler_names,
    settle,
)
from bot.backends.presets import ProviderPreset
from bot.config import BackendConfig
from bot.errors import BackendError

_log = logging.getLogger(__name__)

STREAM_PATH = "/api/extra/generate/stream"
GENERATE_PATH = "/api/v1/generate"


class KoboldBackend(JsonBackend):
    """``Backend``, ``ModelCatalog`` and ``TokenCountingBackend`` for the Kobold API.

    The injected ``client`` is shared and owned by the caller; this class never closes it.
    ``stream=False`` (or a server that cannot stream) asks for one blocking answer; the
    events yielded are the same, the text arriving as one delta.
    """

    family_error = staticmethod(kobold_error)
    # users copy KoboldAI's ".../api" (SillyTavern stores it so); the routes start at root
    api_prefixes = ("/api", "/v1")
    extras = True

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        preset: ProviderPreset,
        base_url: str,
        api_key: SecretStr | None = None,
        context_size: int = 8192,
        headers: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        stream: bool = True,
        max_body_bytes: int = DEFAULT_MAX_BODY,
    ) -> None:
        super().__init__(
            name,
            client,
            preset=preset,
            base_url=base_url,
            api_key=api_key,
            headers=headers,
            timeout=timeout,
            stream=stream and preset.streams,
            max_body_bytes=max_body_bytes,
        )
        self._context_size = context_size
        self._names = sampler_names(preset)

    def request_body(
        self, request: GenerationRequest, key: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        return generate_body(
            request,
            self.preset,
            context_size=self._context_size,
            names=self._names,
            key=key or {},
        )

    # -- Backend -------------------------------------------------------------------------

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        if request.mode != "text":
            raise BackendError(
                "the Kobold API has no chat endpoint", backend=self.name, hint=CHAT_HINT
            )
        key = self._extras.request_key() if self._extras is not None else {}
        decoder = GenerateDecoder(self.name, self._error)
        events = self._http.generate(
            self.base_url + (STREAM_PATH if self._stream else GENERATE_PATH),
            self.request_body(request, key),
            stream=self._stream,
            decoder=decoder,
            whole=decoder.whole,
        )
        if self._extras is not None:
            events = self._extras.guard(events, key)
        usage_seen = False
        async with closing(events):
            async for event in events:
                if isinstance(event, Usage):
                    usage_seen = True
                if isinstance(event, Finish) and self._extras is not None:
                    for settled in await self._settle(event, usage_seen):
                        yield settled
                    continue
                yield event

    async def _settle(self, finish: Finish, usage_seen: bool) -> list[StreamEvent]:
        """Usage and the true stop reason, from ``/api/extra/perf``; without them if the
        probe fails (they are a nicety, the reply itself is complete)."""
        if usage_seen and finish.raw != "length":
            return [finish]
        assert self._extras is not None
        try:
            perf = await self._extras.quick.call("GET", self.base_url + "/api/extra/perf")
        except BackendError as exc:
            _log.debug("%s: no usage from /api/extra/perf: %s", self.name, exc.message)
            return [finish]
        return settle(finish, usage_seen, perf)

    # -- ModelCatalog, token counts, version ----------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """The loaded model (``GET /api/v1/model``, ``koboldcpp/<name>``) and its context
        size; none while KoboldAI Classic has no model loaded (it answers ``ReadOnly``)."""
        payload = await self._http.call("GET", self.base_url + "/api/v1/model")
        model = payload.get("result") if isinstance(payload, Mapping) else None
        if not isinstance(model, str) or not model or model == "ReadOnly":
            return []
        return [ModelInfo(model, await self._context_length())]

    async def _context_length(self) -> int | None:
        path = (
            "/api/extra/true_max_context_length"
            if self._extras is not None
            else "/api/v1/config/max_context_length"
        )
        try:
            payload = await self._http.call("GET", self.base_url + path)
        except BackendError as exc:
            _log.debug("%s: no context size: %s", self.name, exc.message)
            return None
        value = payload.get("value") if isinstance(payload, Mapping) else None
        return value if isinstance(value, int) and value > 0 else None

    async def count_tokens(self, text: str) -> int:
        """``POST /api/extra/tokencount {prompt}`` → ``{value, ids}`` (KoboldCpp only)."""
        if self._extras is None:
            raise BackendError(
                f"{self.preset.name} has no token count endpoint",
                backend=self.name,
                hint=NO_COUNTER_HINT,
            )
        return await self._extras.count_tokens(text)

    async def version(self) -> str:
        """``KoboldCpp 1.98`` (``/api/extra/version``), or the Kobold API version a Classic
        server reports (``/api/v1/info/version``)."""
        if self._extras is not None:
            payload = await self._http.call("GET", self.base_url + "/api/extra/version")
            if isinstance(payload, Mapping):
                return f"{payload.get('result', 'KoboldCpp')} {payload.get('version', '')}".strip()
        payload = await self._http.call("GET", self.base_url + "/api/v1/info/version")
        result = payload.get("result") if isinstance(payload, Mapping) else None
        return f"KoboldAI API {result}" if isinstance(result, str) else "KoboldAI API"


def build_kobold(
    name: str,
    config: BackendConfig,
    preset: ProviderPreset,
    base_url: str,
    client: httpx.AsyncClient,
    api_key: SecretStr | None,
) -> Backend:
    """The registry's factory for ``family: kobold_native``."""
    return KoboldBackend(
        name,
        client,
        preset=preset,
        base_url=base_url,
        api_key=api_key,
        context_size=config.context_size,
        headers=config.headers,
        timeout=config.timeout,
        stream=config.stream,
    )
