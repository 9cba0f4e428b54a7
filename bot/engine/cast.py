"""Who speaks in a channel: its one character, or the group stored in its ``group`` setting.

A :class:`Cast` is what one reply is written as: the speaker's library key and card and, in a
group chat, the group and every speaker's card (the builder joins them, the clean-up cuts a
reply that goes on as one of them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from bot.engine.characters import CharacterLibrary
from bot.engine.groups import Group, GroupError
from bot.errors import ConfigError
from bot.prompt.card import Character

GROUP_SETTING = "group"


@dataclass(frozen=True, slots=True)
class Cast:
    """The speaker of one reply. ``key`` is its library key; ``group`` is None in a
    one-on-one chat; ``cards`` maps the group's speakers' names to their cards."""

    key: str
    card: Character
    group: Group | None = None
    cards: Mapping[str, Character] = field(default_factory=dict)
    keys: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.card.name

    def speaking(self, name: str) -> Cast:
        """The same cast with ``name`` (a group speaker) speaking."""
        card = self.cards.get(name)
        if card is None:
            raise ConfigError(f"group member {name!r} has no character card")
        return replace(self, key=self.keys[name], card=card)

    def talkativeness(self) -> dict[str, float]:
        return {name: card.talkativeness for name, card in self.cards.items()}


def load_group(settings: Mapping[str, str]) -> Group | None:
    """The channel's group, or None (no setting, or "" after ``group off``)."""
    raw = settings.get(GROUP_SETTING)
    if not raw:
        return None
    try:
        return Group.from_dict(json.loads(raw))
    except ValueError:
        raise GroupError("The stored group setting is broken; `group off` resets it.") from None


def dump_group(group: Group | None) -> str:
    return "" if group is None else json.dumps(group.to_dict(), separators=(",", ":"))


class Casting:
    """Resolves the cast of a channel from its settings through the character library."""

    def __init__(self, characters: CharacterLibrary) -> None:
        self.characters = characters

    def one(self, settings: Mapping[str, str]) -> Cast:
        """The channel's own character (its ``character`` setting, else the default)."""
        key = settings.get("character", "") or self.characters.default
        return Cast(key, self.characters.get(key))

    def of(self, settings: Mapping[str, str], speaker: str | None = None) -> Cast:
        """The one-on-one cast, or in a group chat the cast with ``speaker`` speaking (by
        default the first unmuted member, for previews)."""
        group = load_group(settings)
        if group is None:
            return self.one(settings)
        cast = self.group(group)
        name = speaker or next(iter(group.unmuted or group.members), None)
        if name is None:
            raise GroupError("The group has no members; `group add NAME` adds one.")
        return cast.speaking(name)

    def group(self, group: Group) -> Cast:
        """The group's cards by name (speakers without a card are left out, as SillyTavern
        skips deleted characters); ``key``/``card`` are the first speaker's until
        :meth:`Cast.speaking` picks one."""
        cards: dict[str, Character] = {}
        keys: dict[str, str] = {}
        for name in group.speakers:
            try:
                key = self.characters.key_of(name)
                cards[name] = self.characters.get(key)
            except ConfigError:
                continue
            keys[name] = key
        if not cards:
            raise GroupError("None of the group's members has a character card any more.")
        first = next(iter(cards))
        return Cast(keys[first], cards[first], group, cards, keys)

    def card_name(self, typed: str) -> str:
        """The card name of the character a user typed (a key or a name, any case)."""
        return self.characters.get(self.characters.key_of(typed.strip())).name
