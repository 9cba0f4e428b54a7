"""The OpenAI-compatible wire format: request bodies out; stream chunks and whole answers in.

Pure functions and a decoder, no I/O: :mod:`bot.backends.openai_compat` does the HTTP.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
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
from bot.backends.errors import (
    InStreamError,
    decode_json,
    openai_error,
    protocol_error,
    unreadable,
)
from bot.backends.presets import ProviderPreset
from bot.backends.sse import ERROR_EVENT, StreamRecord
from bot.errors import BackendError

_log = logging.getLogger(__name__)

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")

_FINISH = {
    "stop": FinishReason.STOP,
    "eos": FinishReason.STOP,
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP_SEQUENCE,
    "length": FinishReason.LENGTH,
    "max_tokens": FinishReason.LENGTH,
    "content_filter": FinishReason.FILTERED,
    "refusal": FinishReason.FILTERED,
    "error": FinishReason.ERROR,
}


def finish_reason(raw: str | None) -> FinishReason:
    """The backend's own word → ours; an unknown word (``tool_calls``…) counts as a stop."""
    return _FINISH.get(raw or "", FinishReason.STOP)


def build_request(
    backend: str, preset: ProviderPreset, request: GenerationRequest, *, model: str, stream: bool
) -> tuple[str, dict[str, Any]]:
    """The path and JSON body for ``request``, as this provider wants them."""
    body: dict[str, Any] = dict(preset.extra_body)
    body["model"] = request.model or model
    if request.mode == "chat":
        path = "/chat/completions"
        body["messages"] = [_message(m, preset) for m in request.messages]
        body[preset.max_tokens_key] = request.max_tokens
    else:
        if not preset.text_mode:
            raise BackendError(
                f"{preset.name} has no text completion endpoint",
                backend=backend,
                hint="set `mode: chat` for this backend",
            )
        path = "/completions"
        body["prompt"] = request.prompt
        body["max_tokens"] = request.max_tokens
    body["stream"] = stream
    if stream and preset.include_usage:
        body["stream_options"] = {"include_usage": True}
    stop = _stops(request.stop, preset.max_stop)
    if stop:
        body["stop"] = stop
    body.update(_samplers(request.sampler, preset))
    return path, body


def parse_response(
    backend: str, raw: bytes, *, chat: bool, secrets: tuple[str, ...] = ()
) -> list[StreamEvent]:
    """A non-streaming JSON answer → the same events a stream would give."""
    payload = decode_json(raw)
    if not isinstance(payload, dict):
        raise unreadable(backend, raw)
    if payload.get("error"):
        raise openai_error(backend, payload, secrets=secrets)
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise protocol_error(
            backend, "the server sent no choices", detail=raw[:300].decode("utf-8", "replace")
        )
    choice = choices[0]
    events: list[StreamEvent] = []
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    text = message.get("content") if chat else choice.get("text")
    if text is None:
        text = choice.get("text") or message.get("content")
    raw_reason = choice.get("finish_reason") or ""
    if not isinstance(text, str):
        text, thinking = content_parts(text) if isinstance(text, list) else ("", "")
        reasoning = reasoning or thinking
    if not text and isinstance(message.get("refusal"), str):
        text, raw_reason = message["refusal"], raw_reason or "refusal"
    if isinstance(reasoning, str) and reasoning:
        events.append(ReasoningDelta(reasoning))
    if text:
        events.append(TextDelta(text))
    usage = usage_of(payload.get("usage"))
    if usage is not None:
        events.append(usage)
    if raw_reason == "error":
        raise openai_error(backend, {"error": {"message": "finish_reason error"}}, secrets=secrets)
    events.append(Finish(finish_reason(raw_reason), raw=str(raw_reason)))
    return events


