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
class NativeCall:
    """A server's own route beside its generation API (a token counter, an abort): the path
    from the server's root (the base URL without a trailing ``/v1`` or ``/api``) and the JSON
    field it reads: the text to count, or the key that ties an abort to its request
    (KoboldCpp's ``genkey``; ``""``: an unkeyed abort, sent without a body)."""

    path: str
    field: str = ""


# Core sampler keys per Kobold-speaking server (names as in bot.backends.kobold_wire.SAMPLERS).
# KoboldAI Classic answers 422 to any key it does not know, so it gets only the old core set.
# What the local servers' OpenAI-compatible routes also read (their native samplers).
LLAMACPP_V1_SAMPLERS = CORE_SAMPLERS | {
    "typical_p",
    "repetition_penalty_range",
    "mirostat_mode",
    "mirostat_tau",
    "mirostat_eta",
    "dry_multiplier",
    "dry_base",
    "dry_allowed_length",
    "dry_penalty_last_n",
    "dry_sequence_breakers",
    "xtc_threshold",
    "xtc_probability",
    "logit_bias",
    "grammar",
    "json_schema",
}
TEXTGEN_V1_SAMPLERS = CORE_SAMPLERS | {
    "typical_p",
    "tfs",
    "top_a",
    "repetition_penalty_range",
    "mirostat_mode",
    "mirostat_tau",
    "mirostat_eta",
    "dry_multiplier",
    "dry_base",
    "dry_allowed_length",
    "xtc_threshold",
    "xtc_probability",
    "dynatemp_low",
    "dynatemp_high",
    "dynatemp_exponent",
    "smoothing_factor",
    "ban_eos_token",
    "grammar",
    "logit_bias",
}
TABBY_V1_SAMPLERS = TEXTGEN_V1_SAMPLERS | {
    "dry_penalty_last_n",
    "dry_sequence_breakers",
    "banned_strings",
    "json_schema",
}

