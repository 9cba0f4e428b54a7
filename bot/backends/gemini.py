"""The gemini family: Google AI Studio and Vertex AI ``generateContent``, chat mode only.

Both providers take the same body and answer in the same format; they differ in the URL
(Vertex puts project and region in it) and in auth (AI Studio: an API key; Vertex: an API key
in "express mode" or a service account's OAuth token, :mod:`bot.backends.google_auth`).
Streams are ``:streamGenerateContent?alt=sse``: SSE ``data:`` events with no sentinel, each a
whole ``GenerateContentResponse``, parsed by :mod:`bot.backends.sse`. Every failure is mapped
by :func:`bot.backends.gemini_errors.gemini_error`. Gemini has no abort call: closing the
stream is the cancellation.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from bot.backends.base import GenerationRequest, ModelInfo, StreamEvent
from bot.backends.errors import decode_json, describe_body, looks_like_html, protocol_error
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
from bot.backends.presets import ProviderPreset
from bot.backends.sse import SSEParser, StreamRecord
from bot.config import BackendConfig, GeminiOptions
from bot.errors import (
    BackendError,
    BackendNotFound,
    BackendStreamCut,
    BackendUnavailable,
    ConfigError,
)

_T = TypeVar("_T")

DEFAULT_MAX_BODY = 10 * 1024 * 1024
_ERROR_BODY_LIMIT = 64 * 1024
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
        self._client = client
        self._auth = auth
        self._options = options or GeminiOptions()
        self._model = model
        self._stream = stream
        self._max_body = max_body_bytes
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 15.0))
        self._headers = httpx.Headers(headers or {})

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
        if request.mode != "chat":
            raise BackendError(
                "Gemini has no text completion endpoint",
                backend=self.name,
                hint="set `mode: chat` for this backend",
            )
        body = self.request_body(request)
        method = "streamGenerateContent" if self._stream else "generateContent"
        params = {"alt": "sse"} if self._stream else None
        url = self._model_url(request.model or self._model, method)
        headers = await self._request_headers()
        headers["Accept"] = "text/event-stream" if self._stream else "application/json"
        delivered = False
        try:
            async with self._client.stream(
                "POST", url, params=params, json=body, headers=headers, timeout=self._timeout
            ) as response:
                await self._check(response)
                reply = Reply(self.name, self._auth.secrets())
                kind = response.headers.get("content-type", "").partition(";")[0].strip()
                if self._stream and kind.lower() not in ("application/json", "text/html"):
                    events = self._events(response, reply)
                    async with _closing(events):
                        async for event in events:
                            delivered = True
                            yield event
                    return
                raw = await self._read(response, self._max_body)
                for event in self._whole(raw, reply):
                    yield event
        except httpx.HTTPError as exc:
            raise gemini_error(
                self.name, exc, secrets=self._auth.secrets(), midstream=delivered
            ) from exc

    async def _events(self, response: httpx.Response, reply: Reply) -> AsyncIterator[StreamEvent]:
        meter = _Meter()
        batches = self._batches(response, meter)
        async with _closing(batches):
            async for batch in batches:
                for record in batch:
                    for event in self._feed(reply, record.data):
                        yield event
        if not reply.finish:
            raise self._ended_early(meter, reply.events_seen)
        for event in reply.end():
            yield event

    def _feed(self, reply: Reply, data: str | Any) -> list[StreamEvent]:
        """One response object (or its JSON text) → events; a bad shape is a protocol error."""
        try:
            return reply.feed(json.loads(data) if isinstance(data, str) else data)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            shown = data if isinstance(data, str) else json.dumps(data)
            raise protocol_error(
                self.name, "the server sent a malformed response chunk", detail=shown
            ) from exc

    def _whole(self, raw: bytes, reply: Reply) -> list[StreamEvent]:
        """A non-streamed answer: one JSON object (or, without ``alt=sse``, an array)."""
        payload = decode_json(raw)
        if not isinstance(payload, dict | list):
            if not raw.strip():
                raise protocol_error(self.name, "the server sent an empty body")
            what = describe_body(raw, None) if looks_like_html(raw) else "a body that is not JSON"
            raise protocol_error(
                self.name, f"the server sent {what}", detail=raw[:300].decode("utf-8", "replace")
            )
        events: list[StreamEvent] = []
        for item in payload if isinstance(payload, list) else [payload]:
            events += self._feed(reply, item)
        return events + reply.end()

    async def _batches(
        self, response: httpx.Response, meter: _Meter
    ) -> AsyncIterator[list[StreamRecord]]:
        """Parsed records one network chunk at a time, enforcing the body cap."""
        parser = SSEParser()
        chunks = response.aiter_bytes()
        async with _closing(chunks):
            async for chunk in chunks:
                meter.size += len(chunk)
                if meter.size > self._max_body:
                    raise protocol_error(
                        self.name, f"the response is larger than {self._max_body} bytes"
                    )
                if len(meter.head) < 512:
                    meter.head += chunk[:512]
                batch = parser.feed(chunk)
                meter.records += len(batch)
                yield batch
        batch = parser.finish()
        meter.records += len(batch)
        yield batch

    def _ended_early(self, meter: _Meter, delivered: bool) -> BackendError:
        if meter.size == 0:
            return protocol_error(self.name, "the server sent an empty body")
        if meter.records == 0:
            head = meter.head
            what = describe_body(head, None) if looks_like_html(head) else "not an event stream"
            return protocol_error(
                self.name, f"the server sent {what}", detail=head.decode("utf-8", "replace")
            )
        if delivered:
            return BackendStreamCut(
                "the stream ended before the reply was finished", backend=self.name
            )
        # nothing reached the user yet, so trying again is safe and usually works
        return BackendUnavailable("the stream ended before any text", backend=self.name)

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
            raw = await self._call("GET", self.base_url + "/models", params=params)
            page, token = parse_models(self.name, raw)
            models += page
            if not token:
                break
        return models

    async def count_tokens(self, text: str) -> int:
        """``POST models/{model}:countTokens`` → ``totalTokens``."""
        url = self._model_url(self._model, "countTokens")
        raw = await self._call("POST", url, json=count_body(text))
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

    async def _request_headers(self) -> httpx.Headers:
        headers = self._headers.copy()
        headers.update(await self._auth.headers())
        return headers

    async def _check(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        raw = await self._read(response, _ERROR_BODY_LIMIT, cap_is_error=False)
        if response.status_code == 401:
            self._auth.invalidate()  # a revoked or expired token: fetch a new one next time
        raise gemini_error(self.name, response, body=raw, secrets=self._auth.secrets())

    async def _call(self, method: str, url: str, **kw: Any) -> bytes:
        headers = await self._request_headers()
        try:
            async with self._client.stream(
                method, url, headers=headers, timeout=self._timeout, **kw
            ) as response:
                await self._check(response)
                return await self._read(response, self._max_body)
        except httpx.HTTPError as exc:
            raise gemini_error(self.name, exc, secrets=self._auth.secrets()) from exc

    async def _read(
        self, response: httpx.Response, limit: int, *, cap_is_error: bool = True
    ) -> bytes:
        """The body, at most ``limit`` bytes: past it an error (or, for error pages, cut)."""
        parts: list[bytes] = []
        size = 0
        chunks = response.aiter_bytes()
        async with _closing(chunks):
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    if cap_is_error:
                        raise protocol_error(
                            self.name, f"the response is larger than {limit} bytes"
                        )
                    parts.append(chunk[: limit - size + len(chunk)])
                    break
                parts.append(chunk)
        return b"".join(parts)


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


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[_T]) -> AsyncIterator[AsyncIterator[_T]]:
    """Close an async iterator on the way out, so an early exit never leaves a half-run
    generator for the garbage collector (an unclosed response is a ResourceWarning)."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


@dataclass(slots=True)
class _Meter:
    """What the raw stream looked like, for the error when it ends without a finish."""

    size: int = 0
    records: int = 0
    head: bytes = b""
