"""Text completion: SillyTavern's story-string layout (``Generate`` in 1.12.6), step for step.

Layout: anchor-before, story string, anchor-after, examples, chat start, [user filler],
history with the in-chat injections (and the post-history instructions as a nameless user
turn), the last line. :mod:`bot.prompt.text_fit` budgets and assembles it.

Deliberate differences from SillyTavern, none of which the shipped presets reach:

* macros are expanded once: text that a macro produced is not scanned again (ST's story
  string pass expands values a second time), and the persona only gets ``{{user}}`` and
  ``{{char}}`` (it is the user's own text);
* ``{{original}}`` in a card's system prompt is the configured prompt in plain (non-instruct)
  mode too, where SillyTavern 1.12.6 leaves the macro as written;
* after a continue, the injected positions are shifted with the list (ST keeps stale ones,
  which only changes which item the budget tries first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from bot.prompt.examples import split_blocks, split_turns
from bot.prompt.injection import Injection, Position, role_of
from bot.prompt.model import Block, BlockKind
from bot.prompt.placement import anchor, place_in_chat
from bot.prompt.prepared import Prepared
from bot.prompt.presets import InstructTemplate
from bot.prompt.render import TextFormatter
from bot.types import ChatMessage, Role


@dataclass(slots=True)
class TextHead:
    """What comes before the chat: anchors, story string, examples, chat start."""

    before: str
    story: str
    after: str
    examples: list[Block]  # example items, each cut on its own (ST's mesExamplesArray)
    chat_sep: str
    alignment: Block | None
    injections: list[Injection]  # with the story string when it goes in the chat


@dataclass(slots=True)
class TextItems:
    """The chat part: history (from ``start``) with injections, oldest first."""

    items: list[Block]
    injected: list[int]  # newest-first positions of injections (ST's injectedIndices)
    user_positions: set[int]  # newest-first positions of user turns
    cycle: Block | None  # the message being continued, moved to the end (cyclePrompt)
    start: int  # index in the history of the first message in ``items``


def system_prompt(p: Prepared, instruct: InstructTemplate | None) -> str:
    """The story string's ``{{system}}``: the card's prompt (preferred) or the configured
    one, ``{{original}}`` being the configured one; wrapped by the 1.12 system prefix."""
    inputs = p.inputs
    if not inputs.system_prompt_enabled:
        return ""
    configured = NEUTRAL if inputs.system_prompt is None else inputs.system_prompt
    card = inputs.character.system_prompt.strip() if inputs.prefer_character_prompt else ""
    system = p.expand(card or configured, original=p.expand(configured))
    if instruct is not None and system:
        sep = "\n" if instruct.wrap else ""
        if instruct.system_sequence_prefix:
            prefix = instruct.system_sequence_prefix.replace("{{name}}", "System")
            system = prefix + sep + system
        if instruct.system_sequence_suffix:
            system = system + sep + instruct.system_sequence_suffix
    return system


NEUTRAL = "Write {{char}}'s next reply in a fictional chat between {{char}} and {{user}}."


def post_history(p: Prepared) -> str:
    """The text-completion post-history instructions: the card's (1.12.6 sends them only with
    the context template's ``allow_jailbreak``) or the system prompt preset's newer
    ``post_history`` (the card's override it, ``{{original}}`` being the preset's)."""
    inputs = p.inputs
    card = (
        inputs.character.post_history_instructions.strip()
        if inputs.prefer_character_jailbreak
        else ""
    )
    configured = inputs.post_history_instructions or ""
    if inputs.system_prompt_enabled and configured.strip():
        return p.expand(card or configured, original=p.expand(configured)).strip()
    if inputs.context.allow_jailbreak and card:
        return p.expand(card, original="").strip()
    return ""


def head(p: Prepared, fmt: TextFormatter) -> TextHead:
    inputs = p.inputs
    t = inputs.instruct
    ctx = inputs.context
    heading = p.expand(ctx.example_separator) + "\n" if ctx.example_separator else ""
    parse_heading = heading or ("<START>\n" if t is not None else "")
    raw_blocks = [b for em in p.em_top for b in split_blocks(p.expand(em), parse_heading)]
    raw_blocks += split_blocks(p.mes_examples, parse_heading)
    raw_blocks += [b for em in p.em_bottom for b in split_blocks(p.expand(em), parse_heading)]
    examples = _format_examples(raw_blocks, heading, t, p.user, p.char)

    before = anchor(p.injections, Position.BEFORE_PROMPT).lstrip()
    after = anchor(p.injections, Position.IN_PROMPT)
    template = ctx.template
    anchors_inside = "anchorBefore" in ctx.story_string or "anchorAfter" in ctx.story_string
    params: dict[str, object] = {
        "description": p.description,
        "personality": p.personality,
        "persona": p.persona_prompt,
        "scenario": p.scenario,
        "system": system_prompt(p, t),
        "char": p.char,
        "user": p.user,
        "wiBefore": p.wi_before,
        "wiAfter": p.wi_after,
        "loreBefore": p.wi_before,
        "loreAfter": p.wi_after,
        "mesExamples": "".join(fmt.piece(b) for b in examples),
        "mesExamplesRaw": "".join(raw_blocks),
        "anchorBefore": before,
        "anchorAfter": after,
    }
    story = template.render(params, lambda name: p.expand("{{" + name + "}}"), p.expand)
    story = _apply_trim(story).lstrip("\n")
    if story and not story.endswith("\n") and (t is None or t.wrap):
        story += "\n"
    if anchors_inside:
        before = after = ""
    if t is not None and story and (t.story_string_prefix or t.story_string_suffix):
        sep = "\n" if t.wrap else ""
        prefix = p.expand(t.story_string_prefix)
        story = (prefix + sep if prefix else "") + story + p.expand(t.story_string_suffix)
    if inputs.examples == "never":
        examples = []
    injections = list(p.injections)
    if ctx.story_string_position == 1 and story:  # [newer] the story string in the chat
        injections.append(
            Injection(
                "STORY_STRING",
                story,
                Position.IN_CHAT,
                ctx.story_string_depth,
                role_of(ctx.story_string_role),
            )
        )
        story = ""
    alignment = None
    if t is not None and t.user_alignment_message:
        alignment = Block(
            BlockKind.ALIGNMENT,
            "user",
            p.expand(t.user_alignment_message),
            p.user,
            show_name=t.names_behavior == "always",
            sequence="first",
        )
    chat_sep = p.expand(ctx.chat_start + "\n") if ctx.chat_start else ""
    return TextHead(before, story, after, examples, chat_sep, alignment, injections)


def chat_items(p: Prepared, injections: list[Injection], start: int) -> TextItems:
    """History from ``start`` (a window of the newest messages: the budget rarely reaches
    further, and the builder widens it when it does) with the in-chat injections."""
    kind = p.kind
    t = p.inputs.instruct
    history = p.history
    items = [_history_block(p, history[i], i) for i in range(start, len(history))]
    items, injected = place_in_chat(
        items,
        injections,
        continuing=kind == "continue",
        make=lambda role, text, _src: _injected_block(p, role, text),
    )
    jailbreak = post_history(p)
    if jailbreak:
        jb = Block(BlockKind.POST_HISTORY, "user", jailbreak)
        if kind == "continue" and items:
            items.insert(len(items) - 1, jb)
        else:
            items.append(jb)
    items = _sequences(
        items, instruct=t is not None, continuing=kind == "continue", first=start == 0
    )
    n = len(items)
    user_positions = {
        n - 1 - i
        for i, b in enumerate(items)
        if b.role == "user" and not b.narrator and not (kind == "continue" and i == n - 1)
    }
    cycle = None
    if kind == "continue" and len(items) > 1:
        cycle = items.pop()
        injected = [i - 1 for i in injected]
        user_positions = {i - 1 for i in user_positions if i > 0}
    return TextItems(items, injected, user_positions, cycle, start)


def _apply_trim(text: str) -> str:
    """The macro pass's ``{{trim}}``: remove it and the line breaks around it (linear)."""
    marker = "{{trim}}"
    lowered = text.lower()
    if marker not in lowered:
        return text
    out: list[str] = []
    pos = 0
    while (at := lowered.find(marker, pos)) >= 0:
        out.append(text[pos:at].rstrip("\r\n"))
        pos = at + len(marker)
        while pos < len(text) and text[pos] in "\r\n":
            pos += 1
    out.append(text[pos:])
    return "".join(out)


