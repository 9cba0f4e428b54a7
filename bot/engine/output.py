"""From a model's raw text to what is stored and what users see, and the script passes on
user input and on the history a prompt is built from.

Regex scripts (SillyTavern's Regex extension) run where SillyTavern runs them: user-input
scripts on a user's message before it is stored; AI-output scripts on a reply before it is
stored or shown (inside the clean-up, at SillyTavern's step); display-only scripts on what is
shown, never on what is stored; prompt-only scripts on the texts sent in a prompt, never on
what is stored. Reasoning-placement scripts run on a reply's reasoning before it is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from bot.config import ReasoningConfig
from bot.engine.generate import Outcome
from bot.prompt.cleanup import CleanupOptions, clean_reply
from bot.prompt.macros import MacroContext, expand
from bot.prompt.regex_scripts import RegexPlacement, RegexScript, apply_scripts
from bot.types import ChatMessage

Macros = Callable[[str], str]

SUGGESTION = "✍ suggestion: "  # an impersonation: text the user may send as their own


def script_macros(user: str, char: str) -> Macros:
    """Macros in scripts' replacements: the scripts' author wrote them, so all macros run."""
    return partial(expand, ctx=MacroContext(user=user, char=char))


@dataclass(frozen=True, slots=True)
class Scripts:
    """The regex scripts in force for one speaker: the configured ones, then the card's."""

    stored: tuple[RegexScript, ...] = ()  # change stored text (and so prompts and display)
    display: tuple[RegexScript, ...] = ()  # markdownOnly: what is shown only
    prompt: tuple[RegexScript, ...] = ()  # promptOnly: what is sent only

    @classmethod
    def of(cls, scripts: Sequence[RegexScript]) -> Scripts:
        live = [s for s in scripts if not s.disabled and not s.problem and s.find]
        return cls(
            tuple(s for s in live if not s.markdown_only and not s.prompt_only),
            tuple(s for s in live if s.markdown_only),
            tuple(s for s in live if s.prompt_only),
        )

    def __bool__(self) -> bool:
        return bool(self.stored or self.display or self.prompt)

    def user_input(self, text: str, macros: Macros) -> str:
        if not self.stored:
            return text
        return apply_scripts(text, self.stored, RegexPlacement.USER_INPUT, depth=0, macros=macros)

    def reasoning(self, text: str, macros: Macros) -> str:
        if not self.stored or not text:
            return text
        return apply_scripts(text, self.stored, RegexPlacement.REASONING, depth=0, macros=macros)

    def shown(self, text: str, macros: Macros, placement: int = RegexPlacement.AI_OUTPUT) -> str:
        if not self.display:
            return text
        return apply_scripts(text, self.display, placement, for_display=True, macros=macros)

    def for_prompt(self, history: Sequence[ChatMessage], macros: Macros) -> list[ChatMessage]:
        """``history`` as a prompt sends it: prompt-only scripts applied to copies."""
        if not self.prompt:
            return list(history)
        out: list[ChatMessage] = []
        last = len(history) - 1
        for index, message in enumerate(history):
            placement = (
                RegexPlacement.USER_INPUT if message.role == "user" else RegexPlacement.AI_OUTPUT
            )
            text = apply_scripts(
                message.text,
                self.prompt,
                placement,
                depth=last - index,
                for_prompt=True,
                macros=macros,
            )
            if text != message.text:
                message = message.copy()
                message.text = text
            out.append(message)
        return out


@dataclass(frozen=True, slots=True)
class Output:
    """How one reply's raw text is cleaned, stored and shown.

    ``label`` goes before the shown text (a group member's name, or the suggestion marker of
    an impersonation); ``reasoning`` says whether the reasoning is shown above the reply.
    """

    cleanup: CleanupOptions
    scripts: Scripts
    macros: Macros
    reasoning: ReasoningConfig = field(default_factory=ReasoningConfig)
    label: str = ""

    def _ai_output(self, text: str) -> str:
        return apply_scripts(
            text, self.scripts.stored, RegexPlacement.AI_OUTPUT, depth=0, macros=self.macros
        )

    def stored(self, raw: str) -> str:
        """The final reply as it is stored."""
        hook = self._ai_output if self.scripts.stored else None
        return clean_reply(raw, self.cleanup, regex_hook=hook)

    def frame(self, raw: str) -> str:
        """A streaming frame: the partial reply, cleaned as far as it can be, as shown."""
        hook = self._ai_output if self.scripts.stored else None
        text = clean_reply(raw, self.cleanup, regex_hook=hook, partial=True)
        return self.label + self.scripts.shown(text, self.macros) if text else ""

    def status(self, text: str) -> str:
        return self.label + text

    def shown(self, text: str, reasoning: str = "", note: str = "") -> str:
        """The final frame: the label, the reasoning when shown, the reply, a note."""
        label = self.label
        if reasoning and self.reasoning.show:  # the quote must start its own line
            label = (label.rstrip() + "\n" if label else "") + reasoning_block(reasoning)
        return label + self.scripts.shown(text, self.macros) + note

    def keep_reasoning(self, reasoning: str) -> str:
        return self.scripts.reasoning(reasoning.strip(), self.macros)


def reasoning_block(reasoning: str) -> str:
    """The reasoning as a quote under a 💭, then a blank line (Markdown quote lines on
    Discord and Telegram; plain "> " lines elsewhere)."""
    lines = reasoning.strip().split("\n")
    lines[0] = "💭 " + lines[0]
    return "\n".join(f"> {line}" if line.strip() else ">" for line in lines) + "\n\n"


def same(text: str) -> str:
    return text


def marker(outcome: Outcome) -> str:
    """What follows a reply that did not end normally."""
    if outcome.stopped:
        return " [stopped]"
    if outcome.error is not None:
        return f"\n\n⚠ cut off: {outcome.error.user_message()}"
    if outcome.finish == "filtered":
        return "\n\n⚠ the backend's content filter stopped this reply; regenerate or rephrase"
    return ""


def fallback_note(name: str, failed: list[str]) -> str:
    if not failed:
        return ""
    first = failed[0].split(":", 1)[0]
    return f"\n\n↪ answered by {name} ({first} was unavailable)"


def failure_line(outcome: Outcome) -> str:
    """The line shown instead of a reply when nothing usable arrived."""
    if outcome.error is not None:
        return f"⚠ {outcome.error.user_message()}"
    if outcome.stopped:
        return "[stopped before the reply began]"
    if outcome.text.strip():
        return "⚠ The reply only spoke for someone else, so nothing was kept; try regenerating."
    if outcome.reasoning:
        return "⚠ The model was still reasoning when its reply ended; raise max_tokens."
    return "⚠ The backend returned an empty reply; try regenerating."
