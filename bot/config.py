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

    def config_named(self) -> bool:
        """Whether a config file was asked for (then a missing one is an error)."""
        named = os.environ.get("SILLYBOT_CONFIG") or _dotenv_value(Path(".env"), "SILLYBOT_CONFIG")
        return bool(named)

    def secret(self, variable: str) -> SecretStr | None:
        """An API key named by a backend's ``api_key_env`` (read from env or ``.env``)."""
        value = os.environ.get(variable)
        if value is None:
            value = _dotenv_value(Path(".env"), variable)
        return SecretStr(value) if value else None


def _dotenv_value(path: Path, variable: str) -> str | None:
    """A value from ``.env``: ``NAME=value``, ``export NAME=value``, quoted or with a
    trailing `` # comment`` (the shapes python-dotenv, which pydantic-settings uses, reads)."""
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if not sep or name.strip() != variable:
            continue
        value = value.strip()
        if value[:1] in ("'", '"') and value[:1] in value[1:]:
            return value[1 : value.index(value[0], 1)]
        return value.split(" #", 1)[0].strip()
    return None


class Sampler(BaseModel):
    """Sampler settings in the core's names; each backend family translates the ones its
    server supports and drops the rest (with a debug log), so no setting breaks a request.

    The names follow SillyTavern's text-generation settings where they exist.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(default=None, ge=0, le=10)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    top_a: float | None = Field(default=None, ge=0)
    typical_p: float | None = Field(default=None, ge=0, le=1)
    tfs: float | None = Field(default=None, ge=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0)
    repetition_penalty_range: int | None = Field(default=None, ge=-1)
    repetition_penalty_slope: float | None = Field(default=None, ge=0)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    mirostat_mode: int | None = Field(default=None, ge=0, le=2)
    mirostat_tau: float | None = Field(default=None, ge=0)
    mirostat_eta: float | None = Field(default=None, ge=0)
    dry_multiplier: float | None = Field(default=None, ge=0)
    dry_base: float | None = Field(default=None, ge=0)
    dry_allowed_length: int | None = Field(default=None, ge=0)
    dry_penalty_last_n: int | None = Field(default=None, ge=-1)
    dry_sequence_breakers: tuple[str, ...] | None = None
    xtc_threshold: float | None = Field(default=None, ge=0, le=1)
    xtc_probability: float | None = Field(default=None, ge=0, le=1)
    dynatemp_low: float | None = Field(default=None, ge=0)
    dynatemp_high: float | None = Field(default=None, ge=0)
    dynatemp_exponent: float | None = Field(default=None, ge=0)
    smoothing_factor: float | None = Field(default=None, ge=0)
    seed: int | None = None
    logit_bias: dict[str, float] | None = None  # token id -> bias
    banned_strings: tuple[str, ...] | None = None
    ban_eos_token: bool | None = None
    grammar: str | None = None  # GBNF, for servers that take one
    json_schema: dict[str, Any] | None = None
    sampler_order: tuple[int, ...] | None = None  # KoboldCpp's sampler ids
    reasoning_effort: str | None = None
    reasoning_budget: int | None = Field(default=None, ge=0)  # thinking tokens (Claude, Gemini)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    def merged(self, override: Sampler) -> Sampler:
        """This preset with ``override``'s set values on top."""
        return self.model_copy(update=override.as_dict())


SafetyThreshold = Literal[
    "OFF",
    "BLOCK_NONE",
    "BLOCK_ONLY_HIGH",
    "BLOCK_MEDIUM_AND_ABOVE",
    "BLOCK_LOW_AND_ABOVE",
    "server_default",
]


