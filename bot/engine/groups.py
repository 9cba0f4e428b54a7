"""Group chats: several characters in one channel, and who of them answers a turn.

A :class:`Group` is a channel setting (the engine stores :meth:`Group.to_dict` as compact
JSON). :func:`bot.engine.speakers.choose_speakers` decides who replies, in order — pure,
its randomness injected — by SillyTavern's rules (``public/scripts/group-chats.js``):

- **natural**: members named in the activation text (a word equal to a word of the name),
  then a talkativeness roll per member in shuffled order, else one random member;
- **list**: every unmuted member in list order;
- **manual**: nobody, except one random member on an empty send (or auto-mode);
- **pooled**: one random member who has not spoken since the last user message, else any
  but the last speaker.

Overrides come first: swipe/continue go to the author of the last message, impersonate to
a random member, force to the named one even when muted. Muted members never speak
otherwise; the narrator speaks only when forced (or when its own message is swiped).

Names are the speakers' names as history stores them (``ChatMessage.name``, the card's
``name``); the engine maps them to its character library.
"""

from __future__ import annotations

import enum
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from bot.errors import UserFacingError
from bot.prompt.group_prompt import CardMode

__all__ = ["MAX_MEMBERS", "CardMode", "Group", "GroupError", "Strategy"]

_log = logging.getLogger(__name__)

MAX_MEMBERS = 32  # one user message may start a reply from each: bound the batch
MAX_NAME = 100
MAX_WRAPPER = 2_000  # join prefix/suffix
MIN_DELAY, MAX_DELAY = 1.0, 3_600.0  # auto-mode delay, seconds
DEFAULT_TALKATIVENESS = 0.5
_WORD = re.compile(r"\w+")
_E = TypeVar("_E")
_S = TypeVar("_S", bound=enum.StrEnum)


class GroupError(UserFacingError):
    """A group setting that cannot be: the message names the field."""


class Strategy(enum.StrEnum):
    """SillyTavern's ``activation_strategy`` (stored there as 0, 1, 2, 3)."""

    NATURAL = "natural"
    LIST = "list"
    MANUAL = "manual"
    POOLED = "pooled"


_ST_STRATEGY = (Strategy.NATURAL, Strategy.LIST, Strategy.MANUAL, Strategy.POOLED)
_ST_MODE = (CardMode.SWAP, CardMode.JOIN, CardMode.JOIN_ALL)


