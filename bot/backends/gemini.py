"""The gemini family: Google AI Studio and Vertex AI ``generateContent``, chat mode only.

Both providers take the same body and answer in the same format; they differ in the URL
(Vertex puts project and region in it) and in auth (AI Studio: an API key; Vertex: an API key
in "express mode" or a service account's OAuth token, :mod:`bot.backends.google_auth`).
Streams are ``:streamGenerateContent?alt=sse``: SSE ``data:`` events with no sentinel, each a
whole ``GenerateContentResponse``, read by :class:`bot.backends.http_json.JsonHttp`. Every
failure is mapped by :func:`bot.backends.gemini_errors.gemini_error`. Gemini has no abort
call: closing the stream is the cancellation.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import httpx
from pydantic import SecretStr

from bot.backends.base import GenerationRequest, ModelInfo, StreamEvent
from bot.backends.errors import Failure, decode_json, protocol_error, unreadable
from bot.backends.family import require_chat
from bot.backends.gemini_errors import gemini_error
from bot.backends.gemini_wire import (
    SAFETY_CATEGORIES,
    VERTEX_SAFETY_CATEGORIES,
    Reply,
    build_body,
    count_body,
    parse_models,
)
from bot.backends.google_auth import (
    ApiKeyAuth,
    GoogleAuth,
    ServiceAccountAuth,
    load_service_account,
)
from bot.backends.http_json import DEFAULT_MAX_BODY, JsonHttp, closing
from bot.backends.presets import ProviderPreset
from bot.backends.sse import StreamRecord
from bot.config import BackendConfig, GeminiOptions
from bot.errors import BackendError, BackendNotFound, ConfigError

_MAX_MODEL_PAGES = 20
VERTEX_EXPRESS_BASE = "https://aiplatform.googleapis.com/v1/publishers/google"


@dataclass(frozen=True, slots=True)
class GoogleFlavor:
    """What differs between the two providers beyond their preset rows."""

    vertex: bool
    safety_categories: tuple[str, ...]


FLAVORS: Mapping[str, GoogleFlavor] = MappingProxyType(
    {
        "gemini": GoogleFlavor(vertex=False, safety_categories=SAFETY_CATEGORIES),
        "vertex": GoogleFlavor(vertex=True, safety_categories=VERTEX_SAFETY_CATEGORIES),
    }
)


class GeminiBackend:
    """``Backend``, ``ModelCatalog`` and token counter for AI Studio and Vertex AI.

    The injected ``client`` is shared and owned by the caller; this class never closes it.
    ``stream=False`` asks ``:generateContent`` for one JSON answer; the events are the same.
    """

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        preset: ProviderPreset,
        base_url: str,
        auth: GoogleAuth,
        options: GeminiOptions | None = None,
        model: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        stream: bool = True,
        max_body_bytes: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.name = name
        self.preset = preset
        self.flavor = FLAVORS.get(preset.name, FLAVORS["gemini"])
        self.base_url = base_url.rstrip("/")
        self._auth = auth
        self._options = options or GeminiOptions()
        self._model = model
        self._stream = stream
        self._http = JsonHttp(
            name,
            client,
            headers=httpx.Headers(headers or {}),
            timeout=timeout,
            error=self._error,
            max_body=max_body_bytes,
        )

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body for ``request``, as this provider wants it."""
        return build_body(
            request,
            self._options,
            samplers=self.preset.samplers,
            max_stop=self.preset.max_stop,
            safety_categories=self.flavor.safety_categories,
        )

    # -- Backend -------------------------------------------------------------------------

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        require_chat(request, self.name, "Gemini")
        body = self.request_body(request)
        method = "streamGenerateContent" if self._stream else "generateContent"
        url = self._model_url(request.model or self._model, method)
        headers = await self._auth.headers()
        reply = Reply(self.name, self._auth.secrets())
        events = self._http.generate(
            url,
            body,
            stream=self._stream,
            decoder=GeminiStream(self.name, reply),
            whole=lambda raw: whole_answer(self.name, raw, reply),
            params={"alt": "sse"} if self._stream else None,
            headers=headers,
        )
        async with closing(events):  # closed now, not whenever the collector runs
            async for event in events:
                yield event

    # -- ModelCatalog and token counting -------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """``GET {base}/models``, every page, keeping the models that ``generateContent``."""
        if self.flavor.vertex:
            raise BackendError(
                "Vertex AI has no model list for this API",
                backend=self.name,
                hint="set `model:` to a Gemini model id such as gemini-2.5-flash",
            )
        models: list[ModelInfo] = []
        token = ""
        for _ in range(_MAX_MODEL_PAGES):
            params = {"pageSize": "1000", **({"pageToken": token} if token else {})}
            raw = await self._fetch("GET", self.base_url + "/models", params=params)
            page, token = parse_models(self.name, raw)
            models += page
            if not token:
                break
        return models

    async def count_tokens(self, text: str) -> int:
        """``POST models/{model}:countTokens`` → ``totalTokens``."""
        url = self._model_url(self._model, "countTokens")
        raw = await self._fetch("POST", url, body=count_body(text))
        payload = decode_json(raw)
        total = payload.get("totalTokens") if isinstance(payload, dict) else None
        if not isinstance(total, int):
            raise protocol_error(
                self.name, "the server sent no token count", detail=raw[:300].decode()
            )
        return total

    # -- plumbing ------------------------------------------------------------------------

    def _model_url(self, model: str, method: str) -> str:
        if not model:
            raise BackendNotFound("no model is set for this backend", backend=self.name)
        # "gemini-2.5-flash", "models/gemini-2.5-flash" and "tunedModels/x" all work
        path = model if "/" in model else f"models/{model}"
        return f"{self.base_url}/{path}:{method}"

    async def _fetch(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> bytes:
        # accept=None: the client's default Accept, what these calls have always sent
        headers = await self._auth.headers()
        return await self._http.fetch(
            method, url, body=body, params=params, accept=None, headers=headers
        )

    def _error(
        self,
        failure: Failure,
        *,
        body: bytes = b"",
        midstream: bool = False,
    ) -> BackendError:
        """The family's mapping, with every token the auth has used kept out of it."""
        if isinstance(failure, httpx.Response) and failure.status_code == 401:
            self._auth.invalidate()  # a revoked or expired token: fetch a new one next time
        return gemini_error(
            self.name, failure, body=body, secrets=self._auth.secrets(), midstream=midstream
        )


class GeminiStream:
    """The SSE events of one streamed reply → our events (a ``Decoder``). There is no end
    event: the reply is finished when a chunk named its ``finishReason``."""

    done = False  # never set: every chunk is read, the last carries the usage

    def __init__(self, backend: str, reply: Reply) -> None:
        self.backend = backend
        self.reply = reply

    def feed(self, record: StreamRecord) -> list[StreamEvent]:
        return feed_json(self.backend, self.reply, record.data)

    def close(self) -> list[StreamEvent] | None:
        return self.reply.end() if self.reply.finish else None


def feed_json(backend: str, reply: Reply, data: str | Any) -> list[StreamEvent]:
    """One response object (or its JSON text) → events; a bad shape is a protocol error."""
    try:
        return reply.feed(json.loads(data) if isinstance(data, str) else data)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        shown = data if isinstance(data, str) else json.dumps(data)
        raise protocol_error(
            backend, "the server sent a malformed response chunk", detail=shown
        ) from exc


def whole_answer(backend: str, raw: bytes, reply: Reply) -> list[StreamEvent]:
    """A non-streamed answer: one JSON object (or, without ``alt=sse``, an array)."""
    payload = decode_json(raw)
    if not isinstance(payload, dict | list):
        raise unreadable(backend, raw)
    events: list[StreamEvent] = []
    for item in payload if isinstance(payload, list) else [payload]:
        events += feed_json(backend, reply, item)
    return events + reply.end()


def vertex_base_url(url: str, region: str, project: str, *, template: str) -> str:
    """Fill ``{region}`` and ``{project}`` in a Vertex base URL. The ``global`` region has
    no regional host; with no project, the preset's own template becomes the express-mode
    URL, which needs none."""
    if "{project}" in url and not project:
        if url == template:
            return VERTEX_EXPRESS_BASE
        raise ValueError("no project")
    if region == "global":
        url = url.replace("{region}-aiplatform.", "aiplatform.")
    return url.replace("{region}", region).replace("{project}", project)


def build_gemini(
    name: str,
    config: BackendConfig,
    preset: ProviderPreset,
    base_url: str,
    client: httpx.AsyncClient,
    api_key: SecretStr | None,
) -> GeminiBackend:
    """The registry's factory: picks the auth and fills in Vertex's URL. Start-up only."""
    options = config.gemini
    flavor = FLAVORS.get(preset.name, FLAVORS["gemini"])
    key = api_key.get_secret_value() if api_key is not None else ""
    auth: GoogleAuth = ApiKeyAuth(key)
    if flavor.vertex:
        path = options.service_account_path()
        project = options.project
        if path is not None and key:
            raise ConfigError(
                f"backend {name!r}: both an API key and a service account are set",
                hint="keep `api_key_env` (express mode) or `gemini.service_account_file`",
            )
        if path is not None:
            account = load_service_account(path)
            auth = ServiceAccountAuth(name, client, account, timeout=config.timeout)
            project = project or account.project_id
        elif not key:
            raise ConfigError(
                f"backend {name!r}: Vertex AI needs a service account or an API key",
                hint="set `gemini.service_account_file` (or `gemini.service_account_env`), "
                "or `api_key_env` for express mode",
            )
        try:
            base_url = vertex_base_url(base_url, options.region, project, template=preset.base_url)
        except ValueError:
            raise ConfigError(
                f"backend {name!r}: the Vertex AI URL needs a project",
                hint="set `gemini.project` to the Google Cloud project id",
            ) from None
    return GeminiBackend(
        name,
        client,
        preset=preset,
        base_url=base_url,
        auth=auth,
        options=options,
        model=config.model,
        headers=config.headers,
        timeout=config.timeout,
        stream=config.stream,
    )
