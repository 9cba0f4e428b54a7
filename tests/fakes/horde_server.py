"""A scriptable loopback AI Horde (real HTTP on 127.0.0.1, port 0, under ``/api/v2``).

It checks every request the way the Horde does: ``Client-Agent`` present and shaped
``name:version:contact`` (else 400 ``BadClientAgent``), ``apikey`` either the anonymous
``0000000000`` or the registered key (else 401 ``InvalidAPIKey``), and the submit body's
keys, types and bounds (Flask-RESTX's 400 ``Input payload validation failed`` with per-field
``errors``, or the Horde's own ``rc`` codes: ``TokenOverflow``, ``MissingFullSamplerOrder``,
``TooManyStopSequences``). It answers in the real shapes: 202 ``{"id", "kudos"}`` on submit,
the status object on each poll, the status object on ``DELETE``.

Submits are scripted with :meth:`FakeHorde.enqueue`: a :class:`Job` (how its polls go), or
an HTTP error (:class:`Status`), exact bytes (:class:`Raw`) or a huge body (:class:`Huge`).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from tests.fakes.base import (
    Huge,
    LoopbackServer,
    Raw,
    Recorded,
    Status,
    drop,
    send_raw,
    status_response,
)

ANONYMOUS = "0000000000"
PREFIX = "/api/v2"
_AGENT = re.compile(r"^[^:]+:[^:]+:[^:]+$")

TOP_LEVEL = frozenset(
    {
        "prompt",
        "params",
        "models",
        "workers",
        "worker_blacklist",
        "trusted_workers",
        "slow_workers",
        "validated_backends",
        "softprompt",
        "dry_run",
        "proxied_account",
        "disable_batching",
        "allow_downgrade",
        "webhook",
        "style",
        "extra_source_images",
    }
)
PARAMS = frozenset(
    {
        "n",
        "frmtadsnsp",
        "frmtrmblln",
        "frmtrmspch",
        "frmttriminc",
        "max_context_length",
        "max_length",
        "rep_pen",
        "rep_pen_range",
        "rep_pen_slope",
        "singleline",
        "temperature",
        "tfs",
        "top_a",
        "top_k",
        "top_p",
        "typical",
        "sampler_order",
        "use_default_badwordsids",
        "stop_sequence",
        "min_p",
        "smoothing_factor",
        "dynatemp_range",
        "dynatemp_exponent",
    }
)


def horde_error(message: str, rc: str) -> dict[str, str]:
    return {"message": message, "rc": rc}


def invalid_api_key(key: str) -> dict[str, str]:
    # a careless server that echoes the key it got: the client must still never show it
    return horde_error(
        f"No user matching sent API Key ({key}). Have you remembered to register at "
        "https://aihorde.net/register ?",
        "InvalidAPIKey",
    )


KUDOS_UPFRONT = horde_error(
    "Due to heavy demand, for requests over 300 tokens or 4096 context, the client needs to "
    "already have the required kudos. This request requires 52 kudos to fulfil.",
    "KudosUpfront",
)
TOKEN_OVERFLOW = horde_error(
    "You cannot request more tokens than your context length.", "TokenOverflow"
)
TOO_MANY_PROMPTS = horde_error(
    "Parallel requests (3) exceeded user limit (3). Please try again later or request to "
    "increase your concurrency.",
    "TooManyPrompts",
)
MAINTENANCE = horde_error(
    "Horde has entered maintenance mode. Please try again later.", "MaintenanceMode"
)
CORRUPT_PROMPT = horde_error(
    "This prompt appears to violate our terms of service and will be reported. Please contact "
    "us if you think this is an error.",
    "CorruptPrompt",
)
NO_VALID_WORKERS = horde_error(
    "No active worker found to fulfill this request. Please Try again later...", "NoValidWorkers"
)
FLASK_404 = {
    "message": "The requested URL was not found on the server. If you entered the URL "
    "manually please check your spelling and try again."
}
FLASK_500 = {"message": "Internal Server Error"}

MODELS = [
    {"name": "koboldcpp/Fimbulvetr-11B", "count": 2, "performance": 12.0, "queued": 0,
     "jobs": 0, "eta": 0, "type": "text"},
    {"name": "aphrodite/L3-70B", "count": 5, "performance": 20.0, "queued": 4000,
     "jobs": 3, "eta": 30, "type": "text"},
    {"name": "koboldcpp/gone", "count": 0, "performance": 0.0, "queued": 0,
     "jobs": 0, "eta": 0, "type": "text"},
]  # fmt: skip
WORKERS = [
    {"name": "w1", "id": "1", "models": ["aphrodite/L3-70B"], "max_context_length": 8192,
     "max_length": 512, "trusted": True, "online": True, "type": "text"},
    {"name": "w2", "id": "2", "models": ["aphrodite/L3-70B"], "max_context_length": 16384,
     "max_length": 512, "trusted": False, "online": True, "type": "text"},
    {"name": "w3", "id": "3", "models": ["koboldcpp/Fimbulvetr-11B"], "max_context_length": 4096,
     "max_length": 256, "trusted": False, "online": True, "type": "text"},
    {"name": "w4", "id": "4", "models": ["koboldcpp/Fimbulvetr-11B"], "max_context_length": 32768,
     "max_length": 256, "trusted": False, "online": False, "type": "text"},
]  # fmt: skip

Outcome = Literal["done", "faulted", "impossible", "endless", "censored"]


@dataclass(frozen=True)
class Job:
    """A submitted request: ``waits`` polls answer "waiting" (queue position counting down,
    then processing), then the outcome. ``poll_errors`` answer the first polls instead (a
    :class:`Status`, :class:`Raw`, or ``"cut"`` for a body cut mid-JSON)."""

    text: str = "Hello"
    waits: int = 2
    kudos: float = 10.0
    outcome: Outcome = "done"
    poll_errors: Sequence[Status | Raw | Literal["cut"]] = ()
    message: str = ""


Reply = Job | Status | Raw | Huge


@dataclass
class _Live:
    job: Job
    polls: int = 0
    errors: deque[Status | Raw | Literal["cut"]] = field(default_factory=deque)
    deleted: bool = False


class FakeHorde(LoopbackServer):
    """The fake Horde. ``api_key`` is the one registered key (the anonymous key always
    works, as on the real Horde)."""

    client_faults = ("apikey",)

    def __init__(self, *, api_key: str = "horde-key-7a1c3e5f9b") -> None:
        super().__init__(PREFIX)
        self.api_key = api_key
        self.deletes: list[str] = []
        self._polled = asyncio.Condition()
        self._live: dict[str, _Live] = {}

    def submits(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]

    def polls(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "GET" and "/status/" in r.path]

    async def wait_polls(self, count: int) -> None:
        """Return once ``count`` status polls have arrived."""
        async with self._polled:
            await self._polled.wait_for(lambda: len(self.polls()) >= count)

    # -- request handling ----------------------------------------------------------------

    async def route(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        headers, body = recorded.headers, recorded.body
        route = request.path.removeprefix(PREFIX)
        agent = headers.get("client-agent", "")
        if not _AGENT.match(agent):
            return self.reject(
                f"client agent {agent!r}",
                400,
                horde_error(
                    "Please provide a Client-Agent as name:version:contact", "BadClientAgent"
                ),
            )
        key = headers.get("apikey", "")
        if key not in (ANONYMOUS, self.api_key):
            return self.reject(f"apikey {key!r}", 401, invalid_api_key(key))
        if request.method == "POST" and route == "/generate/text/async":
            return await self._submit(request, body)
        if route.startswith("/generate/text/status/"):
            ident = route.rsplit("/", 1)[1]
            if request.method == "GET":
                return await self._poll(request, ident)
            if request.method == "DELETE":
                return self._delete(ident)
        if request.method == "GET" and route in ("/status/models", "/workers"):
            if request.query.get("type") != "text":
                return self.reject(f"{route} without type=text", 400, {"message": "type"})
            return web.json_response(MODELS if route == "/status/models" else WORKERS)
        return self.reject(f"unknown route {request.method} {request.path}", 404, FLASK_404)

    def _check(self, body: Any) -> tuple[str, Any]:
        """'' when the submit is valid, else the problem and the Horde's 400 body."""
        if not isinstance(body, dict):
            return "not a JSON object", {"message": "Input payload validation failed"}
        fields: dict[str, str] = {}
        for key in sorted(set(body) - TOP_LEVEL):
            fields[key] = "Additional properties are not allowed"
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            fields["prompt"] = "'prompt' is a required property"
        params = body.get("params")
        if not isinstance(params, dict):
            fields["params"] = "not an object"
            params = {}
        for key in sorted(set(params) - PARAMS):
            fields[f"params.{key}"] = "Additional properties are not allowed"
        for key, low, high in (("max_length", 16, 1024), ("max_context_length", 80, 32768)):
            value = params.get(key)
            if value is not None and not (isinstance(value, int) and low <= value <= high):
                fields[f"params.{key}"] = f"{value!r} is not in range {low}..{high}"
        models = body.get("models")
        if models is not None and not (
            isinstance(models, list) and all(isinstance(m, str) for m in models)
        ):
            fields["models"] = "not a list of strings"
        if fields:
            return f"invalid fields {fields}", {
                "message": "Input payload validation failed",
                "errors": fields,
            }
        if params.get("max_context_length", 2048) < params.get("max_length", 80):
            return "token overflow", TOKEN_OVERFLOW
        order = params.get("sampler_order")
        if order is not None and len(set(order)) < 7:
            return "sampler order", horde_error(
                "When sending a custom sampler order, you need to specify all possible "
                "samplers in the order",
                "MissingFullSamplerOrder",
            )
        stops = params.get("stop_sequence")
        if stops is not None and len(set(stops)) > 128:
            return "stop sequences", horde_error(
                "Too many stop sequences specified (max allowed is 128).", "TooManyStopSequences"
            )
        return "", None

    async def _submit(self, request: web.Request, body: Any) -> web.StreamResponse:
        problem, refusal = self._check(body)
        if problem:
            return self.reject(problem, 400, refusal)
        reply = self.next_reply(Job())
        if isinstance(reply, Status):
            return status_response(reply)
        if isinstance(reply, Raw):
            return await send_raw(request, reply)
        if isinstance(reply, Huge):
            return web.json_response(
                {"id": "x", "kudos": 1, "message": "y" * reply.size}, status=202
            )
        ident = f"{len(self._live) + 1:08d}-0000-4000-8000-000000000000"
        self._live[ident] = _Live(reply, errors=deque(reply.poll_errors))
        answer: dict[str, Any] = {"id": ident, "kudos": reply.kudos}
        if reply.message:
            answer["message"] = reply.message
        return web.json_response(answer, status=202)

    def _status(self, live: _Live) -> dict[str, Any]:
        job = live.job
        waiting = live.polls <= job.waits or job.outcome == "endless"
        position = max(job.waits - live.polls, 0)
        status: dict[str, Any] = {
            "finished": 0,
            "processing": 1 if waiting and position == 0 else 0,
            "restarted": 0,
            "waiting": 1 if waiting and position > 0 else 0,
            "done": False,
            "faulted": False,
            "wait_time": 4 * position + 3 if waiting else 0,
            "queue_position": position if waiting else 0,
            "kudos": job.kudos,
            "is_possible": True,
            "generations": [],
        }
        if waiting or live.deleted:
            return status
        if job.outcome == "faulted":
            status["faulted"] = True
        elif job.outcome == "impossible":
            status["is_possible"] = False
        else:
            generation: dict[str, Any] = {
                "worker_id": "2",
                "worker_name": "w2",
                "model": "aphrodite/L3-70B",
                "state": "ok",
                "text": job.text,
                "seed": 1,
            }
            if job.outcome == "censored":
                generation["text"] = ""
                generation["gen_metadata"] = [{"type": "censorship", "value": "csam"}]
            status.update(done=True, finished=1, generations=[generation])
        return status

    async def _poll(self, request: web.Request, ident: str) -> web.StreamResponse:
        async with self._polled:
            self._polled.notify_all()
        live = self._live.get(ident)
        if live is None:
            return self.reject(
                f"status of unknown {ident}",
                404,
                horde_error(f"Waiting Prompt with ID '{ident}' not found.", "RequestNotFound"),
            )
        if live.errors:
            failure = live.errors.popleft()
            if failure == "cut":
                response = web.StreamResponse(headers={"Content-Type": "application/json"})
                await response.prepare(request)
                await response.write(b'{"finished": 0, "proce')
                drop(request)
                return response
            if isinstance(failure, Raw):
                return await send_raw(request, failure)
            payload = failure.body
            return web.json_response(payload, status=failure.status, headers=dict(failure.headers))
        live.polls += 1
        return web.json_response(self._status(live))

    def _delete(self, ident: str) -> web.Response:
        live = self._live.get(ident)
        if live is None:
            return self.reject(
                f"delete of unknown {ident}",
                404,
                horde_error(f"Waiting Prompt with ID '{ident}' not found.", "RequestNotFound"),
            )
        live.deleted = True
        self.deletes.append(ident)
        self.disconnected.set()
        return web.json_response(self._status(live))
