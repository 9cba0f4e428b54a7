"""HTTP status, headers, body and transport failures → :mod:`bot.errors`, in one place.

Each wire family has ONE public mapping function (``openai_error`` here; later families add
theirs beside it) built from the shared helpers below. Every error carries ``backend`` (so
``user_message()`` reads "[name] HTTP 429: …"), the server's own words (truncated) and never
an API key: every text that leaves through a family function passes :func:`redact`.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from bot.errors import (
    BackendAuthError,
    BackendError,
    BackendNotFound,
    BackendProtocolError,
    BackendRateLimited,
    BackendStreamCut,
    BackendUnavailable,
)

MAX_DETAIL = 300

CONTEXT_HINT = (
    "the prompt is longer than the model's context; lower `context_size` in the backend's "
    "config or start a new chat"
)
QUOTA_HINT = "the account has no credits or quota left; top it up or switch backends"
REJECTED_HINT = "the backend refused the request; check the model name and sampler settings"
FAILED_HINT = "the backend failed while writing the reply; try again"

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "exceed_context_size",
    "context length",
    "context window",
    "maximum context",
    "available context size",
    "prompt is too long",
    "too many tokens",
)
_QUOTA_MARKERS = ("insufficient_quota", "insufficient balance", "insufficient credits")
_UNAVAILABLE_CODES = ("server_error", "overloaded", "unavailable", "timeout")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)

Clock = Callable[[], float]
Failure = httpx.Response | httpx.HTTPError | Mapping[str, Any]
"""What a family's mapping is given: a non-2xx response (its body read by the caller), a
transport failure, or an error object found in a 200 body or stream."""
InStreamError = Callable[[Mapping[str, Any]], BackendError]
"""A family's mapping for an error object found in a 200 body or stream (a decoder's view of
:class:`bot.backends.http_json.ErrorMap`)."""


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def truncate(text: str, limit: int = MAX_DETAIL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_duration(value: str) -> float | None:
    """``6m0s``, ``1.5s``, ``20ms``, ``1h2m`` (OpenAI's reset headers) or plain seconds."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def retry_after(headers: Mapping[str, str], now: Clock = time.time) -> float | None:
    """Seconds to wait, from ``retry-after`` (seconds or HTTP-date), ``retry-after-ms`` or
    the ``x-ratelimit-reset-*`` durations (preferring the limit whose remaining is 0)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None and when.tzinfo is not None:
                return max(0.0, when.timestamp() - now())
    exhausted: list[float] = []
    given: list[float] = []
    for kind in ("requests", "tokens"):
        reset = headers.get(f"x-ratelimit-reset-{kind}")
        seconds = parse_duration(reset) if reset else None
        if seconds is None:
            continue
        given.append(seconds)
        if headers.get(f"x-ratelimit-remaining-{kind}", "").strip() == "0":
            exhausted.append(seconds)
    if exhausted:
        return max(exhausted)
    return max(given) if given else None


def decode_json(body: bytes | str) -> Any:
    """The body as JSON, or ``None`` when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def server_message(payload: Any) -> str:
    """The server's own explanation from the error envelopes seen in the wild.

    OpenAI ``{"error":{"message"}}``, OpenRouter's ``error.metadata.raw``, FastAPI
    ``{"detail": str | [...] | {"msg"}}``, Mistral/Cohere ``{"message"}``, or a bare
    ``{"error": "..."}`` (Ollama).
    """
    if isinstance(payload, str):
        return payload
    if not isinstance(payload, Mapping):
        return ""
    err = payload.get("error")
    if isinstance(err, str):
        return err
    if isinstance(err, Mapping):
        text = server_message(err)
        raw = err.get("metadata", {}).get("raw") if isinstance(err.get("metadata"), dict) else None
        if isinstance(raw, str) and raw and raw not in text:
            text = f"{text} ({raw})" if text else raw
        return text
    for key in ("message", "msg", "detail", "error_description"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping):
            return server_message(value)
        if isinstance(value, list) and value:
            return "; ".join(filter(None, (server_message(v) for v in value[:3])))
    return ""


def _codes(payload: Any) -> str:
    """The machine-readable words of an error (code, type, status), lower-cased."""
    if not isinstance(payload, Mapping):
        return ""
    err = payload.get("error", payload)
    if not isinstance(err, Mapping):
        return ""
    return " ".join(str(err.get(k, "")) for k in ("code", "type", "status")).lower()


def html_title(body: bytes) -> str:
    match = _TITLE.search(body[:4096])
    return match.group(1).decode("utf-8", "replace").strip() if match else ""


def looks_like_html(body: bytes) -> bool:
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<head" in head


def describe_body(body: bytes, payload: Any) -> str:
    """What the server said, for a message: its error text, an HTML title, or the text."""
    if payload is not None:
        return server_message(payload)
    if looks_like_html(body):
        title = html_title(body)
        return f"an HTML page{f' ({title!r})' if title else ''}"
    return body[: MAX_DETAIL * 2].decode("utf-8", "replace")


def what_it_said(failure: httpx.Response | Mapping[str, Any], body: bytes) -> tuple[Any, str]:
    """A response's decoded body (``None`` if not JSON) and the server's words: its error
    text, an HTML page's title, the text, or the reason phrase of an empty body. For an
    error object found inside a 200 stream: the object and its words."""
    if isinstance(failure, httpx.Response):
        payload = decode_json(body)
        return payload, describe_body(body, payload) if body else failure.reason_phrase
    return failure, server_message(failure) or truncate(json.dumps(failure), 200)


def classify(
    backend: str,
    status: int,
    said: str,
    codes: str,
    headers: Mapping[str, str],
    *,
    in_stream: bool = False,
    now: Clock = time.time,
) -> BackendError:
    """A status code plus the server's words → the error class, with a hint when we know one.

    ``in_stream``: the error arrived inside a 200 stream; ``status`` is then the HTTP-like
    code the error object carried, or 0.
    """
    words = f"{codes} {said}".lower()
    if in_stream:
        what = "the server reported an error mid-stream" + (f" ({status})" if status else "")
    else:
        what = f"HTTP {status}"
    message = what + (f": {truncate(said)}" if said else "")
    detail = truncate(said, 2000)
    if status == 402 or any(m in words for m in _QUOTA_MARKERS):
        return BackendError(message, backend=backend, detail=detail, hint=QUOTA_HINT)
    if status not in (401, 403, 404, 429) and any(m in words for m in _CONTEXT_MARKERS):
        return BackendError(message, backend=backend, detail=detail, hint=CONTEXT_HINT)
    if status in (401, 403) or "authentication" in codes or "invalid_api_key" in codes:
        return BackendAuthError(message, backend=backend, detail=detail)
    if status == 404:
        return BackendNotFound(message, backend=backend, detail=detail)
    if status == 429 or "rate_limit" in codes:
        wait = retry_after(headers, now)
        return BackendRateLimited(message, retry_after=wait, backend=backend, detail=detail)
    if status >= 500 or status in (408, 425) or any(w in codes for w in _UNAVAILABLE_CODES):
        return BackendUnavailable(message, backend=backend, detail=detail)
    if 300 <= status < 400:
        where = headers.get("location", "")
        return BackendProtocolError(
            f"HTTP {status}: the server redirects" + (f" to {where}" if where else ""),
            backend=backend,
            hint="set `base_url` to where the server redirects",
        )
    if 400 <= status < 500:
        return BackendError(message, backend=backend, detail=detail, hint=REJECTED_HINT)
    if status:
        return BackendProtocolError(message, backend=backend, detail=detail)
    return BackendError(message, backend=backend, detail=detail, hint=FAILED_HINT)


def transport_error(backend: str, exc: httpx.HTTPError, *, midstream: bool) -> BackendError:
    """httpx's own failures. ``midstream``: text was already delivered to the caller."""
    where = _host(exc)
    if isinstance(exc, httpx.ConnectTimeout):
        return BackendUnavailable(f"timed out connecting to {where}", backend=backend)
    if isinstance(exc, httpx.ConnectError):
        return BackendUnavailable(f"cannot connect to {where}", backend=backend, detail=str(exc))
    if isinstance(exc, httpx.TimeoutException):
        return BackendUnavailable(f"{where} stopped answering (timed out)", backend=backend)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return BackendNotFound(f"bad base URL: {exc}", backend=backend)
    if isinstance(exc, httpx.TransportError):
        if midstream:
            return BackendStreamCut(
                "the connection broke mid-reply", backend=backend, detail=str(exc)
            )
        return BackendUnavailable(
            f"the connection to {where} failed", backend=backend, detail=str(exc)
        )
    return BackendProtocolError(type(exc).__name__, backend=backend, detail=str(exc))


def _host(exc: httpx.HTTPError) -> str:
    """``host:port`` of the failed request (never the userinfo part of the URL)."""
    try:
        url = exc.request.url
    except RuntimeError:
        return "the server"
    return f"{url.host}:{url.port}" if url.port else url.host


def attributed(error: BackendError, backend: str, secrets: Iterable[str]) -> BackendError:
    """``error`` named after ``backend``, every secret scrubbed from what it shows: the last
    step of every family's mapping."""
    secrets = tuple(secrets)
    error.backend = backend
    error.message = redact(error.message, secrets)
    error.detail = redact(error.detail, secrets)
    error.args = (error.message,)
    return error


def openai_error(
    backend: str,
    failure: Failure,
    *,
    body: bytes = b"",
    secrets: Iterable[str] = (),
    midstream: bool = False,
    now: Clock = time.time,
) -> BackendError:
    """The OpenAI-compatible family's one mapping.

    ``failure`` is a non-2xx response (its ``body`` read by the caller, capped), a transport
    exception, or an error object found inside a 200 stream (``{"error": {...}}``, an
    OpenRouter chunk, llama.cpp's ``error:`` line).
    """
    if isinstance(failure, httpx.HTTPError):
        return attributed(transport_error(backend, failure, midstream=midstream), backend, secrets)
    payload, said = what_it_said(failure, body)
    headers: Mapping[str, str] = {}
    if isinstance(failure, httpx.Response):
        status, headers, in_stream = failure.status_code, failure.headers, False
    else:
        status, in_stream = _status_in(failure), True
    error = classify(backend, status, said, _codes(payload), headers, in_stream=in_stream, now=now)
    return attributed(error, backend, secrets)


def _status_in(payload: Mapping[str, Any]) -> int:
    """An HTTP-like status some servers put in an in-stream error's ``code``."""
    err = payload.get("error", payload)
    code = err.get("code") if isinstance(err, Mapping) else None
    return code if isinstance(code, int) and 400 <= code < 600 else 0


def protocol_error(backend: str, what: str, *, detail: str = "") -> BackendProtocolError:
    return BackendProtocolError(what, backend=backend, detail=truncate(detail))


def unreadable(backend: str, raw: bytes, *, quote: bool = False) -> BackendProtocolError:
    """The error for a whole answer that is not the JSON expected: empty, a page, or text
    (``quote``: the text itself, as what the server said; else "a body that is not JSON")."""
    if not raw.strip():
        return protocol_error(backend, "the server sent an empty body")
    shown = quote or looks_like_html(raw)
    what = describe_body(raw, None) if shown else "a body that is not JSON"
    return protocol_error(
        backend, f"the server sent {what}", detail=raw[:300].decode("utf-8", "replace")
    )
