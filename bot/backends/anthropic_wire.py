"""The Claude Messages wire format: request bodies out, stream events and whole answers in.

Pure functions and data, no I/O: :mod:`bot.backends.anthropic` does the HTTP. Facts come from
the shared backends reference (§4.7, §6 "Claude", §7) and Anthropic's API documentation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from bot.backends.anthropic_models import ClaudeModel, claude_model
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


FIRST_USER = "[Start a new chat]"
"""The user turn put first when the chat starts with the character (as SillyTavern does):
the API wants the first message from the user."""

# core sampler name → Claude's name, and the range Claude accepts (values outside are clamped)
SAMPLERS: Mapping[str, tuple[str, float, float]] = {
    "temperature": ("temperature", 0.0, 1.0),
    "top_p": ("top_p", 0.0, 1.0),
    "top_k": ("top_k", 0.0, float("inf")),
}
# the core's reasoning settings, read from the sampler mapping (not sent under these names)
REASONING_EFFORT = "reasoning_effort"
REASONING_BUDGET = "reasoning_budget"
MIN_BUDGET = 1024  # the API's smallest `budget_tokens`
THINKING_MIN_TOP_P = 0.95
EFFORT_BUDGETS: Mapping[str, int] = {"low": 1024, "medium": 4096, "high": 16384, "max": 32768}

_FINISH = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP_SEQUENCE,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "refusal": FinishReason.FILTERED,
}


def finish_reason(raw: str | None) -> FinishReason:
    """Claude's ``stop_reason`` → ours; ``tool_use``, ``pause_turn`` and new words: a stop."""
    return _FINISH.get(raw or "", FinishReason.STOP)


# -- requests ---------------------------------------------------------------------------------


def build_body(
    preset: ProviderPreset,
    request: GenerationRequest,
    *,
    model: str,
    stream: bool,
    first_user: str = FIRST_USER,
) -> dict[str, Any]:
    """The JSON body of ``POST /messages`` for ``request``."""
    model_id = request.model or model
    caps = claude_model(model_id)
    body: dict[str, Any] = dict(preset.extra_body)
    body["model"] = model_id
    max_tokens = request.max_tokens
    sampler = dict(request.sampler)
    thinking = _thinking(sampler, caps)
    if thinking is not None:
        body["thinking"] = thinking
        if "budget_tokens" in thinking:
            # the budget counts against max_tokens: on top, so the reply keeps its allowance
            max_tokens += thinking["budget_tokens"]
        effort = sampler.get(REASONING_EFFORT)
        if thinking["type"] == "adaptive" and effort:
            if effort not in caps.efforts:
                _log.debug("%s takes no effort %r; high sent", model_id, effort)
                effort = "high"
            body["output_config"] = {"effort": effort}
    body["max_tokens"] = max_tokens
    system, messages = convert_messages(
        request.messages,
        prefill=caps.prefill and thinking is None,
        system_prompt=caps.system_prompt,
        first_user=first_user,
    )
    if system:
        body["system"] = system
    body["messages"] = messages
    stops = _stops(request.stop, preset.max_stop)
    if stops:
        body["stop_sequences"] = stops
    body.update(_samplers(sampler, preset, caps, thinking))
    body["stream"] = stream
    return body


def count_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A ``/messages`` body → the ``/messages/count_tokens`` body (which rejects the rest)."""
    keep = ("model", "system", "messages", "thinking", "tools", "tool_choice")
    return {k: body[k] for k in keep if k in body}


def convert_messages(
    messages: Iterable[PromptMessage],
    *,
    prefill: bool,
    system_prompt: bool = True,
    first_user: str = FIRST_USER,
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(system text blocks, user/assistant turns) as the Messages API wants them.

    Leading system messages become ``system``; later ones (and all of them where the model
    takes no system prompt) become user turns, except SillyTavern's example-dialogue
    messages, which take the role they stand for. Names go in front of the text, runs of
    one role are merged, and the first turn is the user's. A last assistant turn is the
    prefill: trailing whitespace trimmed (the API refuses it), or, where the model takes
    no prefill, handed over as the user's.
    """
    system: list[dict[str, str]] = []
    turns: list[list[str]] = []  # [role, text]
    leading = system_prompt
    for message in messages:
        example = message.role == "system" and message.name in _EXAMPLE_ROLES
        if leading and message.role == "system" and not example:
            if message.content.strip():
                system.append({"type": "text", "text": message.content})
            continue
        leading = False
        role, text = _turn(message)
        if not text.strip():
            continue  # the API refuses empty text blocks
        if turns and turns[-1][0] == role:
            turns[-1][1] += "\n\n" + text
        else:
            turns.append([role, text])
    if not turns or turns[0][0] != "user":
        turns.insert(0, ["user", first_user])
    if turns[-1][0] == "assistant":
        last = turns[-1][1].rstrip()
        if prefill and last:
            turns[-1][1] = last
        else:
            turns.pop()
            if last:
                _log.debug("the model takes no prefill; the last assistant turn goes as user")
                turns[-1][1] += "\n\n" + last
    return system, [{"role": role, "content": text} for role, text in turns]


