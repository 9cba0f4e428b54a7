"""The AI Horde family: the shared contract against the loopback Horde (with the scenarios a
polling API has instead of a stream), then the submit on the wire, the Horde's own errors,
polling, cancelling, and the model and worker lists."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from bot.backends.base import (
    Finish,
    FinishReason,
    ModelInfo,
    Status,
    TextDelta,
)
from bot.backends.horde import HordeBackend, build_horde
from bot.backends.presets import PRESETS
from bot.backends.registry import FAMILIES, BackendFactory, build_backend
from bot.backends.retry import RetryingBackend
from bot.config import BackendConfig, Sampler
from bot.errors import (
    BackendError,
    BackendNotFound,
    BackendRateLimited,
    BackendUnavailable,
    ConfigError,
)
from tests.contract.backend_contract import (
    BackendContract,
    ErrorKind,
    Harness,
    cancel_midway,
    collect,
    text_of,
)
from tests.contract.harness import ContractHarness
from tests.fakes.base import Status as HTTPStatus
from tests.fakes.horde_server import (
    ANONYMOUS,
    CORRUPT_PROMPT,
    FLASK_404,
    FLASK_500,
    KUDOS_UPFRONT,
    MAINTENANCE,
    NO_VALID_WORKERS,
    TOKEN_OVERFLOW,
    TOO_MANY_PROMPTS,
    FakeHorde,
    Job,
    horde_error,
    invalid_api_key,
)

SECRET = "horde-key-7a1c3e5f9b"
PROMPT = "[Aria's persona]\nSam: Hello there\nAria:"
POLL = 0.01


# the real factory, polling fast; the retries and everything else as configured
FAST_POLLING: Mapping[str, BackendFactory] = {
    **FAMILIES,
    "horde": functools.partial(build_horde, poll_interval=POLL),
}


@dataclass
class HordeHarness(ContractHarness):
    fake: FakeHorde
    secret: str = SECRET
    config: dict[str, Any] = field(default_factory=dict)
    stream = True
    provider = "horde"
    mode = "text"
    model = "aphrodite/L3-70B"
    prompt = PROMPT
    stop = ("\nSam:",)
    families = FAST_POLLING
    raw_type = "application/json"
    malformed = b'{"id": "00000001-0000", "kud'

    @property
    def disconnected(self) -> asyncio.Event:
        return self.fake.disconnected  # the Horde's "client went away" is a DELETE

    def settings(self) -> dict[str, Any]:
        return super().settings() | {"context_size": 4096}

    def request_count(self) -> int:
        return len(self.fake.submits())

    def error_replies(self, retry_after: str | None) -> Mapping[ErrorKind, object]:
        return {
            "auth": HTTPStatus(401, invalid_api_key(self.secret)),
            "not_found": HTTPStatus(404, FLASK_404),
            "rate_limited": HTTPStatus(
                429, TOO_MANY_PROMPTS, {"retry-after": retry_after} if retry_after else {}
            ),
            "server_error": HTTPStatus(500, FLASK_500),
            "overloaded": HTTPStatus(503, MAINTENANCE),
            "context": HTTPStatus(400, TOKEN_OVERFLOW),
            "quota": HTTPStatus(403, KUDOS_UPFRONT),
        }

    def reply_text(self, deltas: Sequence[str], *, usage: tuple[int, int] | None) -> None:
        self.fake.enqueue(Job(text="".join(deltas)))

    def reply_error_after(self, deltas: Sequence[str]) -> None:
        self.fake.enqueue(Job(outcome="faulted", waits=1))

    def reply_cut_after(self, deltas: Sequence[str]) -> None:
        self.fake.enqueue(Job(text="".join(deltas), poll_errors=["cut"]))

    def reply_endless(self) -> None:
        self.fake.enqueue(Job(outcome="endless"))


@pytest.fixture
async def harness() -> AsyncIterator[HordeHarness]:
    async with FakeHorde(api_key=SECRET) as fake:
        yield HordeHarness(fake)
        assert fake.body_rejections() == []


@pytest.fixture
async def fake() -> AsyncIterator[FakeHorde]:
    async with FakeHorde(api_key=SECRET) as server:
        yield server
        assert server.body_rejections() == []


WAITING = [
    Status("queue position 1, ~7s, kudos 10"),
    Status("a worker is writing the reply, ~3s, kudos 10"),
]


class TestHordeContract(BackendContract):
    """The shared contract. A polling API has no stream: the five scenarios about deltas
    arriving over time are restated in its terms (progress, then the whole text)."""

    async def test_deltas_in_order_then_usage_then_finish(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        assert isinstance(harness, HordeHarness)
        # the whole text arrives as one delta once a worker is done; the Horde reports no
        # token usage, only kudos, which the progress shows while waiting
        harness.reply_text(["Once", " upon", " a time"], usage=(11, 3))
        events, error = await collect(harness.backend(client), harness.request())
        assert error is None
        assert events == [
            *WAITING,
            TextDelta("Once upon a time"),
            Finish(FinishReason.STOP, raw="done"),
        ]

    async def test_in_stream_error_after_first_token_keeps_the_partial(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        assert isinstance(harness, HordeHarness)
        # the Horde's failure after the wait began: a faulted request, never re-submitted
        harness.reply_error_after(["Once"])
        events, error = await collect(harness.backend(client, sleeps=[]), harness.request())
        assert all(isinstance(e, Status) for e in events) and events
        assert isinstance(error, BackendError)
        assert "faulted" in error.user_message()
        assert harness.request_count() == 1
        assert len(harness.fake.deletes) == 1

    async def test_cut_mid_stream_is_a_stream_cut_with_the_partial(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        assert isinstance(harness, HordeHarness)
        # a status answer cut mid-body is a failed poll: polled again, not re-submitted
        harness.reply_cut_after(["Once", " upon"])
        events, error = await collect(harness.backend(client, sleeps=[]), harness.request())
        assert error is None
        assert text_of(events) == "Once upon"
        assert harness.request_count() == 1
        assert len(harness.fake.polls()) == 4  # the cut one, two waiting, done

    async def test_closing_the_stream_closes_the_connection(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        assert isinstance(harness, HordeHarness)
        harness.reply_endless()
        stream = harness.backend(client).stream(harness.request())
        assert isinstance(await anext(stream), Status)
        await stream.aclose()  # type: ignore[attr-defined]
        await asyncio.wait_for(harness.disconnected.wait(), timeout=5)
        assert harness.fake.deletes == [harness.fake.polls()[0].path.rsplit("/", 1)[1]]

    async def test_cancelling_the_task_closes_the_connection(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        assert isinstance(harness, HordeHarness)
        harness.reply_endless()
        events = harness.backend(client).stream(harness.request())
        received = await cancel_midway(events, Status)
        await asyncio.wait_for(harness.disconnected.wait(), timeout=5)
        assert received
        assert len(harness.fake.deletes) == 1


# -- the submit on the wire -----------------------------------------------------------------


async def test_submit_body_and_headers(fake: FakeHorde, client: httpx.AsyncClient) -> None:
    h = HordeHarness(fake)
    sampler = Sampler(temperature=0.8, min_p=0.05, repetition_penalty=1.1, seed=7)
    stops = ("\nSam:", "\nSam:", "\nAria:")
    _, error = await collect(h.backend(client), h.request(sampler=sampler.as_dict(), stop=stops))
    assert error is None
    sent = fake.submits()[0]
    assert sent.path == "/api/v2/generate/text/async"
    assert sent.headers["apikey"] == SECRET
    assert re.fullmatch(r"sillybot:[^:]+:unknown", sent.headers["client-agent"])
    body = sent.body
    assert body["prompt"] == PROMPT
    assert body["models"] == ["aphrodite/L3-70B"]
    assert (body["trusted_workers"], body["slow_workers"]) == (False, True)
    params = body["params"]
    assert (params["n"], params["max_length"], params["max_context_length"]) == (1, 64, 4096)
    assert params["stop_sequence"] == ["\nSam:", "\nAria:"]
    assert {k: params[k] for k in ("temperature", "min_p", "rep_pen")} == {
        "temperature": 0.8,
        "min_p": 0.05,
        "rep_pen": 1.1,
    }
    assert "sampler_seed" not in params  # the Horde takes no seed: dropped, not sent
    assert not any(params[f] for f in ("frmtadsnsp", "frmtrmblln", "frmtrmspch", "frmttriminc"))
    assert [r.method for r in fake.requests] == ["POST", "GET", "GET", "GET"]


async def test_no_key_means_the_anonymous_key(fake: FakeHorde, client: httpx.AsyncClient) -> None:
    h = HordeHarness(fake, secret="", config={"model": ""})
    events, error = await collect(h.backend(client), h.request())
    assert error is None
    assert text_of(events) == "Hello"
    assert {r.headers["apikey"] for r in fake.requests} == {ANONYMOUS}
    assert "models" not in fake.submits()[0].body  # any model will do


async def test_several_models_comma_separated(fake: FakeHorde, client: httpx.AsyncClient) -> None:
    h = HordeHarness(fake, config={"model": "aphrodite/L3-70B, koboldcpp/Fimbulvetr-11B"})
    await collect(h.backend(client), h.request())
    assert fake.submits()[0].body["models"] == ["aphrodite/L3-70B", "koboldcpp/Fimbulvetr-11B"]


@pytest.mark.parametrize(
    ("max_tokens", "context_size", "sent"),
    [(4, 4096, (16, 4096)), (2000, 4096, (1024, 4096)), (512, 300, (512, 512))],
)
async def test_lengths_are_kept_inside_the_hordes_bounds(
    fake: FakeHorde,
    client: httpx.AsyncClient,
    max_tokens: int,
    context_size: int,
    sent: tuple[int, int],
) -> None:
    h = HordeHarness(fake, config={"context_size": context_size})
    _, error = await collect(h.backend(client), h.request(max_tokens=max_tokens))
    assert error is None
    params = fake.submits()[0].body["params"]
    assert (params["max_length"], params["max_context_length"]) == sent


async def test_a_client_agent_from_the_config_replaces_ours(
    fake: FakeHorde, client: httpx.AsyncClient
) -> None:
    agent = "mybot:2.0:me@example.com"
    h = HordeHarness(fake, config={"headers": {"client-agent": agent}})
    await collect(h.backend(client), h.request())
    assert fake.submits()[0].headers["client-agent"] == agent
    assert fake.submits()[0].raw_headers.count("client-agent") == 1


async def test_a_malformed_client_agent_says_how_to_fix_it(
    fake: FakeHorde, client: httpx.AsyncClient
) -> None:
    h = HordeHarness(fake, config={"headers": {"Client-Agent": "mybot"}})
    _, error = await collect(h.backend(client, sleeps=[]), h.request())
    assert error is not None
    assert "name:version:contact" in error.user_message()
    fake.rejections.clear()


async def test_chat_mode_is_refused_at_build_time(client: httpx.AsyncClient) -> None:
    with pytest.raises(ConfigError) as caught:
        build_backend("main", BackendConfig(provider="horde", mode="chat"), client, None)
    assert "mode: text" in caught.value.user_message()


# -- outcomes and the Horde's own errors --------------------------------------------------------


async def test_impossible_request_says_why_and_leaves_the_queue(
    fake: FakeHorde, client: httpx.AsyncClient
) -> None:
    fake.enqueue(Job(outcome="impossible", waits=0, message="Warning: No available workers"))
    h = HordeHarness(fake)
    events, error = await collect(h.backend(client, sleeps=[]), h.request())
    assert events == []
    assert isinstance(error, BackendNotFound)
    assert "sillybot models" in error.user_message()
    assert len(fake.deletes) == 1
    assert h.request_count() == 1


async def test_a_censored_generation_is_a_filtered_finish(
    fake: FakeHorde, client: httpx.AsyncClient
) -> None:
    fake.enqueue(Job(outcome="censored", waits=0))
    h = HordeHarness(fake)
    events, error = await collect(h.backend(client), h.request())
    assert error is None
    assert events == [Finish(FinishReason.FILTERED, raw="censorship:csam")]


@pytest.mark.parametrize(
    ("reply", "kind", "words", "tries"),
    [
        (HTTPStatus(403, KUDOS_UPFRONT), BackendError, "kudos (its credits)", 1),
        (HTTPStatus(400, CORRUPT_PROMPT), BackendError, "content filter", 1),
        (HTTPStatus(400, NO_VALID_WORKERS), BackendNotFound, "sillybot models", 1),
        # the Horde raises MaintenanceMode as a 400; the reference saw 503: both retried
        (HTTPStatus(400, MAINTENANCE), BackendUnavailable, "maintenance", 3),
        (HTTPStatus(400, TOKEN_OVERFLOW), BackendError, "context_size", 1),
        (
            HTTPStatus(
                400,
                {
                    "message": "Input payload validation failed",
                    "errors": {"params.max_length": "4096 is greater than the maximum of 1024"},
                },
            ),
            BackendError,
            "params.max_length: 4096 is greater",
            1,
        ),
    ],
    ids=["kudos", "filtered", "no-workers", "maintenance", "overflow", "validation"],
)
async def test_horde_errors_say_what_to_do(
    fake: FakeHorde,
    client: httpx.AsyncClient,
    reply: HTTPStatus,
    kind: type[BackendError],
    words: str,
    tries: int,
) -> None:
    fake.enqueue(reply, reply, reply)
    h = HordeHarness(fake)
    _, error = await collect(h.backend(client, sleeps=[]), h.request())
    assert type(error) is kind
    assert words in error.user_message()
    assert h.request_count() == tries


async def test_too_many_prompts_waits_as_asked(fake: FakeHorde, client: httpx.AsyncClient) -> None:
    fake.enqueue(HTTPStatus(429, TOO_MANY_PROMPTS, {"retry-after": "3"}), Job())
    sleeps: list[float] = []
    h = HordeHarness(fake)
    events, error = await collect(h.backend(client, sleeps=sleeps), h.request())
    assert error is None
    assert text_of(events) == "Hello"
    assert sleeps == [3]


async def test_an_ip_timeout_is_a_rate_limit_with_its_wait(
    fake: FakeHorde, client: httpx.AsyncClient
) -> None:
    timeout = horde_error(
        "Due to abuse prevention, your IP address has been put into timeout for 42 more "
        "seconds. Please try again later, or contact us on discord if you think this was an "
        "error.",
        "TimeoutIP",
    )
    fake.enqueue(HTTPStatus(403, timeout))
    h = HordeHarness(fake)
    backend = h.backend(client, sleeps=[])
    assert isinstance(backend, RetryingBackend)
    _, error = await collect(backend.inner, h.request())
    assert isinstance(error, BackendRateLimited)
    assert error.retry_after == 42


# -- polling ------------------------------------------------------------------------------------


async def test_progress_is_shown_only_when_it_changes(
    fake: FakeHorde, client: httpx.AsyncClient
) -> None:
    fake.enqueue(Job(outcome="endless", waits=2))
    h = HordeHarness(fake)
    shown: list[Any] = []

    async def consume() -> None:
        async for event in h.backend(client).stream(h.request()):
            shown.append(event)  # noqa: PERF401 - what arrived before the cancel is the point

    task = asyncio.create_task(consume())
    await asyncio.wait_for(fake.wait_polls(8), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert shown == [
        Status("queue position 1, ~7s, kudos 10"),
        Status("a worker is writing the reply, ~3s, kudos 10"),
    ]


async def test_a_rate_limited_poll_waits_and_polls_again(
    fake: FakeHorde, client: httpx.AsyncClient
) -> None:
    limited = HTTPStatus(429, {"message": "Rate limit exceeded"}, {"retry-after": "0"})
    fake.enqueue(Job(poll_errors=[limited, HTTPStatus(502, FLASK_500)]))
    h = HordeHarness(fake)
    events, error = await collect(h.backend(client, sleeps=[]), h.request())
    assert error is None
    assert text_of(events) == "Hello"
    assert h.request_count() == 1


async def test_polls_failing_again_and_again_give_up_and_cancel(
    fake: FakeHorde, client: httpx.AsyncClient
) -> None:
    # each request given up is deleted; with nothing shown yet, the retry policy submits a
    # fresh one (three tries in all, as for any failure before the first event)
    fake.enqueue(*[Job(poll_errors=[HTTPStatus(500, FLASK_500)] * 5)] * 3)
    h = HordeHarness(fake)
    events, error = await collect(h.backend(client, sleeps=[]), h.request())
    assert events == []
    assert isinstance(error, BackendUnavailable)
    assert len(fake.polls()) == 15
    assert len(fake.deletes) == 3
    assert h.request_count() == 3


async def test_an_expired_request_says_so(fake: FakeHorde, client: httpx.AsyncClient) -> None:
    expired = horde_error("Waiting Prompt with ID 'x' not found.", "RequestNotFound")
    fake.enqueue(Job(poll_errors=[HTTPStatus(404, expired)]))
    h = HordeHarness(fake)
    _, error = await collect(h.backend(client, sleeps=[]), h.request())
    assert error is not None
    assert "expired" in error.user_message()
    assert len(fake.polls()) == 1  # a definite answer: not polled again


async def test_waiting_too_long_gives_up_and_cancels(
    fake: FakeHorde, client: httpx.AsyncClient
) -> None:
    fake.enqueue(Job(outcome="endless"))
    backend = HordeBackend(
        "main",
        client,
        preset=PRESETS["horde"],
        base_url=fake.base_url,
        poll_interval=POLL,
        max_wait=0.05,
    )
    events, error = await collect(backend, HordeHarness(fake).request())
    assert events and all(isinstance(e, Status) for e in events)
    assert isinstance(error, BackendUnavailable)
    assert "did not answer within" in error.user_message()
    assert len(fake.deletes) == 1


# -- models and workers -------------------------------------------------------------------------


async def test_models_with_workers_busiest_first(
    fake: FakeHorde, client: httpx.AsyncClient
) -> None:
    backend = HordeHarness(fake).backend(client)
    assert isinstance(backend, RetryingBackend)
    assert await backend.list_models() == [
        ModelInfo("aphrodite/L3-70B", 16384),
        ModelInfo("koboldcpp/Fimbulvetr-11B", 4096),  # the 32k worker is offline
    ]
    assert [r.path for r in fake.requests] == ["/api/v2/status/models", "/api/v2/workers"]
    inner = backend.inner
    assert isinstance(inner, HordeBackend)
    workers = await inner.list_workers()
    assert [(w.name, w.trusted, w.online) for w in workers][:2] == [
        ("w1", True, True),
        ("w2", False, True),
    ]


async def test_the_horde_gets_the_kobold_samplers_its_workers_take(
    fake: FakeHorde, client: httpx.AsyncClient
) -> None:
    sampler = Sampler(
        temperature=0.7,
        top_k=40,
        min_p=0.05,
        typical_p=0.95,
        repetition_penalty=1.1,
        repetition_penalty_range=1024,
        dynatemp_low=0.5,
        dynatemp_high=1.5,
        smoothing_factor=0.2,
        ban_eos_token=False,
        sampler_order=(6, 0, 1, 3, 4, 2, 5),
        seed=42,
        mirostat_mode=2,
        dry_multiplier=0.8,
        xtc_probability=0.5,
        logit_bias={"1": 2.0},
        grammar="root ::= .",
        banned_strings=("x",),
    )
    h = HordeHarness(fake)
    _, error = await collect(h.backend(client), h.request(sampler=sampler.as_dict()))
    assert error is None
    params = fake.submits()[0].body["params"]
    assert {k: params[k] for k in params if not k.startswith(("frmt", "max_", "stop", "n"))} == {
        "temperature": 1.0,
        "dynatemp_range": 0.5,
        "top_k": 40,
        "min_p": 0.05,
        "typical": 0.95,
        "rep_pen": 1.1,
        "rep_pen_range": 1024,
        "smoothing_factor": 0.2,
        "use_default_badwordsids": False,
        "sampler_order": [6, 0, 1, 3, 4, 2, 5],
    }


async def test_an_unregistered_key_points_to_the_anonymous_one(
    fake: FakeHorde, client: httpx.AsyncClient
) -> None:
    wrong = "horde-wrong-31e0c9"
    h = HordeHarness(fake)
    _, error = await collect(h.backend(client, api_key=wrong, sleeps=[]), h.request())
    assert error is not None
    assert "anonymous key" in error.user_message()
    assert wrong not in error.user_message() + error.detail
    assert fake.requests[0].headers["apikey"] == wrong  # sent, as the Horde wants it
    fake.rejections.clear()
