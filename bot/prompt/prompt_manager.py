"""Chat completion: SillyTavern's prompt manager and its budget, step for step.

The preset's order decides the message order: each enabled prompt is one message at its
place (markers filled with the card, lore and persona), relative extension prompts go right
before/after the main prompt, prompts with an in-chat depth are spliced into the history by
the shared placement function. Budget: ``context − max_tokens`` less 3 for reply priming;
mandatory prompts that do not fit are an error; history fills newest → oldest, then example
blocks (all or nothing) — the other way round when examples are pinned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot.errors import ConfigError, MessageTooLong
from bot.prompt.chat_preset import ChatPreset, InjectionPosition, NamesBehavior
from bot.prompt.examples import split_blocks, split_turns
from bot.prompt.injection import Injection, Position
from bot.prompt.model import Block, BlockKind
from bot.prompt.placement import place_in_chat
from bot.prompt.prepared import Prepared
from bot.prompt.prompt_collection import collection
from bot.prompt.render import sanitize_name
from bot.types import ChatMessage

REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>
PER_MESSAGE = 3
PER_NAME = 1

_KINDS = {
    "main": BlockKind.MAIN,
    "worldInfoBefore": BlockKind.WORLD_BEFORE,
    "worldInfoAfter": BlockKind.WORLD_AFTER,
    "personaDescription": BlockKind.PERSONA,
    "charDescription": BlockKind.CHAR_DEF,
    "charPersonality": BlockKind.CHAR_DEF,
    "scenario": BlockKind.CHAR_DEF,
    "jailbreak": BlockKind.POST_HISTORY,
    "impersonate": BlockKind.IMPERSONATE,
    "bias": BlockKind.PREFILL,
    "authorsNote": BlockKind.ANCHOR,
}
_ABSOLUTE = InjectionPosition.ABSOLUTE


@dataclass(slots=True)
class ChatLayout:
    """Messages per slot, in the preset's order, and what the history budget left out."""

    slots: list[list[Block]] = field(default_factory=list)
    tail: list[Block] = field(default_factory=list)  # continue-prefill, control prompts
    cut_ids: list[int] = field(default_factory=list)
    kept_ids: set[int] = field(default_factory=set)
    examples_sent: int = 0
    examples_total: int = 0


class _Budget:
    def __init__(self, total: int, price: Callable[[Block], int]) -> None:
        self.left = total
        self.price = price

    def take(self, blocks: list[Block], what: str) -> None:
        cost = sum(self.price(b) for b in blocks)
        if cost > self.left:
            raise ConfigError(
                f"not enough tokens for the mandatory prompts ({what} needs {cost}, "
                f"{self.left} left)",
                hint="raise the context size, lower max_tokens or disable prompts in the preset",
            )
        self.left -= cost

    def fits(self, blocks: list[Block]) -> bool:
        return sum(self.price(b) for b in blocks) <= self.left


def build(p: Prepared, preset: ChatPreset, price: Callable[[Block], int]) -> ChatLayout:
    inputs = p.inputs
    kind = p.kind
    prompts = collection(p, preset)
    index = {q.identifier: i for i, q in enumerate(prompts)}
    budget = _Budget(inputs.context_size - inputs.max_tokens - REPLY_PRIMING, price)
    out = ChatLayout(slots=[[] for _ in prompts])

    def enabled(ident: str) -> bool:
        return preset.enabled(ident) is not False or ident == "main"

    def add(ident: str) -> None:
        at = index.get(ident)
        if at is None or not enabled(ident) or prompts[at].position == _ABSOLUTE:
            return
        q = prompts[at]
        block = Block(_KINDS.get(ident, BlockKind.CUSTOM), q.role, q.content, identifier=ident)
        budget.take([block], ident)
        out.slots[at] = [block]

    for ident in (
        "worldInfoBefore",
        "main",
        "worldInfoAfter",
        "charDescription",
        "charPersonality",
        "scenario",
        "personaDescription",
    ):
        add(ident)
    control: list[Block] = []
    if kind == "impersonate" and "impersonate" in index:
        q = prompts[index["impersonate"]]
        control.append(Block(BlockKind.IMPERSONATE, q.role, q.content, identifier="impersonate"))
    budget.take(control, "the impersonation prompt")
    customs = [q.identifier for q in prompts if not q.system_prompt and q.position != _ABSOLUTE]
    for ident in ("nsfw", "jailbreak", *customs):
        add(ident)
    if "enhanceDefinitions" in index:
        add("enhanceDefinitions")
    if inputs.prefill.strip():
        add("bias")
    main = index.get("main")
    for q in prompts:  # relative extension prompts, around the main prompt
        if q.anchor and main is not None:
            block = Block(
                _KINDS.get(q.identifier, BlockKind.ANCHOR),
                q.role,
                q.content,
                identifier=q.identifier,
            )
            budget.take([block], q.identifier)
            if q.anchor == "start":
                out.slots[main].insert(0, block)
            else:
                out.slots[main].append(block)
    absolute = [
        Injection(
            q.identifier, q.content, Position.IN_CHAT, q.depth, q.role, q.order, manager=True
        )
        for q in prompts
        if q.position == _ABSOLUTE and q.content and enabled(q.identifier)
    ]
    if inputs.examples == "always":
        _examples(p, preset, index, budget, out)
    # a window of the newest messages, widened while the budget reaches past it
    start = max(0, len(p.history) - window(p.history, budget.left, price))
    left = budget.left
    while not _chat(p, preset, index, budget, out, _history(p, preset, absolute, start), start):
        start = max(0, len(p.history) - 4 * (len(p.history) - start))
        budget.left = left
        out.kept_ids.clear()
        out.cut_ids.clear()
        out.tail.clear()
    if inputs.examples == "gradual":
        _examples(p, preset, index, budget, out)
    out.tail.extend(control)
    _prefill(p, preset, out)
    return out


