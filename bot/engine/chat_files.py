"""SillyTavern chat files in the engine: import one as the channel's new current chat (the
old one is archived, so ``resume`` brings it back), and export the current chat.

An import arrives as an ``import_chat`` action whose text is the file's name, a newline, and
the file's JSONL text; errors name that file and the line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.engine.cast import Casting, load_group
from bot.engine.prompting import loads_vars
from bot.errors import UserFacingError
from bot.prompt.chatfile import ChatFileLimits, export_chat_jsonl, import_chat_jsonl
from bot.state import store as ops
from bot.state.store import ChatStore, Op, TurnState
from bot.types import ChatKey, ChatMessage

MAX_IMPORT_BYTES = 8 * 1024 * 1024  # the file travels through the channel's Redis inbox


@dataclass(frozen=True, slots=True)
class ChatUpload:
    name: str
    data: bytes

    @classmethod
    def parse(cls, text: str) -> ChatUpload:
        name, _, body = text.partition("\n")
        if name.lstrip().startswith("{"):  # no name line: the text is the file itself
            name, body = "", text
        return cls(name.strip() or "the chat file", body.encode("utf-8"))

    @staticmethod
    def text(name: str, data: str) -> str:
        """The ``import_chat`` action text for a file (adapters call this)."""
        return f"{name.replace(chr(10), ' ')}\n{data}"


def check_size(text: str, limit: int = MAX_IMPORT_BYTES) -> None:
    """Refuse an oversized upload before it is queued."""
    if len(text) > limit:
        raise UserFacingError(
            f"That chat file is {len(text):,} characters; the limit is {limit:,}. "
            "Import a shorter chat."
        )


def summary(history: list[ChatMessage]) -> dict[str, object]:
    """What the list of saved chats shows for an archived chat."""
    first_user = next((m.text for m in history if m.role == "user"), "")
    return {"title": first_user[:60], "messages": len(history), "ended": time.time()}


def import_chat(
    state: TurnState, text: str, limit: int = MAX_IMPORT_BYTES
) -> tuple[list[Op], str]:
    """The writes that archive the current chat and make the file's messages the current
    one (swipes, reasoning and hidden flags kept), and the line that reports it."""
    upload = ChatUpload.parse(text)
    chat = import_chat_jsonl(upload.data, upload.name, limits=ChatFileLimits(max_bytes=limit))
    if not chat.messages:
        raise UserFacingError(f"{upload.name}: the file holds no messages.")
    writes = [ops.archive(summary(state.history))]
    for message in chat.messages:
        copy = message.copy()
        copy.id = 0  # the store numbers them
        writes.append(ops.append(copy))
    report = f"Imported {len(chat.messages)} messages from {upload.name}."
    if state.history:
        report += f" The previous chat is saved as #{state.chat_id} (`resume {state.chat_id}`)."
    return writes, report


async def export_chat(store: ChatStore, key: ChatKey, casting: Casting, user_name: str) -> bytes:
    """The channel's current chat as a SillyTavern JSONL file (a read; no lock needed)."""
    history = await store.history(key)
    settings = await store.settings(key)
    chat_id, _ = await store.chats(key)
    group = load_group(settings)
    character = group.name if group is not None else casting.one(settings).name
    user = next((m.name for m in reversed(history) if m.role == "user" and m.name), user_name)
    variables = loads_vars(settings.get(f"vars:{chat_id}"))
    metadata = {"variables": variables} if variables else {}
    return export_chat_jsonl(history, user, character, metadata)
