"""Configured backend → a ready :class:`Backend`: preset lookup, family factory, retries.

Families are keyed by name in :data:`FAMILIES`, one line each. A provider's preset row names
its family, so the config only ever says ``provider:``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from types import MappingProxyType

import httpx
from pydantic import SecretStr

from bot.backends.anthropic import build_anthropic
from bot.backends.base import Backend
from bot.backends.cohere import build_cohere
from bot.backends.gemini import build_gemini
from bot.backends.horde import build_horde
from bot.backends.kobold import build_kobold
from bot.backends.llamacpp import build_llamacpp_native
from bot.backends.novelai import build_novelai
from bot.backends.ollama import build_ollama
from bot.backends.openai_compat import OpenAICompatBackend
from bot.backends.presets import PRESETS, ProviderPreset
from bot.backends.retry import RetryingBackend, RetryPolicy, Sleep
from bot.config import BackendConfig
from bot.errors import ConfigError

BackendFactory = Callable[
    [str, BackendConfig, ProviderPreset, str, httpx.AsyncClient, SecretStr | None], Backend
]
"""(name, config, preset, base_url, client, api_key) → an unwrapped backend."""


def _openai(
    name: str,
    config: BackendConfig,
    preset: ProviderPreset,
    base_url: str,
    client: httpx.AsyncClient,
    api_key: SecretStr | None,
) -> Backend:
    return OpenAICompatBackend(
        name,
        client,
        preset=preset,
        base_url=base_url,
        api_key=api_key,
        model=config.model,
        headers=config.headers,
        timeout=config.timeout,
        stream=config.stream,
    )


FAMILIES: Mapping[str, BackendFactory] = MappingProxyType(
    {
        "openai": _openai,
        "kobold_native": build_kobold,
        "horde": build_horde,
        "llamacpp_native": build_llamacpp_native,
        "ollama_native": build_ollama,
        "novelai_legacy": build_novelai,
        "anthropic": build_anthropic,
        "cohere_v2": build_cohere,
        "gemini": build_gemini,
    }
)


def build_backend(
    name: str,
    config: BackendConfig,
    client: httpx.AsyncClient,
    api_key: SecretStr | None,
    *,
    families: Mapping[str, BackendFactory] = FAMILIES,
    presets: Mapping[str, ProviderPreset] = PRESETS,
    retry: RetryPolicy | None = None,
    sleep: Sleep = asyncio.sleep,
) -> Backend:
    """The backend configured as ``name``, wrapped in retry-before-first-token.

    Every mistake a config can make here is a :class:`ConfigError` at start-up, naming
    the backend and the choices.
    """
    preset = presets.get(config.provider)
    if preset is None:
        known = ", ".join(sorted(presets))
        raise ConfigError(
            f"backend {name!r}: unknown provider {config.provider!r} (known: {known})",
            hint="use `provider: custom` with `base_url` for any other OpenAI-compatible server",
        )
    factory = families.get(preset.family)
    if factory is None:
        known = ", ".join(sorted(families))
        raise ConfigError(
            f"backend {name!r}: provider {preset.name!r} needs the API family "
            f"{preset.family!r}, which is not available (known: {known})"
        )
    base_url = config.base_url or preset.base_url
    if not base_url:
        raise ConfigError(
            f"backend {name!r}: provider {preset.name!r} has no default address",
            hint="set `base_url`, e.g. http://127.0.0.1:8000/v1",
        )
    if config.mode == "text" and not preset.text_mode:
        raise ConfigError(
            f"backend {name!r}: provider {preset.name!r} has no text completion endpoint",
            hint="set `mode: chat`",
        )
    if config.mode == "chat" and not preset.chat_mode:
        raise ConfigError(
            f"backend {name!r}: provider {preset.name!r} has no chat completion endpoint",
            hint="set `mode: text`",
        )
    if preset.key_required and api_key is None:
        raise ConfigError(
            f"backend {name!r}: provider {preset.name!r} needs an API key",
            hint="set `api_key_env` to the name of the environment variable holding it",
        )
    backend = factory(name, config, preset, base_url, client, api_key)
    return RetryingBackend(backend, retry, sleep=sleep)