def _history(
    p: Prepared, preset: ChatPreset, absolute: list[Injection], start: int
) -> list[int | Block]:
    """The history from ``start`` (as indices, made into blocks only when the budget walk
    reaches them) with the in-chat injections spliced in."""
    items: list[int | Block] = list(range(start, len(p.history)))
    merged, _ = place_in_chat(
        items,
        [*absolute, *(i for i in p.injections if i.position == Position.IN_CHAT)],
        continuing=False,
        make=lambda role, text, _src: Block(
            BlockKind.INJECTION, role, text, identifier="injection"
        ),
    )
    return merged


def _message(p: Prepared, preset: ChatPreset, i: int) -> Block:
    """``setOpenAIMessages`` for one message: role, names behaviour, quotes."""
    m = p.history[i]
    names = preset.names_behavior
    narrator = m.role == "system"
    name = m.name or (p.user if m.role == "user" else p.char)
    content = m.text
    if names == NamesBehavior.DEFAULT:
        # groups and other speakers (ST: forced avatars: past personas, /sendas)
        if (
            name != p.user
            and not narrator
            and (p.inputs.group or m.role == "user" or name != p.char)
        ):
            content = f"{name}: {content}"
    elif names == NamesBehavior.CONTENT and not narrator:
        content = f"{name}: {content}"
    if "\r" in content:
        content = content.replace("\r", "")
    if m.role == "user" and preset.wrap_in_quotes:
        content = f'"{content}"'
    field_name = sanitize_name(name) if names == NamesBehavior.COMPLETION else ""
    kind = BlockKind.GREETING if i == 0 and m.role == "assistant" else BlockKind.HISTORY
    return Block(kind, m.role, content, name, name=field_name, narrator=narrator, message_id=m.id)


def _chat(
    p: Prepared,
    preset: ChatPreset,
    index: dict[str, int],
    budget: _Budget,
    out: ChatLayout,
    history: list[int | Block],
    start: int,
) -> bool:
    """``populateChatHistory``; False when the budget reached past the history window."""
    at = index.get("chatHistory")
    if at is None:
        return True
    inputs = p.inputs
    kind = p.kind
    new_chat_text = preset.new_group_chat_prompt if inputs.group else preset.new_chat_prompt
    new_chat = Block(
        BlockKind.CHAT_START, "system", p.expand(new_chat_text), identifier="newMainChat"
    )
    reserved = [new_chat]
    nudge = None
    if inputs.group and kind != "impersonate" and "groupNudge" in index:
        nudge = Block(
            BlockKind.GROUP_NUDGE,
            "system",
            p.expand(preset.group_nudge_prompt),
            identifier="groupNudge",
        )
        reserved.append(nudge)
    continuing = kind == "continue" and bool(p.history)
    prefill_continue = continuing and preset.continue_prefill and inputs.role_rules.prefill
    cont = None
    if continuing and not prefill_continue:
        last = p.history[-1].text.strip()
        cont = Block(
            BlockKind.CONTINUE_NUDGE,
            "system",
            p.expand(preset.continue_nudge_prompt, lastChatMessage=last),
            identifier="continueNudge",
        )
        reserved.append(cont)
    for b in reserved:
        budget.left -= budget.price(b)
    slot: list[Block] = []
    tip = history[-1] if history else None
    last_role = p.history[tip].role if isinstance(tip, int) else tip.role if tip else ""
    if last_role == "assistant" and preset.send_if_empty and kind == "normal":
        empty = Block(BlockKind.HISTORY, "user", preset.send_if_empty)
        if budget.fits([empty]):
            budget.take([empty], "send_if_empty")
            slot.append(empty)
    # the newest real message: the one a continue-prefill moves to the end
    first_real = next((x for x in reversed(history) if isinstance(x, int)), None)
    kept: list[Block] = []
    cut = False
    for item in reversed(history):
        if cut:
            if isinstance(item, int):
                out.cut_ids.append(p.history[item].id)
            continue
        b = item if isinstance(item, Block) else _message(p, preset, item)
        cost = budget.price(b)
        if cost > budget.left:
            cut = True
            if b.message_id is not None:
                out.cut_ids.append(b.message_id)
            continue
        budget.left -= cost
        if b.message_id is not None:
            out.kept_ids.add(b.message_id)
        if prefill_continue and item == first_real and isinstance(item, int):
            text = b.text
            if b.role == "assistant" and preset.assistant_prefill:
                text = p.expand(preset.assistant_prefill + "\n\n") + text
            out.tail.insert(
                0,
                Block(
                    b.kind,
                    b.role,
                    text,
                    b.speaker,
                    name=b.name,
                    partial=True,
                    message_id=b.message_id,
                ),
            )
            continue
        kept.append(b)
    kept.reverse()
    slot.extend(kept)
    if not cut and start > 0:
        return False
    newest = next((x for x in reversed(history) if isinstance(x, int)), None)
    if newest is not None and p.history[newest].id not in out.kept_ids:
        raise MessageTooLong(
            "That message is too long for this chat: with the character's definitions it "
            "does not fit in the context. Please send a shorter one."
        )
    out.cut_ids.reverse()
    for b in reserved:
        budget.left += budget.price(b)
    slot.insert(0, new_chat)
    budget.left -= budget.price(new_chat)
    for extra in (nudge, cont):
        if extra is not None:
            slot.append(extra)
            budget.left -= budget.price(extra)
    out.slots[at] = slot
    return True


