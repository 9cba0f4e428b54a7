"""What the fake OpenAI-compatible server says: real error bodies, golden stream
transcripts (shared backends reference §7 and §8), scripted replies and their rendering."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

# the replies every family scripts alike; Endless and Status are imported from here too
from tests.fakes.base import Cut, Huge, Raw
from tests.fakes.base import Endless as Endless
from tests.fakes.base import Status as Status

# -- real error bodies (shared backends reference §7) -----------------------------------------


def openai_error(
    message: str, type_: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_401(key: str) -> dict[str, Any]:
    # a careless server that echoes the whole key: the client must still never show it
    return openai_error(
        f"Incorrect API key provided: {key}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    )


ERROR_404 = openai_error(
    "The model `gpt-nope` does not exist or you do not have access to it.",
    "invalid_request_error",
    "model_not_found",
)
ERROR_429 = openai_error(
    "Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): "
    "Limit 3, Used 3, Requested 1.",
    "requests",
    "rate_limit_exceeded",
)
ERROR_QUOTA = openai_error(
    "You exceeded your current quota, please check your plan and billing details.",
    "insufficient_quota",
    "insufficient_quota",
)
ERROR_CONTEXT = openai_error(
    "This model's maximum context length is 8192 tokens. However, your messages resulted "
    "in 9120 tokens. Please reduce the length of the messages.",
    "invalid_request_error",
    "context_length_exceeded",
    "messages",
)
ERROR_500 = openai_error(
    "The server had an error while processing your request. Sorry about that!",
    "server_error",
    None,
)
ERROR_503 = openai_error(
    "The engine is currently overloaded, please try again later", "server_error", None
)
OPENROUTER_ERROR = {"code": 502, "message": "Provider returned error"}
TABBY_ERROR = {"message": "CUDA out of memory", "trace": None}
LLAMACPP_ERROR = {
    "code": 400,
    "message": "the request exceeds the available context size",
    "type": "exceed_context_size_error",
}

# -- golden stream transcripts (shared backends reference §8); bytes matter -------------------

GOLDEN_CHAT = (
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
    b'{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
    b'{"content":"Hi"},"finish_reason":null}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},'
    b'"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)
GOLDEN_DEEPSEEK_REASONER = (
    b": keep-alive\n\n"
    b'data: {"id":"d1","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
    b'{"role":"assistant","content":null,"reasoning_content":""},"finish_reason":null}]}\n\n'
    b'data: {"id":"d1","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
    b'{"content":null,"reasoning_content":"The user greets."},"finish_reason":null}]}\n\n'
    b'data: {"id":"d1","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
    b'{"content":"Hello","reasoning_content":null},"finish_reason":null}]}\n\n'
    b'data: {"id":"d1","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
    b'{"content":"!","reasoning_content":null},"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"d1","object":"chat.completion.chunk","choices":[],"usage":'
    b'{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}\n\n'
    b"data: [DONE]\n\n"
)
GOLDEN_OPENROUTER_ERROR = (
    b": OPENROUTER PROCESSING\n\n"
    b'data: {"id":"gen-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
    b'{"role":"assistant","content":"Once"},"finish_reason":null}]}\n\n'
    b'data: {"id":"gen-1","object":"chat.completion.chunk","error":{"code":502,"message":'
    b'"Provider returned error"},"choices":[{"index":0,"delta":{"content":""},'
    b'"finish_reason":"error"}]}\n\n'
    b"data: [DONE]\n\n"
)
GOLDEN_TEXT = (
    b'data: {"choices":[{"index":0,"text":"Hi","finish_reason":null}]}\n\n'
    b'data: {"choices":[{"index":0,"text":"","finish_reason":"length"}]}\n\n'
    b"data: [DONE]\n\n"
)
GOLDEN_TEXT_NO_DONE = (  # old text-generation-webui: no sentinel, the connection just ends
    b'data: {"choices":[{"index":0,"text":"Hi","finish_reason":null}]}\n\n'
    b'data: {"choices":[{"index":0,"text":"","finish_reason":"length"}]}\n\n'
)
GOLDEN_LLAMACPP_ERROR = (
    b'data: {"choices":[{"index":0,"text":"Hi","finish_reason":null}]}\n\n'
    b"error: " + json.dumps(LLAMACPP_ERROR).encode() + b"\n\n"
)


# -- replies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A normal answer: ``deltas`` in order, then ``finish``; ``usage`` as (prompt, completion)
    in a usage-only chunk; ``reasoning`` deltas first (chat only); ``comments`` first."""

    deltas: Sequence[str] = ("Hel", "lo")
    finish: str | None = "stop"
    usage: tuple[int, int] | None = None
    reasoning: Sequence[str] = ()
    comments: Sequence[str] = ()
    done: bool = True


