"""llama.cpp's native family (``provider: llamacpp-native``): the shared contract against a
loopback llama-server, golden transcripts, the body on the wire, and the native extras
(/tokenize, /props, /health, /v1/models)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest

from bot.backends.base import Finish, FinishReason, TextDelta, TokenCountingBackend, Usage
from bot.backends.registry import build_backend
from bot.config import BackendConfig, Sampler
from bot.errors import BackendError, BackendNotFound, BackendUnavailable, ConfigError
from tests.contract.backend_contract import BackendContract, ErrorKind, collect, replay, text_of
from tests.contract.native_harness import NativeHarness, unwrap
from tests.fakes.base import Raw, Status, Text
from tests.fakes.llamacpp_server import (
    ERROR_404,
    ERROR_429,
    ERROR_500,
    ERROR_CONTEXT,
    ERROR_LOADING,
    ERROR_QUOTA,
    GOLDEN_CONTEXT_ERROR,
    GOLDEN_WORD_STOP,
    FakeLlamaCpp,
    error_401,
    fake_tokens,
)

SECRET = "llama-key-5d1e9c7a3b"


class LlamaHarness(NativeHarness):
    fake: FakeLlamaCpp
    malformed = b'data: {"content":"Hi","stop":fal\n\n'

    def error_replies(self, retry_after: str | None) -> Mapping[ErrorKind, object]:
        return {
            "auth": Status(401, error_401(self.secret)),
            "not_found": Status(404, ERROR_404),
            "rate_limited": Status(429, ERROR_429, {"retry-after": retry_after or "1"}),
            "server_error": Status(500, ERROR_500),
            "overloaded": Status(503, ERROR_LOADING),
            "context": Status(400, ERROR_CONTEXT),
            "quota": Status(402, ERROR_QUOTA),
        }


@pytest.fixture
async def fake() -> AsyncIterator[FakeLlamaCpp]:
    async with FakeLlamaCpp(api_key=SECRET) as server:
        yield server
        assert server.body_rejections() == []


@pytest.fixture
def harness(fake: FakeLlamaCpp) -> LlamaHarness:
    return LlamaHarness(fake, "llamacpp-native", "text", SECRET)


class TestLlamaCppContract(BackendContract):
    pass


# -- golden transcripts ------------------------------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 7])
async def test_golden_stream_stopped_by_a_word(
    harness: LlamaHarness, client: httpx.AsyncClient, split: int
) -> None:
    events, error = await replay(harness, client, GOLDEN_WORD_STOP, split=split)
    assert error is None
    assert events == [TextDelta("Hi"), Finish(FinishReason.STOP_SEQUENCE, raw="word")]


async def test_context_error_line_after_a_token_says_what_to_do(
    harness: LlamaHarness, client: httpx.AsyncClient
) -> None:
    harness.fake.enqueue(Raw(GOLDEN_CONTEXT_ERROR))
    sleeps: list[float] = []
    events, error = await collect(harness.backend(client, sleeps=sleeps), harness.request())
    assert text_of(events) == "Hi"
    assert isinstance(error, BackendError)
    assert "exceeds the available context size" in error.user_message()
    assert "lower `context_size`" in error.user_message()
    assert sleeps == []


async def test_final_chunk_of_an_older_build_with_stopped_flags(
    harness: LlamaHarness, client: httpx.AsyncClient
) -> None:
    harness.fake.enqueue(
        Raw(
            b'data: {"content":"Hi","stop":false}\n\n'
            b'data: {"content":"!","stop":true,"stopped_eos":false,"stopped_word":false,'
            b'"stopped_limit":true,"tokens_predicted":2,"tokens_evaluated":9}\n\n'
        )
    )
    events, error = await collect(harness.backend(client), harness.request())
    assert error is None
    assert events == [
        TextDelta("Hi"),
        TextDelta("!"),
        Usage(9, 2),
        Finish(FinishReason.LENGTH, raw="limit"),
    ]


async def test_utf8_split_mid_character(harness: LlamaHarness, client: httpx.AsyncClient) -> None:
    events, error = await replay(
        harness, client, GOLDEN_WORD_STOP.replace(b"Hi", "Grüße 🐉".encode()), split=1
    )
    assert error is None
    assert text_of(events) == "Grüße 🐉"


# -- the request on the wire -------------------------------------------------------------------

SAMPLER = Sampler(
    temperature=0.7,
    top_k=40,
    min_p=0.05,
    top_a=0.2,
    typical_p=0.9,
    repetition_penalty=1.1,
    repetition_penalty_range=256,
    repetition_penalty_slope=0.7,
    mirostat_mode=2,
    mirostat_tau=5.0,
    dry_multiplier=0.8,
    dry_sequence_breakers=("\n", ":"),
    xtc_threshold=0.1,
    xtc_probability=0.5,
    seed=42,
    logit_bias={"15043": -1.5},
    ban_eos_token=True,
    sampler_order=(6, 0, 1, 3, 4, 2, 5),
    smoothing_factor=0.3,
)


async def send(h: LlamaHarness, client: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    changes.setdefault("sampler", SAMPLER.as_dict())
    _, error = await collect(h.backend(client), h.request(**changes))
    assert error is None, error
    body: dict[str, Any] = h.fake.last.body
    return body


async def test_completion_body_uses_native_names(
    harness: LlamaHarness, client: httpx.AsyncClient
) -> None:
    body = await send(harness, client, stop=("\nUser:", "<|im_end|>", "\nUser:"))
    assert harness.fake.last.path == "/completion"
    assert harness.fake.last.headers["authorization"] == f"Bearer {SECRET}"
    assert body["prompt"].startswith("<|im_start|>user")
    assert body["n_predict"] == 64
    assert body["stream"] is True
    assert body["cache_prompt"] is True
    assert body["model"] == "test-model"
    assert body["stop"] == ["\nUser:", "<|im_end|>"]
    assert {k: body[k] for k in ("repeat_penalty", "repeat_last_n", "mirostat", "typical_p")} == {
        "repeat_penalty": 1.1,
        "repeat_last_n": 256,
        "mirostat": 2,
        "typical_p": 0.9,
    }
    assert body["dry_sequence_breakers"] == ["\n", ":"]
    assert body["logit_bias"] == [[15043, -1.5]]
    assert body["ignore_eos"] is True
    assert body["seed"] == 42
    # what llama.cpp has no use for is left out (the fake refuses unknown keys as well)
    assert not {"top_a", "repetition_penalty_slope", "sampler_order", "samplers"} & set(body)
    assert "smoothing_factor" not in body


async def test_dynamic_temperature_becomes_centre_and_range(
    harness: LlamaHarness, client: httpx.AsyncClient
) -> None:
    sampler = Sampler(dynatemp_low=0.5, dynatemp_high=1.5, dynatemp_exponent=1.2)
    body = await send(harness, client, sampler=sampler.as_dict())
    assert (body["temperature"], body["dynatemp_range"], body["dynatemp_exponent"]) == (
        1.0,
        0.5,
        1.2,
    )


async def test_json_schema_wins_over_grammar(
    harness: LlamaHarness, client: httpx.AsyncClient
) -> None:
    schema = {"type": "object", "properties": {"mood": {"type": "string"}}}
    body = await send(harness, client, sampler={"grammar": "root ::= x", "json_schema": schema})
    assert body["json_schema"] == schema
    assert "grammar" not in body


async def test_non_streaming_answer(fake: FakeLlamaCpp, client: httpx.AsyncClient) -> None:
    h = LlamaHarness(fake, "llamacpp-native", "text", SECRET, stream=False)
    fake.enqueue(Text(["Hello", " Sam"], finish="limit", usage=(12, 2)))
    events, error = await collect(h.backend(client), h.request())
    assert error is None
    assert fake.last.body["stream"] is False
    assert events == [TextDelta("Hello Sam"), Usage(12, 2), Finish(FinishReason.LENGTH, "limit")]


async def test_a_base_url_with_v1_is_cut_to_the_root(
    harness: LlamaHarness, client: httpx.AsyncClient
) -> None:
    backend = harness.backend(client, base_url=harness.fake.base_url + "/v1/")
    _, error = await collect(backend, harness.request())
    assert error is None
    assert harness.fake.last.path == "/completion"


async def test_no_key_configured_sends_no_authorization(client: httpx.AsyncClient) -> None:
    async with FakeLlamaCpp(api_key=None) as fake:
        config = BackendConfig(provider="llamacpp-native", mode="text", base_url=fake.base_url)
        backend = build_backend("main", config, client, None)
        _, error = await collect(backend, LlamaHarness(fake, "", "text", "").request())
        assert error is None
        assert "authorization" not in fake.last.headers


async def test_chat_mode_is_refused_with_the_way_out(
    harness: LlamaHarness, client: httpx.AsyncClient
) -> None:
    config = BackendConfig(provider="llamacpp-native", mode="chat", base_url="http://127.0.0.1:1")
    with pytest.raises(ConfigError) as caught:
        build_backend("main", config, client, None)
    assert "mode: text" in caught.value.user_message()
    # a chat request reaching the backend anyway is an error naming the OpenAI preset
    events, error = await collect(harness.backend(client), harness.request(mode="chat"))
    assert events == []
    assert error is not None
    assert "provider: llamacpp" in error.user_message()
    assert harness.request_count() == 0


# -- loading, and the native extras -------------------------------------------------------------


async def test_a_loading_model_is_retried_then_answers(
    harness: LlamaHarness, client: httpx.AsyncClient
) -> None:
    harness.fake.loading = 1
    sleeps: list[float] = []
    events, error = await collect(harness.backend(client, sleeps=sleeps), harness.request())
    assert error is None
    assert text_of(events) == "Hello"
    assert len(sleeps) == 1


async def test_health_says_the_model_is_loading(
    harness: LlamaHarness, client: httpx.AsyncClient
) -> None:
    backend = unwrap(harness.backend(client))
    harness.fake.loading = 1
    with pytest.raises(BackendUnavailable) as caught:
        await backend.health()
    assert "the model is still loading" in caught.value.user_message()
    await backend.health()  # loaded now


async def test_count_tokens_through_tokenize(
    harness: LlamaHarness, client: httpx.AsyncClient
) -> None:
    backend = harness.backend(client)  # as build_backend makes it, retry wrapper and all
    assert isinstance(backend, TokenCountingBackend)
    assert isinstance(unwrap(backend), TokenCountingBackend)
    text = "Aria waves at Sam and smiles."
    assert await backend.count_tokens(text) == len(fake_tokens(text)) == 6
    assert harness.fake.last.body == {"content": text}
    assert harness.fake.last.headers["authorization"] == f"Bearer {SECRET}"


async def test_props_give_the_chat_template_and_context(
    harness: LlamaHarness, client: httpx.AsyncClient
) -> None:
    props = await unwrap(harness.backend(client)).props()
    assert props.chat_template.endswith("{% endfor %}")  # the trailing NUL is gone
    assert props.n_ctx == 8192
    assert props.model_path.endswith(".gguf")


async def test_list_models(harness: LlamaHarness, client: httpx.AsyncClient) -> None:
    models = await harness.backend(client).list_models()  # type: ignore[attr-defined]
    assert [m.id for m in models] == ["aria-8b.Q4_K_M.gguf"]


async def test_llama_cpp_python_server_counts_tokens_and_explains_completion(
    client: httpx.AsyncClient,
) -> None:
    """The llama-cpp-python flavour: no /tokenize, /props or /completion, but a count."""
    async with FakeLlamaCpp(flavour="llama-cpp-python") as fake:
        h = LlamaHarness(fake, "llamacpp-native", "text", SECRET)
        backend = h.backend(client, sleeps=[])
        assert await backend.count_tokens("one two three") == 3  # type: ignore[attr-defined]
        assert await backend.count_tokens("four five") == 2  # type: ignore[attr-defined]
        # the first count found the route; the second went straight to it
        assert [r.path for r in fake.requests] == [
            "/tokenize",
            "/extras/tokenize/count",
            "/extras/tokenize/count",
        ]
        await unwrap(backend).health()  # no /health there: the model list stands in
        _, error = await collect(h.backend(client, sleeps=[]), h.request())
        assert isinstance(error, BackendNotFound)
        assert "provider: llamacpp" in error.user_message()
