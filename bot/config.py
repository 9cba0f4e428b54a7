"""The one place that reads the environment and the config file.

* Process settings and secrets come from the environment and ``.env`` (:class:`Settings`).
* Backends, characters and defaults come from one YAML file (:class:`AppConfig`).

Every problem is a :class:`bot.errors.ConfigError` naming the file, the key and the
expected form, raised at start-up rather than mid-conversation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError


class Settings(BaseSettings):
    """Process settings. ``.env.example`` lists every one with a comment."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_prefix=""
    )

    redis_url: str = Field(default="", alias="REDIS_URL")
    config_file: Path = Field(default=Path("config.yaml"), alias="SILLYBOT_CONFIG")
    data_dir: Path = Field(default=Path("data"), alias="SILLYBOT_DATA_DIR")
    log_level: str = Field(default="INFO", alias="SILLYBOT_LOG_LEVEL")
    key_prefix: str = Field(default="sb", alias="SILLYBOT_KEY_PREFIX")
    local_model_port: int = Field(default=0, alias="SILLYBOT_LOCAL_MODEL_PORT")
    discord_token: SecretStr | None = Field(default=None, alias="DISCORD_TOKEN")
    telegram_token: SecretStr | None = Field(default=None, alias="TELEGRAM_TOKEN")

    def secret(self, variable: str) -> SecretStr | None:
        """An API key named by a backend's ``api_key_env`` (read from env or ``.env``)."""
        value = os.environ.get(variable)
        if value is None:
            value = _dotenv_value(Path(".env"), variable)
        return SecretStr(value) if value else None


def _dotenv_value(path: Path, variable: str) -> str | None:
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == variable:
            return value.strip().strip("'\"")
    return None


class Sampler(BaseModel):
    """Sampler settings in the core's names; a backend family translates them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(default=None, ge=0, le=10)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: float | None = Field(default=None, gt=0)
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class BackendConfig(BaseModel):
    """One configured backend. ``provider`` picks a preset row (base URL, auth style, …)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = "custom"
    mode: Literal["chat", "text"] = "chat"
    base_url: str = ""
    model: str = ""
    api_key_env: str | None = None
    context_size: int = Field(default=8192, ge=256)
    max_tokens: int = Field(default=300, ge=1)
    sampler: Sampler = Sampler()
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=120.0, gt=0)
    # False asks for one JSON answer instead of a stream (for servers whose SSE is broken)
    stream: bool = True

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class CharacterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    card: Path


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = ""
    character: str = ""
    user_name: str = "User"
    system_prompt: str = (
        "Write {{char}}'s next reply in a fictional chat between {{char}} and {{user}}."
    )
    history_window: int = Field(default=400, ge=1)
    # backends tried in order when the channel's backend fails before any text arrives
    fallback: list[str] = Field(default_factory=list)
    lock_ttl: float = Field(default=30.0, gt=1)


class AppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    defaults: Defaults = Defaults()
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    characters: dict[str, CharacterConfig] = Field(default_factory=dict)

    @field_validator("backends", "characters", "defaults", mode="before")
    @classmethod
    def _empty_section(cls, v: object) -> object:
        # a section left with only commented-out entries parses as null in YAML
        return {} if v is None else v

    def backend(self, name: str = "") -> tuple[str, BackendConfig]:
        name = name or self.defaults.backend or next(iter(self.backends), "")
        if name not in self.backends:
            known = ", ".join(sorted(self.backends)) or "none configured"
            raise ConfigError(f"unknown backend {name!r} (known: {known})")
        return name, self.backends[name]


def load_config(path: Path) -> AppConfig:
    """Read and validate the YAML config; a missing file means the built-in defaults."""
    if not path.exists():
        return AppConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        config = AppConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc)) from None
    base = path.parent
    chars = {
        name: CharacterConfig(card=c.card if c.card.is_absolute() else base / c.card)
        for name, c in config.characters.items()
    }
    return config.model_copy(update={"characters": chars})


def _describe(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s)"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        lines.append(f"  {where}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)
