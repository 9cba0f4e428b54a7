"""Personas: who the user plays (``{{user}}``), as data. The engine stores them; the prompt
builder places the description where ``position`` says (SillyTavern's
``persona_description_position`` values, so imported settings mean the same thing).

Lookup order for a user in a server: that user's persona for that server, else that user's
persona anywhere, else the default persona, else none (the platform display name is used).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.errors import ConfigError
from bot.types import Role

DEFAULT_KEY = "*"
_ROLES: dict[Any, Role] = {
    "system": "system",
    "user": "user",
    "assistant": "assistant",
    0: "system",
    1: "user",
    2: "assistant",
}


class PersonaError(ConfigError):
    hint = "fix the persona's fields (name, description, position, depth, role)"


class PersonaPosition(enum.IntEnum):
    """Where the description goes (the numbers are SillyTavern's stored values)."""

    IN_PROMPT = 0  # the story string's {{persona}} / the prompt manager's persona slot
    AFTER_CHAR = 1  # deprecated in SillyTavern; read as IN_PROMPT
    TOP_AN = 2  # before the author's note text (only on turns the note is inserted)
    BOTTOM_AN = 3  # after the author's note text
    AT_DEPTH = 4  # in the chat history at ``depth`` with ``role``
    NONE = 9  # not sent


@dataclass(frozen=True, slots=True)
class Persona:
    """One persona. ``avatar`` is an image URL or the key under which the engine stored the
    image bytes; ``lorebook`` names a world book that is active while the persona is."""

    name: str
    description: str = ""
    avatar: str = ""
    position: PersonaPosition = PersonaPosition.IN_PROMPT
    depth: int = 2  # SillyTavern's persona_description_depth default
    role: Role = "system"
    lorebook: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "avatar": self.avatar,
            "position": int(self.position),
            "depth": self.depth,
            "role": self.role,
            "lorebook": self.lorebook,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "persona") -> Persona:
        """Read a stored or imported persona; errors name ``source`` and the field."""
        if not isinstance(d, Mapping):
            raise PersonaError(f"{source}: expected an object")
        name = _text(d, "name", source)
        if not name.strip():
            raise PersonaError(f"{source}: name: missing")
        return cls(
            name=name,
            description=_text(d, "description", source),
            avatar=_text(d, "avatar", source),
            position=_position(d.get("position", 0), source),
            depth=_depth(d.get("depth", 2), source),
            role=_role(d.get("role", "system"), source),
            lorebook=_text(d, "lorebook", source),
        )


def persona_key(user_id: str = "", server: str = "") -> str:
    """The storage key of a persona: the default (no user), a user's, or a user's in a server.

    >>> persona_key(), persona_key("42"), persona_key("42", "guild7")
    ('*', 'u:42', 'u:42:s:guild7')
    """
    if not user_id:
        return DEFAULT_KEY
    return f"u:{user_id}:s:{server}" if server else f"u:{user_id}"


def resolve_persona(user_id: str, server: str, stored: Mapping[str, Persona]) -> Persona | None:
    """The persona that applies to ``user_id`` in ``server`` ("" for DMs and the console)."""
    keys = [persona_key(user_id, server)] if server and user_id else []
    if user_id:
        keys.append(persona_key(user_id))
    keys.append(DEFAULT_KEY)
    for key in keys:
        persona = stored.get(key)
        if persona is not None:
            return persona
    return None


def personas_from_st(power_user: Mapping[str, Any], source: str) -> tuple[dict[str, Persona], str]:
    """Personas from SillyTavern's ``settings.json`` ``power_user`` block, by avatar file name,
    and the avatar of the default persona ("" when none is set).

    Per-persona descriptions (``persona_descriptions``) win; a persona without one takes the
    old global ``persona_description*`` settings, as SillyTavern does.
    """
    names = power_user.get("personas") or {}
    descriptions = power_user.get("persona_descriptions") or {}
    if not isinstance(names, Mapping) or not isinstance(descriptions, Mapping):
        raise PersonaError(f"{source}: personas: expected objects keyed by avatar file")
    fallback = {
        "description": power_user.get("persona_description", ""),
        "position": power_user.get("persona_description_position", 0),
        "depth": power_user.get("persona_description_depth", 2),
        "role": power_user.get("persona_description_role", 0),
    }
    personas: dict[str, Persona] = {}
    for avatar, name in names.items():
        where = f"{source}: personas.{avatar}"
        entry = descriptions.get(avatar)
        if entry is not None and not isinstance(entry, Mapping):
            raise PersonaError(f"{source}: persona_descriptions.{avatar}: expected an object")
        fields = {**fallback, **(entry or {}), "name": name, "avatar": str(avatar)}
        personas[str(avatar)] = Persona.from_dict(fields, where)
    default = power_user.get("default_persona")
    return personas, default if isinstance(default, str) and default in personas else ""


def _text(d: Mapping[str, Any], key: str, source: str) -> str:
    value = d.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PersonaError(f"{source}: {key}: expected text")
    return value


def _position(value: Any, source: str) -> PersonaPosition:
    if isinstance(value, str) and value.upper() in PersonaPosition.__members__:
        value = PersonaPosition[value.upper()]
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            position = PersonaPosition(value)
        except ValueError:
            position = None
        if position is not None:
            return (
                PersonaPosition.IN_PROMPT if position is PersonaPosition.AFTER_CHAR else position
            )
    raise PersonaError(
        f"{source}: position: {value!r:.30} is not one of 0 (in prompt), 2 (top of author's "
        "note), 3 (bottom of author's note), 4 (at depth), 9 (none)"
    )


def _depth(value: Any, source: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10_000:
        return value
    raise PersonaError(f"{source}: depth: expected a whole number from 0 to 10000")


def _role(value: Any, source: str) -> Role:
    ok = isinstance(value, str | int) and not isinstance(value, bool)
    role = _ROLES.get(value) if ok else None
    if role is None:
        raise PersonaError(f"{source}: role: expected system, user or assistant (or 0, 1, 2)")
    return role
