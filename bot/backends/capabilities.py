"""What each provider (and, where it differs, each model line) accepts, as data.

The prompt engine consults this table for its role rules instead of guessing from model
names; a backend's config can override any field (``capabilities:``) for a server this table
does not know. Facts: the shared backends reference (§4 and §6).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any

from bot.backends.anthropic_models import claude_model
from bot.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Capabilities:
    """``system_role`` False: system text travels as user text; ``system_first_only``: only
    leading system messages are allowed; ``alternate``: user/assistant must alternate (runs
    are merged); ``user_first``: the first turn after the system text must be the user's;
    ``names``: the ``name`` field is accepted; ``prefill``: a final assistant message is
    continued; ``continue_prefix``: the provider's prefix-continuation flag exists;
    ``max_stop``: the most stop strings it takes (None: no limit)."""

    system_role: bool = True
    system_first_only: bool = False
    alternate: bool = False
    user_first: bool = False
    names: bool = True
    prefill: bool = True
    continue_prefix: bool = False
    vision: bool = False
    reasoning: bool = False
    max_stop: int | None = None


LOCAL = Capabilities()
PROVIDERS: Mapping[str, Capabilities] = MappingProxyType(
    {
        "openai": Capabilities(prefill=False, vision=True, reasoning=True, max_stop=4),
        "openrouter": Capabilities(vision=True, reasoning=True),
        "deepseek": Capabilities(names=False, continue_prefix=True, reasoning=True, max_stop=16),
        "mistral": Capabilities(names=False, continue_prefix=True, vision=True),
        "perplexity": Capabilities(
            system_first_only=True,
            alternate=True,
            user_first=True,
            names=False,
            prefill=False,
            reasoning=True,
            max_stop=0,
        ),
        "ai21": Capabilities(system_first_only=True, alternate=True, names=False, prefill=False),
        "electronhub": Capabilities(vision=True, reasoning=True),
        "aimlapi": Capabilities(vision=True, reasoning=True),
        "pollinations": Capabilities(prefill=False),
        "claude": Capabilities(
            system_first_only=True,
            alternate=True,
            user_first=True,
            names=False,
            vision=True,
            reasoning=True,
        ),
        "gemini": Capabilities(
            system_first_only=True,
            alternate=True,
            names=False,
            vision=True,
            reasoning=True,
            max_stop=5,
        ),
        "vertex": Capabilities(
            system_first_only=True,
            alternate=True,
            names=False,
            vision=True,
            reasoning=True,
            max_stop=5,
        ),
        "cohere": Capabilities(names=False, prefill=False, max_stop=5),
        "horde": Capabilities(max_stop=128),
    }
)


def _claude(model: str, base: Capabilities) -> Capabilities:
    line = claude_model(model)
    return replace(base, prefill=line.prefill)


# Providers whose capabilities differ per model line, from the family's own model table.
MODEL_LINES: Mapping[str, Callable[[str, Capabilities], Capabilities]] = MappingProxyType(
    {"claude": _claude}
)

_FIELDS = {f.name for f in fields(Capabilities)}


def capabilities(provider: str, model: str, overrides: Mapping[str, Any]) -> Capabilities:
    """The provider's row, refined for the model line, with the config's overrides on top."""
    caps = PROVIDERS.get(provider, LOCAL)
    refine = MODEL_LINES.get(provider)
    if refine is not None and model:
        caps = refine(model, caps)
    unknown = set(overrides) - _FIELDS
    if unknown:
        raise ConfigError(
            f"capabilities: unknown setting(s) {', '.join(sorted(unknown))}",
            hint=f"known: {', '.join(sorted(_FIELDS))}",
        )
    return replace(caps, **overrides) if overrides else caps
