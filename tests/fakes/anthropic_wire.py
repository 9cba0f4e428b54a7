"""What the fake Claude API says: its error bodies and golden stream transcripts (shared
backends reference §4.7, §7 and §8.7), and the typed SSE events they are made of."""

from __future__ import annotations

from typing import Any

from tests.fakes.base import sse


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}


# -- real error bodies (reference §4.7 and §7) ------------------------------------------------


def error_401(key: str) -> dict[str, Any]:
    # a careless proxy that echoes the key: the client must still never show it
    return error_body("authentication_error", f"invalid x-api-key: {key}")


ERROR_404 = error_body("not_found_error", "model: claude-nope-9")
ERROR_429 = error_body(
    "rate_limit_error",
    "This request would exceed the rate limit for your organization of 50 requests per "
    "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
)
ERROR_500 = error_body("api_error", "Internal server error")
ERROR_529 = error_body("overloaded_error", "Overloaded")
ERROR_CONTEXT = error_body(
    "invalid_request_error", "prompt is too long: 215332 tokens > 200000 maximum"
)
ERROR_CREDIT = error_body(
    "invalid_request_error",
    "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
    "Billing to upgrade or purchase credits.",
)
ERROR_413 = error_body("request_too_large", "Request exceeds the maximum allowed number of bytes.")

# -- golden stream transcripts (reference §8.7); bytes matter ---------------------------------

START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-5",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 1},
        },
    },
)
PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def block_start(index: int, kind: str) -> bytes:
    block = {"type": "text", "text": ""} if kind == "text" else {"type": kind, kind: ""}
    if kind == "thinking":
        block["signature"] = ""
    return sse(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def delta(index: int, kind: str, value: str) -> bytes:
    field = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}
    return sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": kind, field[kind]: value},
        },
    )


def block_stop(index: int) -> bytes:
    return sse("content_block_stop", {"type": "content_block_stop", "index": index})


def message_delta(stop: str, output: int, stop_sequence: str | None = None) -> bytes:
    return sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": stop_sequence},
            "usage": {"output_tokens": output},
        },
    )


STOP = sse("message_stop", {"type": "message_stop"})
OVERLOADED_EVENT = sse("error", ERROR_529 | {"request_id": None})

GOLDEN = (
    START
    + block_start(0, "text")
    + PING
    + delta(0, "text_delta", "Hi")
    + delta(0, "text_delta", "!")
    + block_stop(0)
    + message_delta("end_turn", 2)
    + STOP
)
GOLDEN_THINKING = (
    START
    + block_start(0, "thinking")
    + delta(0, "thinking_delta", "The user greets me.")
    + delta(0, "thinking_delta", " Be warm.")
    + delta(0, "signature_delta", "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pk")
    + block_stop(0)
    + block_start(1, "text")
    + delta(1, "text_delta", "Hello!")
    + block_stop(1)
    + message_delta("end_turn", 9)
    + STOP
)
GOLDEN_ERROR_AFTER_DELTA = (
    START + block_start(0, "text") + delta(0, "text_delta", "Once") + OVERLOADED_EVENT
)
GOLDEN_STOP_SEQUENCE = (
    START
    + block_start(0, "text")
    + delta(0, "text_delta", "Hi")
    + block_stop(0)
    + message_delta("stop_sequence", 1, "\nUser:")
    + STOP
)
GOLDEN_REFUSAL = (
    START
    + block_start(0, "text")
    + delta(0, "text_delta", "I")
    + block_stop(0)
    + message_delta("refusal", 1)
    + STOP
)
