"""The internal prompt model: inputs, the ordered blocks, and the built result.

One model serves both wire shapes. A layout (the story-string layout of text completion, or
the prompt manager of chat completion) turns :class:`PromptInputs` into an ordered list of
:class:`Block`; the budget keeps what fits; a renderer turns the kept blocks into a
text-completion string or chat-completion messages. Any renderer accepts any block list.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from bot.backends.base import Mode, PromptMessage
from bot.prompt.card import Character
from bot.prompt.chat_preset import ChatPreset
from bot.prompt.injection import Injection
from bot.prompt.presets import (
    CHATML,
    CHATML_CONTEXT,
    ContextTemplate,
    InstructTemplate,
)
from bot.types import ChatMessage, Role

if TYPE_CHECKING:
    from bot.prompt.jinja import ChatTemplate
    from bot.prompt.lore import LoreResult

__all__ = [
    "CHATML",
    "CHATML_CONTEXT",
    "Block",
    "BlockKind",
    "BuiltPrompt",
    "ContextTemplate",
    "InstructTemplate",
    "PromptInputs",
    "PromptReport",
    "RoleRules",
]

GenerationType = Literal["normal", "continue", "impersonate", "swipe", "regenerate"]
ExamplesBehavior = Literal["gradual", "always", "never"]


class BlockKind(enum.StrEnum):
    MAIN = "main"  # the system prompt (card override or preset)
    WORLD_BEFORE = "world-before"
    WORLD_AFTER = "world-after"
    PERSONA = "persona"
    CHAR_DEF = "char-def"  # description, personality, scenario
    STORY = "story"  # text completion: the rendered story string
    ANCHOR = "anchor"  # extension prompts before/after the definitions (author's note …)
    CUSTOM = "custom"  # other prompt-manager prompts (auxiliary, enhance definitions, yours)
    EXAMPLE = "example"  # example dialogue, cut per block
    CHAT_START = "chat-start"
    ALIGNMENT = "alignment"  # the instruct template's user filler message
    GREETING = "greeting"  # the first history entry when the character speaks it
    HISTORY = "history"
    INJECTION = "injection"  # in-chat: author's note, depth prompts, lore at depth …
    POST_HISTORY = "post-history"
    CONTINUE_NUDGE = "continue-nudge"
    GROUP_NUDGE = "group-nudge"
    IMPERSONATE = "impersonate"
    PREFILL = "prefill"
    FORMAT = "format"  # template chrome (reply header, per-message overhead): report only


HISTORY_KINDS = frozenset({BlockKind.GREETING, BlockKind.HISTORY})


@dataclass(slots=True, eq=False)
class Block:
    """One piece of the prompt. Treated as immutable once built; not frozen only because a
    frozen dataclass is several times slower to create, and a prompt makes hundreds.

    ``speaker`` is who says it (the name an instruct ``{{name}}`` resolves to); ``show_name``
    writes ``"speaker: "`` before the text; ``name`` is the chat-completion ``name`` field.
    ``raw`` text is written as is in text mode (story string, separators, chat start).
    ``sequence`` picks an instruct variant: ``"first"``/``"last"``. ``partial`` marks the
    reply being continued. ``group`` ties example messages cut together (-1: none).
    ``identifier`` is the prompt-manager identifier or injection key it came from.
    """

    kind: BlockKind
    role: Role
    text: str
    speaker: str = ""
    show_name: bool = False
    name: str = ""
    raw: bool = False
    sequence: str = ""
    partial: bool = False
    narrator: bool = False
    example: bool = False  # an example-dialogue turn (formatted by the example rules)
    message_id: int | None = None
    group: int = -1
    identifier: str = ""


@dataclass(frozen=True, slots=True)
class RoleRules:
    """What a chat-completion backend accepts (the backends layer supplies it; default:
    OpenAI, which accepts everything).

    ``system`` False turns system messages into user ones (``system_first_only`` keeps only
    the leading ones); ``alternate`` merges consecutive same-role messages; ``user_first``
    inserts ``placeholder`` as the first non-system message when that is not a user one;
    ``names`` False folds ``name`` fields into the text; ``prefill`` allows a final
    assistant message.
    """

    system: bool = True
    system_first_only: bool = False
    alternate: bool = False
    user_first: bool = False
    names: bool = True
    prefill: bool = True
    placeholder: str = "[Start a new chat]"


OPENAI_RULES = RoleRules()

# The bot's own chat-completion defaults: SillyTavern's Default preset, with the definitions
# squashed into one system message and continuations sent as an assistant prefill, which
# suits the local models' chat templates best. Loaded presets keep SillyTavern's choices.
BOT_CHAT_PRESET = ChatPreset(squash_system_messages=True, continue_prefill=True)


@dataclass(frozen=True, slots=True)
class AuthorsNote:
    """SillyTavern's author's note: ``interval`` 1 = every turn, N = every N user messages,
    0 = off; ``position`` as :class:`bot.prompt.injection.Position`."""

    text: str
    position: int = 1
    depth: int = 4
    role: Role = "system"
    interval: int = 1
    scan: bool = False


@dataclass(frozen=True, slots=True)
class PromptInputs:
    """Everything one prompt is built from.

    ``history`` is oldest first (the user's new message included); its first entry is usually
    the greeting. ``system_prompt`` None means the preset's (the system-prompt preset in text
    mode, the prompt manager's ``main`` in chat mode); ``post_history_instructions`` likewise.
    ``instruct`` None turns instruct formatting off (plain ``Name: text`` lines).
    ``persona_description`` is the user's own text: never macro-expanded beyond
    ``{{user}}``/``{{char}}``. ``lore`` is the world-info activation for this turn
    (:func:`bot.prompt.builder.activate_lore`). ``group`` names the other characters of a
    group chat. ``renderer`` replaces the instruct template with a model's own chat template.
    """

    character: Character
    user_name: str
    history: Sequence[ChatMessage]
    mode: Mode = "chat"
    context_size: int = 8192
    max_tokens: int = 300
    system_prompt: str | None = None
    system_prompt_enabled: bool = True
    post_history_instructions: str | None = None
    persona_description: str = ""
    persona_position: int = 0  # 0 in the prompt, 2/3 top/bottom of the AN, 4 at depth, 9 none
    persona_depth: int = 2
    persona_role: Role = "system"
    authors_note: AuthorsNote | None = None
    injections: Sequence[Injection] = ()
    lore: LoreResult | None = None
    generation: GenerationType = "normal"
    continue_last: bool = False  # the same as generation="continue"
    instruct: InstructTemplate | None = CHATML
    context: ContextTemplate = CHATML_CONTEXT
    chat: ChatPreset = BOT_CHAT_PRESET
    role_rules: RoleRules = OPENAI_RULES
    renderer: ChatTemplate | None = None
    group: Sequence[str] = ()
    group_muted: frozenset[str] = frozenset()  # muted members ({{groupNotMuted}}, {{notChar}})
    token_padding: int = 64
    examples: ExamplesBehavior = "gradual"
    prefer_character_prompt: bool = True
    prefer_character_jailbreak: bool = True
    prefill: str = ""  # "Start Reply With"
    custom_stop: Sequence[str] = ()
    model: str = ""
    now: datetime | None = None
    rng: random.Random | None = None
    # macro variables ({{setvar}} …), changed in place; the engine stores them per chat
    local_vars: MutableMapping[str, str] | None = None
    global_vars: MutableMapping[str, str] | None = None
    chat_id: str = ""

    @property
    def kind(self) -> GenerationType:
        return "continue" if self.continue_last else self.generation


@dataclass(frozen=True, slots=True)
class PromptReport:
    """What went into a prompt and what was left out, for the ``prompt`` debug command.

    ``budget`` is what the prompt may use (context − max_tokens, less the padding in text
    mode); ``used`` the tokens of what was sent, split by kind in ``tokens``; ``included`` and
    ``cut`` list history message ids; ``notes`` say why things were cut.
    """

    mode: Mode
    context_size: int
    max_tokens: int
    budget: int
    used: int
    tokens: Mapping[BlockKind, int]
    included: tuple[int, ...]
    cut: tuple[int, ...]
    examples_included: int
    examples_cut: int
    injections: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    lore: tuple[str, ...] = ()

    def describe(self) -> str:
        """A short human summary: sizes, counts per part, what was cut and why."""
        lines = [
            f"{self.mode} prompt: {self.used} of {self.budget} tokens "
            f"(context {self.context_size}, reply {self.max_tokens})"
        ]
        for kind, n in sorted(self.tokens.items(), key=lambda kv: -kv[1]):
            if n:
                lines.append(f"  {kind.value:<15}{n:>7}")
        total = len(self.included) + len(self.cut)
        lines.append(f"history: {len(self.included)} of {total} messages")
        if self.cut:
            lines.append(f"  cut (oldest first, no room): ids {_ids(self.cut)}")
        if self.examples_included or self.examples_cut:
            lines.append(
                f"examples: {self.examples_included} sent, {self.examples_cut} cut for room"
            )
        if self.injections:
            lines.append("injections: " + ", ".join(self.injections))
        lines.extend(self.notes)
        if self.lore:
            lines.append("lore:")
            lines.extend(f"  {t}" for t in self.lore)
        return "\n".join(lines)


def _ids(ids: Sequence[int]) -> str:
    if len(ids) <= 12:
        return ", ".join(map(str, ids))
    return (
        ", ".join(map(str, ids[:5]))
        + f", … ({len(ids) - 10} more) …, "
        + ", ".join(map(str, ids[-5:]))
    )


@dataclass(frozen=True, slots=True)
class BuiltPrompt:
    """The prompt to send: ``messages`` in chat mode, ``text`` in text mode."""

    mode: Mode
    messages: tuple[PromptMessage, ...]
    text: str
    stop: tuple[str, ...]
    report: PromptReport
    blocks: tuple[Block, ...]

    @property
    def prompt_tokens(self) -> int:
        """The estimated prompt size, for when the backend reports no usage."""
        return self.report.used
