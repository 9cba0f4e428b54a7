"""NovelAI's legacy text wire (``/ai/generate``, ``/ai/generate-stream``): the request body
out; ``event: newToken`` records and ``{"output"}`` answers in; its one error mapping.

Stop strings: NovelAI takes them only as token-id arrays of the model's own tokenizer
(NerdStash v1/v2, Llama 3), which we do not ship, and a wrong id list would stop on the wrong
text. So none are sent: :class:`NovelAIDecoder` cuts the reply at the first stop string as
the tokens stream in (holding back a tail that could still become one), and ends the reply
there; the stream loop then stops reading, which closes the connection and ends the
generation on NovelAI's side. Bans (``bad_words_ids``) are left out for the same reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
    decode_json,
    looks_like_html,
    openai_error,
    protocol_error,
)
from bot.backends.native import record_json, translate_samplers, unique_stops, whole_json
from bot.backends.sse import ERROR_EVENT, StreamRecord
from bot.errors import BackendAuthError, BackendError

_log = logging.getLogger(__name__)

FAMILY = "NovelAI"
MODELS = ("llama-3-erato-v1", "kayra-v1", "clio-v1")
MAX_LENGTH = 150  # NovelAI's most tokens per generation
STOP_CUT = "client_stop"  # the raw finish word when we ended the reply at a stop string

# Core sampler name → NovelAI's parameter. Not sent: seed (not taken), DRY/XTC/dynatemp,
# banned strings and grammar (no equivalent), KoboldCpp's sampler_order (other ids).
PARAMETERS: Mapping[str, str] = MappingProxyType(
    {
        "temperature": "temperature",
        "top_k": "top_k",
        "top_p": "top_p",
        "top_a": "top_a",
        "typical_p": "typical_p",
        "tfs": "tail_free_sampling",
        "min_p": "min_p",
        "repetition_penalty": "repetition_penalty",
        "repetition_penalty_range": "repetition_penalty_range",
        "repetition_penalty_slope": "repetition_penalty_slope",
        "presence_penalty": "repetition_penalty_presence",
        "frequency_penalty": "repetition_penalty_frequency",
        "mirostat_tau": "mirostat_tau",
        "mirostat_eta": "mirostat_lr",
    }
)
# NovelAI applies only the samplers its `order` lists: SillyTavern's default sequence,
# then min-p and mirostat, each id present when its setting is.
ORDER: tuple[tuple[str, int], ...] = (
    ("top_k", 1),
    ("typical_p", 5),
    ("temperature", 0),
    ("top_p", 2),
    ("tfs", 3),
    ("top_a", 4),
    ("min_p", 10),
    ("mirostat_tau", 8),
)

SUBSCRIPTION_HINT = (
    "NovelAI answered that the account has no active subscription or no credits left for "
    "this model; check the plan at novelai.net"
)
CLOUDFLARE_HINT = "set a browser-like `User-Agent` under the backend's `headers`"


def generate_body(request: GenerationRequest, *, model: str) -> dict[str, Any]:
    """``{input, model, parameters}`` with ``use_string: true`` (text in, text out)."""
    model = request.model or model
    prompt = request.prompt
    if model.startswith("llama-3-erato") and not prompt.startswith("<|startoftext|>"):
        prompt = "<|startoftext|>" + prompt  # Erato's prompts open with its BOS text
    if request.max_tokens > MAX_LENGTH:
        _log.debug("NovelAI generates at most %d tokens; asked %d", MAX_LENGTH, request.max_tokens)
    parameters: dict[str, Any] = {
        "use_string": True,
        "max_length": min(request.max_tokens, MAX_LENGTH),
        "min_length": 1,
        "generate_until_sentence": True,
        "use_cache": False,
        "return_full_text": False,
        "prefix": "vanilla",
    }
    parameters.update(translate_samplers(FAMILY, request.sampler, PARAMETERS))
    order = [ident for key, ident in ORDER if request.sampler.get(key) is not None]
    if order:
        parameters["order"] = order
    bias = request.sampler.get("logit_bias")
    if isinstance(bias, Mapping):
        parameters["logit_bias_exp"] = [
            {
                "sequence": [int(k)],
                "bias": v,
                "ensure_sequence_finish": False,
                "generate_once": False,
            }
            for k, v in bias.items()
            if isinstance(k, str) and k.isdigit()
        ]
    return {"input": prompt, "model": model, "parameters": parameters}


def held_tail(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that is the start of a stop string."""
    best = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:size]):
                best = size
                break
    return best


