"""Prompt assembly: pure code from :class:`PromptInputs` to a :class:`BuiltPrompt`.

Order, as SillyTavern's defaults send it:

* chat: system prompt, persona, description, personality, scenario (one system message);
  example blocks ("[Example Chat]" + ``example_user``/``example_assistant`` system
  messages); "[Start a new Chat]"; history; post-history instructions; when continuing, the
  continue nudge and then the partial reply as the last assistant message.
* text: the story string (system prompt, description, personality, scenario, persona) as one
  system turn; examples; chat start; history; post-history instructions as a user turn
  (before the partial reply when continuing); the reply header or the partial reply.

Budget: ``context_size − max_tokens``, less SillyTavern's 64 tokens of padding in text mode
(chat mode prices SillyTavern's 3 tokens per message and 3 for reply priming instead). Fixed
parts and the tail of the history (from the latest user message on) are never cut; older
history is added newest→oldest while it fits, then example blocks in order, each whole or not
at all.

Names: in text mode the template's ``names_behavior`` decides (ChatML: always). In chat mode
user messages carry ``"Name: "`` only when more than one person speaks in the history, so a
one-on-one chat looks like SillyTavern's and a shared channel still tells speakers apart;
an assistant message is prefixed only when another character spoke it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.errors import ConfigError, UserFacingError
from bot.prompt.macros import MacroContext, expand
from bot.prompt.model import (
    Block,
    BlockKind,
    BuiltPrompt,
    PromptInputs,
    PromptReport,
)
from bot.prompt.render import ChatRenderer, TextRenderer
from bot.prompt.tokens import TokenCounter
from bot.types import ChatMessage, Role

__all__ = ["BuiltPrompt", "PromptInputs", "build_prompt"]  # the inputs/result live in model

TEXT_PADDING = 64  # SillyTavern's token_padding: slack for tokenizer mismatch
_START = re.compile(r"<START>", re.IGNORECASE)


def build_prompt(inputs: PromptInputs, counter: TokenCounter) -> BuiltPrompt:
    """Assemble, trim and render one prompt.

    Raises :class:`ConfigError` when the fixed parts alone overflow the context (a setting or
    card to change) and :class:`UserFacingError` when the latest message pushes it over.
    """
    if inputs.max_tokens >= inputs.context_size:
        raise ConfigError(
            f"max_tokens ({inputs.max_tokens}) must be smaller than "
            f"context_size ({inputs.context_size})"
        )
    char = inputs.character.name
    ctx = MacroContext(user=inputs.user_name, char=char)
    chat = inputs.mode == "chat"
    renderer: ChatRenderer | TextRenderer = (
        ChatRenderer()
        if chat
        else TextRenderer(inputs.instruct, inputs.context, inputs.user_name, char)
    )
    history = list(inputs.history)
    partial: list[Block] = []
    humans = _human_names(inputs)
    if inputs.continue_last:
        if not history or history[-1].role != "assistant":
            raise UserFacingError("There is no reply to continue.")
        last = history.pop()
        partial = [_history_block(last, len(history), inputs, humans, fixed=True, partial=True)]
    tail_at = _tail_start(history)
    tail = [
        _history_block(history[i], i, inputs, humans, fixed=True)
        for i in range(tail_at, len(history))
    ]
    head = _header(inputs, ctx)
    start = _chat_start(inputs, ctx)
    examples = _examples(inputs, ctx)
    closing = _post_history(inputs, ctx)
    if partial and chat and inputs.chat_prompts.continue_nudge:
        extra = {"lastChatMessage": partial[0].text}
        nudge = expand(
            inputs.chat_prompts.continue_nudge, MacroContext(ctx.user, char, extra=extra)
        )
        closing.append(Block(BlockKind.CONTINUE_NUDGE, "system", nudge))

    # each block priced once (a real tokenizer is not free); keyed by identity because
    # hashing a frozen dataclass rebuilds a tuple of its fields on every lookup
    costs: dict[int, tuple[Block, int]] = {}

    def cost(block: Block) -> int:
        hit = costs.get(id(block))
        if hit is None:  # the block is kept in the value, so its id cannot be reused
            hit = costs[id(block)] = (block, renderer.cost(block, counter))
        return hit[1]

    def price(blocks: Sequence[Block]) -> int:
        return sum(cost(b) for b in blocks)

    padding = 0 if chat else TEXT_PADDING
    budget = inputs.context_size - inputs.max_tokens - padding
    chrome = renderer.overhead(counter, continuing=bool(partial))
    definitions = chrome + price(head) + price(start) + price(closing)
    needed = definitions + price(tail) + price(partial)
    if needed > budget:
        _too_small(inputs, budget, definitions, needed, bool(partial))

    free = budget - needed
    kept: list[Block] = []
    for i in range(tail_at - 1, -1, -1):  # newest first, stop at the first that does not fit
        block = _history_block(history[i], i, inputs, humans, fixed=False)
        price_of = cost(block)
        if price_of > free:
            break
        free -= price_of
        kept.append(block)
    kept.reverse()
    shown: list[list[Block]] = []
    for group in examples:  # in order, each <START> block whole or not at all
        if price(group) > free:
            break
        free -= price(group)
        shown.append(group)

    blocks = (*head, *(b for g in shown for b in g), *start, *kept, *tail, *closing, *partial)
    tokens: dict[BlockKind, int] = {BlockKind.FORMAT: chrome}
    for b in blocks:
        tokens[b.kind] = tokens.get(b.kind, 0) + cost(b)
    sent = {b.message_id for b in blocks if b.message_id is not None}
    report = PromptReport(
        mode=inputs.mode,
        budget=budget,
        used=sum(tokens.values()),
        tokens=tokens,
        included=tuple(m.id for m in inputs.history if m.id in sent),
        cut=tuple(m.id for m in inputs.history if m.id not in sent),
        examples_included=len(shown),
        examples_cut=len(examples) - len(shown),
    )
    if isinstance(renderer, ChatRenderer):
        return BuiltPrompt(inputs.mode, renderer.render(blocks), "", (), report, blocks)
    stop = renderer.stop_strings(_other_speakers(inputs))
    return BuiltPrompt(inputs.mode, (), renderer.render(blocks), stop, report, blocks)


def _too_small(
    inputs: PromptInputs, budget: int, definitions: int, needed: int, continuing: bool
) -> None:
    if definitions > budget:
        padding = "" if inputs.mode == "chat" else f" − {TEXT_PADDING} padding"
        raise ConfigError(
            f"the context is too small for {inputs.character.name}: the system prompt, card "
            f"and instructions need about {definitions} tokens but only {budget} fit "
            f"(context_size {inputs.context_size} − max_tokens {inputs.max_tokens}{padding}), "
            f"{definitions - budget} short",
            hint="raise the backend's context_size, lower max_tokens or shorten the card",
        )
    over = needed - budget
    if continuing:
        raise UserFacingError(
            f"The reply is too long to continue: about {over} tokens over the context."
        )
    raise UserFacingError(
        f"That message is too long for this chat: about {over} tokens over the context. "
        "Please send a shorter one."
    )


def _human_names(inputs: PromptInputs) -> tuple[str, ...]:
    """The people in the history (current user first), by display name."""
    names = [inputs.user_name]
    names += [m.name or inputs.user_name for m in inputs.history if m.role == "user"]
    return tuple(dict.fromkeys(names))


def _other_speakers(inputs: PromptInputs, limit: int = 8) -> list[str]:
    """Recent other humans, for ``\nName:`` stop strings; capped to keep the request small."""
    names = [m.name for m in reversed(inputs.history) if m.role == "user" and m.name]
    return [n for n in dict.fromkeys(names) if n != inputs.user_name][:limit]


def _tail_start(history: Sequence[ChatMessage]) -> int:
    """Index where the uncuttable tail begins: the latest user message, else the last one."""
    for i in range(len(history) - 1, -1, -1):
        if history[i].role == "user":
            return i
    return max(len(history) - 1, 0)


def _history_block(
    msg: ChatMessage,
    index: int,
    inputs: PromptInputs,
    humans: Sequence[str],
    *,
    fixed: bool,
    partial: bool = False,
) -> Block:
    kind = BlockKind.GREETING if index == 0 and msg.role == "assistant" else BlockKind.HISTORY
    return Block(
        kind,
        msg.role,
        msg.text,
        speaker=_speaker(msg, inputs, len(humans) > 1),
        fixed=fixed,
        message_id=msg.id,
        partial=partial,
    )


def _speaker(msg: ChatMessage, inputs: PromptInputs, many_humans: bool) -> str:
    if msg.role == "system":  # narrator lines never carry a name
        return ""
    char = inputs.character.name
    name = msg.name or (inputs.user_name if msg.role == "user" else char)
    if inputs.mode == "text" and inputs.instruct.names_behavior != "force":
        return name if inputs.instruct.names_behavior == "always" else ""
    # chat mode and the "force" template: names only where they tell speakers apart
    if msg.role == "user":
        return name if many_humans else ""
    return name if name != char else ""


def _text(text: str, ctx: MacroContext) -> str:
    """Card or config text, expanded; carriage returns dropped as SillyTavern does."""
    return expand(text, ctx).replace("\r", "")


def _header(inputs: PromptInputs, ctx: MacroContext) -> list[Block]:
    card = inputs.character
    configured = _text(inputs.system_prompt, ctx)
    main = configured
    if card.system_prompt.strip():  # SillyTavern's "prefer character prompt", on by default
        main = _text(card.system_prompt, MacroContext(ctx.user, ctx.char, configured))
    description = _text(card.description, ctx).strip()
    personality = _text(card.personality, ctx).strip()
    scenario = _text(card.scenario, ctx).strip()
    persona = inputs.persona_description.strip()
    if inputs.mode == "chat":
        formats = inputs.chat_prompts
        parts = [
            (BlockKind.MAIN, main),
            (BlockKind.PERSONA, persona),
            (BlockKind.CHAR_DEF, description),
            (
                BlockKind.CHAR_DEF,
                _wrap(formats.personality_format, ctx, "personality", personality),
            ),
            (BlockKind.CHAR_DEF, _wrap(formats.scenario_format, ctx, "scenario", scenario)),
        ]
    else:
        parts = [
            (BlockKind.MAIN, main),
            (BlockKind.CHAR_DEF, description),
            (
                BlockKind.CHAR_DEF,
                f"{ctx.char}'s personality: {personality}" if personality else "",
            ),
            (BlockKind.CHAR_DEF, f"Scenario: {scenario}" if scenario else ""),
            (BlockKind.PERSONA, persona),
        ]
    return [Block(kind, "system", text.strip()) for kind, text in parts if text.strip()]


def _wrap(template: str, ctx: MacroContext, key: str, value: str) -> str:
    if not value:
        return ""
    return expand(template, MacroContext(ctx.user, ctx.char, extra={key: value}))


def _chat_start(inputs: PromptInputs, ctx: MacroContext) -> list[Block]:
    if inputs.mode == "chat":
        text = expand(inputs.chat_prompts.new_chat, ctx)
        return [Block(BlockKind.CHAT_START, "system", text)] if text else []
    text = expand(inputs.context.chat_start, ctx)
    return [Block(BlockKind.CHAT_START, "system", text, verbatim=True)] if text else []


def _post_history(inputs: PromptInputs, ctx: MacroContext) -> list[Block]:
    configured = _text(inputs.post_history_instructions, ctx)
    text = configured
    card = inputs.character.post_history_instructions
    if card.strip():  # "prefer character instructions"; {{original}} is the configured one
        text = _text(card, MacroContext(ctx.user, ctx.char, configured))
    text = text.strip()
    if not text:
        return []
    # text mode sends it as a nameless user turn, as SillyTavern does
    role: Role = "system" if inputs.mode == "chat" else "user"
    return [Block(BlockKind.POST_HISTORY, role, text)]


def _examples(inputs: PromptInputs, ctx: MacroContext) -> list[list[Block]]:
    """Example dialogue blocks, each a list of blocks cut together."""
    user, char = ctx.user, ctx.char
    parsed = _parse_examples(_text(inputs.character.mes_example, ctx), user, char)
    groups: list[list[Block]] = []
    for g, turns in enumerate(parsed):
        group: list[Block] = []
        if inputs.mode == "chat":
            heading = expand(inputs.chat_prompts.new_example_chat, ctx)
            if heading:
                group.append(Block(BlockKind.EXAMPLE, "system", heading, fixed=False, group=g))
            for role, text in turns:
                name = "example_user" if role == "user" else "example_assistant"
                group.append(
                    Block(BlockKind.EXAMPLE, "system", text, name=name, fixed=False, group=g)
                )
        else:
            separator = expand(inputs.context.example_separator, ctx)
            if separator:
                group.append(
                    Block(
                        BlockKind.EXAMPLE, "system", separator, fixed=False, group=g, verbatim=True
                    )
                )
            behavior = inputs.instruct.names_behavior
            for role, text in turns:
                shown = behavior == "always" or (behavior == "force" and role == "user")
                speaker = (user if role == "user" else char) if shown else ""
                group.append(
                    Block(BlockKind.EXAMPLE, role, text, speaker=speaker, fixed=False, group=g)
                )
        groups.append(group)
    return groups


def _parse_examples(text: str, user: str, char: str) -> list[list[tuple[Role, str]]]:
    """Split ``mes_example`` into ``<START>`` blocks of (role, text) turns.

    A turn starts at a line beginning ``User:`` or ``Char:`` and runs until the other speaker's
    line; lines before the first speaker join the first turn, as in SillyTavern. Blocks with
    no speaker lines are dropped.
    """
    if not text.strip():
        return []
    if not text.startswith("<START>"):
        text = "<START>\n" + text.strip()
    blocks = [_parse_block(chunk, user, char) for chunk in _START.split(text)[1:]]
    return [turns for turns in blocks if turns]


def _parse_block(chunk: str, user: str, char: str) -> list[tuple[Role, str]]:
    segments: list[tuple[Role | None, list[str]]] = [(None, [])]
    for line in chunk.strip().split("\n"):
        starts: Role | None = None
        if line.startswith(user + ":"):
            starts = "user"
        elif line.startswith(char + ":"):
            starts = "assistant"
        current = segments[-1][0]
        if starts is not None and current is not None and starts != current:
            segments.append((starts, []))
        elif starts is not None and current is None:
            segments[-1] = (starts, segments[-1][1])
        segments[-1][1].append(line)
    turns: list[tuple[Role, str]] = []
    for role, lines in segments:
        if role is not None:
            prefix = (user if role == "user" else char) + ":"
            turns.append((role, "\n".join(lines).replace(prefix, "", 1).strip()))
    return turns
