"""Platform-neutral values that cross every seam: who, where, what was said."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatKey:
    """One conversation place: a Discord channel or thread, a Telegram chat or topic, a console.

    ``server`` is the guild or group the channel lives in ("" for DMs and the console); it
    scopes server-level settings and never reaches another server's keys.
    """

    platform: str
    bot_id: str
    channel_id: str
    thread_id: str = ""
    server: str = ""

    def tag(self) -> str:
        """The Redis Cluster hash tag body: every key of this channel shares its slot."""
        parts = [self.platform, self.bot_id, self.channel_id]
        if self.thread_id:
            parts.append(self.thread_id)
        return ":".join(p.replace("{", "(").replace("}", ")") for p in parts)


@dataclass(frozen=True, slots=True)
class Author:
    user_id: str
    name: str


class Action(enum.StrEnum):
    """What an inbound event asks the engine to do."""

    MESSAGE = "message"
    REGENERATE = "regenerate"
    SWIPE_LEFT = "swipe_left"
    SWIPE_RIGHT = "swipe_right"
    CONTINUE = "continue"
    STOP = "stop"
    RESET = "reset"
    RESUME = "resume"  # text: the id of an earlier chat
    DELETE_LAST = "delete_last"
    GREET = "greet"  # post the character's greeting if the chat is empty
    PROMPT = "prompt"  # show what the next prompt holds and what was cut
    IMPERSONATE = "impersonate"  # suggest the user's next message (shown, not stored)
    IMPORT_CHAT = "import_chat"  # text: a file name, a newline, a SillyTavern JSONL chat
    GROUP = "group"  # text: a group command ("add NAME", "mute NAME", "off", "" shows it)
    TALK = "talk"  # text: the group member who speaks next ("" lets the group choose)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One platform event, translated by an adapter."""

    key: ChatKey
    author: Author
    action: Action = Action.MESSAGE
    text: str = ""
    platform_message_id: str = ""


@dataclass(slots=True)
class ChatMessage:
    """One stored history entry. Assistant entries keep their swipes (alternatives).

    ``text`` is always the selected swipe's text; ``swipes[swipe_id]`` holds the same string.
    ``meta`` holds per-swipe generation facts (backend, model, tokens, timing, partial marker).
    ``extra`` holds message-level facts that are not per swipe: ``hidden`` (kept in the chat but
    never sent in a prompt, SillyTavern's ``is_system``) and ``st`` (an imported SillyTavern
    message's fields we do not model, kept so an export gives them back).
    """

    id: int
    role: Role
    name: str
    text: str
    user_id: str = ""
    swipes: list[str] = field(default_factory=list)
    swipe_id: int = 0
    swipe_meta: list[dict[str, Any]] = field(default_factory=list)
    created: float = 0.0
    platform_ids: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "role": self.role,
            "name": self.name,
            "text": self.text,
            "created": self.created,
        }
        if self.user_id:
            d["user_id"] = self.user_id
        if self.swipes:
            d["swipes"] = self.swipes
            d["swipe_id"] = self.swipe_id
            d["swipe_meta"] = self.swipe_meta
        if self.platform_ids:
            d["platform_ids"] = self.platform_ids
        if self.extra:
            d["extra"] = self.extra
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChatMessage:
        return cls(
            id=int(d["id"]),
            role=d["role"],
            name=d.get("name", ""),
            text=d.get("text", ""),
            user_id=d.get("user_id", ""),
            swipes=list(d.get("swipes", ())),
            swipe_id=int(d.get("swipe_id", 0)),
            swipe_meta=list(d.get("swipe_meta", ())),
            created=float(d.get("created", 0.0)),
            platform_ids=list(d.get("platform_ids", ())),
            extra=dict(d.get("extra", {})),
        )

    def copy(self) -> ChatMessage:
        """A copy whose lists can be changed without touching this message."""
        return ChatMessage(
            self.id,
            self.role,
            self.name,
            self.text,
            self.user_id,
            list(self.swipes),
            self.swipe_id,
            [dict(m) for m in self.swipe_meta],
            self.created,
            list(self.platform_ids),
            dict(self.extra),
        )

    @property
    def meta(self) -> dict[str, Any]:
        if 0 <= self.swipe_id < len(self.swipe_meta):
            return self.swipe_meta[self.swipe_id]
        return {}