def _examples(
    p: Prepared, preset: ChatPreset, index: dict[str, int], budget: _Budget, out: ChatLayout
) -> None:
    """``populateDialogueExamples``: each block behind an "[Example Chat]" message, whole or
    not at all; the first block that does not fit ends it."""
    at = index.get("dialogueExamples")
    if at is None:
        return
    raw = [b for em in p.em_top for b in split_blocks(p.expand(em), "<START>\n")]
    raw += split_blocks(p.mes_examples, "<START>\n")
    raw += [b for em in p.em_bottom for b in split_blocks(p.expand(em), "<START>\n")]
    heading = p.expand(preset.new_example_chat_prompt)
    slot: list[Block] = []
    group = bool(p.inputs.group)
    out.examples_total = len(raw)
    for g, block in enumerate(raw):
        cleaned = block.replace("<START>", "{Example Dialogue:}", 1).replace("\r", "")
        turns = [
            Block(
                BlockKind.EXAMPLE,
                "system",
                f"{p.user if t.role == 'user' else p.char}: {t.text}" if group else t.text,
                name=t.name,
                group=g,
                identifier=f"dialogueExamples {g}",
            )
            for t in split_turns(cleaned, p.user, p.char)
        ]
        messages = [
            Block(BlockKind.EXAMPLE, "system", heading, group=g, identifier="newChat"),
            *turns,
        ]
        if not budget.fits(messages):
            break
        budget.left -= sum(budget.price(b) for b in messages)
        slot.extend(messages)
        out.examples_sent += 1
    out.slots[at] = slot


def _prefill(p: Prepared, preset: ChatPreset, out: ChatLayout) -> None:
    """A final assistant message where the backend takes one: the preset's assistant prefill
    (or its impersonation prefill), not when continuing with a prefill already."""
    if not p.inputs.role_rules.prefill or any(b.partial for b in out.tail):
        return
    text = preset.assistant_impersonation if p.kind == "impersonate" else preset.assistant_prefill
    text = p.expand(text).rstrip()
    if text:
        out.tail.append(Block(BlockKind.PREFILL, "assistant", text, identifier="prefill"))


def window(history: Sequence[ChatMessage], budget: int, price: Callable[[Block], int]) -> int:
    """How many of the newest messages to lay out first: what the budget would hold at the
    average size of the last few, with room to spare (the builder widens it if needed)."""
    sample = history[-16:]
    if not sample:
        return 0
    average = sum(price(Block(BlockKind.HISTORY, m.role, m.text)) for m in sample) / len(sample)
    return int(budget / max(average, 1.0) * 1.25) + 16


def price_for(counter_count: Callable[[str], int]) -> Callable[[Block], int]:
    """SillyTavern's chat-completion message pricing: content, 3 per message, 1 per name."""

    def price(block: Block) -> int:
        if not block.text:
            return 0
        return counter_count(block.text) + PER_MESSAGE + (PER_NAME if block.name else 0)

    return price