KOBOLD_CLASSIC_SAMPLERS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "top_a",
        "typical_p",
        "tfs",
        "repetition_penalty",
        "repetition_penalty_range",
        "repetition_penalty_slope",
        "sampler_order",
    }
)
HORDE_SAMPLERS = KOBOLD_CLASSIC_SAMPLERS | {
    "min_p",
    "smoothing_factor",
    "dynatemp_low",
    "dynatemp_high",
    "dynatemp_exponent",
    "ban_eos_token",
}
KOBOLDCPP_SAMPLERS = HORDE_SAMPLERS | {
    "seed",
    "mirostat_mode",
    "mirostat_tau",
    "mirostat_eta",
    "dry_multiplier",
    "dry_base",
    "dry_allowed_length",
    "dry_penalty_last_n",
    "dry_sequence_breakers",
    "xtc_threshold",
    "xtc_probability",
    "logit_bias",
    "grammar",
    "banned_strings",
}
_KOBOLDCPP_COUNT = NativeCall("/api/extra/tokencount", "prompt")
_KOBOLDCPP_ABORT = NativeCall("/api/extra/abort", "genkey")


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
    # the server's own token counter, tried in order until one exists (see NativeCall)
    token_count: tuple[NativeCall, ...] = ()
    # called when a reply is abandoned: closing the stream does not stop every server
    abort: NativeCall | None = None
    # False: the server only answers whole (KoboldAI Classic, AI Horde), whatever `stream` says
    streams: bool = True


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
        samplers=LLAMACPP_V1_SAMPLERS,
        renames=_frozen(
            {
                "repetition_penalty": "repeat_penalty",
                "repetition_penalty_range": "repeat_last_n",
                "mirostat_mode": "mirostat",
            }
        ),
        # llama-server's /tokenize; llama-cpp-python's server (the embedded one) has only its
        # /extras route
        token_count=(
            NativeCall("/tokenize", "content"),
            NativeCall("/extras/tokenize/count", "input"),
        ),
    ),
    ProviderPreset(
        "koboldcpp",
        "http://127.0.0.1:5001/v1",
        # its /v1 endpoints read the native sampler names
        samplers=KOBOLDCPP_SAMPLERS,
        renames=_frozen(
            {
                "repetition_penalty": "rep_pen",
                "repetition_penalty_range": "rep_pen_range",
                "repetition_penalty_slope": "rep_pen_slope",
                "typical_p": "typical",
                "seed": "sampler_seed",
                "mirostat_mode": "mirostat",
                "banned_strings": "banned_tokens",
            }
        ),
        token_count=(_KOBOLDCPP_COUNT,),
        abort=_KOBOLDCPP_ABORT,
    ),
    ProviderPreset(
        "ollama",
        "http://127.0.0.1:11434/v1",
        auth="none",
        # the /v1 routes ignore Ollama's native `options`; only the OpenAI keys work
        samplers=OPENAI_SAMPLERS,
    ),
    ProviderPreset(
        "textgen-webui",
        "http://127.0.0.1:5000/v1",
        include_usage=False,
        samplers=TEXTGEN_V1_SAMPLERS,
        renames=_frozen({"grammar": "grammar_string"}),
        token_count=(NativeCall("/v1/internal/token-count", "text"),),
        # it goes on generating after a disconnect; the stop is global, not per request
        abort=NativeCall("/v1/internal/stop-generation"),
    ),
    ProviderPreset(
        "tabbyapi",
        "http://127.0.0.1:5000/v1",
        auth="x-api-key",
        samplers=TABBY_V1_SAMPLERS,
        renames=_frozen(
            {
                "repetition_penalty_range": "penalty_range",
                "dry_penalty_last_n": "dry_range",
                "dynatemp_low": "min_temp",
                "dynatemp_high": "max_temp",
                "dynatemp_exponent": "temp_exponent",
                "grammar": "grammar_string",
            }
        ),
        token_count=(NativeCall("/v1/token/encode", "text"),),
    ),
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
    # The gemini family sends its own auth (x-goog-api-key, or a service account's bearer
    # token), so `auth` stays "none"; `samplers` are the core keys generationConfig takes.
    ProviderPreset(
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta",
        family="gemini",
        auth="none",
        key_required=True,
        samplers=OPENAI_SAMPLERS | {"top_k"},
        max_stop=5,
        text_mode=False,
        names="prefix",
        include_usage=False,
    ),
    ProviderPreset(
        # {region} and {project} are filled from `gemini:`; region `global` drops the host's
        # region prefix, and an API key with no project uses the express-mode URL
        "vertex",
        "https://{region}-aiplatform.googleapis.com/v1/projects/{project}/locations/{region}"
        "/publishers/google",
        family="gemini",
        auth="none",
        samplers=OPENAI_SAMPLERS | {"top_k"},
        max_stop=5,
        text_mode=False,
        names="prefix",
        include_usage=False,
    ),
    # Claude's Messages API (the anthropic family): x-api-key plus the required version
    # header; add `anthropic-beta` through the backend's `headers`. Per-model rules (prefill,
    # thinking, sampler limits) are in bot.backends.anthropic_wire.CLAUDE_MODELS.
    ProviderPreset(
        "claude",
        "https://api.anthropic.com/v1",
        family="anthropic",
        auth="x-api-key",
        key_required=True,
        headers=_frozen({"anthropic-version": "2023-06-01"}),
        samplers=frozenset({"temperature", "top_p", "top_k"}),
        text_mode=False,
        names="prefix",
        include_usage=False,
    ),
    # Cohere's Chat v2 (the cohere_v2 family): `p`/`k` sampler names, at most five stop
    # sequences; safety_mode OFF is sent only to the models that take it (cohere_wire).
    ProviderPreset(
        "cohere",
        "https://api.cohere.com/v2",
        family="cohere_v2",
        key_required=True,
        headers=_frozen({"X-Client-Name": "sillybot"}),
        samplers=OPENAI_SAMPLERS | {"top_k"},
        max_stop=5,
        text_mode=False,
        names="prefix",
        include_usage=False,
        extra_body=_frozen({"safety_mode": "OFF"}),
    ),
    # llama.cpp's native API (llamacpp_native family): /completion with a templated prompt,
    # /tokenize, /props. The base URL is the server's root (no /v1); Bearer only when a key
    # is configured (llama-server --api-key). Sampler names: llamacpp_wire.SAMPLERS.
    ProviderPreset(
        "llamacpp-native",
        "http://127.0.0.1:8080",
        family="llamacpp_native",
        chat_mode=False,
        include_usage=False,
        token_count=(
            NativeCall("/tokenize", "content"),
            NativeCall("/extras/tokenize/count", "input"),  # llama-cpp-python's server
        ),
    ),
    # Ollama's native API (ollama_native family): /api/chat, /api/generate with raw prompts,
    # NDJSON, `options` (ollama_wire.OPTIONS). A local server takes no key; one configured
    # goes out as Bearer (for a proxy in front). ollama.com's API needs one.
    ProviderPreset(
        "ollama-native",
        "http://127.0.0.1:11434",
        family="ollama_native",
        names="prefix",
        include_usage=False,
    ),
    ProviderPreset(
        "ollama-cloud",
        "https://ollama.com",
        family="ollama_native",
        key_required=True,
        names="prefix",
        include_usage=False,
    ),
    # NovelAI's legacy text API (novelai_legacy family): Bearer `pst-…` token, an explicit
    # User-Agent (Cloudflare rejects library defaults); stop strings are cut client-side.
    ProviderPreset(
        "novelai",
        "https://text.novelai.net",
        family="novelai_legacy",
        key_required=True,
        headers=_frozen({"User-Agent": "sillybot/0.1"}),
        chat_mode=False,
        include_usage=False,
    ),
    # KoboldCpp's native API (kobold_native family): text only, a `--password` as Bearer;
    # trim_stop keeps the stop string out of the reply.
    ProviderPreset(
        "koboldcpp-native",
        "http://127.0.0.1:5001",
        family="kobold_native",
        samplers=KOBOLDCPP_SAMPLERS,
        chat_mode=False,
        include_usage=False,
        extra_body=_frozen({"trim_stop": True}),
        token_count=(_KOBOLDCPP_COUNT,),
        abort=_KOBOLDCPP_ABORT,
    ),
    # KoboldAI Classic (United): blocking generate only, no /api/extra (so no stream, abort
    # or token count); the use_* flags stop it adding its own story, memory and lore.
    ProviderPreset(
        "koboldai-classic",
        "http://127.0.0.1:5000",
        family="kobold_native",
        auth="none",
        samplers=KOBOLD_CLASSIC_SAMPLERS,
        chat_mode=False,
        include_usage=False,
        streams=False,
        extra_body=_frozen(
            {
                "use_story": False,
                "use_memory": False,
                "use_authors_note": False,
                "use_world_info": False,
            }
        ),
    ),
    # AI Horde (horde family): the family sends its own `apikey` header (the anonymous key
    # when none is set) and Client-Agent, so `auth` stays "none"; it polls, never streams.
    ProviderPreset(
        "horde",
        "https://aihorde.net/api/v2",
        family="horde",
        auth="none",
        samplers=HORDE_SAMPLERS,
        max_stop=128,
        chat_mode=False,
        include_usage=False,
        streams=False,
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
