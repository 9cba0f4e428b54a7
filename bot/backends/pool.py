"""Configured backends by name, built once on the one shared httpx client."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from pydantic import SecretStr

from bot.backends.base import Backend
from bot.backends.registry import build_backend
from bot.config import AppConfig, BackendConfig
from bot.errors import ConfigError

SecretLookup = Callable[[str], SecretStr | None]
Builder = Callable[[str, BackendConfig, httpx.AsyncClient, SecretStr | None], Backend]


class BackendPool:
    def __init__(
        self,
        config: AppConfig,
        client: httpx.AsyncClient,
        secrets: SecretLookup,
        builder: Builder = build_backend,
    ) -> None:
        self._config = config
        self._builder = builder
        self._client = client
        self._secrets = secrets
        self._built: dict[str, tuple[Backend, BackendConfig]] = {}

    @property
    def default(self) -> str:
        return self._config.defaults.backend or next(iter(self._config.backends), "")

    def names(self) -> list[str]:
        return sorted(self._config.backends)

    def get(self, name: str = "") -> tuple[Backend, BackendConfig]:
        name = name or self.default
        if name in self._built:
            return self._built[name]
        if not name:
            raise ConfigError("no backend is configured", hint="add one under `backends:`")
        name, config = self._config.backend(name)
        key = None
        if config.api_key_env:
            key = self._secrets(config.api_key_env)
            if key is None:
                raise ConfigError(
                    f"backend {name!r} needs an API key in the environment variable "
                    f"{config.api_key_env}",
                    hint=f"set {config.api_key_env} in .env or the environment",
                )
        built = (self._builder(name, config, self._client, key), config)
        self._built[name] = built
        return built