@dataclass(frozen=True, slots=True)
class Group:
    """One channel's group. ``members`` in list order (the order of *list* replies);
    ``muted`` members never reply unless forced; ``narrator`` (a character name, usually not
    a member) speaks in the third person and only when forced. ``auto_mode`` chains turns
    every ``auto_delay`` seconds until a user writes. Lists and sets given to the
    constructor are accepted and frozen; a bad value raises :class:`GroupError`."""

    name: str
    members: tuple[str, ...]
    muted: frozenset[str] = frozenset()
    strategy: Strategy = Strategy.NATURAL
    generation_mode: CardMode = CardMode.SWAP
    join_prefix: str = ""
    join_suffix: str = ""
    allow_self_responses: bool = False
    narrator: str | None = None
    auto_mode: bool = False
    auto_delay: float = 5.0
    # derived: who may be chosen without being forced (unmuted members, not the narrator)
    _pool: tuple[str, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        members = _names(self.members, "members")
        if len(set(members)) != len(members):
            raise GroupError("group members: a name is listed twice")
        if len(members) > MAX_MEMBERS:
            raise GroupError(f"group members: at most {MAX_MEMBERS}, got {len(members)}")
        muted = frozenset(_names(self.muted, "muted"))
        if not muted <= set(members):
            raise GroupError(
                "group muted: not members: " + ", ".join(sorted(muted - set(members)))
            )
        narrator = self.narrator or None
        if narrator is not None:
            _names((narrator,), "narrator")
        for label, text in (("join prefix", self.join_prefix), ("join suffix", self.join_suffix)):
            if not isinstance(text, str) or len(text) > MAX_WRAPPER:
                raise GroupError(f"group {label}: text of at most {MAX_WRAPPER} characters")
        delay = self.auto_delay
        if isinstance(delay, bool) or not isinstance(delay, int | float) or math.isnan(delay):
            raise GroupError("group auto delay: expected seconds")
        try:
            strategy = Strategy(self.strategy)
            mode = CardMode(self.generation_mode)
        except ValueError as exc:
            raise GroupError(f"group: {exc}") from None
        name = self.name.strip() if isinstance(self.name, str) else ""
        fields: dict[str, Any] = {
            "name": name[:MAX_NAME] or "Group",
            "members": members,
            "muted": muted,
            "strategy": strategy,
            "generation_mode": mode,
            "narrator": narrator,
            "allow_self_responses": bool(self.allow_self_responses),
            "auto_mode": bool(self.auto_mode),
            "auto_delay": min(max(float(delay), MIN_DELAY), MAX_DELAY),
            "_pool": tuple(m for m in members if m not in muted and m != narrator),
        }
        for key, value in fields.items():
            object.__setattr__(self, key, value)  # frozen: normalise once, here

    # --- views ----------------------------------------------------------------------------

    @property
    def unmuted(self) -> tuple[str, ...]:
        return tuple(m for m in self.members if m not in self.muted)

    @property
    def speakers(self) -> tuple[str, ...]:
        """Everyone who may speak in the group: the members, then the narrator."""
        if self.narrator and self.narrator not in self.members:
            return (*self.members, self.narrator)
        return self.members

    def find(self, text: str) -> str | None:
        """The speaker a user means by ``text`` (for "make X talk"): the whole name, any
        case; else the one speaker with that word in their name; else None."""
        wanted = text.strip().lower()
        if not wanted:
            return None
        for name in self.speakers:
            if name.lower() == wanted:
                return name
        hits = [n for n in self.speakers if wanted in words(n)]
        return hits[0] if len(hits) == 1 else None

    def with_muted(self, name: str, muted: bool = True) -> Group:
        if name not in self.members:
            raise GroupError(f"{name} is not a member of the group")
        return replace(self, muted=self.muted | {name} if muted else self.muted - {name})

    # --- storage --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-ready form: the name, the members, and only settings that differ
        from their defaults."""
        d: dict[str, Any] = {"name": self.name, "members": list(self.members)}
        if self.muted:
            d["muted"] = [m for m in self.members if m in self.muted]
        if self.strategy is not Strategy.NATURAL:
            d["strategy"] = self.strategy.value
        if self.generation_mode is not CardMode.SWAP:
            d["mode"] = self.generation_mode.value
        if self.join_prefix:
            d["prefix"] = self.join_prefix
        if self.join_suffix:
            d["suffix"] = self.join_suffix
        if self.allow_self_responses:
            d["self"] = True
        if self.narrator:
            d["narrator"] = self.narrator
        if self.auto_mode:
            d["auto"] = True
        if self.auto_delay != 5.0:
            d["delay"] = self.auto_delay
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Group:
        """The inverse of :meth:`to_dict`; unknown keys are ignored (a newer version's)."""
        if not isinstance(d, Mapping):
            raise GroupError("group: expected an object")
        return cls(
            name=_get(d, "name", str, "Group"),
            members=tuple(_get(d, "members", list, [])),
            muted=frozenset(_names(_get(d, "muted", list, []), "muted")),
            strategy=_enum(Strategy, _get(d, "strategy", str, "natural")),
            generation_mode=_enum(CardMode, _get(d, "mode", str, "swap")),
            join_prefix=_get(d, "prefix", str, ""),
            join_suffix=_get(d, "suffix", str, ""),
            allow_self_responses=_get(d, "self", bool, False),
            narrator=_get(d, "narrator", str, "") or None,
            auto_mode=_get(d, "auto", bool, False),
            auto_delay=float(_get(d, "delay", (int, float), 5.0)),
        )

    @classmethod
    def from_st(cls, data: Mapping[str, Any], names_by_avatar: Mapping[str, str]) -> Group:
        """A SillyTavern group file (``groups/<id>.json``). Members are avatar file names;
        ``names_by_avatar`` maps them to character names (old files list names, which are
        accepted too). Members without a character are dropped, with a warning in the log,
        as SillyTavern's ``validateGroup`` does; unknown numbers fall back to defaults."""
        if not isinstance(data, Mapping):
            raise GroupError("group file: expected a JSON object")
        names = set(names_by_avatar.values())

        def resolve(field_name: str) -> list[str]:
            raw = data.get(field_name) or []
            if not isinstance(raw, list):
                raise GroupError(f"group file: {field_name}: expected a list")
            out: list[str] = []
            for item in raw:
                name = names_by_avatar.get(item) if isinstance(item, str) else None
                if name is None and isinstance(item, str) and item in names:
                    name = item
                if name is None:
                    _log.warning(
                        "group file: %s: no character for %s; dropped", field_name, repr(item)[:60]
                    )
                elif name not in out:
                    out.append(name)
            return out

        members = resolve("members")
        muted = [m for m in resolve("disabled_members") if m in members]
        delay = _number(data.get("auto_mode_delay", 5))
        return cls(
            name=str(data.get("name") or "Group"),
            members=tuple(members),
            muted=frozenset(muted),
            strategy=_st_enum(data.get("activation_strategy"), _ST_STRATEGY),
            generation_mode=_st_enum(data.get("generation_mode"), _ST_MODE),
            join_prefix=_text(data.get("generation_mode_join_prefix")),
            join_suffix=_text(data.get("generation_mode_join_suffix")),
            allow_self_responses=data.get("allow_self_responses") is True,
            auto_delay=5.0 if delay is None else delay,
        )


def _names(value: object, label: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence | frozenset | set):
        raise GroupError(f"group {label}: expected a list of names")
    out = []
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > MAX_NAME:
            raise GroupError(f"group {label}: names are 1 to {MAX_NAME} characters")
        out.append(item)
    return tuple(out)


def _get(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = d.get(key, default)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise GroupError(f"group: {key}: unexpected value {value!r:.40}")
    return value


def _enum(kind: type[_S], value: str) -> _S:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise GroupError(f"group: {value!r:.30} is not one of {choices}") from None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _st_enum(value: object, choices: tuple[_E, ...]) -> _E:
    number = _number(value)
    if number is not None and number.is_integer() and 0 <= number < len(choices):
        return choices[int(number)]
    return choices[0]


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


# --- who replies -------------------------------------------------------------------------


def words(text: str) -> list[str]:
    # SillyTavern's extractAllWords is /\b\w+\b/ lowercased, ASCII-only in JavaScript;
    # Python's \w also takes non-Latin letters, so "Zoë" and "Юля" can be mentioned too
    return _WORD.findall(text.lower())
