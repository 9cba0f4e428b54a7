"""A scriptable loopback OpenAI-compatible server (real HTTP/1.1 on 127.0.0.1, port 0).

It checks every request the way a real server would (path, auth header form, body keys,
the stop-string limit, strict providers' unknown keys) and answers a violation with the
real error status and body, so a client bug fails the test through the client's own error
path; ``rejections`` lists them for a direct assertion too.

Replies are queued with :meth:`FakeOpenAI.enqueue`. Semantic replies (:class:`Text`,
:class:`Cut`, :class:`InStreamError`, :class:`Endless`, :class:`Huge`) render as a chat or
text stream, or a JSON body, depending on what was asked; :class:`Raw` sends exact bytes
(the golden transcripts); :class:`Status` sends an error body. This wire's ``Text`` and
``InStreamError`` live in :mod:`tests.fakes.openai_wire`, the rest in
:mod:`tests.fakes.base`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from aiohttp import web

from tests.fakes.base import Cut, Huge, LoopbackServer, Recorded
from tests.fakes.openai_wire import (
    OPENROUTER_ERROR,
    TABBY_ERROR,
    InStreamError,
    Text,
    completion,
    delta_chunk,
    error_401,
    openai_error,
    render_stream,
)

AuthStyle = Literal["bearer", "x-api-key", "both", "none"]
AUTH_PROBLEM = "bad or missing"

_CHAT_ROLES = {"system", "user", "assistant", "developer", "tool"}


class FakeOpenAI(LoopbackServer):
    """The fake server. ``auth``/``api_key`` say which header form it demands; ``max_stop``
    is its stop-string limit (OpenAI: 4); ``strict_keys``, if given, are the only top-level
    body keys it accepts (Mistral-style 422 on anything else)."""

    client_faults = (AUTH_PROBLEM,)

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
        super().__init__(prefix)
        self.api_key = api_key
        self.auth = auth
        self.max_stop = max_stop
        self.strict_keys = strict_keys
        self.models = list(models)
        self._chat = True  # what the request being answered asked for

    # -- request handling ----------------------------------------------------------------

    async def route(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        headers, body = recorded.headers, recorded.body
        route = request.path.removeprefix(self.prefix)
        problem = self._check_auth(headers)
        if problem:
            return self.reject(problem, 401, error_401(problem.partition(": ")[2]))
        if request.method == "GET" and route == "/models":
            return web.json_response({"object": "list", "data": self.models})
        if request.method != "POST" or route not in ("/chat/completions", "/completions"):
            return self.reject(
                f"unknown route {request.method} {request.path}",
                404,
                openai_error(
                    f"Invalid URL ({request.method} {request.path})",
                    "invalid_request_error",
                    None,
                ),
            )
        self._chat = route == "/chat/completions"
        problem, status = self._check_body(headers, body, self._chat)
        if problem or not isinstance(body, dict):
            return self.reject(problem, status, self._body_error(problem, status))
        reply = self.next_reply(Text())
        return await self.answer(request, reply, stream=body.get("stream") is True)

    def _body_error(self, problem: str, status: int) -> Any:
        if status == 422:
            return {"detail": [{"type": "extra_forbidden", "msg": problem}]}
        return openai_error(problem, "invalid_request_error", None)

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

    def render(self, reply: Any) -> list[bytes]:
        return render_stream(reply, self._chat)

    def endless_delta(self, n: int) -> bytes:
        return delta_chunk(f"w{n} ", self._chat)

    def whole(self, reply: Any) -> web.Response:
        chat = self._chat
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
        return web.json_response(
            completion(
                "".join(reply.deltas), reply.finish, reply.usage, "".join(reply.reasoning), chat
            )
        )
