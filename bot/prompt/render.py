"""Renderers: blocks → a text-completion string (instruct template) or chat messages.

:class:`TextFormatter` formats one block the way SillyTavern's ``formatInstructModeChat`` /
``formatInstructModeExamples`` / plain ``Name: text`` lines do, writes the final "last line"
(``formatInstructModePrompt``) and lists the stop strings (``getStoppingStrings``).
:func:`to_messages` maps blocks one to one onto chat messages and applies the post-processing:
squashing system messages and a backend's :class:`~bot.prompt.model.RoleRules`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from bot.backends.base import PromptMessage
from bot.prompt.model import Block, GenerationType, RoleRules
from bot.prompt.presets import ContextTemplate, InstructTemplate
from bot.types import Role

_NAME = re.compile(r"\{\{name\}\}", re.IGNORECASE)


class TextFormatter:
    """Text completion formatting for one prompt (one user, one character)."""

    def __init__(
        self,
        instruct: InstructTemplate | None,
        context: ContextTemplate,
        user: str,
        char: str,
        expand: Callable[[str], str],
        *,
        group: bool = False,
    ) -> None:
        self.instruct = instruct
        self.context = context
        self.user = user
        self.char = char
        self._expand = expand
        self._group = group
        self.sep = "\n" if instruct is not None and instruct.wrap else ""
        self._cache: dict[tuple[str, str], str] = {}

    # -- one block ----------------------------------------------------------------------------

    def piece(self, block: Block) -> str:
        """The block's text as it appears in the prompt."""
        if block.raw:
            return block.text
        t = self.instruct
        if t is None:
            line = f"{block.speaker}: {block.text}\n" if block.show_name else f"{block.text}\n"
        elif block.example:
            line = self._example(t, block)
        else:
            line = self._turn(t, block)
        if block.partial:  # continuing: cut after the message text, as ST slices it
            end = line.rfind(block.text)
            return line[: end + len(block.text)] if end >= 0 else line
        return line

    def _seq(self, t: InstructTemplate, sequence: str, name: str) -> str:
        """A sequence with macros expanded and ``{{name}}`` resolved (when ``macro``)."""
        if not t.macro or not sequence:
            return sequence
        key = (sequence, name)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = _NAME.sub(lambda _: name, self._expand(sequence))
        return hit

    def _turn(self, t: InstructTemplate, block: Block) -> str:
        who = block.speaker or "System"
        if block.narrator:
            same = t.system_same_as_user
            prefix = t.input_sequence if same else t.system_sequence
            suffix = t.input_suffix if same else t.system_suffix
        elif block.role == "user":
            prefix = t.input_sequence
            if block.sequence == "first":
                prefix = t.first_input_sequence or prefix
            elif block.sequence == "last":
                prefix = t.last_input_sequence or prefix
            suffix = t.input_suffix
        else:
            prefix = t.output_sequence
            if block.sequence == "first":
                prefix = t.first_output_sequence or prefix
            elif block.sequence == "last":
                prefix = t.last_output_sequence or prefix
            suffix = t.output_suffix
        prefix = self._seq(t, prefix, who)
        suffix = self._seq(t, suffix, who) or ("\n" if t.wrap else "")
        body = (
            f"{block.speaker}: {block.text}" if block.show_name and block.speaker else block.text
        )
        return self.sep.join(p for p in (prefix, body + suffix) if p)

    def _example(self, t: InstructTemplate, block: Block) -> str:
        user = block.role == "user"
        name = self.user if user else self.char
        prefix = t.input_sequence if user else t.output_sequence
        suffix = t.input_suffix if user else t.output_suffix
        if t.macro:  # ST fills an empty suffix with the separator only inside this branch
            prefix, suffix = self._seq(t, prefix, name), self._seq(t, suffix, name)
            suffix = suffix or ("\n" if t.wrap else "")
        names = t.names_behavior == "always" or (
            t.names_behavior == "force" and (self._group or user)
        )
        body = f"{name}: {block.text}" if names else block.text
        return self.sep.join(p for p in (prefix, body + suffix) if p)

    # -- the last line -------------------------------------------------------------------------

    def finish(
        self,
        last: str,
        kind: GenerationType,
        *,
        prefill: str = "",
        force_name: bool = True,
        last_is_user: bool = False,
        first_only: bool = False,
    ) -> str:
        """``modifyLastPromptLine`` applied to the last history item's text (its newline
        already removed), plus the non-instruct "Start Reply With" text."""
        t = self.instruct
        if kind == "continue" and t is not None:
            return last
        if t is not None:
            return last + self._instruct_line(t, kind == "impersonate", prefill)
        if kind == "impersonate":
            return (last if last.endswith("\n") else last + "\n") + f"{self.user}:"
        if force_name and not (kind == "continue" and first_only):
            if not last.endswith("\n"):
                last += "\n"
            if kind != "continue" or not last_is_user:
                last += f"{self.char}:"
        if prefill.strip():
            bias = prefill.lstrip()
            last += bias if last[-1:].isspace() else " " + bias
        return last

    def _instruct_line(self, t: InstructTemplate, impersonate: bool, prefill: str) -> str:
        name = self.user if impersonate else self.char
        names = bool(name) and (
            t.names_behavior == "always" or (self._group and t.names_behavior == "force")
        )
        sequence = (
            t.input_sequence if impersonate else (t.last_output_sequence or t.output_sequence)
        )
        filler = ""
        if (  # ST's Mistral hack: keep the output sequence's trailing space before the name
            names
            and t.last_output_sequence
            and t.output_sequence
            and sequence == t.last_output_sequence
            and t.output_sequence[-1:].isspace()
            and not t.last_output_sequence[-1:].isspace()
        ):
            filler = t.output_sequence[-1]
        sequence = self._seq(t, sequence, name or "System")
        sep = self.sep
        text = f"{sep}{sequence}{sep}{filler}{name}:" if names else sep + sequence
        if not impersonate and prefill:
            text += prefill if names else sep + prefill.lstrip()
        return (text.rstrip() if t.wrap else text) + ("" if names else sep)

    # -- stop strings ---------------------------------------------------------------------------

    def stop_strings(
        self,
        kind: GenerationType,
        *,
        last_is_user: bool = False,
        others: Iterable[str] = (),
        custom: Iterable[str] = (),
    ) -> tuple[str, ...]:
        """``getStoppingStrings``: names, instruct sequences, separators, custom ones."""
        out: list[str] = []
        if self.context.names_as_stop_strings:
            user, char = f"\n{self.user}:", f"\n{self.char}:"
            out.append(char if kind == "impersonate" else user)
            out.append(user)
            if kind == "continue" and last_is_user:
                out.append(char)
            out.extend(f"\n{name}:" for name in others if name != self.char)
        t = self.instruct
        if t is not None and t.sequences_as_stop_strings:
            combined = "\n".join(
                (
                    t.stop_sequence,
                    _NAME.sub(lambda _: self.user, t.input_sequence),
                    _NAME.sub(lambda _: self.char, t.output_sequence),
                    _NAME.sub(lambda _: self.char, t.first_output_sequence),
                    _NAME.sub(lambda _: self.char, t.last_output_sequence),
                    _NAME.sub(lambda _: "System", t.system_sequence),
                    _NAME.sub(lambda _: "System", t.last_system_sequence),
                )
            )
            for line in dict.fromkeys(combined.split("\n")):
                if line.strip():
                    stop = ("\n" if t.wrap else "") + line
                    out.append(self._expand(stop) if t.macro else stop)
        c = self.context
        if c.use_stop_strings:
            out.extend("\n" + self._expand(s) for s in (c.chat_start, c.example_separator) if s)
        out.extend(self._expand(s) for s in custom)
        if c.single_line:
            out.insert(0, "\n")
        return tuple(s for s in dict.fromkeys(out) if s)


