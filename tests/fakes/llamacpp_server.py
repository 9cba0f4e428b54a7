"""A loopback llama-server (llama.cpp's own HTTP server) speaking its native API.

``POST /completion`` (SSE ``data: {"content","stop"}``, no ``[DONE]``, the last chunk with
``stop_type`` and token counts; errors as an ``error: {...}`` line), ``POST /tokenize``,
``GET /props``, ``GET /health``, ``GET /v1/models``. It checks requests as llama-server
would (Bearer key when started with ``--api-key``; /health and /v1/models stay public; JSON
bodies) and stricter where a client bug would otherwise pass silently: it refuses body keys
llama-server does not read (it would ignore them), a missing ``n_predict`` (it would
generate until the context is full) and chat ``messages`` (it would ignore them too).

``flavour="llama-cpp-python"`` serves what llama-cpp-python's server has instead: only
``/v1/*`` and ``/extras/tokenize[/count]``, FastAPI's 404 elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from aiohttp import web

from tests.fakes.base import (
    Cut,
    Huge,
    InStreamError,
    LoopbackServer,
    Recorded,
    Rejected,
    Text,
    compact,
    data_line,
)

Flavour = Literal["llama-server", "llama-cpp-python"]
AUTH_PROBLEM = "bad or missing key"


def llama_error(code: int, message: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "type": type_, **extra}}


ERROR_404 = llama_error(404, "File Not Found", "not_found_error")
ERROR_LOADING = llama_error(503, "Loading model", "unavailable_error")
ERROR_500 = llama_error(
    500, "failed to decode the batch, n_batch = 2048, ret = -3", "server_error"
)
ERROR_CONTEXT = llama_error(
    400,
    "the request exceeds the available context size, try increasing it",
    "exceed_context_size_error",
    n_prompt_tokens=9120,
    n_ctx=8192,
)
# llama-server has no rate limits or credits; these are what a metering gateway in front says
ERROR_429 = llama_error(429, "Too many requests, slow down", "rate_limit_error")
ERROR_QUOTA = llama_error(402, "Insufficient credits for this key", "insufficient_quota")
ERROR_BOTH_GRAMMARS = llama_error(
    400,
    'Either "json_schema" or "grammar" can be specified, but not both',
    "invalid_request_error",
)


def error_401(key: str) -> dict[str, Any]:
    # the real text is "Invalid API Key"; the key is echoed, as a careless proxy would, so the
    # client's redaction is exercised
    return llama_error(401, f"Invalid API Key: {key}", "authentication_error")


# -- golden transcripts (shared backends reference §8.3); bytes matter ------------------------

GOLDEN_WORD_STOP = (
    b'data: {"content":"Hi","stop":false}\n\n'
    b'data: {"content":"","stop":true,"stop_type":"word","stopping_word":"\\nUser:"}\n\n'
)
GOLDEN_CONTEXT_ERROR = (
    b'data: {"content":"Hi","stop":false}\n\n'
    b'error: {"code":400,"message":"the request exceeds the available context size",'
    b'"type":"exceed_context_size_error"}\n\n'
)

# /completion options llama-server reads (tools/server/README.md); anything else is a typo
COMPLETION_KEYS = frozenset(
    {
        "prompt", "n_predict", "stream", "cache_prompt", "stop", "model", "temperature",
        "dynatemp_range", "dynatemp_exponent", "top_k", "top_p", "min_p", "typical_p",
        "tfs_z", "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty",
        "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
        "dry_sequence_breakers", "xtc_probability", "xtc_threshold", "mirostat",
        "mirostat_tau", "mirostat_eta", "grammar", "json_schema", "seed", "ignore_eos",
        "logit_bias", "n_probs", "min_keep", "samplers", "n_keep", "id_slot",
    }
)  # fmt: skip
PROPS = {
    "default_generation_settings": {"n_ctx": 8192, "params": {"temperature": 0.8}},
    "total_slots": 1,
    "model_path": "/models/aria-8b.Q4_K_M.gguf",
    "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{% endfor %}\u0000",
    "build_info": "b6000-abcdef0",
}
_WORDS = re.compile(r"\s*\S+|\s+")


def fake_tokens(text: str) -> list[int]:
    """One token per word (with its leading space): deterministic, easy to count in tests."""
    return [sum(piece.encode()) % 32000 for piece in _WORDS.findall(text)]


class FakeLlamaCpp(LoopbackServer):
    client_faults = (AUTH_PROBLEM,)

    def __init__(
        self,
        *,
        api_key: str | None = None,
        flavour: Flavour = "llama-server",
        model_id: str = "aria-8b.Q4_K_M.gguf",
        loading: int = 0,
    ) -> None:
        super().__init__("")
        self.api_key = api_key
        self.flavour = flavour
        self.model_id = model_id
        self.loading = loading  # this many requests are answered "Loading model" first

    async def route(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        method, path = request.method, request.path
        if self.flavour == "llama-cpp-python":
            return await self._python_route(request, recorded)
        public = (method, path) in (("GET", "/health"), ("GET", "/v1/models"))
        if not public:
            self._check_auth(recorded.headers)
        if self.loading and path in ("/health", "/completion"):
            self.loading -= 1
            return web.json_response(ERROR_LOADING, status=503)
        if (method, path) == ("GET", "/health"):
            return web.json_response({"status": "ok"})
        if (method, path) == ("GET", "/v1/models"):
            return web.json_response(self._models())
        if (method, path) == ("GET", "/props"):
            return web.json_response(PROPS)
        if (method, path) == ("POST", "/tokenize"):
            content = self._json(recorded).get("content")
            if not isinstance(content, str):
                raise Rejected(400, llama_error(400, '"content" must be provided', "x"), "content")
            return web.json_response({"tokens": fake_tokens(content)})
        if (method, path) == ("POST", "/completion"):
            body = self._completion(recorded)
            return await self.answer(request, self.next_reply(Text()), stream=body["stream"])
        raise Rejected(404, ERROR_404, f"unknown route {method} {path}")

    async def _python_route(self, request: web.Request, recorded: Recorded) -> web.Response:
        """What llama-cpp-python's server answers (no key configured there)."""
        method, path = request.method, request.path
        if (method, path) == ("GET", "/v1/models"):
            return web.json_response(self._models())
        if (method, path) == ("POST", "/extras/tokenize/count"):
            text = self._json(recorded).get("input")
            if not isinstance(text, str):
                raise Rejected(422, {"detail": [{"msg": "Field required"}]}, "input")
            return web.json_response({"count": len(fake_tokens(text))})
        # FastAPI's own 404, recorded but not a client bug: the backend probes for routes
        return web.json_response({"detail": "Not Found"}, status=404)

    def _models(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": self.model_id, "object": "model", "owned_by": "llamacpp"}
        if self.flavour == "llama-server":
            entry["meta"] = {"n_ctx_train": 8192, "n_params": 8030261248}
        return {"object": "list", "data": [entry]}

    def _check_auth(self, headers: Mapping[str, str]) -> None:
        if self.api_key is None:
            return
        got = headers.get("authorization", "")
        if got != f"Bearer {self.api_key}":
            key = got.removeprefix("Bearer ")
            raise Rejected(401, error_401(key), f"{AUTH_PROBLEM}: {key}")

    def _json(self, recorded: Recorded) -> dict[str, Any]:
        if not recorded.headers.get("content-type", "").startswith("application/json"):
            raise Rejected(415, llama_error(415, "need application/json", "x"), "content type")
        if not isinstance(recorded.body, dict):
            raise Rejected(500, llama_error(500, "[json.exception.parse_error]", "x"), "json")
        return recorded.body

    def _completion(self, recorded: Recorded) -> dict[str, Any]:
        body = self._json(recorded)

        def bad(problem: str) -> Rejected:
            return Rejected(400, llama_error(400, problem, "invalid_request_error"), problem)

        if not isinstance(body.get("prompt"), str):
            raise bad('"prompt" must be a string')
        n_predict = body.get("n_predict")
        if not isinstance(n_predict, int) or isinstance(n_predict, bool) or n_predict < 1:
            raise bad(f"n_predict must be a positive integer, got {n_predict!r}")
        if not isinstance(body.get("stream"), bool):
            raise bad('"stream" must be a boolean')
        unknown = sorted(set(body) - COMPLETION_KEYS)
        if unknown:
            raise bad(f"llama-server does not read {', '.join(unknown)}")
        stop = body.get("stop", [])
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise bad('"stop" must be an array of strings')
        if "grammar" in body and "json_schema" in body:
            raise Rejected(400, ERROR_BOTH_GRAMMARS, "both grammar and json_schema")
        bias = body.get("logit_bias")
        if bias is not None and not (
            isinstance(bias, list) and all(isinstance(p, list) and len(p) == 2 for p in bias)
        ):
            raise bad('"logit_bias" must be an array of [token, bias] pairs')
        return body

    # -- rendering -------------------------------------------------------------------------

    def render(self, reply: Text | Cut | InStreamError | Huge) -> list[bytes]:
        if isinstance(reply, Huge):
            piece = data_line({"content": "y" * 4000, "stop": False})
            return [piece] * (reply.size // len(piece) + 1)
        out = [data_line({"content": d, "stop": False}) for d in reply.deltas]
        if isinstance(reply, InStreamError):
            out.append(b"error: " + compact(ERROR_500["error"]) + b"\n\n")
        elif isinstance(reply, Text):
            out.append(data_line(self._final(reply, content="")))
        return out

    def whole(self, reply: Text | Cut | InStreamError | Huge) -> web.Response:
        if isinstance(reply, Huge):
            return web.json_response({"content": "x" * reply.size, "stop": True})
        if isinstance(reply, InStreamError):
            return web.json_response(ERROR_500, status=500)
        if isinstance(reply, Cut):
            return web.Response(body=b'{"content":"Hel', content_type="application/json")
        return web.json_response(self._final(reply, content="".join(reply.deltas)))

    def endless_delta(self, n: int) -> bytes:
        return data_line({"content": f"w{n} ", "stop": False})

    def _final(self, reply: Text, *, content: str) -> dict[str, Any]:
        stop_type = reply.finish or "eos"
        final: dict[str, Any] = {
            "content": content,
            "stop": True,
            "model": self.model_id,
            "stop_type": stop_type,
            "stopping_word": self.last.body.get("stop", [""])[0] if stop_type == "word" else "",
            "truncated": False,
        }
        if reply.usage:
            prompt, completion = reply.usage
            final |= {
                "tokens_evaluated": prompt,
                "tokens_predicted": completion,
                "tokens_cached": 0,
                "timings": {"prompt_n": prompt, "predicted_n": completion, "predicted_ms": 40.0},
            }
        return final
