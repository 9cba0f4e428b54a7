"""SillyTavern chat-completion presets: the prompt manager's prompts, their order, and the
utility prompts (new chat, continue nudge, impersonation, formats …).

Loaded from a preset file (``presets/openai/*.json``) or from ``oai_settings`` in settings.json:
both carry the same fields. As in SillyTavern, the global order is the ``prompt_order`` entry
of ``character_id`` 100001 (the default order when absent), and built-in prompts missing from
``prompts`` are filled in from the defaults.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.prompt.presets import PresetError, _bool, _int, _str, read_json
from bot.types import Role

GLOBAL_ORDER_ID = "100001"  # ST's prompt-order dummy character for the "global" strategy
MARKERS = (
    "worldInfoBefore",
    "personaDescription",
    "charDescription",
    "charPersonality",
    "scenario",
    "worldInfoAfter",
    "dialogueExamples",
    "chatHistory",
)


class NamesBehavior(enum.IntEnum):
    """``names_behavior`` of a chat-completion preset."""

    NONE = -1
    DEFAULT = 0  # "Name: " for group members and messages of other speakers
    COMPLETION = 1  # the message ``name`` field
    CONTENT = 2  # "Name: " on every message but the narrator's


class InjectionPosition(enum.IntEnum):
    RELATIVE = 0  # at its place in the list
    ABSOLUTE = 1  # in the chat at ``injection_depth``


@dataclass(frozen=True, slots=True)
class PromptDef:
    """One prompt-manager entry. ``None`` means "not set here" (a marker keeps its own)."""

    identifier: str
    name: str = ""
    role: Role | None = None
    content: str = ""
    system_prompt: bool = False
    marker: bool = False
    injection_position: int | None = None
    injection_depth: int | None = None
    injection_order: int = 100
    injection_trigger: tuple[str, ...] = ()
    forbid_overrides: bool = False

    @classmethod
    def from_st(cls, data: Mapping[str, Any], source: str) -> PromptDef:
        ident = data.get("identifier")
        if not isinstance(ident, str) or not ident:
            raise PresetError(f"{source}: identifier: missing")
        where = f"{source}[{ident}]"
        role = data.get("role")
        if role not in (None, "", "system", "user", "assistant"):
            raise PresetError(f"{where}: role: expected system, user or assistant")
        trigger = data.get("injection_trigger") or ()
        if not isinstance(trigger, (list, tuple)) or not all(isinstance(t, str) for t in trigger):
            raise PresetError(f"{where}: injection_trigger: expected a list of names")
        return cls(
            identifier=ident,
            name=_str(data, "name", "", where),
            role=role or None,
            content=_str(data, "content", "", where),
            system_prompt=_bool(data, "system_prompt", False, where),
            marker=_bool(data, "marker", False, where),
            injection_position=(
                _int(data, "injection_position", 0, where)
                if data.get("injection_position") is not None
                else None
            ),
            injection_depth=(
                _int(data, "injection_depth", 4, where)
                if data.get("injection_depth") is not None
                else None
            ),
            injection_order=_int(data, "injection_order", 100, where),
            injection_trigger=tuple(trigger),
            forbid_overrides=_bool(data, "forbid_overrides", False, where),
        )


def _marker(identifier: str, name: str) -> PromptDef:
    return PromptDef(identifier, name, system_prompt=True, marker=True)


DEFAULT_PROMPTS: tuple[PromptDef, ...] = (
    PromptDef(
        "main",
        "Main Prompt",
        "system",
        "Write {{char}}'s next reply in a fictional chat between {{charIfNotGroup}} and {{user}}.",
        system_prompt=True,
    ),
    PromptDef("nsfw", "Auxiliary Prompt", "system", "", system_prompt=True),
    _marker("dialogueExamples", "Chat Examples"),
    PromptDef("jailbreak", "Post-History Instructions", "system", "", system_prompt=True),
    _marker("chatHistory", "Chat History"),
    _marker("worldInfoAfter", "World Info (after)"),
    _marker("worldInfoBefore", "World Info (before)"),
    PromptDef(
        "enhanceDefinitions",
        "Enhance Definitions",
        "system",
        "If you have more knowledge of {{char}}, add to the character's lore and personality "
        "to enhance them but keep the Character Sheet's definitions absolute.",
        system_prompt=True,
    ),
    _marker("charDescription", "Char Description"),
    _marker("charPersonality", "Char Personality"),
    _marker("scenario", "Scenario"),
    _marker("personaDescription", "Persona Description"),
)
DEFAULT_ORDER: tuple[tuple[str, bool], ...] = (
    ("main", True),
    ("worldInfoBefore", True),
    ("personaDescription", True),
    ("charDescription", True),
    ("charPersonality", True),
    ("scenario", True),
    ("enhanceDefinitions", False),
    ("nsfw", True),
    ("worldInfoAfter", True),
    ("dialogueExamples", True),
    ("chatHistory", True),
    ("jailbreak", True),
)


@dataclass(frozen=True, slots=True)
class ChatPreset:
    """A chat-completion preset: what the prompt manager sends, and how."""

    prompts: tuple[PromptDef, ...] = DEFAULT_PROMPTS
    order: tuple[tuple[str, bool], ...] = DEFAULT_ORDER
    new_chat_prompt: str = "[Start a new Chat]"
    new_group_chat_prompt: str = "[Start a new group chat. Group members: {{group}}]"
    new_example_chat_prompt: str = "[Example Chat]"
    continue_nudge_prompt: str = (
        "[Continue the following message. Do not include ANY parts of the original message. "
        "Use capitalization and punctuation as if your reply is a part of the original "
        "message: {{lastChatMessage}}]"
    )
    impersonation_prompt: str = (
        "[Write your next reply from the point of view of {{user}}, using the chat history "
        "so far as a guideline for the writing style of {{user}}. Don't write as {{char}} or "
        "system. Don't describe actions of {{char}}.]"
    )
    group_nudge_prompt: str = "[Write the next reply only as {{char}}.]"
    send_if_empty: str = ""
    wi_format: str = "{0}"
    scenario_format: str = "[Circumstances and context of the dialogue: {{scenario}}]"
    personality_format: str = "[{{char}}'s personality: {{personality}}]"
    names_behavior: NamesBehavior = NamesBehavior.DEFAULT
    squash_system_messages: bool = False
    continue_prefill: bool = False
    continue_postfix: str = " "
    assistant_prefill: str = ""
    assistant_impersonation: str = ""
    wrap_in_quotes: bool = False
    max_context: int = 4095
    max_tokens: int = 300
    by_id: Mapping[str, PromptDef] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {p.identifier: p for p in self.prompts})

    @classmethod
    def from_st(cls, data: Mapping[str, Any], source: str = "chat preset") -> ChatPreset:
        """From a chat-completion preset file or ``oai_settings``."""
        if not isinstance(data, Mapping):
            raise PresetError(f"{source}: expected a JSON object")
        raw = data.get("prompts")
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            raise PresetError(f"{source}: prompts: expected a list")
        prompts = [
            PromptDef.from_st(p, f"{source}: prompts") for p in raw if isinstance(p, Mapping)
        ]
        known = {p.identifier for p in prompts}
        prompts += [p for p in DEFAULT_PROMPTS if p.identifier not in known]
        names = _int(data, "names_behavior", 0, source)
        if names not in tuple(NamesBehavior):
            raise PresetError(f"{source}: names_behavior: expected -1, 0, 1 or 2")
        d = cls()
        return cls(
            prompts=tuple(prompts),
            order=_order(data.get("prompt_order"), source),
            new_chat_prompt=_str(data, "new_chat_prompt", d.new_chat_prompt, source),
            new_group_chat_prompt=_str(
                data, "new_group_chat_prompt", d.new_group_chat_prompt, source
            ),
            new_example_chat_prompt=_str(
                data, "new_example_chat_prompt", d.new_example_chat_prompt, source
            ),
            continue_nudge_prompt=_str(
                data, "continue_nudge_prompt", d.continue_nudge_prompt, source
            ),
            impersonation_prompt=_str(
                data, "impersonation_prompt", d.impersonation_prompt, source
            ),
            group_nudge_prompt=_str(data, "group_nudge_prompt", d.group_nudge_prompt, source),
            send_if_empty=_str(data, "send_if_empty", "", source),
            wi_format=_str(data, "wi_format", d.wi_format, source),
            scenario_format=_str(data, "scenario_format", d.scenario_format, source),
            personality_format=_str(data, "personality_format", d.personality_format, source),
            names_behavior=NamesBehavior(names),
            squash_system_messages=_bool(data, "squash_system_messages", False, source),
            continue_prefill=_bool(data, "continue_prefill", False, source),
            continue_postfix=_str(data, "continue_postfix", " ", source),
            assistant_prefill=_str(data, "assistant_prefill", "", source),
            assistant_impersonation=_str(data, "assistant_impersonation", "", source),
            wrap_in_quotes=_bool(data, "wrap_in_quotes", False, source),
            max_context=_int(data, "openai_max_context", d.max_context, source),
            max_tokens=_int(data, "openai_max_tokens", d.max_tokens, source),
        )

    def enabled(self, identifier: str) -> bool | None:
        """The order's switch for ``identifier``; None when the order does not list it."""
        for ident, on in self.order:
            if ident == identifier:
                return on
        return None