def _format_examples(
    raw_blocks: list[str], heading: str, t: InstructTemplate | None, user: str, char: str
) -> list[Block]:
    """``formatInstructModeExamples``: per block an optional heading item, then one item per
    turn; without instruct (or with ``skip_examples``) one raw item per block."""

    def raw(with_heading: bool) -> list[Block]:
        return [
            Block(
                BlockKind.EXAMPLE,
                "system",
                _START_LINE.sub(lambda _: heading, b, count=1) if with_heading else b,
                raw=True,
                group=g,
            )
            for g, b in enumerate(raw_blocks)
        ]

    if t is None:
        return raw(False)
    if t.skip_examples:
        return raw(True)
    out: list[Block] = []
    for g, block in enumerate(raw_blocks):
        cleaned = _START.sub("{Example Dialogue:}", block, count=1).replace("\r", "")
        turns = split_turns(cleaned, user, char)
        if not turns:
            continue
        if heading:
            out.append(Block(BlockKind.EXAMPLE, "system", heading, raw=True, group=g))
        out.extend(
            Block(
                BlockKind.EXAMPLE,
                turn.role,
                turn.text,
                user if turn.role == "user" else char,
                example=True,
                group=g,
            )
            for turn in turns
        )
    return out or raw(True)


_START = re.compile(r"<START>", re.IGNORECASE)
_START_LINE = re.compile(r"<START>\n", re.IGNORECASE)


