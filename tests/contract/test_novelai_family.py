"""NovelAI's legacy text family (``provider: novelai``): the shared contract against a
loopback text.novelai.net, the golden transcripts, stop strings cut client-side (and the
connection closed there), the body on the wire, Cloudflare and subscription errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import httpx
import pytest

from bot.backends.base import Finish, FinishReason, TextDelta, Usage
from bot.backends.registry import build_backend
from bot.config import BackendConfig, Sampler
from bot.errors import BackendAuthError, BackendError, ConfigError
from tests.contract.backend_contract import (
    BackendContract,
    ErrorKind,
    Harness,
    assert_no_secret,
    collect,
    replay,
    text_of,
)
from tests.contract.native_harness import NativeHarness
from tests.fakes.base import Endless, InStreamError, Raw, Status, Text
from tests.fakes.novelai_server import (
    ERROR_402,
    ERROR_404,
    ERROR_429,
    ERROR_500,
    ERROR_503,
    ERROR_CONTEXT,
    GOLDEN_STREAM,
    GOLDEN_WHOLE,
    FakeNovelAI,
    error_401,
    parameters_of,
)

SECRET = "pst-9QwErTy1234567890abcdef"


class NovelAIHarness(NativeHarness):
    fake: FakeNovelAI
    malformed = b'event: newToken\ndata: {"token":"Hi","ptr":0,"fin\n\n'

    def error_replies(self, retry_after: str | None) -> Mapping[ErrorKind, object]:
        return {
            "auth": Status(401, error_401(self.secret)),
            "not_found": Status(404, ERROR_404),
            "rate_limited": Status(429, ERROR_429, {"retry-after": retry_after or "1"}),
            "server_error": Status(500, ERROR_500),
            "overloaded": Status(503, ERROR_503),
            "context": Status(400, ERROR_CONTEXT),
            "quota": Status(402, ERROR_402),
        }


@pytest.fixture
async def fake() -> AsyncIterator[FakeNovelAI]:
    async with FakeNovelAI(api_key=SECRET) as server:
        yield server
        assert server.body_rejections() == []


@pytest.fixture
def harness(fake: FakeNovelAI) -> NovelAIHarness:
    return NovelAIHarness(fake, "novelai", "text", SECRET, model="llama-3-erato-v1")


class TestNovelAIContract(BackendContract):
    async def test_deltas_in_order_then_usage_then_finish(
        self, harness: Harness, client: httpx.AsyncClient
    ) -> None:
        """NovelAI reports no token counts: the reply's comes from the last token's ``ptr``,
        the prompt's is unknown. Otherwise the contract's own test."""
        harness.reply_text(["Once", " upon", " a time"], usage=(11, 3))
        events, error = await collect(harness.backend(client), harness.request())
        assert error is None
        assert [e.text for e in events if isinstance(e, TextDelta)] == ["Once", " upon", " a time"]
        assert events[-2:] == [Usage(None, 3), Finish(FinishReason.STOP, raw="final")]


# -- golden transcripts ------------------------------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 11])
async def test_golden_stream(
    harness: NovelAIHarness, client: httpx.AsyncClient, split: int
) -> None:
    events, error = await replay(harness, client, GOLDEN_STREAM, split=split)
    assert error is None
    assert events == [
        TextDelta("Hi"),
        TextDelta("!"),
        Usage(None, 2),
        Finish(FinishReason.STOP, raw="final"),
    ]
    assert harness.fake.last.path == "/ai/generate-stream"


async def test_golden_whole_answer(fake: FakeNovelAI, client: httpx.AsyncClient) -> None:
    fake.enqueue(Raw(GOLDEN_WHOLE, content_type="application/json"))
    h = NovelAIHarness(fake, "novelai", "text", SECRET, model="kayra-v1", stream=False)
    events, error = await collect(h.backend(client), h.request())
    assert error is None
    assert events == [TextDelta("Hi!"), Finish(FinishReason.STOP, raw="output")]
    assert fake.last.path == "/ai/generate"


async def test_the_last_token_at_max_length_is_a_length_finish(
    harness: NovelAIHarness, client: httpx.AsyncClient
) -> None:
    harness.fake.enqueue(Text(["One", " two", " three"]))
    events, error = await collect(harness.backend(client), harness.request(max_tokens=3))
    assert error is None
    assert events[-2:] == [Usage(None, 3), Finish(FinishReason.LENGTH, raw="final")]


# -- stop strings, cut here --------------------------------------------------------------------


async def test_a_stop_string_ends_the_reply_and_closes_the_connection(
    harness: NovelAIHarness, client: httpx.AsyncClient
) -> None:
    harness.fake.enqueue(Endless())  # "w1 ", "w2 ", … until the client goes away
    request = harness.request(stop=("w3 ",))
    events, error = await collect(harness.backend(client), request)
    assert error is None
    assert text_of(events) == "w1 w2 "
    assert events[-1] == Finish(FinishReason.STOP_SEQUENCE, raw="client_stop")
    await asyncio.wait_for(harness.fake.disconnected.wait(), timeout=5)
    assert "stop_sequences" not in parameters_of(harness.fake.last)  # never token ids we guess


async def test_a_stop_string_split_across_tokens_never_shows(
    harness: NovelAIHarness, client: httpx.AsyncClient
) -> None:
    harness.fake.enqueue(Text(["Aria smiles.", "\n", "Us", "er:", " Hi", " there"]))
    events, error = await collect(harness.backend(client), harness.request(stop=("\nUser:",)))
    assert error is None
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Aria smiles."]
    assert events[-1] == Finish(FinishReason.STOP_SEQUENCE, raw="client_stop")


async def test_a_held_back_tail_that_is_no_stop_is_released(
    harness: NovelAIHarness, client: httpx.AsyncClient
) -> None:
    harness.fake.enqueue(Text(["Hi", "\n", "There"]))
    events, error = await collect(harness.backend(client), harness.request(stop=("\nUser:",)))
    assert error is None
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hi", "\nThere"]
    assert events[-1] == Finish(FinishReason.STOP, raw="final")


async def test_a_whole_answer_is_cut_at_the_stop_string(
    fake: FakeNovelAI, client: httpx.AsyncClient
) -> None:
    fake.enqueue(Text(["Aria waves.", "\nUser: hello"]))
    h = NovelAIHarness(fake, "novelai", "text", SECRET, model="kayra-v1", stream=False)
    events, error = await collect(h.backend(client), h.request())
    assert error is None
    assert events == [TextDelta("Aria waves."), Finish(FinishReason.STOP_SEQUENCE, "client_stop")]


# -- the request on the wire -------------------------------------------------------------------


async def test_generate_body(harness: NovelAIHarness, client: httpx.AsyncClient) -> None:
    sampler = Sampler(
        temperature=1.1,
        top_k=50,
        top_p=0.95,
        top_a=0.1,
        tfs=0.9,
        min_p=0.02,
        repetition_penalty=1.15,
        repetition_penalty_range=2048,
        presence_penalty=0.1,
        seed=7,
        dry_multiplier=0.8,
        logit_bias={"23": -2.0},
    )
    request = harness.request(max_tokens=300, sampler=sampler.as_dict())
    _, error = await collect(harness.backend(client), request)
    assert error is None
    recorded = harness.fake.last
    assert recorded.headers["authorization"] == f"Bearer {SECRET}"
    assert recorded.headers["user-agent"] == "sillybot/0.1"
    assert recorded.body["model"] == "llama-3-erato-v1"
    assert recorded.body["input"].startswith("<|startoftext|><|im_start|>user")
    params = recorded.body["parameters"]
    assert params["use_string"] is True
    assert params["max_length"] == 150  # NovelAI's ceiling
    assert {k: params[k] for k in ("tail_free_sampling", "repetition_penalty_presence")} == {
        "tail_free_sampling": 0.9,
        "repetition_penalty_presence": 0.1,
    }
    assert params["order"] == [1, 0, 2, 3, 4, 10]  # only the samplers that are set
    assert params["logit_bias_exp"] == [
        {"sequence": [23], "bias": -2.0, "ensure_sequence_finish": False, "generate_once": False}
    ]
    assert not {"seed", "dry_multiplier", "stop_sequences", "bad_words_ids"} & set(params)


async def test_kayra_prompt_is_sent_as_is(fake: FakeNovelAI, client: httpx.AsyncClient) -> None:
    h = NovelAIHarness(fake, "novelai", "text", SECRET, model="kayra-v1")
    _, error = await collect(h.backend(client), h.request())
    assert error is None
    assert fake.last.body["input"].startswith("<|im_start|>user")
    assert "order" not in fake.last.body["parameters"]


# -- errors ------------------------------------------------------------------------------------


async def test_cloudflare_refusing_the_client_is_not_a_key_problem(
    harness: NovelAIHarness, client: httpx.AsyncClient
) -> None:
    harness.config = {"headers": {"User-Agent": "python-httpx/0.28.1"}}
    sleeps: list[float] = []
    _, error = await collect(harness.backend(client, sleeps=sleeps), harness.request())
    assert isinstance(error, BackendError)
    assert not isinstance(error, BackendAuthError)
    assert "Cloudflare" in error.user_message()
    assert "`User-Agent`" in error.user_message()
    assert sleeps == []


async def test_no_subscription_says_so(harness: NovelAIHarness, client: httpx.AsyncClient) -> None:
    harness.fake.enqueue(Status(402, ERROR_402))
    _, error = await collect(harness.backend(client, sleeps=[]), harness.request())
    assert error is not None
    assert "An active subscription is required" in error.user_message()
    assert "no active subscription" in error.hint


async def test_in_stream_error_after_tokens(
    harness: NovelAIHarness, client: httpx.AsyncClient
) -> None:
    harness.fake.enqueue(InStreamError(["Once"]))
    events, error = await collect(harness.backend(client, sleeps=[]), harness.request())
    assert text_of(events) == "Once"
    assert error is not None
    assert "Internal server error" in error.user_message()
    assert_no_secret(error, SECRET)


async def test_chat_mode_points_at_the_openai_style_preset(client: httpx.AsyncClient) -> None:
    config = BackendConfig(provider="novelai", mode="chat", base_url="http://127.0.0.1:1")
    with pytest.raises(ConfigError):
        build_backend("main", config, client, None)


async def test_models_are_the_known_ones_without_a_request(
    harness: NovelAIHarness, client: httpx.AsyncClient
) -> None:
    models = await harness.backend(client).list_models()  # type: ignore[attr-defined]
    assert [m.id for m in models] == ["llama-3-erato-v1", "kayra-v1", "clio-v1"]
    assert harness.request_count() == 0