class GeminiOptions(BaseModel):
    """Google AI Studio / Vertex AI settings (``provider: gemini`` or ``vertex``).

    Vertex authenticates with an API key (``api_key_env``, "express mode") or a service
    account: a JSON key file named by ``service_account_file`` or by the environment variable
    ``service_account_env`` (e.g. ``GOOGLE_APPLICATION_CREDENTIALS``). ``project`` defaults to
    the service account's own project. ``safety_threshold`` applies to every harm category;
    ``server_default`` sends no safety settings at all.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str = ""
    region: str = "us-central1"
    service_account_file: Path | None = None
    service_account_env: str | None = None
    safety_threshold: SafetyThreshold = "OFF"
    # Gemma models refuse `systemInstruction`; False sends the system text as a user turn
    system_instruction: bool = True
    thinking_budget: int | None = Field(default=None, ge=-1)  # -1: dynamic, 0: off
    include_thoughts: bool = False

    def service_account_path(self) -> Path | None:
        """The key file: the configured path, else the one the named variable holds."""
        if self.service_account_file is not None:
            return self.service_account_file
        if not self.service_account_env:
            return None
        value = os.environ.get(self.service_account_env)
        if value is None:
            value = _dotenv_value(Path(".env"), self.service_account_env)
        return Path(value) if value else None


class BackendConfig(BaseModel):
    """One configured backend. ``provider`` picks a preset row (base URL, auth style, …)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = "custom"
    mode: Literal["chat", "text"] = "chat"
    base_url: str = ""
    model: str = ""
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    context_size: int = Field(default=8192, ge=256)
    max_tokens: int = Field(default=300, ge=1)
    sampler: Sampler = Sampler()
    # a SillyTavern textgen or kobold preset file; `sampler:` values override it
    sampler_preset: Path | None = None
    # how prompts are measured: auto (tiktoken for OpenAI models, the server's own count
    # where it has one, else an estimate), sillytavern (its estimate), tiktoken, backend,
    # estimate
    tokenizer: Literal["auto", "sillytavern", "tiktoken", "backend", "estimate"] = "auto"
    # text mode on llama.cpp's native API: format prompts with the model's own chat template
    # (from its GET /props, rendered with sandboxed Jinja) instead of the instruct template
    model_template: bool = False
    # overrides of the provider's capability row (bot/backends/capabilities.py), e.g.
    # {prefill: false, names: false} for a server the table does not know
    capabilities: dict[str, bool | int | None] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=120.0, gt=0)
    # False asks for one JSON answer instead of a stream (for servers whose SSE is broken)
    stream: bool = True
    # Ollama: how long the model stays loaded after a reply ("5m", seconds, -1: for ever);
    # None leaves it to the server (5 minutes), which reloads a big model on every slow chat
    keep_alive: str | int | None = None
    gemini: GeminiOptions = GeminiOptions()

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class CharacterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    card: Path
    worlds: list[Path] = Field(default_factory=list)  # lorebooks linked to this character


class AuthorsNoteConfig(BaseModel):
    """SillyTavern's author's note; position 0 after the story, 1 in chat at ``depth``,
    2 before the story. ``interval``: every N user messages (0 = off)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = ""
    position: int = Field(default=1, ge=0, le=2)
    depth: int = Field(default=4, ge=0, le=1000)
    role: Literal["system", "user", "assistant"] = "system"
    interval: int = Field(default=1, ge=0)


class ReasoningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    show: bool = False  # show the model's reasoning above its reply
    prefix: str = "<think>"  # how a model writes reasoning inline in its text
    suffix: str = "</think>"


class PromptConfig(BaseModel):
    """Where prompts come from. With nothing set: the bot's defaults (ChatML for text
    completion, SillyTavern's default prompt order for chat completion)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # a SillyTavern settings.json: its instruct, context, system prompt, chat-completion
    # preset, persona and world-info settings are used as SillyTavern would use them
    sillytavern_settings: Path | None = None
    # SillyTavern preset files (each overrides the settings.json's choice)
    instruct: Path | None = None
    context: Path | None = None
    sysprompt: Path | None = None
    chat_preset: Path | None = None
    worlds: list[Path] = Field(default_factory=list)  # global lorebooks
    lore: dict[str, Any] = Field(default_factory=dict)  # world_info_settings overrides
    regex_scripts: list[Path] = Field(default_factory=list)
    authors_note: AuthorsNoteConfig | None = None
    reasoning: ReasoningConfig = ReasoningConfig()


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
    prompt: PromptConfig = PromptConfig()

    @field_validator("backends", "characters", "defaults", "prompt", mode="before")
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
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be read"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        config = AppConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc)) from None
    base = path.parent

    def at(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    chars = {
        name: CharacterConfig(card=at(c.card), worlds=[at(w) for w in c.worlds])
        for name, c in config.characters.items()
    }
    backends = {name: _with_preset(b, base) for name, b in config.backends.items()}
    prompt = config.prompt
    paths = {
        k: at(v)
        for k in ("sillytavern_settings", "instruct", "context", "sysprompt", "chat_preset")
        if (v := getattr(prompt, k)) is not None
    }
    prompt = prompt.model_copy(
        update={
            **paths,
            "worlds": [at(w) for w in prompt.worlds],
            "regex_scripts": [at(r) for r in prompt.regex_scripts],
        }
    )
    return config.model_copy(update={"characters": chars, "backends": backends, "prompt": prompt})


def _with_preset(backend: BackendConfig, base: Path) -> BackendConfig:
    if backend.sampler_preset is None:
        return backend
    from bot.backends.samplers import load_sampler_preset  # the ST name table lives there

    path = backend.sampler_preset
    path = path if path.is_absolute() else base / path
    sampler = load_sampler_preset(path).merged(backend.sampler)
    return backend.model_copy(update={"sampler": sampler, "sampler_preset": path})


_SECRET_WORDS = ("key", "token", "secret", "password")


def _describe(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s)"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        got = err.get("input")
        # a value under a secret-looking name, or a long token-like string, is never echoed
        hide = any(w in where.lower() for w in _SECRET_WORDS) or (
            isinstance(got, str) and len(got) > 24 and " " not in got
        )
        shown = "(hidden: it looks like a secret; secrets belong in .env)" if hide else repr(got)
        if err["type"] == "extra_forbidden":
            lines.append(f"  {where}: not a known setting (a typo?) — got {shown}")
        else:
            lines.append(f"  {where}: {err['msg']} (got {shown})")
    return "\n".join(lines)
