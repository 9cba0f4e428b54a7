"""What every loopback fake of an LLM API shares: a real aiohttp server on 127.0.0.1 (port 0)
that records each request, books the ones it refuses, and plays scripted replies.

A family's fake subclasses :class:`LoopbackServer` with :meth:`~LoopbackServer.route` (check
a request the way the real server would, answer it, or raise :class:`Rejected`) and, for the
semantic replies below, its wire's :meth:`~LoopbackServer.render` (a stream),
:meth:`~LoopbackServer.whole` (one JSON answer) and :meth:`~LoopbackServer.endless_delta`;
:meth:`~LoopbackServer.answer` plays any reply. A client that goes away cancels the handler,
which is how ``disconnected`` is set.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, Self

from aiohttp import web

# -- replies every family scripts alike --------------------------------------------------------


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
    """About ``size`` bytes of answer that never finishes (stream) or one huge JSON body."""

    size: int = 11 * 1024 * 1024


@dataclass(frozen=True)
class Raw:
    """Exact bytes (the golden transcripts)."""

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

HTML_502 = (
    b"<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body>\n"
    b"</html>\n"
)

# -- writing the wire --------------------------------------------------------------------------


def compact(obj: Any) -> bytes:
    """JSON as the real servers write it: no spaces."""
    return json.dumps(obj, separators=(",", ":")).encode()


def sse(event: str, data: Any) -> bytes:
    """One typed SSE record."""
    return b"event: " + event.encode() + b"\ndata: " + compact(data) + b"\n\n"


def data_line(data: Any) -> bytes:
    """One untyped SSE record (``data:`` only)."""
    return b"data: " + compact(data) + b"\n\n"


def ndjson_line(data: Any) -> bytes:
    return compact(data) + b"\n"


def status_response(reply: Status) -> web.Response:
    """An error answer: a JSON body, or bytes sent as an HTML page."""
    payload = reply.body
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    kind = "text/html" if isinstance(payload, bytes) else "application/json"
    return web.Response(
        status=reply.status, body=data, content_type=kind, headers=dict(reply.headers)
    )


async def send_raw(request: web.Request, reply: Raw) -> web.StreamResponse:
    response = web.StreamResponse(status=reply.status, headers=dict(reply.headers))
    if reply.content_type:
        response.content_type = reply.content_type
    await response.prepare(request)
    step = reply.split or len(reply.body) or 1
    for i in range(0, len(reply.body), step):
        await response.write(reply.body[i : i + step])
    await response.write_eof()
    return response


def drop(request: web.Request) -> None:
    """Close the TCP connection mid-body, without the terminating zero-length chunk."""
    assert request.transport is not None
    request.transport.close()


# -- the server --------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its last value
    body: Any
    raw: bytes
    raw_headers: list[str]  # every header name as sent, lower-cased, repeats kept
    query: dict[str, str]


def recorded(request: web.Request, raw: bytes) -> Recorded:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return Recorded(
        request.method,
        request.path,
        {k.lower(): v for k, v in request.headers.items()},
        body,
        raw,
        [k.lower() for k in request.headers],
        dict(request.query),
    )


class Rejected(Exception):
    """A request the real server would refuse: ``status`` and the body it would send."""

    def __init__(self, status: int, body: Any, problem: str) -> None:
        super().__init__(problem)
        self.status = status
        self.body = body
        self.problem = problem


class LoopbackServer:
    """The base of a family's fake. ``base_url`` is ``origin`` plus the API's ``prefix``.

    ``client_faults`` are prefixes of rejections that are not client bugs (bad credentials
    a test sends on purpose); :meth:`body_rejections` lists the others.
    """

    stream_type: ClassVar[str] = "text/event-stream"
    stream_headers: ClassVar[Mapping[str, str]] = {"Cache-Control": "no-cache"}
    client_faults: ClassVar[tuple[str, ...]] = ()

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.requests: list[Recorded] = []
        self.rejections: list[str] = []
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        self.received = asyncio.Event()
        self._replies: deque[Any] = deque()
        self._runner: web.AppRunner | None = None
        self.origin = ""
        self.base_url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that goes away cancels the handler, which is how
        # the fake sees a disconnect while it waits between deltas
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

    def enqueue(self, *replies: Any) -> None:
        self._replies.extend(replies)

    def next_reply(self, default: Any) -> Any:
        return self._replies.popleft() if self._replies else default

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def body_rejections(self) -> list[str]:
        """Rejections other than the client faults a test provokes: each one is a bug."""
        return [r for r in self.rejections if not r.startswith(self.client_faults)]

    def reject(self, problem: str, status: int, body: Any) -> web.Response:
        self.rejections.append(problem)
        return web.json_response(body, status=status)

    def saw_disconnect(self) -> None:
        self.disconnects += 1
        self.disconnected.set()

    # -- for subclasses ------------------------------------------------------------------------

    async def route(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        """Check the request and answer it (raise :class:`Rejected` to refuse it)."""
        raise NotImplementedError

    def render(self, reply: Any) -> list[bytes]:
        """The stream of a semantic reply, one write per item."""
        raise NotImplementedError

    def whole(self, reply: Any) -> web.Response:
        """The non-streamed answer of a semantic reply."""
        raise NotImplementedError

    def endless_delta(self, n: int) -> bytes:
        """The ``n``-th delta of an endless stream (the first one may open the message)."""
        raise NotImplementedError

    # -- machinery -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = recorded(request, await request.read())
        self.requests.append(record)
        self.received.set()
        try:
            return await self.route(request, record)
        except Rejected as exc:
            return self.reject(exc.problem, exc.status, exc.body)

    async def answer(
        self, request: web.Request, reply: Any, *, stream: bool
    ) -> web.StreamResponse:
        """Play ``reply``: an error or exact bytes as they are, a semantic reply as this
        wire's stream or whole answer."""
        if isinstance(reply, Status):
            return status_response(reply)
        if isinstance(reply, Raw):
            return await send_raw(request, reply)
        if not stream:
            if isinstance(reply, Endless):
                await self.hang()
            return self.whole(reply)
        response = web.StreamResponse(headers=dict(self.stream_headers))
        response.content_type = self.stream_type
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
                drop(request)
                return response
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            self.saw_disconnect()
            raise
        return response

    async def hang(self) -> NoReturn:
        """Never answer (a server generating for ever); the client gives up."""
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.saw_disconnect()
            raise
        raise AssertionError("unreachable: the event is never set")
