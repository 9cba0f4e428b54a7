"""Ollama's native wire (``/api/chat``, ``/api/generate``): request bodies out; NDJSON lines
and whole answers in; its one error mapping. Pure functions and a decoder, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import httpx

from bot.backends.base import (
    Finish,
    FinishReason,
    GenerationRequest,
    PromptMessage,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    Usage,
)
from bot.backends.errors import Failure, InStreamError, openai_error, protocol_error
from bot.backends.native import record_json, translate_samplers, unique_stops, whole_json
from bot.backends.sse import StreamRecord
from bot.errors import BackendError, BackendNotFound

FAMILY = "Ollama"

# Core sampler name → its key inside Ollama's `options`. DRY, XTC and the rest are not
# Ollama options: they are dropped (see translate_samplers).
OPTIONS: Mapping[str, str] = MappingProxyType(
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
        "seed": "seed",
        "mirostat_mode": "mirostat",
        "mirostat_tau": "mirostat_tau",
        "mirostat_eta": "mirostat_eta",
    }
)
# Core settings that are top-level request keys rather than options.
TOP_LEVEL: Mapping[str, str] = MappingProxyType({"json_schema": "format"})

_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}

KeepAlive = str | int | None
Think = bool | str | None


def request_body(
    request: GenerationRequest,
    *,
    model: str,
    stream: bool,
    num_ctx: int | None,
    keep_alive: KeepAlive = None,
    think: Think = None,
) -> tuple[str, dict[str, Any]]:
    """The path and body: ``/api/chat`` with messages, or ``/api/generate`` with a prompt
    that is already templated (``raw: true`` keeps Ollama's own template out of it)."""
    body: dict[str, Any] = {"model": request.model or model}
    if request.mode == "chat":
        path = "/api/chat"
        body["messages"] = [_message(m) for m in request.messages]
    else:
        path = "/api/generate"
        body["prompt"] = request.prompt
        body["raw"] = True
    body["stream"] = stream
    # num_ctx always: Ollama's default (2048 or 4096) silently truncates long prompts
    options: dict[str, Any] = {"num_predict": request.max_tokens}
    if num_ctx:
        options["num_ctx"] = num_ctx
    stop = unique_stops(request.stop)
    if stop:
        options["stop"] = stop
    wanted = dict(request.sampler)
    top = {k: wanted.pop(k) for k in list(wanted) if k in TOP_LEVEL}
    options.update(translate_samplers(FAMILY, wanted, OPTIONS))
    body["options"] = options
    body.update(translate_samplers(FAMILY, top, TOP_LEVEL))
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    if think is not None:
        body["think"] = think
    return path, body


def _message(message: PromptMessage) -> dict[str, str]:
    # Ollama messages have no `name`: the speaker goes in front of the text
    content = message.content
    if message.name and message.role != "system" and not content.startswith(f"{message.name}:"):
        content = f"{message.name}: {content}"
    return {"role": message.role, "content": content}


def _deltas(chunk: Mapping[str, Any], backend: str) -> list[StreamEvent]:
    """Text and thinking of one chunk: ``message.{content,thinking}`` (chat) or
    ``response``/``thinking`` (generate)."""
    message = chunk.get("message")
    source: Mapping[str, Any] = message if isinstance(message, Mapping) else chunk
    text = source.get("content") if source is message else chunk.get("response")
    thinking = source.get("thinking")
    if (text is not None and not isinstance(text, str)) or (
        thinking is not None and not isinstance(thinking, str)
    ):
        raise protocol_error(backend, "the server sent a malformed stream chunk")
    events: list[StreamEvent] = []
    if thinking:
        events.append(ReasoningDelta(thinking))
    if text:
        events.append(TextDelta(text))
    return events


def _tail(chunk: Mapping[str, Any]) -> list[StreamEvent]:
    """The ``done: true`` object: token counts, then ``done_reason`` (``load``/``unload``
    answer an empty request: kept as the raw word of a plain stop)."""
    events: list[StreamEvent] = []
    prompt, completion = chunk.get("prompt_eval_count"), chunk.get("eval_count")
    if isinstance(prompt, int) or isinstance(completion, int):
        events.append(
            Usage(
                prompt if isinstance(prompt, int) else None,
                completion if isinstance(completion, int) else None,
            )
        )
    raw = chunk.get("done_reason")
    raw = raw if isinstance(raw, str) else ""
    events.append(Finish(_FINISH.get(raw, FinishReason.STOP), raw=raw))
    return events


@dataclass(slots=True)
class OllamaDecoder:
    """One JSON object per line; the last has ``done: true``. A ``{"error": "…"}`` line is
    an error that came after the 200 status (Ollama cannot change it once streaming)."""

    backend: str
    error: InStreamError
    done: bool = False
    _final: Mapping[str, Any] = field(default_factory=dict)

    def feed(self, record: StreamRecord) -> list[StreamEvent]:
        chunk = record_json(self.backend, record)
        if chunk.get("error"):
            raise self.error(chunk)
        events = _deltas(chunk, self.backend)
        if chunk.get("done") is True:
            self.done = True
            self._final = chunk
        return events

    def close(self) -> list[StreamEvent] | None:
        return _tail(self._final) if self.done else None

    def whole(self, raw: bytes) -> list[StreamEvent]:
        answer = whole_json(self.backend, raw)
        if answer.get("error"):
            raise self.error(answer)
        if answer.get("done") is not True:
            raise protocol_error(
                self.backend,
                "the server sent no finished answer",
                detail=raw[:300].decode("utf-8", "replace"),
            )
        return _deltas(answer, self.backend) + _tail(answer)


def ollama_error(
    backend: str,
    failure: Failure,
    *,
    body: bytes = b"",
    secrets: Iterable[str] = (),
    midstream: bool = False,
    model: str = "",
) -> BackendError:
    """The family's one mapping. Ollama's errors are ``{"error": "…"}`` (the OpenAI
    mapping reads that shape); a 404 names the model or a wrong address, and says which."""
    error = openai_error(backend, failure, body=body, secrets=secrets, midstream=midstream)
    if type(error) is BackendNotFound and isinstance(failure, httpx.Response):
        if "model" in error.message.lower():
            error.hint = (
                f"pull it on the Ollama host (`ollama pull {model or '<model>'}`) or pick "
                "one it has (`sillybot models`)"
            )
        else:
            error.hint = "set `base_url` to the Ollama server's root, e.g. http://127.0.0.1:11434"
    return error
