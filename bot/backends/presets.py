"""Providers as data: one frozen row per provider, read by the family that speaks its wire.

A provider that speaks OpenAI's API and is missing here needs no code: configure
``provider: custom`` with its ``base_url`` (and ``headers`` if it wants some).
Facts come from the providers' docs as summarised in the shared backends reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

AuthStyle = Literal["bearer", "x-api-key", "both", "none"]
NameStyle = Literal["send", "sanitize", "prefix"]
"""How a message's speaker name travels: the ``name`` field as is, the ``name`` field cut to
OpenAI's ``[A-Za-z0-9_-]{1,64}``, or ``Name: `` put in front of the content (no field)."""

CORE_SAMPLERS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "seed",
    }
)
OPENAI_SAMPLERS = frozenset(
    {"temperature", "top_p", "presence_penalty", "frequency_penalty", "seed"}
)


def _frozen(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class ProviderPreset:
    """What differs between providers that share one wire family.

    ``samplers`` lists the core sampler keys (:class:`bot.config.Sampler`) the provider
    accepts; ``renames`` maps a core key to the provider's spelling. ``max_stop`` is the most
    stop strings it takes (``None``: no limit, ``0``: send none). ``max_tokens_key`` names
    the length limit in chat requests. ``include_usage`` asks for token usage while streaming
    (only where the server is known to accept ``stream_options``). ``key_required``: the
    provider refuses every request without a key, so a missing one is a start-up error.
    """

    name: str
    base_url: str = ""
    family: str = "openai"
    auth: AuthStyle = "bearer"
    key_required: bool = False
    headers: Mapping[str, str] = field(default_factory=_frozen)
    samplers: frozenset[str] = CORE_SAMPLERS
    renames: Mapping[str, str] = field(default_factory=_frozen)
    max_stop: int | None = None
    text_mode: bool = True
    chat_mode: bool = True
    names: NameStyle = "send"
    include_usage: bool = True
    max_tokens_key: str = "max_tokens"
    extra_body: Mapping[str, Any] = field(default_factory=_frozen)


# Sent to providers that credit the calling app; users can override both with `headers`.
_APP_HEADERS = _frozen({"HTTP-Referer": "https://localhost/sillybot", "X-Title": "sillybot"})

_ROWS = (
    ProviderPreset(
        # Any OpenAI-compatible server (vLLM, LM Studio, a proxy…): nothing assumed beyond
        # the base protocol, so no stream_options, which some strict servers reject.
        "custom",
        include_usage=False,
    ),
    ProviderPreset(
        "openai",
        "https://api.openai.com/v1",
        key_required=True,
        samplers=OPENAI_SAMPLERS,
        max_stop=4,
        names="sanitize",
        # the current name; reasoning models (o-series, gpt-5) refuse `max_tokens`
        max_tokens_key="max_completion_tokens",
    ),
    ProviderPreset(
        "openrouter",
        "https://openrouter.ai/api/v1",
        key_required=True,
        headers=_APP_HEADERS,
        samplers=CORE_SAMPLERS,
        # middle-out silently drops the middle of long chats; the prompt builder budgets
        extra_body=_frozen({"transforms": []}),
    ),
    ProviderPreset(
        "deepseek",
        "https://api.deepseek.com",
        key_required=True,
        samplers=OPENAI_SAMPLERS,
        max_stop=16,
        text_mode=False,  # its /completions is fill-in-the-middle only
    ),
    ProviderPreset(
        "mistral",
        "https://api.mistral.ai/v1",
        key_required=True,
        samplers=OPENAI_SAMPLERS,
        renames=_frozen({"seed": "random_seed"}),
        names="prefix",
        text_mode=False,
        include_usage=False,  # it reports usage anyway and rejects unknown fields
        extra_body=_frozen({"safe_prompt": False}),
    ),
    ProviderPreset(
        "llamacpp",
        "http://127.0.0.1:8080/v1",
        renames=_frozen({"repetition_penalty": "repeat_penalty"}),
    ),
    ProviderPreset(
        "koboldcpp",
        "http://127.0.0.1:5001/v1",
        # its /v1 endpoints read the native sampler names
        renames=_frozen({"repetition_penalty": "rep_pen", "seed": "sampler_seed"}),
    ),
    ProviderPreset(
        "ollama",
        "http://127.0.0.1:11434/v1",
        auth="none",
        # the /v1 routes ignore Ollama's native `options`; only the OpenAI keys work
        samplers=OPENAI_SAMPLERS,
    ),
    ProviderPreset("textgen-webui", "http://127.0.0.1:5000/v1", include_usage=False),
    ProviderPreset("tabbyapi", "http://127.0.0.1:5000/v1", auth="x-api-key"),
    ProviderPreset("mancer", "https://neuro.mancer.tech/oai/v1", auth="both", key_required=True),
    ProviderPreset(
        "dreamgen",
        "https://dreamgen.com/api/openai/v1",
        key_required=True,
        samplers=CORE_SAMPLERS - {"seed"},
        include_usage=False,
    ),
    ProviderPreset(
        "electronhub",
        "https://api.electronhub.ai/v1",
        key_required=True,
        samplers=OPENAI_SAMPLERS | {"top_k"},
        text_mode=False,
    ),
    ProviderPreset(
        "aimlapi",
        "https://api.aimlapi.com/v1",
        key_required=True,
        headers=_APP_HEADERS,
        samplers=OPENAI_SAMPLERS,
        text_mode=False,
    ),
    ProviderPreset(
        "perplexity",
        "https://api.perplexity.ai",
        key_required=True,
        samplers=OPENAI_SAMPLERS - {"seed"} | {"top_k"},
        max_stop=0,
        names="prefix",
        text_mode=False,
        include_usage=False,
    ),
    ProviderPreset(
        "ai21",
        "https://api.ai21.com/studio/v1",
        key_required=True,
        samplers=frozenset({"temperature", "top_p"}),
        names="prefix",
        text_mode=False,
        include_usage=False,
    ),
    ProviderPreset(
        "pollinations",
        "https://gen.pollinations.ai/v1",
        samplers=OPENAI_SAMPLERS,
        text_mode=False,
    ),
    ProviderPreset(
        "novelai-oa",
        "https://text.novelai.net/oa/v1",
        key_required=True,
        # Cloudflare in front of NovelAI has rejected generic library user agents
        headers=_frozen({"User-Agent": "sillybot/0.1"}),
        include_usage=False,
    ),
)

PRESETS: Mapping[str, ProviderPreset] = MappingProxyType({p.name: p for p in _ROWS})


def get_preset(name: str, presets: Mapping[str, ProviderPreset] = PRESETS) -> ProviderPreset:
    """The row for ``name``; :class:`KeyError` naming the known providers otherwise."""
    try:
        return presets[name]
    except KeyError:
        known = ", ".join(sorted(presets))
        raise KeyError(f"unknown provider {name!r} (known: {known})") from None
