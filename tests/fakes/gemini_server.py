"""A scriptable loopback Gemini server (AI Studio or Vertex AI) with Google's OAuth token
endpoint beside it (real HTTP/1.1 on 127.0.0.1, port 0).

It checks each request the way Google does (path and method, the API key in
``x-goog-api-key`` or ``?key=``, or a bearer token it issued itself; body keys, roles, the
``generationConfig`` names, at most five stop strings, safety categories) and answers a
violation with Google's error status and body, so a client bug fails through the client's
own error path; ``rejections`` lists them too. A few checks are stricter than Google on
purpose (consecutive turns of one role must be merged), to pin what the client promises.

The token endpoint (``POST /token``) verifies the RS256 JWT with the service account's
public key and its claims (``iss``, ``scope``, ``aud``, ``iat``/``exp``), then issues
``ya29.<token_secret>-<n>`` valid for ``token_lifetime`` seconds of ``clock``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.gemini_checks import check_body, verify_assertion
from tests.fakes.gemini_wire import (
    NO_CALLER,
    Cut,
    Endless,
    Raw,
    Reply,
    Status,
    Text,
    google_error,
    key_invalid,
    render_stream,
    text_event,
    token_invalid,
    whole,
)

Auth = Literal["key", "bearer"]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any


@dataclass(frozen=True)
class Account:
    """What the token endpoint knows of the service account."""

    client_email: str
    public_key: rsa.RSAPublicKey


class FakeGemini:
    """``prefix`` is the API root (AI Studio ``/v1beta``, Vertex ``/v1/projects/…/google``).
    ``auth="key"`` demands ``api_key``; ``auth="bearer"`` demands a token issued here to
    ``account``. ``vertex`` selects Vertex's safety categories."""

    def __init__(
        self,
        *,
        api_key: str = "AIza-test-key",
        auth: Auth = "key",
        prefix: str = "/v1beta",
        vertex: bool = False,
        account: Account | None = None,
        token_secret: str = "token-secret",
        token_lifetime: int = 3600,
        clock: Callable[[], float] = time.time,
        models: Sequence[Mapping[str, Any]] = (),
        page_size: int = 2,
    ) -> None:
        self.api_key = api_key
        self.auth = auth
        self.prefix = prefix
        self.vertex = vertex
        self.account = account
        self.token_secret = token_secret
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.models = list(models)
        self.page_size = page_size
        self.requests: list[Recorded] = []
        self.rejections: list[str] = []
        self.token_claims: list[dict[str, Any]] = []  # one per token issued
        self.token_replies: deque[Status] = deque()  # scripted token endpoint failures
        self.tokens: dict[str, float] = {}  # issued token → expiry
        self.refuse_tokens = 0  # refuse this many valid bearer tokens (revoked)
        self.disconnected = asyncio.Event()
        self._replies: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None
        self.root = ""
        self.base_url = ""
        self.token_url = ""

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
        self.root = f"http://127.0.0.1:{port}"
        self.base_url = self.root + self.prefix
        self.token_url = self.root + "/token"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeGemini:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def enqueue(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def generations(self) -> list[Recorded]:
        return [r for r in self.requests if "Content" in r.path.rpartition(":")[2]]

    # -- routing -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if request.path == "/token":
            return self._token(request, raw)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), headers, body)
        )
        problem = self._check_auth(headers, request.query)
        if problem is not None:
            return problem
        route = request.path.removeprefix(self.prefix)
        if request.method == "GET" and route == "/models" and not self.vertex:
            return self._models(request.query)
        name, _, method = route.removeprefix("/").rpartition(":")
        known = ("generateContent", "streamGenerateContent", "countTokens")
        if request.method != "POST" or not name.startswith("models/") or method not in known:
            return self._reject(
                f"unknown route {request.method} {request.path}",
                google_error(404, "NOT_FOUND", f"Requested entity was not found: {route}"),
                404,
            )
        if not headers.get("content-type", "").startswith("application/json"):
            return self._reject("Content-Type must be application/json", None, 400)
        problem_text = check_body(body, counting=method == "countTokens", vertex=self.vertex)
        if problem_text:
            return self._reject(
                problem_text, google_error(400, "INVALID_ARGUMENT", problem_text), 400
            )
        if method == "countTokens":
            assert isinstance(body, dict)
            texts = [str(p["text"]) for c in body["contents"] for p in c["parts"]]
            return web.json_response({"totalTokens": sum(len(t.split()) for t in texts) + 1})
        reply = self._replies.popleft() if self._replies else Text()
        stream = method == "streamGenerateContent"
        return await self._answer(request, reply, stream=stream)

    def _reject(self, problem: str, body: Any, status: int) -> web.Response:
        self.rejections.append(problem)
        if body is None:
            body = google_error(status, "INVALID_ARGUMENT", problem)
        return web.json_response(body, status=status)

    def _check_auth(
        self, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> web.Response | None:
        if self.auth == "key":
            got = headers.get("x-goog-api-key") or query.get("key")
            if not got:
                return self._reject("no API key", NO_CALLER, 403)
            if got != self.api_key:
                return self._reject(f"wrong API key {got}", key_invalid(got), 400)
            return None
        token = headers.get("authorization", "").removeprefix("Bearer ")
        expiry = self.tokens.get(token)
        if self.refuse_tokens > 0:
            self.refuse_tokens -= 1
            expiry = None
        if expiry is None or self.clock() >= expiry:
            return self._reject(f"bad bearer token {token}", token_invalid(token), 401)
        return None

    # -- request bodies ------------------------------------------------------------------

    # -- answers -------------------------------------------------------------------------

    async def _answer(
        self, request: web.Request, reply: Reply, *, stream: bool
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
            if isinstance(reply, Cut):
                return web.Response(body=b'{"candidates":[{"cont', content_type="application/json")
            return web.json_response(whole(reply))
        if request.query.get("alt") != "sse":
            # without alt=sse Google streams one JSON array; no client here should ask for it
            return web.json_response([whole(reply)])
        response = web.StreamResponse()
        response.content_type = "text/event-stream"
        await response.prepare(request)
        try:
            if isinstance(reply, Endless):
                n = 0
                while True:
                    n += 1
                    await response.write(text_event(f"w{n} "))
                    await asyncio.sleep(reply.interval)
            for chunk in render_stream(reply):
                await response.write(chunk)
            if isinstance(reply, Cut):
                assert request.transport is not None
                request.transport.close()  # no terminating chunk: a broken connection
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

    def _models(self, query: Mapping[str, str]) -> web.Response:
        start = int(query.get("pageToken") or 0)
        size = min(int(query.get("pageSize") or 50), self.page_size)
        page: dict[str, Any] = {"models": self.models[start : start + size]}
        if start + size < len(self.models):
            page["nextPageToken"] = str(start + size)
        return web.json_response(page)

    # -- the OAuth token endpoint --------------------------------------------------------

    def _token(self, request: web.Request, raw: bytes) -> web.Response:
        if self.token_replies:
            reply = self.token_replies.popleft()
            return web.json_response(reply.body, status=reply.status)
        form = dict(parse_qsl(raw.decode()))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return _oauth_error("unsupported_grant_type", "Invalid grant_type.")
        account = self.account
        problem, claims = verify_assertion(
            form.get("assertion", ""),
            account.public_key if account else None,
            email=account.client_email if account else "",
            audience=self.token_url,
            now=self.clock(),
        )
        if problem:
            self.rejections.append(f"token: {problem}")
            return _oauth_error("invalid_grant", problem)
        self.token_claims.append(claims)
        token = f"ya29.{self.token_secret}-{len(self.token_claims)}"
        self.tokens[token] = self.clock() + self.token_lifetime
        return web.json_response(
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )


def _oauth_error(code: str, description: str) -> web.Response:
    return web.json_response({"error": code, "error_description": description}, status=400)
