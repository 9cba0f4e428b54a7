"""What the fake Gemini server says: Google's error bodies, golden stream transcripts (shared
backends reference §7 and §8), scripted replies and their rendering."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.base import Cut, Endless, Huge, Raw, Status, compact

# -- Google's error envelope (google.rpc.Status as JSON) --------------------------------------


def google_error(
    code: int, status: str, message: str, details: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


def error_info(reason: str, service: str = "generativelanguage.googleapis.com") -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": service},
    }


def retry_info(delay: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def quota_failure(quota_id: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": "generativelanguage.googleapis.com/"
                "generate_content_free_tier_requests",
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                "quotaValue": "10",
            }
        ],
    }


def key_invalid(shown: str = "") -> dict[str, Any]:
    # Google does not echo the key; this fake appends it (like a careless proxy would) so
    # that the tests prove the client redacts whatever the server says
    message = "API key not valid. Please pass a valid API key."
    return google_error(
        400,
        "INVALID_ARGUMENT",
        message + (f" ({shown})" if shown else ""),
        [error_info("API_KEY_INVALID")],
    )


def token_invalid(shown: str = "") -> dict[str, Any]:
    message = (
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project."
    )
    return google_error(
        401,
        "UNAUTHENTICATED",
        message + (f" (got {shown})" if shown else ""),
        [error_info("ACCESS_TOKEN_TYPE_UNSUPPORTED", "aiplatform.googleapis.com")],
    )


NO_CALLER = google_error(
    403,
    "PERMISSION_DENIED",
    "Method doesn't allow unregistered callers (callers without established identity). Please "
    "use API Key or other form of API consumer identity to call this API.",
)
ERROR_403 = google_error(
    403,
    "PERMISSION_DENIED",
    "Permission denied: Consumer 'api_key:x' has been suspended.",
    [error_info("CONSUMER_SUSPENDED")],
)
ERROR_404 = google_error(
    404,
    "NOT_FOUND",
    "models/gemini-nope is not found for API version v1beta, or is not supported for "
    "generateContent. Call ListModels to see the list of available models and their "
    "supported methods.",
)
QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)


def error_429(delay: str | None) -> dict[str, Any]:
    """AI Studio's per-minute limit (its message mentions billing, yet it is a rate limit)."""
    details = [quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier")]
    if delay is not None:
        details.append(retry_info(delay))
    return google_error(429, "RESOURCE_EXHAUSTED", QUOTA_MESSAGE, details)


ERROR_DAILY_QUOTA = google_error(
    429,
    "RESOURCE_EXHAUSTED",
    QUOTA_MESSAGE,
    [quota_failure("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), retry_info("43s")],
)
VERTEX_429 = google_error(
    429,
    "RESOURCE_EXHAUSTED",
    "Resource exhausted. Please try again later. Please refer to "
    "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
)
ERROR_CONTEXT = google_error(
    400,
    "INVALID_ARGUMENT",
    "The input token count (1048600) exceeds the maximum number of tokens allowed (1048576).",
)
ERROR_500 = google_error(
    500,
    "INTERNAL",
    "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
)
ERROR_503 = google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
HTML_502 = (
    b"<!DOCTYPE html>\n<html lang=en>\n<meta charset=utf-8>\n"
    b"<title>Error 502 (Server Error)!!1</title>\n"
    b"<p><b>502.</b> <ins>That\xe2\x80\x99s an error.</ins>\n"
)

# -- golden stream transcripts (shared backends reference §8); bytes matter -------------------

_USAGE = (
    b'"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":2,"totalTokenCount":11},'
    b'"modelVersion":"gemini-2.5-flash","responseId":"r1"}'
)
GOLDEN_STREAM = (
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"}]},"index":0}],'
    b'"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9},'
    b'"modelVersion":"gemini-2.5-flash","responseId":"r1"}\r\n\r\n'
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"!"}]},'
    b'"finishReason":"STOP","index":0}],' + _USAGE + b"\r\n\r\n"
)
GOLDEN_THOUGHTS = (
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"The user greets.",'
    b'"thought":true}]},"index":0}],"modelVersion":"gemini-2.5-flash","responseId":"r2"}\r\n\r\n'
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"},{"text":"lo"}]},'
    b'"index":0}],"modelVersion":"gemini-2.5-flash","responseId":"r2"}\r\n\r\n'
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"!",'
    b'"thoughtSignature":"c2lnbmF0dXJl"}]},"finishReason":"STOP","index":0}],'
    b'"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":2,"totalTokenCount":25,'
    b'"thoughtsTokenCount":14},"modelVersion":"gemini-2.5-flash","responseId":"r2"}\r\n\r\n'
)
GOLDEN_BLOCKED = (
    b'data: {"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":'
    b'{"promptTokenCount":12,"totalTokenCount":12},"modelVersion":"gemini-2.5-flash",'
    b'"responseId":"r3"}\r\n\r\n'
)
GOLDEN_SAFETY_STOP = (
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Once"}]},"index":0}],'
    b'"modelVersion":"gemini-2.5-flash","responseId":"r4"}\r\n\r\n'
    b'data: {"candidates":[{"content":{"role":"model"},"finishReason":"SAFETY","index":0,'
    b'"safetyRatings":[{"category":"HARM_CATEGORY_SEXUALLY_EXPLICIT","probability":"HIGH",'
    b'"blocked":true}]}],' + _USAGE + b"\r\n\r\n"
)
GOLDEN_SAFETY_EMPTY = (
    b'data: {"candidates":[{"finishReason":"SAFETY","index":0,"safetyRatings":[{"category":'
    b'"HARM_CATEGORY_HARASSMENT","probability":"HIGH","blocked":true}]}],' + _USAGE + b"\r\n\r\n"
)
GOLDEN_MAX_TOKENS = (
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"}]},'
    b'"finishReason":"MAX_TOKENS","index":0}],' + _USAGE + b"\r\n\r\n"
)

