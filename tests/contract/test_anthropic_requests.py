"""The anthropic family's requests: what Claude's Messages API receives for a roleplay
prompt (system, merged turns, names, the first user turn, prefill, thinking, per-model sampler
rules, stop sequences, headers), checked by a fake that refuses what the real API refuses."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.backends.anthropic import AnthropicBackend
from bot.backends.base import PromptMessage
from bot.backends.presets import PRESETS
from bot.errors import BackendError
from tests.contract.anthropic_harness import MODEL, SECRET, ClaudeHarness
from tests.contract.backend_contract import collect
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.anthropic_wire import GOLDEN_THINKING
from tests.fakes.base import Raw


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(api_key=SECRET) as server:
        yield server
        assert server.body_rejections() == []


@pytest.fixture
def harness(fake: FakeAnthropic) -> ClaudeHarness:
    return ClaudeHarness(fake)


async def send(h: ClaudeHarness, client: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    _, error = await collect(h.backend(client), h.request(**changes))
    assert error is None, error
    assert h.fake.body_rejections() == []
    body: dict[str, Any] = h.fake.last.body
    return body


async def test_headers_and_body(harness: ClaudeHarness, client: httpx.AsyncClient) -> None:
    sampler = {"temperature": 0.7, "top_k": 40, "min_p": 0.05, "seed": 3, "repetition_penalty": 1}
    body = await send(harness, client, sampler=sampler, stop=("\nUser:", "\n", "</s>"))
    headers = harness.fake.last.headers
    assert harness.fake.last.path == "/v1/messages"
    assert headers["x-api-key"] == SECRET
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    assert headers["accept"] == "text/event-stream"
    assert body == {
        "model": MODEL,
        "max_tokens": 64,
        "system": [{"type": "text", "text": "You are Aria."}],
        "messages": [{"role": "user", "content": "Sam: Hello there"}],
        "stop_sequences": ["\nUser:", "</s>"],  # a whitespace-only stop is refused by Claude
        "temperature": 0.7,
        "top_k": 40,
        "stream": True,
    }


async def test_turns_are_merged_examples_keep_their_roles_and_the_user_goes_first(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    messages = (
        PromptMessage("system", "You are Aria."),
        PromptMessage("system", "Aria is a fox."),
        PromptMessage("system", "[Example Chat]"),
        PromptMessage("system", "Hi fox", name="example_user"),
        PromptMessage("system", "*yips*", name="example_assistant"),
        PromptMessage("assistant", "Welcome, traveller."),
        PromptMessage("system", "   "),
        PromptMessage("user", "Hello", name="Sam"),
        PromptMessage("user", "Anyone here?", name="Kim"),
        PromptMessage("system", "[Write Aria's next reply.]"),
    )
    body = await send(harness, client, messages=messages)
    # every system message before the first turn is the system prompt, as SillyTavern does
    assert body["system"] == [
        {"type": "text", "text": "You are Aria."},
        {"type": "text", "text": "Aria is a fox."},
        {"type": "text", "text": "[Example Chat]"},
    ]
    assert body["messages"] == [
        {"role": "user", "content": "Hi fox"},
        {"role": "assistant", "content": "*yips*\n\nWelcome, traveller."},
        {
            "role": "user",
            "content": "Sam: Hello\n\nKim: Anyone here?\n\n[Write Aria's next reply.]",
        },
    ]


async def test_a_chat_that_starts_with_the_greeting_gets_a_first_user_turn(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    messages = (
        PromptMessage("system", "You are Aria."),
        PromptMessage("assistant", "Welcome, traveller."),
        PromptMessage("user", "Hi"),
    )
    body = await send(harness, client, messages=messages)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"] == "[Start a new chat]"


async def test_prefill_is_sent_without_trailing_whitespace(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    messages = (
        PromptMessage("user", "Hi"),
        PromptMessage("assistant", "Aria smiles and says \n"),
    )
    body = await send(harness, client, messages=messages)
    assert body["messages"][-1] == {"role": "assistant", "content": "Aria smiles and says"}


async def test_the_fake_refuses_trailing_whitespace_as_claude_does(
    fake: FakeAnthropic, client: httpx.AsyncClient
) -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Aria "}]
    response = await client.post(
        fake.base_url + "/messages",
        json={"model": MODEL, "max_tokens": 5, "messages": messages},
        headers={"x-api-key": SECRET, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 400
    assert "trailing whitespace" in response.json()["error"]["message"]
    fake.rejections.clear()


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "claude-opus-4-7-20260101"])
async def test_models_without_prefill_get_the_last_turn_as_the_users(
    harness: ClaudeHarness, client: httpx.AsyncClient, model: str
) -> None:
    messages = (PromptMessage("user", "Hi"), PromptMessage("assistant", "Aria smiles"))
    body = await send(harness, client, model=model, messages=messages)
    assert body["messages"] == [{"role": "user", "content": "Hi\n\nAria smiles"}]


@pytest.mark.parametrize(
    ("model", "sent"),
    [
        ("claude-3-7-sonnet-20250219", {"temperature": 0.9, "top_p": 0.8, "top_k": 5}),
        ("claude-sonnet-4-5", {"temperature": 0.9, "top_k": 5}),  # temperature or top_p
        ("claude-opus-4-7", {}),  # no sampler settings at all
    ],
)
async def test_sampler_rules_per_model(
    harness: ClaudeHarness, client: httpx.AsyncClient, model: str, sent: dict[str, Any]
) -> None:
    sampler = {"temperature": 0.9, "top_p": 0.8, "top_k": 5}
    body = await send(harness, client, model=model, sampler=sampler)
    assert {k: body[k] for k in ("temperature", "top_p", "top_k") if k in body} == sent


async def test_temperature_is_clamped_to_claudes_range(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    body = await send(harness, client, sampler={"temperature": 1.6})
    assert body["temperature"] == 1.0


async def test_manual_thinking_makes_room_drops_samplers_and_prefill(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    harness.fake.enqueue(Raw(GOLDEN_THINKING))
    messages = (PromptMessage("user", "Hi"), PromptMessage("assistant", "Aria"))
    sampler = {"reasoning_budget": 2048, "temperature": 0.7, "top_k": 40}
    body = await send(harness, client, messages=messages, sampler=sampler)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 2048 + 64  # the reply keeps its own 64
    assert not {"temperature", "top_k", "top_p"} & set(body)
    assert body["messages"] == [{"role": "user", "content": "Hi\n\nAria"}]


async def test_adaptive_thinking_sends_the_effort(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    sampler = {"reasoning_effort": "max", "temperature": 0.7, "top_k": 40, "top_p": 0.97}
    body = await send(harness, client, model="claude-opus-4-6", sampler=sampler)
    assert body["thinking"] == {"type": "adaptive"}
    assert body["output_config"] == {"effort": "max"}
    assert body["top_p"] == 0.97  # the one sampler thinking takes, from 0.95 up
    assert not {"temperature", "top_k"} & set(body)


async def test_an_effort_the_model_lacks_becomes_high(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    body = await send(
        harness, client, model="claude-sonnet-4-6", sampler={"reasoning_effort": "max"}
    )
    assert body["output_config"] == {"effort": "high"}


async def test_a_budget_on_an_adaptive_model_asks_for_adaptive_thinking(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    body = await send(
        harness, client, model="claude-sonnet-4-6", sampler={"reasoning_budget": 4096}
    )
    assert body["thinking"] == {"type": "adaptive"}
    assert "output_config" not in body
    assert body["max_tokens"] == 64


async def test_models_that_do_not_think_get_no_thinking(
    harness: ClaudeHarness, client: httpx.AsyncClient
) -> None:
    body = await send(
        harness, client, model="claude-3-5-haiku-20241022", sampler={"reasoning_budget": 4096}
    )
    assert "thinking" not in body
    assert body["max_tokens"] == 64


async def test_anthropic_beta_comes_from_the_config_headers(
    fake: FakeAnthropic, client: httpx.AsyncClient
) -> None:
    h = ClaudeHarness(fake, config={"headers": {"anthropic-beta": "output-128k-2025-02-19"}})
    await send(h, client)
    assert fake.last.headers["anthropic-beta"] == "output-128k-2025-02-19"


async def test_a_missing_version_header_is_refused_with_claudes_words(
    fake: FakeAnthropic, client: httpx.AsyncClient
) -> None:
    preset = dataclasses.replace(PRESETS["claude"], headers={})
    backend = AnthropicBackend(
        "main", client, preset=preset, base_url=fake.base_url, api_key=SecretStr(SECRET)
    )
    _, error = await collect(backend, ClaudeHarness(fake).request())
    assert isinstance(error, BackendError)
    assert "anthropic-version" in error.user_message()
    fake.rejections.clear()
