"""The AI Horde family: crowd-sourced KoboldAI workers behind an asynchronous queue.

A generation is submitted (``POST /generate/text/async``), then its status is polled every
``poll_interval`` seconds, yielding :class:`Status` events (queue position, wait, kudos)
while it waits; when done, the generation's text arrives as one delta. A reply abandoned
for any reason (closed, cancelled, failed, impossible, waited out) is ``DELETE``d so it does
not hold a place in the queue. Failed polls are tried again a few times: the request lives
on at the Horde, and submitting it again would lose its place and spend kudos twice.

Every request carries ``apikey`` (the anonymous ``0000000000`` when no key is set) and
``Client-Agent: sillybot:<version>:<contact>``, without which the Horde refuses or throttles.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from pydantic import SecretStr

from bot.backends.base import (
    Backend,
    GenerationRequest,
    ModelInfo,
    Status,
    StreamEvent,
)
from bot.backends.extras import QUICK_TIMEOUT, abort_on_exit
from bot.backends.horde_wire import (
    ANONYMOUS_KEY,
    CHAT_HINT,
    FAULTED_HINT,
    NO_WORKER_HINT,
    STATUS_PATH,
    SUBMIT_PATH,
    HordeOptions,
    HordeWorker,
    Job,
    horde_error,
    parse_job,
    parse_models,
    parse_status,
    parse_workers,
    progress,
    result_events,
    submit_body,
)
from bot.backends.http_json import DEFAULT_MAX_BODY, ErrorMap, JsonHttp, api_secret, closing
from bot.backends.kobold_wire import sampler_names
from bot.backends.presets import ProviderPreset
from bot.config import BackendConfig
from bot.errors import (
    BackendError,
    BackendNotFound,
    BackendProtocolError,
    BackendRateLimited,
    BackendUnavailable,
)

_log = logging.getLogger(__name__)

POLL_INTERVAL = 2.5  # seconds; what SillyTavern uses, and gentle on the Horde's rate limits
MAX_WAIT = 20 * 60.0  # the Horde drops a request no worker took within 20 minutes
MAX_POLL_FAILURES = 5
_TRANSIENT = (BackendUnavailable, BackendRateLimited, BackendProtocolError)


def client_agent(contact: str = "unknown") -> str:
    """``sillybot:<version>:<contact>``, the form the Horde asks every client to send."""
    try:
        version = importlib.metadata.version("sillybot")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    return f"sillybot:{version}:{contact}"


class HordeBackend:
    """``Backend`` and ``ModelCatalog`` for AI Horde text generation.

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
        options: HordeOptions | None = None,
        context_size: int = 8192,
        headers: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        poll_interval: float = POLL_INTERVAL,
        max_wait: float = MAX_WAIT,
        agent: str = "",
        max_body_bytes: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.name = name
        self.preset = preset
        self.base_url = base_url.rstrip("/")
        self._options = options or HordeOptions()
        self._context_size = context_size
        self._names = sampler_names(preset)
        self._interval = poll_interval
        self._max_wait = max_wait
        key, secrets = api_secret(api_key)
        self._error: ErrorMap = functools.partial(horde_error, name, secrets=secrets)
        # httpx.Headers: a config header (a Client-Agent with a real contact) replaces ours
        http_headers = httpx.Headers(
            {"apikey": key or ANONYMOUS_KEY, "Client-Agent": agent or client_agent()}
        )
        http_headers.update(preset.headers)
        http_headers.update(headers or {})
        self._http = JsonHttp(
            name,
            client,
            headers=http_headers,
            timeout=timeout,
            error=self._error,
            max_body=max_body_bytes,
        )
        self._quick = JsonHttp(
            name,
            client,
            headers=http_headers,
            timeout=min(timeout, QUICK_TIMEOUT),
            error=self._error,
        )

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        return submit_body(
            request,
            self.preset,
            context_size=self._context_size,
            names=self._names,
            options=self._options,
        )

    # -- Backend -------------------------------------------------------------------------

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        if request.mode != "text":
            raise BackendError("AI Horde has no chat endpoint", backend=self.name, hint=CHAT_HINT)
        payload = await self._http.call(
            "POST", self.base_url + SUBMIT_PATH, body=self.request_body(request)
        )
        job = parse_job(self.name, payload)
        _log.info("%s: AI Horde queued request %s (kudos %g)", self.name, job.id, job.kudos)
        if job.message:
            _log.info("%s: AI Horde says: %s", self.name, job.message)

        async def cancel() -> None:
            await self._cancel(job)

        events = abort_on_exit(self._poll(job), cancel, on_error=True)
        async with closing(events):
            async for event in events:
                yield event

    async def _poll(self, job: Job) -> AsyncIterator[StreamEvent]:
        url = self.base_url + STATUS_PATH + job.id
        deadline = asyncio.get_running_loop().time() + self._max_wait
        shown = ""
        failures = 0
        while True:
            try:
                status = parse_status(self.name, await self._http.call("GET", url))
            except _TRANSIENT as exc:
                failures += 1
                if failures >= MAX_POLL_FAILURES:
                    raise
                wait = exc.retry_after if isinstance(exc, BackendRateLimited) else None
                _log.info("%s: polling AI Horde failed (%s); trying again", self.name, exc.message)
                await asyncio.sleep(max(wait or 0.0, self._interval))
                continue
            failures = 0
            if status.faulted:
                raise BackendError(
                    "AI Horde reported the request as faulted",
                    backend=self.name,
                    hint=FAULTED_HINT,
                )
            if not status.is_possible:
                raise BackendNotFound(
                    "no AI Horde worker can take this request (is_possible: false)",
                    backend=self.name,
                    hint=NO_WORKER_HINT,
                )
            if status.done:
                generation = status.generations[0] if status.generations else {}
                _log.info(
                    "%s: AI Horde request %s answered by worker %r with model %r",
                    self.name,
                    job.id,
                    generation.get("worker_name"),
                    generation.get("model"),
                )
                for event in result_events(self.name, status):
                    yield event
                return
            text = progress(status, job)
            if text != shown:
                shown = text
                yield Status(text)
            if asyncio.get_running_loop().time() > deadline:
                raise BackendUnavailable(
                    f"AI Horde did not answer within {self._max_wait / 60:g} minutes",
                    backend=self.name,
                    hint="the queue is long; try again later or pick models with more workers",
                )
            await asyncio.sleep(self._interval)

    async def _cancel(self, job: Job) -> None:
        """``DELETE`` the request so it leaves the queue. Never raises: the caller is leaving."""
        try:
            await self._quick.call("DELETE", self.base_url + STATUS_PATH + job.id)
        except BackendError as exc:
            _log.warning("%s: cancelling AI Horde request %s failed: %s", self.name, job.id, exc)
        else:
            _log.info("%s: cancelled AI Horde request %s", self.name, job.id)

    # -- ModelCatalog and workers --------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """Text models with workers online (``GET /status/models?type=text``), busiest first,
        each with the largest context an online worker offers for it."""
        payload = await self._http.call(
            "GET", self.base_url + "/status/models", params={"type": "text"}
        )
        try:
            workers = await self.list_workers()
        except BackendError as exc:
            _log.debug("%s: no worker list: %s", self.name, exc.message)
            workers = []
        return parse_models(self.name, payload, workers)

    async def list_workers(self) -> list[HordeWorker]:
        """``GET /workers?type=text``: who serves which models, with which limits."""
        payload = await self._http.call("GET", self.base_url + "/workers", params={"type": "text"})
        return parse_workers(payload)


def build_horde(
    name: str,
    config: BackendConfig,
    preset: ProviderPreset,
    base_url: str,
    client: httpx.AsyncClient,
    api_key: SecretStr | None,
    *,
    poll_interval: float = POLL_INTERVAL,
) -> Backend:
    """The registry's factory for ``family: horde``. ``model`` may name several models,
    comma-separated; any worker's model is fine when it is empty."""
    models = tuple(m.strip() for m in config.model.split(",") if m.strip())
    return HordeBackend(
        name,
        client,
        preset=preset,
        base_url=base_url,
        api_key=api_key,
        options=HordeOptions(models=models),
        context_size=config.context_size,
        headers=config.headers,
        timeout=config.timeout,
        poll_interval=poll_interval,
    )
