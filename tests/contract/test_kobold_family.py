"""The Kobold family (KoboldCpp's native API, KoboldAI Classic): the shared contract against
the loopback KoboldCpp, then golden transcripts, the body on the wire, the abort, the perf
probe, blocking answers and KoboldAI Classic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from bot.backends.base import (
    Finish,
    FinishReason,
    ModelInfo,
    TextDelta,
    Usage,
)
from bot.backends.kobold import KoboldBackend
from bot.backends.presets import PRESETS
from bot.backends.registry import build_backend
from bot.backends.retry import RetryingBackend
from bot.config import BackendConfig, Sampler
from bot.errors import (
    BackendAuthError,
    BackendError,
    BackendStreamCut,
    BackendUnavailable,
    ConfigError,
)
from tests.contract.backend_contract import (
    BackendContract,
    ErrorKind,
    Harness,
    assert_no_secret,
    collect,
    replay,
    text_of,
)
from tests.contract.harness import CHATML, ContractHarness
from tests.fakes.base import Endless, Raw, Status
from tests.fakes.kobold_server import (
    BUSY,
    GOLDEN_BLOCKING,
    GOLDEN_STREAM,
    MODEL,
    NOT_FOUND,
    UNAUTHORIZED,
    ErrorAfter,
    FakeKobold,
)
from tests.fakes.openai_wire import Text

SECRET = "kcpp-pass-5e1f0a9c7d3b"
PROMPT = CHATML
# KoboldCpp never rate-limits or answers 500 itself; a reverse proxy in front of it does
PROXY_429 = b"<html><head><title>429 Too Many Requests</title></head><body>nginx</body></html>"
PROXY_500 = b"<html><head><title>500 Internal Server Error</title></head><body>nginx</body></html>"


@dataclass
class KoboldHarness(ContractHarness):
    fake: FakeKobold
    provider: str = "koboldcpp-native"
    stream: bool = True
    secret: str = SECRET
    config: dict[str, Any] = field(default_factory=dict)
    mode = "text"
    malformed = b'event: message\ndata: {"token":"Hi","finish_rea\n\n'

    def settings(self) -> dict[str, Any]:
        return super().settings() | {"context_size": 4096}

    def request_count(self) -> int:
        return len(self.fake.generations())

    def error_replies(self, retry_after: str | None) -> Mapping[ErrorKind, object]:
        return {
            "auth": Status(401, UNAUTHORIZED),
            "not_found": Status(404, NOT_FOUND),
            "rate_limited": Status(
                429, PROXY_429, {"retry-after": retry_after} if retry_after else {}
            ),
            "server_error": Status(500, PROXY_500),
            "overloaded": Status(503, BUSY),
        }

    def reply_text(self, deltas: Sequence[str], *, usage: tuple[int, int] | None) -> None:
        self.fake.enqueue(Text(deltas, usage=usage))

    def reply_error_after(self, deltas: Sequence[str]) -> None:
        self.fake.enqueue(ErrorAfter(deltas))


@pytest.fixture
async def harness() -> AsyncIterator[KoboldHarness]:
    async with FakeKobold(password=SECRET) as fake:
        yield KoboldHarness(fake)
        assert fake.body_rejections() == []


class TestKoboldCppContract(BackendContract):
    @pytest.mark.parametrize("kind", ["context", "quota"])
    async def test_context_and_quota_errors_say_what_to_do_and_are_not_retried(
        self, harness: Harness, client: httpx.AsyncClient, kind: ErrorKind
    ) -> None:
        pytest.skip(
            "KoboldCpp is a local server with no account or quota, and it trims an over-long "
            "prompt to its context itself: neither error exists on its wire"
        )


@pytest.fixture
async def fake() -> AsyncIterator[FakeKobold]:
    async with FakeKobold(password=SECRET) as server:
        yield server
        assert server.body_rejections() == []


def harness_on(fake: FakeKobold, **kw: Any) -> KoboldHarness:
    return KoboldHarness(fake, **kw)


# -- golden transcripts and the perf probe ------------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 7])
async def test_golden_stream(fake: FakeKobold, client: httpx.AsyncClient, split: int) -> None:
    fake.perf = {"last_input_count": 12, "last_token_count": 1, "stop_reason": 1}
    h = harness_on(fake)
    events, error = await replay(h, client, GOLDEN_STREAM, split=split)
    assert error is None
    assert events == [TextDelta("Hi"), Usage(12, 1), Finish(FinishReason.STOP, raw="stop")]


async def test_utf8_split_mid_character(fake: FakeKobold, client: httpx.AsyncClient) -> None:
    h = harness_on(fake)
    events, error = await replay(
        h, client, GOLDEN_STREAM.replace(b"Hi", "Grüße 🐉".encode()), split=1
    )
    assert error is None
    assert text_of(events) == "Grüße 🐉"


async def test_a_stop_string_stop_is_told_apart_from_length(
    fake: FakeKobold, client: httpx.AsyncClient
) -> None:
    # KoboldCpp's stream says "length" for both; /api/extra/perf's stop_reason 2 says which
    fake.enqueue(Text(["Hi"], finish="stop_string", usage=(9, 1)))
    h = harness_on(fake)
    events, _ = await collect(h.backend(client), h.request())
    assert events[-1] == Finish(FinishReason.STOP_SEQUENCE, raw="length")
    fake.enqueue(Text(["Hi"], finish="length", usage=(9, 64)))
    events, _ = await collect(h.backend(client), h.request())
    assert events[-2:] == [Usage(9, 64), Finish(FinishReason.LENGTH, raw="length")]


async def test_a_failed_perf_probe_still_finishes_the_reply(client: httpx.AsyncClient) -> None:
    # an older KoboldCpp without /api/extra/perf: the reply is complete, only usage is missing
    async with FakeKobold(perf_route=False) as fake:
        h = KoboldHarness(fake, secret="")
        events, error = await replay(h, client, GOLDEN_STREAM)
    assert error is None
    assert events == [TextDelta("Hi"), Finish(FinishReason.STOP, raw="stop")]


async def test_a_stream_ending_without_its_finish_is_cut(
    fake: FakeKobold, client: httpx.AsyncClient
) -> None:
    h = harness_on(fake)
    events, error = await replay(
        h, client, b'event: message\ndata: {"token":"Once","finish_reason":null}\n\n', sleeps=[]
    )
    assert text_of(events) == "Once"
    assert isinstance(error, BackendStreamCut)


# -- the request on the wire --------------------------------------------------------------------

SAMPLER = Sampler(
    temperature=0.7, top_k=40, min_p=0.05, repetition_penalty=1.1, seed=42, presence_penalty=0.3
)


async def test_stream_body_and_headers(fake: FakeKobold, client: httpx.AsyncClient) -> None:
    h = harness_on(fake)
    request = h.request(sampler=SAMPLER.as_dict(), stop=("\nUser:", "\nSam:", "\nUser:", ""))
    _, error = await collect(h.backend(client), request)
    assert error is None
    sent = fake.generations()[0]
    assert sent.path == "/api/extra/generate/stream"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    body = sent.body
    assert body["prompt"] == PROMPT
    assert (body["max_length"], body["max_context_length"]) == (64, 4096)
    assert body["stop_sequence"] == ["\nUser:", "\nSam:"]
    assert body["trim_stop"] is True
    assert body["genkey"].startswith("sillybot-")
    assert {k: body[k] for k in ("temperature", "top_k", "min_p", "rep_pen", "sampler_seed")} == {
        "temperature": 0.7,
        "top_k": 40,
        "min_p": 0.05,
        "rep_pen": 1.1,
        "sampler_seed": 42,
    }
    assert "presence_penalty" not in body  # the Kobold API has none: dropped, not sent
    assert fake.last.path == "/api/extra/perf"


async def test_a_fresh_genkey_per_request(fake: FakeKobold, client: httpx.AsyncClient) -> None:
    h = harness_on(fake)
    backend = h.backend(client)
    await collect(backend, h.request())
    await collect(backend, h.request())
    first, second = (r.body["genkey"] for r in fake.generations())
    assert first != second


async def test_a_base_url_copied_with_api_works(
    fake: FakeKobold, client: httpx.AsyncClient
) -> None:
    h = harness_on(fake)
    events, error = await collect(h.backend(client, base_url=fake.base_url + "/api"), h.request())
    assert error is None
    assert fake.generations()[0].path == "/api/extra/generate/stream"
    assert text_of(events) == "Hello"


async def test_blocking_answer_is_one_delta_with_usage(
    fake: FakeKobold, client: httpx.AsyncClient
) -> None:
    fake.enqueue(Text(["Hel", "lo"], finish="length", usage=(20, 64)))
    h = harness_on(fake, stream=False)
    events, error = await collect(h.backend(client), h.request())
    assert error is None
    assert fake.generations()[0].path == "/api/v1/generate"
    assert events == [TextDelta("Hello"), Usage(20, 64), Finish(FinishReason.LENGTH, raw="length")]


async def test_chat_mode_is_refused_at_build_time(client: httpx.AsyncClient) -> None:
    config = BackendConfig(provider="koboldcpp-native", mode="chat")
    with pytest.raises(ConfigError) as caught:
        build_backend("main", config, client, None)
    assert "mode: text" in caught.value.user_message()


# -- errors -------------------------------------------------------------------------------------


async def test_busy_is_retried_then_answered(fake: FakeKobold, client: httpx.AsyncClient) -> None:
    fake.enqueue(Status(503, BUSY), Status(503, BUSY), Text(["Hi"]))
    sleeps: list[float] = []
    h = harness_on(fake)
    events, error = await collect(h.backend(client, sleeps=sleeps), h.request())
    assert error is None
    assert text_of(events) == "Hi"
    assert len(sleeps) == 2


async def test_busy_three_times_says_so(fake: FakeKobold, client: httpx.AsyncClient) -> None:
    fake.enqueue(*[Status(503, BUSY)] * 3)
    h = harness_on(fake)
    _, error = await collect(h.backend(client, sleeps=[]), h.request())
    assert isinstance(error, BackendUnavailable)
    assert "Server is busy" in error.user_message()
    assert "--multiuser" in error.user_message()


async def test_missing_password_says_where_to_put_it(
    fake: FakeKobold, client: httpx.AsyncClient
) -> None:
    h = KoboldHarness(fake, secret="")
    _, error = await collect(h.backend(client, sleeps=[]), h.request())
    assert isinstance(error, BackendAuthError)
    assert "--password" in error.user_message()
    assert "authorization" not in fake.requests[0].headers


async def test_in_stream_error_explains(fake: FakeKobold, client: httpx.AsyncClient) -> None:
    fake.enqueue(ErrorAfter(["Once"]))
    h = harness_on(fake)
    events, error = await collect(h.backend(client, sleeps=[]), h.request())
    assert events == [TextDelta("Once")]
    assert error is not None
    assert "stopped the reply with an error" in error.user_message()
    assert fake.aborts == []  # the server ended it itself; nothing to abort


# -- abort ----------------------------------------------------------------------------------------


async def test_closing_the_stream_aborts_this_generation(
    fake: FakeKobold, client: httpx.AsyncClient
) -> None:
    fake.enqueue(Endless())
    h = harness_on(fake)
    stream = h.backend(client).stream(h.request())
    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(fake.disconnected.wait(), timeout=5)
    genkey = fake.generations()[0].body["genkey"]
    assert fake.aborts == [{"genkey": genkey}]
    assert fake.requests[-1].path == "/api/extra/abort"
    assert fake.requests[-1].headers["authorization"] == f"Bearer {SECRET}"


async def test_cancelling_while_the_prompt_is_processed_aborts(
    fake: FakeKobold, client: httpx.AsyncClient
) -> None:
    # blocking mode: nothing arrives until the whole reply is done, and a long prompt can
    # keep KoboldCpp busy for minutes after the user gave up
    fake.enqueue(Endless())
    h = harness_on(fake, stream=False)
    task = asyncio.create_task(collect(h.backend(client), h.request()))
    await asyncio.wait_for(fake.generating.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(fake.aborted.wait(), timeout=5)
    assert fake.aborts == [{"genkey": fake.generations()[0].body["genkey"]}]


async def test_a_finished_reply_is_not_aborted(
    fake: FakeKobold, client: httpx.AsyncClient
) -> None:
    h = harness_on(fake)
    stream = h.backend(client).stream(h.request())
    events = [event async for event in stream]
    assert isinstance(events[-1], Finish)
    await stream.aclose()  # type: ignore[attr-defined]
    assert fake.aborts == []


# -- token count, models, version ---------------------------------------------------------------


async def test_token_count_through_the_registry(
    fake: FakeKobold, client: httpx.AsyncClient
) -> None:
    backend = harness_on(fake).backend(client)
    assert isinstance(backend, RetryingBackend)
    assert await backend.count_tokens("one two three") == 3
    assert fake.last.path == "/api/extra/tokencount"
    assert fake.last.body == {"prompt": "one two three"}
    assert fake.last.headers["authorization"] == f"Bearer {SECRET}"


async def test_models_and_version(fake: FakeKobold, client: httpx.AsyncClient) -> None:
    backend = harness_on(fake).backend(client)
    assert isinstance(backend, RetryingBackend)
    assert await backend.list_models() == [ModelInfo(MODEL, 8192)]
    inner = backend.inner
    assert isinstance(inner, KoboldBackend)
    assert await inner.version() == "KoboldCpp 1.98.1"


async def test_wrong_password_on_token_count_is_an_auth_error(
    fake: FakeKobold, client: httpx.AsyncClient
) -> None:
    backend = harness_on(fake).backend(client, api_key="wrong-pass-0c1d2e")
    assert isinstance(backend, RetryingBackend)
    with pytest.raises(BackendAuthError) as caught:
        await backend.count_tokens("x")
    assert_no_secret(caught.value, "wrong-pass-0c1d2e")


# -- KoboldAI Classic -----------------------------------------------------------------------------


@pytest.fixture
async def classic() -> AsyncIterator[FakeKobold]:
    async with FakeKobold(classic=True) as server:
        yield server
        assert server.body_rejections() == []


def classic_harness(fake: FakeKobold) -> KoboldHarness:
    return KoboldHarness(fake, provider="koboldai-classic", secret="")


async def test_classic_blocks_even_when_asked_to_stream(
    classic: FakeKobold, client: httpx.AsyncClient
) -> None:
    classic.enqueue(Raw(GOLDEN_BLOCKING, content_type="application/json"))
    h = classic_harness(classic)
    events, error = await collect(h.backend(client), h.request(sampler=SAMPLER.as_dict()))
    assert error is None
    assert events == [TextDelta("Hi"), Finish(FinishReason.STOP, raw="")]
    body = classic.last.body
    assert classic.last.path == "/api/v1/generate"
    assert {"use_story", "use_memory", "use_authors_note", "use_world_info"} <= set(body)
    assert not {"genkey", "trim_stop", "min_p", "sampler_seed"} & set(body)  # it 422s on them
    assert [r.path for r in classic.requests] == ["/api/v1/generate"]  # no /api/extra probe


async def test_classic_cancel_sends_no_abort(
    classic: FakeKobold, client: httpx.AsyncClient
) -> None:
    classic.enqueue(Endless())
    h = classic_harness(classic)
    task = asyncio.create_task(collect(h.backend(client), h.request()))
    await asyncio.wait_for(classic.generating.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(classic.disconnected.wait(), timeout=5)
    assert [r.path for r in classic.requests] == ["/api/v1/generate"]


async def test_classic_has_no_token_count_and_says_so(
    classic: FakeKobold, client: httpx.AsyncClient
) -> None:
    backend = classic_harness(classic).backend(client)
    assert isinstance(backend, RetryingBackend)
    with pytest.raises(BackendError) as caught:
        await backend.count_tokens("x")
    assert "estimated locally" in caught.value.user_message()
    assert classic.requests == []
    assert await backend.list_models() == [ModelInfo("KoboldAI/fairseq-dense-2.7B", 2048)]
    inner = backend.inner
    assert isinstance(inner, KoboldBackend)
    assert await inner.version() == "KoboldAI API 1.2.5"


async def test_classic_refuses_an_unknown_key_with_422(
    classic: FakeKobold, client: httpx.AsyncClient
) -> None:
    # why the Classic row sends only its own keys: what happens to a client that does not
    backend = KoboldBackend(
        "main", client, preset=PRESETS["koboldcpp-native"], base_url=classic.base_url, stream=False
    )
    _, error = await collect(backend, classic_harness(classic).request())
    assert error is not None
    assert "HTTP 422" in error.user_message()
    classic.rejections.clear()


# -- the whole sampler model, translated --------------------------------------------------------

FULL = Sampler(
    temperature=0.7,
    top_k=40,
    top_p=0.9,
    min_p=0.05,
    top_a=0.1,
    typical_p=0.95,
    tfs=0.97,
    repetition_penalty=1.1,
    repetition_penalty_range=1024,
    repetition_penalty_slope=0.7,
    presence_penalty=0.3,
    seed=42,
    mirostat_mode=2,
    mirostat_tau=5.0,
    mirostat_eta=0.1,
    dry_multiplier=0.8,
    dry_base=1.75,
    dry_allowed_length=2,
    dry_penalty_last_n=0,
    dry_sequence_breakers=("\n", ":"),
    xtc_threshold=0.1,
    xtc_probability=0.5,
    dynatemp_low=0.5,
    dynatemp_high=1.5,
    dynatemp_exponent=1.0,
    smoothing_factor=0.2,
    logit_bias={"50256": -100.0},
    banned_strings=("As an AI",),
    ban_eos_token=True,
    grammar='root ::= "yes" | "no"',
    json_schema={"type": "object"},
    sampler_order=(6, 0, 1, 3, 4, 2, 5),
    reasoning_effort="low",
)


async def test_every_sampler_koboldcpp_takes_under_its_name(
    fake: FakeKobold, client: httpx.AsyncClient
) -> None:
    h = harness_on(fake)
    _, error = await collect(h.backend(client), h.request(sampler=FULL.as_dict()))
    assert error is None
    body = fake.generations()[0].body
    assert {k: v for k, v in body.items() if k not in ("prompt", "genkey", "stop_sequence")} == {
        "max_length": 64,
        "max_context_length": 4096,
        "trim_stop": True,
        "temperature": 1.0,  # dynamic temperature: the middle of 0.5..1.5, spread 0.5
        "dynatemp_range": 0.5,
        "dynatemp_exponent": 1.0,
        "top_k": 40,
        "top_p": 0.9,
        "min_p": 0.05,
        "top_a": 0.1,
        "typical": 0.95,
        "tfs": 0.97,
        "rep_pen": 1.1,
        "rep_pen_range": 1024,
        "rep_pen_slope": 0.7,
        "sampler_seed": 42,
        "mirostat": 2,
        "mirostat_tau": 5.0,
        "mirostat_eta": 0.1,
        "dry_multiplier": 0.8,
        "dry_base": 1.75,
        "dry_allowed_length": 2,
        "dry_penalty_last_n": 0,
        "dry_sequence_breakers": ["\n", ":"],
        "xtc_threshold": 0.1,
        "xtc_probability": 0.5,
        "smoothing_factor": 0.2,
        "logit_bias": {"50256": -100.0},
        "banned_tokens": ["As an AI"],  # KoboldCpp's banned "tokens" are strings
        "use_default_badwordsids": True,
        "grammar": 'root ::= "yes" | "no"',
        "sampler_order": [6, 0, 1, 3, 4, 2, 5],
    }


async def test_classic_gets_only_its_own_samplers(
    classic: FakeKobold, client: httpx.AsyncClient
) -> None:
    h = classic_harness(classic)
    _, error = await collect(h.backend(client), h.request(sampler=FULL.as_dict()))
    assert error is None
    body = classic.last.body
    samplers = {k: v for k, v in body.items() if k not in ("prompt", "stop_sequence")}
    assert samplers == {
        "max_length": 64,
        "max_context_length": 4096,
        "use_story": False,
        "use_memory": False,
        "use_authors_note": False,
        "use_world_info": False,
        "temperature": 0.7,  # no dynamic temperature there: the plain one stands
        "top_k": 40,
        "top_p": 0.9,
        "top_a": 0.1,
        "typical": 0.95,
        "tfs": 0.97,
        "rep_pen": 1.1,
        "rep_pen_range": 1024,
        "rep_pen_slope": 0.7,
        "sampler_order": [6, 0, 1, 3, 4, 2, 5],
    }
