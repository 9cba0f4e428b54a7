"""The Kobold wire (KoboldCpp's native API and KoboldAI Classic): the generate body out; stream
records, whole answers and ``/api/extra/perf`` in; the family's one error mapping.

Pure functions and a decoder, no I/O: :mod:`bot.backends.kobold` does the HTTP. AI Horde
sends the same body as its ``params`` (:mod:`bot.backends.horde_wire`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
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
from bot.backends.errors import (
    Failure,
    InStreamError,
    attributed,
    classify,
    protocol_error,
    transport_error,
    what_it_said,
)
from bot.backends.native import record_json, translate_samplers, unique_stops, whole_json
from bot.backends.presets import ProviderPreset
from bot.backends.sse import StreamRecord
from bot.errors import BackendError

FAMILY = "kobold"

# Core sampler name → the Kobold API's name. A preset row's `samplers` says which of these a
# server takes (KoboldAI Classic 422s on the rest); anything else is dropped with a debug log.
SAMPLERS: Mapping[str, str] = MappingProxyType(
    {
        "temperature": "temperature",
        "top_p": "top_p",
        "top_k": "top_k",
        "top_a": "top_a",
        "min_p": "min_p",
        "typical_p": "typical",
        "tfs": "tfs",
        "repetition_penalty": "rep_pen",
        "repetition_penalty_range": "rep_pen_range",
        "repetition_penalty_slope": "rep_pen_slope",
        "sampler_order": "sampler_order",
        "smoothing_factor": "smoothing_factor",
        "dynatemp_range": "dynatemp_range",  # from dynatemp_low/high, see dynamic_temperature
        "dynatemp_exponent": "dynatemp_exponent",
        "ban_eos_token": "use_default_badwordsids",
        "seed": "sampler_seed",
        "mirostat_mode": "mirostat",
        "mirostat_tau": "mirostat_tau",
        "mirostat_eta": "mirostat_eta",
        "dry_multiplier": "dry_multiplier",
        "dry_base": "dry_base",
        "dry_allowed_length": "dry_allowed_length",
        "dry_penalty_last_n": "dry_penalty_last_n",
        "dry_sequence_breakers": "dry_sequence_breakers",
        "xtc_threshold": "xtc_threshold",
        "xtc_probability": "xtc_probability",
        "logit_bias": "logit_bias",
        "grammar": "grammar",
        # KoboldCpp's `banned_tokens` holds strings (banned phrases), not token ids
        "banned_strings": "banned_tokens",
    }
)

_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "": FinishReason.STOP}
# /api/extra/perf `stop_reason`: 0 out of tokens, 1 end of text, 2 a stop string
_STOP_STRING = 2

CHAT_HINT = (
    "the Kobold API completes a templated prompt: set `mode: text`, or use "
    "`provider: koboldcpp` for KoboldCpp's OpenAI-compatible chat endpoint"
)
BUSY_HINT = (
    "KoboldCpp is busy with another generation (it serves one at a time unless started "
    "with --multiuser); wait for it to finish"
)
PASSWORD_HINT = "KoboldCpp was started with --password: set `api_key_env` to a variable holding it"
NOT_FOUND_HINT = (
    "set `base_url` to the server's root (e.g. http://127.0.0.1:5001); KoboldAI Classic has "
    "no /api/extra routes, so use `provider: koboldai-classic` for it"
)
FAILED_HINT = "KoboldCpp stopped with an error while writing (its console says why); try again"


def sampler_names(preset: ProviderPreset) -> dict[str, str]:
    """The part of :data:`SAMPLERS` this provider takes (``dynatemp_range`` is derived from
    the core's ``dynatemp_low``/``dynatemp_high``, so it comes with them)."""
    accepted = set(preset.samplers)
    if "dynatemp_low" in accepted:
        accepted.add("dynatemp_range")
    return {core: wire for core, wire in SAMPLERS.items() if core in accepted}


def generate_params(
    request: GenerationRequest,
    preset: ProviderPreset,
    *,
    context_size: int,
    names: Mapping[str, str],
    family: str = FAMILY,
) -> dict[str, Any]:
    """The Kobold generation settings (everything but the prompt), as ``preset`` wants them."""
    params: dict[str, Any] = dict(preset.extra_body)
    params["max_context_length"] = context_size
    params["max_length"] = request.max_tokens
    stops = unique_stops(request.stop)
    if preset.max_stop is not None:
        stops = stops[: preset.max_stop]
    if stops:
        params["stop_sequence"] = stops
    sampler = request.sampler
    if "dynatemp_range" in names:
        sampler = dynamic_temperature(sampler)
    params.update(translate_samplers(family, sampler, names))
    return params


def dynamic_temperature(sampler: Mapping[str, Any]) -> Mapping[str, Any]:
    """The core's ``dynatemp_low``/``dynatemp_high`` as Kobold's centre and spread: the
    temperature midway, ``dynatemp_range`` half the span (what SillyTavern sends)."""
    low, high = sampler.get("dynatemp_low"), sampler.get("dynatemp_high")
    if low is None or high is None:
        return sampler
    out = {k: v for k, v in sampler.items() if k not in ("dynatemp_low", "dynatemp_high")}
    out["temperature"] = (low + high) / 2
    out["dynatemp_range"] = abs(high - low) / 2
    return out


def generate_body(
    request: GenerationRequest,
    preset: ProviderPreset,
    *,
    context_size: int,
    names: Mapping[str, str],
    key: Mapping[str, str],
) -> dict[str, Any]:
    """``POST /api/v1/generate`` (and ``/api/extra/generate/stream``): the prompt, the
    settings and, for KoboldCpp, the ``genkey`` its abort names."""
    body = {"prompt": request.prompt}
    body.update(generate_params(request, preset, context_size=context_size, names=names))
    body.update(key)
    return body


def finish_reason(raw: str) -> FinishReason:
    return _FINISH.get(raw, FinishReason.STOP)


class GenerateDecoder:
    """One reply: ``event: message`` records ``{"token", "finish_reason"}`` (the last one
    names the reason; there is no ``[DONE]``), or one ``{"results": [{"text", …}]}``."""

    def __init__(self, backend: str, error: InStreamError) -> None:
        self.done = False
        self._backend = backend
        self._error = error
        self._raw = ""

    def feed(self, record: StreamRecord) -> list[StreamEvent]:
        payload = record_json(self._backend, record)
        token = payload.get("token")
        reason = payload.get("finish_reason")
        if reason == "error":
            raise self._error(payload)
        if isinstance(reason, str) and reason:
            self.done = True
            self._raw = reason
        return [TextDelta(token)] if isinstance(token, str) and token else []

    def close(self) -> list[StreamEvent] | None:
        return [Finish(finish_reason(self._raw), raw=self._raw)] if self.done else None

    def whole(self, raw: bytes) -> list[StreamEvent]:
        payload = whole_json(self._backend, raw)
        results = payload.get("results")
        result = results[0] if isinstance(results, list) and results else None
        if not isinstance(result, dict) or not isinstance(result.get("text"), str):
            raise protocol_error(
                self._backend,
                "the server sent no results",
                detail=raw[:300].decode("utf-8", "replace"),
            )
        reason = result.get("finish_reason")
        reason = reason if isinstance(reason, str) else ""
        if reason == "error":
            raise self._error(result)
        events: list[StreamEvent] = [TextDelta(result["text"])] if result["text"] else []
        prompt, completion = result.get("prompt_tokens"), result.get("completion_tokens")
        if isinstance(prompt, int) and isinstance(completion, int):
            events.append(Usage(prompt, completion))
        events.append(Finish(finish_reason(reason), raw=reason))
        return events


def settle(finish: Finish, usage_seen: bool, perf: Any) -> list[StreamEvent]:
    """The usage and the true stop reason from ``GET /api/extra/perf`` just after a reply.

    KoboldCpp reports a stop-string stop as ``length`` (its stream only knows "end of text
    or not"); perf's ``stop_reason`` tells them apart. The raw word is kept as sent.
    """
    if not isinstance(perf, Mapping):
        return [finish]
    events: list[StreamEvent] = []
    prompt, completion = perf.get("last_input_count"), perf.get("last_token_count")
    if not usage_seen and isinstance(prompt, int) and isinstance(completion, int):
        events.append(Usage(prompt, completion))
    if perf.get("stop_reason") == _STOP_STRING and finish.reason in (
        FinishReason.STOP,
        FinishReason.LENGTH,
    ):
        finish = Finish(FinishReason.STOP_SEQUENCE, raw=finish.raw)
    events.append(finish)
    return events


def kobold_error(
    backend: str,
    failure: Failure,
    *,
    body: bytes = b"",
    secrets: Iterable[str] = (),
    midstream: bool = False,
    now: Callable[[], float] = time.time,
) -> BackendError:
    """The Kobold family's one mapping: a non-2xx response (its ``body`` read, capped), a
    transport failure, or a reply that ended with ``finish_reason: "error"``.

    KoboldCpp words its errors as FastAPI does, ``{"detail": {"msg", "type"}}``: 503
    ``service_unavailable`` while busy, 401 ``unauthorized`` without its password.
    """
    if isinstance(failure, httpx.HTTPError):
        return attributed(transport_error(backend, failure, midstream=midstream), backend, secrets)
    if isinstance(failure, httpx.Response):
        payload, said = what_it_said(failure, body)
        status = failure.status_code
        error = classify(backend, status, said, _detail_type(payload), failure.headers, now=now)
        if status == 503 and "busy" in said.lower():
            error.hint = BUSY_HINT
        elif status == 401:
            error.hint = PASSWORD_HINT
        elif status == 404:
            error.hint = NOT_FOUND_HINT
        return attributed(error, backend, secrets)
    error = BackendError(
        "the server stopped the reply with an error", backend=backend, hint=FAILED_HINT
    )
    return attributed(error, backend, secrets)


def _detail_type(payload: Any) -> str:
    detail = payload.get("detail") if isinstance(payload, Mapping) else None
    return str(detail.get("type", "")).lower() if isinstance(detail, Mapping) else ""
