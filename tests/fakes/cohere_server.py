"""A loopback fake of Cohere's API: Chat v2 (``/v2/chat``) and the v1 helpers it keeps
(``/v1/models``, ``/v1/tokenize``). It refuses what the real API refuses, in its
``{"message": …}`` envelope, and streams typed SSE (shared backends reference §4.9, §7, §8.9).

Checked on every request: the Bearer key, JSON body keys (unknown ones refused), roles and
non-empty content, ``stream`` given as a boolean, at most five stop sequences, the ``p``/``k``
and penalty ranges, ``safety_mode`` values per model, and ``thinking`` only where a model
thinks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from tests.fakes.base import (
    Cut,
    Huge,
    InStreamError,
    LoopbackServer,
    Recorded,
    Rejected,
    Text,
    sse,
)

AUTH_PROBLEM = "invalid api token"
CHAT_KEYS = frozenset(
    {"model", "messages", "stream", "max_tokens", "stop_sequences", "temperature", "p", "k"}
    | {"seed", "frequency_penalty", "presence_penalty", "safety_mode", "documents", "tools"}
    | {"response_format", "thinking", "citation_options", "tool_choice", "strict_tools"}
    | {"logprobs", "priority"}
)
ROLES = frozenset({"system", "user", "assistant", "tool"})


def invalid(message: str) -> Rejected:
    return Rejected(400, {"id": "e1", "message": f"invalid request: {message}"}, message)


# -- real error bodies (reference §4.9 and §7) ------------------------------------------------


def error_401(key: str) -> dict[str, Any]:
    # a careless proxy that echoes the key: the client must still never show it
    return {"id": "e1", "message": f"invalid api token {key}"}


ERROR_404 = {
    "id": "e1",
    "message": "model 'command-nope' not found, make sure the correct model ID was used and "
    "that you have access to the model.",
}
ERROR_429 = {
    "id": "e1",
    "message": "You are using a Trial key, which is limited to 20 API calls / minute. You can "
    "continue to use the Trial key for free or upgrade to a Production key with higher rate "
    "limits at 'https://dashboard.cohere.com/api-keys'. Contact us on "
    "'https://discord.gg/XW44jPfYJu' or email us at support@cohere.com with any questions",
}
ERROR_TRIAL_MONTH = {
    "id": "e1",
    "message": "You are using a Trial key, which is limited to 1000 API calls / month. You can "
    "continue to use the Trial key for free or upgrade to a Production key with higher rate "
    "limits at 'https://dashboard.cohere.com/api-keys'.",
}
ERROR_CONTEXT = {
    "id": "e1",
    "message": "invalid request: too many tokens: the total number of tokens in the prompt "
    "cannot exceed 131072 - received 140021. Try using a shorter prompt, or enabling prompt "
    "truncating.",
}
ERROR_402 = {"id": "e1", "message": "Please add a payment method to continue using the API."}
ERROR_498 = {"id": "e1", "message": "invalid token"}
ERROR_500 = {"id": "e1", "message": "internal server error, this has been reported to our devs"}
ERROR_503 = {"id": "e1", "message": "service unavailable, please try again later"}
STREAM_ERROR = "an internal error occurred while generating the response"

# -- golden stream transcripts (reference §8.9); bytes matter ---------------------------------

_START = sse(
    "message-start",
    {
        "id": "c1",
        "type": "message-start",
        "delta": {
            "message": {
                "role": "assistant",
                "content": [],
                "tool_plan": "",
                "tool_calls": [],
                "citations": [],
            }
        },
    },
)


def _content_start(index: int, kind: str = "text") -> bytes:
    return sse(
        "content-start",
        {
            "type": "content-start",
            "index": index,
            "delta": {"message": {"content": {"type": kind, kind: ""}}},
        },
    )


def _delta(index: int, value: str, kind: str = "text") -> bytes:
    return sse(
        "content-delta",
        {
            "type": "content-delta",
            "index": index,
            "delta": {"message": {"content": {kind: value}}},
        },
    )


def _content_end(index: int) -> bytes:
    return sse("content-end", {"type": "content-end", "index": index})


def _end(reason: str, usage: tuple[int, int] | None, error: str | None = None) -> bytes:
    delta: dict[str, Any] = {"finish_reason": reason}
    if error is not None:
        delta["error"] = error
    if usage is not None:
        delta["usage"] = {
            "billed_units": {"input_tokens": max(1, usage[0] - 60), "output_tokens": usage[1]},
            "tokens": {"input_tokens": usage[0], "output_tokens": usage[1]},
        }
    return sse("message-end", {"type": "message-end", "delta": delta})


GOLDEN = (
    _START
    + _content_start(0)
    + _delta(0, "Hi")
    + _delta(0, "!")
    + _content_end(0)
    + _end("COMPLETE", (71, 2))
)
GOLDEN_THINKING = (
    _START
    + _content_start(0, "thinking")
    + _delta(0, "They said hi.", "thinking")
    + _content_end(0)
    + _content_start(1)
    + _delta(1, "Hello!")
    + _content_end(1)
    + _end("COMPLETE", (80, 9))
)
GOLDEN_ERROR = _START + _content_start(0) + _delta(0, "Once") + _end("ERROR", None, STREAM_ERROR)


class FakeCohere(LoopbackServer):
    """``safety``: model id prefix → the ``safety_mode`` values it takes (others: none);
    ``thinking``: model id prefixes that take ``thinking``."""

    client_faults = (AUTH_PROBLEM,)

    def __init__(
        self,
        *,
        api_key: str = "co-test-4f9a1c0d2e7b",
        safety: Mapping[str, frozenset[str]] | None = None,
        thinking: Sequence[str] = ("command-a-reasoning",),
        models: Sequence[Mapping[str, Any]] = (),
        page_size: int = 1000,
    ) -> None:
        super().__init__("/v2")
        self.api_key = api_key
        self.safety = dict(
            safety
            or {
                "command-r-08-2024": frozenset({"CONTEXTUAL", "STRICT", "OFF"}),
                "command-a": frozenset({"CONTEXTUAL", "STRICT"}),
            }
        )
        self.thinking = tuple(thinking)
        self.models = list(models)
        self.page_size = page_size

    async def route(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        if recorded.headers.get("authorization") != f"Bearer {self.api_key}":
            raise Rejected(401, {"id": "e1", "message": AUTH_PROBLEM}, AUTH_PROBLEM)
        if request.method == "GET" and request.path == "/v1/models":
            return self._models(recorded.query)
        if request.method == "POST" and request.path == "/v1/tokenize":
            return self._tokenize(recorded)
        if request.method == "POST" and request.path == "/v2/chat":
            body = self._check_chat(recorded)
            reply = self.next_reply(Text())
            return await self.answer(request, reply, stream=body["stream"] is True)
        raise Rejected(404, {"message": f"{request.path} not found"}, f"no route {request.path}")

    def _json(self, recorded: Recorded) -> dict[str, Any]:
        if not recorded.headers.get("content-type", "").startswith("application/json"):
            raise invalid("content-type must be application/json")
        if not isinstance(recorded.body, dict):
            raise invalid("could not parse the request body as JSON")
        return recorded.body

    def _check_chat(self, recorded: Recorded) -> dict[str, Any]:
        body = self._json(recorded)
        for key in body:
            if key not in CHAT_KEYS:
                raise invalid(f"unknown field: parameter {key} is not a valid field")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid("model must be a non-empty string")
        if not isinstance(body.get("stream"), bool):
            raise invalid("stream must be a boolean")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise invalid("messages must be a non-empty list")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise invalid(f"invalid message role: {message!r}")
            content = message.get("content")
            if not (isinstance(content, str) and content.strip()) and not isinstance(
                content, list
            ):
                raise invalid("all elements in messages must have a non-empty content")
        stops = body.get("stop_sequences", [])
        if not isinstance(stops, list) or len(stops) > 5:
            raise invalid("stop_sequences can have at most 5 elements")
        ranges = {
            "p": (0.01, 0.99),
            "k": (0, 500),
            "frequency_penalty": (0, 1),
            "presence_penalty": (0, 1),
        }
        for key, (low, high) in ranges.items():
            value = body.get(key)
            if value is not None and not (isinstance(value, int | float) and low <= value <= high):
                raise invalid(f"{key} must be between {low} and {high}, got {value}")
        mode = body.get("safety_mode")
        if mode is not None:
            allowed = next((v for k, v in self.safety.items() if model.startswith(k)), frozenset())
            if mode not in allowed:
                raise invalid(f"safety_mode {mode} is not supported for model {model}")
        if "thinking" in body and not model.startswith(self.thinking):
            raise invalid(f"thinking is not supported for model {model}")
        return body

    def _models(self, query: Mapping[str, str]) -> web.Response:
        chosen = [
            m
            for m in self.models
            if "endpoint" not in query or query["endpoint"] in m.get("endpoints", [])
        ]
        start = int(query.get("page_token") or 0)
        size = min(int(query.get("page_size", "20")), self.page_size)
        page = chosen[start : start + size]
        token = str(start + size) if start + size < len(chosen) else None
        out: dict[str, Any] = {"models": page}
        if token is not None:
            out["next_page_token"] = token
        return web.json_response(out)

    def _tokenize(self, recorded: Recorded) -> web.Response:
        body = self._json(recorded)
        text, model = body.get("text"), body.get("model")
        if not isinstance(text, str) or not 1 <= len(text) <= 65536:
            raise invalid("text must be between 1 and 65536 characters")
        if not isinstance(model, str) or not model:
            raise invalid("model must be a non-empty string")
        words = text.split()
        return web.json_response(
            {"tokens": list(range(len(words))), "token_strings": words, "meta": {}}
        )

    # -- rendering ---------------------------------------------------------------------------

    def render(self, reply: Text | Cut | InStreamError | Huge) -> list[bytes]:
        if isinstance(reply, Huge):
            piece = _delta(0, "y" * 4000)
            return [_START, _content_start(0)] + [piece] * (reply.size // len(piece) + 1)
        out = [_START]
        index = 0
        if isinstance(reply, Text) and reply.reasoning:
            out.append(_content_start(0, "thinking"))
            out += [_delta(0, r, "thinking") for r in reply.reasoning]
            out.append(_content_end(0))
            index = 1
        out.append(_content_start(index))
        out += [_delta(index, d) for d in reply.deltas]
        if isinstance(reply, InStreamError):
            out.append(_end("ERROR", None, STREAM_ERROR))
        if not isinstance(reply, Text):
            return out
        out += [_content_end(index), _end(reply.finish or "COMPLETE", reply.usage)]
        return out

    def whole(self, reply: Text | Cut | InStreamError | Huge) -> web.Response:
        if isinstance(reply, Cut):
            return web.Response(body=b'{"id":"c1","message":{"ro', content_type="application/json")
        if isinstance(reply, InStreamError):
            return web.json_response(ERROR_500, status=500)
        text = "x" * reply.size if isinstance(reply, Huge) else "".join(reply.deltas)
        content: list[dict[str, Any]] = []
        if isinstance(reply, Text) and reply.reasoning:
            content.append({"type": "thinking", "thinking": "".join(reply.reasoning)})
        content.append({"type": "text", "text": text})
        out: dict[str, Any] = {
            "id": "c1",
            "finish_reason": (reply.finish if isinstance(reply, Text) else None) or "COMPLETE",
            "message": {"role": "assistant", "content": content},
        }
        if isinstance(reply, Text) and reply.usage:
            prompt, completion = reply.usage
            out["usage"] = {
                "billed_units": {"input_tokens": max(1, prompt - 60), "output_tokens": completion},
                "tokens": {"input_tokens": prompt, "output_tokens": completion},
            }
        return web.json_response(out)

    def endless_delta(self, n: int) -> bytes:
        head = _START + _content_start(0) if n == 1 else b""
        return head + _delta(0, f"w{n} ")
