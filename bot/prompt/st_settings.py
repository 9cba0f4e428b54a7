"""SillyTavern's ``settings.json``: everything that shapes a prompt, read once, so a user's
SillyTavern setup (API kind, instruct/context/system-prompt presets, the chat-completion
preset, persona, budgets, world-info settings) gives the prompt SillyTavern would send.

:meth:`StSettings.prompt_inputs` combines it with a card, a chat and (optionally) the
chat's metadata (author's note) into :class:`~bot.prompt.model.PromptInputs`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.backends.base import Mode
from bot.prompt.card import Character
from bot.prompt.chat_preset import ChatPreset
from bot.prompt.injection import role_of
from bot.prompt.lore import LoreResult, LoreSettings
from bot.prompt.model import AuthorsNote, ExamplesBehavior, GenerationType, PromptInputs
from bot.prompt.presets import (
    CHATML_CONTEXT,
    ContextTemplate,
    InstructTemplate,
    PresetError,
    SystemPrompt,
    _bool,
    _int,
    _str,
    formatting_from_st,
    read_json,
)
from bot.types import ChatMessage, Role


@dataclass(frozen=True, slots=True)
class StSettings:
    """The prompt-relevant part of a SillyTavern settings.json."""

    mode: Mode = "text"
    instruct: InstructTemplate | None = None
    context: ContextTemplate = CHATML_CONTEXT
    sysprompt: SystemPrompt = field(default_factory=SystemPrompt)
    chat: ChatPreset = field(default_factory=ChatPreset)
    max_context: int = 8192
    amount_gen: int = 350
    token_padding: int = 64
    examples: ExamplesBehavior = "gradual"
    prefer_character_prompt: bool = True
    prefer_character_jailbreak: bool = True
    user_prompt_bias: str = ""
    custom_stop: tuple[str, ...] = ()
    user_name: str = "User"
    persona_description: str = ""
    persona_position: int = 0
    persona_depth: int = 2
    persona_role: Role = "system"
    lore: LoreSettings = field(default_factory=LoreSettings)
    note_defaults: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "settings.json") -> StSettings:
        if not isinstance(data, Mapping):
            raise PresetError(f"{source}: expected a JSON object")
        pu = data.get("power_user") or {}
        if not isinstance(pu, Mapping):
            raise PresetError(f"{source}: power_user: expected an object")
        where = f"{source}: power_user"
        formatting = formatting_from_st(pu, where) if pu else None
        instruct = None
        if formatting is not None and formatting.instruct is not None:
            instruct = formatting.instruct if formatting.instruct_enabled else None
        context = (formatting.context if formatting else None) or CHATML_CONTEXT
        sysprompt = (formatting.sysprompt if formatting else None) or SystemPrompt()
        oai = data.get("oai_settings") or {}
        persona_name = _persona_name(data, pu, where)
        strip = _bool(pu, "strip_examples", False, where)
        pin = _bool(pu, "pin_examples", False, where)
        return cls(
            mode="chat" if data.get("main_api") == "openai" else "text",
            instruct=instruct,
            context=context,
            sysprompt=sysprompt,
            chat=ChatPreset.from_st(oai, f"{source}: oai_settings") if oai else ChatPreset(),
            max_context=_int(data, "max_context", 8192, source),
            amount_gen=_int(data, "amount_gen", 350, source),
            token_padding=_int(pu, "token_padding", 64, where),
            examples="never" if strip else "always" if pin else "gradual",
            prefer_character_prompt=_bool(pu, "prefer_character_prompt", True, where),
            prefer_character_jailbreak=_bool(pu, "prefer_character_jailbreak", True, where),
            user_prompt_bias=_str(pu, "user_prompt_bias", "", where),
            custom_stop=_custom_stops(pu.get("custom_stopping_strings"), where),
            user_name=persona_name,
            persona_description=_str(pu, "persona_description", "", where),
            persona_position=_int(pu, "persona_description_position", 0, where),
            persona_depth=_int(pu, "persona_description_depth", 2, where),
            persona_role=role_of(pu.get("persona_description_role", 0)),
            lore=LoreSettings.from_st(data.get("world_info_settings") or {}, source),
            note_defaults=_note_defaults(data),
        )

    @classmethod
    def load(cls, path: Path) -> StSettings:
        return cls.from_json(read_json(path), str(path))

    def prompt_inputs(
        self,
        character: Character,
        history: Sequence[ChatMessage],
        *,
        chat_metadata: Mapping[str, Any] | None = None,
        lore: LoreResult | None = None,
        generation: GenerationType = "normal",
    ) -> PromptInputs:
        """The inputs SillyTavern would build its prompt from."""
        chat_mode = self.mode == "chat"
        return PromptInputs(
            character=character,
            user_name=self.user_name,
            history=history,
            mode=self.mode,
            context_size=self.chat.max_context if chat_mode else self.max_context,
            max_tokens=self.chat.max_tokens if chat_mode else self.amount_gen,
            system_prompt=None if chat_mode else self.sysprompt.content,
            system_prompt_enabled=self.sysprompt.enabled,
            post_history_instructions=None if chat_mode else self.sysprompt.post_history,
            persona_description=self.persona_description,
            persona_position=self.persona_position,
            persona_depth=self.persona_depth,
            persona_role=self.persona_role,
            authors_note=_authors_note(chat_metadata or {}, self.note_defaults),
            lore=lore,
            generation=generation,
            instruct=self.instruct,
            context=self.context,
            chat=self.chat,
            token_padding=self.token_padding,
            examples=self.examples,
            prefer_character_prompt=self.prefer_character_prompt,
            prefer_character_jailbreak=self.prefer_character_jailbreak,
            prefill=self.user_prompt_bias,
            custom_stop=self.custom_stop,
        )


def _persona_name(data: Mapping[str, Any], pu: Mapping[str, Any], where: str) -> str:
    personas = pu.get("personas")
    avatar = data.get("user_avatar")
    if isinstance(personas, Mapping) and isinstance(avatar, str):
        name = personas.get(avatar)
        if isinstance(name, str) and name:
            return name
    name = data.get("username")
    return name if isinstance(name, str) and name else "User"


def _custom_stops(raw: Any, where: str) -> tuple[str, ...]:
    if not raw:
        return ()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise PresetError(
                f"{where}: custom_stopping_strings: not a JSON list of strings"
            ) from None
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise PresetError(f"{where}: custom_stopping_strings: expected a list of strings")
    return tuple(raw)


def _note_defaults(data: Mapping[str, Any]) -> Mapping[str, Any]:
    ext = data.get("extension_settings")
    note = ext.get("note") if isinstance(ext, Mapping) else None
    return note if isinstance(note, Mapping) else {}


def _authors_note(meta: Mapping[str, Any], defaults: Mapping[str, Any]) -> AuthorsNote | None:
    """The chat's author's note (its metadata, or the defaults a new chat gets)."""
    text = meta.get("note_prompt")
    if text is None:
        text = defaults.get("default", "")
    if not isinstance(text, str) or not text.strip():
        return None

    def num(key: str, default_key: str, fallback: int) -> int:
        value = meta.get(key, defaults.get(default_key, fallback))
        try:
            return int(value)
        except (TypeError, ValueError):
            return fallback

    return AuthorsNote(
        text=text,
        position=num("note_position", "defaultPosition", 1),
        depth=num("note_depth", "defaultDepth", 4),
        role=role_of(meta.get("note_role", defaults.get("defaultRole", 0))),
        interval=num("note_interval", "defaultInterval", 1),
        scan=bool(defaults.get("allowWIScan", False)),
    )
