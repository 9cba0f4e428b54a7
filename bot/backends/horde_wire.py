"""AI Horde's text wire: the async submit body out; the job, its status, the model and worker
lists in; the family's one error mapping, by the ``rc`` code every Horde error carries.

Pure functions, no I/O: :mod:`bot.backends.horde` submits, polls and cancels. The Horde's
``params`` are the Kobold generate settings (:func:`bot.backends.kobold_wire.generate_params`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from bot.backends.base import (
    Finish,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    StreamEvent,
    TextDelta,
)
from bot.backends.errors import (
    Failure,
    attributed,
    classify,
    protocol_error,
    retry_after,
    transport_error,
    truncate,
    what_it_said,
)
from bot.backends.kobold_wire import generate_params
from bot.backends.presets import ProviderPreset
from bot.errors import (
    BackendAuthError,
    BackendError,
    BackendNotFound,
    BackendRateLimited,
    BackendUnavailable,
)

_log = logging.getLogger(__name__)

FAMILY = "horde"
ANONYMOUS_KEY = "0000000000"
SUBMIT_PATH = "/generate/text/async"
STATUS_PATH = "/generate/text/status/"

# The Horde's bounds for a text request's lengths; outside them it answers 400.
LENGTH_BOUNDS = (16, 1024)
CONTEXT_BOUNDS = (80, 32768)
# The prompt engine formats the reply; the Horde's own clean-ups would fight it.
_FORMAT_FLAGS = {
    "frmtadsnsp": False,
    "frmtrmblln": False,
    "frmtrmspch": False,
    "frmttriminc": False,
}
_TIMEOUT_SECONDS = re.compile(r"timeout for (\d+) more seconds")

CHAT_HINT = "AI Horde completes a templated prompt: set `mode: text`"
KUDOS_HINT = (
    "AI Horde wants kudos (its credits) up front for a request this large from an anonymous "
    "or low-kudos key: lower `max_tokens` or `context_size`, or use a registered key with kudos"
)
NO_WORKER_HINT = (
    "no AI Horde worker can take this request: check `model` against `sillybot models` "
    "(models with workers online), or lower `max_tokens` and `context_size`"
)
CONTEXT_HINT = (
    "the reply length must fit in the context: lower `max_tokens` or raise `context_size`"
)
EXPIRED_HINT = (
    "the request expired on AI Horde before a worker finished it; try again, or pick models "
    "with more workers"
)
FAULTED_HINT = "a worker failed on this request; try again, or pick other models"
STOP_HINT = "AI Horde takes at most 128 stop strings, 2000 characters in all; send fewer"
_RC: Mapping[str, tuple[type[BackendError], str]] = {
    "InvalidAPIKey": (
        BackendAuthError,
        "the AI Horde key is not registered: fix the variable `api_key_env` names, or unset "
        "`api_key_env` to use the anonymous key",
    ),
    "AnonForbidden": (
        BackendAuthError,
        "this needs a registered AI Horde key (https://aihorde.net/register) in `api_key_env`",
    ),
    "KudosUpfront": (BackendError, KUDOS_HINT),
    "CorruptPrompt": (
        BackendError,
        "AI Horde's content filter refused the prompt; change it or use another backend",
    ),
    "TooManyPrompts": (
        BackendRateLimited,
        "AI Horde takes only a few requests at once per key; wait for the others to finish",
    ),
    "TimeoutIP": (
        BackendRateLimited,
        "AI Horde put this IP address in a timeout against abuse; wait and try again",
    ),
    "NoValidWorkers": (BackendNotFound, NO_WORKER_HINT),
    "MaintenanceMode": (
        BackendUnavailable,
        "AI Horde is in maintenance mode; try again later or switch backends",
    ),
    "TokenOverflow": (BackendError, CONTEXT_HINT),
    "InvalidPromptSize": (BackendError, "the prompt is too long: lower `context_size`"),
    "TooManyStopSequences": (BackendError, STOP_HINT),
    "ExcessiveStopSequence": (BackendError, STOP_HINT),
    "MissingFullSamplerOrder": (
        BackendError,
        "a custom `sampler_order` must list all seven samplers",
    ),
    "BadClientAgent": (
        BackendError,
        "the Client-Agent header must read name:version:contact; fix it in `headers`",
    ),
    "RequestNotFound": (BackendError, EXPIRED_HINT),
    "RequestExpired": (BackendError, EXPIRED_HINT),
}


@dataclass(frozen=True, slots=True)
class HordeOptions:
    """Who may take the request: ``models`` (empty: any), ``workers`` (only these, or with
    ``worker_blacklist`` any but these), only ``trusted_workers``, or ``slow_workers`` too."""

    models: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()
    worker_blacklist: bool = False
    trusted_workers: bool = False
    slow_workers: bool = True


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    kudos: float
    message: str = ""  # e.g. "no available workers can fulfill this request" (then is_possible)


@dataclass(frozen=True, slots=True)
class HordeStatus:
    done: bool
    faulted: bool
    is_possible: bool
    queue_position: int
    wait_time: int
    processing: int
    kudos: float
    generations: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class HordeWorker:
    name: str
    models: tuple[str, ...]
    max_context_length: int | None
    max_length: int | None
    trusted: bool
    online: bool


def submit_body(
    request: GenerationRequest,
    preset: ProviderPreset,
    *,
    context_size: int,
    names: Mapping[str, str],
    options: HordeOptions,
) -> dict[str, Any]:
    """``POST /generate/text/async``: the prompt, the Kobold settings as ``params``, and who
    may take it. Lengths are kept inside the Horde's bounds rather than refused there."""
    params = generate_params(
        request, preset, context_size=context_size, names=names, family=FAMILY
    )
    length = _clamp(params["max_length"], LENGTH_BOUNDS, "max_length")
    context = _clamp(params["max_context_length"], CONTEXT_BOUNDS, "max_context_length")
    params["max_length"] = length
    params["max_context_length"] = max(context, length)  # else rc TokenOverflow
    params["n"] = 1
    params.update(_FORMAT_FLAGS)
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "params": params,
        "trusted_workers": options.trusted_workers,
        "slow_workers": options.slow_workers,
    }
    if options.models:
        body["models"] = list(options.models)
    if options.workers:
        body["workers"] = list(options.workers)
        body["worker_blacklist"] = options.worker_blacklist
    return body


