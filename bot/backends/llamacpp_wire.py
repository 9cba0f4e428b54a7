"""llama.cpp's native wire (llama-server ``POST /completion``): the request body out; stream
chunks, whole answers, ``/props`` and token counts in; its one error mapping.

Pure functions and a decoder, no I/O: :mod:`bot.backends.llamacpp` does the HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import httpx

from bot.backends.base import (
    Finish,
    FinishReason,
    GenerationRequest,
    StreamEvent,
    TextDelta,
    Usage,
)
from bot.backends.errors import Failure, InStreamError, decode_json, openai_error, protocol_error
from bot.backends.native import record_json, translate_samplers, unique_stops, whole_json
from bot.backends.sse import ERROR_EVENT, StreamRecord
from bot.errors import BackendError, BackendNotFound, BackendUnavailable

_log = logging.getLogger(__name__)

FAMILY = "llama.cpp"

# Core sampler name (bot.config.Sampler) → the name `/completion` reads. A core setting
# missing here is not sent (translate_samplers): top_a, the rep-pen slope, smoothing,
# banned strings, KoboldCpp's numeric sampler_order (llama.cpp's `samplers` list would
# switch off every sampler it does not name). `tfs_z` is ignored by current llama.cpp.
# dynatemp_low/high become temperature ± dynatemp_range in completion_body.
SAMPLERS: Mapping[str, str] = MappingProxyType(
    {
        "temperature": "temperature",
        "top_k": "top_k",
        "top_p": "top_p",
        "min_p": "min_p",
        "typical_p": "typical_p",
        "tfs": "tfs_z",
        "repetition_penalty": "repeat_penalty",
        "repetition_penalty_range": "repeat_last_n",
        "presence_penalty": "presence_penalty",
        "frequency_penalty": "frequency_penalty",
        "mirostat_mode": "mirostat",
        "mirostat_tau": "mirostat_tau",
        "mirostat_eta": "mirostat_eta",
        "dry_multiplier": "dry_multiplier",
        "dry_base": "dry_base",
        "dry_allowed_length": "dry_allowed_length",
        "dry_penalty_last_n": "dry_penalty_last_n",
        "dry_sequence_breakers": "dry_sequence_breakers",
        "xtc_probability": "xtc_probability",
        "xtc_threshold": "xtc_threshold",
        "dynatemp_exponent": "dynatemp_exponent",
        "seed": "seed",
        "grammar": "grammar",
        "json_schema": "json_schema",
        "logit_bias": "logit_bias",
        "ban_eos_token": "ignore_eos",
    }
)
_DYNATEMP = ("dynatemp_low", "dynatemp_high")

_FINISH = {
    "eos": FinishReason.STOP,
    "word": FinishReason.STOP_SEQUENCE,
    "limit": FinishReason.LENGTH,
    "none": FinishReason.STOP,
}

LOADING_HINT = "llama-server is still loading the model; try again when it is ready"
NATIVE_404_HINT = (
    "set `base_url` to the server's root (without /v1); a server without llama.cpp's native "
    "API (llama-cpp-python's, for one) needs `provider: llamacpp` instead"
)


def completion_body(request: GenerationRequest, *, model: str, stream: bool) -> dict[str, Any]:
    """The ``/completion`` body: an already-templated prompt and native sampler names."""
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "n_predict": request.max_tokens,
        "stream": stream,
        # keep the KV cache of the shared prefix: a chat's prompt grows at the end
        "cache_prompt": True,
    }
    if request.model or model:
        body["model"] = request.model or model  # only router-mode servers read it
    stop = unique_stops(request.stop)
    if stop:
        body["stop"] = stop
    wanted = dict(request.sampler)
    low, high = (wanted.pop(k, None) for k in _DYNATEMP)
    body.update(translate_samplers(FAMILY, wanted, SAMPLERS))
    if isinstance(low, int | float) and isinstance(high, int | float) and high >= low:
        # llama.cpp's dynamic temperature is a centre and a half-width
        body["temperature"] = (low + high) / 2
        body["dynatemp_range"] = (high - low) / 2
    if "grammar" in body and "json_schema" in body:
        # llama-server answers 400 to both; the schema is the more specific wish
        _log.debug("llama.cpp takes grammar or json_schema, not both; grammar dropped")
        del body["grammar"]
    bias = body.get("logit_bias")
    if isinstance(bias, Mapping):
        body["logit_bias"] = _bias_pairs(bias)
    return body


def _bias_pairs(bias: Mapping[Any, Any]) -> list[list[Any]]:
    """``{"token id": bias}`` → llama.cpp's ``[[id, bias]]`` (a key that is not a number is
    sent as text, which llama.cpp biases token by token)."""
    pairs: list[list[Any]] = []
    for key, value in bias.items():
        token: Any = int(key) if isinstance(key, str) and key.lstrip("-").isdigit() else key
        pairs.append([token, value])
    return pairs


def finish_of(chunk: Mapping[str, Any]) -> Finish:
    """The final chunk's ``stop_type`` (older builds: ``stopped_eos``/``_word``/``_limit``)."""
    raw = chunk.get("stop_type")
    if not isinstance(raw, str):
        raw = next(
            (k for k in ("eos", "word", "limit") if chunk.get(f"stopped_{k}") is True), "eos"
        )
    return Finish(_FINISH.get(raw, FinishReason.STOP), raw=raw)


