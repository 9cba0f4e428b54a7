"""Prompt assembly: pure code from :class:`PromptInputs` to a :class:`BuiltPrompt`.

Text mode follows SillyTavern's story-string layout (:mod:`bot.prompt.story`), chat mode its
prompt manager (:mod:`bot.prompt.prompt_manager`); both share the preparation
(:mod:`bot.prompt.prepared`: macros, card fields, persona, lore, injections), the one
placement function and the renderers. A prompt never exceeds ``context_size − max_tokens``
as counted by the injected counter: fixed parts that cannot fit are a :class:`ConfigError`,
a newest message that cannot fit a :class:`UserFacingError`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import replace

from bot.errors import ConfigError, UserFacingError
from bot.prompt.lore import (
    LoreBooks,
    LoreContext,
    LoreResult,
    LoreSettings,
    LoreState,
    activate,
    scan_texts,
)
from bot.prompt.lore.model import MAX_SCAN_DEPTH
from bot.prompt.model import (
    Block,
    BlockKind,
    BuiltPrompt,
    PromptInputs,
    PromptReport,
)
from bot.prompt.prepared import Prepared, names_of, prepare
from bot.prompt.prompt_manager import build as build_chat
from bot.prompt.prompt_manager import price_for, window
from bot.prompt.render import TextFormatter, to_messages
from bot.prompt.story import chat_items, head
from bot.prompt.text_fit import fit
from bot.prompt.tokens import TokenCounter

__all__ = ["BuiltPrompt", "PromptInputs", "activate_lore", "build_prompt"]


def build_prompt(inputs: PromptInputs, counter: TokenCounter) -> BuiltPrompt:
    """Assemble, trim and render one prompt."""
    if inputs.max_tokens >= inputs.context_size:
        raise ConfigError(
            f"max_tokens ({inputs.max_tokens}) must be smaller than "
            f"context_size ({inputs.context_size})"
        )
    kind = inputs.kind
    if kind == "continue" and not any(not m.extra.get("hidden") for m in inputs.history):
        raise UserFacingError("There is no reply to continue.")
    p = prepare(inputs)
    if inputs.mode == "text" and inputs.renderer is None:
        return _text(p, counter)
    return _chat(p, counter)


def _text(p: Prepared, counter: TokenCounter) -> BuiltPrompt:
    inputs = p.inputs
    fmt = TextFormatter(
        inputs.instruct, inputs.context, p.user, p.char, p.expand, group=bool(inputs.group)
    )
    top = head(p, fmt)
    history = p.history
    last_is_user = bool(history) and history[-1].role == "user"
    prefill = p.expand(inputs.prefill) if p.kind not in ("impersonate", "continue") else ""
    force = inputs.context.always_force_name2 or bool(prefill)

    def finish(last: str) -> str:
        return fmt.finish(
            last,
            p.kind,
            prefill=prefill,
            force_name=force,
            last_is_user=last_is_user,
            first_only=len(history) == 1,
        )

    probe = finish("")
    start = max(0, len(history) - window(history, inputs.context_size, _text_price(counter)))
    while True:  # a window of the newest messages, widened while the budget reaches past it
        result = fit(
            top, chat_items(p, top.injections, start), fmt, inputs, counter, finish, probe
        )
        if result is not None:
            break
        start = max(0, len(history) - 4 * (len(history) - start))
    others = [*inputs.group, *names_of(history, p.user)[:8]]
    stop = fmt.stop_strings(
        p.kind, last_is_user=last_is_user, others=others, custom=inputs.custom_stop
    )
    tokens: dict[BlockKind, int] = {}
    for kind, text, _ in result.parts:
        if text:
            tokens[kind] = tokens.get(kind, 0) + counter.count(text)
    used = counter.count(result.text)
    blocks = tuple(
        Block(kind, "system", text, raw=True, message_id=mid) for kind, text, mid in result.parts
    )
    report = _report(
        p,
        budget=inputs.context_size - inputs.max_tokens - inputs.token_padding,
        used=used,
        tokens=tokens,
        kept=result.kept_ids,
        examples=(result.examples_sent, result.examples_total),
    )
    return BuiltPrompt("text", (), result.text, stop, report, blocks)


def _chat(p: Prepared, counter: TokenCounter) -> BuiltPrompt:
    inputs = p.inputs
    preset = inputs.chat
    price = price_for(counter.count)
    lay = build_chat(p, preset, price)
    blocks = tuple(b for slot in lay.slots for b in slot) + tuple(lay.tail)
    tokens: dict[BlockKind, int] = {BlockKind.FORMAT: 3}
    for b in blocks:
        if b.text:
            tokens[b.kind] = tokens.get(b.kind, 0) + price(b)
    messages = to_messages(blocks, inputs.role_rules, squash=preset.squash_system_messages)
    report = _report(
        p,
        budget=inputs.context_size - inputs.max_tokens,
        used=sum(tokens.values()),
        tokens=tokens,
        kept=lay.kept_ids,
        examples=(lay.examples_sent, lay.examples_total),
    )
    if inputs.mode == "text" and inputs.renderer is not None:  # a model's own chat template
        text = inputs.renderer.render(messages)
        return BuiltPrompt("text", (), text, inputs.renderer.stop, report, blocks)
    return BuiltPrompt("chat", messages, "", (), report, blocks)


def _text_price(counter: TokenCounter) -> Callable[[Block], int]:
    return lambda block: counter.count(block.text) + 1


def _report(
    p: Prepared,
    *,
    budget: int,
    used: int,
    tokens: Mapping[BlockKind, int],
    kept: set[int],
    examples: tuple[int, int],
) -> PromptReport:
    inputs = p.inputs
    ids = [m.id for m in p.history]
    cut = tuple(i for i in ids if i not in kept)
    notes = list(p.notes)
    if cut:
        notes.append(f"{len(cut)} older message(s) left out: no room in the context")
    if examples[1] > examples[0]:
        notes.append(f"{examples[1] - examples[0]} example item(s) left out: no room")
    hidden = len(inputs.history) - len(p.history)
    if hidden:
        notes.append(f"{hidden} hidden message(s) never sent")
    lore = inputs.lore
    return PromptReport(
        mode=inputs.mode,
        context_size=inputs.context_size,
        max_tokens=inputs.max_tokens,
        budget=budget,
        used=used,
        tokens=dict(tokens),
        included=tuple(i for i in ids if i in kept),
        cut=cut,
        examples_included=examples[0],
        examples_cut=examples[1] - examples[0],
        injections=tuple(
            f"{i.key} (depth {i.depth}, {i.role})"
            if i.position == 1
            else f"{i.key} ({i.position.name.lower()})"
            for i in p.injections
            if i.text
        ),
        notes=tuple(notes),
        lore=tuple(lore.trace) if lore is not None else (),
    )


def activate_lore(
    inputs: PromptInputs,
    books: LoreBooks,
    settings: LoreSettings,
    counter: TokenCounter,
    *,
    state: LoreState | None = None,
    rng: random.Random | None = None,
    context: LoreContext | None = None,
) -> LoreResult:
    """Run the world-info scan for the prompt ``inputs`` describes, the way SillyTavern does
    just before assembling it: over the messages that may be sent (newest first, with
    names), with ``context_size − max_tokens`` as its "max context", entry texts expanded
    with this prompt's macros, and the injections flagged for scanning (persona at depth, an
    author's note with ``scan``) scanned too. Pass the result as ``inputs.lore``."""
    p = prepare(replace(inputs, lore=None))
    return activate(
        books,
        # SillyTavern scans at most 1,000 messages deep
        scan_texts(p.history[-MAX_SCAN_DEPTH:], settings),
        settings,
        max_context=inputs.context_size - inputs.max_tokens,
        counter=counter,
        state=state or LoreState(),
        chat_length=len(inputs.history),
        rng=rng or random.Random(),
        names=(p.user, p.char),
        extra_scan=[i.text for i in p.injections if i.scan and i.text],
        context=context or LoreContext(trigger=p.kind),
        macros=p.expand,
    )
