"""Google's errors → :mod:`bot.errors`: the gemini family's one mapping function.

Google answers every failure with a ``google.rpc.Status`` envelope,
``{"error": {"code", "message", "status", "details": [...]}}``; the details carry what a
status code cannot: ``ErrorInfo.reason`` (``API_KEY_INVALID`` comes with a 400, not a 401),
``RetryInfo.retryDelay`` ("27s") and ``QuotaFailure`` quota ids (a per-day quota is used up,
not a rate limit to wait out). A prompt or reply blocked by the safety filters is an error
with its own hint, since it arrives under HTTP 200.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from bot.backends.errors import (
    CONTEXT_HINT,
    QUOTA_HINT,
    Clock,
    Failure,
    attributed,
    classify,
    parse_duration,
    retry_after,
    transport_error,
    truncate,
    what_it_said,
)
from bot.errors import BackendAuthError, BackendError, BackendRateLimited

FILTER_HINT = (
    "rephrase the last message or regenerate; `gemini.safety_threshold: OFF` relaxes the "
    "filters that can be relaxed (prohibited content and recitation cannot)"
)
_KEY_HINT = "the API key was rejected; check the variable named by `api_key_env` holds a valid key"
_ACCESS_HINT = (
    "the key or service account may not use this model or project; check that the API is "
    "enabled for the project and the account has access (Vertex AI User role)"
)
_DAILY_QUOTA_HINT = (
    "the daily quota for this model is used up (it resets daily); enable billing or add "
    "credits, pick another model, or switch backends"
)
_GOOGLE_CONTEXT_MARKERS = ("input token count", "exceeds the maximum number of tokens")
# not "billing": AI Studio's per-minute 429 also says "check your plan and billing details"
_QUOTA_MARKERS = ("credits are depleted", "prepayment")


def filtered_error(backend: str, what: str, reason: str) -> BackendError:
    """A prompt (HTTP 200, ``promptFeedback.blockReason``) or reply blocked by Google."""
    return BackendError(
        f"Google's safety filter blocked the {what} ({reason})",
        backend=backend,
        detail=f"blockReason/finishReason {reason}",
        hint=FILTER_HINT,
    )


def gemini_error(
    backend: str,
    failure: Failure,
    *,
    body: bytes = b"",
    secrets: Iterable[str] = (),
    midstream: bool = False,
    now: Clock = time.time,
) -> BackendError:
    """The gemini family's one mapping: a non-2xx response (``body`` read by the caller), a
    transport failure, or an ``{"error": {...}}`` object found inside a 200 stream."""
    if isinstance(failure, httpx.HTTPError):
        return attributed(transport_error(backend, failure, midstream=midstream), backend, secrets)
    payload, said = what_it_said(failure, body)
    headers: Mapping[str, str] = {}
    if isinstance(failure, httpx.Response):
        status, headers, in_stream = failure.status_code, failure.headers, False
    else:
        code = failure.get("error", {}).get("code") if isinstance(failure, dict) else None
        status = code if isinstance(code, int) and 400 <= code < 600 else 0
        in_stream = True
    error = _google(backend, status, said, payload, headers, in_stream=in_stream, now=now)
    return attributed(error, backend, secrets)


def _google(
    backend: str,
    status: int,
    said: str,
    payload: Any,
    headers: Mapping[str, str],
    *,
    in_stream: bool,
    now: Clock,
) -> BackendError:
    err = payload.get("error") if isinstance(payload, dict) else None
    err = err if isinstance(err, dict) else {}
    google_status = str(err.get("status") or "")
    reasons, delay, quotas = _details(err.get("details"))
    words = said.lower()
    if in_stream:
        what = "the server reported an error mid-stream" + (f" ({status})" if status else "")
    else:
        what = f"HTTP {status}"
    message = what + (f": {truncate(said)}" if said else "")
    detail = truncate(said, 2000)
    if "API_KEY_INVALID" in reasons or "api key not valid" in words or "api key expired" in words:
        return BackendAuthError(message, backend=backend, detail=detail, hint=_KEY_HINT)
    if status == 403 or google_status == "PERMISSION_DENIED":
        if "BILLING_DISABLED" in reasons:
            return BackendError(message, backend=backend, detail=detail, hint=QUOTA_HINT)
        return BackendAuthError(message, backend=backend, detail=detail, hint=_ACCESS_HINT)
    if status == 429 or google_status == "RESOURCE_EXHAUSTED":
        if any("PerDay" in q for q in quotas):
            return BackendError(message, backend=backend, detail=detail, hint=_DAILY_QUOTA_HINT)
        if any(m in words for m in _QUOTA_MARKERS):
            return BackendError(message, backend=backend, detail=detail, hint=QUOTA_HINT)
        wait = delay if delay is not None else retry_after(headers, now)
        return BackendRateLimited(message, retry_after=wait, backend=backend, detail=detail)
    if any(m in words for m in _GOOGLE_CONTEXT_MARKERS):
        return BackendError(message, backend=backend, detail=detail, hint=CONTEXT_HINT)
    return classify(
        backend, status, said, google_status.lower(), headers, in_stream=in_stream, now=now
    )


def _details(details: Any) -> tuple[set[str], float | None, list[str]]:
    """From ``error.details``: ErrorInfo reasons, RetryInfo's delay, QuotaFailure quota ids."""
    reasons: set[str] = set()
    delay: float | None = None
    quotas: list[str] = []
    for item in details if isinstance(details, list) else ():
        if not isinstance(item, dict):
            continue
        kind = str(item.get("@type", ""))
        if isinstance(item.get("reason"), str):
            reasons.add(item["reason"])
        if kind.endswith("google.rpc.RetryInfo") and isinstance(item.get("retryDelay"), str):
            delay = parse_duration(item["retryDelay"])
        if kind.endswith("google.rpc.QuotaFailure"):
            quotas.extend(
                str(v.get("quotaId"))
                for v in item.get("violations") or ()
                if isinstance(v, dict) and v.get("quotaId")
            )
    return reasons, delay, quotas
