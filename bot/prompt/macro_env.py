"""What one macro expansion reads and writes: the context, its limits and the result.

Two kinds of values feed macros, and the difference is the safety rule of the engine:

* **templates** — card and preset text written by whoever set the bot up (:class:`CardMacros`,
  :class:`PromptMacros`). Macros inside them are expanded where they are inserted, with the
  same variables and limits, as SillyTavern does.
* **data** — names, persona, chat messages, notes, outlets, ``extra`` and ``original``
  (anything a chat user may have typed). Inserted exactly as they are, never scanned again.

The clock (``now``), the random source (``rng``) and the chat id are injected so that output
is reproducible; nothing here reads the clock, the environment or the global random state.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.prompt.macro_parse import ParseCache
from bot.types import ChatMessage


@dataclass(frozen=True, slots=True)
class MacroLimits:
    """Bounds that make any input finish quickly with a bounded result.

    ``max_output`` counts every character a macro produces, nested values at each level,
    so it bounds the work as well as the size; past it expansion stops and the rest of the
    text is kept as written. ``max_steps`` caps macro evaluations per call (a template that
    includes itself twice would otherwise double at every level) and macros parsed per text
    (the rest of a longer text stays as written). Dice over the limits roll
    to ``""``; a variable value longer than ``max_var_chars`` is not stored.
    """

    max_depth: int = 24
    max_output: int = 1_000_000
    max_steps: int = 20_000
    max_dice: int = 1_000
    max_sides: int = 1_000_000_000
    max_var_chars: int = 65_536


@dataclass(frozen=True, slots=True)
class CardMacros:
    """The character card's text (templates). ``mes_examples`` is the instruct-formatted
    form; when empty ``{{mesExamples}}`` falls back to ``mes_examples_raw``."""

    description: str = ""
    personality: str = ""
    scenario: str = ""
    char_prompt: str = ""  # the card's system_prompt: {{charPrompt}}
    char_instruction: str = ""  # post_history_instructions: {{charInstruction}}
    depth_prompt: str = ""  # Character's Note: {{charDepthPrompt}}
    creator_notes: str = ""
    version: str = ""
    mes_examples: str = ""
    mes_examples_raw: str = ""
    first_mes: str = ""
    alternate_greetings: tuple[str, ...] = ()
    image_prefix: str = ""  # {{charPrefix}}
    image_negative_prefix: str = ""  # {{charNegativePrefix}}

    @classmethod
    def from_card(cls, card: Any) -> CardMacros:
        """From a :class:`bot.prompt.card.Character` (read by attribute, missing ones empty).

        The depth prompt and version live in the card's ``extensions`` / raw data, where
        SillyTavern keeps them.
        """

        def text(name: str) -> str:
            value = getattr(card, name, "")
            return value if isinstance(value, str) else ""

        extensions = getattr(card, "extensions", None) or {}
        depth = extensions.get("depth_prompt") if isinstance(extensions, Mapping) else None
        depth_prompt = depth.get("prompt", "") if isinstance(depth, Mapping) else ""
        raw = getattr(card, "raw", None) or {}
        data = raw.get("data", raw) if isinstance(raw, Mapping) else {}
        version = data.get("character_version", "") if isinstance(data, Mapping) else ""
        greetings = getattr(card, "alternate_greetings", ()) or ()
        return cls(
            description=text("description"),
            personality=text("personality"),
            scenario=text("scenario"),
            char_prompt=text("system_prompt"),
            char_instruction=text("post_history_instructions"),
            depth_prompt=depth_prompt if isinstance(depth_prompt, str) else "",
            creator_notes=text("creator_notes"),
            version=version if isinstance(version, str) else "",
            mes_examples_raw=text("mes_example"),
            first_mes=text("first_mes"),
            alternate_greetings=tuple(g for g in greetings if isinstance(g, str)),
        )


# SillyTavern instruct preset keys that have a macro (see PromptMacros.instruct)
INSTRUCT_KEYS = (
    "story_string_prefix",
    "story_string_suffix",
    "input_sequence",
    "input_suffix",
    "output_sequence",
    "output_suffix",
    "system_sequence",
    "system_suffix",
    "first_output_sequence",
    "last_output_sequence",
    "first_input_sequence",
    "last_input_sequence",
    "stop_sequence",
    "user_alignment_message",
    "last_system_sequence",
    "consecutive_assistant_message",
)


@dataclass(frozen=True, slots=True)
class PromptMacros:
    """Preset and backend values (templates): instruct sequences, system prompt, separators,
    budgets and model. Instruct macros are ``""`` unless ``instruct_enabled``; the system
    prompt macros are ``""`` unless ``system_prompt_enabled``, as in SillyTavern.

    ``instruct`` maps SillyTavern instruct preset keys (:data:`INSTRUCT_KEYS`) to their
    text; pass a loaded preset dict as is.
    """

    instruct_enabled: bool = False
    instruct: Mapping[str, Any] = field(default_factory=dict)
    system_prompt_enabled: bool = True
    system_prompt: str = ""  # the configured (default) system prompt
    prefer_character_prompt: bool = True
    example_separator: str = ""
    chat_start: str = ""
    reasoning_prefix: str = ""
    reasoning_suffix: str = ""
    reasoning_separator: str = ""
    max_context: int | None = None
    max_response: int | None = None
    model: str = ""


@dataclass(frozen=True, slots=True)
class ChatMacros:
    """Chat state (data). ``history`` is oldest first; message ids are its indices."""

    history: Sequence[ChatMessage] = ()
    first_included_message_id: int | None = None
    first_displayed_message_id: int | None = None
    last_generation_type: str = ""
    summary: str = ""
    authors_note: str = ""
    char_authors_note: str = ""
    default_authors_note: str = ""
    outlets: Mapping[str, str] = field(default_factory=dict)  # world-info outlet name → text
    last_chat_message: str = ""  # the reply being continued ({{lastChatMessage}})


@dataclass(frozen=True, slots=True)
class MacroContext:
    """Everything one expansion may use. Only ``user`` and ``char`` are required.

    ``extra`` adds or overrides names (case-insensitive) with literal values — the builder's
    ``{{lastChatMessage}}`` and pre-expanded ``{{personality}}``. ``group`` lists the members
    of a group chat (empty in a one-on-one chat) and ``muted`` the disabled ones.

    Variables: ``local_vars`` (this chat) and ``global_vars`` are plain mutable mappings that
    the macros change in place — the caller loads them before and persists them after (the
    engine keeps them in Redis). Left as ``None``, a throwaway mapping lives for one call.

    ``now`` gives the time and its zone is "local time" (a naive one is taken as UTC); without
    it the time macros are left as written. Without ``rng`` a fresh system-seeded generator
    is made when a macro needs one. ``{{pick}}`` is seeded by ``chat_id``, ``pick_seed``
    (change it to re-roll every pick in a chat), the text and the macro's position.
    ``cache`` keeps parsed trees between calls (card text repeats every turn).
    """

    user: str
    char: str
    original: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)
    persona: str = ""
    group: tuple[str, ...] = ()
    muted: frozenset[str] = frozenset()
    card: CardMacros = field(default_factory=CardMacros)
    prompt: PromptMacros = field(default_factory=PromptMacros)
    chat: ChatMacros = field(default_factory=ChatMacros)
    local_vars: MutableMapping[str, str] | None = None
    global_vars: MutableMapping[str, str] | None = None
    now: datetime | None = None
    rng: random.Random | None = None
    chat_id: str = ""
    pick_seed: str = ""
    limits: MacroLimits = field(default_factory=MacroLimits)
    cache: ParseCache | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.now is not None and self.now.utcoffset() is None:
            # a naive time would make Python consult the machine's zone: read it as UTC
            object.__setattr__(self, "now", self.now.replace(tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class MacroResult:
    """The expanded text plus its side outputs.

    ``banned`` collects ``{{banned "word"}}`` strings for text-completion backends;
    ``warnings`` says what was not expanded and why (bad dice, limits reached …).
    """

    text: str
    banned: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
