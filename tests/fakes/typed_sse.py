"""What the typed-SSE fakes (Claude, Cohere v2) share: a loopback aiohttp server that records
every request, checks it through the family's rules, and plays scripted replies.

A family subclasses :class:`TypedSSEServer` with its routes, its request checks and its
rendering of the semantic replies below; :class:`Raw` and :class:`Status` are sent as they
are. Real HTTP/1.1 on 127.0.0.1, port 0; a client that goes away cancels the handler, which
is how ``disconnected`` is set.
"""

from __future__ import annotations

import abc
import asyncio
import json
import socket
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

# -- replies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A normal answer: ``reasoning`` deltas, then ``deltas``, then ``finish`` (the backend's
    own word; ``None`` for the family's usual one) and ``usage`` as (prompt, completion)."""

    deltas: Sequence[str] = ("Hel", "lo")
    finish: str | None = None
    usage: tuple[int, int] | None = (5, 2)
    reasoning: Sequence[str] = ()


@dataclass(frozen=True)
class Cut:
    """Stream ``deltas``, then drop the connection (no end event, no final chunk)."""

    deltas: Sequence[str] = ("Hel", "lo")


@dataclass(frozen=True)
class InStreamError:
    """Stream ``deltas`` under HTTP 200, then the family's in-stream error."""

    deltas: Sequence[str] = ("Once",)


@dataclass(frozen=True)
class Endless:
    """A delta every ``interval`` seconds until the client goes away."""

    interval: float = 0.01


@dataclass(frozen=True)
class Huge:
    """About ``size`` bytes of deltas that never finish."""

    size: int = 11 * 1024 * 1024


@dataclass(frozen=True)
class Raw:
    body: bytes
    status: int = 200
    content_type: str | None = "text/event-stream"
    headers: Mapping[str, str] = field(default_factory=dict)
    split: int = 0  # >0: send in pieces of this many bytes (split mid-line, mid-character)


@dataclass(frozen=True)
class Status:
    """An error answer: JSON (or bytes, sent as an HTML page) with the given status."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


Reply = Text | Cut | InStreamError | Endless | Huge | Raw | Status


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    """One typed SSE record, compact JSON as the real servers write it."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# -- the server -------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any
    raw: bytes


class Rejected(Exception):
    """A request the real server would refuse: ``status`` and the body it would send."""

    def __init__(self, status: int, body: Any, problem: str) -> None:
        super().__init__(problem)
        self.status = status
        self.body = body
        self.problem = problem


class TypedSSEServer(abc.ABC):
    """The base of a family's fake. Subclasses implement :meth:`route`, :meth:`render`,
    :meth:`whole` and :meth:`endless_delta`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.requests: list[Recorded] = []
        self.rejections: list[str] = []
        self.disconnected = asyncio.Event()
        self._replies: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None
        self.origin = ""
        self.base_url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.origin = f"http://127.0.0.1:{port}"
        self.base_url = self.origin + self.prefix
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def enqueue(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    def next_reply(self, default: Reply) -> Reply:
        return self._replies.popleft() if self._replies else default

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def body_rejections(self, auth_prefix: str) -> list[str]:
        """Rejections other than bad credentials: each one is a client bug."""
        return [r for r in self.rejections if not r.startswith(auth_prefix)]

    # -- for subclasses ----------------------------------------------------------------------

    @abc.abstractmethod
    async def route(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        """Check the request and answer it (raise :class:`Rejected` to refuse it)."""

    @abc.abstractmethod
    def render(self, reply: Text | Cut | InStreamError | Huge) -> list[bytes]:
        """The stream of a semantic reply, one write per item."""

    @abc.abstractmethod
    def whole(self, reply: Text | Cut | InStreamError | Huge) -> web.Response:
        """The non-streamed answer of a semantic reply."""

    @abc.abstractmethod
    def endless_delta(self, n: int) -> bytes:
        """The ``n``-th delta of an endless stream (the first one opens the message)."""

    # -- machinery ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        recorded = Recorded(
            request.method,
            request.path,
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            body,
            raw,
        )
        self.requests.append(recorded)
        try:
            return await self.route(request, recorded)
        except Rejected as exc:
            self.rejections.append(exc.problem)
            return web.json_response(exc.body, status=exc.status)

    async def answer(
        self, request: web.Request, reply: Reply, *, stream: bool
    ) -> web.StreamResponse:
        """Play ``reply`` as a stream or a whole answer."""
        if isinstance(reply, Status):
            payload = reply.body
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            kind = "text/html" if isinstance(payload, bytes) else "application/json"
            return web.Response(
                status=reply.status, body=data, content_type=kind, headers=dict(reply.headers)
            )
        if isinstance(reply, Raw):
            return await self._send_raw(request, reply)
        if not stream:
            if isinstance(reply, Endless):
                try:
                    await asyncio.Event().wait()  # never answers; the client gives up
                except asyncio.CancelledError:
                    self.disconnected.set()
                    raise
            assert not isinstance(reply, Endless)
            return self.whole(reply)
        response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
        response.content_type = "text/event-stream"
        await response.prepare(request)
        try:
            if isinstance(reply, Endless):
                n = 0
                while True:
                    n += 1
                    await response.write(self.endless_delta(n))
                    await asyncio.sleep(reply.interval)
            for chunk in self.render(reply):
                await response.write(chunk)
            if isinstance(reply, Cut | Huge):
                # drop the TCP connection without the terminating zero-length chunk
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            self.disconnected.set()
            raise
        return response

    async def _send_raw(self, request: web.Request, reply: Raw) -> web.StreamResponse:
        response = web.StreamResponse(status=reply.status, headers=dict(reply.headers))
        if reply.content_type:
            response.content_type = reply.content_type
        await response.prepare(request)
        step = reply.split or len(reply.body) or 1
        for i in range(0, len(reply.body), step):
            await response.write(reply.body[i : i + step])
        await response.write_eof()
        return response


HTML_502 = (
    b"<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body>\n"
    b"</html>\n"
)