@dataclass(frozen=True)
class InStreamError:
    """Stream ``deltas`` under HTTP 200, then an error as ``style`` reports it."""

    deltas: Sequence[str] = ("Once",)
    style: Literal["openrouter", "tabby", "llamacpp"] = "openrouter"


Reply = Text | Cut | InStreamError | Endless | Huge | Raw | Status


def completion(
    text: str, finish: str | None, usage: tuple[int, int] | None, reasoning: str, chat: bool
) -> dict[str, Any]:
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if reasoning:
            message["reasoning_content"] = reasoning
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    out: dict[str, Any] = {
        "id": "x1",
        "object": "chat.completion" if chat else "text_completion",
        "created": 1,
        "model": "gpt-test",
        "choices": [choice],
    }
    if usage:
        out["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return out


def _chunk(choice: dict[str, Any], chat: bool, **extra: Any) -> bytes:
    obj = {
        "id": "x1",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": 1,
        "model": "gpt-test",
        "choices": [choice],
        **extra,
    }
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def delta_chunk(text: str, chat: bool, finish: str | None = None, **extra: Any) -> bytes:
    if chat:
        choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish}
    return _chunk(choice, chat, **extra)


def render_stream(reply: Reply, chat: bool) -> list[bytes]:
    """The wire chunks of a semantic reply, one write each."""
    out: list[bytes] = []
    if isinstance(reply, Huge):
        piece = delta_chunk("y" * 4000, chat)
        return [piece] * (reply.size // len(piece) + 1)
    if isinstance(reply, Text):
        out += [f": {c}\n\n".encode() for c in reply.comments]
        if chat:
            out.append(_chunk({"index": 0, "delta": {"role": "assistant", "content": ""}}, chat))
            out += [
                _chunk(
                    {"index": 0, "delta": {"reasoning_content": r}, "finish_reason": None}, chat
                )
                for r in reply.reasoning
            ]
    deltas = reply.deltas if isinstance(reply, Text | Cut | InStreamError) else ()
    out += [delta_chunk(d, chat) for d in deltas]
    if isinstance(reply, InStreamError):
        if reply.style == "openrouter":
            out.append(delta_chunk("", chat, "error", error=OPENROUTER_ERROR))
        elif reply.style == "tabby":
            out.append(b"data: " + json.dumps({"error": TABBY_ERROR}).encode() + b"\n\n")
        else:
            out.append(b"error: " + json.dumps(LLAMACPP_ERROR).encode() + b"\n\n")
        return out
    if isinstance(reply, Text):
        if reply.finish:
            out.append(delta_chunk("", chat, reply.finish))
        if reply.usage:
            usage = {
                "prompt_tokens": reply.usage[0],
                "completion_tokens": reply.usage[1],
                "total_tokens": sum(reply.usage),
            }
            out.append(
                b"data: "
                + json.dumps(
                    {"id": "x1", "object": "chat.completion.chunk", "choices": [], "usage": usage}
                ).encode()
                + b"\n\n"
            )
        if reply.done:
            out.append(b"data: [DONE]\n\n")
    return out