def _history_block(p: Prepared, m: ChatMessage, index: int) -> Block:
    t = p.inputs.instruct
    narrator = m.role == "system"
    user = m.role == "user"
    name = m.name or (p.user if user else p.char)
    # ST shows names per the template: "force" names group members and messages whose
    # speaker is not the current one (past personas, other people, /sendas)
    if t is None:
        show = not narrator and bool(name)
    elif narrator:
        show = False
    elif t.names_behavior == "always":
        show = True
    elif t.names_behavior == "force":
        other = name != p.user
        show = other and (bool(p.inputs.group) or user or name != p.char)
    else:
        show = False
    kind = BlockKind.GREETING if index == 0 and m.role == "assistant" else BlockKind.HISTORY
    return Block(
        kind,
        m.role,
        m.text.replace("\r", "") if "\r" in m.text else m.text,
        name,
        show_name=show,
        narrator=narrator,
        message_id=m.id,
    )


def _injected_block(p: Prepared, role: Role, text: str) -> Block:
    t = p.inputs.instruct
    name = {"system": "", "user": p.user, "assistant": p.char}[role]
    if t is None:
        show = bool(name)
    else:
        show = role != "system" and (
            t.names_behavior == "always"
            or (t.names_behavior == "force" and bool(p.inputs.group) and name != p.user)
        )
    return Block(BlockKind.INJECTION, role, text, name, show_name=show, narrator=role == "system")


def _sequences(
    items: list[Block], *, instruct: bool, continuing: bool, first: bool
) -> list[Block]:
    """Mark the first message (first input/output sequence), the last user message (last
    input sequence) and the continued one (last output sequence, no suffix)."""
    if not items:
        return items
    out = list(items)
    if instruct:
        if first:  # the chat's first message, not the window's
            out[0] = _with(out[0], sequence="first")
        for i in range(len(out) - 1, -1, -1):
            if out[i].role == "user" and not out[i].narrator:
                out[i] = _with(out[i], sequence="last")
                break
    if continuing:
        out[-1] = _with(out[-1], sequence="last" if instruct else out[-1].sequence, partial=True)
    return out


def _with(block: Block, *, sequence: str, partial: bool = False) -> Block:
    return replace(block, sequence=sequence, partial=partial or block.partial)
