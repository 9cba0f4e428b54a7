"""What both layouts share, computed once per prompt: names, macro expansion, the card's
fields, the persona, lore, and every injection (author's note, Character's Note, persona at
depth, lore at depth, extras) as :class:`Injection` values for the one placement function.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from bot.prompt.injection import Injection, Position, role_of
from bot.prompt.macros import CardMacros, ChatMacros, MacroContext, PromptMacros, expand
from bot.prompt.macros import expand_user_text as _expand_user_text
from bot.prompt.model import GenerationType, PromptInputs
from bot.types import ChatMessage

# text whose only macros are {{char}}/{{user}} (no other braces, no legacy <TAGS>)
_NAMES_ONLY = re.compile(r"(?:[^{}<]|\{\{\s*(?:char|user)\s*\}\})*", re.IGNORECASE)
PERSONA_TOP_AN, PERSONA_BOTTOM_AN, PERSONA_AT_DEPTH, PERSONA_NONE = 2, 3, 4, 9


@dataclass(slots=True)
class Prepared:
    inputs: PromptInputs
    user: str
    char: str
    kind: GenerationType
    history: list[ChatMessage]  # what may be sent: hidden messages left out
    ctx: MacroContext
    description: str = ""
    personality: str = ""
    scenario: str = ""
    mes_examples: str = ""
    persona: str = ""  # the persona's text, {{user}}/{{char}} expanded
    persona_prompt: str = ""  # the same when it goes in the prompt (position 0), else ""
    wi_before: str = ""
    wi_after: str = ""
    em_top: tuple[str, ...] = ()
    em_bottom: tuple[str, ...] = ()
    injections: list[Injection] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def expand(self, text: str, original: str | None = None, **extra: str) -> str:
        """Card or preset text with its macros expanded; carriage returns dropped."""
        if not text:
            return ""
        if original is None and not extra and _NAMES_ONLY.fullmatch(text):
            # the common case ({{char}}, {{user}} only): the same result, without the parser
            return _expand_user_text(text, self.ctx).replace("\r", "")
        ctx = self.ctx
        if original is not None or extra:
            ctx = replace(
                ctx,
                original=ctx.original if original is None else original,
                extra={**ctx.extra, **extra} if extra else ctx.extra,
            )
        return expand(text, ctx).replace("\r", "")

    def user_text(self, text: str) -> str:
        """Text a chat user wrote (the persona): only ``{{user}}``/``{{char}}`` expanded."""
        return _expand_user_text(text, self.ctx).replace("\r", "")


def prepare(inputs: PromptInputs) -> Prepared:
    card = inputs.character
    user, char = inputs.user_name, card.name
    history = [m for m in inputs.history if not m.extra.get("hidden")]
    instruct = inputs.instruct if inputs.mode == "text" else None
    prompt = PromptMacros(
        instruct_enabled=instruct is not None,
        instruct=_fields(instruct) if instruct is not None else {},
        system_prompt_enabled=inputs.system_prompt_enabled,
        system_prompt=inputs.system_prompt or "",
        example_separator=inputs.context.example_separator,
        chat_start=inputs.context.chat_start,
        max_context=inputs.context_size,
        max_response=inputs.max_tokens,
        model=inputs.model,
    )
    ctx = MacroContext(
        user=user,
        char=char,
        group=tuple(inputs.group),
        muted=inputs.group_muted,
        card=CardMacros.from_card(card),
        prompt=prompt,
        chat=ChatMacros(history=history),
        now=inputs.now,
        rng=inputs.rng,
        local_vars=inputs.local_vars,
        global_vars=inputs.global_vars,
        chat_id=inputs.chat_id,
    )
    p = Prepared(inputs, user, char, inputs.kind, history, ctx)
    p.persona = p.user_text(inputs.persona_description.strip())
    ctx = replace(ctx, persona=p.persona)
    p.ctx = ctx
    # the card's fields, trimmed then expanded, as getCharacterCardFields does
    p.description = p.expand(card.description.strip())
    p.personality = p.expand(card.personality.strip())
    p.scenario = p.expand(card.scenario.strip())
    p.mes_examples = p.expand(card.mes_example.strip())
    lore = inputs.lore
    if lore is not None:
        p.wi_before, p.wi_after = lore.before, lore.after
        p.em_top, p.em_bottom = lore.em_top, lore.em_bottom
        p.injections.extend(lore.depth)
    _add_authors_note(p)
    _add_depth_prompt(p)
    if inputs.persona_position == PERSONA_AT_DEPTH and p.persona:
        p.injections.append(
            Injection(
                "PERSONA_DESCRIPTION",
                p.persona,
                Position.IN_CHAT,
                inputs.persona_depth,
                inputs.persona_role,
                scan=True,
            )
        )
    p.injections.extend(
        replace(i, text=p.expand(i.text)) if not i.manager else i for i in inputs.injections
    )
    if inputs.persona_position in (0, 1):  # ST migrates the deprecated 1 to 0
        p.persona_prompt = p.persona
    return p


def _fields(template: object) -> dict[str, object]:
    return {name: getattr(template, name) for name in getattr(template, "__slots__", ())}


def _add_authors_note(p: Prepared) -> None:
    """SillyTavern's ``setFloatingPrompt`` plus the persona and lore that ride on the note."""
    note = p.inputs.authors_note
    if note is None:
        return
    users = sum(1 for m in p.history if m.role == "user")
    count = 1 if note.interval == 1 else users
    if count <= 0 or note.interval <= 0:
        return
    due = (count % note.interval if count >= note.interval else note.interval - count) == 0
    if not due:
        p.notes.append(f"author's note: not this turn (every {note.interval} user messages)")
        return
    text = note.text
    position = p.inputs.persona_position
    if p.persona and position == PERSONA_TOP_AN:
        text = f"{p.persona}\n{text}"
    elif p.persona and position == PERSONA_BOTTOM_AN:
        text = f"{text}\n{p.persona}"
    if p.inputs.lore is not None:
        text = p.inputs.lore.authors_note(text)
    if text:
        p.injections.append(
            Injection(
                "2_floating_prompt",
                p.expand(text),
                Position(note.position) if note.position in (0, 1, 2) else Position.IN_CHAT,
                note.depth,
                note.role,
                scan=note.scan,
            )
        )


def _add_depth_prompt(p: Prepared) -> None:
    """The card's Character's Note (``extensions.depth_prompt``), in the chat at its depth."""
    raw = p.inputs.character.extensions.get("depth_prompt")
    if not isinstance(raw, dict):
        return
    text = raw.get("prompt")
    if not isinstance(text, str) or not text.strip():
        return
    depth = raw.get("depth", 4)
    depth = depth if isinstance(depth, int) and not isinstance(depth, bool) else 4
    p.injections.append(
        Injection(
            "DEPTH_PROMPT",
            p.expand(text.strip()),
            Position.IN_CHAT,
            depth,
            role_of(raw.get("role", "system")),
        )
    )


def names_of(messages: Sequence[ChatMessage], user: str) -> list[str]:
    """Other people who spoke in ``messages``, most recent first (for stop strings)."""
    seen = [m.name for m in reversed(messages) if m.role == "user" and m.name and m.name != user]
    return list(dict.fromkeys(seen))
