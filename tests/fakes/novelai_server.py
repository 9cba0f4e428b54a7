"""A loopback text.novelai.net speaking the legacy text API: ``POST /ai/generate-stream``
(typed SSE ``event: newToken`` / ``data: {"token","ptr","final"}``, no ``[DONE]``) and
``POST /ai/generate`` (``{"output"}``).

Requests are checked as NovelAI would: Bearer ``pst-…`` token, a known model, ``{input, model,
parameters}`` with ``use_string`` and ``max_length`` ≤ 150, stop and ban lists as token-id
arrays. Cloudflare in front refuses a library's default User-Agent with its 403 page (error
1010), as reported for NovelAI. Error bodies are NestJS-style ``{"statusCode", "message"}``;
the wording of 402, 429 and the context error is not documented (unverified), and NovelAI's
own in-stream error is a dropped connection: the ``event: error`` record used for the
contract's in-stream case is a defensive emulation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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

AUTH_PROBLEM = "bad or missing token"
MODELS = frozenset({"llama-3-erato-v1", "kayra-v1", "clio-v1"})
LIBRARY_AGENTS = ("python-httpx/", "python-requests/", "aiohttp/", "curl/")


def nai_error(status: int, message: str) -> dict[str, Any]:
    return {"statusCode": status, "message": message}


def error_401(token: str) -> dict[str, Any]:
    # echoed as a careless server would, so the client's redaction is exercised
    return nai_error(401, f"Access Token is incorrect: {token}")


ERROR_404 = {"statusCode": 404, "message": "Cannot POST /ai/generate-streem", "error": "Not Found"}
ERROR_402 = nai_error(402, "An active subscription is required to access this endpoint.")
ERROR_429 = nai_error(429, "Too many concurrent requests")
ERROR_500 = nai_error(500, "Internal server error")
ERROR_503 = nai_error(503, "Service Unavailable")
ERROR_CONTEXT = nai_error(
    400, "Input is too long: 9120 tokens, the maximum context length is 8192"
)
CLOUDFLARE_1010 = (
    b"<!DOCTYPE html>\n<html><head><title>Access denied | text.novelai.net used Cloudflare to "
    b"restrict access</title></head><body><h1>Error 1010</h1><p>The owner of this website "
    b"(text.novelai.net) has banned your access based on your browser's signature.</p>"
    b"<p>Cloudflare Ray ID: 8a1b2c3d4e5f6a7b</p></body></html>\n"
)

# -- golden transcript (shared backends reference §8.10); bytes matter -------------------------

GOLDEN_STREAM = (
    b'event: newToken\ndata: {"token":"Hi","ptr":0,"final":false}\n\n'
    b'event: newToken\ndata: {"token":"!","ptr":1,"final":true}\n\n'
)
GOLDEN_WHOLE = b'{"output":"Hi!"}'

PARAMETER_KEYS = frozenset(
    {
        "use_string", "max_length", "min_length", "temperature", "top_k", "top_p", "top_a",
        "typical_p", "tail_free_sampling", "min_p", "repetition_penalty",
        "repetition_penalty_range", "repetition_penalty_slope", "repetition_penalty_frequency",
        "repetition_penalty_presence", "repetition_penalty_whitelist", "phrase_rep_pen",
        "mirostat_tau", "mirostat_lr", "math1_temp", "math1_quad", "math1_quad_entropy_scale",
        "stop_sequences", "bad_words_ids", "logit_bias_exp", "generate_until_sentence",
        "use_cache", "return_full_text", "prefix", "order", "num_logprobs", "eos_token_id",
    }
)  # fmt: skip


def token(text: str, ptr: int, final: bool) -> bytes:
    return sse("newToken", {"token": text, "ptr": ptr, "final": final})


class FakeNovelAI(LoopbackServer):
    # a wrong token, and Cloudflare's refusal of a library's User-Agent, are provoked on purpose
    client_faults = (AUTH_PROBLEM, "cloudflare")

    def __init__(self, *, api_key: str) -> None:
        super().__init__("")
        self.api_key = api_key

    async def route(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        agent = recorded.headers.get("user-agent", "")
        if not agent or agent.startswith(LIBRARY_AGENTS):
            self.rejections.append(f"cloudflare 1010: {agent}")
            return web.Response(status=403, body=CLOUDFLARE_1010, content_type="text/html")
        got = recorded.headers.get("authorization", "")
        if got != f"Bearer {self.api_key}":
            key = got.removeprefix("Bearer ")
            raise Rejected(401, error_401(key), f"{AUTH_PROBLEM}: {key}")
        paths = {"/ai/generate-stream": True, "/ai/generate": False}
        if request.method != "POST" or request.path not in paths:
            raise Rejected(
                404,
                {"statusCode": 404, "message": f"Cannot {request.method} {request.path}"},
                f"unknown route {request.method} {request.path}",
            )
        self._check(recorded)
        return await self.answer(request, self.next_reply(Text()), stream=paths[request.path])

    def _check(self, recorded: Recorded) -> None:
        def bad(problem: str) -> Rejected:
            return Rejected(400, nai_error(400, problem), problem)

        if not recorded.headers.get("content-type", "").startswith("application/json"):
            raise bad("content type must be application/json")
        body = recorded.body
        if not isinstance(body, dict) or set(body) != {"input", "model", "parameters"}:
            raise bad("body must be {input, model, parameters}")
        if not isinstance(body["input"], str) or not body["input"]:
            raise bad("input must be a non-empty string")
        if body["model"] not in MODELS:
            raise bad(f"Invalid model: {body['model']}")
        params = body["parameters"]
        if not isinstance(params, dict):
            raise bad("parameters must be an object")
        unknown = sorted(set(params) - PARAMETER_KEYS)
        if unknown:
            raise bad(f"property {unknown[0]} should not exist")
        if params.get("use_string") is not True:
            raise bad("use_string must be true for text input")
        length = params.get("max_length")
        if not isinstance(length, int) or not 1 <= length <= 150:
            raise bad("max_length must not be greater than 150")
        for key in ("stop_sequences", "bad_words_ids"):
            lists = params.get(key, [])
            if not isinstance(lists, list) or not all(
                isinstance(ids, list) and all(isinstance(i, int) for i in ids) for ids in lists
            ):
                raise bad(f"{key} must be arrays of token ids")

    # -- rendering -------------------------------------------------------------------------

    def render(self, reply: Text | Cut | InStreamError | Huge) -> list[bytes]:
        if isinstance(reply, Huge):
            piece = token("y" * 4000, 0, False)
            return [piece] * (reply.size // len(piece) + 1)
        deltas = list(reply.deltas)
        last = len(deltas) - 1
        out = [token(d, i, isinstance(reply, Text) and i == last) for i, d in enumerate(deltas)]
        if isinstance(reply, InStreamError):
            out.append(b"event: error\ndata: " + json.dumps(ERROR_500).encode() + b"\n\n")
        return out

    def whole(self, reply: Text | Cut | InStreamError | Huge) -> web.Response:
        if isinstance(reply, Huge):
            return web.json_response({"output": "x" * reply.size})
        if isinstance(reply, InStreamError):
            return web.json_response(ERROR_500, status=500)
        if isinstance(reply, Cut):
            return web.Response(body=b'{"output":"Hel', content_type="application/json")
        return web.json_response({"output": "".join(reply.deltas)})

    def endless_delta(self, n: int) -> bytes:
        return token(f"w{n} ", n - 1, False)


def parameters_of(recorded: Recorded) -> Mapping[str, Any]:
    params: Mapping[str, Any] = recorded.body["parameters"]
    return params
