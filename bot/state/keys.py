"""The one key builder: every Redis key the service touches is made here.

Every channel key carries a hash tag (``{platform:bot:channel[:thread]}``) so that all of a
channel's keys live in one Redis Cluster slot and the multi-key Lua scripts stay legal.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.types import ChatKey

# The parts of one channel's state; names are part of the stored format, keep them stable.
CHANNEL_PARTS = ("inbox", "lock", "fence", "meta", "settings", "log", "chats", "stop", "usage")


@dataclass(frozen=True, slots=True)
class ChannelKeys:
    inbox: str
    lock: str
    fence: str
    meta: str
    settings: str
    log: str
    chats: str
    stop: str
    usage: str

    def archive(self, chat_id: int) -> str:
        """Where an earlier chat's log is kept after a reset (same slot as the live log)."""
        return f"{self.log}:{chat_id}"


class KeyBuilder:
    def __init__(self, prefix: str = "sb") -> None:
        if not prefix or any(c in prefix for c in "{}: "):
            raise ValueError("key prefix must be non-empty without braces, colons or spaces")
        self.prefix = prefix

    def build(self, key: ChatKey, part: str) -> str:
        return f"{self.prefix}:{{{key.tag()}}}:{part}"

    def channel(self, key: ChatKey) -> ChannelKeys:
        return ChannelKeys(*(self.build(key, part) for part in CHANNEL_PARTS))

    def server(self, platform: str, bot_id: str, server: str, part: str) -> str:
        """A server-wide key (its own slot): e.g. the index of the server's channels."""
        tag = ":".join(p.replace("{", "(").replace("}", ")") for p in (platform, bot_id, server))
        return f"{self.prefix}:{{srv:{tag}}}:{part}"

    def user(self, platform: str, bot_id: str, user_id: str, part: str) -> str:
        """A user's own key (its own slot): personas follow the user across channels."""
        tag = ":".join(p.replace("{", "(").replace("}", ")") for p in (platform, bot_id, user_id))
        return f"{self.prefix}:{{usr:{tag}}}:{part}"

    def pattern(self, part: str) -> str:
        """A SCAN pattern for one part across channels (operators' tools only)."""
        return f"{self.prefix}:{{*}}:{part}"