_EXAMPLE_ROLES = {"example_user": "user", "example_assistant": "assistant"}


def _turn(message: PromptMessage) -> tuple[str, str]:
    if message.role == "system":
        return _EXAMPLE_ROLES.get(message.name, "user"), message.content
    name = message.name
    text = message.content
    if name and not text.startswith(f"{name}:"):
        text = f"{name}: {text}"  # the API has no name field
    return message.role, text


def _stops(stop: Iterable[str], limit: int | None) -> list[str]:
    unique = list(dict.fromkeys(s for s in stop if s))
    kept = [s for s in unique if s.strip()]
    if len(kept) < len(unique):
        # the API refuses them; the engine still cuts the reply at them locally
        _log.debug(
            "Claude takes no whitespace-only stop sequences; %d dropped", len(unique) - len(kept)
        )
    if limit is not None and len(kept) > limit:
        _log.debug("sending %d of %d stop sequences (the provider's limit)", limit, len(kept))
        kept = kept[:limit]
    return kept


def _thinking(sampler: Mapping[str, Any], caps: ClaudeModel) -> dict[str, Any] | None:
    effort = sampler.get(REASONING_EFFORT)
    budget = sampler.get(REASONING_BUDGET)
    if not effort and not budget:
        return None
    if effort in ("none", "off") or caps.thinking == "none":
        if caps.thinking == "none":
            _log.debug("this Claude model does not think; reasoning settings dropped")
        return None
    if caps.thinking == "adaptive":
        return {"type": "adaptive"}
    if not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0:
        budget = EFFORT_BUDGETS.get(str(effort), EFFORT_BUDGETS["medium"])
    return {"type": "enabled", "budget_tokens": max(MIN_BUDGET, budget)}


