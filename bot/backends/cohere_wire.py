"""The Cohere Chat v2 wire format: request bodies out, stream events and whole answers in.

Pure functions and data, no I/O: :mod:`bot.backends.cohere` does the HTTP. Facts come from
the shared backends reference (§4.9, §5, §6 "Cohere", §7) and Cohere's API documentation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.backends.base import (
    Finish,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    PromptMessage,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    Usage,
)
from bot.backends.errors import InStreamError, decode_json, protocol_error, unreadable
from bot.backends.presets import ProviderPreset
from bot.backends.sse import ERROR_EVENT, StreamRecord

_log = logging.getLogger(__name__)


# core sampler name → Cohere's name and the range it accepts (values outside are clamped,
# as SillyTavern does: p 0.01–0.99, the penalties 0–1, k 0–500)
SAMPLERS: Mapping[str, tuple[str, float, float]] = {
    "temperature": ("temperature", 0.0, float("inf")),
    "top_p": ("p", 0.01, 0.99),
    "top_k": ("k", 0.0, 500.0),
    "frequency_penalty": ("frequency_penalty", 0.0, 1.0),
    "presence_penalty": ("presence_penalty", 0.0, 1.0),
    "seed": ("seed", 0.0, float("inf")),
}
REASONING_BUDGET = "reasoning_budget"  # the core's setting, read from the sampler mapping
REASONING_EFFORT = "reasoning_effort"
SAFETY_MODE = "safety_mode"  # a preset's `extra_body` may ask for one; models decide
ALL_SAFETY = frozenset({"CONTEXTUAL", "STRICT", "OFF"})


@dataclass(frozen=True, slots=True)
class CohereModel:
    """What one Cohere model line accepts: the ``safety_mode`` values and thinking."""

    prefix: str
    safety_modes: frozenset[str] = frozenset()
    thinking: bool = False


# Most specific first. Only the 08-2024 Command R models take safety_mode OFF; newer ones
# take CONTEXTUAL and STRICT; older ones refuse the field.
COHERE_MODELS: tuple[CohereModel, ...] = (
    CohereModel("command-a-reasoning", ALL_SAFETY - {"OFF"}, thinking=True),
    CohereModel("command-a", ALL_SAFETY - {"OFF"}),
    CohereModel("command-r7b", ALL_SAFETY - {"OFF"}),
    CohereModel("command-r-plus-08-2024", ALL_SAFETY),
    CohereModel("command-r-08-2024", ALL_SAFETY),
)
OTHER_MODEL = CohereModel("")


def cohere_model(model: str, table: Iterable[CohereModel] = COHERE_MODELS) -> CohereModel:
    return next((row for row in table if model.startswith(row.prefix)), OTHER_MODEL)


_FINISH = {
    "COMPLETE": FinishReason.STOP,
    "STOP_SEQUENCE": FinishReason.STOP_SEQUENCE,
    "MAX_TOKENS": FinishReason.LENGTH,
    "TOOL_CALL": FinishReason.STOP,
}
_FAILED = ("ERROR", "TIMEOUT")


def finish_reason(raw: str | None) -> FinishReason:
    return _FINISH.get((raw or "").upper(), FinishReason.STOP)


# -- requests ---------------------------------------------------------------------------------


def build_body(
    preset: ProviderPreset, request: GenerationRequest, *, model: str, stream: bool
) -> dict[str, Any]:
    """The JSON body of ``POST /v2/chat`` for ``request``."""
    model_id = request.model or model
    caps = cohere_model(model_id)
    body: dict[str, Any] = dict(preset.extra_body)
    body["model"] = model_id
    body["messages"] = convert_messages(request.messages)
    body["max_tokens"] = request.max_tokens
    body["stream"] = stream
    safety = body.pop(SAFETY_MODE, None)
    if safety is not None:
        if safety in caps.safety_modes:
            body[SAFETY_MODE] = safety
        else:
            _log.debug("%s does not take safety_mode %r; not sent", model_id, safety)
    stops = list(dict.fromkeys(s for s in request.stop if s))
    if preset.max_stop is not None and len(stops) > preset.max_stop:
        _log.debug("sending %d of %d stop sequences (Cohere's limit)", preset.max_stop, len(stops))
        stops = stops[: preset.max_stop]
    if stops:
        body["stop_sequences"] = stops
    sampler = request.sampler
    budget = sampler.get(REASONING_BUDGET)
    if budget is not None or sampler.get(REASONING_EFFORT):
        if not caps.thinking:
            _log.debug("%s does not think; reasoning settings dropped", model_id)
        elif budget == 0 or sampler.get(REASONING_EFFORT) in ("none", "off"):
            body["thinking"] = {"type": "disabled"}
        else:
            body["thinking"] = {"type": "enabled"}
            if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
                body["thinking"]["token_budget"] = budget
    body.update(_samplers(sampler, preset))
    return body


def convert_messages(messages: Iterable[PromptMessage]) -> list[dict[str, str]]:
    """Messages as Cohere takes them: no name field (names go in front of the text),
    SillyTavern's example-dialogue messages in the role they stand for, no empty ones."""
    out: list[dict[str, str]] = []
    for message in messages:
        role: str = message.role
        text = message.content
        if role == "system" and message.name in _EXAMPLE_ROLES:
            role = _EXAMPLE_ROLES[message.name]
        elif message.name and role != "system" and not text.startswith(f"{message.name}:"):
            text = f"{message.name}: {text}"
        if text.strip():
            out.append({"role": role, "content": text})
    return out


