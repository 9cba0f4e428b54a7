"""A scriptable loopback KoboldCpp or KoboldAI Classic server (real HTTP on 127.0.0.1, port 0).

It checks every request the way the real server would (the route, KoboldCpp's ``--password``
as a Bearer header, the generate body's keys and types) and answers in the real bytes: the
``event: message`` stream with its final ``finish_reason`` and no ``[DONE]``, the blocking
``{"results": [...]}``, the 503 busy body, ``/api/extra/perf``, ``/api/extra/abort``,
``/api/extra/tokencount``. A Classic server has no ``/api/extra`` routes and, like the real
one, refuses a body key it does not know with 422. KoboldCpp ignores unknown keys; this fake
refuses them too (listing them in ``rejections``) so that a misspelt key fails a test.

Replies are queued with :meth:`FakeKobold.enqueue`: the OpenAI fake's :class:`Text`, the
shared :class:`Cut`, :class:`Endless`, :class:`Huge`, :class:`Raw` and :class:`Status`, and
:class:`ErrorAfter`. ``Text.finish`` may be ``"stop"``, ``"length"`` or
``"stop_string"`` (sent as ``length``, as KoboldCpp does, with perf ``stop_reason`` 2).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from tests.fakes.base import Cut, Endless, Huge, LoopbackServer, Raw, Recorded, Status
from tests.fakes.openai_wire import Text

NOT_FOUND = (
    b"Error: HTTP Server is running, but this endpoint does not exist. Please check the URL."
)
BUSY = {
    "detail": {"msg": "Server is busy; please try again later.", "type": "service_unavailable"}
}
UNAUTHORIZED = {
    "detail": {
        "error": "Unauthorized",
        "msg": "Authentication key is missing or invalid.",
        "type": "unauthorized",
    }
}
MODEL = "koboldcpp/Aria-7B.Q4_K_M"

CLASSIC_KEYS = frozenset(
    {
        "prompt",
        "max_context_length",
        "max_length",
        "rep_pen",
        "rep_pen_range",
        "rep_pen_slope",
        "temperature",
        "tfs",
        "top_a",
        "top_k",
        "top_p",
        "typical",
        "sampler_order",
        "sampler_seed",
        "singleline",
        "stop_sequence",
        "use_default_badwordsids",
        "use_story",
        "use_memory",
        "use_authors_note",
        "use_world_info",
        "quiet",
        "n",
    }
)
KOBOLDCPP_KEYS = CLASSIC_KEYS | {
    "min_p",
    "genkey",
    "grammar",
    "grammar_retain_state",
    "memory",
    "images",
    "trim_stop",
    "render_special",
    "bypass_eos",
    "banned_tokens",
    "logit_bias",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "dry_multiplier",
    "dry_base",
    "dry_allowed_length",
    "dry_penalty_last_n",
    "dry_sequence_breakers",
    "xtc_threshold",
    "xtc_probability",
    "nsigma",
    "dynatemp_range",
    "dynatemp_exponent",
    "smoothing_factor",
    "logprobs",
}

# -- golden transcripts (shared backends reference §8) ------------------------------------------

GOLDEN_STREAM = (
    b'event: message\ndata: {"token":"Hi","finish_reason":null}\n\n'
    b'event: message\ndata: {"token":"","finish_reason":"stop"}\n\n'
)
GOLDEN_BLOCKING = b'{"results":[{"text":"Hi"}]}'


@dataclass(frozen=True)
class ErrorAfter:
    """Stream ``deltas``, then KoboldCpp's failure: a final ``finish_reason: "error"``."""

    deltas: Sequence[str] = ("Once",)


Reply = Text | Cut | ErrorAfter | Endless | Huge | Raw | Status

_STOP_REASON = {"stop": 1, "length": 0, "stop_string": 2}


def token_event(token: str, finish: str | None = None) -> bytes:
    return (
        b"event: message\ndata: "
        + json.dumps({"token": token, "finish_reason": finish}).encode()
        + b"\n\n"
    )


