"""The gemini family (AI Studio, Vertex AI with a service account, Vertex AI express): the
shared contract over each set-up, then golden transcripts, the request on the wire, Google's
errors, service-account tokens, model lists and token counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.backends.base import (
    Finish,
    FinishReason,
    PromptMessage,
    ReasoningDelta,
    TextDelta,
    Usage,
)
from bot.backends.gemini_wire import SAFETY_CATEGORIES, VERTEX_SAFETY_CATEGORIES
from bot.config import Sampler
from bot.errors import BackendError
from tests.contract.backend_contract import BackendContract, collect, replay, text_of
from tests.contract.gemini_harness import (
    SECRET,
    GeminiHarness,
    Keys,
    Variant,
    fake_for,
    on,
)
from tests.fakes.base import Raw
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.gemini_wire import (
    GOLDEN_BLOCKED,
    GOLDEN_MAX_TOKENS,
    GOLDEN_SAFETY_EMPTY,
    GOLDEN_SAFETY_STOP,
    GOLDEN_STREAM,
    GOLDEN_THOUGHTS,
    Text,
)

VARIANTS: list[Variant] = ["aistudio", "vertex-sa", "vertex-express"]


@pytest.fixture(params=VARIANTS)
async def harness(
    request: pytest.FixtureRequest, tmp_path: Path, rsa_keys: Keys
) -> AsyncIterator[GeminiHarness]:
    variant: Variant = request.param
    async with fake_for(variant, rsa_keys[0]) as fake:
        yield GeminiHarness(fake, variant, tmp_path, rsa_keys[0], rsa_keys[1])
        assert [r for r in fake.rejections if not r.startswith(("wrong", "bad", "token"))] == []


class TestGeminiContract(BackendContract):
    pass


# -- golden transcripts ------------------------------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 7])
async def test_golden_stream(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys, split: int
) -> None:
    h = on(studio, "aistudio", tmp_path, rsa_keys)
    events, error = await replay(h, client, GOLDEN_STREAM, split=split)
    assert error is None
    assert events == [
        TextDelta("Hi"),
        TextDelta("!"),
        Usage(prompt_tokens=9, completion_tokens=2),
        Finish(FinishReason.STOP, raw="STOP"),
    ]


async def test_thought_parts_are_reasoning_and_thinking_tokens_count_as_output(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    h = on(studio, "aistudio", tmp_path, rsa_keys)
    events, error = await replay(h, client, GOLDEN_THOUGHTS, split=5)
    assert error is None
    assert events == [
        ReasoningDelta("The user greets."),
        TextDelta("Hello"),  # two parts of one chunk, one delta
        TextDelta("!"),
        Usage(prompt_tokens=9, completion_tokens=16),
        Finish(FinishReason.STOP, raw="STOP"),
    ]


async def test_blocked_prompt_under_http_200_says_why_and_is_not_retried(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    studio.enqueue(Raw(GOLDEN_BLOCKED))
    h = on(studio, "aistudio", tmp_path, rsa_keys)
    sleeps: list[float] = []
    events, error = await collect(h.backend(client, sleeps=sleeps), h.request())
    assert events == []
    assert type(error) is BackendError
    shown = error.user_message()
    assert "safety filter blocked the prompt (PROHIBITED_CONTENT)" in shown
    assert "rephrase" in shown
    assert sleeps == [] and h.request_count() == 1


async def test_safety_stop_after_text_is_a_filtered_finish(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    h = on(studio, "aistudio", tmp_path, rsa_keys)
    events, error = await replay(h, client, GOLDEN_SAFETY_STOP)
    assert error is None
    assert events == [TextDelta("Once"), Usage(9, 2), Finish(FinishReason.FILTERED, raw="SAFETY")]


async def test_safety_stop_with_no_text_is_an_error_not_a_blank_reply(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    studio.enqueue(Raw(GOLDEN_SAFETY_EMPTY))
    h = on(studio, "aistudio", tmp_path, rsa_keys)
    _, error = await collect(h.backend(client, sleeps=[]), h.request())
    assert error is not None
    assert "blocked the reply (SAFETY)" in error.user_message()


async def test_max_tokens_is_length(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    studio.enqueue(Raw(GOLDEN_MAX_TOKENS))
    h = on(studio, "aistudio", tmp_path, rsa_keys)
    events, _ = await collect(h.backend(client), h.request())
    assert events[-1] == Finish(FinishReason.LENGTH, raw="MAX_TOKENS")


async def test_utf8_split_mid_character(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    h = on(studio, "aistudio", tmp_path, rsa_keys)
    events, error = await replay(
        h, client, GOLDEN_STREAM.replace(b"Hi", "Grüße 🐉".encode()), split=1
    )
    assert error is None
    assert text_of(events) == "Grüße 🐉!"


async def test_without_streaming_one_generate_content_call(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    studio.enqueue(Text(["Hel", "lo"], usage=(5, 2), thoughts=["Hmm."]))
    h = on(studio, "aistudio", tmp_path, rsa_keys, stream=False)
    events, error = await collect(h.backend(client), h.request())
    assert error is None
    assert studio.last.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert "alt" not in studio.last.query
    assert events == [
        ReasoningDelta("Hmm."),
        TextDelta("Hello"),
        Usage(5, 2),
        Finish(FinishReason.STOP, raw="STOP"),
    ]


# -- the request on the wire -------------------------------------------------------------------

CHAT = (
    PromptMessage("system", "You are Aria."),
    PromptMessage("system", "Aria is a fox."),
    PromptMessage("system", ""),  # an empty block (an unset card field): Google refuses those
    PromptMessage("assistant", "Hi! I'm Aria.", name="Aria"),
    PromptMessage("user", "Hello", name="Sam"),
    PromptMessage("user", "Sam: Are you there?", name="Sam"),
    PromptMessage("system", "[Aria is sleepy]"),
    PromptMessage("user", "Go on"),
)
SAMPLER = Sampler(temperature=0.7, top_k=40, min_p=0.05, repetition_penalty=1.1, seed=42)
STOPS = ("\nUser:", "\nA very long stop string:", "\nSam:", "</s>", "###", "\nAria:", "<|im_end|>")


async def send(h: GeminiHarness, client: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    changes.setdefault("sampler", SAMPLER.as_dict())
    changes.setdefault("stop", STOPS)
    changes.setdefault("messages", CHAT)
    _, error = await collect(h.backend(client), h.request(**changes))
    assert error is None, error
    assert h.fake.rejections == []
    body: dict[str, Any] = h.fake.last.body
    return body


async def test_ai_studio_request(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    body = await send(on(studio, "aistudio", tmp_path, rsa_keys), client)
    sent = studio.last
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert sent.query == {"alt": "sse"}  # the key travels in a header, never in the URL
    assert sent.headers["x-goog-api-key"] == SECRET
    assert "authorization" not in sent.headers
    assert body["systemInstruction"] == {"parts": [{"text": "You are Aria.\n\nAria is a fox."}]}
    assert body["contents"] == [
        {"role": "model", "parts": [{"text": "Aria: Hi! I'm Aria."}]},
        # one user turn: names in front (once), a later system note kept in place, merged
        {
            "role": "user",
            "parts": [{"text": "Sam: Hello\n\nSam: Are you there?\n\n[Aria is sleepy]\n\nGo on"}],
        },
    ]
    assert body["generationConfig"] == {
        "candidateCount": 1,
        "maxOutputTokens": 64,
        "temperature": 0.7,
        "topK": 40,
        "seed": 42,
        # at most five, and the 24-character one dropped rather than cut
        "stopSequences": ["\nUser:", "\nSam:", "</s>", "###", "\nAria:"],
    }
    assert body["safetySettings"] == [
        {"category": c, "threshold": "OFF"} for c in SAFETY_CATEGORIES
    ]


async def test_vertex_takes_its_own_safety_categories_at_the_configured_threshold(
    rsa_keys: Keys, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with fake_for("vertex-express", rsa_keys[0]) as fake:
        config = {"gemini": {"safety_threshold": "BLOCK_ONLY_HIGH"}}
        body = await send(on(fake, "vertex-express", tmp_path, rsa_keys, config=config), client)
        assert fake.last.path == (
            "/v1/projects/proj-express/locations/global/publishers/google"
            "/models/gemini-2.5-flash:streamGenerateContent"
        )
    assert body["safetySettings"] == [
        {"category": c, "threshold": "BLOCK_ONLY_HIGH"} for c in VERTEX_SAFETY_CATEGORIES
    ]


async def test_ai_studio_fake_refuses_vertex_only_categories(
    studio: FakeGemini, client: httpx.AsyncClient
) -> None:
    # the strictness the test above relies on: a category list per provider matters
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "safetySettings": [{"category": "HARM_CATEGORY_JAILBREAK", "threshold": "OFF"}],
    }
    answer = await client.post(
        studio.base_url + "/models/m:generateContent",
        json=body,
        headers={"x-goog-api-key": SECRET},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_more_than_five_stop_sequences_is_a_400_from_the_fake(
    studio: FakeGemini, client: httpx.AsyncClient
) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"stopSequences": ["a", "b", "c", "d", "e", "f"]},
    }
    answer = await client.post(
        studio.base_url + "/models/m:streamGenerateContent",
        params={"alt": "sse"},
        json=body,
        headers={"x-goog-api-key": SECRET},
    )
    assert answer.status_code == 400
    assert "at most 5" in answer.json()["error"]["message"]


async def test_server_default_safety_sends_none_and_unset_samplers_stay_unset(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    h = on(
        studio,
        "aistudio",
        tmp_path,
        rsa_keys,
        config={"gemini": {"safety_threshold": "server_default"}},
    )
    body = await send(h, client, sampler={"top_k": 0, "seed": -1, "top_p": 0.9}, stop=())
    assert "safetySettings" not in body
    # top_k 0 is "off" and a negative seed "random": both mean leaving the key out
    assert body["generationConfig"] == {"candidateCount": 1, "maxOutputTokens": 64, "topP": 0.9}


async def test_without_system_instruction_the_system_text_leads_the_first_turn(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    h = on(
        studio, "aistudio", tmp_path, rsa_keys, config={"gemini": {"system_instruction": False}}
    )
    body = await send(h, client, messages=CHAT[:3] + CHAT[4:5])
    assert "systemInstruction" not in body
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "You are Aria.\n\nAria is a fox.\n\nSam: Hello"}]}
    ]


async def test_a_prompt_of_only_instructions_is_sent_as_the_user_turn(
    studio: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    body = await send(on(studio, "aistudio", tmp_path, rsa_keys), client, messages=CHAT[:1])
    assert "systemInstruction" not in body
    assert body["contents"] == [{"role": "user", "parts": [{"text": "You are Aria."}]}]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"thinking_budget": 1024, "include_thoughts": True},
            {"thinkingBudget": 1024, "includeThoughts": True},
        ),
        ({"thinking_budget": 0, "include_thoughts": True}, {"thinkingBudget": 0}),
        ({"thinking_budget": -1}, {"thinkingBudget": -1}),
    ],
)
async def test_thinking_config(
    studio: FakeGemini,
    client: httpx.AsyncClient,
    tmp_path: Path,
    rsa_keys: Keys,
    options: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    h = on(studio, "aistudio", tmp_path, rsa_keys, config={"gemini": options})
    body = await send(h, client)
    assert body["generationConfig"]["thinkingConfig"] == expected