# -- replies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A normal answer: ``thoughts`` parts, then ``deltas``, then ``finish`` on the last chunk
    with ``usage`` as (prompt, candidates) in its ``usageMetadata``."""

    deltas: Sequence[str] = ("Hel", "lo")
    finish: str = "STOP"
    usage: tuple[int, int] | None = None
    thoughts: Sequence[str] = ()


@dataclass(frozen=True)
class InStreamError:
    """Stream ``deltas`` under HTTP 200, then an ``{"error": …}`` event."""

    deltas: Sequence[str] = ("Once",)
    error: Mapping[str, Any] = field(default_factory=lambda: ERROR_503)


Reply = Text | Cut | InStreamError | Endless | Huge | Raw | Status


def response(
    parts: Sequence[Mapping[str, Any]],
    finish: str | None = None,
    usage: tuple[int, int] | None = None,
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate]}
    if usage:
        out["usageMetadata"] = {
            "promptTokenCount": usage[0],
            "candidatesTokenCount": usage[1],
            "totalTokenCount": sum(usage),
        }
    out["modelVersion"] = "gemini-2.5-flash"
    out["responseId"] = "fake-1"
    return out


def event(obj: Mapping[str, Any]) -> bytes:
    return b"data: " + compact(obj) + b"\r\n\r\n"


def text_event(text: str, *, thought: bool = False) -> bytes:
    part: dict[str, Any] = {"text": text, **({"thought": True} if thought else {})}
    return event(response([part]))


def render_stream(reply: Reply) -> list[bytes]:
    """The wire chunks of a semantic reply, one write each."""
    if isinstance(reply, Huge):
        piece = text_event("y" * 4000)
        return [piece] * (reply.size // len(piece) + 1)
    if isinstance(reply, Text):
        out = [text_event(t, thought=True) for t in reply.thoughts]
        out += [text_event(d) for d in reply.deltas[:-1]]
        last = reply.deltas[-1] if reply.deltas else ""
        out.append(event(response([{"text": last}], reply.finish, reply.usage)))
        return out
    if isinstance(reply, Cut | InStreamError):
        out = [text_event(d) for d in reply.deltas]
        if isinstance(reply, InStreamError):
            out.append(event(reply.error))
        return out
    raise TypeError(f"not a streamed reply: {reply!r}")


def whole(reply: Reply) -> dict[str, Any]:
    """A non-streamed (``:generateContent``) answer."""
    if isinstance(reply, Huge):
        return response([{"text": "x" * reply.size}], "STOP")
    if isinstance(reply, InStreamError):
        return dict(reply.error)
    assert isinstance(reply, Text), reply
    parts = [{"text": t, "thought": True} for t in reply.thoughts]
    parts.append({"text": "".join(reply.deltas)})
    return response(parts, reply.finish, reply.usage)