def _clamp(value: int, bounds: tuple[int, int], what: str) -> int:
    low, high = bounds
    if low <= value <= high:
        return value
    _log.debug("AI Horde takes %s from %d to %d; sending %s", what, low, high, value)
    return min(max(value, low), high)


def parse_job(backend: str, payload: Any) -> Job:
    """The submit answer, 202 ``{"id", "kudos", "message"?}``."""
    ident = payload.get("id") if isinstance(payload, Mapping) else None
    if not isinstance(ident, str) or not ident:
        raise protocol_error(backend, "AI Horde sent no request id", detail=truncate(str(payload)))
    kudos = payload.get("kudos")
    message = payload.get("message")
    return Job(
        ident,
        float(kudos) if isinstance(kudos, int | float) else 0.0,
        message if isinstance(message, str) else "",
    )


def parse_status(backend: str, payload: Any) -> HordeStatus:
    """``GET /generate/text/status/{id}``."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("done"), bool):
        raise protocol_error(
            backend, "AI Horde sent a status that could not be read", detail=truncate(str(payload))
        )
    generations = payload.get("generations")
    return HordeStatus(
        done=payload["done"],
        faulted=payload.get("faulted") is True,
        is_possible=payload.get("is_possible") is not False,
        queue_position=_int(payload.get("queue_position")),
        wait_time=_int(payload.get("wait_time")),
        processing=_int(payload.get("processing")),
        kudos=float(payload["kudos"]) if isinstance(payload.get("kudos"), int | float) else 0.0,
        generations=tuple(g for g in generations if isinstance(g, Mapping))
        if isinstance(generations, list)
        else (),
    )


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def progress(status: HordeStatus, job: Job) -> str:
    """What to show while waiting: ``queue position 3, ~12s, kudos 10``."""
    kudos = status.kudos or job.kudos
    if status.processing and not status.queue_position:
        where = "a worker is writing the reply"
    else:
        where = f"queue position {status.queue_position}"
    return f"{where}, ~{status.wait_time}s, kudos {kudos:g}"


def result_events(backend: str, status: HordeStatus) -> list[StreamEvent]:
    """A finished request: the generation's text as one delta, then the finish (filtered
    when the worker censored it)."""
    if not status.generations or not isinstance(status.generations[0].get("text"), str):
        raise protocol_error(backend, "AI Horde finished the request but sent no text")
    generation = status.generations[0]
    text: str = generation["text"]
    events: list[StreamEvent] = [TextDelta(text)] if text else []
    metadata = generation.get("gen_metadata")
    for entry in metadata if isinstance(metadata, list) else ():
        if isinstance(entry, Mapping) and entry.get("type") == "censorship":
            events.append(Finish(FinishReason.FILTERED, raw=f"censorship:{entry.get('value')}"))
            return events
    events.append(Finish(FinishReason.STOP, raw="done"))
    return events


def parse_workers(payload: Any) -> list[HordeWorker]:
    """``GET /workers?type=text``."""
    workers = []
    for entry in payload if isinstance(payload, list) else ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        models = entry.get("models")
        ctx, length = entry.get("max_context_length"), entry.get("max_length")
        workers.append(
            HordeWorker(
                entry["name"],
                tuple(m for m in models if isinstance(m, str)) if isinstance(models, list) else (),
                ctx if isinstance(ctx, int) else None,
                length if isinstance(length, int) else None,
                entry.get("trusted") is True,
                entry.get("online") is not False,
            )
        )
    return workers


def parse_models(backend: str, payload: Any, workers: Iterable[HordeWorker]) -> list[ModelInfo]:
    """``GET /status/models?type=text``: the models with workers online, busiest first, each
    with the largest context one of its online workers offers."""
    if not isinstance(payload, list):
        raise protocol_error(
            backend,
            "AI Horde sent a model list that could not be read",
            detail=truncate(str(payload)),
        )
    context: dict[str, int] = {}
    for worker in workers:
        if worker.online and worker.max_context_length:
            for model in worker.models:
                context[model] = max(context.get(model, 0), worker.max_context_length)
    rows = []
    for entry in payload:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        count = entry.get("count")
        if isinstance(count, int) and count < 1:
            continue
        rows.append((-(count if isinstance(count, int) else 0), entry["name"]))
    return [ModelInfo(name, context.get(name)) for _, name in sorted(rows)]


def horde_error(
    backend: str,
    failure: Failure,
    *,
    body: bytes = b"",
    secrets: Iterable[str] = (),
    midstream: bool = False,
    now: Callable[[], float] = time.time,
) -> BackendError:
    """The Horde family's one mapping: a non-2xx response (its ``body`` read, capped) or a
    transport failure. Errors read ``{"message", "rc"}``; validation errors
    ``{"message": "Input payload validation failed", "errors": {field: why}}``."""
    if isinstance(failure, httpx.HTTPError):
        return attributed(transport_error(backend, failure, midstream=midstream), backend, secrets)
    if not isinstance(failure, httpx.Response):
        said = str(failure.get("message", "")) or truncate(str(failure))
        return attributed(BackendError(said, backend=backend), backend, secrets)
    payload, said = what_it_said(failure, body)
    fields = payload.get("errors") if isinstance(payload, Mapping) else None
    if isinstance(fields, Mapping) and fields:
        said += ": " + "; ".join(f"{k}: {v}" for k, v in list(fields.items())[:5])
    rc = payload.get("rc") if isinstance(payload, Mapping) else None
    status = failure.status_code
    known = _RC.get(rc) if isinstance(rc, str) else None
    if known is None:
        error = classify(backend, status, said, "", failure.headers, now=now)
        if status == 404 and not isinstance(rc, str):
            error.hint = "check `base_url` (AI Horde's is https://aihorde.net/api/v2)"
        return attributed(error, backend, secrets)
    kind, hint = known
    message = f"HTTP {status}: {truncate(said)}"
    detail = f"rc={rc}: {truncate(said, 2000)}"
    if kind is BackendRateLimited:
        match = _TIMEOUT_SECONDS.search(said)
        wait = float(match.group(1)) if match else retry_after(failure.headers, now)
        error = BackendRateLimited(
            message, retry_after=wait, backend=backend, detail=detail, hint=hint
        )
    else:
        error = kind(message, backend=backend, detail=detail, hint=hint)
    return attributed(error, backend, secrets)