def _order(raw: Any, source: str) -> tuple[tuple[str, bool], ...]:
    if raw is None:
        return DEFAULT_ORDER
    if not isinstance(raw, list):
        raise PresetError(f"{source}: prompt_order: expected a list")
    entries: Sequence[Any] | None = None
    if raw and all(isinstance(e, Mapping) and "identifier" in e for e in raw):
        entries = raw  # an exported order: the list itself
    for item in raw:
        if isinstance(item, Mapping) and str(item.get("character_id")) == GLOBAL_ORDER_ID:
            entries = item.get("order")
    if entries is None:
        return DEFAULT_ORDER
    if not isinstance(entries, list):
        raise PresetError(f"{source}: prompt_order[{GLOBAL_ORDER_ID}].order: expected a list")
    out: list[tuple[str, bool]] = []
    for e in entries:
        if not isinstance(e, Mapping) or not isinstance(e.get("identifier"), str):
            raise PresetError(f"{source}: prompt_order: each entry needs an identifier")
        out.append((e["identifier"], _bool(e, "enabled", True, f"{source}: prompt_order")))
    return tuple(out) or DEFAULT_ORDER


def load_chat_preset(path: Path) -> ChatPreset:
    """Load a SillyTavern chat-completion preset file (``presets/openai/*.json``)."""
    return ChatPreset.from_st(read_json(path), str(path))
