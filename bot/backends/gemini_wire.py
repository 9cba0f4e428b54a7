"""The Gemini wire format (Google AI Studio and Vertex AI): bodies out, responses in.

Pure functions, no I/O: :mod:`bot.backends.gemini` does the HTTP and the streaming. Every
streamed SSE event and every non-streamed answer is one ``GenerateContentResponse``; a
:class:`Reply` folds them into the same events either way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
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
from bot.backends.errors import decode_json, protocol_error
from bot.backends.gemini_errors import filtered_error, gemini_error
from bot.config import GeminiOptions

_log = logging.getLogger(__name__)

SAMPLERS: Mapping[str, str] = MappingProxyType(
    {
        # core sampler name → `generationConfig` key; anything else is dropped (debug log)
        "temperature": "temperature",
        "top_p": "topP",
        "top_k": "topK",
        "seed": "seed",
        "presence_penalty": "presencePenalty",
        "frequency_penalty": "frequencyPenalty",
    }
)
MAX_STOP = 5
MAX_STOP_CHARS = 16

SAFETY_CATEGORIES = (
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
)
VERTEX_SAFETY_CATEGORIES = (
    *SAFETY_CATEGORIES,
    "HARM_CATEGORY_IMAGE_HATE",
    "HARM_CATEGORY_IMAGE_DANGEROUS_CONTENT",
    "HARM_CATEGORY_IMAGE_HARASSMENT",
    "HARM_CATEGORY_IMAGE_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_JAILBREAK",
)

_FINISH = {
    "STOP": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    "SAFETY": FinishReason.FILTERED,
    "RECITATION": FinishReason.FILTERED,
    "BLOCKLIST": FinishReason.FILTERED,
    "PROHIBITED_CONTENT": FinishReason.FILTERED,
    "SPII": FinishReason.FILTERED,
    "IMAGE_SAFETY": FinishReason.FILTERED,
    "LANGUAGE": FinishReason.FILTERED,  # an unsupported language: refused, not finished
    "MALFORMED_FUNCTION_CALL": FinishReason.ERROR,
}


def finish_reason(raw: str) -> FinishReason:
    """Gemini's word → ours; unknown words (``OTHER``, ``FINISH_REASON_UNSPECIFIED``) stop."""
    return _FINISH.get(raw, FinishReason.STOP)


# -- requests --------------------------------------------------------------------------------


def build_body(
    request: GenerationRequest,
    options: GeminiOptions,
    *,
    samplers: frozenset[str],
    max_stop: int | None = MAX_STOP,
    safety_categories: tuple[str, ...] = SAFETY_CATEGORIES,
) -> dict[str, Any]:
    """The ``generateContent`` body. ``samplers``: the core keys this provider accepts;
    ``max_stop``: its stop-string limit (the preset's)."""
    system, contents = to_contents(request.messages, system_instruction=options.system_instruction)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    config: dict[str, Any] = {"candidateCount": 1, "maxOutputTokens": request.max_tokens}
    config.update(generation_samplers(request.sampler, samplers))
    stops = stop_sequences(request.stop, MAX_STOP if max_stop is None else max_stop)
    if stops:
        config["stopSequences"] = stops
    if options.thinking_budget is not None or options.include_thoughts:
        thinking: dict[str, Any] = {}
        if options.thinking_budget is not None:
            thinking["thinkingBudget"] = options.thinking_budget
        # Vertex refuses includeThoughts with a zero budget: there is nothing to include
        if options.include_thoughts and options.thinking_budget != 0:
            thinking["includeThoughts"] = True
        config["thinkingConfig"] = thinking
    body["generationConfig"] = config
    if options.safety_threshold != "server_default":
        body["safetySettings"] = [
            {"category": c, "threshold": options.safety_threshold} for c in safety_categories
        ]
    return body


def to_contents(
    messages: Iterable[PromptMessage], *, system_instruction: bool = True
) -> tuple[str, list[dict[str, Any]]]:
    """(system instruction, contents). Leading system messages become the instruction; a
    system message later in the chat (an author's note at depth) stays where it is, as a
    user turn. Names are put in front of the text; runs of one role are merged."""
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for message in messages:
        if not message.content:
            continue  # Google refuses an empty text part outright
        if message.role == "system" and not turns and system_instruction:
            system.append(message.content)
            continue
        role = "model" if message.role == "assistant" else "user"
        text = message.content
        if message.name and message.role != "system" and not text.startswith(f"{message.name}:"):
            text = f"{message.name}: {text}"
        if turns and turns[-1][0] == role:
            turns[-1] = (role, f"{turns[-1][1]}\n\n{text}")
        else:
            turns.append((role, text))
    if not turns and system:
        # `contents` may not be empty: a prompt that is all instruction is sent as the turn
        turns, system = [("user", "\n\n".join(system))], []
    return "\n\n".join(system), [{"role": r, "parts": [{"text": t}]} for r, t in turns]