class FakeKobold(LoopbackServer):
    """The fake server. ``password`` is KoboldCpp's ``--password`` (``None``: open);
    ``classic`` makes it a KoboldAI Classic server."""

    stream_headers: ClassVar[Mapping[str, str]] = {
        "cache-control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    client_faults = ("password",)

    def __init__(
        self, *, password: str | None = None, classic: bool = False, perf_route: bool = True
    ) -> None:
        super().__init__()
        self.password = password
        self.classic = classic
        self.perf_route = perf_route  # False: an older KoboldCpp without /api/extra/perf
        self.aborts: list[Any] = []
        self.aborted = asyncio.Event()
        self.generating = asyncio.Event()  # a generate request was accepted
        self.perf: dict[str, Any] = {
            "last_input_count": 0,
            "last_token_count": 0,
            "stop_reason": -1,
        }
        self._active_key = ""

    def generations(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(("/generate", "/generate/stream"))]

    # -- request handling ----------------------------------------------------------------

    async def route(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        headers, body = recorded.headers, recorded.body
        path = request.path.rstrip("/")
        if self.password is not None and headers.get("authorization") != f"Bearer {self.password}":
            return self.reject(f"password: {headers.get('authorization')}", 401, UNAUTHORIZED)
        if self.classic and path.startswith("/api/extra"):
            return self._not_found(request)
        route = (request.method, path)
        if route in (("POST", "/api/v1/generate"), ("POST", "/api/extra/generate/stream")):
            return await self._generate(request, body, stream=path.endswith("/stream"))
        if route == ("POST", "/api/extra/abort"):
            return self._abort(body)
        if route == ("POST", "/api/extra/tokencount"):
            prompt = body.get("prompt") if isinstance(body, dict) else None
            if not isinstance(prompt, str):
                return web.json_response({"value": -1}, status=400)
            words = prompt.split()  # a deterministic stand-in for the model's tokenizer
            return web.json_response({"value": len(words), "ids": list(range(len(words)))})
        answers: dict[tuple[str, str], Any] = {
            ("GET", "/api/v1/model"): {
                "result": "KoboldAI/fairseq-dense-2.7B" if self.classic else MODEL
            },
            ("GET", "/api/v1/info/version"): {"result": "1.2.5"},
            ("GET", "/api/v1/config/max_context_length"): {"value": 2048},
            ("GET", "/api/extra/version"): {"result": "KoboldCpp", "version": "1.98.1"},
            ("GET", "/api/extra/true_max_context_length"): {"value": 8192},
        }
        if self.perf_route:
            answers["GET", "/api/extra/perf"] = {**self.perf, "queue": 0, "idle": 1}
        if route in answers:
            return web.json_response(answers[route])
        return self._not_found(request)

    def _not_found(self, request: web.Request) -> web.Response:
        self.rejections.append(f"unknown route {request.method} {request.path}")
        return web.Response(status=404, body=NOT_FOUND, content_type="text/html")

    def _abort(self, body: Any) -> web.Response:
        key = body.get("genkey", "") if isinstance(body, dict) else ""
        self.aborts.append(body)
        self.aborted.set()
        hit = bool(key) and key == self._active_key
        return web.json_response({"success": "true" if hit else "false"})

    def _check(self, body: Any) -> tuple[str, int, Any]:
        if not isinstance(body, dict):
            return "the body is not a JSON object", 503, None  # KoboldCpp's answer to bad JSON
        allowed = CLASSIC_KEYS if self.classic else KOBOLDCPP_KEYS
        extra = sorted(set(body) - allowed)
        if extra:
            return f"unknown keys {extra}", 422, {"detail": {k: ["Unknown field."] for k in extra}}
        if not isinstance(body.get("prompt"), str):
            return "prompt must be a string", 422, {"detail": {"prompt": ["Not a valid string."]}}
        for key in ("max_length", "max_context_length"):
            value = body.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                return f"{key} must be a positive integer", 422, {"detail": {key: ["Invalid."]}}
        stop = body.get("stop_sequence")
        if stop is not None and not (
            isinstance(stop, list) and all(isinstance(s, str) for s in stop)
        ):
            return (
                "stop_sequence must be a list of strings",
                422,
                {"detail": {"stop_sequence": ["Invalid."]}},
            )
        return "", 0, None

    async def _generate(
        self, request: web.Request, body: Any, *, stream: bool
    ) -> web.StreamResponse:
        problem, status, answer = self._check(body)
        if problem:
            self.rejections.append(problem)
            return (
                web.json_response(answer, status=status) if answer else web.Response(status=status)
            )
        assert isinstance(body, dict)
        reply = self.next_reply(Text())
        if not isinstance(reply, Status | Raw):
            self._active_key = body.get("genkey", "")
            self.generating.set()
        if isinstance(reply, Text):
            self._remember(body["prompt"], reply)
        return await self.answer(request, reply, stream=stream)

    def _remember(self, prompt: str, reply: Text) -> None:
        """What /api/extra/perf reports after this generation."""
        prompt_tokens, completion = reply.usage or (len(prompt.split()), len(reply.deltas))
        self.perf = {
            "last_input_count": prompt_tokens,
            "last_token_count": completion,
            "stop_reason": _STOP_REASON.get(reply.finish or "stop", 1),
            "total_gens": self.perf.get("total_gens", 0) + 1,
        }

    # -- answers -------------------------------------------------------------------------

    def render(self, reply: Any) -> list[bytes]:
        if isinstance(reply, Huge):
            piece = token_event("y" * 4000)
            return [piece] * (reply.size // len(piece) + 1)
        out = [token_event(delta) for delta in reply.deltas]
        if isinstance(reply, ErrorAfter):
            out.append(token_event("", "error"))
        elif isinstance(reply, Text):
            finish = reply.finish or "stop"
            out.append(token_event("", "length" if finish == "stop_string" else finish))
        return out

    def endless_delta(self, n: int) -> bytes:
        return token_event(f"w{n} ")

    def whole(self, reply: Any) -> web.Response:
        if isinstance(reply, Cut):
            return web.Response(body=b'{"results":[{"te', content_type="application/json")
        if isinstance(reply, Huge):
            return web.json_response({"results": [{"text": "x" * reply.size}]})
        if isinstance(reply, ErrorAfter):
            result: dict[str, Any] = {"text": "".join(reply.deltas), "finish_reason": "error"}
        else:
            finish = reply.finish or "stop"
            result = {"text": "".join(reply.deltas)}
            if not self.classic:
                result["finish_reason"] = "length" if finish == "stop_string" else finish
                result["prompt_tokens"] = self.perf["last_input_count"]
                result["completion_tokens"] = self.perf["last_token_count"]
        return web.json_response({"results": [result]})
