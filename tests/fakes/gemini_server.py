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

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.base import Cut, LoopbackServer, Raw, Recorded, Rejected, Status
from tests.fakes.gemini_checks import check_body, verify_assertion
from tests.fakes.gemini_wire import (
    NO_CALLER,
    Text,
    google_error,
    key_invalid,
    render_stream,
    text_event,
    token_invalid,
    whole,
)

Auth = Literal["key", "bearer"]


@dataclass(frozen=True)
class Account:
    """What the token endpoint knows of the service account."""

    client_email: str
    public_key: rsa.RSAPublicKey


class FakeGemini(LoopbackServer):
    """``prefix`` is the API root (AI Studio ``/v1beta``, Vertex ``/v1/projects/…/google``).
    ``auth="key"`` demands ``api_key``; ``auth="bearer"`` demands a token issued here to
    ``account``. ``vertex`` selects Vertex's safety categories."""

    # a wrong key, a refused or expired token, a token request from a stranger's account
    client_faults = ("wrong", "bad", "token")

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
        super().__init__(prefix)
        self.api_key = api_key
        self.auth = auth
        self.vertex = vertex
        self.account = account
        self.token_secret = token_secret
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.models = list(models)
        self.page_size = page_size
        self.token_claims: list[dict[str, Any]] = []  # one per token issued
        self.token_replies: deque[Status] = deque()  # scripted token endpoint failures
        self.tokens: dict[str, float] = {}  # issued token → expiry
        self.refuse_tokens = 0  # refuse this many valid bearer tokens (revoked)

    @property
    def root(self) -> str:
        return self.origin

    @property
    def token_url(self) -> str:
        return self.origin + "/token"

    def generations(self) -> list[Recorded]:
        return [r for r in self.requests if "Content" in r.path.rpartition(":")[2]]

    # -- routing -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/token":  # the OAuth endpoint beside the API: not recorded
            return self._token(await request.read())
        return await super()._handle(request)

    async def route(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        self._check_auth(recorded.headers, request.query)
        route = request.path.removeprefix(self.prefix)
        if request.method == "GET" and route == "/models" and not self.vertex:
            return self._models(request.query)
        name, _, method = route.removeprefix("/").rpartition(":")
        known = ("generateContent", "streamGenerateContent", "countTokens")
        if request.method != "POST" or not name.startswith("models/") or method not in known:
            raise Rejected(
                404,
                google_error(404, "NOT_FOUND", f"Requested entity was not found: {route}"),
                f"unknown route {request.method} {request.path}",
            )
        if not recorded.headers.get("content-type", "").startswith("application/json"):
            raise invalid("Content-Type must be application/json")
        body = recorded.body
        problem = check_body(body, counting=method == "countTokens", vertex=self.vertex)
        if problem:
            raise invalid(problem)
        if method == "countTokens":
            texts = [str(p["text"]) for c in body["contents"] for p in c["parts"]]
            return web.json_response({"totalTokens": sum(len(t.split()) for t in texts) + 1})
        reply = self.next_reply(Text())
        stream = method == "streamGenerateContent"
        if stream and request.query.get("alt") != "sse" and not isinstance(reply, Status | Raw):
            # without alt=sse Google streams one JSON array; no client here should ask for it
            return web.json_response([whole(reply)])
        return await self.answer(request, reply, stream=stream)

    def _check_auth(self, headers: Mapping[str, str], query: Mapping[str, str]) -> None:
        if self.auth == "key":
            got = headers.get("x-goog-api-key") or query.get("key")
            if not got:
                raise Rejected(403, NO_CALLER, "no API key")
            if got != self.api_key:
                raise Rejected(400, key_invalid(got), f"wrong API key {got}")
            return
        token = headers.get("authorization", "").removeprefix("Bearer ")
        expiry = self.tokens.get(token)
        if self.refuse_tokens > 0:
            self.refuse_tokens -= 1
            expiry = None
        if expiry is None or self.clock() >= expiry:
            raise Rejected(401, token_invalid(token), f"bad bearer token {token}")

    # -- answers -------------------------------------------------------------------------

    def render(self, reply: Any) -> list[bytes]:
        return render_stream(reply)

    def whole(self, reply: Any) -> web.Response:
        if isinstance(reply, Cut):
            return web.Response(body=b'{"candidates":[{"cont', content_type="application/json")
        return web.json_response(whole(reply))

    def endless_delta(self, n: int) -> bytes:
        return text_event(f"w{n} ")

    def _models(self, query: Mapping[str, str]) -> web.Response:
        start = int(query.get("pageToken") or 0)
        size = min(int(query.get("pageSize") or 50), self.page_size)
        page: dict[str, Any] = {"models": self.models[start : start + size]}
        if start + size < len(self.models):
            page["nextPageToken"] = str(start + size)
        return web.json_response(page)

    # -- the OAuth token endpoint --------------------------------------------------------

    def _token(self, raw: bytes) -> web.Response:
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


def invalid(problem: str) -> Rejected:
    return Rejected(400, google_error(400, "INVALID_ARGUMENT", problem), problem)


def _oauth_error(code: str, description: str) -> web.Response:
    return web.json_response({"error": code, "error_description": description}, status=400)