def count_body(text: str) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def generation_samplers(sampler: Mapping[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sampler.items():
        if value is None:
            continue
        wire = SAMPLERS.get(key)
        if wire is None or key not in allowed:
            _log.debug("Gemini does not take sampler %r; dropped", key)
            continue
        if key == "top_k" and value == 0:
            continue  # 0 means "off" in the core; Gemini rejects it
        if key == "seed" and isinstance(value, int) and value < 0:
            continue  # a negative seed means "random", which is what omitting it means
        out[wire] = value
    return out


def stop_sequences(stop: Iterable[str], limit: int = MAX_STOP) -> list[str]:
    """At most ``limit`` (Gemini: five), each 1–16 characters. A longer one is dropped, not
    cut: a cut stop string would end the reply early on a fragment, while the engine still
    cuts at the whole string itself."""
    kept: list[str] = []
    for s in dict.fromkeys(stop):
        if not s:
            continue
        if len(s) > MAX_STOP_CHARS:
            _log.debug(
                "stop string %r is longer than Gemini's %d characters; dropped", s, MAX_STOP_CHARS
            )
            continue
        kept.append(s)
    if len(kept) > limit:
        _log.debug("sending %d of %d stop strings (Gemini's limit)", limit, len(kept))
    return kept[:limit]


# -- responses -------------------------------------------------------------------------------


@dataclass(slots=True)
class Reply:
    """Folds ``GenerateContentResponse`` objects (SSE events or one JSON body) into events."""

    backend: str
    secrets: tuple[str, ...] = ()
    finish: str = ""
    usage: Usage | None = None
    text_seen: bool = False
    events_seen: bool = False

    def feed(self, obj: Any) -> list[StreamEvent]:
        """Events carried by one response object; errors and blocks raise."""
        if not isinstance(obj, dict):
            raise TypeError("not a JSON object")
        if obj.get("error"):
            raise gemini_error(self.backend, obj, secrets=self.secrets)
        runs: list[tuple[bool, str]] = []  # (thought?, text); a run of one kind is one delta
        candidates = obj.get("candidates")
        if not candidates:
            feedback = obj.get("promptFeedback")
            reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
            if reason:
                raise filtered_error(self.backend, "prompt", str(reason))
        else:
            candidate = candidates[0]
            content = candidate.get("content") or {}
            for part in content.get("parts") or ():
                text = part.get("text")
                if not isinstance(text, str) or not text:
                    continue  # function calls, inline data, bare thought signatures
                thought = part.get("thought") is True
                if runs and runs[-1][0] == thought:
                    runs[-1] = (thought, runs[-1][1] + text)
                else:
                    runs.append((thought, text))
                self.text_seen = self.text_seen or not thought
            raw = candidate.get("finishReason")
            if isinstance(raw, str) and raw:
                self.finish = raw
        usage = usage_of(obj.get("usageMetadata"))
        if usage is not None:
            self.usage = usage  # each chunk carries the running totals; keep the last
        self.events_seen = self.events_seen or bool(runs)
        return [ReasoningDelta(t) if thought else TextDelta(t) for thought, t in runs]

    def end(self) -> list[StreamEvent]:
        """The closing events once the body is complete (``finish`` must be known)."""
        reason = finish_reason(self.finish)
        if reason is FinishReason.FILTERED and not self.text_seen:
            # an empty reply with a "filtered" finish would reach the user as a blank
            raise filtered_error(self.backend, "reply", self.finish)
        out: list[StreamEvent] = [self.usage] if self.usage is not None else []
        out.append(Finish(reason, raw=self.finish))
        return out


def usage_of(value: Any) -> Usage | None:
    """``usageMetadata``; thinking tokens are billed as output, so they count as completion."""
    if not isinstance(value, dict):
        return None
    prompt = value.get("promptTokenCount")
    parts = [value.get(k) for k in ("candidatesTokenCount", "thoughtsTokenCount")]
    counted = [p for p in parts if isinstance(p, int)]
    if not isinstance(prompt, int) and not counted:
        return None
    return Usage(prompt if isinstance(prompt, int) else None, sum(counted) if counted else None)


def parse_models(backend: str, raw: bytes) -> tuple[list[ModelInfo], str]:
    """One page of ``GET /models``: the models that can ``generateContent``, and the token
    of the next page (``""`` on the last)."""
    payload = decode_json(raw)
    entries = payload.get("models", []) if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        raise protocol_error(
            backend,
            "the server sent a model list that could not be read",
            detail=raw[:300].decode("utf-8", "replace"),
        )
    models = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        if "generateContent" not in (entry.get("supportedGenerationMethods") or ()):
            continue  # embedding, image and answer-only models
        limit = entry.get("inputTokenLimit")
        models.append(
            ModelInfo(
                entry["name"].removeprefix("models/"), limit if isinstance(limit, int) else None
            )
        )
    token = payload.get("nextPageToken") if isinstance(payload, dict) else ""
    return models, token if isinstance(token, str) else ""