def first_stop(text: str, stops: tuple[str, ...]) -> int:
    """Where the first stop string starts in ``text``, or -1."""
    found = [i for i in (text.find(s) for s in stops) if i != -1]
    return min(found, default=-1)


@dataclass(slots=True)
class NovelAIDecoder:
    """``event: newToken`` / ``data: {"token", "ptr", "final"}``; no ``[DONE]``. ``ptr`` is
    the token's index, so the last one seen counts the reply's tokens."""

    backend: str
    error: InStreamError
    stops: tuple[str, ...]
    max_length: int
    done: bool = False
    _held: str = ""
    _tokens: int = 0
    _finish: Finish | None = None

    def feed(self, record: StreamRecord) -> list[StreamEvent]:
        if record.event == ERROR_EVENT:
            payload = decode_json(record.data)
            raise self.error(payload if isinstance(payload, Mapping) else {"message": record.data})
        chunk = record_json(self.backend, record)
        token = chunk.get("token")
        if token is None and ("statusCode" in chunk or "message" in chunk or "error" in chunk):
            raise self.error(chunk)
        if not isinstance(token, str):
            raise protocol_error(
                self.backend, "the server sent a malformed stream chunk", detail=record.data
            )
        ptr = chunk.get("ptr")
        self._tokens = ptr + 1 if isinstance(ptr, int) else self._tokens + 1
        text, self._held = self._held + token, ""
        cut = first_stop(text, self.stops)
        if cut != -1:
            self.done = True
            self._finish = Finish(FinishReason.STOP_SEQUENCE, raw=STOP_CUT)
            return [TextDelta(text[:cut])] if cut else []
        if chunk.get("final") is True:
            self.done = True
            length = self._tokens >= self.max_length
            self._finish = Finish(FinishReason.LENGTH if length else FinishReason.STOP, "final")
            return [TextDelta(text)] if text else []
        keep = held_tail(text, self.stops)
        if keep:
            text, self._held = text[:-keep], text[-keep:]
        return [TextDelta(text)] if text else []

    def close(self) -> list[StreamEvent] | None:
        if not self.done:
            return None
        usage: list[StreamEvent] = [Usage(None, self._tokens)] if self._tokens else []
        return [*usage, self._finish or Finish(FinishReason.STOP, "final")]

    def whole(self, raw: bytes) -> list[StreamEvent]:
        answer = whole_json(self.backend, raw)
        output = answer.get("output")
        if not isinstance(output, str):
            if "statusCode" in answer or "message" in answer or "error" in answer:
                raise self.error(answer)
            raise protocol_error(
                self.backend,
                "the server sent no output",
                detail=raw[:300].decode("utf-8", "replace"),
            )
        cut = first_stop(output, self.stops)
        if cut != -1:
            text, finish = output[:cut], Finish(FinishReason.STOP_SEQUENCE, raw=STOP_CUT)
        else:
            text, finish = output, Finish(FinishReason.STOP, raw="output")
        return [TextDelta(text), finish] if text else [finish]


def stops_of(request: GenerationRequest) -> tuple[str, ...]:
    return tuple(unique_stops(request.stop))


def novelai_error(
    backend: str,
    failure: Failure,
    *,
    body: bytes = b"",
    secrets: Iterable[str] = (),
    midstream: bool = False,
) -> BackendError:
    """The family's one mapping. NovelAI words errors ``{"statusCode", "message"}`` (the
    OpenAI mapping reads ``message``); a 402 is about the subscription, and a 403 page from
    Cloudflare is about the client, not the key."""
    if (
        isinstance(failure, httpx.Response)
        and failure.status_code == 403
        and looks_like_html(body)
    ):
        text = body[:4096].decode("utf-8", "replace").lower()
        if "cloudflare" in text:
            return BackendError(
                "HTTP 403: Cloudflare in front of NovelAI refused the client",
                backend=backend,
                detail="error 1010" if "1010" in text else "",
                hint=CLOUDFLARE_HINT,
            )
    error = openai_error(backend, failure, body=body, secrets=secrets, midstream=midstream)
    status = failure.status_code if isinstance(failure, httpx.Response) else 0
    if status == 402:
        error.hint = SUBSCRIPTION_HINT
    if isinstance(error, BackendAuthError):
        error.hint = (
            "check the persistent API token (pst-…) in the variable named by `api_key_env`"
        )
    return error
