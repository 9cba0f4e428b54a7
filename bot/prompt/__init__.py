"""Prompt building: cards, macros, token budget, and one prompt model rendered to chat
messages or a text-completion string. Assembly is pure: no I/O outside :func:`load_card`."""

from bot.prompt.builder import build_prompt
from bot.prompt.card import CardError, Character, load_card, parse_card
from bot.prompt.greeting import greeting_swipes
from bot.prompt.macros import MacroContext, expand
from bot.prompt.model import (
    CHATML,
    CHATML_CONTEXT,
    Block,
    BlockKind,
    BuiltPrompt,
    ChatPrompts,
    ContextTemplate,
    InstructTemplate,
    PromptInputs,
    PromptReport,
)
from bot.prompt.tokens import EstimateCounter, TokenCounter

__all__ = [
    "CHATML",
    "CHATML_CONTEXT",
    "Block",
    "BlockKind",
    "BuiltPrompt",
    "CardError",
    "Character",
    "ChatPrompts",
    "ContextTemplate",
    "EstimateCounter",
    "InstructTemplate",
    "MacroContext",
    "PromptInputs",
    "PromptReport",
    "TokenCounter",
    "build_prompt",
    "expand",
    "greeting_swipes",
    "load_card",
    "parse_card",
]
