"""A loopback Ollama server speaking its native API: ``POST /api/chat`` and ``/api/generate``
as NDJSON streams (``application/x-ndjson``; the last line ``done: true`` with
``done_reason`` and token counts; an error after the 200 status as a ``{"error"}`` line) or
one JSON object, and ``GET /api/tags``.

Requests are checked as Ollama would: a pulled model name (else its 404 "try pulling it
first"), JSON bodies, a Bearer key where one is demanded (ollama.com). Stricter where a
client bug would otherwise pass silently (Ollama ignores what it does not know): unknown
body keys and ``options``, a missing ``num_predict`` or ``num_ctx`` (a small default
``num_ctx`` silently truncates the prompt), a text prompt without ``raw: true``, and a
message ``name`` field (Ollama would drop the speaker).
"""

from __future__ import annotations

from collections.abc import Sequence
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
    ndjson_line,
)

AUTH_PROBLEM = "bad or missing key"
NDJSON = "application/x-ndjson"
CREATED = "2025-10-26T17:21:21.196249Z"

# -- what Ollama says (docs/api.md, docs.ollama.com/api/errors) --------------------------------


def not_found(model: str) -> dict[str, str]:
    return {"error": f'model "{model}" not found, try pulling it first'}


def error_401(key: str) -> dict[str, str]:
    # ollama.com says "unauthorized"; the key is echoed so the client's redaction is exercised
    return {"error": f"unauthorized: {key}"}


ERROR_500 = {"error": "the model failed to generate a response"}
ERROR_503 = {"error": "server busy, please try again.  maximum pending requests exceeded"}
ERROR_CONTEXT = {"error": "the input length exceeds the context length"}
ERROR_MIDSTREAM = {"error": "an error was encountered while running the model"}
# ollama.com's wording for these two is not documented (unverified)
ERROR_429 = {"error": "too many requests, please slow down"}
ERROR_QUOTA = {"error": "you have reached your usage limit, upgrade for higher limits"}

# -- golden transcript (shared backends reference §8.4); bytes matter ---------------------------

GOLDEN_GENERATE = (
    b'{"model":"m","response":"Hi","done":false}\n'
    b'{"model":"m","response":"","done":true,"done_reason":"stop","eval_count":1}\n'
)

BODY_KEYS = {
    "/api/chat": frozenset(
        {"model", "messages", "stream", "options", "keep_alive", "think", "format", "tools"}
    ),
    "/api/generate": frozenset(
        {"model", "prompt", "raw", "stream", "options", "keep_alive", "think", "format"}
    ),
}
OPTION_KEYS = frozenset(
    {
        "num_ctx", "num_predict", "num_batch", "stop", "temperature", "top_k", "top_p", "min_p",
        "typical_p", "tfs_z", "repeat_penalty", "repeat_last_n", "presence_penalty",
        "frequency_penalty", "seed", "mirostat", "mirostat_tau", "mirostat_eta", "num_keep",
    }
)  # fmt: skip
ROLES = frozenset({"system", "user", "assistant", "tool"})


