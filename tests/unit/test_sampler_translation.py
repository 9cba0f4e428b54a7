"""Each provider row sends the sampler settings its server reads, under its names."""

from __future__ import annotations

import httpx
import pytest

from bot.backends.base import GenerationRequest, PromptMessage
from bot.backends.openai_compat import OpenAICompatBackend
from bot.backends.presets import PRESETS
from bot.config import Sampler

SAMPLER = Sampler(
    temperature=0.8,
    min_p=0.05,
    repetition_penalty=1.1,
    repetition_penalty_range=1024,
    typical_p=0.9,
    dry_multiplier=0.8,
    xtc_threshold=0.1,
    dynatemp_low=0.5,
    grammar='root ::= "yes"',
)


async def body(provider: str) -> dict[str, object]:
    async with httpx.AsyncClient() as client:
        backend = OpenAICompatBackend(
            "b", client, preset=PRESETS[provider], base_url="http://127.0.0.1:9/v1", model="m"
        )
        request = GenerationRequest(
            mode="chat",
            model="m",
            max_tokens=50,
            messages=(PromptMessage("user", "hi"),),
            sampler=SAMPLER.as_dict(),
        )
        return backend.request_body(request)[1]


@pytest.mark.parametrize(
    ("provider", "expected", "absent"),
    [
        (
            "llamacpp",
            {
                "repeat_penalty": 1.1,
                "repeat_last_n": 1024,
                "dry_multiplier": 0.8,
                "xtc_threshold": 0.1,
                "grammar": 'root ::= "yes"',
                "min_p": 0.05,
            },
            {"dynatemp_low", "repetition_penalty"},
        ),
        (
            "koboldcpp",
            {"rep_pen": 1.1, "rep_pen_range": 1024, "typical": 0.9, "dry_multiplier": 0.8},
            {"repetition_penalty", "typical_p"},
        ),
        (
            "textgen-webui",
            {
                "repetition_penalty_range": 1024,
                "dynatemp_low": 0.5,
                "grammar_string": 'root ::= "yes"',
            },
            {"grammar"},
        ),
        (
            "tabbyapi",
            {"penalty_range": 1024, "min_temp": 0.5, "grammar_string": 'root ::= "yes"'},
            {"repetition_penalty_range", "dynatemp_low"},
        ),
        (
            "openai",
            {"temperature": 0.8},
            {"min_p", "dry_multiplier", "repetition_penalty", "grammar", "typical_p"},
        ),
    ],
)
async def test_sampler_names_per_provider(
    provider: str, expected: dict[str, object], absent: set[str]
) -> None:
    sent = await body(provider)
    for key, value in expected.items():
        assert sent[key] == value, key
    assert not absent & set(sent)
