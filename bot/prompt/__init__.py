"""Prompt building: cards, macros, lore, SillyTavern presets, token budget, and one prompt model
rendered to chat messages or a text-completion string. Assembly is pure: no I/O outside the
loaders (:func:`load_card`, :func:`load_formatting`, :func:`load_chat_preset`)."""

from bot.prompt.builder import activate_lore, build_prompt
from bot.prompt.card import CardError, Character, load_card, parse_card
from bot.prompt.chat_preset import ChatPreset, NamesBehavior, PromptDef, load_chat_preset
from bot.prompt.greeting import greeting_swipes
from bot.prompt.injection import Injection, Position
from bot.prompt.jinja import ChatTemplate
from bot.prompt.macros import MacroContext, expand
from bot.prompt.model import (
    AuthorsNote,
    Block,
    BlockKind,
    BuiltPrompt,
    PromptInputs,
    PromptReport,
    RoleRules,
)
from bot.prompt.presets import (
    CHATML,
    CHATML_CONTEXT,
    ContextTemplate,
    FormattingPresets,
    InstructTemplate,
    PresetError,
    SystemPrompt,
    load_formatting,
    select_instruct,
)
from bot.prompt.tokens import EstimateCounter, TokenCounter

__all__ = [
    "CHATML",
    "CHATML_CONTEXT",
    "AuthorsNote",
    "Block",
    "BlockKind",
    "BuiltPrompt",
    "CardError",
    "Character",
    "ChatPreset",
    "ChatTemplate",
    "ContextTemplate",
    "EstimateCounter",
    "FormattingPresets",
    "Injection",
    "InstructTemplate",
    "MacroContext",
    "NamesBehavior",
    "Position",
    "PresetError",
    "PromptDef",
    "PromptInputs",
    "PromptReport",
    "RoleRules",
    "SystemPrompt",
    "TokenCounter",
    "activate_lore",
    "build_prompt",
    "expand",
    "greeting_swipes",
    "load_card",
    "load_chat_preset",
    "load_formatting",
    "parse_card",
    "select_instruct",
]