def usage_of(chunk: Mapping[str, Any]) -> Usage | None:
    prompt = chunk.get("tokens_evaluated")
    completion = chunk.get("tokens_predicted")
    timings = chunk.get("timings")
    if isinstance(timings, Mapping):
        # timings count only what was computed now (a cached prefix is not in prompt_n)
        prompt = prompt if isinstance(prompt, int) else timings.get("prompt_n")
        completion = completion if isinstance(completion, int) else timings.get("predicted_n")
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    return Usage(
        prompt if isinstance(prompt, int) else None,
        completion if isinstance(completion, int) else None,
    )


def _tail(chunk: Mapping[str, Any]) -> list[StreamEvent]:
    usage = usage_of(chunk)
    return [usage, finish_of(chunk)] if usage is not None else [finish_of(chunk)]


@dataclass(slots=True)
class CompletionDecoder:
    """``data: {"content", "stop": false}`` per token; the chunk with ``stop: true`` carries
    ``stop_type``, ``stopping_word``, the token counts and timings. No ``[DONE]``. Errors come
    as llama.cpp's own ``error: {...}`` SSE line (or ``data: {"error": ...}``)."""

    backend: str
    error: InStreamError
    done: bool = False
    _final: Mapping[str, Any] = field(default_factory=dict)

    def feed(self, record: StreamRecord) -> list[StreamEvent]:
        if record.event == ERROR_EVENT:
            payload = decode_json(record.data)
            raise self.error(payload if isinstance(payload, Mapping) else {"message": record.data})
        chunk = record_json(self.backend, record)
        if chunk.get("error"):
            raise self.error(chunk)
        content = chunk.get("content", "")
        if not isinstance(content, str):
            raise protocol_error(self.backend, "the server sent a malformed stream chunk")
        if chunk.get("stop") is True:
            self.done = True
            self._final = chunk
        return [TextDelta(content)] if content else []

    def close(self) -> list[StreamEvent] | None:
        return _tail(self._final) if self.done else None

    def whole(self, raw: bytes) -> list[StreamEvent]:
        answer = whole_json(self.backend, raw)
        if answer.get("error"):
            raise self.error(answer)
        content = answer.get("content")
        if not isinstance(content, str):
            raise protocol_error(
                self.backend,
                "the server sent no completion",
                detail=raw[:300].decode("utf-8", "replace"),
            )
        return ([TextDelta(content)] if content else []) + _tail(answer)


@dataclass(frozen=True, slots=True)
class ServerProps:
    """What ``GET /props`` says about the loaded model, for the prompt engine."""

    chat_template: str
    n_ctx: int | None
    model_path: str
    raw: Mapping[str, Any]


def parse_props(backend: str, payload: Any) -> ServerProps:
    if not isinstance(payload, Mapping):
        raise protocol_error(backend, "the server sent /props that could not be read")
    template = payload.get("chat_template")
    # SillyTavern strips the NUL some builds leave at the end of the template
    template = template.rstrip("\x00") if isinstance(template, str) else ""
    settings = payload.get("default_generation_settings")
    n_ctx = settings.get("n_ctx") if isinstance(settings, Mapping) else None
    if not isinstance(n_ctx, int):
        n_ctx = payload.get("n_ctx")
    path = payload.get("model_path")
    return ServerProps(
        chat_template=template,
        n_ctx=n_ctx if isinstance(n_ctx, int) else None,
        model_path=path if isinstance(path, str) else "",
        raw=MappingProxyType(dict(payload)),
    )


def token_count(backend: str, payload: Any) -> int:
    """``/tokenize`` → ``{"tokens": [...]}``; llama-cpp-python's count → ``{"count": n}``."""
    if isinstance(payload, Mapping):
        tokens = payload.get("tokens")
        if isinstance(tokens, list):
            return len(tokens)
        count = payload.get("count")
        if isinstance(count, int):
            return count
    raise protocol_error(backend, "the server sent a token count that could not be read")


def llamacpp_error(
    backend: str,
    failure: Failure,
    *,
    body: bytes = b"",
    secrets: Iterable[str] = (),
    midstream: bool = False,
) -> BackendError:
    """The family's one mapping. llama-server words errors like OpenAI
    (``{"error": {"code", "message", "type"}}``), so the OpenAI mapping does the
    classifying; two cases get llama.cpp's own explanation."""
    error = openai_error(backend, failure, body=body, secrets=secrets, midstream=midstream)
    words = f"{error.message} {error.detail}".lower()
    if isinstance(error, BackendUnavailable) and "loading model" in words:
        return BackendUnavailable(
            "the model is still loading", backend=backend, detail=error.detail, hint=LOADING_HINT
        )
    if type(error) is BackendNotFound and isinstance(failure, httpx.Response):
        error.hint = NATIVE_404_HINT
    return error
