"""A scriptable loopback OpenAI-compatible server (real HTTP/1.1 on 127.0.0.1, port 0).

It checks every request the way a real server would (path, auth header form, body keys,
the stop-string limit, strict providers' unknown keys) and answers a violation with the
real error status and body, so a client bug fails the test through the client's own error
path; ``rejections`` lists them for a direct assertion too.

Replies are queued with :meth:`FakeOpenAI.enqueue`. Semantic replies (:class:`Text`,
:class:`Cut`, :class:`InStreamError`, :class:`Endless`, :class:`Huge`) render as a chat or
text stream, or a JSON body, depending on what was asked; :class:`Raw` sends exact bytes
(the golden transcripts); :class:`Status` sends an error body. Those live in
:mod:`tests.fakes.openai_wire`.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from tests.fakes.openai_wire import (
    OPENROUTER_ERROR,
    TABBY_ERROR,
    Cut,
    Endless,
    Huge,
    InStreamError,
    Raw,
    Reply,
    Status,
    Text,
    completion,
    delta_chunk,
    error_401,
    openai_error,
    render_stream,
)

AuthStyle = Literal["bearer", "x-api-key", "both", "none"]
AUTH_PROBLEM = "bad or missing"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its last value
    body: Any
    raw: bytes
    raw_headers: list[str]  # every header name as sent, lower-cased, repeats kept


_CHAT_ROLES = {"system", "user", "assistant", "developer", "tool"}


class FakeOpenAI:
    """The fake server. ``auth``/``api_key`` say which header form it demands; ``max_stop``
    is its stop-string limit (OpenAI: 4); ``strict_keys``, if given, are the only top-level
    body keys it accepts (Mistral-style 422 on anything else)."""

    def __init__(
        self,
        *,
        api_key: str | None = "sk-test-4f9a1c0d2e7b",
        auth: AuthStyle = "bearer",
        max_stop: int | None = 4,
        prefix: str = "/v1",
        strict_keys: frozenset[str] | None = None,
        models: Sequence[Mapping[str, Any]] = ({"id": "gpt-test", "object": "model"},),
    ) -> None:
        self.api_key = api_key
        self.auth = auth
        self.max_stop = max_stop
        self.prefix = prefix
        self.strict_keys = strict_keys
        self.models = list(models)
        self.requests: list[Recorded] = []
        self.rejections: list[str] = []
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        self.received = asyncio.Event()
        self._replies: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None
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
        self.base_url = f"http://127.0.0.1:{port}{self.prefix}"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def enqueue(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    # -- request handling ----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        names = [k.lower() for k in request.headers]
        self.requests.append(Recorded(request.method, request.path, headers, body, raw, names))
        self.received.set()
        route = request.path.removeprefix(self.prefix)
        problem = self._check_auth(headers)
        if problem:
            return self._reject(problem, 401, error_401(problem.partition(": ")[2]))
        if request.method == "GET" and route == "/models":
            return web.json_response({"object": "list", "data": self.models})
        if request.method != "POST" or route not in ("/chat/completions", "/completions"):
            return self._reject(
                f"unknown route {request.method} {request.path}",
                404,
                openai_error(
                    f"Invalid URL ({request.method} {request.path})",
                    "invalid_request_error",
                    None,
                ),
            )
        chat = route == "/chat/completions"
        problem, status = self._check_body(headers, body, chat)
        if problem or not isinstance(body, dict):
            return self._reject(problem, status, self._body_error(problem, status))
        reply = self._replies.popleft() if self._replies else Text()
        return await self._answer(request, reply, chat=chat, stream=body.get("stream") is True)

    def _reject(self, problem: str, status: int, body: Any) -> web.Response:
        self.rejections.append(problem)
        return web.json_response(body, status=status)

    def _body_error(self, problem: str, status: int) -> Any:
        if status == 422:
            return {"detail": [{"type": "extra_forbidden", "msg": problem}]}
        return openai_error(problem, "invalid_request_error", None)

    def body_rejections(self) -> list[str]:
        """Rejections other than bad credentials: each one is a client bug."""
        return [r for r in self.rejections if not r.startswith(AUTH_PROBLEM)]

    def _check_auth(self, headers: Mapping[str, str]) -> str:
        """'' when the credentials are what this server demands, else the problem."""
        if self.api_key is None or self.auth == "none":
            return ""
        if self.auth in ("bearer", "both"):
            got = headers.get("authorization", "")
            if got != f"Bearer {self.api_key}":
                return f"{AUTH_PROBLEM} bearer key: {got.removeprefix('Bearer ')}"
        if self.auth in ("x-api-key", "both"):
            got = headers.get("x-api-key", "")
            if got != self.api_key:
                return f"{AUTH_PROBLEM} x-api-key: {got}"
        return ""

    def _check_body(self, headers: Mapping[str, str], body: Any, chat: bool) -> tuple[str, int]:
        if not headers.get("content-type", "").startswith("application/json"):
            return "Content-Type must be application/json", 400
        if not isinstance(body, dict):
            return "We could not parse the JSON body of your request.", 400
        if self.strict_keys is not None:
            extra = sorted(set(body) - self.strict_keys)
            if extra:
                return f"Extra inputs are not permitted: {', '.join(extra)}", 422
        if not isinstance(body.get("model"), str):
            return "you must provide a model parameter", 400
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return "'messages' must be a non-empty array", 400
            for m in messages:
                if not isinstance(m, dict) or m.get("role") not in _CHAT_ROLES:
                    return f"invalid message: {m!r}", 400
                if not isinstance(m.get("content"), str):
                    return f"invalid message content: {m!r}", 400
                if "name" in m and not isinstance(m["name"], str):
                    return f"invalid message name: {m!r}", 400
        elif not isinstance(body.get("prompt"), str):
            return "'prompt' must be a string", 400
        limit = body.get("max_tokens", body.get("max_completion_tokens"))
        # stricter than OpenAI on purpose: text-generation-webui silently stops at 16 tokens
        # when the limit is missing, so a client must always send one (and say `stream`)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            return f"Invalid 'max_tokens': {limit!r}", 400
        if not isinstance(body.get("stream"), bool):
            return "'stream' must be given as a boolean", 400
        if "stream_options" in body and not body.get("stream"):
            return "The 'stream_options' parameter is only allowed when 'stream' is enabled.", 400
        stop = body.get("stop")
        if stop is not None:
            if not isinstance(stop, list | str):
                return "'stop' must be a string or an array", 400
            if self.max_stop is not None and isinstance(stop, list) and len(stop) > self.max_stop:
                return (
                    "Invalid 'stop': array too long. Expected an array with maximum length "
                    f"{self.max_stop}, but got an array with length {len(stop)} instead.",
                    400,
                )
        return "", 0

    # -- answers -------------------------------------------------------------------------

    async def _answer(
        self, request: web.Request, reply: Reply, *, chat: bool, stream: bool
    ) -> web.StreamResponse:
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
                    self._saw_disconnect()
                    raise
            return self._whole(reply, chat)
        response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
        response.content_type = "text/event-stream"
        await response.prepare(request)
        try:
            if isinstance(reply, Endless):
                await self._endless(response, reply, chat)
                return response
            for chunk in render_stream(reply, chat):
                await response.write(chunk)
            if isinstance(reply, Cut):
                # drop the TCP connection without the terminating zero-length chunk
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            self._saw_disconnect()
            raise
        return response

    async def _endless(self, response: web.StreamResponse, reply: Endless, chat: bool) -> None:
        n = 0
        while True:
            n += 1
            await response.write(delta_chunk(f"w{n} ", chat))
            await asyncio.sleep(reply.interval)

    def _saw_disconnect(self) -> None:
        self.disconnects += 1
        self.disconnected.set()

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

    def _whole(self, reply: Reply, chat: bool) -> web.Response:
        if isinstance(reply, Huge):
            text = "x" * reply.size
            return web.json_response(completion(text, "stop", None, "", chat))
        if isinstance(reply, InStreamError):
            return web.json_response(
                {"error": OPENROUTER_ERROR if reply.style == "openrouter" else TABBY_ERROR}
            )
        if isinstance(reply, Cut):
            return web.Response(
                status=200, body=b'{"id":"c1","choices":[{"ind', content_type="application/json"
            )
        assert isinstance(reply, Text)
        return web.json_response(
            completion(
                "".join(reply.deltas), reply.finish, reply.usage, "".join(reply.reasoning), chat
            )
        )
