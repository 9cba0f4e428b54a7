"""Native extras beside a generation API: exact token counts, and the abort call for servers
that keep generating after their client went away.

Local servers keep their own routes for these, and a preset row names them
(:class:`bot.backends.presets.NativeCall`): text-generation-webui ``/v1/internal/token-count``
and ``/v1/internal/stop-generation``, TabbyAPI ``/v1/token/encode``, KoboldCpp
``/api/extra/tokencount`` and ``/api/extra/abort`` (keyed by the request's ``genkey``),
llama.cpp ``/tokenize``. Closing the HTTP stream stops llama.cpp and TabbyAPI, but KoboldCpp
and text-generation-webui go on generating and hold the model for the next turn, so
:func:`abort_on_exit` makes the call when a reply is abandoned.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

from bot.backends.base import Finish, StreamEvent
from bot.backends.errors import protocol_error, truncate
from bot.backends.http_json import ErrorMap, JsonHttp, closing
from bot.backends.native import server_root
from bot.backends.presets import NativeCall, ProviderPreset
from bot.errors import BackendError, BackendNotFound

_log = logging.getLogger(__name__)

# An abort or a probe runs while the caller is leaving or waiting for its last event: a
# server that does not answer quickly is not waited for.
QUICK_TIMEOUT = 5.0
NO_COUNTER_HINT = "this backend has no token count endpoint; counts are estimated locally"

Abort = Callable[[], Awaitable[None]]


class NativeExtras:
    """One backend's token counter and abort, on the shared client (never closed here)."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        root: str,
        headers: httpx.Headers,
        token_count: Sequence[NativeCall],
        abort: NativeCall | None,
        error: ErrorMap,
        timeout: float,
    ) -> None:
        self.name = name
        self.root = root
        self._counters = tuple(token_count)
        self._counter: NativeCall | None = None  # the route that answered, once known
        self._abort = abort
        self.http = JsonHttp(name, client, headers=headers, timeout=timeout, error=error)
        self.quick = JsonHttp(
            name, client, headers=headers, timeout=min(timeout, QUICK_TIMEOUT), error=error
        )

    @property
    def aborts(self) -> bool:
        return self._abort is not None

    def request_key(self) -> dict[str, str]:
        """The body field tying a generation to its abort (KoboldCpp's ``genkey``), fresh per
        request; empty when the abort is not keyed or there is none."""
        if self._abort is None or not self._abort.field:
            return {}
        return {self._abort.field: f"sillybot-{secrets.token_hex(8)}"}

    async def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by the server's own tokenizer; the first route of the row that
        exists is remembered."""
        if not self._counters:
            raise BackendError(
                "this server has no token count endpoint", backend=self.name, hint=NO_COUNTER_HINT
            )
        routes = (self._counter,) if self._counter is not None else self._counters
        for index, call in enumerate(routes):
            try:
                payload = await self.http.call(
                    "POST", self.root + call.path, body={call.field: text}
                )
            except BackendNotFound:
                if self._counter is not None or index == len(routes) - 1:
                    raise
                continue
            self._counter = call
            return token_count_of(self.name, payload)
        raise AssertionError("unreachable: the last route re-raises")

    async def abort(self, key: Mapping[str, str]) -> None:
        """Ask the server to stop generating. Never raises: the caller is already leaving."""
        if self._abort is None:
            return
        body = dict(key) if self._abort.field else None
        try:
            await self.quick.call("POST", self.root + self._abort.path, body=body)
        except BackendError as exc:
            _log.warning("%s: the abort call failed: %s", self.name, exc.message)
        else:
            _log.info("%s: asked the server to stop generating", self.name)

    def guard(
        self, events: AsyncIterator[StreamEvent], key: Mapping[str, str]
    ) -> AsyncIterator[StreamEvent]:
        """``events``, with the abort called if they are abandoned before their finish."""
        if self._abort is None:
            return events

        async def abort() -> None:
            await self.abort(key)

        return abort_on_exit(events, abort)


def native_extras(
    name: str,
    client: httpx.AsyncClient,
    preset: ProviderPreset,
    base_url: str,
    headers: httpx.Headers,
    *,
    error: ErrorMap,
    timeout: float,
) -> NativeExtras | None:
    """The extras the preset row names, or ``None`` when it names none."""
    if not preset.token_count and preset.abort is None:
        return None
    return NativeExtras(
        name,
        client,
        root=server_root(base_url, "/v1", "/api"),
        headers=headers,
        token_count=preset.token_count,
        abort=preset.abort,
        error=error,
        timeout=timeout,
    )


async def abort_on_exit(
    events: AsyncIterator[StreamEvent], abort: Abort, *, on_error: bool = False
) -> AsyncIterator[StreamEvent]:
    """``events`` as they come; if they stop before their :class:`Finish` because the caller
    closed them or its task was cancelled (and, with ``on_error``, because of an error),
    the HTTP stream is closed first and then ``abort`` is awaited.
    """
    finished = False
    try:
        async with closing(events):
            async for event in events:
                if isinstance(event, Finish):
                    finished = True
                yield event
    except (GeneratorExit, asyncio.CancelledError):
        if not finished:
            await abort()
        raise
    except BackendError:
        if on_error and not finished:
            await abort()
        raise


def token_count_of(backend: str, payload: Any) -> int:
    """A count from the answers seen in the wild: ``{"length"}`` (text-generation-webui,
    TabbyAPI), ``{"value", "ids"}`` (KoboldCpp), ``{"count"}`` (llama-cpp-python) or a bare
    ``{"tokens": [...]}`` (llama.cpp)."""
    if isinstance(payload, Mapping):
        for key in ("length", "value", "count"):
            value = payload.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        for key in ("tokens", "ids"):
            value = payload.get(key)
            if isinstance(value, list):
                return len(value)
    raise protocol_error(
        backend,
        "the server sent a token count that could not be read",
        detail=truncate(str(payload)),
    )