class FakeOllama(LoopbackServer):
    stream_type = NDJSON
    client_faults = (AUTH_PROBLEM,)

    def __init__(
        self, *, api_key: str | None = None, models: Sequence[str] = ("test-model",)
    ) -> None:
        super().__init__("")
        self.api_key = api_key
        self.models = list(models)
        self._chat = True  # what the request being answered asked for

    async def route(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        method, path = request.method, request.path
        if self.api_key is not None:
            got = recorded.headers.get("authorization", "")
            if got != f"Bearer {self.api_key}":
                key = got.removeprefix("Bearer ")
                raise Rejected(401, error_401(key), f"{AUTH_PROBLEM}: {key}")
        if (method, path) == ("GET", "/api/tags"):
            return web.json_response({"models": [self._tag(m) for m in self.models]})
        if method == "POST" and path in BODY_KEYS:
            body = self._check(path, recorded)
            if body["model"] not in self.models:
                return web.json_response(not_found(body["model"]), status=404)
            self._chat = path == "/api/chat"
            reply = self.next_reply(Text())
            return await self.answer(request, reply, stream=body.get("stream", True))
        # Go's net/http 404 for a route Ollama does not have
        raise Rejected(404, "404 page not found", f"unknown route {method} {path}")

    def _tag(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": CREATED,
            "size": 2019393189,
            "digest": "a80c4f17acd5",
            "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B"},
        }

    def _check(self, path: str, recorded: Recorded) -> dict[str, Any]:
        def bad(problem: str) -> Rejected:
            return Rejected(400, {"error": problem}, problem)

        if not recorded.headers.get("content-type", "").startswith("application/json"):
            raise bad("content type must be application/json")
        body = recorded.body
        if not isinstance(body, dict):
            raise bad("invalid character looking for beginning of value")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise bad("model is required")
        unknown = sorted(set(body) - BODY_KEYS[path])
        if unknown:
            raise bad(f"Ollama does not read {', '.join(unknown)}")
        if not isinstance(body.get("stream"), bool):
            raise bad("the client must say `stream`")
        if path == "/api/chat":
            for m in body.get("messages") or [None]:
                if not isinstance(m, dict) or m.get("role") not in ROLES:
                    raise bad(f"invalid message: {m!r}")
                if not isinstance(m.get("content"), str) or set(m) - {"role", "content"}:
                    raise bad(f"invalid message fields: {sorted(m)}")
        else:
            if not isinstance(body.get("prompt"), str):
                raise bad("prompt must be a string")
            if body.get("raw") is not True:
                raise bad("a templated prompt needs raw: true")
        options = body.get("options")
        if not isinstance(options, dict):
            raise bad("options must be an object")
        if set(options) - OPTION_KEYS:
            raise bad(f"invalid option(s): {sorted(set(options) - OPTION_KEYS)}")
        for key in ("num_predict", "num_ctx"):
            if not isinstance(options.get(key), int):
                raise bad(f"the client must send options.{key}")
        stop = options.get("stop", [])
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise bad("options.stop must be an array of strings")
        if "keep_alive" in body and not isinstance(body["keep_alive"], str | int):
            raise bad("keep_alive must be a duration or a number")
        return body

    # -- rendering -------------------------------------------------------------------------

    def _delta(self, text: str, *, thinking: str = "") -> dict[str, Any]:
        model = self.last.body["model"] if self.requests else "m"
        if self._chat:
            message: dict[str, str] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            return {"model": model, "created_at": CREATED, "message": message, "done": False}
        out: dict[str, Any] = {"model": model, "created_at": CREATED, "response": text}
        if thinking:
            out["thinking"] = thinking
        return out | {"done": False}

    def _final(self, reply: Text, text: str = "") -> dict[str, Any]:
        final = self._delta(text) | {
            "done": True,
            "done_reason": reply.finish or "stop",
            "total_duration": 4883583458,
            "load_duration": 1334875,
        }
        if reply.usage:
            final |= {
                "prompt_eval_count": reply.usage[0],
                "prompt_eval_duration": 342546000,
                "eval_count": reply.usage[1],
                "eval_duration": 4535599000,
            }
        if not self._chat:
            final["context"] = [1, 2, 3]
        return final

    def render(self, reply: Text | Cut | InStreamError | Huge) -> list[bytes]:
        if isinstance(reply, Huge):
            piece = ndjson_line(self._delta("y" * 4000))
            return [piece] * (reply.size // len(piece) + 1)
        out = []
        if isinstance(reply, Text):
            out += [ndjson_line(self._delta("", thinking=r)) for r in reply.reasoning]
        out += [ndjson_line(self._delta(d)) for d in reply.deltas]
        if isinstance(reply, InStreamError):
            out.append(ndjson_line(ERROR_MIDSTREAM))
        elif isinstance(reply, Text):
            out.append(ndjson_line(self._final(reply)))
        return out

    def whole(self, reply: Text | Cut | InStreamError | Huge) -> web.Response:
        if isinstance(reply, Huge):
            return web.json_response(self._final(Text(), "x" * reply.size))
        if isinstance(reply, InStreamError):
            return web.json_response(ERROR_500, status=500)
        if isinstance(reply, Cut):
            return web.Response(body=b'{"model":"m","respo', content_type="application/json")
        answer = self._final(reply, "".join(reply.deltas))
        if reply.reasoning:
            thinking = "".join(reply.reasoning)
            if self._chat:
                answer["message"]["thinking"] = thinking
            else:
                answer["thinking"] = thinking
        return web.json_response(answer)

    def endless_delta(self, n: int) -> bytes:
        return ndjson_line(self._delta(f"w{n} "))