class OpenAIStream:
    """The SSE chunks of one streamed reply → our events (a ``Decoder``). Usage and Finish
    wait for ``[DONE]`` or the end of the bytes (old servers send no sentinel)."""

    def __init__(self, backend: str, error: InStreamError, *, chat: bool) -> None:
        self.backend = backend
        self.chat = chat
        self.done = False
        self._error = error
        self._finish: str | None = None
        self._usage: Usage | None = None

    def feed(self, record: StreamRecord) -> Iterator[StreamEvent]:
        """A generator, so that text before a failure later in the same chunk (a
        ``finish_reason: "error"``, a malformed part) is still delivered."""
        if record.event == ERROR_EVENT:
            raise self._in_stream(record.data)
        data = record.data
        if data == "[DONE]":
            self.done = True
            return
        try:
            obj = json.loads(data)
            if obj.get("error"):
                raise self._in_stream(obj)
            choices = obj.get("choices")
            if choices:
                choice = choices[0]
                if self.chat:
                    delta = choice.get("delta") or choice.get("message") or {}
                    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                    if reasoning and isinstance(reasoning, str):
                        yield ReasoningDelta(reasoning)
                    content = delta.get("content")
                    if content and not isinstance(content, str):
                        content, thinking = content_parts(content)
                        if thinking:
                            yield ReasoningDelta(thinking)
                else:
                    content = choice.get("text")
                if content:
                    yield TextDelta(content)
                reason = choice.get("finish_reason")
                if reason:
                    if reason == "error":
                        raise self._in_stream(obj)
                    self._finish = reason
            if obj.get("usage"):
                self._usage = usage_of(obj["usage"]) or self._usage
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            raise protocol_error(
                self.backend, "the server sent a malformed stream chunk", detail=data
            ) from exc

    def close(self) -> list[StreamEvent] | None:
        if not (self.done or self._finish):
            return None
        events: list[StreamEvent] = [] if self._usage is None else [self._usage]
        events.append(Finish(finish_reason(self._finish), raw=self._finish or ""))
        return events

    def _in_stream(self, error: str | Mapping[str, Any]) -> BackendError:
        if isinstance(error, str):
            decoded = decode_json(error)
            error = decoded if isinstance(decoded, Mapping) else {"error": {"message": error}}
        return self._error(error)


def parse_models(backend: str, raw: bytes) -> list[ModelInfo]:
    """A ``/models`` body: OpenAI's ``{"data": [...]}``, ``{"models": [...]}`` or a bare list."""
    payload = decode_json(raw)
    entries = payload.get("data", payload.get("models")) if isinstance(payload, dict) else payload
    if not isinstance(entries, list):
        raise protocol_error(
            backend,
            "the server sent a model list that could not be read",
            detail=raw[:300].decode("utf-8", "replace"),
        )
    models = []
    for entry in entries:
        if isinstance(entry, str):
            models.append(ModelInfo(entry))
            continue
        if not isinstance(entry, dict):
            continue
        ident = entry.get("id") or entry.get("name") or entry.get("model")
        if not isinstance(ident, str) or not ident:
            continue
        ctx = entry.get("context_length") or entry.get("max_model_len")
        models.append(ModelInfo(ident, ctx if isinstance(ctx, int) else None))
    return models


def auth_headers(preset: ProviderPreset, key: str) -> dict[str, str]:
    if not key or preset.auth == "none":
        return {}
    headers = {}
    if preset.auth in ("bearer", "both"):
        headers["Authorization"] = f"Bearer {key}"
    if preset.auth in ("x-api-key", "both"):
        headers["X-API-Key"] = key
    return headers


def _message(message: PromptMessage, preset: ProviderPreset) -> dict[str, str]:
    out = {"role": message.role, "content": message.content}
    name = message.name
    if not name:
        return out
    if preset.names == "send":
        out["name"] = name
    elif preset.names == "sanitize":
        out["name"] = _NAME_CHARS.sub("_", name)[:64]
    elif message.role != "system" and not message.content.startswith(f"{name}:"):
        out["content"] = f"{name}: {message.content}"
    return out


def _stops(stop: tuple[str, ...], limit: int | None) -> list[str]:
    unique = list(dict.fromkeys(s for s in stop if s))
    if limit is not None and len(unique) > limit:
        _log.debug("sending %d of %d stop strings (the provider's limit)", limit, len(unique))
        unique = unique[:limit]
    return unique


def _samplers(sampler: Mapping[str, Any], preset: ProviderPreset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sampler.items():
        if value is None or (key == "seed" and isinstance(value, int) and value < 0):
            continue  # unset, or a negative seed: "random", which is what omitting means
        if key not in preset.samplers:
            _log.debug("%s does not take sampler %r; dropped", preset.name, key)
            continue
        out[preset.renames.get(key, key)] = value
    return out


def usage_of(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt = value.get("prompt_tokens")
    completion = value.get("completion_tokens")
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    return Usage(
        prompt if isinstance(prompt, int) else None,
        completion if isinstance(completion, int) else None,
    )


def content_parts(content: Any) -> tuple[str, str]:
    """Content given as a list of parts (Mistral's Magistral): (text, thinking)."""
    text: list[str] = []
    thinking: list[str] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "thinking":
            inner = part.get("thinking")
            pieces = inner if isinstance(inner, list) else [{"text": inner}]
            thinking.extend(
                p["text"] for p in pieces if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
        elif isinstance(part.get("text"), str):
            text.append(part["text"])
    return "".join(text), "".join(thinking)