# -- chat messages ------------------------------------------------------------------------------

_SQUASH_EXCLUDED = frozenset({"newMainChat", "newChat", "groupNudge"})
_NAME_OK = re.compile(r"^[a-zA-Z0-9_]{1,64}$")


def sanitize_name(name: str) -> str:
    """An OpenAI ``name`` field: ``[a-zA-Z0-9_]{1,64}``, other characters as ``_``."""
    return name if _NAME_OK.match(name) else re.sub(r"[^a-zA-Z0-9_]", "_", name)[:64]


def to_messages(
    blocks: Sequence[Block], rules: RoleRules, *, squash: bool = False
) -> tuple[PromptMessage, ...]:
    """Blocks → chat messages: empty ones dropped, optionally system messages squashed, then
    the backend's role rules applied."""
    items: list[tuple[Role, str, str, str]] = [
        (b.role, b.text, b.name, b.identifier) for b in blocks if b.text
    ]
    if squash:  # ST's squash_system_messages
        merged: list[tuple[Role, str, str, str]] = []
        for role, text, name, ident in items:
            squashable = role == "system" and not name and ident not in _SQUASH_EXCLUDED
            prev = merged[-1] if merged else None
            if (
                squashable
                and prev is not None
                and prev[0] == "system"
                and not prev[2]
                and (prev[3] not in _SQUASH_EXCLUDED)
            ):
                merged[-1] = (role, prev[1] + "\n" + text, "", prev[3])
            else:
                merged.append((role, text, name, ident))
        items = merged
    messages = [PromptMessage(role, text, name) for role, text, name, _ in items]
    return tuple(apply_rules(messages, rules))


def apply_rules(messages: Sequence[PromptMessage], rules: RoleRules) -> list[PromptMessage]:
    """Fit messages to what a backend accepts (see :class:`RoleRules`)."""
    out = list(messages)
    if not rules.names:
        out = [PromptMessage(m.role, _fold_name(m), "") if m.name else m for m in out]
    if not rules.system or rules.system_first_only:
        lead = 0
        if rules.system_first_only:
            while lead < len(out) and out[lead].role == "system":
                lead += 1
        out = out[:lead] + [
            PromptMessage("user", m.content, m.name) if m.role == "system" else m
            for m in out[lead:]
        ]
    if rules.user_first:
        lead = 0
        while lead < len(out) and out[lead].role == "system":
            lead += 1
        if lead == len(out) or out[lead].role != "user":
            out.insert(lead, PromptMessage("user", rules.placeholder))
    if rules.alternate:
        merged: list[PromptMessage] = []
        for m in out:
            if merged and merged[-1].role == m.role:
                prev = merged[-1]
                merged[-1] = PromptMessage(m.role, prev.content + "\n\n" + m.content)
            else:
                merged.append(PromptMessage(m.role, m.content, m.name))
        out = merged
    return out


def _fold_name(message: PromptMessage) -> str:
    name = message.name
    if name in ("example_user", "example_assistant"):
        return message.content
    return f"{name}: {message.content}"
