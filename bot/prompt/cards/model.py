"""The character card value, its parts, its error and the size limits of every card reader."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.errors import ConfigError
from bot.types import Role

MAX_CARD_BYTES = 20 * 1024 * 1024  # a PNG, JSON or YAML card file
MAX_TEXT_CHUNK = 16 * 1024 * 1024  # one metadata chunk, also after inflating zTXt/iTXt
MAX_YAML_BYTES = 1024 * 1024  # YAML cards are a few KB; the pure-Python parser is slow on more
MAX_CHARX_BYTES = 64 * 1024 * 1024  # CHARX zips carry sprites and sounds, so they may be bigger
MAX_CHARX_ENTRIES = 2000
MAX_CHARX_UNCOMPRESSED = 256 * 1024 * 1024  # sum of the sizes the zip's directory declares
MAX_ASSET_BYTES = 16 * 1024 * 1024  # one asset file, counted while inflating (sizes can lie)

V2_SPECS = ("chara_card_v2", "chara_card_v3")


class CardError(ConfigError):
    """A character card that cannot be read; the message names the file and the problem."""

    hint = "use a SillyTavern character card (PNG, JSON, YAML or CHARX; V1/V2/V3)"


@dataclass(frozen=True, slots=True)
class Asset:
    """One V3 ``data.assets`` entry. ``uri`` is ``embeded://path`` (sic), ``ccdefault:``,
    ``https:`` or ``data:``; ``type`` is e.g. ``icon``, ``background``, ``emotion``."""

    type: str
    uri: str
    name: str = ""
    ext: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "uri": self.uri, "name": self.name, "ext": self.ext}


@dataclass(frozen=True, slots=True)
class DepthPrompt:
    """The "Character's Note" (``extensions.depth_prompt``): text injected into the chat
    history ``depth`` messages from the end with ``role``. An empty prompt injects nothing."""

    prompt: str
    depth: int = 4
    role: Role = "system"

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "depth": self.depth, "role": self.role}


@dataclass(frozen=True, slots=True)
class Character:
    """One character card. Text fields default to ""; unknown data stays in ``raw``.

    ``extensions`` and ``character_book`` are kept verbatim so nothing a card author or
    SillyTavern stored there is lost. ``spec`` is ``chara_card_v1``/``_v2``/``_v3``,
    ``pygmalion``, ``ooba`` or ``agnai`` (the shape the card was read from).

    ``depth_prompt`` and ``talkativeness`` are read from ``extensions`` (SillyTavern keeps
    them there); ``avatar`` is the card's image (the PNG itself, or a CHARX's icon asset) and
    takes no part in equality.
    """

    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""
    mes_example: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    alternate_greetings: tuple[str, ...] = ()
    creator_notes: str = ""
    tags: tuple[str, ...] = ()
    nickname: str = ""
    character_book: dict[str, Any] | None = field(default=None, hash=False)
    extensions: dict[str, Any] = field(default_factory=dict, hash=False)
    spec: str = "chara_card_v2"
    raw: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)
    creator: str = ""
    character_version: str = ""
    group_only_greetings: tuple[str, ...] = ()
    creator_notes_multilingual: dict[str, str] = field(default_factory=dict, hash=False)
    source: tuple[str, ...] = ()
    creation_date: int | None = None  # unix seconds, as the V3 spec says
    modification_date: int | None = None
    assets: tuple[Asset, ...] = ()
    depth_prompt: DepthPrompt | None = None
    talkativeness: float = 0.5
    avatar: bytes | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def display_name(self) -> str:
        """The V3 ``nickname`` when set, else ``name``: what ``{{char}}`` means by the spec."""
        return self.nickname or self.name