_EXAMPLE_ROLES = {"example_user": "user", "example_assistant": "assistant"}


def _samplers(sampler: Mapping[str, Any], preset: ProviderPreset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sampler.items():
        if value is None or key in (REASONING_BUDGET, REASONING_EFFORT):
            continue
        if key == "seed" and isinstance(value, int) and value < 0:
            continue  # a negative seed means "random", which is what omitting means
        wire = SAMPLERS.get(key)
        if wire is None or key not in preset.samplers:
            _log.debug("Cohere does not take sampler %r; dropped", key)
            continue
        name, low, high = wire
        if isinstance(value, int | float) and not low <= value <= high:
            _log.debug("Cohere's %s is %s..%s; %s clamped", name, low, high, value)
            value = type(value)(min(high, max(low, value)))
        out[name] = value
    return out


# -- answers ----------------------------------------------------------------------------------


class CohereStream:
    """The typed SSE events of one streamed reply → our events (a ``Decoder``)."""

    def __init__(self, backend: str, error: InStreamError) -> None:
        self.backend = backend
        self.done = False
        self._error = error
        self._finish: str | None = None
        self._usage: Usage | None = None

    def feed(self, record: StreamRecord) -> list[StreamEvent]:
        try:
            obj = json.loads(record.data)
            kind = obj.get("type") or record.event
            if kind == "content-delta":
                return _content_events(obj["delta"]["message"]["content"])
            if kind == "message-end":
                delta = obj.get("delta") or {}
                reason = str(delta.get("finish_reason") or "")
                if delta.get("error") or reason.upper() in _FAILED:
                    said = delta.get("error") or f"the model stopped with {reason}"
                    raise self._error({"message": said})
                self._finish = reason
                self._usage = usage_of(delta.get("usage"))
                self.done = True
            elif kind == ERROR_EVENT or record.event == ERROR_EVENT:
                raise self._error(obj)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise protocol_error(
                self.backend, "the server sent a malformed stream event", detail=record.data
            ) from exc
        return []  # message-start, content-start/end, tool and citation events, debug

    def close(self) -> list[StreamEvent] | None:
        if not self.done:
            return None
        events: list[StreamEvent] = [] if self._usage is None else [self._usage]
        events.append(Finish(finish_reason(self._finish), raw=self._finish or ""))
        return events


def _content_events(content: Any) -> list[StreamEvent]:
    """One content part (a stream delta or an answer's block): text or thinking."""
    if not isinstance(content, dict):
        return []
    events: list[StreamEvent] = []
    if isinstance(content.get("thinking"), str) and content["thinking"]:
        events.append(ReasoningDelta(content["thinking"]))
    if isinstance(content.get("text"), str) and content["text"]:
        events.append(TextDelta(content["text"]))
    return events


def usage_of(usage: Any) -> Usage | None:
    """``tokens`` (what the model read and wrote) or else ``billed_units``."""
    if not isinstance(usage, dict):
        return None
    for part in ("tokens", "billed_units"):
        counts = usage.get(part)
        if not isinstance(counts, dict):
            continue
        prompt, completion = counts.get("input_tokens"), counts.get("output_tokens")
        if isinstance(prompt, int | float) or isinstance(completion, int | float):
            return Usage(
                int(prompt) if isinstance(prompt, int | float) else None,
                int(completion) if isinstance(completion, int | float) else None,
            )
    return None


def parse_response(backend: str, raw: bytes, error: InStreamError) -> list[StreamEvent]:
    """A whole (non-streamed) answer → the same events a stream would give."""
    payload = decode_json(raw)
    if not isinstance(payload, dict):
        raise unreadable(backend, raw, quote=True)
    message = payload.get("message")
    reason = str(payload.get("finish_reason") or "")
    if reason.upper() in _FAILED or not isinstance(message, dict):
        if "message" in payload and isinstance(payload["message"], str):
            raise error(payload)  # an error envelope under a 2xx status
        if reason:
            raise error({"message": f"the model stopped with {reason}"})
        raise protocol_error(backend, "the server sent no message", detail=raw[:300].decode())
    events: list[StreamEvent] = []
    for part in message.get("content") or ():
        events += _content_events(part)
    usage = usage_of(payload.get("usage"))
    if usage is not None:
        events.append(usage)
    events.append(Finish(finish_reason(reason), raw=reason))
    return events


def parse_models(backend: str, payload: Any) -> tuple[list[ModelInfo], str | None]:
    """One ``GET /v1/models`` page → its chat models and the next page's token (or None)."""
    entries = payload.get("models") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        raise protocol_error(backend, "the server sent a model list that could not be read")
    models = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        endpoints = entry.get("endpoints")
        if isinstance(endpoints, list) and "chat" not in endpoints:
            continue  # embed and rerank models cannot chat
        ctx = entry.get("context_length")
        models.append(ModelInfo(entry["name"], int(ctx) if isinstance(ctx, int | float) else None))
    token = payload.get("next_page_token")
    return models, token if isinstance(token, str) and token else None


def parse_tokens(backend: str, payload: Any) -> int:
    tokens = payload.get("tokens") if isinstance(payload, dict) else None
    if not isinstance(tokens, list):
        raise protocol_error(backend, "the server sent a token list that could not be read")
    return len(tokens)