def _samplers(
    sampler: Mapping[str, Any],
    preset: ProviderPreset,
    caps: ClaudeModel,
    thinking: Mapping[str, Any] | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sampler.items():
        if value is None or key in (REASONING_EFFORT, REASONING_BUDGET):
            continue
        wire = SAMPLERS.get(key)
        if wire is None or key not in preset.samplers:
            _log.debug("Claude does not take sampler %r; dropped", key)
            continue
        name, low, high = wire
        if isinstance(value, int | float) and not low <= value <= high:
            _log.debug("Claude's %s is %s..%s; %s clamped", name, low, high, value)
            value = type(value)(min(high, max(low, value)))
        out[name] = value
    if thinking is not None:
        # thinking takes no temperature or top_k, and top_p only from 0.95 up (Anthropic's
        # extended-thinking rules)
        for name in ("temperature", "top_k", "top_p"):
            value = out.get(name)
            if value is not None and not (name == "top_p" and value >= THINKING_MIN_TOP_P):
                _log.debug("%s dropped: Claude's thinking does not take it", name)
                del out[name]
    if caps.sampling == "none" and out:
        _log.debug("this Claude model takes no sampler settings; %s dropped", sorted(out))
        out.clear()
    elif caps.sampling == "one" and "temperature" in out and out.pop("top_p", None) is not None:
        _log.debug("this Claude model takes temperature or top_p, not both; top_p dropped")
    return out


# -- answers ----------------------------------------------------------------------------------


class ClaudeStream:
    """The typed SSE events of one streamed reply → our events (a ``Decoder``)."""

    def __init__(self, backend: str, error: InStreamError) -> None:
        self.backend = backend
        self.done = False
        self._error = error
        self._stop: str | None = None
        self._prompt: int | None = None
        self._completion: int | None = None

    def feed(self, record: StreamRecord) -> list[StreamEvent]:
        try:
            obj = json.loads(record.data)
            kind = obj.get("type") or record.event
            if kind == "content_block_delta":
                delta = obj["delta"]
                if delta.get("type") == "text_delta" and delta["text"]:
                    return [TextDelta(delta["text"])]
                if delta.get("type") == "thinking_delta" and delta["thinking"]:
                    return [ReasoningDelta(delta["thinking"])]
                return []  # signature_delta, input_json_delta, citations: nothing to show
            if kind == "content_block_start":
                return _block_events(obj["content_block"])
            if kind == "message_start":
                self._usage(obj["message"].get("usage"))
            elif kind == "message_delta":
                self._stop = obj["delta"].get("stop_reason") or self._stop
                self._usage(obj.get("usage"))
            elif kind == "message_stop":
                self.done = True
            elif kind == ERROR_EVENT or record.event == ERROR_EVENT:
                raise self._error(obj)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise protocol_error(
                self.backend, "the server sent a malformed stream event", detail=record.data
            ) from exc
        return []  # ping, content_block_stop and events newer than this code

    def close(self) -> list[StreamEvent] | None:
        if self._stop is None and not self.done:
            return None
        events: list[StreamEvent] = []
        if self._prompt is not None or self._completion is not None:
            events.append(Usage(self._prompt, self._completion))
        events.append(Finish(finish_reason(self._stop), raw=self._stop or ""))
        return events

    def _usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        prompt = prompt_tokens(usage)
        if prompt is not None:
            self._prompt = prompt
        if isinstance(usage.get("output_tokens"), int):
            self._completion = usage["output_tokens"]


def prompt_tokens(usage: Mapping[str, Any]) -> int | None:
    """Every input token, cached or not (``input_tokens`` alone leaves the cache out)."""
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    counts = [usage[k] for k in keys if isinstance(usage.get(k), int)]
    return sum(counts) if counts else None


def _block_events(block: Mapping[str, Any]) -> list[StreamEvent]:
    if block.get("type") == "text" and block.get("text"):
        return [TextDelta(block["text"])]
    if block.get("type") == "thinking" and block.get("thinking"):
        return [ReasoningDelta(block["thinking"])]
    return []


def parse_message(backend: str, raw: bytes, error: InStreamError) -> list[StreamEvent]:
    """A whole (non-streamed) message → the same events a stream would give."""
    payload = decode_json(raw)
    if not isinstance(payload, dict):
        raise unreadable(backend, raw, quote=True)
    if payload.get("type") == "error":
        raise error(payload)
    content = payload.get("content")
    if not isinstance(content, list):
        raise protocol_error(
            backend, "the server sent no message content", detail=raw[:300].decode()
        )
    events: list[StreamEvent] = []
    for block in content:
        if isinstance(block, dict):
            events += _block_events(block)
    usage = payload.get("usage")
    if isinstance(usage, dict):
        completion = usage.get("output_tokens")
        events.append(
            Usage(prompt_tokens(usage), completion if isinstance(completion, int) else None)
        )
    stop = payload.get("stop_reason")
    events.append(Finish(finish_reason(stop), raw=stop if isinstance(stop, str) else ""))
    return events


def parse_models(backend: str, payload: Any) -> tuple[list[ModelInfo], str | None]:
    """One ``GET /models`` page → its models and the id to continue after (or ``None``)."""
    entries = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        raise protocol_error(backend, "the server sent a model list that could not be read")
    models = [
        ModelInfo(e["id"]) for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)
    ]
    more = payload.get("has_more") is True and isinstance(payload.get("last_id"), str)
    return models, payload["last_id"] if more else None


def parse_count(backend: str, payload: Any) -> int:
    count = payload.get("input_tokens") if isinstance(payload, dict) else None
    if not isinstance(count, int):
        raise protocol_error(backend, "the server sent a token count that could not be read")
    return count
