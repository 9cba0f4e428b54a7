"""The internal prompt model: inputs, templates, the ordered blocks, and the built result.

One model serves both wire shapes: the builder assembles an ordered list of :class:`Block`
and a renderer turns it into chat-completion messages or a text-completion string.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.backends.base import Mode, PromptMessage
from bot.prompt.card import Character
from bot.types import ChatMessage, Role

NamesBehavior = Literal["none", "force", "always"]


class BlockKind(enum.StrEnum):
    MAIN = "main"  # the system prompt (card override or config)
    PERSONA = "persona"
    CHAR_DEF = "char-def"  # description, personality, scenario
    EXAMPLE = "example"  # example dialogue, cut per <START> block
    CHAT_START = "chat-start"
    GREETING = "greeting"  # the first history entry when the character speaks it
    HISTORY = "history"
    POST_HISTORY = "post-history"
    CONTINUE_NUDGE = "continue-nudge"
    FORMAT = (
        "format"  # template chrome (sequences, reply header, per-message overhead): report only
    )


HEADER_KINDS = frozenset({BlockKind.MAIN, BlockKind.PERSONA, BlockKind.CHAR_DEF})


@dataclass(frozen=True, slots=True)
class Block:
    """One piece of the prompt.

    ``speaker`` is shown as ``"Speaker: text"`` (the builder sets it only where names apply);
    ``name`` is the chat-completion ``name`` field (SillyTavern's ``example_user``/
    ``example_assistant``). ``fixed`` blocks are never cut; examples sharing a ``group`` are
    cut together. ``verbatim`` text is written as is in text mode (separators, chat start).
    ``partial`` marks the reply being continued: no end-of-turn follows it.
    """

    kind: BlockKind
    role: Role
    text: str
    speaker: str = ""
    name: str = ""
    fixed: bool = True
    message_id: int | None = None
    group: int = 0
    verbatim: bool = False
    partial: bool = False


@dataclass(frozen=True, slots=True)
class InstructTemplate:
    """SillyTavern's instruct template fields that text-mode rendering uses."""

    name: str
    input_sequence: str
    output_sequence: str
    system_sequence: str
    input_suffix: str = ""
    output_suffix: str = ""
    system_suffix: str = ""
    stop_sequence: str = ""
    first_output_sequence: str = ""
    last_output_sequence: str = ""
    last_system_sequence: str = ""
    system_same_as_user: bool = False
    wrap: bool = True
    macro: bool = True
    names_behavior: NamesBehavior = "force"

    @classmethod
    def from_st(cls, data: Mapping[str, Any]) -> InstructTemplate:
        """From a SillyTavern instruct preset (``presets/instruct/*.json``)."""

        def text(key: str) -> str:
            return str(data.get(key) or "")

        names = text("names_behavior")
        if "names" in data and not names:  # the pre-1.12 booleans
            names = (
                "always"
                if data["names"]
                else "force"
                if data.get("names_force_groups")
                else "none"
            )
        behavior: NamesBehavior = (
            "always" if names == "always" else "none" if names == "none" else "force"
        )
        return cls(
            name=text("name"),
            input_sequence=text("input_sequence"),
            output_sequence=text("output_sequence"),
            system_sequence=text("system_sequence"),
            input_suffix=text("input_suffix"),
            output_suffix=text("output_suffix"),
            system_suffix=text("system_suffix"),
            stop_sequence=text("stop_sequence"),
            first_output_sequence=text("first_output_sequence"),
            last_output_sequence=text("last_output_sequence"),
            last_system_sequence=text("last_system_sequence"),
            system_same_as_user=bool(data.get("system_same_as_user", False)),
            wrap=bool(data.get("wrap", True)),
            macro=bool(data.get("macro", True)),
            names_behavior=behavior,
        )


CHATML = InstructTemplate(
    name="ChatML",
    input_sequence="<|im_start|>user",
    output_sequence="<|im_start|>assistant",
    system_sequence="<|im_start|>system",
    input_suffix="<|im_end|>\n",
    output_suffix="<|im_end|>\n",
    system_suffix="<|im_end|>\n",
    stop_sequence="<|im_end|>",
    names_behavior="always",
)


@dataclass(frozen=True, slots=True)
class ContextTemplate:
    """SillyTavern's context template fields used so far (the story string is fixed for now)."""

    name: str = ""
    example_separator: str = ""
    chat_start: str = ""
    use_stop_strings: bool = False

    @classmethod
    def from_st(cls, data: Mapping[str, Any]) -> ContextTemplate:
        """From a SillyTavern context preset (``presets/context/*.json``)."""
        return cls(
            name=str(data.get("name") or ""),
            example_separator=str(data.get("example_separator") or ""),
            chat_start=str(data.get("chat_start") or ""),
            use_stop_strings=bool(data.get("use_stop_strings", False)),
        )


CHATML_CONTEXT = ContextTemplate(name="ChatML")


@dataclass(frozen=True, slots=True)
class ChatPrompts:
    """Chat-completion utility prompts, SillyTavern's defaults. An empty text leaves it out."""

    new_chat: str = "[Start a new Chat]"
    new_example_chat: str = "[Example Chat]"
    continue_nudge: str = (
        "[Continue the following message. Do not include ANY parts of the original message. "
        "Use capitalization and punctuation as if your reply is a part of the original "
        "message: {{lastChatMessage}}]"
    )
    personality_format: str = "[{{char}}'s personality: {{personality}}]"
    scenario_format: str = "[Circumstances and context of the dialogue: {{scenario}}]"


@dataclass(frozen=True, slots=True)
class PromptInputs:
    """Everything one prompt is built from. Only card and config text is macro-expanded.

    ``history`` is oldest first; its first entry is usually the greeting. With
    ``continue_last`` the last entry must be the assistant reply to continue.
    ``persona_description`` is inserted as is (it may be user-written); expand it with
    :func:`bot.prompt.macros.expand` before passing it when it comes from config.
    """

    character: Character
    user_name: str
    history: Sequence[ChatMessage]
    mode: Mode = "chat"
    context_size: int = 8192
    max_tokens: int = 300
    system_prompt: str = ""
    persona_description: str = ""
    post_history_instructions: str = ""
    continue_last: bool = False
    instruct: InstructTemplate = CHATML
    context: ContextTemplate = CHATML_CONTEXT
    chat_prompts: ChatPrompts = field(default_factory=ChatPrompts)


@dataclass(frozen=True, slots=True)
class PromptReport:
    """What went into a prompt, for the ``prompt`` debug command and logs.

    ``budget`` is what the prompt may use (context − max_tokens − padding); ``used`` is the
    estimate for what was sent, split by kind in ``tokens``. ``included`` and ``cut`` list
    history message ids.
    """

    mode: Mode
    budget: int
    used: int
    tokens: Mapping[BlockKind, int]
    included: tuple[int, ...]
    cut: tuple[int, ...]
    examples_included: int
    examples_cut: int


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
